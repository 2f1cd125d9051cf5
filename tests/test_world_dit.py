"""Training the embedded default's DiT on the synthetic world (issue 17, stage 2) at a tiny size: the
reproduce path (a finished world VAE -> the official single-file base -> world dataset -> latent cache ->
`ltx-jax train`) runs, the loss falls, a run stopped and resumed continues the uninterrupted curve, and the
written model is the base file with only the transformer changed (the trained VAE is in it, bit for bit); and
stage 3, the distillation of that model into an 8-step student, likewise (loss falls, resume = uninterrupted)."""

from __future__ import annotations

import json

import numpy as np
import pytest

_RUNS = """
import json, sys
from pathlib import Path
from ltx_jax.world.train_vae import VAETrainConfig, train_video_vae, load_trained, video_vae_config
from ltx_jax.world.train_dit import DiTTrainConfig, train_dit
root = Path(sys.argv[1])
train_video_vae(root / "vae", VAETrainConfig(latent_channels=16, decoder_base_channels=8, frames=9, height=32,
                width=32, batch=2, steps=2, warmup_steps=1, save_every=2, held_out_clips=8), log=lambda _: None)
vae_cfg, weights = load_trained(root / "vae")
cfg = DiTTrainConfig(clips=8, layers=2, steps=16, batch=4, learning_rate=3e-3, warmup_steps=2, checkpoint_every=4,
                     log_every=1, caption_dropout_p=0.25)
kw = dict(frames=9, height=32, width=32, log=lambda _: None)
vae = video_vae_config(vae_cfg)
whole = train_dit(root / "whole", weights, vae, cfg, **kw)
import shutil  # the resumed run reuses the prepared inputs (prepare is idempotent: tested by the equal curves)
shutil.copytree(root / "whole", root / "resumed",
                ignore=lambda d, names: ["train"] if d == str(root / "whole") else [])
first = train_dit(root / "resumed", weights, vae, cfg, stop_after=6, **kw)
second = train_dit(root / "resumed", weights, vae, cfg, **kw)
from ltx_jax.world.distill import DistillConfig, distill
dcfg = DistillConfig(steps=10, batch=4, learning_rate=1e-3, warmup_steps=1, substeps=1, checkpoint_every=5)
d_whole = distill(root / "whole", root / "distill_whole", dcfg, log=lambda _: None)
d_first = distill(root / "whole", root / "distill_resumed", dcfg, stop_after=3, log=lambda _: None)
d_second = distill(root / "whole", root / "distill_resumed", dcfg, log=lambda _: None)
print(json.dumps({"whole": whole["steps"], "first": first["steps"], "second": second["steps"],
                  "model": whole.get("model"), "first_model": first.get("model"),
                  "distill": [d_whole["steps"], d_first["steps"], d_second["steps"]],
                  "student": d_whole.get("student"), "first_student": d_first.get("student")}))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import os
    import subprocess
    import sys
    root = tmp_path_factory.mktemp("world_dit")
    result = subprocess.run([sys.executable, "-c", _RUNS, str(root)], capture_output=True, text=True,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})  # fresh process: see test_world_train
    assert result.returncode == 0, result.stderr[-3000:]
    return root, json.loads(result.stdout.strip().splitlines()[-1])


def _curve(folder) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "train" / "log.jsonl").read_text().splitlines()]


def test_loss_falls(runs):
    root, _ = runs
    curve = _curve(root / "whole")
    assert len(curve) == 16
    assert np.mean(curve[-4:]) < 0.8 * np.mean(curve[:4]), curve


def test_resumed_run_continues_the_same_curve(runs):
    root, out = runs
    assert (out["first"], out["second"], out["whole"]) == (6, 16, 16)
    assert out["first_model"] is None and out["model"]  # an interrupted run writes no model
    # the interrupted run checkpoints its last step (6, between the every-4 saves) and the resume starts there
    np.testing.assert_allclose(_curve(root / "resumed"), _curve(root / "whole"), rtol=0, atol=1e-6)


def test_model_is_the_base_with_a_trained_transformer(runs):
    from safetensors.numpy import load_file

    root, out = runs
    base = load_file(str(root / "whole" / "base.safetensors"))
    model = load_file(out["model"])
    assert set(model) == set(base)
    with np.load(root / "vae" / "video_vae.npz") as z:
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
    root, out = runs
    assert out["distill"] == [10, 3, 10] and out["first_student"] is None and out["student"]

    def curve(name):
        return [json.loads(line)["loss"] for line in (root / name / "loss.jsonl").read_text().splitlines()]

    whole = curve("distill_whole")
    assert len(whole) == 10 and np.isfinite(whole).all()
    assert np.mean(whole[-3:]) < 0.8 * np.mean(whole[:3]), whole
    np.testing.assert_allclose(curve("distill_resumed"), whole, rtol=0, atol=1e-6)


def test_student_is_the_teacher_file_with_a_new_transformer(runs):
    from safetensors.numpy import load_file

    _, out = runs
    teacher, student = load_file(out["model"]), load_file(out["student"])
    assert set(teacher) == set(student)
    changed = [k for k in student if not np.array_equal(student[k], teacher[k])]
    assert changed and all(k.startswith("model.diffusion_model.") for k in changed)


def test_caption_contexts_hold_one_repeated_vector_past_the_caption(runs):
    """The base starts its connectors' registers at zero (`write_base_checkpoint`), so every cached context is
    the caption's tokens followed by one vector repeated to 1024 positions; with random registers the spread
    across those positions is of the order of the vectors' norm."""
    from safetensors.numpy import load_file

    root, _ = runs
    base = load_file(str(root / "whole" / "base.safetensors"))
    registers = [k for k in base if k.endswith(".learnable_registers")]
    assert len(registers) == 2 and all(not base[k].any() for k in registers)
    index = [json.loads(line) for line in (root / "whole" / "cache" / "index.jsonl").read_text().splitlines()]
    with np.load(root / "whole" / "cache" / index[0]["file"]) as z:
        for name in ("video_context", "audio_context"):
            ctx = z[name]
            assert ctx.shape[0] == 1024
            tail = ctx[64:]  # a world caption is far shorter than 64 tokens
            spread = np.abs(tail - tail.mean(0)).max() / np.linalg.norm(tail, axis=-1).mean()
            assert spread < 1e-3, (name, spread)
            assert np.abs(ctx[:8] - tail[0]).max() > 0.1  # the caption's positions differ from it
