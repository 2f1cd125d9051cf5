"""Retrain the shipped embedded default from its stage 2 on (issue 17): the DiT, the distilled student, the packaging
and the adherence, with the current recipe code, on the shipped video VAE.

    python experiments/world_retrain.py --out runs/retrain [--audio-from runs/refresh/audio] [--install]

No ltx_core counterpart. Why: a change to stage 2 (here the audio latent statistics `world.train_dit.prepare`
now fits) needs a new DiT, but stage 1 (25 min) is unchanged, so it is restored rather than re-run:
  1. `vae/`: the shipped model's `vae.*` tensors (bf16 -> float32, exact) as `video_vae.npz` in our module paths,
     and `video_vae.json` = the shipped config and held-out metrics;
  2. `audio/` (optional, `--audio-from`): a finished audio stage copied in. The audio stage trains the audio
     decoder and vocoder on the raw latents of the seeded audio encoder, which every stage-2 base of the recipe
     shares; only the scale of its training noise (0.2 in normalized units) follows the statistics;
  3. `recipe.reproduce` for the rest (stage 2 from a fresh base, the audio stage unless copied, distillation,
     packaging, adherence), then the manifest's stage-1 entries (loss curve, seconds) are the shipped ones and
     its provenance says what was restored. `--install` copies the result over the package's default.
JSON summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np


def restore_vae(model: Path, vae: Path, manifest: dict) -> None:
    """Stage 1's outputs from a packaged model file (see the module docstring)."""
    from ltx_jax.checkpoint.safetensors_file import SafetensorsFile

    tensors = {}
    with SafetensorsFile(model) as f:
        for key in f:
            if not key.startswith("vae."):
                continue
            name = key[len("vae."):]
            value = np.asarray(f[key]).astype(np.float32)
            if name.startswith("per_channel_statistics."):
                stat = name.rsplit(".", 1)[1].replace("-of-", "_of_")
                for part in ("encoder", "decoder"):  # our modules hold one copy each
                    tensors[f"{part}.per_channel_statistics.{stat}"] = value
            else:
                tensors[name] = value
    vae.mkdir(parents=True, exist_ok=True)
    tmp = vae / ".video_vae.tmp.npz"
    np.savez(tmp, **tensors)
    tmp.replace(vae / "video_vae.npz")
    (vae / "loss.jsonl").write_text("")  # the shipped curve is put back into the manifest at the end
    (vae / "video_vae.json").write_text(json.dumps(manifest["video_vae"], indent=1) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--audio-from", help="a finished audio stage folder to reuse (else the stage runs)")
    p.add_argument("--install", action="store_true")
    args = p.parse_args(argv)
    from ltx_jax.world.package import DEFAULT_DIR, MANIFEST, MODEL, code_fingerprint
    from ltx_jax.world.recipe import Recipe, install_default, reproduce

    out = Path(args.out)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    shipped = json.loads((DEFAULT_DIR / MANIFEST).read_text())
    recipe = Recipe.from_json(shipped["recipe"])
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "vae" / "video_vae.json").exists():
        restore_vae(DEFAULT_DIR / MODEL, out / "vae", shipped)
    audio_note = "the audio stage ran on the new stage-2 file"
    if args.audio_from:
        if not (out / "audio" / "audio.json").exists():
            shutil.copytree(args.audio_from, out / "audio", dirs_exist_ok=True)
        audio_note = ("the audio stage (decoder + vocoder) was reused from the previous default's refresh: same "
                      "seeded audio encoder, trained with noise of 0.2 in the old statistics' units")
    if not (out / "recipe.json").exists():
        provenance = (
            "Stage 1 (the video VAE) is the previous default's, restored from its bf16 file by "
            "`experiments/world_retrain.py`; stage 2 (a fresh DiT, the audio latent statistics now fitted), the "
            f"distillation, the packaging and the adherence ran with this recipe's code; {audio_note}. The previous "
            f"default's provenance: {shipped['provenance']}")
        (out / "recipe.json").write_text(json.dumps({"recipe": recipe.to_json(), "code": code_fingerprint(),
                                                     "provenance": provenance}, indent=1) + "\n")
        if args.audio_from:
            stages = {"audio": json.loads((out / "audio" / "audio.json").read_text())["seconds_of_last_call"]}
            (out / "stages.json").write_text(json.dumps(stages, indent=1) + "\n")
    summary = reproduce(out, recipe, log=log)
    default = out / "default"
    manifest = json.loads((default / MANIFEST).read_text())
    manifest["loss_curves"]["video_vae"] = shipped["loss_curves"]["video_vae"]
    manifest["stages"]["vae"] = shipped["stages"]["vae"]
    (default / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    if args.install:
        install_default(default, DEFAULT_DIR, log)
    print(json.dumps({"finished": summary["finished"], "total_bytes": manifest["total_bytes"],
                      "adherence": manifest["adherence"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
