"""The reproduce command of the embedded default (issue 17, `ltx-jax world-default --tiny`) at a tiny size: the
video VAE, then the DiT (the official single-file base -> world dataset -> latent cache -> `ltx-jax train`):
the loss falls, a run stopped and resumed continues the uninterrupted curve, the written model is the base file
with only the transformer changed (the trained VAE is in it, bit for bit); the 8-step distillation likewise,
moving only linear weights; the audio stage (decoder + vocoder) likewise resumes on its curve; the run whose
decoder and audio stages ran beside the DiT (`beside=True`) has the curves of the one-process resumed run; and the
packaged default: the teacher in bf16 with the decoder stage's video decoder and the audio stage's decoder and
vocoder (and vocoder config), the student as an official LoRA that reproduces it, the manifest's sizes, hashes,
recipe, curves and adherence counts."""

from __future__ import annotations

import json
import os
import sys

import background
import numpy as np
import pytest

_RUNS = """
import json, shutil, sys
from pathlib import Path
from ltx_jax.world.recipe import Recipe, reproduce
root = Path(sys.argv[1])
tiny = Recipe.tiny()
quiet = dict(log=lambda _: None)
# `ltx-jax world-default --tiny`: every stage, packaged; the decoder and audio stages in processes beside the DiT
whole = reproduce(root / "whole", tiny, beside=True, **quiet)
# The resumed run reuses the finished VAE (a finished stage is skipped) and the DiT's prepared inputs (prepare is
# idempotent): mp4 writing is not always byte-reproducible (README "Synthetic world"), so a fresh dataset could
# differ in a few pixels and the curves would not be comparable step for step.
(root / "resumed").mkdir()
shutil.copy(root / "whole" / "recipe.json", root / "resumed" / "recipe.json")
shutil.copytree(root / "whole" / "vae", root / "resumed" / "vae")
shutil.copytree(root / "whole" / "decoder", root / "resumed" / "decoder")
shutil.copytree(root / "whole" / "dit", root / "resumed" / "dit", ignore=lambda d, names: ["train"] if d == str(
    root / "whole" / "dit") else [])
first = reproduce(root / "resumed", tiny, stop_after={"dit": 6}, **quiet)
audio = reproduce(root / "resumed", tiny, stop_after={"audio": 3}, **quiet)
second = reproduce(root / "resumed", tiny, stop_after={"distill": 3}, **quiet)
third = reproduce(root / "resumed", tiny, until="distill", **quiet)
steps = lambda r, stage: r["stages"].get(stage, {}).get("steps") or r["stages"].get(stage, {}).get("step")
print(json.dumps({"whole": [steps(whole, s) for s in ("dit", "audio", "distill")], "finished": whole["finished"],
                  "first": [steps(first, "dit"), steps(first, "distill"), "model" in first["stages"]["dit"]],
                  "audio": [steps(audio, s) for s in ("dit", "audio", "distill")],
                  "second": [steps(second, "audio"), steps(second, "distill"),
                             "student" in second["stages"]["distill"]],
                  "third": [steps(third, "dit"), steps(third, "distill"), third["finished"]],
                  "manifest": whole["manifest"]}))
"""


_ROOT = background.scratch("world_dit")
# a fresh process (see test_world_train), started early beside the rest of the suite (tests/background.py)
background.register("world_dit", __name__, [sys.executable, "-c", _RUNS, str(_ROOT)],
                    env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=1800)


@pytest.fixture(scope="module")
def runs():
    result = background.result("world_dit")
    assert result.returncode == 0, result.stderr[-3000:]
    return _ROOT, json.loads(result.stdout.strip().splitlines()[-1])


def _curve(folder) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "train" / "log.jsonl").read_text().splitlines()]


def test_loss_falls(runs):
    root, _ = runs
    curve = _curve(root / "whole" / "dit")
    assert len(curve) == 16
    assert np.mean(curve[-4:]) < 0.8 * np.mean(curve[:4]), curve


