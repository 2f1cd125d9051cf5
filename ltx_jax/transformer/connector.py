"""The text connector: a small 1D transformer over the text tokens, with learnable registers in place of padding.

Counterpart: ltx_core `text_encoders/gemma/embeddings_connector.py` (`Embeddings1DConnector`,
`_BasicTransformerBlock1D`). ltx_core only handles batch 1 (its register replacement indexes with a
squeezed mask); this one does the same per sample, for any batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.configs import ConnectorConfig, Runtime
from ltx_jax.nn.norms import rms_norm
from ltx_jax.nn.rope import rope_tables
from ltx_jax.transformer.attention import Attention, FeedForward

__all__ = ["Embeddings1DConnector", "replace_padding_with_registers"]


class _Block1D(nnx.Module):
    """Pre-norm block without modulation: `h += attn1(rms(h))`, `h += ff(rms(h))`."""

    def __init__(self, dim: int, heads: int, head_dim: int, gated: bool, runtime: Runtime, *, rngs: nnx.Rngs):
        pd = jnp.dtype(runtime.param_dtype)
        self.attn1 = Attention(dim, None, heads, head_dim, gated=gated, implementation=runtime.kernel,
                               param_dtype=pd, rngs=rngs)
        self.ff = FeedForward(dim, param_dtype=pd, rngs=rngs)

    def __call__(self, h: jax.Array, pe) -> jax.Array:
        h = h + self.attn1(rms_norm(h), pe=pe)
        return h + self.ff(rms_norm(h))


def replace_padding_with_registers(x: jax.Array, mask: jax.Array, registers: jax.Array) -> jax.Array:
    """ltx_core's register replacement, per sample.

    The valid tokens (mask 1), in order, are packed at the front (zeros after them); then position i
    keeps that packed value where the *reversed* mask is 1 and takes register `i mod R` elsewhere. With
    the tokenizer's left padding the reversed mask marks exactly the first n_valid positions.

    Args:
        x: `[B, T, D]` features; mask: `[B, T]` binary; registers: `[R, D]` with T a multiple of R.

    Returns:
        `[B, T, D]`.
    """
    b, t, _ = x.shape
    if t % registers.shape[0]:
        raise ValueError(f"text length {t} must be a multiple of the {registers.shape[0]} learnable registers")
    valid = mask.astype(bool)
    # Stable sort of (not valid): valid tokens first, each group in its original order.
    order = jnp.argsort(~valid, axis=1, stable=True)
    packed = jnp.take_along_axis(x, order[..., None], axis=1)
    packed = jnp.where(jnp.take_along_axis(valid, order, axis=1)[..., None], packed, 0)
    tiled = jnp.tile(registers, (t // registers.shape[0], 1)).astype(x.dtype)  # [T, D]
    return jnp.where(valid[:, ::-1, None], packed, tiled[None])


class Embeddings1DConnector(nnx.Module):
    """`learnable_registers` `[128, D]` and `transformer_1d_blocks` (stacked, scanned)."""

    def __init__(self, config: ConnectorConfig, runtime: Runtime, *, audio: bool, rngs: nnx.Rngs):
        c = self.config = config
        self.heads = c.audio_heads if audio else c.connector_num_attention_heads
        head_dim = c.audio_head_dim if audio else c.connector_attention_head_dim
        layers = c.audio_num_layers if audio else c.connector_num_layers
        self.dim = self.heads * head_dim
        self.learnable_registers = nnx.Param(
            jax.random.uniform(rngs.params(), (c.num_learnable_registers, self.dim), jnp.dtype(runtime.param_dtype),
                               -1.0, 1.0))

        @nnx.split_rngs(splits=layers)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def blocks(r: nnx.Rngs) -> _Block1D:
            return _Block1D(self.dim, self.heads, head_dim, c.connector_apply_gated_attention, runtime, rngs=r)

        self.transformer_1d_blocks = blocks(rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        """`[B, T, D]` features and `[B, T]` binary mask (left padding) -> `[B, T, D]`.

        After the registers fill the padding every position is attended (ltx_core clears the mask).
        """
        if x.shape[-1] != self.dim:
            raise ValueError(f"connector input width {x.shape[-1]} != connector width {self.dim}")
        c = self.config
        x = replace_padding_with_registers(x, mask, self.learnable_registers[...])
        # Token index positions [1, 1, T] (float32, no midpoint), shared by the batch.
        positions = jnp.arange(x.shape[1], dtype=jnp.float32)[None, None]
        pe = rope_tables(positions, dim=self.dim, heads=self.heads, max_pos=c.connector_positional_embedding_max_pos,
                         theta=c.positional_embedding_theta, rope_type=c.rope_type,
                         double_precision=c.double_precision_rope, use_middle=False, dtype=x.dtype)

        @nnx.scan(in_axes=(0, nnx.Carry, None), out_axes=nnx.Carry)
        def run(block: _Block1D, h, pe):
            return block(h, pe)

        return rms_norm(run(self.transformer_1d_blocks, x, pe))
