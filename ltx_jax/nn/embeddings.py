"""Sinusoidal timestep embedding and its MLP, shared by the DiT's AdaLN and the VAE decoder.

Counterpart: ltx_core `model/transformer/timestep_embedding.py` (`get_timestep_embedding`,
`TimestepEmbedding`, `PixArtAlphaCombinedTimestepSizeEmbeddings`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.nn.linear import Linear

TIMESTEP_CHANNELS = 256


def timestep_embedding(t: jax.Array, dim: int = TIMESTEP_CHANNELS, max_period: float = 10000.0) -> jax.Array:
    """[...] -> [..., dim] float32: [cos(t f), sin(t f)] with f_i = exp(-ln(max_period) i / (dim/2)).

    As ltx_core with flip_sin_to_cos=True and downscale_freq_shift=0; computed in float32.
    """
    half = dim // 2
    exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half
    args = t.astype(jnp.float32)[..., None] * jnp.exp(exponent)
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0),) * (emb.ndim - 1) + ((0, 1),))
    return emb


class TimestepEmbedding(nnx.Module):
    """linear_1 -> SiLU -> linear_2."""

    def __init__(self, in_channels: int, dim: int, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.linear_1 = Linear(in_channels, dim, param_dtype=param_dtype, rngs=rngs)
        self.linear_2 = Linear(dim, dim, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear_2(jax.nn.silu(self.linear_1(x)))


class CombinedTimestepEmbedding(nnx.Module):
    """Sinusoid of the timestep, cast to the compute dtype, then `timestep_embedder` (PixArt-alpha)."""

    def __init__(self, dim: int, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.timestep_embedder = TimestepEmbedding(TIMESTEP_CHANNELS, dim, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, t: jax.Array, dtype: jnp.dtype) -> jax.Array:
        """t: [...] -> [..., dim] in `dtype`."""
        return self.timestep_embedder(timestep_embedding(t).astype(dtype))