def test_resumed_run_continues_the_same_curve(runs):
    root, out = runs
    assert out["whole"] == [16, 4, 10] and out["finished"]
    # call 1 stops the DiT at 6 (no model written); call 2 finishes it and stops the audio stage at 3; call 3
    # finishes the audio stage and stops distillation at 3 (no student); call 4 skips the finished stages and
    # finishes distillation, then stops before packaging (until="distill")
    assert out["first"] == [6, None, False] and out["audio"] == [16, 3, None]
    assert out["second"] == [4, 3, False] and out["third"] == [None, 10, False]
    # the interrupted run checkpoints its last step (6, between the every-4 saves) and the resume starts there
    np.testing.assert_allclose(_curve(root / "resumed" / "dit"), _curve(root / "whole" / "dit"), rtol=0, atol=1e-6)


def test_model_is_the_base_with_a_trained_transformer(runs):
    from safetensors.numpy import load_file

    root, _ = runs
    base = load_file(str(root / "whole" / "dit" / "base.safetensors"))
    model = load_file(str(root / "whole" / "dit" / "train" / "model.safetensors"))
    assert set(model) == set(base)
    with np.load(root / "whole" / "vae" / "video_vae.npz") as z:
        trained_vae = {k: z[k] for k in z.files}
    vae_keys = [k for k in model if k.startswith("vae.") and "per_channel" not in k]
    assert len(vae_keys) == len(trained_vae) - 4  # the npz holds both modules' copies of the 2 statistics
    for key in vae_keys:
        assert np.array_equal(model[key], trained_vae[key[len("vae."):]]), key
    assert np.array_equal(model["vae.per_channel_statistics.mean-of-means"],
                          trained_vae["encoder.per_channel_statistics.mean_of_means"])
    # the DiT changes; the text connectors (stored under the same prefix) stay at their initialization
    dit = {k for k in model if k.startswith("model.diffusion_model.") and "_embeddings_connector." not in k}
    changed = {k for k in model if not np.array_equal(model[k], base[k])}
    assert changed <= dit and len(changed) > 0.9 * len(dit), sorted(dit - changed)[:5]


def test_distillation_loss_falls_and_resumes_on_the_same_curve(runs):
    root, _ = runs

    def curve(name):
        return [json.loads(line)["loss"] for line in (root / name / "distill" / "loss.jsonl").read_text().splitlines()]

    whole = curve("whole")
    assert len(whole) == 10 and np.isfinite(whole).all()
    assert np.mean(whole[-3:]) < 0.8 * np.mean(whole[:3]), whole
    np.testing.assert_allclose(curve("resumed"), whole, rtol=0, atol=1e-6)


def test_audio_stage_resumes_on_the_same_curve(runs):
    root, _ = runs

    def curve(name):
        return [json.loads(line) for line in (root / name / "audio" / "loss.jsonl").read_text().splitlines()]

    whole = curve("whole")
    assert [r["step"] for r in whole] == [1, 2, 3, 4] and np.isfinite([r["loss"] for r in whole]).all()
    assert whole[-1]["loss"] < 0.9 * whole[0]["loss"], whole  # measured: 27.4 -> 22.0
    np.testing.assert_allclose([r["loss"] for r in curve("resumed")], [r["loss"] for r in whole], rtol=0, atol=1e-6)


def test_student_moves_only_linear_weights_of_the_teacher(runs):
    from safetensors.numpy import load_file

    root, _ = runs
    teacher = load_file(str(root / "whole" / "dit" / "train" / "model.safetensors"))
    student = load_file(str(root / "whole" / "distill" / "student.safetensors"))
    assert set(teacher) == set(student)
    changed = {k for k in student if not np.array_equal(student[k], teacher[k])}
    linear = {k for k in teacher if k.startswith("model.diffusion_model.") and k.endswith(".weight")
              and teacher[k].ndim == 2 and "_embeddings_connector." not in k}
    assert changed <= linear and len(changed) > 0.9 * len(linear), sorted(linear - changed)[:5]


