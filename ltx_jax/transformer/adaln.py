"""AdaLN-single timestep modulation and the LTX-2 caption projection.

Counterparts: ltx_core `model/transformer/adaln.py` (`AdaLayerNormSingle`), `text_projection.py`
(`PixArtAlphaTextProjection`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.nn.embeddings import CombinedTimestepEmbedding
from ltx_jax.nn.linear import Linear

__all__ = ["AdaLayerNormSingle", "CaptionProjection"]


class AdaLayerNormSingle(nnx.Module):
    """Timestep -> (`coefficients * dim` modulation values, the `dim` pre-SiLU embedding).

    `emb.timestep_embedder.linear_{1,2}` then `linear`. ltx_core also declares a `size_emb_dim`
    that has no weights and no effect; it is left out.
    """

    def __init__(self, dim: int, coefficients: int, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.emb = CombinedTimestepEmbedding(dim, param_dtype=param_dtype, rngs=rngs)
        self.linear = Linear(dim, coefficients * dim, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, t: jax.Array, dtype: jnp.dtype) -> tuple[jax.Array, jax.Array]:
        """t: `[...]` (already multiplied by the timestep scale) -> (`[..., coef*dim]`, `[..., dim]`) in `dtype`."""
        embedded = self.emb(t, dtype)
        return self.linear(jax.nn.silu(embedded)), embedded


class CaptionProjection(nnx.Module):
    """LTX-2 only: `linear_1` (caption width -> dim), GELU-tanh, `linear_2` (dim -> dim)."""

    def __init__(self, in_features: int, dim: int, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.linear_1 = Linear(in_features, dim, param_dtype=param_dtype, rngs=rngs)
        self.linear_2 = Linear(dim, dim, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear_2(jax.nn.gelu(self.linear_1(x), approximate=True))
