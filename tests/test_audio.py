"""The audio path: parity with ltx-core on the audio fixtures, the clamp, chunked decode, lengths, config refusal.

Parity runs `ltx_jax.parity` (what `experiments/parity.py` runs) on official fixture directories built by
tests/reference/build_audio.py (docs/reference-fixtures-audio.md). The other tests need no reference: chunked
decoding is compared with whole decoding, lengths with ltx-core's formulas (round(F / fps * 25) latents,
4T - 3 mel frames, samples per mel frame = product of the rates), the container with what PyAV reads back.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from flax import nnx
from conftest import build_audio_reference

from ltx_jax.configs import LTX_2_3_TINY_AV, ConfigError, Runtime, VocoderConfig
from ltx_jax.configs.presets import TINY_VOCODER_2_3

F32 = Runtime(param_dtype="float32", compute_dtype="float32")


# --- parity with the official modules ------------------------------------------------------------------

@pytest.mark.parametrize("config", ["ltx2-audio-tiny", "ltx23-audio-tiny", "ltx23-audio-odd"])
def test_parity_with_official_audio_path(config):
    """Every recorded array of the fixture (each latent length) within 1e-4 relative, none skipped."""
    from ltx_jax.parity import run_parity
    path = build_audio_reference(config)
    report = run_parity(path)
    bad = {k: v for k, v in report.arrays.items() if not v["ok"]}
    assert not bad, bad
    assert not report.skipped, report.skipped
    manifest = json.loads((path / "manifest.json").read_text())
    expected = {n for n in manifest["arrays"] if ".mid." in n or ".out." in n
                or (n.startswith("audio_decode.in.latent") and n.replace(".latent", ".tokens") in manifest["arrays"])}
    assert set(report.arrays) == expected
    if config == "ltx23-audio-odd":  # the configuration that runs the BWE's pad-to-hop branch and final crop
        assert all(v["padded"] for v in manifest["lengths"].values())


def test_bwe_clamp_is_the_official_one():
    """clamp(residual + skip, -1, 1) before the crop: saturated reference samples are exactly +-1 in ours too
    (where our unclamped value is clearly past the bound), and nothing exceeds 1."""
    from flax import nnx

    from ltx_jax.parity import Fixture
    from ltx_jax.parity.audio import _forward, load
    fx = Fixture(build_audio_reference("ltx23-audio-odd"))
    modules = load(fx)
    graphdefs, states = zip(*(nnx.split(m) for m in modules))
    t = max(fx.manifest["latent_lengths"])
    out = _forward(tuple(graphdefs), tuple(states), fx[f"audio_decode.in.latent.T{t}"], fx[f"vocoder.in.mel.T{t}"])
    stages = {k: np.asarray(v[:1]) for k, v in out["stages"].items()}
    ref = fx[f"vocoder.out.waveform.T{t}"]
    ours = np.moveaxis(stages["waveform"], -1, 1)
    raw = np.moveaxis(stages["bwe_residual"] + stages["bwe_skip"], -1, 1)[..., : ours.shape[-1]]
    saturated = np.abs(ref) == 1.0
    assert saturated.sum() >= 10, "the fixture should exercise the clamp"
    clear = saturated & (np.abs(raw) > 1.0 + 1e-3)
    assert clear.sum() >= 0.9 * saturated.sum()
    np.testing.assert_array_equal(ours[clear], ref[clear])
    assert np.abs(ours).max() <= 1.0
    assert ours.shape[-1] == 3 * stages["waveform_16k"].shape[1] < 3 * stages["waveform_16k_padded"].shape[1]


# --- tiny audio modules with synthetic weights (no reference needed) ------------------------------------------

def _tiny_audio(tmp_path_factory, vocoder: VocoderConfig, name: str):
    from ltx_jax.audio_vae import load_audio_decoder, load_vocoder
    from ltx_jax.audio_vae import audio_schema
    from ltx_jax.checkpoint.synthetic import write_schema_file
    config = dataclasses.replace(LTX_2_3_TINY_AV, vocoder=vocoder)
    path = tmp_path_factory.mktemp("audio") / f"{name}.safetensors"
    meta = {"config": json.dumps({"audio_vae": config.audio_vae.to_dict(), "vocoder": vocoder.to_dict()})}
    write_schema_file(audio_schema(config), path, meta, seed=3, config=config)
    return path, load_audio_decoder(path, F32), load_vocoder(path, F32)


@pytest.fixture(scope="module")
def tiny_av(tmp_path_factory):
    return _tiny_audio(tmp_path_factory, TINY_VOCODER_2_3, "av")


@pytest.fixture(scope="module")
def tiny_padded(tmp_path_factory):
    """The demo vocoder with stage-1 rates [3, 5, 2, 2, 2] (120 samples per mel frame, never a multiple of the
    BWE hop 80 for odd mel counts): pad-to-hop runs and the chunk grid must keep 2-frame alignment."""
    voc = dataclasses.replace(TINY_VOCODER_2_3, upsample_rates=(3, 5, 2, 2, 2), upsample_kernel_sizes=(7, 11, 4, 4, 4),
                              upsample_initial_channel=32)
    return _tiny_audio(tmp_path_factory, voc, "padded")


def _latent(t: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 8, t, 16)).astype(np.float32)


def test_chunked_decode_equals_whole(tiny_padded, monkeypatch):
    """Windows of 6 latents / 24 mel frames (+ context) against one pass, on the configuration where the window
    grid must keep 2-frame alignment for the BWE's STFT and the last window runs the pad-to-hop branch; batch 2."""
    from ltx_jax.audio_vae import chunking, decode_audio, decode_audio_chunked
    _, decoder, vocoder = tiny_padded
    latent = np.concatenate([_latent(40, 0), _latent(40, 1)])
    whole, rate = decode_audio(decoder, vocoder, latent)
    whole = np.asarray(whole)
    chunked, rate2 = decode_audio_chunked(decoder, vocoder, latent, chunk_latents=6, chunk_mel=24)
    assert rate == rate2 == 48000 and chunked.shape == whole.shape == (2, 2, (4 * 40 - 3) * vocoder.hop)
    assert chunking.vocoder_context(vocoder)[1] == 2 and (4 * 40 - 3) * 120 % 80  # aligned grid, padded end
    scale = np.abs(whole).max()
    assert 0.05 < scale and np.abs(chunked - whole).max() <= 1e-5 * scale
    # The context is what makes the seams exact: without it the seams are visibly wrong.
    # (A 2-frame context with the chunk grown by what the context lost keeps the window shape: no new compile.)
    context, align = chunking.vocoder_context(vocoder)
    context += (-context) % align
    monkeypatch.setattr(chunking, "vocoder_context", lambda v: (2, align))
    mel = chunking.decode_mel_chunked(decoder, latent, 6, chunking_run())
    broken = chunking.vocode_chunked(vocoder, mel, 24 + 2 * (context - 2), chunking_run())
    assert broken.shape == whole.shape and np.abs(broken - whole).max() > 1e-4 * scale  # 10x the bound above


