"""Training the embedded default's video VAE on the synthetic world (issue 17, stage 1): at a tiny size the loss
falls, a run stopped and resumed continues the uninterrupted curve step for step, the written weights are the
LTX-2.3 VAE layout, and the latent statistics normalize training latents to zero mean and unit deviation. Stage 1b
(the decoder trained on with the encoder frozen) likewise: its loss falls, it resumes on its curve, and it keeps
stage 1's encoder and statistics bit for bit."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import background
import numpy as np
import pytest

from ltx_jax.world.train_decoder import DecoderTrainConfig
from ltx_jax.world.train_vae import VAETrainConfig, psnr

CFG = VAETrainConfig(latent_channels=16, decoder_base_channels=8, frames=9, height=32, width=32, batch=2, steps=10,
                     warmup_steps=2, learning_rate=2e-3, save_every=5, held_out_clips=8, object_weight=2.0,
                     scene_weight=0.0)  # the plain autoencoder; the scene read-out (on in the recipe) is tested below
# every step on the whole pool (4 clips), so the loss must fall within 10 steps
DECODER = DecoderTrainConfig(steps=10, batch=4, learning_rate=2e-3, warmup_steps=2, pool=4, save_every=4)


def _curve(path) -> list[float]:
    return [json.loads(line)["loss"] for line in (path / "loss.jsonl").read_text().splitlines()]


_RUNS = """
import json, sys
from pathlib import Path
from ltx_jax.world.train_decoder import DecoderTrainConfig, train_decoder
from ltx_jax.world.train_vae import VAETrainConfig, train_video_vae
cfg, dcfg = VAETrainConfig(**json.loads(sys.argv[1])), DecoderTrainConfig(**json.loads(sys.argv[2]))
whole, resumed = Path(sys.argv[3]), Path(sys.argv[4])
logs = []
first = train_video_vae(resumed, cfg, stop_after=4, log=logs.append)
second = train_video_vae(resumed, cfg, log=logs.append)
full = train_video_vae(whole, cfg, log=lambda _: None)
decoder = [train_decoder(resumed / "decoder", whole, dcfg, stop_after=3, log=logs.append),
           train_decoder(resumed / "decoder", whole, dcfg, log=logs.append),
           train_decoder(whole / "decoder", whole, dcfg, log=lambda _: None)]
import dataclasses
scfg = dataclasses.replace(cfg, scene_weight=1.0, steps=4, save_every=2)
scene = [train_video_vae(resumed / "scene", scfg, stop_after=2, log=logs.append),
         train_video_vae(resumed / "scene", scfg, log=logs.append),
         train_video_vae(whole / "scene", scfg, log=lambda _: None)]
