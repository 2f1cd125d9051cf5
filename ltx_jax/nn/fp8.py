"""FP8 weights (per-tensor scaled float8_e4m3fn) and the two FP8 matmul modes of the shared `Linear`.

Counterpart: ltx_core's `FP8Linear` (`quantization/fp8_scaled_mm.py`, the layout of the official
`ltx-2.3-22b-*-fp8.safetensors` files: `weight` e4m3 `[out, in]`, f32 scalar `weight_scale` with
`w = q * weight_scale`, f32 scalar `input_scale`) and `quantize_weight_to_fp8_per_tensor`.

`FP8Weight` is one pytree node holding the three arrays (for a stacked block parameter the scales carry the
layer axis too, `[L]`), plus the matmul mode as static data:

* `"weights"`: dequantize, `w = f32(q) * weight_scale` rounded once to the compute dtype, then the ordinary
  matmul in the compute dtype (weight-only FP8: FP8 memory, bf16 numerics of the weights' FP8 values).
* `"scaled"`: the official static scaled matmul,
  `y = (e4m3(clamp(x / input_scale, +-448)) @ q^T) * (input_scale * weight_scale) + bias`.
  On GPUs with FP8 tensor cores (compute capability >= 8.9) both operands go to `dot_general` as e4m3 with
  float32 accumulation, which XLA lowers to cuBLASLt's FP8 GEMM; elsewhere the same products are computed
  from the e4m3 values upcast to float32 (exact: every e4m3 value and every product of two is a float32),
  so only the accumulation order can differ. The choice follows the backend, not a flag.

`x / input_scale` is computed in float32 (ltx-core HEAD divides in the activation dtype, i.e. bf16 in a bf16
run; float32 is the more accurate of the two and what the reference fixtures' emulation does).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx, struct

__all__ = ["E4M3", "FP8_MAX", "MODES", "FP8Error", "FP8Weight", "fp8_linear", "dequantize", "quantize_per_tensor",
           "check_fp8", "native_fp8_gemm", "set_fp8_mode", "fp8_weights"]

E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)
FP8_MAX = float(ml_dtypes.finfo(ml_dtypes.float8_e4m3fn).max)  # 448
MODES = ("off", "weights", "scaled")  # Runtime.fp8


# Set by FP8 calibration (`ltx_jax.pipelines.quantize`): called as OBSERVER(linear, x) by every `Linear`.
OBSERVER = None


class FP8Error(ValueError):
    """An FP8 tensor or scale that cannot be used (non-finite, zero or negative scale, wrong dtype)."""


@struct.dataclass
class FP8Weight:
    """A per-tensor scaled e4m3 weight `[..., out, in]` with its f32 `weight_scale` and `input_scale`
    (shape `[...]`: scalars, or `[L]` for a stacked block parameter) and the matmul mode (static)."""

    value: jax.Array
    weight_scale: jax.Array
    input_scale: jax.Array
    mode: str = struct.field(pytree_node=False, default="scaled")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    @property
    def dtype(self):
        return self.value.dtype

    @property
    def nbytes(self) -> int:
        return sum(int(np.prod(a.shape)) * jnp.dtype(a.dtype).itemsize
                   for a in (self.value, self.weight_scale, self.input_scale))


def native_fp8_gemm() -> bool:
    """True when the default backend has FP8 tensor cores (NVIDIA compute capability >= 8.9)."""
    if jax.default_backend() != "gpu":
        return False
    try:
        major, minor = (int(p) for p in str(jax.devices()[0].compute_capability).split(".")[:2])
    except (AttributeError, ValueError):
        return False
    return (major, minor) >= (8, 9)


def _bcast(scale: jax.Array, ndim: int) -> jax.Array:
    """A scale `[...]` (leading axes of the weight) as a factor on the output `[..., tokens, out]`."""
    return scale.reshape(scale.shape + (1,) * (ndim - scale.ndim))


def dequantize(w: FP8Weight, dtype=jnp.float32) -> jax.Array:
    """`f32(q) * weight_scale`, rounded once to `dtype`."""
    return (w.value.astype(jnp.float32) * w.weight_scale.astype(jnp.float32)[..., None, None]).astype(dtype)


def _quantize_input(x: jax.Array, input_scale: jax.Array) -> jax.Array:
    q = jnp.clip(x.astype(jnp.float32) / input_scale.astype(jnp.float32), -FP8_MAX, FP8_MAX)
    return q.astype(jnp.float8_e4m3fn)


def fp8_linear(x: jax.Array, w: FP8Weight, bias: jax.Array | None = None) -> jax.Array:
    """`x [..., in] -> [..., out]` through an unstacked `FP8Weight` in its mode; the result has x's dtype."""
    if w.value.ndim != 2:
        raise ValueError(f"fp8_linear takes one layer's weight [out, in]; got shape {w.shape} (slice stacked weights)")
    dims = (((x.ndim - 1,), (1,)), ((), ()))
    if w.mode == "weights":
        y = jax.lax.dot_general(x, dequantize(w, x.dtype), dims)
    elif w.mode == "scaled":
        xq = _quantize_input(x, w.input_scale)
        if native_fp8_gemm():
            acc = jax.lax.dot_general(xq, w.value, dims, preferred_element_type=jnp.float32)
        else:  # the same products, upcast exactly; float32 accumulation
            acc = jax.lax.dot_general(xq.astype(jnp.float32), w.value.astype(jnp.float32), dims,
                                      precision=jax.lax.Precision.HIGHEST, preferred_element_type=jnp.float32)
        y = acc * (w.input_scale.astype(jnp.float32) * w.weight_scale.astype(jnp.float32))
    else:
        raise FP8Error(f"FP8Weight.mode={w.mode!r}; expected 'weights' or 'scaled'")
    if bias is not None:
        y = y + bias.astype(y.dtype)
    return y.astype(x.dtype)


