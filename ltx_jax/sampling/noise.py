"""Noise: initial noising of a latent state from an explicit noise array, and JAX-RNG draws for our runs.

Counterparts: ltx_core `components/noisers.py` (`GaussianNoiser`) and ltx_pipelines `utils/samplers.py`
(`_get_new_noise`, `_channelwise_normalize`: the res_2s SDE noise).

A port replaying an official run passes the official noise arrays (recorded in the reference fixtures);
our own runs draw with `jax.random`. The draws can never equal torch's generator, so the two paths share
only the arithmetic, which is what the parity tests check.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ltx_jax.sampling.conditioning import LatentState

__all__ = ["noise_latent", "noise_state", "gaussian_noise", "initial_noise", "normalize_sde_noise", "sde_noise"]


def noise_latent(latent: jax.Array, noise: jax.Array, denoise_mask: jax.Array,
                 noise_scale: float | jax.Array = 1.0) -> jax.Array:
    """`noise * (mask * s) + latent * (1 - mask * s)`, cast to latent's dtype (`GaussianNoiser`).

    Args:
        latent: `[B, T, C]` the conditioned state before noising (zeros except conditioned tokens, or the
            upsampled stage-1 latent for a second stage).
        noise: `[B, T, C]` standard normal noise (drawn in the latent's dtype by the official noiser).
        denoise_mask: `[B, T, 1]` float32.
        noise_scale: s, 1 for a first stage and the first stage-2 sigma for a second stage.
    """
    scaled = denoise_mask * jnp.asarray(noise_scale, denoise_mask.dtype)
    return (noise * scaled + latent * (1 - scaled)).astype(latent.dtype)


def noise_state(state: LatentState, noise: jax.Array, noise_scale: float | jax.Array = 1.0) -> LatentState:
    """`GaussianNoiser(state, noise_scale)` with the noise given explicitly."""
    return state.replace(latent=noise_latent(state.latent, noise, state.denoise_mask, noise_scale))


def gaussian_noise(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """Standard normal noise of `shape` (our runs; not torch's stream)."""
    return jax.random.normal(key, shape, dtype)


def initial_noise(key: jax.Array, video_shape: tuple[int, ...], audio_shape: tuple[int, ...],
                  dtype: jnp.dtype = jnp.float32) -> tuple[jax.Array, jax.Array]:
    """(video, audio) initial noise from one key, video first as the official generator order."""
    kv, ka = jax.random.split(key)
    return gaussian_noise(kv, video_shape, dtype), gaussian_noise(ka, audio_shape, dtype)


def normalize_sde_noise(raw: jax.Array) -> jax.Array:
    """`_get_new_noise`'s normalization of a raw N(0, 1) draw `[B, T, C]`.

    Standardizes over the whole tensor, then again over (T, C) per batch element (what
    `_channelwise_normalize` does on patchified tokens despite its name). Both stds are unbiased (N - 1).
    Computes in float32 or wider (the official noise is float64).
    """
    x = raw.astype(jnp.promote_types(raw.dtype, jnp.float32))
    x = (x - x.mean()) / x.std(ddof=1)
    return (x - x.mean(axis=(-2, -1), keepdims=True)) / x.std(axis=(-2, -1), ddof=1, keepdims=True)


def sde_noise(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """A normalized res_2s SDE noise draw for our runs."""
    return normalize_sde_noise(jax.random.normal(key, shape, dtype))
