"""Per-stream inputs of the blocks, computed once per forward: timestep modulation, RoPE tables, masks.

Counterpart: ltx_core `model/transformer/transformer_args.py` (`TransformerArgsPreprocessor`,
`MultiModalTransformerArgsPreprocessor`, `TransformerArgs`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from ltx_jax.configs import TransformerConfig
from ltx_jax.nn.rope import rope_tables
from ltx_jax.parallel import AttentionPlan
from ltx_jax.transformer.adaln import AdaLayerNormSingle
from ltx_jax.transformer.modality import Modality

__all__ = ["StreamArgs", "timestep_modulation", "self_attention_bias", "context_bias", "stream_rope",
           "cross_rope", "other_sigma"]


@struct.dataclass
class StreamArgs:
    """What every block reads for one stream (T' is T for per-token timesteps, else 1).

    Attributes:
        context: `[B, S, D]` text context at the stream width.
        context_bias: `[B, 1, 1, S]` additive text mask or None.
        timesteps: `[B, T', coef*D]` block modulation (added to each block's `scale_shift_table`).
        embedded_timestep: `[B, T', D]` for the output head.
        pe: RoPE (cos, sin) for self-attention.
        self_bias: `[B, 1, T, T]` additive self-attention bias or None.
        prompt_timestep: `[B, 1, 2*D]` prompt AdaLN (LTX-2.3) or None.
        cross_pe: RoPE of the time axis for the audio-video attention, or None (single stream).
        cross_scale_shift: `[B, 1, 4*D]` AV modulation from the other stream's sigma, or None.
        cross_gate: `[B, 1, D]` AV gate from the other stream's sigma, or None.
        enabled: static; False: the blocks leave this stream as it is.
        plan: static; the forward's sequence-parallel attention plan (`ltx_jax.parallel`) or None.
    """

    context: jax.Array
    context_bias: jax.Array | None
    timesteps: jax.Array
    embedded_timestep: jax.Array
    pe: tuple[jax.Array, jax.Array]
    self_bias: jax.Array | None = None
    prompt_timestep: jax.Array | None = None
    cross_pe: tuple[jax.Array, jax.Array] | None = None
    cross_scale_shift: jax.Array | None = None
    cross_gate: jax.Array | None = None
    enabled: bool = struct.field(pytree_node=False, default=True)
    plan: AttentionPlan | None = struct.field(pytree_node=False, default=None)


def timestep_modulation(adaln: AdaLayerNormSingle, t: jax.Array, batch: int, scale: float,
                        dtype: jnp.dtype) -> tuple[jax.Array, jax.Array]:
    """`[B, T']` (or anything that flattens to B*T') sigmas -> (`[B, T', coef*D]`, `[B, T', D]`).

    The batch and token axes stay separate (no flattening to B*T'), so a `[B, T]` input sharded over
    `data` x `context` keeps that sharding through the embedding MLP and the modulation.
    """
    mod, emb = adaln((t.astype(jnp.float32) * scale).reshape(batch, -1), dtype)
    return mod, emb


def self_attention_bias(mask: jax.Array | None, dtype: jnp.dtype) -> jax.Array | None:
    """`[B, T, T]` weights in [0, 1] -> `[B, 1, T, T]` bias: log(w) where w > 0, the dtype's minimum elsewhere."""
    if mask is None:
        return None
    finfo = jnp.finfo(dtype)
    positive = mask > 0
    logs = jnp.log(jnp.where(positive, jnp.maximum(mask, finfo.tiny), 1.0)).astype(dtype)
    return jnp.where(positive, logs, jnp.asarray(finfo.min, dtype))[:, None]


def context_bias(mask: jax.Array | None, dtype: jnp.dtype) -> jax.Array | None:
    """Binary `[B, S]` text mask -> `[B, 1, 1, S]` bias `(m - 1) * finfo.max`; float masks pass as biases."""
    if mask is None:
        return None
    if jnp.issubdtype(mask.dtype, jnp.floating):
        return mask.reshape(mask.shape[0], 1, -1, mask.shape[-1])
    return (mask - 1).astype(dtype).reshape(mask.shape[0], 1, 1, -1) * jnp.finfo(dtype).max


def stream_rope(config: TransformerConfig, positions: jax.Array, *, audio: bool, dtype: jnp.dtype):
    """Self-attention RoPE of one stream (video: 3 axes over the video width; audio: time only)."""
    dim, heads = (config.audio_inner_dim, config.audio_num_attention_heads) if audio else \
        (config.inner_dim, config.num_attention_heads)
    max_pos = config.audio_positional_embedding_max_pos if audio else config.positional_embedding_max_pos
    return rope_tables(positions, dim=dim, heads=heads, max_pos=max_pos, theta=config.positional_embedding_theta,
                       rope_type=config.rope_type, double_precision=config.double_precision_rope,
                       use_middle=config.use_middle_indices_grid, dtype=dtype)


def cross_rope(config: TransformerConfig, positions: jax.Array, *, audio: bool, dtype: jnp.dtype):
    """RoPE of the audio-video attention: time axis only, at `audio_cross_attention_dim`, the stream's
    own head count, max position max(video t max, audio t max), always from span midpoints."""
    heads = config.audio_num_attention_heads if audio else config.num_attention_heads
    max_pos = max(config.positional_embedding_max_pos[0], config.audio_positional_embedding_max_pos[0])
    return rope_tables(positions[:, 0:1], dim=config.audio_cross_attention_dim, heads=heads, max_pos=[max_pos],
                       theta=config.positional_embedding_theta, rope_type=config.rope_type,
                       double_precision=config.double_precision_rope, use_middle=True, dtype=dtype)


def other_sigma(modality: Modality, other: Modality) -> jax.Array:
    """`[B, 1]` the other stream's per-sample sigma (ltx_core >= 1.0.0 drives AV modulation with it)."""
    batch = modality.latent.shape[0]
    return jnp.broadcast_to(jnp.asarray(other.sigma, jnp.float32).reshape(-1), (batch,))[:, None]
