"""Audio latent <-> audio tokens: the transformer denoises `[B, T, C * F]` tokens, the audio VAE works on
`[B, C, T, F]` latents (and normalizes them per token feature, in token layout).

Counterpart: ltx_core's audio patchifier (`b c t f -> b t (c f)` and back).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["tokens_to_latent", "latent_to_tokens"]


def tokens_to_latent(tokens: jax.Array, channels: int = 8) -> jax.Array:
    """Audio tokens `[B, T, C * F]` (what the transformer denoises) -> latent `[B, C, T, F]` (`b t (c f) -> b c t f`)."""
    b, t, cf = tokens.shape
    return jnp.asarray(tokens).reshape(b, t, channels, cf // channels).transpose(0, 2, 1, 3)


def latent_to_tokens(latent):
    """Latent `[B, C, T, F]` -> audio tokens `[B, T, C * F]` (`b c t f -> b t (c f)`), the inverse of
    `tokens_to_latent`; a NumPy latent stays NumPy."""
    b, c, t, f = latent.shape
    return latent.transpose(0, 2, 1, 3).reshape(b, t, c * f)