def chunking_run():
    from ltx_jax.audio_vae.api import run_jitted
    return run_jitted


@pytest.mark.parametrize("frames,fps", [(1, 24.0), (9, 24.0), (17, 30.0), (49, 25.0), (121, 24.0)])
def test_waveform_length_and_rate_follow_the_video(tiny_av, frames, fps):
    """round(F / fps * 25) latents -> 4T - 3 mel frames (decoded) -> x160 (16 kHz stage) x3 (BWE) samples at 48 kHz;
    the whole waveform is decoded for the 1-frame video (one mel frame)."""
    from ltx_jax.audio_vae import decode_audio, decode_mel, output_samples
    from ltx_jax.sampling import audio_token_count
    _, decoder, vocoder = tiny_av
    t = audio_token_count(frames, fps)
    assert t == round(frames / fps * 25)
    mel = decode_mel(decoder, _latent(t))
    assert mel.shape == (1, 2, max(4 * t - 3, 1), 64)
    expected = mel.shape[2] * 160 * 3
    assert output_samples(decoder, vocoder, t) == expected
    assert abs(expected / 48000 - frames / fps) <= 0.5 / 25 + 3 / 100  # latent rounding + the 3 causal mel frames
    if frames == 1:
        wave, rate = decode_audio(decoder, vocoder, _latent(t))
        assert rate == 48000 and wave.shape == (1, 2, expected) == (1, 2, 480)
        assert np.isfinite(np.asarray(wave)).all() and np.abs(np.asarray(wave)).max() <= 1.0


# --- config and key strictness ----------------------------------------------------------------------------

