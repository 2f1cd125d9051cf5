"""Parameter-free normalizations, computed in float32 (as ltx_core does for its norms).

Counterparts: ltx_core `utils.rms_norm` (torch.nn.functional.rms_norm), `model/common/normalization.py`
(`PixelNorm`), `torch.nn.LayerNorm(elementwise_affine=False)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def rms_norm(x: jax.Array, weight: jax.Array | None = None, eps: float = 1e-6) -> jax.Array:
    """x / sqrt(mean(x^2, -1) + eps) (* weight), in float32, returned in x's dtype.

    torch's fused rms_norm upcasts half inputs internally; so do we.
    """
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    if weight is not None:
        y = y * weight.astype(jnp.float32)
    return y.astype(x.dtype)


def pixel_norm(x: jax.Array, axis: int = -1, eps: float = 1e-8) -> jax.Array:
    """x / sqrt(mean(x^2, axis) + eps). Note ltx_core's default eps here is 1e-8, not 1e-6."""
    mean_sq = jnp.mean(jnp.square(x), axis=axis, keepdims=True)
    return x / jnp.sqrt(mean_sq + eps)


def layer_norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Mean-centred LayerNorm over the last axis without affine parameters, in float32."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)