print(json.dumps([first, second, full, logs, decoder]))
"""


_WHOLE, _RESUMED = background.scratch("world_train_whole"), background.scratch("world_train_resumed")
# A fresh process: the in-process suite may have switched on the persistent compilation cache (the generate tests
# do), and a cache write of this train step once crashed the whole pytest process there (SIGSEGV in jax's
# compilation_cache.put_executable_and_time; not reproduced alone). Started early beside the rest of the suite
# (tests/background.py).
background.register("world_train", __name__, [sys.executable, "-c", _RUNS, json.dumps(dataclasses.asdict(CFG)),
                                             json.dumps(dataclasses.asdict(DECODER)), str(_WHOLE), str(_RESUMED)],
                    env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=1800)


@pytest.fixture(scope="module")
def runs():
    result = background.result("world_train")
    assert result.returncode == 0, result.stderr[-3000:]
    first, second, full, logs, decoder = json.loads(result.stdout.strip().splitlines()[-1])
    return _WHOLE, _RESUMED, first, second, full, logs, decoder


def test_loss_falls(runs):
    whole, *_ = runs
    curve = _curve(whole)
    assert len(curve) == CFG.steps
    assert np.mean(curve[-3:]) < 0.8 * np.mean(curve[:3]), curve


def test_resumed_run_continues_the_same_curve(runs):
    whole, resumed, first, second, full, logs, _ = runs
    assert first["step"] == 4 and "held_out_psnr" not in first  # stopped early: no evaluation, no weights
    assert "resumed at step 4" in logs
    assert second["step"] == full["step"] == CFG.steps
    np.testing.assert_allclose(_curve(resumed), _curve(whole), rtol=0, atol=1e-6)
    assert second["held_out_psnr"] == pytest.approx(full["held_out_psnr"], abs=1e-4)
    # the collapse diagnostic: a fraction of the latent's deviation, the same for the resumed run
    assert 0.0 < full["latent_spread"] <= 1.0, full
    assert second["latent_spread"] == pytest.approx(full["latent_spread"], abs=1e-4)


def test_weights_are_the_official_vae_layout_with_fitted_statistics(runs):
    from flax import nnx

    from ltx_jax.checkpoint.layout import module_keys
    from ltx_jax.checkpoint.schema import vae_decoder_schema, vae_encoder_schema
    from ltx_jax.configs import Runtime
    from ltx_jax.video_vae import VideoDecoder, VideoEncoder
    from ltx_jax.world.train_vae import video_vae_config

    whole, *_ = runs
    with np.load(whole / "video_vae.npz") as z:
        saved = {k: z[k] for k in z.files}
    vae = video_vae_config(CFG)
    rt = Runtime(param_dtype="float32", compute_dtype="float32")
    enc = nnx.eval_shape(lambda: VideoEncoder(vae, rt, rngs=nnx.Rngs(0)))
    dec = nnx.eval_shape(lambda: VideoDecoder(vae, rt, rngs=nnx.Rngs(0)))
    expected = {**{"encoder." + k: s for k, (_, s, _) in module_keys(nnx.state(enc)).items()},
                **{"decoder." + k: s for k, (_, s, _) in module_keys(nnx.state(dec)).items()}}
    got = {k.replace("_of_", "-of-") if "per_channel_statistics" in k else k: v.shape for k, v in saved.items()}
    assert got == expected
    # the official schema (independent of our modules) names the same tensors
    official = {**vae_encoder_schema(vae), **vae_decoder_schema(vae)}
    assert {"vae." + k for k in got if "per_channel" not in k} == {k for k in official if "per_channel" not in k}
    mean = saved["encoder.per_channel_statistics.mean_of_means"]
    std = saved["encoder.per_channel_statistics.std_of_means"]
    np.testing.assert_array_equal(mean, saved["decoder.per_channel_statistics.mean_of_means"])
    assert np.all(std > 0)


def test_scene_head_trains_resumes_and_is_not_kept(runs):
    """With `scene_weight` the loss has the read-out term (the first step's loss, same weights and clips, is
    larger), a resumed run continues its curve, and the written weights are the plain autoencoder's tensors."""
    whole, resumed, *_ = runs
    np.testing.assert_allclose(_curve(resumed / "scene"), _curve(whole / "scene"), rtol=0, atol=1e-6)
    assert _curve(whole / "scene")[0] > _curve(whole)[0] + 1e-3
    with np.load(whole / "video_vae.npz") as plain, np.load(whole / "scene" / "video_vae.npz") as scene:
        assert sorted(scene.files) == sorted(plain.files)
        assert all(scene[k].shape == plain[k].shape for k in plain.files)


@pytest.mark.parametrize("index", range(24))
def test_scene_targets_describe_the_rendered_clip(index):
    """The read-out targets against the rendered pixels: the background rebuilt from the phase targets equals the
    frame where the object is not, and the centres are the object's centroid (circles and squares)."""
    from ltx_jax.world.dataset import make_clip
    from ltx_jax.world.grammar import grammar
    from ltx_jax.world.train_vae import scene_targets

    g = grammar()
    spec = CFG.world(5)
    scene, frames, _ = make_clip(spec, index)
    t = scene_targets(spec, index, 1)[0]
    n_s, n_c, n_b = len(g.shapes), len(g.colours), len(g.backgrounds)
    assert g.shapes[int(np.argmax(t[:n_s]))] == scene.shape and t[:n_s].sum() == 1
    assert list(g.colours)[int(np.argmax(t[n_s:n_s + n_c]))] == scene.colour
    assert list(g.backgrounds)[int(np.argmax(t[n_s + n_c:n_s + n_c + n_b]))] == scene.background
    c = t[n_s + n_c + n_b:n_s + n_c + n_b + 4]
    bg = g.backgrounds[scene.background]
    y, x = np.mgrid[0:spec.height, 0:spec.width]
    w = 2 * np.pi / bg.get("period", 8)
    cx, sx, cy, sy = np.cos(w * x), np.sin(w * x), np.cos(w * y), np.sin(w * y)
    # cos(wx + a) cos(wy + b) expanded: the four targets are its coefficients
    wave = {"plain": np.ones_like(x, np.float64), "stripes": cx * c[0] - sx * c[1],
            "checks": cx * cy * c[0] - cx * sy * c[1] - sx * cy * c[2] + sx * sy * c[3]}[bg["kind"]]
    if bg["kind"] == "plain":
        assert not c.any()
    levels = bg["levels"] + bg["levels"][-1:]
    rebuilt = levels[0] + (levels[1] - levels[0]) * (0.5 - 0.5 * wave)
    first = frames[0].astype(np.float64)
    grey = (first.max(-1) - first.min(-1)) == 0  # not touched by the object
    assert grey.mean() > 0.5
    np.testing.assert_allclose(first[..., 0][grey], rebuilt[grey], atol=0.51)  # rounding to uint8
    if scene.shape in ("circle", "square"):
        for f, (cx, cy) in ((0, t[-5:-3]), (-1, t[-3:-1])):
            sat = frames[f].astype(np.float64).max(-1) - frames[f].astype(np.float64).min(-1)
            inside = sat / sat.max()
            centroid = [(inside * x).sum() / inside.sum() + 0.5, (inside * y).sum() / inside.sum() + 0.5]
            np.testing.assert_allclose(centroid, [(cx + 1) / 2 * spec.width, (cy + 1) / 2 * spec.height], atol=0.3)