def test_packaged_default_is_the_teacher_in_bf16_with_a_manifest(runs):
    import hashlib

    import ml_dtypes
    from safetensors.numpy import load_file

    root, out = runs
    default, manifest = root / "whole" / "default", out["manifest"]
    assert json.loads((default / "manifest.json").read_text()) == manifest
    on_disk = {str(p.relative_to(default)) for p in default.rglob("*") if p.is_file() and p.name != "manifest.json"}
    assert set(manifest["files"]) == on_disk and {"model.safetensors", "distilled-lora.safetensors",
                                                  "gemma/tokenizer.json"} <= on_disk
    for name, entry in manifest["files"].items():
        data = (default / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, name
    assert manifest["total_bytes"] == sum(e["bytes"] for e in manifest["files"].values())
    from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
    from ltx_jax.world.package import AUDIO_PARTS

    teacher = load_file(str(root / "whole" / "dit" / "train" / "model.safetensors"))
    audio = load_file(str(root / "whole" / "audio" / "audio.safetensors"))
    with np.load(root / "whole" / "decoder" / "video_vae.npz") as z:
        decoder = {"vae." + k: z[k] for k in z.files if k.startswith("decoder.") and "per_channel" not in k}
    packed = load_file(str(default / "model.safetensors"))
    # the teacher's tensors but the audio decoder's and the vocoder's, which are the audio stage's, and the video
    # decoder's, which are the decoder stage's (its encoder and statistics are the teacher's)
    assert set(packed) == {k for k in teacher if not k.startswith(AUDIO_PARTS)} | set(audio)
    assert any(k.startswith("audio_vae.decoder.") for k in audio) and any(k.startswith("vocoder.") for k in audio)
    assert len(decoder) > 10 and set(decoder) == {k for k in teacher if k.startswith("vae.decoder.")}
    assert any(not np.array_equal(decoder[k], teacher[k]) for k in decoder)  # the decoder stage moved it
    for key in packed:
        value = audio[key] if key.startswith(AUDIO_PARTS) else decoder[key] if key in decoder else teacher[key]
        assert packed[key].dtype == ml_dtypes.bfloat16, key
        assert np.array_equal(packed[key], value.astype(ml_dtypes.bfloat16)), key
    with SafetensorsFile(default / "model.safetensors") as f:
        vocoder = json.loads(f.metadata["config"])["vocoder"]["vocoder"]
    assert vocoder["upsample_rates"] == [10, 16] and vocoder["upsample_initial_channel"] == 128
    a = manifest["adherence"]  # 2 held-out prompts: dev at 2 steps with CFG (2 passes), the student at 8 sigmas
    assert (a["dev"]["transformer_evaluations"], a["student"]["transformer_evaluations"]) == (4, 8)
    assert set(a["dev"]["scores"]) == {"colour", "shape", "direction", "pitch"}
    assert manifest["recipe"]["dit"]["steps"] == 16 and manifest["data_seeds"] == {"train": 0, "vae_train": 0,
                                                                                   "held_out": 1000}
    assert len(manifest["code"]["at_training_start"]["sources_sha256"]) == 64
    import jax  # where it ran: the test's own backend and jax, at the start and at packaging
    for when in ("at_training_start", "at_packaging"):
        m = manifest["machine"][when]
        assert (m["backend"], m["jax"]) == (jax.default_backend(), jax.__version__) and m["devices"] >= 1
    curves = manifest["loss_curves"]
    # 2 VAE steps, 2 decoder steps, 16 DiT logs (10 per row), 10 distill steps, 4 audio steps (50 per row)
    assert [len(c) for c in curves.values()] == [1, 1, 2, 1, 1]
    assert manifest["video_vae_decoder"]["decoder"]["steps"] == 2
    assert manifest["video_vae_decoder"]["stage1_held_out_psnr"] == pytest.approx(
        manifest["video_vae"]["held_out_psnr"], abs=1e-4)
    assert manifest["audio"]["config"]["steps"] == 4 and "held_out_mel_l1" in manifest["audio"]


def test_distilled_lora_turns_the_teacher_into_the_student(runs):
    from safetensors.numpy import load_file

    root, out = runs
    teacher = load_file(str(root / "whole" / "dit" / "train" / "model.safetensors"))
    student = load_file(str(root / "whole" / "distill" / "student.safetensors"))
    lora = load_file(str(root / "whole" / "default" / "distilled-lora.safetensors"))
    moved = {k for k in student if not np.array_equal(student[k], teacher[k])}
    targets = {"model." + k[:-len(".lora_A.weight")] + ".weight" for k in lora if k.endswith(".lora_A.weight")}
    assert targets == moved and len(lora) == 2 * len(moved)
    worst = 0.0
    for key in moved:
        path = "diffusion_model." + key[len("model.diffusion_model."):-len(".weight")]
        b, a = (lora[f"{path}.lora_{x}.weight"].astype(np.float64) for x in "BA")
        delta = student[key].astype(np.float64) - teacher[key].astype(np.float64)
        worst = max(worst, np.linalg.norm(b @ a - delta) / np.linalg.norm(delta))
    assert worst < 1e-2  # bf16 factors (8 mantissa bits); float64 factors would be exact to the SVD
    assert abs(worst - out["manifest"]["distilled_lora"]["max_relative_error"]) < 1e-6


def test_lora_from_student_refuses_tensors_a_lora_cannot_carry(tmp_path):
    from safetensors.numpy import save_file

    from ltx_jax.world.package import lora_from_student

    w = np.ones((4, 3), np.float32)
    base = {"model.diffusion_model.proj_out.weight": w, "model.diffusion_model.proj_out.bias": np.zeros(4, np.float32)}
    save_file(base, str(tmp_path / "t.safetensors"))
    save_file({**base, "model.diffusion_model.proj_out.bias": np.ones(4, np.float32)}, str(tmp_path / "s.safetensors"))
    with pytest.raises(ValueError, match="proj_out.bias"):
        lora_from_student(tmp_path / "t.safetensors", tmp_path / "s.safetensors", tmp_path / "l.safetensors")
    assert not (tmp_path / "l.safetensors").exists()


def test_caption_contexts_hold_one_repeated_vector_past_the_caption(runs):
    """The base starts its connectors' registers at zero (`write_base_checkpoint`), so every cached context is
    the caption's tokens followed by one vector repeated to 1024 positions; with random registers the spread
    across those positions is of the order of the vectors' norm."""
    from safetensors.numpy import load_file

    root, _ = runs
    base = load_file(str(root / "whole" / "dit" / "base.safetensors"))
    registers = [k for k in base if k.endswith(".learnable_registers")]
    assert len(registers) == 2 and all(not base[k].any() for k in registers)
    index = [json.loads(line) for line in (root / "whole" / "dit" / "cache" / "index.jsonl").read_text().splitlines()]
    with np.load(root / "whole" / "dit" / "cache" / index[0]["file"]) as z:
        for name in ("video_context", "audio_context"):
            ctx = z[name]
            assert ctx.shape[0] == 1024
            tail = ctx[64:]  # a world caption is far shorter than 64 tokens
            spread = np.abs(tail - tail.mean(0)).max() / np.linalg.norm(tail, axis=-1).mean()
            assert spread < 1e-3, (name, spread)
            assert np.abs(ctx[:8] - tail[0]).max() > 0.1  # the caption's positions differ from it


def test_audio_latents_are_normalized_by_statistics_fitted_to_the_world(runs):
    """Stage 2 fits the audio VAE's latent statistics to the world's soundtracks before it caches latents
    (`train_dit.fit_audio_statistics`, on the first 128 clips: all 8 here), so the cached audio tokens have zero
    mean and unit deviation per channel. The seeded statistics it replaces (means ~0.1 apart, deviations 0.5 to
    1.5) leave channel means of 0.1 or more and deviations far from 1 (the raw latents' deviations are 0.2-0.5)."""
    from safetensors.numpy import load_file

    root, _ = runs
    dit = root / "whole" / "dit"
    index = [json.loads(line) for line in (dit / "cache" / "index.jsonl").read_text().splitlines()]
    assert len(index) == 8
    tokens = []
    for row in index:
        with np.load(dit / "cache" / row["file"]) as z:
            tokens.append(z["audio_latent"])
    tokens = np.concatenate(tokens)
    assert tokens.shape[1] == 32  # the world's audio VAE: ch 32 = z_channels 2 x 16 latent mel bins
    np.testing.assert_allclose(tokens.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(tokens.std(0), 1.0, atol=1e-3)
    base = load_file(str(dit / "base.safetensors"))
    std = base["audio_vae.per_channel_statistics.std-of-means"]
    assert std.shape == (32,) and std.min() > 0
    # The DiT's audio stream (4 heads x 16, as its video stream) is twice as wide as its tokens, so the flow
    # target eps - x0 fits through it (`train_dit.AUDIO_CH`).
    assert base["model.diffusion_model.audio_patchify_proj.weight"].shape == (64, 32)


def test_audio_swap_refuses_a_file_with_other_tensors(tmp_path):
    """`package.cast_copy(audio=...)` replaces only the audio decoder and vocoder: an audio file holding anything
    else (here a DiT weight) is refused by name, and nothing is written."""
    from safetensors.numpy import save_file

    from ltx_jax.world.package import cast_copy

    config = json.dumps({"vocoder": {"vocoder": {"upsample_rates": [10, 16]}}})
    save_file({"model.diffusion_model.proj_out.weight": np.ones((2, 2), np.float32),
               "vocoder.vocoder.conv_pre.weight": np.ones((2, 2), np.float32)}, str(tmp_path / "m.safetensors"),
              metadata={"config": config})
    save_file({"vocoder.vocoder.conv_pre.weight": np.zeros((2, 2), np.float32),
               "model.diffusion_model.proj_out.weight": np.zeros((2, 2), np.float32)},
              str(tmp_path / "a.safetensors"), metadata={"config": config})
    with pytest.raises(ValueError, match="proj_out.weight"):
        cast_copy(tmp_path / "m.safetensors", tmp_path / "out.safetensors", audio=tmp_path / "a.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_decoder_swap_refuses_a_file_with_another_encoder(tmp_path):
    """`package.cast_copy(decoder=...)` replaces only the video decoder, and only on the encoder the DiT was trained
    on: a decoder-stage file whose encoder differs is refused by name, and nothing is written."""
    from safetensors.numpy import load_file, save_file

    from ltx_jax.world.package import cast_copy

    one = np.ones((2, 2), np.float32)
    save_file({"vae.encoder.conv_in.weight": one, "vae.decoder.conv_in.weight": one,
               "vae.per_channel_statistics.mean-of-means": one[0], "model.diffusion_model.proj_out.weight": one},
              str(tmp_path / "m.safetensors"), metadata={"config": "{}"})
    stage = {"decoder.conv_in.weight": 3 * one, "encoder.per_channel_statistics.mean_of_means": one[0],
             "decoder.per_channel_statistics.mean_of_means": one[0]}
    np.savez(tmp_path / "bad.npz", **stage, **{"encoder.conv_in.weight": 2 * one})
    with pytest.raises(ValueError, match="encoder differs.*vae.encoder.conv_in.weight"):
        cast_copy(tmp_path / "m.safetensors", tmp_path / "out.safetensors", decoder=tmp_path / "bad.npz")
    assert not (tmp_path / "out.safetensors").exists()
    np.savez(tmp_path / "good.npz", **stage, **{"encoder.conv_in.weight": one})
    cast_copy(tmp_path / "m.safetensors", tmp_path / "out.safetensors", dtype=np.float32,
              decoder=tmp_path / "good.npz")
    out = load_file(str(tmp_path / "out.safetensors"))
    assert {k: float(v.flat[0]) for k, v in out.items()} == {
        "vae.encoder.conv_in.weight": 1.0, "vae.decoder.conv_in.weight": 3.0,
        "vae.per_channel_statistics.mean-of-means": 1.0, "model.diffusion_model.proj_out.weight": 1.0}


def test_recipe_override_changes_named_fields_and_refuses_unknown_ones():
    from ltx_jax.world.recipe import Recipe

    r = Recipe().override(["vae.object_weight=3", "vae.batch=4", "decoder.steps=2400", "dev_cfg=3",
                           "audio.vocoder_rates=[8, 20]"])
    assert (r.vae.object_weight, r.vae.batch, r.decoder.steps, r.dev_cfg) == (3.0, 4, 2400, 3.0)
    assert isinstance(r.vae.object_weight, float) and r.audio.vocoder_rates == (8, 20)
    assert r.dit == Recipe().dit  # untouched stages stay the defaults
    for bad, words in (("vae.nope=1", "no field 'nope' in vae"), ("x.steps=3", "no stage 'x'"),
                       ("steps", "expected STAGE.FIELD=VALUE"), ("vae=3", "no field 'vae' in the recipe"),
                       ("vae.batch=0", "batch=0 must be >= 1"), ("vae.batch=four", "vae.batch expects type int"),
                       ("vae.object_weight=true", "expects type float")):
        with pytest.raises(ValueError, match=words):
            Recipe().override([bad])
