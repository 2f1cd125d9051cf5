"""The tiny run is the official run: `ltx-jax generate "PROMPT"` (our tokenizer, Gemma, connectors, distilled
pipeline, decode; bf16) against ltx-pipelines' distilled pipeline from the same prompt string with the official
Gemma path (tests/reference/build_generate.py), replayed from the official run's recorded noise."""

import json

import numpy as np
import pytest

from ltx_jax.cli import main

pytestmark = pytest.mark.reference


def test_prompt_string_run_equals_the_official_pipeline(tmp_path):
    from conftest import ROOT, build_generate_reference

    ref = build_generate_reference(0)
    manifest = json.loads((ref / "manifest.json").read_text())
    px = manifest["pixels"]
    out = tmp_path / "ours"
    rc = main(["generate", manifest["prompt"], "--gemma", str(ref / "gemma"),
               "--checkpoint", str(ref / "ltx_checkpoint.safetensors"),
               "--upsampler", str(ref / "upsampler_spatial_x2_rational.safetensors"), "--frames", str(px["frames"]),
               "--height", str(px["height"]), "--width", str(px["width"]), "--fps", str(px["fps"]),
               "--noise", str(ref / "fixtures.npz"), "--dtype", "bfloat16", "--out", str(out), "--format", "npz",
               "--cache-dir", str(ROOT / ".cache" / "generate-tests"), "--quiet"])
    assert rc == 0
    ours = np.load(out / "video.npz")["frames"].astype(np.float64)
    with np.load(ref / "fixtures.npz") as z:
        official = z["loop.decode.out.frames"].astype(np.float64)
    assert ours.shape == official.shape == (px["frames"], px["height"], px["width"], 3)
    a, b = (ours / 127.5 - 1).ravel(), (official / 127.5 - 1).ravel()
    cosine = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    print(f"decoded frames: cosine {cosine:.6f}, mean |diff| {np.abs(ours - official).mean():.3f} / 255")
    assert cosine >= 0.999  # measured 0.99976 (bf16 on both sides, different kernels)
    side = json.loads((out / "generate.json").read_text())
    assert side["resolved"]["prompts"] == [manifest["prompt"]]
    assert {f["role"] for f in side["files"]} == {"checkpoint", "upsampler", "gemma"}
