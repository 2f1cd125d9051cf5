"""`ltx-jax inspect`: file kinds, components, FP8, upsamplers, LoRA, TAE, and malformed files."""

import json
import re
import struct

import ml_dtypes
import numpy as np
import pytest

from ltx_jax.cli import main
from ltx_jax.configs import LTX_2_3_TINY, LTX_2_TINY, TINY_UPSAMPLERS
from ltx_jax.checkpoint import schema as S
from ltx_jax.checkpoint.inspect import inspect_file
from ltx_jax.checkpoint.safetensors_file import SafetensorsFile, save_file
from ltx_jax.checkpoint.synthetic import write_checkpoint, write_upsampler

FP8_LINEAR = re.compile(r"transformer_blocks\.(\d+)\..*(to_q|to_k|to_v|to_out\.0|ff\.net\.0\.proj|ff\.net\.2)\.weight$")


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    return {"ltx23": write_checkpoint(LTX_2_3_TINY, d / "ltx-2.3-tiny-distilled.safetensors"),
            "ltx2": write_checkpoint(LTX_2_TINY, d / "ltx2-tiny.safetensors")}


def _run_json(capsys, path) -> dict:
    assert main(["inspect", "--json", str(path)]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("which, family, extractor", [("ltx23", "LTX-2.3", "v2"), ("ltx2", "LTX-2", "v1")])
def test_full_checkpoint(capsys, tiny_files, which, family, extractor):
    config = {"ltx23": LTX_2_3_TINY, "ltx2": LTX_2_TINY}[which]
    out = _run_json(capsys, tiny_files[which])
    assert out["kind"] == "ltx_checkpoint"
    assert out["description"].startswith(f"{family} full checkpoint")
    assert out["details"]["precision"] == "f32"
    assert out["config"]["feature_extractor"] == extractor and out["config"]["layers"] == 2
    assert out["warnings"] == []
    expected = {k: S.num_parameters(v) for k, v in S.checkpoint_schema(config).items()}
    assert {k: c["parameters"] for k, c in out["components"].items()} == expected


def test_variant_from_metadata_then_file_name(tiny_files, tmp_path):
    assert "distilled (file name)" in inspect_file(str(tiny_files["ltx23"])).description
    with SafetensorsFile(tiny_files["ltx2"]) as f:
        tensors = {k: np.array(f[k]) for k in f}
        meta = dict(f.metadata, model_version="2.0.0-dev")
    save_file(tensors, tmp_path / "x.safetensors", meta)
    assert "dev (metadata)" in inspect_file(str(tmp_path / "x.safetensors")).description


def _fp8_variant(src, dst, scaled: bool):
    """The official FP8 layout: e4m3 [out, in] weights, f32 scalar weight_scale and input_scale."""
    out = {}
    with SafetensorsFile(src) as f:
        for k in f:
            w = np.array(f[k])
            m = FP8_LINEAR.search(k)
            if m and m.group(1) != "0":  # block 0 stays in high precision, as in the official files
                scale = np.float32(np.abs(w).max() / 448.0)
                out[k] = (w / scale if scaled else w).astype(ml_dtypes.float8_e4m3fn)
                if scaled:
                    out[k[:-len("weight")] + "weight_scale"] = np.array(scale, np.float32)
                    out[k[:-len("weight")] + "input_scale"] = np.array(0.01, np.float32)
            else:
                out[k] = w.astype(ml_dtypes.bfloat16)
        meta = f.metadata
    save_file(out, dst, meta)


@pytest.mark.parametrize("scaled", [True, False])
def test_fp8_checkpoint(capsys, tiny_files, tmp_path, scaled):
    path = tmp_path / "fp8.safetensors"
    _fp8_variant(tiny_files["ltx23"], path, scaled)
    out = _run_json(capsys, path)
    d = out["details"]
    assert d["precision"] == ("fp8-scaled" if scaled else "fp8-cast")
    assert d["fp8_blocks"] == [1]
    assert d["fp8_tensors"] == 6 * 4 + 2 * 2  # 6 attentions x (q, k, v, out) + video and audio FFN
    assert "F8_E4M3" in out["dtypes"] and "BF16" in out["dtypes"]
    if scaled:
        assert d["fp8_weight_scales"] == d["fp8_input_scales"] == d["fp8_tensors"]


def test_every_upsampler_kind(capsys, tmp_path):
    for kind, config in TINY_UPSAMPLERS.items():
        out = _run_json(capsys, write_upsampler(config, tmp_path / f"{kind}.safetensors"))
        assert out["kind"] == "upsampler" and out["details"]["upsampler_kind"] == kind
        assert out["parameters"] == S.num_parameters(S.upsampler_schema(config))
        assert out["warnings"] == []


def test_upsampler_kind_from_shapes_without_config(tmp_path):
    for kind, config in TINY_UPSAMPLERS.items():
        path = write_upsampler(config, tmp_path / f"{kind}.safetensors")
        with SafetensorsFile(path) as f:
            tensors = {k: np.array(f[k]) for k in f}
        save_file(tensors, path, {})
        report = inspect_file(str(path))
        assert report.details["upsampler_kind"].startswith(kind), kind
        assert any("config" in w for w in report.warnings)


def test_lora(capsys, tmp_path):
    rng = np.random.default_rng(0)
    tensors = {}
    for i in range(2):
        for layer, (dout, din) in (("attn1.to_q", (64, 64)), ("ff.net.2", (64, 256))):
            base = f"diffusion_model.transformer_blocks.{i}.{layer}"
            tensors[f"{base}.lora_A.weight"] = rng.standard_normal((8, din)).astype(ml_dtypes.bfloat16)
            tensors[f"{base}.lora_B.weight"] = rng.standard_normal((dout, 8)).astype(ml_dtypes.bfloat16)
    save_file(tensors, tmp_path / "lora.safetensors")
    out = _run_json(capsys, tmp_path / "lora.safetensors")
    assert out["kind"] == "lora"
    assert out["details"]["rank"] == 8 and out["details"]["target_layers"] == 4
    assert out["details"]["key_prefix"] == "diffusion_model"


def test_tae(capsys, tae_fixture):
    out = _run_json(capsys, tae_fixture / "taeltx2_3.safetensors")
    assert out["kind"] == "tae"
    assert out["details"]["decoder_width"] == 256
    assert out["components"]["encoder"]["parameters"] == 1565568
    assert out["components"]["decoder"]["parameters"] == 10194160
    assert out["dtypes"] == {"F16": 11759728}


def test_unknown_file(capsys, tmp_path):
    save_file({"foo.weight": np.zeros((2, 2), np.float32)}, tmp_path / "u.safetensors")
    assert _run_json(capsys, tmp_path / "u.safetensors")["kind"] == "unknown"


def test_missing_key_is_reported(tiny_files, tmp_path):
    with SafetensorsFile(tiny_files["ltx23"]) as f:
        tensors = {k: np.array(f[k]) for k in f if not k.endswith("transformer_blocks.1.attn1.to_q.weight")}
        meta = f.metadata
    save_file(tensors, tmp_path / "m.safetensors", meta)
    warnings = inspect_file(str(tmp_path / "m.safetensors")).warnings
    assert any("transformer: 1 key(s) missing" in w and "to_q" in w for w in warnings)


def _bad(tmp_path, kind):
    path = tmp_path / f"{kind}.safetensors"
    if kind == "truncated":
        save_file({"a": np.zeros(100, np.float32)}, path)
        path.write_bytes(path.read_bytes()[:-7])
    elif kind == "bad_json":
        path.write_bytes(struct.pack("<Q", 9) + b'{"a": 1,' + b" " + b"\0" * 4)
    else:  # overlapping offsets
        raw = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                          "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}).encode()
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 12)
    return path


