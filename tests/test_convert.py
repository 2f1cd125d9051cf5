"""`ltx-jax convert` / `export` against the official files: bit-identical round trips, the official loader's own
tensors, dtype policy, component subsets, malformed inputs, and a conversion killed midway."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from ltx_jax.checkpoint.folder import COMPLETE, CheckpointError, open_checkpoint
from ltx_jax.cli import main
from ltx_jax.configs import Runtime
from ltx_jax.checkpoint.converter import ConvertError, convert
from ltx_jax.checkpoint.exporter import export
from ltx_jax.checkpoint.inspect import inspect_file
from ltx_jax.checkpoint.lora import LoraMerged
from ltx_jax.checkpoint.loader import restore
from ltx_jax.checkpoint.safetensors_file import SafetensorsError, SafetensorsFile, save_file
from ltx_jax.checkpoint.source import SafetensorsSource
from ltx_jax.tiny_vae.loading import load_tae
from conftest import ROOT, run_ref_python

UPSAMPLERS = ("spatial_x2", "spatial_x2_rational", "spatial_x1_5_rational", "temporal_x2")


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def _assert_identical(original: Path, exported: Path) -> None:
    a, b = SafetensorsFile(original), SafetensorsFile(exported)
    assert a.metadata == b.metadata
    assert list(a) == list(b)  # same keys, same storage order
    bad = [k for k in a if a.infos[k].dtype != b.infos[k].dtype or a[k].shape != b[k].shape
           or _bits(a[k]) != _bits(b[k])]
    assert not bad, bad[:5]


@pytest.mark.reference
def test_round_trip_is_bit_identical(reference, tmp_path):
    """official -> ltx-jax -> official for every file kind of a fixture (f32 checkpoint, scaled FP8 transformer,
    the four upsamplers): same keys, order, dtypes, bytes and metadata; the checkpoint holds the same tensors."""
    names = ["ltx_checkpoint.safetensors", "ltx_transformer_fp8.safetensors",
             *[f"upsampler_{k}.safetensors" for k in UPSAMPLERS]]
    for name in names:
        ours = convert(reference / name, tmp_path / name.replace(".safetensors", ""))
        _assert_identical(reference / name, export(ours, tmp_path / "exported" / name))
        ck, src = open_checkpoint(ours), SafetensorsFile(reference / name)
        sample = list(src)[:: max(1, len(src) // 20)]
        assert all(_bits(ck.read(k)) == _bits(src[k]) and ck.read(k).dtype == src[k].dtype for k in sample)
        manifest = json.loads((ours / "manifest.json").read_text())
        assert manifest["source"]["files"] == [{"name": name, "size": (reference / name).stat().st_size,
                                                "sha256": hashlib.sha256((reference / name).read_bytes()).hexdigest()}]
    fp8 = json.loads((tmp_path / "ltx_transformer_fp8" / "manifest.json").read_text())
    assert fp8["kind"] == "ltx_transformer" and fp8["components"] == ["transformer"]
    assert "float8_e4m3fn" in {t["dtype"] for t in fp8["tensors"].values()}


def test_tae_and_lora_files(tae_fixture, lora_reference, tmp_path):
    """The other file kinds: the TAE (config from shapes) and a LoRA; a converted LoRA merges like the file."""
    tae, lora = tae_fixture / "taeltx2_3.safetensors", lora_reference / "lora_a_attn_r4.safetensors"
    converted = {}
    for src in (tae, lora):
        converted[src] = convert(src, tmp_path / src.stem)
        _assert_identical(src, export(converted[src], tmp_path / "exported" / src.name))
    ours = restore(converted[tae], "tae", runtime=Runtime(param_dtype="float32", compute_dtype="float32"))
    ref = load_tae(tae)
    a, b = dict(nnx.to_flat_state(nnx.state(ours))), dict(nnx.to_flat_state(nnx.state(ref)))
    assert a.keys() == b.keys() and all(np.array_equal(np.asarray(a[p][...]), np.asarray(b[p][...])) for p in a)
    base = SafetensorsSource(lora_reference / "ltx_checkpoint.safetensors")
    key = "model.diffusion_model.transformer_blocks.0.attn1.to_q.weight"
    merged = [LoraMerged(base, [(f, 1.0)]).read(key) for f in (converted[lora], lora)]
    assert _bits(merged[0]) == _bits(merged[1])
    assert json.loads((converted[lora] / "manifest.json").read_text())["kind"] == "lora"


OFFICIAL_STATE_DICTS = r"""
import sys, json
sys.path.insert(0, "tests/reference")
from pathlib import Path
import numpy as np, torch
from ltxref.components import MAIN_COMPONENTS, upsampler_component, UPSAMPLER_KINDS
from ltxref.weights import load_components
folder, preset, out = Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
loaded = load_components(folder, preset, torch.float32)
comps = {c.name: c for c in MAIN_COMPONENTS} | {f"upsampler.{k}": upsampler_component(k) for k in UPSAMPLER_KINDS}
arrays, meta_left = {}, []
for name, module in loaded.items():
    module = module.velocity_model if name == "transformer" else module
    for k, v in module.state_dict().items():
        if v.device.type == "meta":
            meta_left.append(k)
            continue
        arrays[comps[name].file + "::" + comps[name].to_file_key(k)] = v.numpy()
