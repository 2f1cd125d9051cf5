"""Channels-last rearrangements of the video VAE (patchify, space-to-depth), latent statistics, GroupNorm.

Counterparts: ltx_core `model/video_vae/ops.py` (`patchify`, `unpatchify`, `PerChannelStatistics`), the
einops patterns inside `model/video_vae/sampling.py` and `model/upsampler/pixel_shuffle.py`, and
`torch.nn.GroupNorm`.

The official code is channels-first; its packed channel orders are kept exactly so weights line up:
patchify packs `(c, r, q)` (colour, then the *width* offset, then the *height* offset), while
space-to-depth packs `(c, p_t, p_h, p_w)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["patchify", "unpatchify", "space_to_depth", "depth_to_space", "PerChannelStatistics",
           "Buffer", "GroupNorm", "group_norm"]


def patchify(x: jax.Array, patch: int = 4) -> jax.Array:
    """Pixels `[B, F, H, W, c]` -> `[B, F, H/p, W/p, c*p*p]`, channels packed `(c, r=w offset, q=h offset)`."""
    b, f, h, w, c = x.shape
    # [B, F, H/p, q, W/p, r, c] -> [B, F, H/p, W/p, c, r, q]
    x = x.reshape(b, f, h // patch, patch, w // patch, patch, c).transpose(0, 1, 2, 4, 6, 5, 3)
    return x.reshape(b, f, h // patch, w // patch, c * patch * patch)


def unpatchify(x: jax.Array, patch: int = 4) -> jax.Array:
    """Inverse of `patchify`: `[B, F, h, w, c*p*p]` -> `[B, F, h*p, w*p, c]`."""
    b, f, h, w, cpp = x.shape
    c = cpp // (patch * patch)
    # [B, F, h, w, c, r, q] -> [B, F, h, q, w, r, c]
    x = x.reshape(b, f, h, w, c, patch, patch).transpose(0, 1, 2, 6, 3, 5, 4)
    return x.reshape(b, f, h * patch, w * patch, c)


def space_to_depth(x: jax.Array, stride: tuple[int, int, int]) -> jax.Array:
    """`[B, D*s0, H*s1, W*s2, c]` -> `[B, D, H, W, c*s0*s1*s2]`, channels packed `(c, s0, s1, s2)`."""
    s0, s1, s2 = stride
    b, d, h, w, c = x.shape
    # [B, D, s0, H, s1, W, s2, c] -> [B, D, H, W, c, s0, s1, s2]
    x = x.reshape(b, d // s0, s0, h // s1, s1, w // s2, s2, c).transpose(0, 1, 3, 5, 7, 2, 4, 6)
    return x.reshape(b, d // s0, h // s1, w // s2, c * s0 * s1 * s2)


def depth_to_space(x: jax.Array, stride: tuple[int, int, int]) -> jax.Array:
    """Inverse of `space_to_depth`: `[B, D, H, W, c*s0*s1*s2]` -> `[B, D*s0, H*s1, W*s2, c]`.

    With stride (s, 1, 1), (1, s, s) or (s, s, s) this is also ltx_core's `PixelShuffleND` (1, 2, 3 dims).
    """
    s0, s1, s2 = stride
    b, d, h, w, packed = x.shape
    c = packed // (s0 * s1 * s2)
    # [B, D, H, W, c, s0, s1, s2] -> [B, D, s0, H, s1, W, s2, c]
    x = x.reshape(b, d, h, w, c, s0, s1, s2).transpose(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, d * s0, h * s1, w * s2, c)


class Buffer(nnx.Variable):
    """A non-trainable buffer of the checkpoint (ltx_core registers these with `register_buffer`)."""


class PerChannelStatistics(nnx.Module):
    """Dataset statistics of the latent means: `normalize` maps encoder output to the DiT's space.

    Official buffer names are `std-of-means` / `mean-of-means`; NNX attributes cannot hold a hyphen,
    the loader maps `mean_of_means` <-> `mean-of-means`.
    """

    def __init__(self, channels: int, *, param_dtype=jnp.float32):
        self.std_of_means = Buffer(jnp.ones((channels,), param_dtype))
        self.mean_of_means = Buffer(jnp.zeros((channels,), param_dtype))

    def normalize(self, x: jax.Array) -> jax.Array:
        """`[..., C]`: (x - mean) / std."""
        return (x - self.mean_of_means[...].astype(x.dtype)) / self.std_of_means[...].astype(x.dtype)

    def un_normalize(self, x: jax.Array) -> jax.Array:
        """`[..., C]`: x * std + mean."""
        return x * self.std_of_means[...].astype(x.dtype) + self.mean_of_means[...].astype(x.dtype)


def group_norm(x: jax.Array, groups: int, eps: float, weight: jax.Array | None = None,
               bias: jax.Array | None = None) -> jax.Array:
    """`torch.nn.functional.group_norm` on channels-last `[N, *spatial, C]`, statistics in float32.

    Mean and biased variance over the spatial axes and the `C / groups` channels of each group.
    """
    shape = x.shape
    x32 = x.astype(jnp.float32).reshape(shape[0], -1, groups, shape[-1] // groups)
    mean = jnp.mean(x32, axis=(1, 3), keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=(1, 3), keepdims=True)
    y = ((x32 - mean) * jax.lax.rsqrt(var + eps)).reshape(shape)
    if weight is not None:
        y = y * weight.astype(jnp.float32) + bias.astype(jnp.float32)
    return y.astype(x.dtype)


class GroupNorm(nnx.Module):
    """`torch.nn.GroupNorm(groups, channels, eps, affine=True)` on channels-last input.

    torch's default eps is 1e-5 (the upsampler's norms); the VAE's `norm3` passes 1e-6.
    """

    def __init__(self, groups: int, channels: int, *, eps: float = 1e-5, param_dtype=jnp.float32):
        if channels % groups:
            raise ValueError(f"GroupNorm: {channels} channels do not split into {groups} groups")
        self.groups, self.eps = groups, eps
        self.weight = nnx.Param(jnp.ones((channels,), param_dtype))
        self.bias = nnx.Param(jnp.zeros((channels,), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        return group_norm(x, self.groups, self.eps, self.weight[...], self.bias[...])