@pytest.mark.parametrize("kind, message", [("truncated", "truncated"), ("bad_json", "not valid JSON"),
                                           ("overlap", "overlap")])
def test_malformed_files_exit_2_with_a_message(capsys, tmp_path, kind, message):
    path = _bad(tmp_path, kind)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err


def test_header_only_on_a_46_gb_file(tmp_path):
    """A sparse file announcing 46 GB of bf16 weights: inspect reads the header and nothing else."""
    n = 23 * 1024**3  # bf16 elements
    header = {"model.diffusion_model.transformer_blocks.0.attn1.to_q.weight":
              {"dtype": "BF16", "shape": [n // 4096, 4096], "data_offsets": [0, 2 * n]}}
    raw = json.dumps(header).encode()
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + 2 * n)
    report = inspect_file(str(path))
    assert report.size_bytes > 46e9 and report.num_parameters == n
    assert report.kind == "ltx_transformer"


def test_demo_builds_inspects_and_generates(capsys, tmp_path):
    """The README's main job: bundled tiny checkpoint -> inspect -> distilled two-stage generation -> frames."""
    assert main(["demo", "--random", "--out", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out
    reports, end = json.JSONDecoder().raw_decode(out)
    summary = json.loads(out[end:].strip())
    assert [r["kind"] for r in reports] == ["ltx_checkpoint", "upsampler"]
    assert reports[0]["description"].startswith("LTX-2.3 full checkpoint") and reports[0]["warnings"] == []
    assert summary["pipeline"] == "distilled" and summary["frames"] == [17, 128, 128, 3]
    frames = np.load(tmp_path / "video" / "video.npz")
    video = frames[frames.files[0]]
    assert video.shape == (17, 128, 128, 3) and video.dtype == np.uint8 and video.std() > 0
    assert len(list((tmp_path / "video").glob("frame_*.png"))) == 17
