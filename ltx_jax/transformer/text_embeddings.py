"""Text side stored in the DiT checkpoint: stacked Gemma hidden states -> features -> connectors -> contexts.

Counterparts: ltx_core `text_encoders/gemma/feature_extractor.py` (`FeatureExtractorV1`, `FeatureExtractorV2`)
and `embeddings_processor.py` (`EmbeddingsProcessor.process_hidden_states`). Module paths are the official
ones (`feature_extractor.aggregate_embed`, `video_connector`, `audio_connector`); the file keeps them
under other prefixes (see `ltx_jax.transformer.loading`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.configs import ConnectorConfig, Runtime
from ltx_jax.nn.linear import Linear
from ltx_jax.transformer.connector import Embeddings1DConnector

__all__ = ["FeatureExtractorV1", "FeatureExtractorV2", "EmbeddingsProcessor", "stack_hidden_states"]


def stack_hidden_states(hidden_states: Sequence[jax.Array] | jax.Array) -> jax.Array:
    """A sequence of L `[B, T, D]` hidden states (embeddings first) -> `[B, T, D, L]`; an array passes through."""
    if isinstance(hidden_states, (list, tuple)):
        return jnp.stack(hidden_states, axis=-1)
    return hidden_states


def _masked_minmax_norm(x: jax.Array, mask: jax.Array) -> jax.Array:
    """V1: per sample and layer, over valid tokens and all channels: 8 (x - mean) / (max - min + 1e-6).

    `[B, T, D, L]`, `[B, T]` -> `[B, T, D*L]` (d-major, layer-minor), zero at padded positions.
    """
    b, t, d, layers = x.shape
    valid = mask.astype(bool)[:, :, None, None]
    lengths = mask.astype(jnp.float32).sum(axis=1)  # ltx_core: attention_mask.sum(-1)
    eps = 1e-6
    # The denominator is float32 whatever x's dtype (ltx_core: int64 lengths + a Python float), so in
    # bf16 the mean and the normalised values come out float32, as there.
    mean = jnp.where(valid, x, 0).sum(axis=(1, 2), keepdims=True) / ((lengths * d).reshape(b, 1, 1, 1) + eps)
    lo = jnp.where(valid, x, jnp.inf).min(axis=(1, 2), keepdims=True)
    hi = jnp.where(valid, x, -jnp.inf).max(axis=(1, 2), keepdims=True)
    normed = (8 * (x - mean) / (hi - lo + eps)).reshape(b, t, d * layers)
    return jnp.where(mask.astype(bool)[..., None], normed, 0)


def _per_token_rms_norm(x: jax.Array, mask: jax.Array) -> jax.Array:
    """V2: per token and layer, x / sqrt(mean over D of x^2 + 1e-6); `[B, T, D, L]` -> `[B, T, D*L]`, padding 0."""
    b, t, d, layers = x.shape
    normed = x * jax.lax.rsqrt(jnp.mean(x ** 2, axis=2, keepdims=True) + 1e-6)
    return jnp.where(mask.astype(bool)[..., None], normed.reshape(b, t, d * layers), 0)


class FeatureExtractorV1(nnx.Module):
    """LTX-2: masked min-max norm over (tokens, channels), then `aggregate_embed` (no bias) to the text width.

    The same features feed the video and the audio connectors.
    """

    def __init__(self, config: ConnectorConfig, runtime: Runtime, *, rngs: nnx.Rngs):
        flat = config.text_hidden_size * config.text_num_hidden_states
        self.aggregate_embed = Linear(flat, config.text_hidden_size, bias=False,
                                      param_dtype=jnp.dtype(runtime.param_dtype), rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        features = self.aggregate_embed(_masked_minmax_norm(x, mask).astype(x.dtype))
        return features, features


class FeatureExtractorV2(nnx.Module):
    """LTX-2.3: per-token RMS norm, then per-stream `{video,audio}_aggregate_embed` of the norm rescaled by
    sqrt(stream width / text width)."""

    def __init__(self, config: ConnectorConfig, runtime: Runtime, *, rngs: nnx.Rngs):
        flat = config.text_hidden_size * config.text_num_hidden_states
        pd = jnp.dtype(runtime.param_dtype)
        self.text_width = config.text_hidden_size
        self.video_aggregate_embed = Linear(flat, config.video_inner_dim, param_dtype=pd, rngs=rngs)
        self.audio_aggregate_embed = Linear(flat, config.audio_inner_dim, param_dtype=pd, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        normed = _per_token_rms_norm(x, mask).astype(x.dtype)
        out = []
        for embed in (self.video_aggregate_embed, self.audio_aggregate_embed):
            # Python-float factor, as ltx_core's `x * math.sqrt(target / source)`.
            out.append(embed(normed * math.sqrt(embed.out_features / self.text_width)))
        return out[0], out[1]


class EmbeddingsProcessor(nnx.Module):
    """Feature extractor + video and audio `Embeddings1DConnector`s."""

    def __init__(self, config: ConnectorConfig, runtime: Runtime = Runtime(), *, rngs: nnx.Rngs):
        self.config = config
        self.compute_dtype = jnp.dtype(runtime.compute_dtype)
        extractor = FeatureExtractorV1 if config.feature_extractor == "v1" else FeatureExtractorV2
        self.feature_extractor = extractor(config, runtime, rngs=rngs)
        self.video_connector = Embeddings1DConnector(config, runtime, audio=False, rngs=rngs)
        self.audio_connector = Embeddings1DConnector(config, runtime, audio=True, rngs=rngs)

    def __call__(self, hidden_states: Sequence[jax.Array] | jax.Array,
                 attention_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Text contexts for the DiT.

        Args:
            hidden_states: the text encoder's L hidden states `[B, T, D_text]` (embeddings first), or
                their stack `[B, T, D_text, L]`. T must be a multiple of 128 (the registers).
            attention_mask: `[B, T]` binary, left padding (the tokenizer's layout).

        Returns:
            (video context `[B, T, D_video]`, audio context `[B, T, D_audio]`) in the compute dtype. Every
            position is valid afterwards (the registers fill the padding), so the DiT needs no mask.
        """
        x = stack_hidden_states(hidden_states).astype(self.compute_dtype)
        c = self.config
        if x.ndim != 4 or x.shape[2:] != (c.text_hidden_size, c.text_num_hidden_states):
            raise ValueError(f"text hidden states stack to {tuple(x.shape)}; expected [B, T, {c.text_hidden_size}, "
                             f"{c.text_num_hidden_states}] (text width, number of hidden states)")
        if attention_mask.shape != x.shape[:2]:
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}; expected {x.shape[:2]}")
        video, audio = self.feature_extractor(x, attention_mask)
        return self.video_connector(video, attention_mask), self.audio_connector(audio, attention_mask)
