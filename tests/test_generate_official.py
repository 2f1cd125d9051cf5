"""The tiny run is the official run: `ltx-jax generate "PROMPT"` (our tokenizer, Gemma, connectors, distilled
pipeline, decode, audio VAE + vocoder; bf16) against ltx-pipelines' distilled pipeline from the same prompt string
with the official Gemma path (tests/reference/build_generate.py), replayed from the official run's recorded
noise; and the mp4 it writes decodes back (PyAV) to the frame count, size, fps, audio duration and rate asked for."""

import json

import numpy as np
import pytest

from ltx_jax.cli import main

pytestmark = pytest.mark.reference


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_prompt_string_run_equals_the_official_pipeline(tmp_path):
    import av

    from conftest import ROOT, build_generate_reference

    ref = build_generate_reference(0)
    manifest = json.loads((ref / "manifest.json").read_text())
    px = manifest["pixels"]
    out = tmp_path / "ours"
    rc = main(["generate", manifest["prompt"], "--gemma", str(ref / "gemma"),
               "--checkpoint", str(ref / "ltx_checkpoint.safetensors"),
               "--upsampler", str(ref / "upsampler_spatial_x2_rational.safetensors"), "--frames", str(px["frames"]),
               "--height", str(px["height"]), "--width", str(px["width"]), "--fps", str(px["fps"]),
               "--noise", str(ref / "fixtures.npz"), "--dtype", "bfloat16", "--out", str(out), "--format", "npz,mp4",
               "--cache-dir", str(ROOT / ".cache" / "generate-tests"), "--quiet"])
    assert rc == 0
    ours = np.load(out / "video.npz")["frames"]
    with np.load(ref / "fixtures.npz") as z:
        official, wave_ref = z["loop.decode.out.frames"], z["loop.audio.out.waveform"]
        rate_ref = int(z["loop.audio.sample_rate"][0])
    assert ours.shape == official.shape == (px["frames"], px["height"], px["width"], 3)
    cosine = _cosine(ours / 127.5 - 1, official / 127.5 - 1)
    audio = np.load(out / "audio.npz")
    wave, rate = audio["waveform"], int(audio["sample_rate"])
    print(f"decoded frames: cosine {cosine:.6f}, mean |diff| {np.abs(ours.astype(int) - official).mean():.3f} / 255; "
          f"waveform cosine {_cosine(wave, wave_ref):.5f}")
    assert cosine >= 0.999  # measured 0.999758 (bf16 on both sides, different kernels)
    assert rate == rate_ref == 48000 and wave.shape == wave_ref.shape
    assert _cosine(wave, wave_ref) >= 0.99  # measured 0.99723 (bf16 audio VAE + vocoder + BWE)
    side = json.loads((out / "generate.json").read_text())
    assert side["resolved"]["prompts"] == [manifest["prompt"]]
    assert {f["role"] for f in side["files"]} == {"checkpoint", "upsampler", "gemma"}
    assert side["outputs"]["audio"]["sample_rate"] == 48000

    # The mp4 as a player sees it: H.264 frames of the size and rate asked for, an AAC track of the video's length.
    with av.open(str(out / "video.mp4")) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
        assert (v.codec_context.name, v.width, v.height, float(v.average_rate)) == ("h264", px["width"], px["height"],
                                                                                   px["fps"])
        assert (a.codec_context.name, a.sample_rate, a.channels) == ("aac", 48000, 2)
        duration = float(a.duration * a.time_base)
    assert len(frames) == px["frames"]
    # the AAC track lasts as long as the waveform (within one 1024-sample AAC frame: encoder delay / padding)
    assert abs(duration - wave.shape[-1] / rate) <= 1024 / 48000 + 1e-6
    assert abs(wave.shape[-1] / rate - px["frames"] / px["fps"]) < 0.04  # the audio lasts as long as the video