@pytest.mark.parametrize("mutate,message", [
    (lambda a, v: a["model"]["params"]["ddconfig"].pop("mid_block_add_attention"), "mid_block_add_attention"),
    (lambda a, v: a["model"]["params"]["ddconfig"].update(attn_resolutions=[64]), "attn_resolutions"),
    (lambda a, v: v["bwe"].update(num_mels=32), "num_mels"),
    (lambda a, v: v["vocoder"].update(resblock_kernel_sizes=[4]), "even resblock"),
    (lambda a, v: v["bwe"].update(upsample_rates=[6, 5, 2, 2], upsample_kernel_sizes=[12, 11, 4, 4]),
     "must match the skip"),
    (lambda a, v: v["vocoder"].update(activation="snake"), "snakebeta"),
])
def test_unsupported_configs_are_refused(mutate, message):
    from ltx_jax.audio_vae.loading import (audio_vae_config_from_metadata, build_audio_decoder, build_vocoder,
                                           vocoder_config_from_metadata)
    a, v = LTX_2_3_TINY_AV.audio_vae.to_dict(), LTX_2_3_TINY_AV.vocoder.to_dict()
    mutate(a, v)
    meta = {"config": json.dumps({"audio_vae": a, "vocoder": v})}
    with pytest.raises(ConfigError, match=message):  # abstract builds: the refusal, without initialising weights
        nnx.eval_shape(lambda: build_audio_decoder(audio_vae_config_from_metadata(meta)))
        nnx.eval_shape(lambda: build_vocoder(vocoder_config_from_metadata(meta)))
    flat = {**LTX_2_3_TINY_AV.vocoder.to_dict()["vocoder"]}
    with pytest.raises(ConfigError, match="resblock"):
        VocoderConfig.from_dict(flat)  # a flat (LTX-2) section must be HiFi-GAN, as ltx-core checks


def test_restore_is_strict_both_ways(tiny_av, tmp_path):
    from ltx_jax.audio_vae import load_vocoder
    from ltx_jax.checkpoint.errors import LoadError
    from ltx_jax.checkpoint.safetensors_file import SafetensorsFile, save_file
    path, _, _ = tiny_av
    with SafetensorsFile(path) as f:
        tensors, meta = {k: np.asarray(f[k]) for k in f}, dict(f.metadata)
    missing = {k: v for k, v in tensors.items() if k != "vocoder.bwe_generator.conv_post.weight"}
    save_file(missing, tmp_path / "missing.safetensors", meta)
    with pytest.raises(LoadError, match="missing: vocoder.bwe_generator.conv_post.weight"):
        load_vocoder(tmp_path / "missing.safetensors", F32)
    save_file({**tensors, "vocoder.vocoder.extra.weight": np.zeros(3, np.float32)}, tmp_path / "extra.safetensors", meta)
    with pytest.raises(LoadError, match="unexpected: vocoder.vocoder.extra.weight"):
        load_vocoder(tmp_path / "extra.safetensors", F32)


def test_batched_and_bf16_decode(tiny_av):
    """A batch of 2 decodes each item as a batch of 1 does (no cross-talk through the batch axis; the chunked
    path at batch 2 is `test_chunked_decode_equals_whole`), and the bf16 decode (what the official bf16 pipelines run) stays near the float32 one."""
    from ltx_jax.audio_vae import decode_audio, load_audio_decoder, load_vocoder
    path, decoder, vocoder = tiny_av
    latent = np.concatenate([_latent(1, 0), _latent(1, 1)])  # 1 latent: the batch-1 program of the 1-frame case above
    both = np.asarray(decode_audio(decoder, vocoder, latent)[0])
    one = np.asarray(decode_audio(decoder, vocoder, latent[1:])[0])
    scale = np.abs(one).max()
    assert both.shape == (2, 2, one.shape[-1]) and 0.05 < scale
    assert np.abs(both[1] - one[0]).max() <= 1e-5 * scale and np.abs(both[0] - both[1]).max() > 0.01 * scale
    bf16 = Runtime(param_dtype="bfloat16", compute_dtype="bfloat16")
    low = np.asarray(decode_audio(load_audio_decoder(path, bf16), load_vocoder(path, bf16), latent[1:])[0])
    assert low.dtype == np.float32 and low.shape == one.shape
    rel_l2 = np.linalg.norm(low - one) / np.linalg.norm(one)
    print(f"bf16 vs float32 waveform: relative L2 {rel_l2:.4f}")
    assert rel_l2 < 0.1
