"""Command-line paths through `ltx_jax.cli.main`: `export` (back to the official file, bit for bit), converting into
an existing folder with and without `--overwrite`, an unknown `--format` refused before anything is generated, and
`generate` with the dev and HQ pipelines plus `--distilled-lora`, `--upscale 1.5`, `--temporal-upscale`, `--tiling`
and `--format mp4` on a tiny official checkpoint. The numerics of those pipelines against the official ones are in
test_pipelines.py (`dev2`, `hq2`); here the CLI wiring is checked: the files, shapes, frame rate, and the mp4 read
back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ltx_jax.cli import main
from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
from ltx_jax.parity import Fixture


@pytest.fixture
def official_file(tmp_path) -> Path:
    from ltx_jax.configs import TINY_UPSAMPLERS
    from ltx_jax.checkpoint.synthetic import write_upsampler
    return write_upsampler(TINY_UPSAMPLERS["spatial_x2"], tmp_path / "up.safetensors")


def _same_file(a: Path, b: Path) -> bool:
    fa, fb = SafetensorsFile(a), SafetensorsFile(b)
    return fa.metadata == fb.metadata and list(fa) == list(fb) and all(
        fa.infos[k].dtype == fb.infos[k].dtype and np.ascontiguousarray(fa[k]).tobytes() ==
        np.ascontiguousarray(fb[k]).tobytes() for k in fa)


def test_export_through_main(tmp_path, official_file, capsys):
    ck, out = tmp_path / "ck", tmp_path / "back.safetensors"
    assert main(["convert", str(official_file), str(ck), "--quiet"]) == 0
    assert main(["export", str(ck), str(out)]) == 0
    assert _same_file(official_file, out)  # bit for bit, metadata and key order included
    capsys.readouterr()
    out.write_bytes(b"not mine")
    assert main(["export", str(ck), str(out)]) == 2  # an existing file is not replaced without --overwrite
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"not mine"
    assert main(["export", str(ck), str(out), "--overwrite"]) == 0 and _same_file(official_file, out)
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "x.safetensors")]) == 2


def test_convert_into_an_existing_folder(tmp_path, official_file, capsys):
    ck = tmp_path / "ck"
    assert main(["convert", str(official_file), str(ck), "--quiet"]) == 0
    before = (ck / "manifest.json").read_text()
    capsys.readouterr()
    assert main(["convert", str(official_file), str(ck), "--quiet", "--dtype", "bf16"]) == 2
    err = capsys.readouterr().err
    assert str(ck) in err and "--overwrite" in err
    assert (ck / "manifest.json").read_text() == before  # untouched
    assert main(["convert", str(official_file), str(ck), "--quiet", "--dtype", "bf16", "--overwrite"]) == 0
    assert (ck / "manifest.json").read_text() != before
    assert "bf16" in json.dumps(json.loads((ck / "manifest.json").read_text()))
    assert not list(tmp_path.glob(".ck.*"))  # no partial or old folder left behind
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    assert main(["convert", str(official_file), str(other), "--quiet"]) == 2  # a folder that is not ours
    assert (other / "notes.txt").read_text() == "keep"


def test_unknown_format_is_refused_before_anything_is_generated(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["generate", str(tmp_path / "missing.safetensors"), "--prompt", str(tmp_path / "none.npz"),
               "--frames", "17", "--height", "256", "--width", "256", "--format", "npz,gif", "--out", str(out)])
    assert rc == 2 and "gif" in capsys.readouterr().err and not out.exists()
    assert main(["generate", str(tmp_path / "missing.safetensors"), "--prompt", str(tmp_path / "none.npz"),
                 "--format", ",", "--out", str(out)]) == 2


def _mp4_frames(path: Path) -> np.ndarray:
    import av
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)]), fps


@pytest.mark.reference
def test_generate_dev_and_hq_with_lora_upscales_tiling_and_mp4(tmp_path, capsys):
    from conftest import build_loops_reference, build_lora_reference

    loops = build_loops_reference("ltx23-tiny", 0)
    lora = build_lora_reference("ltx23-tiny", 0) / "lora_a_attn_r4.safetensors"
    fx = Fixture(loops)
    prompt = tmp_path / "prompt.npz"
    np.savez(prompt, video_context=fx["ctx.pos.video"], audio_context=fx["ctx.pos.audio"],
             negative_video_context=fx["ctx.neg.video"], negative_audio_context=fx["ctx.neg.audio"])
    ckpt = str(loops / "ltx_checkpoint.safetensors")
    # The official dev defaults name STG block 28 (of 48); the tiny model's STG block is its last one, as in the
    # loop fixture's guided run.
    last = str(fx.manifest["config"]["transformer"]["num_layers"] - 1)
    common = ["--prompt", str(prompt), "--distilled-lora", str(lora), "--frames", "9", "--steps", "2",
              "--dtype", "float32", "--video-stg-blocks", last, "--audio-stg-blocks", last, "--quiet"]

    dev = tmp_path / "dev"
    assert main(["generate", ckpt, "--pipeline", "dev", *common, "--height", "192", "--width", "192",
                 "--upscale", "1.5", "--upsampler", str(loops / "upsampler_spatial_x1_5_rational.safetensors"),
                 "--temporal-upscale", "--temporal-upsampler", str(loops / "upsampler_temporal_x2.safetensors"),
                 "--tiling", "--format", "npz,mp4", "--out", str(dev)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with np.load(dev / "video.npz") as z:
        frames, fps = z["frames"], float(z["fps"])
    # 9 frames -> 2 latent frames -> x2 in time: 3 latent frames = 17 frames at twice the rate; 128 px x1.5
    assert frames.shape == (17, 192, 192, 3) and frames.dtype == np.uint8 and fps == 48.0
    assert summary["pipeline"] == "dev" and summary["frames"] == [17, 192, 192, 3] and summary["fps"] == 48.0
    assert frames.std() > 1.0  # not a constant image
    decoded, mp4_fps = _mp4_frames(dev / "video.mp4")
    assert decoded.shape == frames.shape and mp4_fps == 48.0
    # H.264 is lossy and the random-weight frames are noise-like, so compare what it keeps: 16x16 block means
    blocks = [x.reshape(17, 12, 16, 12, 16, 3).astype(np.float64).mean(axis=(2, 4)) for x in (decoded, frames)]
    err, corr = np.abs(blocks[0] - blocks[1]).mean(), np.corrcoef(blocks[0].ravel(), blocks[1].ravel())[0, 1]
    assert err < 8 and corr > 0.9, (err, corr)
    with np.load(dev / "latents.npz") as z:
        assert z["video_latent"].shape == (1, 3, 6, 6, 16)

    hq = tmp_path / "hq"
    assert main(["generate", ckpt, "--pipeline", "hq", *common, "--height", "128", "--width", "128",
                 "--upsampler", str(loops / "upsampler_spatial_x2.safetensors"), "--format", "npz",
                 "--out", str(hq)]) == 0
    with np.load(hq / "video.npz") as z:
        assert z["frames"].shape == (9, 128, 128, 3) and float(z["fps"]) == 24.0
    assert not (hq / "video.mp4").exists() and not list(hq.glob("*.png"))
