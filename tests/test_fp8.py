"""FP8: the Linear's two modes against explicit numpy references, clamping, refused scales and weights, the
FP8 transformer against the official fixture, and our quantizer's file loaded by ltx-core 1.0.0."""

import json
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
from ltx_jax.convert.loading import LoadError
from ltx_jax.convert.restore import restore
from ltx_jax.convert.safetensors_file import SafetensorsFile, save_file
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
    from ltx_jax.pipelines.quantize import QuantizeSpec, quantize_checkpoint

    out = tmp_path_factory.mktemp("fp8q") / "ltx_fp8.safetensors"
    report = quantize_checkpoint(fixture_dir / "ltx_checkpoint.safetensors", out,
                                 QuantizeSpec(sigmas=(1.0, 0.725), frames=9, height=128, width=128))
    return out, report


def test_quantized_file_loads_in_ltx_core(fixture_dir, quantized):
    """ltx-core 1.0.0's FP8 loader (fp8_scaled_mm SDOps + module ops) reads our file; its FP8Linears hold our
    bytes, and `quantize_weight_to_fp8_per_tensor` of the source weights gives the same bits and scales."""
    path, report = quantized
    if not REF_PYTHON.exists():
        reference_unavailable(f"{REF_PYTHON} does not exist")
    r = subprocess.run([str(REF_PYTHON), str(REFERENCE / "check_fp8_file.py"), str(path),
                        str(fixture_dir / "ltx_checkpoint.safetensors")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["mismatches"] == [] and got["on_meta"] == []
    ours = sorted(k[len("model.diffusion_model."):] for k in report["input_amax"])
    assert got["fp8_layers"] == ours and len(ours) == report["quantized_layers"] > 0


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