def test_object_pixels_weigh_more():
    import jax.numpy as jnp
    from ltx_jax.world.train_vae import pixel_weights
    rgb = np.array([[25, 25, 25], [110, 110, 110], [220, 40, 40], [40, 90, 230], [60, 50, 50]], np.float32)
    w = np.asarray(pixel_weights(jnp.asarray(rgb / 127.5 - 1.0), 10.0))[:, 0]
    # grey -> 1; every named colour (saturation >= 0.74 of full scale) -> 1 + 10; a faint tint of 10 levels:
    # saturation 10 / 255, x4 = 0.157
    np.testing.assert_allclose(w, [1.0, 1.0, 11.0, 11.0, 1.0 + 10 * 4 * 10 / 255], rtol=1e-5)


def test_held_out_agreement_is_reported(runs):
    *_, full, _, _ = runs
    agreement = full["held_out_agreement"]
    assert set(agreement) == {"colour", "shape", "direction"}
    assert all(0.0 <= v <= 100.0 for v in agreement.values())


def test_psnr_is_the_textbook_formula():
    a = np.zeros((2, 3), np.float32)
    b = np.full((2, 3), 0.2, np.float32)  # [-1, 1] scale: 0.1 on [0, 1], MSE 0.01 -> 20 dB
    assert psnr(b, a) == pytest.approx(20.0, abs=1e-5)
    assert psnr(np.full((2, 3), 3.0), np.ones((2, 3))) > 100  # clipped to the valid range first


def test_bad_settings_are_refused_before_anything_is_written(tmp_path):
    import subprocess
    import sys
    with pytest.raises(ValueError, match="multiples of 32"):
        VAETrainConfig(height=48)
    with pytest.raises(ValueError, match="batch=0"):
        VAETrainConfig(batch=0)
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "ltx_jax.cli", "world-vae", "--out", str(out), "--frames", "8"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "1 + 8k" in result.stderr and not out.exists()
    result = subprocess.run([sys.executable, "-m", "ltx_jax.cli", "world-vae", "--out", str(out), "--scene-weight",
                             "-1"], capture_output=True, text=True)
    assert result.returncode == 2 and "scene_weight=-1.0 must be >= 0" in result.stderr and not out.exists()


def test_decoder_stage_loss_falls_and_resumes_on_the_same_curve(runs):
    whole, resumed, *_, full, logs, (first, second, done) = runs
    curve = _curve(whole / "decoder")
    assert len(curve) == DECODER.steps
    assert np.mean(curve[-3:]) < 0.8 * np.mean(curve[:3]), curve
    assert first["step"] == 3 and "held_out_psnr" not in first
    assert logs.count("resumed at step 3") == 1
    np.testing.assert_allclose(_curve(resumed / "decoder"), curve, rtol=0, atol=1e-6)
    assert second["held_out_psnr"] == pytest.approx(done["held_out_psnr"], abs=1e-4)
    # its "before" is stage 1's own held-out PSNR, measured again on the weights read back from video_vae.npz
    assert done["stage1_held_out_psnr"] == pytest.approx(full["held_out_psnr"], abs=1e-4)
    assert set(done["held_out_agreement"]) == {"colour", "shape", "direction"}


def test_decoder_stage_keeps_the_encoder_and_moves_only_the_decoder(runs):
    whole, *_ = runs
    with np.load(whole / "video_vae.npz") as a, np.load(whole / "decoder" / "video_vae.npz") as b:
        assert set(a.files) == set(b.files)
        for key in a.files:
            same = np.array_equal(a[key], b[key])
            # statistics are buffers, not trained: kept with the encoder
            assert same == (not key.startswith("decoder.") or "per_channel_statistics" in key), key
    meta = json.loads((whole / "decoder" / "video_vae.json").read_text())
    assert meta["config"] == json.loads((whole / "video_vae.json").read_text())["config"]
    assert meta["decoder"]["steps"] == DECODER.steps


def test_decoder_stage_refuses_bad_settings():
    with pytest.raises(ValueError, match="pool=4 clips cannot fill a batch of 8"):
        DecoderTrainConfig(pool=4, batch=8)
    with pytest.raises(ValueError, match="steps=0"):
        DecoderTrainConfig(steps=0)
