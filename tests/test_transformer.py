"""The DiT against the official ltx-core 1.0.0 modules: fixture parity (3 seeds x both tiny variants, float32),
the official bf16 pipeline, and a batch-2 case built here (per-sample sigma, per-token timesteps, a
self-attention mask, a text mask, per-sample STG / isolation, audio-only and a disabled stream), run through
the official `X0Model` in the reference environment."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ltx_jax.parity import Fixture, run_parity
from ltx_jax.parity import transformer as P
from ltx_jax.transformer import Modality, Perturbations, forward
from conftest import run_ref_python

pytestmark = pytest.mark.reference


def _cos_rel(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    o, r = np.asarray(ours, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
    return float(o @ r / (np.linalg.norm(o) * np.linalg.norm(r))), float(np.linalg.norm(o - r) / np.linalg.norm(r))


def test_transformer_parity_float32(reference_seeds):
    """Velocity and x0 of the main case, video-only, STG on the last block, isolation, keyframe tokens."""
    report = run_parity(reference_seeds, only="^transformer$")
    names = set(report.arrays)
    layers = json.loads((reference_seeds / "manifest.json").read_text())["config"]["transformer"]["num_layers"]
    for case in ("", f"stg_block{layers - 1}.", "isolated.", "keyframe."):
        for kind in ("velocity", "x0"):
            assert {f"transformer.out.{case}video_{kind}", f"transformer.out.{case}audio_{kind}"} <= names
    assert "transformer.out.video_velocity_video_only" in names
    bad = {n: a for n, a in report.arrays.items() if not a["max_rel_err"] <= 2e-5}
    assert not bad, bad
    # the cases really differ from the main one (a skipped switch would pass the bound trivially)
    fx = Fixture(reference_seeds)
    for case in (f"stg_block{layers - 1}", "isolated"):
        assert np.abs(fx[f"transformer.out.{case}.video_velocity"] - fx["transformer.out.video_velocity"]).max() > 1e-3


def test_transformer_bf16_against_official_bf16(reference):
    fx = Fixture(reference)
    layers = fx.manifest["config"]["transformer"]["num_layers"]
    ours = P.run_transformer_case(fx, P.BF16, "transformer.in", Perturbations.none(layers, 1))
    for name, value in ours.items():
        cos, rel = _cos_rel(value, fx[f"transformer.out_bf16.{name}"])
        assert cos >= 0.999 and rel <= 2e-2, (name, cos, rel)


def test_perturbations_do_not_recompile(reference):
    fx = Fixture(reference)
    _, dit, _ = P.models(fx, P.F32)
    video = P._modality(fx, "video", jnp.float32)
    audio = P._modality(fx, "audio", jnp.float32)
    outs, sizes = [], []
    layers = fx.manifest["config"]["transformer"]["num_layers"]
    for per_sample in ([], [("video_self_attn", [0])], [("a2v_cross_attn", None), ("v2a_cross_attn", [1])]):
        outs.append(forward(*dit, video, audio, Perturbations.build(layers, [per_sample])))
        sizes.append(forward._cache_size())
    assert sizes[0] == sizes[1] == sizes[2]
    assert np.abs(np.asarray(outs[0][0]) - np.asarray(outs[1][0])).max() > 1e-3


# ---------------------------------------------------------------------------------------------
# Batch 2 through the official X0Model (the fixtures are batch 1).
# ---------------------------------------------------------------------------------------------

OFFICIAL_BATCH = r"""
import sys, json
sys.path.insert(0, "tests/reference")
from pathlib import Path
import numpy as np, torch
from ltxref.weights import ledger
from ltx_core.guidance.perturbations import (BatchedPerturbationConfig, Perturbation, PerturbationConfig,
                                             PerturbationType)
