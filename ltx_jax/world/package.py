"""The embedded default's committed files (issue 17): a finished `world.recipe.reproduce` run folder, packaged.

No ltx_core counterpart. `package(run, out)` writes the folder `ltx_jax/data/world_default` holds:
  model.safetensors          the dev model: the official single-file layout (DiT, connectors, video VAE, audio VAE,
                             vocoder, the config in the metadata), every float tensor in bf16 as the official
                             files ship; the video VAE decoder is the decoder stage's, the audio VAE decoder
                             and the vocoder (and its config) are the audio stage's
  distilled-lora.safetensors the 8-step student as an official-layout LoRA on the dev model (`--lora`, strength 1),
                             as Lightricks ship their distilled model: for each linear weight the student moved,
                             the full-rank SVD factors of (student - teacher) in bf16. Only linear weights may
                             differ (`DistillConfig.trainable="linear"`); anything else is refused
  gemma/                     the word-level tokenizer and the tiny frozen Gemma-3 (Hugging Face layout)
  manifest.json              sizes and sha256 of every file, the recipe (sizes, steps, data seeds), loss curves,
                             metrics, the LoRA's reconstruction error, and the sha256 of the package's source
                             code when training started and when packaging
Written into a hidden sibling folder and renamed, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import ml_dtypes
import numpy as np

from ltx_jax.world.train_audio import AUDIO_FILE

__all__ = ["DEFAULT_DIR", "package", "with_audio", "cast_copy", "code_fingerprint", "machine_info", "lora_from_student",
           "file_table", "curve"]

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "data" / "world_default"
MODEL, LORA, GEMMA, MANIFEST = "model.safetensors", "distilled-lora.safetensors", "gemma", "manifest.json"
_PREFIX = "model.diffusion_model."
AUDIO_PARTS = ("audio_vae.decoder.", "vocoder.")  # what the audio stage (`world.train_audio`) replaces
VIDEO_DECODER = "vae.decoder."  # what the decoder stage (`world.train_decoder`) replaces
AUDIO_CURVE_KEYS = ("loss", "mel_l1", "vocoder_wave_l1", "vocoder_convergence")
AUDIO_CURVE = "audio (step, loss, decoder log-mel L1, vocoder waveform L1 x weight, spectral convergence)"
_BF16 = np.dtype(ml_dtypes.bfloat16)


def code_fingerprint() -> dict:
    """sha256 over every source file of the package (`ltx_jax/**/*.py` and its data files, by relative path),
    and the git commit when the source is a git checkout (with whether it had uncommitted changes)."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".py", ".json", ".txt")
                   and "world_default" not in p.parts and "__pycache__" not in p.parts)
    for p in files:
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    out = {"sources_sha256": h.hexdigest(), "source_files": len(files)}
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, timeout=10)  # noqa: E731
        head = run("rev-parse", "HEAD")
        if head.returncode == 0:
            out["git_commit"] = head.stdout.strip()
            out["git_dirty"] = bool(run("status", "--porcelain", "--", ".").stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def machine_info() -> dict:
    """Where this process runs: jax's backend and first device, the device count and the library versions."""
    import platform

    import flax
    import jax

    return {"backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
            "devices": jax.device_count(), "jax": jax.__version__, "flax": flax.__version__,
            "python": platform.python_version()}


def file_table(folder: Path) -> dict[str, dict]:
    """{relative path: {"bytes", "sha256"}} of every file under `folder` but the manifest."""
    from ltx_jax.pipelines.outputs import file_hash

    return {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": file_hash(p)["sha256"]}
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def cast_copy(src: Path, dst: Path, dtype=_BF16, *, audio: Path | None = None, decoder: Path | None = None) -> None:
    """`src` with every float tensor in `dtype` (bf16 as the official files ship). With `audio` (a
    `world.train_audio` file): its audio VAE decoder and vocoder replace `src`'s (every key under `AUDIO_PARTS`),
    and its config's vocoder entry `src`'s. With `decoder` (a `world.train_decoder` `video_vae.npz`): its video
    decoder replaces `src`'s (every key under `VIDEO_DECODER`); its encoder and latent statistics must be `src`'s,
    bit for bit (refused otherwise: the DiT was trained on that encoder's latents)."""
    from ltx_jax.checkpoint.safetensors_file import SafetensorsFile, save_file
    from ltx_jax.world.train_dit import _vae_tensors

    with contextlib.ExitStack() as files:
        f = files.enter_context(SafetensorsFile(src))
        owner, arrays = {k: f for k in f}, {}
        if decoder is not None:
            vae = _vae_tensors(decoder)
            if set(vae) != {k for k in f if k.startswith("vae.")}:
                raise ValueError(f"{decoder}: not the video VAE layout of {src}")
            moved = [k for k in vae if not k.startswith(VIDEO_DECODER) and not np.array_equal(vae[k], f[k])]
            if moved:
                raise ValueError(f"{decoder}: its encoder differs from {src}'s (e.g. {moved[:3]}); the decoder "
                                 "stage must keep the encoder the DiT was trained on")
            arrays = {k: v for k, v in vae.items() if k.startswith(VIDEO_DECODER)}
            reshaped = [k for k, v in arrays.items() if tuple(v.shape) != tuple(f.info(k).shape)]
            if reshaped:
                raise ValueError(f"{decoder}: {reshaped[0]} has shape {arrays[reshaped[0]].shape}, {src} holds "
                                 f"{tuple(f.info(reshaped[0]).shape)}")
        metadata = dict(f.metadata)
        if audio is not None:
            a = files.enter_context(SafetensorsFile(audio))
            stray = [k for k in a if not k.startswith(AUDIO_PARTS)]
            if stray:
                raise ValueError(f"{audio}: holds tensors outside the audio decoder and vocoder, e.g. {stray[:3]}")
            owner = {k: v for k, v in owner.items() if not k.startswith(AUDIO_PARTS)} | {k: a for k in a}
            config = json.loads(metadata["config"])
            config["vocoder"] = json.loads(a.metadata["config"])["vocoder"]
            metadata["config"] = json.dumps(config)
        shapes, writers = {}, {}
        for key in sorted(owner):
            if key in arrays:
                shape, stored, read = arrays[key].shape, arrays[key].dtype, arrays.get
            else:
                info = owner[key].info(key)
                shape, stored, read = tuple(info.shape), info.numpy_dtype, lambda key: owner[key][key]
            floating = stored == _BF16 or np.issubdtype(stored, np.floating)  # bf16: kind "V"
            cast = np.dtype(dtype) if floating else stored
            shapes[key] = (tuple(shape), cast)
            writers[key] = lambda key=key, cast=cast, read=read: np.asarray(read(key)).astype(cast)
        save_file(writers, dst, metadata, shapes=shapes)


def lora_from_student(teacher: Path, student: Path, dst: Path, *, dtype=_BF16) -> dict:
    """Write the official LoRA (`diffusion_model.<path>.lora_A/B.weight`) that turns `teacher` into `student`.

    For each moved linear weight, delta = student - teacher (float64) = U S V^T; B = U sqrt(S), A = sqrt(S) V^T,
    at the delta's full numerical rank (singular values above 1e-7 of the largest), stored in `dtype`.

    Returns:
        {"pairs", "parameters", "max_rank", "max_relative_error" (||B A - delta|| / ||delta|| with the stored
        factors, the worst weight)}.

    Raises:
        ValueError: the files differ in their keys, or the student moved a tensor no LoRA can carry (a bias, a
            norm, an AdaLN table, a connector weight), named in the message.
    """
    from ltx_jax.checkpoint.safetensors_file import SafetensorsFile, save_file

    tensors, worst, params, ranks = {}, 0.0, 0, []
    with SafetensorsFile(teacher) as t, SafetensorsFile(student) as s:
        if set(t) != set(s):
            raise ValueError(f"{student}: not the same layout as {teacher} ({len(set(t) ^ set(s))} keys differ)")
        moved = [k for k in sorted(t) if not np.array_equal(t[k], s[k])]
        bad = [k for k in moved if not (k.startswith(_PREFIX) and k.endswith(".weight") and t[k].ndim == 2
                                        and "embeddings_connector" not in k)]
        if bad:
            raise ValueError(f"{student}: {len(bad)} moved tensor(s) an official LoRA cannot carry, e.g. "
                             f"{bad[:4]}; distill with trainable='linear'")
        for key in moved:
            delta = np.asarray(s[key], np.float64) - np.asarray(t[key], np.float64)
            u, sv, vt = np.linalg.svd(delta, full_matrices=False)
            r = max(1, int((sv > sv[0] * 1e-7).sum()))
            root = np.sqrt(sv[:r])
            b, a = (u[:, :r] * root).astype(np.float32).astype(dtype), (root[:, None] * vt[:r]).astype(
                np.float32).astype(dtype)
            err = np.linalg.norm(b.astype(np.float64) @ a.astype(np.float64) - delta) / max(np.linalg.norm(delta),
                                                                                            1e-30)
            worst, params, ranks = max(worst, float(err)), params + a.size + b.size, ranks + [r]
            path = "diffusion_model." + key[len(_PREFIX):-len(".weight")]
            tensors[path + ".lora_A.weight"], tensors[path + ".lora_B.weight"] = a, b
    if not tensors:
        raise ValueError(f"{student}: identical to {teacher}; nothing to distill into a LoRA")
    save_file(tensors, dst)
    return {"pairs": len(ranks), "parameters": params, "max_rank": max(ranks), "max_relative_error": worst}


def curve(path: Path, window: int, keys: tuple[str, ...] = ("loss",)) -> list[list[float]]:
    """A JSON-lines log (`{"step", <keys>}` per line) as [[last step, mean of each key]] per `window` steps."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = []
    for i in range(0, len(rows), window):
        chunk = rows[i:i + window]
        out.append([chunk[-1]["step"]] + [round(float(np.mean([r[k] for r in chunk if k in r])), 5) for k in keys])
    return out


def package(run: str | Path, out: str | Path = DEFAULT_DIR, *, adherence: dict | None = None,
            overwrite: bool = False) -> dict:
    """Package the finished reproduce run `run` (`recipe.json`, `vae/`, `decoder/`, `dit/`, `audio/`, `distill/`)
    into `out`.

    Returns the manifest. Raises FileExistsError when `out` exists (unless `overwrite`), FileNotFoundError when a
    stage of `run` is not finished, ValueError from `lora_from_student`.
    """
    run, out = Path(run), Path(out)
    needed = {"recipe": run / "recipe.json", "vae": run / "vae" / "video_vae.json",
              "decoder": run / "decoder" / "video_vae.json",
              "teacher": run / "dit" / "train" / "model.safetensors",
              "student": run / "distill" / "student.safetensors",
              "audio": run / "audio" / "audio.json",
              "gemma": run / "dit" / "gemma"}
    missing = [f"{k} ({p})" for k, p in needed.items() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{run}: not a finished reproduce run; missing " + ", ".join(missing))
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (pass overwrite=True / --overwrite to replace it)")
    stage = out.with_name(f".{out.name}.partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        cast_copy(needed["teacher"], stage / MODEL, audio=run / "audio" / AUDIO_FILE,
                  decoder=run / "decoder" / "video_vae.npz")
        lora = lora_from_student(needed["teacher"], needed["student"], stage / LORA)
        shutil.copytree(needed["gemma"], stage / GEMMA)
        recipe = json.loads(needed["recipe"].read_text())
        stages = json.loads((run / "stages.json").read_text()) if (run / "stages.json").exists() else {}
        files = file_table(stage)
        manifest = {
            "what": "the embedded default of ltx-jax (issue 17): a tiny LTX-2.3 trained on the synthetic world",
            "files": files, "total_bytes": sum(f["bytes"] for f in files.values()),
            "recipe": recipe["recipe"], "data_seeds": {"train": recipe["recipe"]["dit"]["seed"],
                                                       "vae_train": recipe["recipe"]["vae"]["seed"],
                                                       "held_out": recipe["recipe"]["vae"]["held_out_seed"]},
            "stages": stages,
            "video_vae": json.loads(needed["vae"].read_text()),
            "video_vae_decoder": json.loads(needed["decoder"].read_text()),  # the shipped decoder's metrics
            "audio": json.loads(needed["audio"].read_text()),
            "loss_curves": {
                "video_vae": curve(run / "vae" / "loss.jsonl", 50),
                "video_vae_decoder": curve(run / "decoder" / "loss.jsonl", 50),
                "dit (step, loss, video, audio; logged every 10 steps, mean of 10 logs)":
                    curve(run / "dit" / "train" / "log.jsonl", 10, ("loss", "loss_video", "loss_audio")),
                "distill (step, loss, video, audio)": curve(run / "distill" / "loss.jsonl", 50,
                                                            ("loss", "video", "audio")),
                AUDIO_CURVE: curve(run / "audio" / "loss.jsonl", 50, AUDIO_CURVE_KEYS)},
            "distilled_lora": lora,
            "adherence": adherence,
            "code": {"at_training_start": recipe.get("code"), "at_packaging": code_fingerprint()},
            "machine": {"at_training_start": recipe.get("machine"), "at_packaging": machine_info()},
            "provenance": recipe.get("provenance"),  # how stages run outside this command got here, if any
        }
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return manifest


def with_audio(default: str | Path, audio_run: str | Path, out: str | Path, *, provenance: str) -> dict:
    """`default` (a packaged folder) with the finished audio stage `audio_run` (`world.train_audio`) swapped in,
    written to `out` (refused if it exists): model.safetensors rewritten by `cast_copy(audio=...)` (only the audio
    decoder, the vocoder and its config change), the LoRA and Gemma copied; in the manifest the file table, the
    audio recipe, metrics and loss curve, the code at packaging and `provenance` (appended) are updated, and the
    adherence is dropped (it has to be measured again; `experiments/world_refresh.py` does). For a default packaged
    before the audio stage existed.
    Returns the new manifest."""
    default, audio_run, out = Path(default), Path(audio_run), Path(out)
    if not (audio_run / "audio.json").exists():
        raise FileNotFoundError(f"{audio_run}: not a finished audio stage (no audio.json)")
    if out.exists():
        raise FileExistsError(f"{out}: already exists")
    manifest = json.loads((default / MANIFEST).read_text())
    stage = out.with_name(f".{out.name}.partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        cast_copy(default / MODEL, stage / MODEL, audio=audio_run / AUDIO_FILE)
        shutil.copy2(default / LORA, stage / LORA)
        shutil.copytree(default / GEMMA, stage / GEMMA)
        audio = json.loads((audio_run / "audio.json").read_text())
        files = file_table(stage)
        manifest.update(files=files, total_bytes=sum(f["bytes"] for f in files.values()), audio=audio,
                        adherence=None)
        manifest["recipe"]["audio"] = audio["config"]
        manifest["stages"]["audio"] = audio["seconds_of_last_call"]
        manifest["loss_curves"][AUDIO_CURVE] = curve(audio_run / "loss.jsonl", 50, AUDIO_CURVE_KEYS)
        manifest["code"]["at_audio_packaging"] = code_fingerprint()
        manifest["provenance"] = " ".join(p for p in (manifest.get("provenance"), provenance) if p)
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        stage.rename(out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return manifest
