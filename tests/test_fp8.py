"""FP8: the Linear's two modes against explicit numpy references, clamping, refused scales and weights, the
FP8 transformer against the official fixture, and our quantizer's file loaded by ltx-core 1.0.0."""

import json
import re
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from conftest import REF_PYTHON, REFERENCE, build_reference, reference_unavailable
from ltx_jax.configs import Runtime
from ltx_jax.checkpoint.errors import LoadError
import ltx_jax.transformer  # noqa: F401  (binds the transformer to the restore path)
from ltx_jax.checkpoint.loader import restore
from ltx_jax.checkpoint.safetensors_file import SafetensorsFile, save_file
from ltx_jax.nn.fp8 import FP8Error, FP8Weight, fp8_weights, quantize_per_tensor, set_fp8_mode
from ltx_jax.nn.linear import Linear

E4M3 = ml_dtypes.float8_e4m3fn


def _linear(q, ws, ins, bias, mode):
    lin = Linear(q.shape[1], q.shape[0], rngs=nnx.Rngs(0))
    lin.weight.set_value(FP8Weight(jnp.asarray(q), jnp.float32(ws), jnp.float32(ins), mode=mode))
    lin.bias.set_value(jnp.asarray(bias))
    return lin


@pytest.fixture(scope="module")
def layer():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((48, 96)).astype(np.float32) * 0.05
    amax = np.abs(w).max()
    ws = np.float32(amax / 448)
    q = np.clip(w / ws, -448, 448).astype(E4M3)  # independent of quantize_per_tensor
    bias = rng.standard_normal(48).astype(np.float32)
    x = rng.standard_normal((2, 7, 96)).astype(np.float32)
    return q, ws, bias, x