from ltx_core.model.transformer import Modality
fixture, inputs, out_path = Path(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3]
x0_model = ledger(fixture, torch.float32).transformer()
t = lambda k: torch.from_numpy(inputs[k])
def modality(s, enabled=True, masks=True):
    return Modality(latent=t(f"{s}.latent"), sigma=t("sigma"), timesteps=t(f"{s}.timesteps"), positions=t(f"{s}.positions"),
                    context=t(f"{s}.context"), enabled=enabled,
                    context_mask=t(f"{s}.context_mask") if masks else None,
                    attention_mask=t(f"{s}.attention_mask") if masks and s == "video" else None)
T = PerturbationType
pert = BatchedPerturbationConfig([
    PerturbationConfig([Perturbation(T.SKIP_VIDEO_SELF_ATTN, [0]), Perturbation(T.SKIP_AUDIO_SELF_ATTN, [1])]),
    PerturbationConfig([Perturbation(T.SKIP_A2V_CROSS_ATTN, None), Perturbation(T.SKIP_V2A_CROSS_ATTN, [0])]),
])
out = {}
with torch.no_grad():
    v, a = x0_model(video=modality("video"), audio=modality("audio"), perturbations=pert)
    out["x0.video"], out["x0.audio"] = v.numpy(), a.numpy()
    _, a = x0_model.velocity_model(video=None, audio=modality("audio", masks=False), perturbations=None)
    out["audio_only"] = a.numpy()
    v, a = x0_model.velocity_model(video=modality("video", masks=False), audio=modality("audio", False, False),
                                   perturbations=None)
    out["audio_disabled.video"], out["audio_disabled.audio"] = v.numpy(), a.numpy()