np.savez(out, **arrays)
print(json.dumps({"meta_left": meta_left, "count": len(arrays)}))
"""


@pytest.mark.reference
def test_checkpoint_equals_official_loader(reference, tmp_path):
    """Our exported files load through ltx-core's ModelLedger; every tensor the official loader ends up holding
    equals our checkpoint's tensor under the same file key (and every key of ours is one it uses)."""
    names = ["ltx_checkpoint.safetensors", *[f"upsampler_{k}.safetensors" for k in UPSAMPLERS]]
    ours = {}
    for name in names:
        ours[name] = open_checkpoint(convert(reference / name, tmp_path / "ck" / name))
        export(ours[name], tmp_path / "exported" / name)
    preset = json.loads((reference / "manifest.json").read_text())["config"]
    report = json.loads(run_ref_python(OFFICIAL_STATE_DICTS, str(tmp_path / "exported"), json.dumps(preset),
                                       str(tmp_path / "official.npz")))
    assert report["meta_left"] == []
    official = np.load(tmp_path / "official.npz")
    seen = set()
    for entry in official.files:
        name, key = entry.split("::")
        mine = ours[name].read(key)
        assert mine.dtype == np.float32 and np.array_equal(mine, official[entry]), entry
        seen.add((name, key))
    assert seen == {(n, k) for n, ck in ours.items() for k in ck.specs()}


@pytest.mark.reference
def test_dtype_policy_and_components(reference, tmp_path):
    src = reference / "ltx_checkpoint.safetensors"
    bf16 = open_checkpoint(convert(src, tmp_path / "bf16", dtype="bf16", components=["transformer", "vae_decoder"]))
    f = SafetensorsFile(src)
    assert set(bf16.specs()) == {k for k in f if k.startswith(("model.diffusion_model.transformer_blocks",
                                                               "vae.decoder.", "vae.per_channel_statistics."))
                                 or (k.startswith("model.diffusion_model.") and "embeddings_connector" not in k)}
    for k in list(bf16.specs())[::7]:
        assert bf16.read(k).dtype == ml_dtypes.bfloat16
        assert _bits(bf16.read(k)) == _bits(f[k].astype(ml_dtypes.bfloat16))  # round to nearest even, as torch
    out = export(bf16, tmp_path / "t.safetensors")
    assert set(inspect_file(str(out)).components) == {"transformer", "vae_decoder", "vae_statistics"}
    # FP8 weights and their scales stay as they are under any policy; other tensors are cast.
    fp8 = open_checkpoint(convert(reference / "ltx_transformer_fp8.safetensors", tmp_path / "fp8", dtype="f32"))
    g = SafetensorsFile(reference / "ltx_transformer_fp8.safetensors")
    for k, s in fp8.specs().items():
        if g.infos[k].dtype == "F8_E4M3" or k.endswith("_scale"):
            assert s.dtype == g[k].dtype and _bits(fp8.read(k)) == _bits(g[k])
        else:
            assert s.dtype == np.float32 and np.array_equal(fp8.read(k), g[k].astype(np.float32))


def _edited(reference: Path, out: Path, edit) -> Path:
    """The fixture checkpoint with `edit(tensors)` applied, written to `out`."""
    f = SafetensorsFile(reference / "ltx_checkpoint.safetensors")
    tensors = {k: np.array(f[k]) for k in f}
    edit(tensors)
    save_file(tensors, out, f.metadata)
    return out