def _close(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    # float32 rounding of a 96-term dot product: a few ulp of the largest partial sums
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_weights_mode_equals_dequantize_then_float32(layer):
    q, ws, bias, x = layer
    w = q.astype(np.float32) * ws  # float32 dequantization, then the float64 product
    ref = x.astype(np.float64) @ w.astype(np.float64).T + bias
    _close(_linear(q, ws, 1.0, bias, "weights")(jnp.asarray(x)), ref)


def test_scaled_mode_equals_numpy_emulation(layer):
    q, ws, bias, x = layer
    ins = np.float32(np.abs(x).max() / 448)
    xq = np.clip(x / ins, -448, 448).astype(E4M3).astype(np.float64)
    ref = (xq @ q.astype(np.float64).T) * (np.float64(ins) * np.float64(ws)) + bias
    _close(_linear(q, ws, ins, bias, "scaled")(jnp.asarray(x)), ref)
    # bf16 activations: the same quantized product, output rounded to bf16
    out = _linear(q, ws, ins, bias, "scaled")(jnp.asarray(x, jnp.bfloat16))
    assert out.dtype == jnp.bfloat16
    xq16 = np.clip(x.astype(ml_dtypes.bfloat16).astype(np.float32) / ins, -448, 448).astype(E4M3).astype(np.float64)
    ref16 = (xq16 @ q.astype(np.float64).T) * (np.float64(ins) * np.float64(ws)) + bias
    np.testing.assert_allclose(np.asarray(out, np.float64), ref16, rtol=0, atol=8e-3 * np.abs(ref16).max())


def test_scaled_mode_clamps_outliers(layer):
    q, ws, bias, x = layer
    ins = np.float32(np.abs(x).max() / 448)
    x = x.copy()
    x[0, 0, :4] = [1e4, -1e4, 3e3, -5e5]  # far beyond 448 * input_scale
    out = np.asarray(_linear(q, ws, ins, bias, "scaled")(jnp.asarray(x)))
    assert np.isfinite(out).all()  # unclamped, e4m3fn has no inf: these would be NaN
    xq = np.clip(x / ins, -448, 448).astype(E4M3).astype(np.float64)
    assert np.abs(xq).max() == 448
    _close(out, (xq @ q.astype(np.float64).T) * (np.float64(ins) * np.float64(ws)) + bias)


def test_quantize_per_tensor_matches_numpy():
    w = np.random.default_rng(1).standard_normal((16, 24)).astype(np.float32)
    q, s = quantize_per_tensor(w)
    assert q.dtype == E4M3 and s.dtype == np.float32
    assert np.float32(np.abs(q.astype(np.float32)).max()) == 448
    np.testing.assert_allclose(q.astype(np.float32) * s, w, rtol=0.07, atol=1e-3)  # e4m3: 3 mantissa bits
    with pytest.raises(FP8Error, match="NaN or inf"):
        quantize_per_tensor(np.array([[np.inf]], np.float32))


@pytest.fixture(scope="module")
def fixture_dir():
    return build_reference("ltx23-tiny", 0)


def _variant(src: Path, dst: Path, key: str, change) -> Path:
    f = SafetensorsFile(src)
    tensors = {k: np.array(f[k]) for k in f.infos}
    tensors[key] = change(tensors[key])
    save_file(tensors, dst, dict(f.metadata))
    return dst


BAD = {
    "zero_weight_scale": (".weight_scale", lambda a: np.zeros_like(a), "must be > 0"),
    "negative_input_scale": (".input_scale", lambda a: -a, "must be > 0"),
    "nan_weight_scale": (".weight_scale", lambda a: np.full_like(a, np.nan), "not finite"),
    "inf_input_scale": (".input_scale", lambda a: np.full_like(a, np.inf), "not finite"),
    "nan_in_weight": (".weight", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 5,
                                                     np.array(np.nan, E4M3), a), "holds NaN"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_fp8_tensors_refused_naming_the_tensor(fixture_dir, tmp_path, case):
    suffix, change, message = BAD[case]
    key = "model.diffusion_model.transformer_blocks.1.attn1.to_k" + suffix
    path = _variant(fixture_dir / "ltx_transformer_fp8.safetensors", tmp_path / "bad.safetensors", key, change)
    with pytest.raises(FP8Error, match=message) as e:
        restore(path, "transformer", runtime=Runtime(fp8="scaled"))
    assert key in str(e.value)


def test_fp8_restore_keeps_e4m3_and_refuses_bf16_files(fixture_dir):
    m = restore(fixture_dir / "ltx_transformer_fp8.safetensors", "transformer", runtime=Runtime(fp8="weights"))
    weights = fp8_weights(m)
    header = SafetensorsFile(fixture_dir / "ltx_transformer_fp8.safetensors").infos
    fp8_keys = {k for k, i in header.items() if i.dtype == "F8_E4M3"}
    # one FP8Weight per FP8 file weight (blocks are segments: the fixture quantizes block 1, not block 0)
    assert sum(w.value.shape[0] for w in weights.values()) == len(fp8_keys)
    assert all(w.value.dtype == jnp.float8_e4m3fn and w.mode == "weights" for w in weights.values())
    set_fp8_mode(m, "scaled")
    assert {w.mode for w in fp8_weights(m).values()} == {"scaled"}
    with pytest.raises(LoadError, match="has none"):
        restore(fixture_dir / "ltx_checkpoint.safetensors", "transformer", runtime=Runtime(fp8="scaled"))


def test_parity_both_modes(fixture_dir):
    """What `experiments/parity.py` runs on the FP8 arrays of a fixture directory."""
    from ltx_jax.parity import run_parity

    report = run_parity(fixture_dir, only="^fp8_")
    arrays = {k: v for k, v in report.arrays.items() if k.startswith("fp8.out.")}
    assert set(arrays) == {f"fp8.out.{t}_{m}_velocity_f32" for t in ("dequant", "emulated_scaled_mm")
                           for m in ("video", "audio")}, report.to_json()
    assert all(a["ok"] for a in arrays.values()), arrays


@pytest.fixture(scope="module")
def quantized(fixture_dir, tmp_path_factory):
    from ltx_jax.cli import main

    out = tmp_path_factory.mktemp("fp8q") / "ltx_fp8.safetensors"
    assert main(["quantize", str(fixture_dir / "ltx_checkpoint.safetensors"), str(out), "--frames", "9",
                 "--height", "128", "--width", "128"]) == 0
    header = SafetensorsFile(out).infos
    layers = sorted(k[: -len(".weight")] for k, i in header.items() if i.dtype == "F8_E4M3")
    assert all(k + ".weight_scale" in header and k + ".input_scale" in header for k in layers)
    return out, layers


def test_quantized_file_loads_in_ltx_core(fixture_dir, quantized):
    """ltx-core 1.0.0's FP8 loader (fp8_scaled_mm SDOps + module ops) reads our file; its FP8Linears hold our
    bytes, and `quantize_weight_to_fp8_per_tensor` of the source weights gives the same bits and scales."""
    path, layers = quantized
    if not REF_PYTHON.exists():
        reference_unavailable(f"{REF_PYTHON} does not exist")
    r = subprocess.run([str(REF_PYTHON), str(REFERENCE / "check_fp8_file.py"), str(path),
                        str(fixture_dir / "ltx_checkpoint.safetensors")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["mismatches"] == [] and got["on_meta"] == []
    ours = sorted(k[len("model.diffusion_model."):] for k in layers)
    # ltx-core's own layer rule (EXCLUDED_LAYER_SUBSTRINGS) picks exactly the Linears our default set quantized
    assert got["fp8_layers"] == ours and len(ours) > 0


def test_quantized_model_close_to_float32(fixture_dir, quantized):
    """Calibrated input scales make sense: our FP8 file in scaled mode stays near the official f32 output."""
    from ltx_jax.parity import Fixture
    from ltx_jax.parity.fp8 import FP8_FILE  # noqa: F401
    from ltx_jax.parity.transformer import F32, _modality, _velocity_and_x0, models
    from ltx_jax.transformer import Perturbations

    path, _ = quantized
    fx = Fixture(fixture_dir)
    config, _, _ = models(fx, F32)
    m = restore(path, "transformer", runtime=Runtime(param_dtype="float32", compute_dtype="float32", fp8="scaled"))
    video, audio = _modality(fx, "video", jnp.float32), _modality(fx, "audio", jnp.float32)
    v, a, _, _ = _velocity_and_x0(*nnx.split(m), video, audio, Perturbations.none(config.transformer.num_layers, 1))
    for ours, name in ((v, "video"), (a, "audio")):
        ref = fx[f"transformer.out.{name}_velocity"]
        err = np.linalg.norm(np.asarray(ours) - ref) / np.linalg.norm(ref)
        assert err < 0.05, (name, err)  # the fixture's own FP8 file: ~1-2e-2 against the same reference
    jax.clear_caches()


SHARDED = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import PartitionSpec as P
from ltx_jax.configs import Runtime
import ltx_jax.transformer
from ltx_jax.checkpoint.loader import restore
from ltx_jax.sharding import ShardingRules
from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
from ltx_jax.nn.fp8 import fp8_linear, fp8_weights
from ltx_jax.sharding import make_mesh

path = sys.argv[1]
mesh = make_mesh(data=2, tensor=4)
# tensor parallel on the output axis of stacked q/k/v, FSDP (data) on the input axis of everything else
rules = ShardingRules(mesh, [(r"to_(q|k|v)\.weight$", P(None, "tensor", "data")),
                             (r"transformer_blocks\..*weight$", P(None, None, "data"))])
rt = Runtime(param_dtype="float32", compute_dtype="float32", fp8="scaled")
m = restore(path, "transformer", runtime=rt, shardings=rules)
single = fp8_weights(restore(path, "transformer", runtime=rt))
f = SafetensorsFile(path)
out = {"specs": {}, "dtypes": set(), "bytes_equal": True, "matmul_err": 0.0}
for name, w in fp8_weights(m).items():
    out["specs"][name] = str(w.value.sharding.spec)
    out["dtypes"].add(str(w.value.dtype))
    for shard in w.value.addressable_shards:  # each device holds exactly its region of the file's e4m3 bytes
        ref = np.asarray(single[name].value)[shard.index]
        out["bytes_equal"] &= bool(np.array_equal(np.asarray(shard.data).view(np.uint8), ref.view(np.uint8)))
    layer = jax.tree.map(lambda a: a[0], w)
    x = jax.random.normal(jax.random.key(1), (2, 16, layer.value.shape[1]))
    y = jax.jit(fp8_linear)(x, layer)
    y1 = fp8_linear(x, jax.tree.map(lambda a: a[0], single[name]))
    y, y1 = np.asarray(y), np.asarray(y1)
    out["matmul_err"] = max(out["matmul_err"], float(np.abs(y - y1).max() / np.abs(y1).max()))
out["dtypes"] = sorted(out["dtypes"])
print(json.dumps(out))
"""


def test_fp8_weights_shard_like_any_weight(fixture_dir):
    """FSDP / tensor-parallel rules place FP8 weights (8 simulated devices): e4m3 on every device, each device
    holding its own region of the file's bytes, and a sharded FP8 matmul equal to the single-device one."""
    import os
    import sys

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", SHARDED, str(fixture_dir / "ltx_transformer_fp8.safetensors")],
                       cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["dtypes"] == ["float8_e4m3fn"] and out["bytes_equal"]
    specs = out["specs"]
    assert any(k.endswith("to_q.weight") for k in specs)
    for name, spec in specs.items():
        want = "P(None, 'tensor', 'data')" if re.search(r"to_(q|k|v)\.weight$", name) \
            else "P(None, None, 'data')"
        assert spec == want, (name, spec)
    assert out["matmul_err"] < 1e-6


def _fp8_layer(module, name):
    return fp8_weights(module)[name]


def test_lora_merge_and_converter_keep_fp8(fixture_dir, tmp_path):
    """LoRA merged onto scaled FP8 bases (dequantize, add, requantize: bit-exact to ltx-core, tests/test_lora.py)
    and an ltx-jax checkpoint converted from the FP8 file both restore as e4m3 `FP8Weight`s equal to what the
    dequantizing restore (`fp8="off"`) computes from the same source."""
    from ltx_jax.checkpoint.converter import convert
    from ltx_jax.nn.fp8 import dequantize

    src = fixture_dir / "ltx_transformer_fp8.safetensors"
    key = "transformer_blocks.1.attn1.to_q"
    w_off = restore(src, "transformer", runtime=Runtime(param_dtype="float32"))
    shape = np.asarray(w_off.transformer_blocks.attn1.to_q.weight.get_value()).shape[1:]
    rng = np.random.default_rng(3)
    lora = tmp_path / "lora.safetensors"
    save_file({f"diffusion_model.{key}.lora_A.weight": rng.standard_normal((4, shape[1])).astype(np.float32) * 0.1,
               f"diffusion_model.{key}.lora_B.weight": rng.standard_normal((shape[0], 4)).astype(np.float32) * 0.1},
              lora)
    ckpt = convert(src, tmp_path / "ckpt")
    fp8 = Runtime(param_dtype="float32", compute_dtype="float32", fp8="weights")
    for source, loras in ((src, [(lora, 0.7)]), (ckpt, [])):
        off = restore(source, "transformer", runtime=Runtime(param_dtype="float32", compute_dtype="float32"),
                      loras=loras)
        ours = restore(source, "transformer", runtime=fp8, loras=loras)
        for name, w in fp8_weights(ours).items():
            assert w.value.dtype == jnp.float8_e4m3fn
            seg, rest = name.split(".", 2)[1:]
            stacked = off.transformer_blocks
            for p in rest.split(".")[:-1]:
                stacked = stacked[int(p)] if p.isdigit() else getattr(stacked, p)
            ref = np.asarray(stacked.weight.get_value())[1:2]  # segment 1 = file block 1 (block 0 stays f32)
            assert np.array_equal(np.asarray(dequantize(w)), ref), name
    merged = _fp8_layer(restore(src, "transformer", runtime=fp8, loras=[(lora, 0.7)]),
                        f"transformer_blocks.1.{key.split('.', 2)[2]}.weight")
    plain = SafetensorsFile(src)[f"model.diffusion_model.{key}.weight"]
    assert not np.array_equal(np.asarray(merged.value)[0].view(np.uint8), np.asarray(plain).view(np.uint8))