np.savez(out_path, **out)
"""

# Our side of the same perturbations: [layers, batch] skip switches.
PERTURBATIONS = [[("video_self_attn", [0]), ("audio_self_attn", [1])],
                 [("a2v_cross_attn", None), ("v2a_cross_attn", [0])]]


def _batch_inputs(fx: Fixture) -> dict[str, np.ndarray]:
    """Batch 2 from the fixture's shapes: different sigmas, clean first-frame tokens in sample 0 only,
    a random self-attention mask with zeros, a text mask with padding in sample 1."""
    rng = np.random.default_rng(7)
    sigma = np.array([0.3, 0.8], np.float32)
    out = {"sigma": sigma}
    for s in ("video", "audio"):
        latent = fx[f"transformer.in.{s}.latent"]
        tokens, ctx = latent.shape[1], fx[f"transformer.in.{s}.context"]
        mask = np.ones((2, tokens, 1), np.float32)
        if s == "video":
            mask[0, :16] = 0.0  # conditioning tokens at t = 0
        out[f"{s}.latent"] = rng.standard_normal((2, *latent.shape[1:]), dtype=np.float32)
        out[f"{s}.timesteps"] = mask * sigma[:, None, None]
        out[f"{s}.positions"] = np.repeat(fx[f"transformer.in.{s}.positions"], 2, axis=0)
        out[f"{s}.context"] = rng.standard_normal((2, *ctx.shape[1:]), dtype=np.float32)
        cmask = np.ones((2, ctx.shape[1]), np.int64)
        cmask[1, : ctx.shape[1] // 3] = 0
        out[f"{s}.context_mask"] = cmask
    tv = out["video.latent"].shape[1]
    attn = rng.uniform(0.0, 1.0, (2, tv, tv)).astype(np.float32)
    attn[attn < 0.2] = 0.0
    out["video.attention_mask"] = attn
    return out


def _ours_modality(inputs, s: str, *, masks: bool = True, enabled: bool = True) -> Modality:
    a = lambda k: jnp.asarray(inputs[f"{s}.{k}"])  # noqa: E731
    return Modality(latent=a("latent"), sigma=jnp.asarray(inputs["sigma"]), timesteps=a("timesteps"),
                    positions=a("positions"), context=a("context"), enabled=enabled,
                    context_mask=a("context_mask") if masks else None,
                    attention_mask=a("attention_mask") if masks and s == "video" else None)


def test_batch2_masks_and_stream_switches_against_official(reference, tmp_path):
    fx = Fixture(reference)
    inputs = _batch_inputs(fx)
    np.savez(tmp_path / "in.npz", **inputs)
    run_ref_python(OFFICIAL_BATCH, str(reference), str(tmp_path / "in.npz"), str(tmp_path / "out.npz"))
    ref = dict(np.load(tmp_path / "out.npz"))
    _, dit, _ = P.models(fx, P.F32)
    layers = fx.manifest["config"]["transformer"]["num_layers"]
    ours = {}
    v, a = forward(*dit, _ours_modality(inputs, "video"), _ours_modality(inputs, "audio"),
                   Perturbations.build(layers, PERTURBATIONS), x0=True)
    ours["x0.video"], ours["x0.audio"] = v, a
    _, ours["audio_only"] = forward(*dit, None, _ours_modality(inputs, "audio", masks=False))
    ours["audio_disabled.video"], ours["audio_disabled.audio"] = forward(
        *dit, _ours_modality(inputs, "video", masks=False), _ours_modality(inputs, "audio", masks=False, enabled=False))
    for name, value in ours.items():
        err = np.abs(np.asarray(value) - ref[name]).max() / np.abs(ref[name]).max()
        assert err <= 2e-5, (name, err)
    # each sample differs from the same sample run without its perturbations / masks
    plain_v, _ = forward(*dit, _ours_modality(inputs, "video", masks=False), _ours_modality(inputs, "audio", masks=False),
                         x0=True)
    for b in (0, 1):
        assert np.abs(np.asarray(plain_v)[b] - ref["x0.video"][b]).max() > 1e-3


def test_av_ca_timestep_multiplier_of_one_against_official(tmp_path):
    """ltx-core's code default `av_ca_timestep_scale_multiplier=1` (the released configs use 1000): the AV gate
    then sees sigma * 1000 * (1 / 1000). Same checkpoint, config edited in its metadata."""
    from ltx_jax.checkpoint.safetensors_file import SafetensorsFile, save_file
    from ltx_jax.transformer import load_transformer
    from conftest import build_reference

    source = build_reference("ltx23-tiny", 0)
    f = SafetensorsFile(source / "ltx_checkpoint.safetensors")
    config = json.loads(f.metadata["config"])
    config["transformer"]["av_ca_timestep_scale_multiplier"] = 1
    (tmp_path / "fx").mkdir()
    save_file(dict(f), tmp_path / "fx" / "ltx_checkpoint.safetensors", {**f.metadata, "config": json.dumps(config)})
    inputs = _batch_inputs(Fixture(source))
    np.savez(tmp_path / "in.npz", **inputs)
    run_ref_python(OFFICIAL_BATCH, str(tmp_path / "fx"), str(tmp_path / "in.npz"), str(tmp_path / "out.npz"))
    ref = np.load(tmp_path / "out.npz")["x0.video"]
    model = load_transformer(tmp_path / "fx" / "ltx_checkpoint.safetensors", P.F32)
    assert model.config.av_ca_timestep_scale_multiplier == 1
    dit = nnx.split(model)
    layers = config["transformer"]["num_layers"]
    v, _ = forward(*dit, _ours_modality(inputs, "video"), _ours_modality(inputs, "audio"),
                   Perturbations.build(layers, PERTURBATIONS), x0=True)
    assert np.abs(np.asarray(v) - ref).max() / np.abs(ref).max() <= 2e-5
    base, _ = forward(*P.models(Fixture(source), P.F32)[1], _ours_modality(inputs, "video"),
                      _ours_modality(inputs, "audio"), Perturbations.build(layers, PERTURBATIONS), x0=True)
    assert np.abs(np.asarray(base) - ref).max() > 1e-3  # the multiplier matters