@pytest.mark.reference
def test_malformed_inputs_fail_with_file_and_problem(reference, tmp_path):
    src = reference / "ltx_checkpoint.safetensors"
    key = "model.diffusion_model.transformer_blocks.1.attn2.to_k.weight"
    cases = {}
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    cases[truncated] = "truncated"
    cases[_edited(reference, tmp_path / "missing.safetensors", lambda t: t.pop(key))] = f"1 missing: {key}"
    cases[_edited(reference, tmp_path / "shape.safetensors", lambda t: t.__setitem__(key, t[key][:, :-1]))] = \
        f"wrong shape: {key}"
    cases[_edited(reference, tmp_path / "extra.safetensors", lambda t: t.__setitem__(
        "model.diffusion_model.extra.weight", np.zeros(3, np.float32)))] = "1 unexpected: model.diffusion_model.extra.weight"
    other = tmp_path / "other.safetensors"
    save_file({"encoder.weight": np.zeros((2, 2), np.float32)}, other, {"format": "pt"})
    cases[other] = "not an LTX-2 file"
    pickle = tmp_path / "model.ckpt"
    with zipfile.ZipFile(pickle, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    cases[pickle] = "pickle"
    raw = tmp_path / "weights.pt"
    raw.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    cases[raw] = "pickle"
    for path, problem in cases.items():
        with pytest.raises((ConvertError, SafetensorsError)) as e:
            convert(path, tmp_path / "out" / path.name)
        assert str(path) in str(e.value) and problem in str(e.value), str(e.value)
        assert not (tmp_path / "out" / path.name).exists()
    # The wrong component of a right file, and the CLI's exit status and message.
    with pytest.raises(ConvertError, match="vocoder.*not in this file"):
        convert(src, tmp_path / "out" / "voc", components=["vocoder"])
    with pytest.raises(ConvertError, match="a upsampler file has no components"):
        convert(reference / "upsampler_spatial_x2.safetensors", tmp_path / "out" / "u", components=["transformer"])
    assert main(["convert", str(truncated), str(tmp_path / "out" / "cli")]) == 2


SLOW_CONVERSION = r"""
import sys, time
from ltx_jax.checkpoint import source
from ltx_jax.checkpoint.converter import convert
read, calls = source.SafetensorsSource.read, []
def slow_read(self, key, index=None):  # a slow disk: the kill lands while tensors are being written
    calls.append(key)
    if len(calls) == 5:
        print("writing", flush=True)
    time.sleep(0.1)
    return read(self, key, index)
source.SafetensorsSource.read = slow_read
convert(sys.argv[1], sys.argv[2], hash_source=False)
"""


def test_killed_conversion_leaves_nothing_loadable(tmp_path, small_official_file):
    """SIGKILL a conversion midway: no OUT, the partial folder is refused, and a rerun succeeds and cleans up."""
    out = tmp_path / "ck"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CONVERSION, str(small_official_file), str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.3)  # well inside the ~7 s the conversion would take
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = list(tmp_path.glob(".ck.partial-*"))
    assert not out.exists()
    assert partial and any(partial[0].iterdir())  # it had started writing
    with pytest.raises(CheckpointError, match="incomplete"):
        open_checkpoint(partial[0])
    # A later conversion to the same target replaces the leftover and produces a complete checkpoint.
    good = convert(small_official_file, out)
    assert open_checkpoint(good).specs() and not partial[0].exists()
    # A folder that lost its completion marker is refused too.
    broken = tmp_path / "broken"
    shutil.copytree(good, broken)
    (broken / COMPLETE).unlink()
    with pytest.raises(CheckpointError, match=f"{broken}.*incomplete.*COMPLETE"):
        open_checkpoint(broken)


@pytest.fixture
def small_official_file(tmp_path) -> Path:
    """A small official-layout file that needs no reference environment (the upsampler layout)."""
    from ltx_jax.configs import TINY_UPSAMPLERS
    from ltx_jax.checkpoint.synthetic import write_upsampler
    return write_upsampler(TINY_UPSAMPLERS["spatial_x2"], tmp_path / "up.safetensors")
