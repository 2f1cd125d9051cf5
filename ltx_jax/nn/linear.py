"""Linear layer with PyTorch's weight layout, so checkpoint tensors load without a transpose.

Counterpart: `torch.nn.Linear` as used throughout ltx_core. The weight is stored `[out, in]` (the
official file layout) and the product contracts the last axis of `x` with axis 1 of the weight;
XLA folds the transposition into the dot, so there is no runtime cost.

The weight may instead hold an `FP8Weight` (ltx_jax.nn.fp8: e4m3 value plus scales, restored from an FP8
file with `Runtime.fp8` on); the product then runs in that weight's FP8 mode (`fp8_linear`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.nn import fp8
from ltx_jax.nn.fp8 import FP8Weight, fp8_linear


class Linear(nnx.Module):
    """y = x @ weight.T + bias, weight `[out_features, in_features]`.

    Parameters are created in `param_dtype`; the product runs in the dtype of `x` (weights are cast to
    it), with float32 accumulation for float32 inputs.
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True,
                 param_dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs):
        self.in_features, self.out_features = in_features, out_features
        # PyTorch's default init: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
        bound = 1.0 / in_features**0.5
        self.weight = nnx.Param(jax.random.uniform(rngs.params(), (out_features, in_features), param_dtype,
                                                   -bound, bound))
        self.bias = nnx.Param(jax.random.uniform(rngs.params(), (out_features,), param_dtype, -bound, bound)) \
            if bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        if fp8.OBSERVER is not None:  # FP8 calibration (eager runs only): sees every Linear's input
            fp8.OBSERVER(self, x)
        weight = self.weight.get_value()
        if isinstance(weight, FP8Weight):
            return fp8_linear(x, weight, None if self.bias is None else self.bias[...])
        w = weight.astype(x.dtype)
        # [..., in] x [out, in] -> [..., out]
        y = jax.lax.dot_general(x, w, (((x.ndim - 1,), (1,)), ((), ())))
        if self.bias is not None:
            y = y + self.bias[...].astype(x.dtype)
        return y