def quantize_per_tensor(weight: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """(q e4m3 `[out, in]`, weight_scale f32) with weight_scale = amax(|w|) / 448, q = e4m3(clamp(w / scale)),
    bit for bit as ltx-core's `quantize_weight_to_fp8_per_tensor` (q = e4m3(clamp(w * inv)), inv = 448 / amax
    computed as torch does, weight_scale = 1 / inv) without its transpose. An all-zero weight gets scale 1
    (ltx-core would divide by zero)."""
    w = np.asarray(weight, np.float32)
    if not np.isfinite(w).all():
        raise FP8Error("cannot quantize a weight holding NaN or inf")
    amax = np.float32(np.abs(w).max()) if w.size else np.float32(0)
    if amax == 0:
        return np.zeros(w.shape, E4M3), np.float32(1.0)
    inv = np.float32(np.float32(1.0) / amax) * np.float32(FP8_MAX)  # torch's `448 / t` is `t.reciprocal() * 448`
    q = np.clip(w * inv, -FP8_MAX, FP8_MAX).astype(E4M3)
    return q, np.float32(np.float32(1.0) / inv)


def check_fp8(name: str, value: np.ndarray | None = None, weight_scale: np.ndarray | None = None,
              input_scale: np.ndarray | None = None) -> None:
    """Refuse (FP8Error naming `name`) NaN in e4m3 values, and scales that are not finite and > 0."""
    if value is not None:
        v = np.asarray(value)
        if v.dtype != E4M3:
            raise FP8Error(f"{name}: FP8 weight has dtype {v.dtype}; expected float8_e4m3fn")
        if v.size and bool(np.any((v.view(np.uint8) & 0x7F) == 0x7F)):  # e4m3fn has NaN, no inf
            raise FP8Error(f"{name}: FP8 weight holds NaN")
    for label, s in (("weight_scale", weight_scale), ("input_scale", input_scale)):
        if s is None:
            continue
        s = np.asarray(s, np.float32)
        if not np.isfinite(s).all():
            raise FP8Error(f"{name}: {label} is not finite ({s.ravel()[:4].tolist()})")
        if (s <= 0).any():
            raise FP8Error(f"{name}: {label} must be > 0, got {s.ravel()[:4].tolist()}")


def fp8_weights(module: nnx.Module) -> dict[str, FP8Weight]:
    """{dotted path of the Linear's weight: FP8Weight} for every FP8 weight under `module`."""
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(module)):
        value = var.get_value() if isinstance(var, nnx.Variable) else var
        if isinstance(value, FP8Weight):
            out[".".join(str(p) for p in path)] = value
    return out


def set_fp8_mode(module: nnx.Module, mode: str) -> nnx.Module:
    """Switch every FP8 weight under `module` to `mode` ('weights' or 'scaled'), in place; returns the module."""
    if mode not in ("weights", "scaled"):
        raise FP8Error(f"FP8 matmul mode {mode!r}; expected 'weights' or 'scaled'")
    for path, node in nnx.iter_modules(module):
        weight = getattr(node, "weight", None)
        if isinstance(weight, nnx.Variable) and isinstance(weight.get_value(), FP8Weight):
            w = weight.get_value()
            if mode == "scaled" and not bool(jnp.all(jnp.isfinite(w.input_scale))):
                raise FP8Error(f"{type(node).__name__} at {'.'.join(map(str, path))}: no input_scale (weight-only FP8); "
                               "the scaled matmul needs one")
            weight.set_value(w.replace(mode=mode))
    return module


@functools.singledispatch
def _nbytes(value) -> int:
    return int(np.prod(value.shape)) * jnp.dtype(value.dtype).itemsize


def state_nbytes(state: Mapping | nnx.State) -> int:
    """Bytes of every array leaf of a state (FP8 weights count their e4m3 bytes and scales)."""
    return sum(_nbytes(a) for a in jax.tree.leaves(state))
