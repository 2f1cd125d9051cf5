"""The video VAE's resampling blocks: space-to-depth downsampling and depth-to-space upsampling.

Counterpart: ltx_core `model/video_vae/sampling.py` (`SpaceToDepthDownsample`, `DepthToSpaceUpsample`).
Channels-last activations `[B, F, H, W, C]`; strides are (time, height, width).

Time is causal: a latent of `1 + k` frames stands for `1 + 8k` pixel frames, the first latent frame
holding the first pixel frame alone. Hence the downsampler prepends a copy of frame 0 before halving
time, and the upsampler drops the first frame after doubling it (`2F - 1` frames).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.nn.conv import CausalConv3d
from ltx_jax.video_vae.ops import depth_to_space, space_to_depth

__all__ = ["SpaceToDepthDownsample", "DepthToSpaceUpsample"]


class SpaceToDepthDownsample(nnx.Module):
    """Encoder `compress_*_res`: conv to `out / prod(stride)` channels then space-to-depth, plus a skip
    path that is the input's space-to-depth averaged over groups of `in * prod(stride) / out` channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int, int], *,
                 spatial_padding_mode: str = "zeros", param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.stride = tuple(stride)
        volume = math.prod(self.stride)
        if (in_channels * volume) % out_channels or out_channels % volume:
            raise ValueError(f"SpaceToDepthDownsample: {in_channels} -> {out_channels} channels with stride "
                             f"{self.stride} does not divide into whole channel groups")
        self.group_size = in_channels * volume // out_channels
        self.conv = CausalConv3d(in_channels, out_channels // volume, 3, spatial_padding_mode=spatial_padding_mode,
                                 param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array, causal: bool = True) -> jax.Array:
        """`[B, F, H, W, in]` -> `[B, F', H/s1, W/s2, out]`, F' = (F + 1) / 2 for a time stride of 2."""
        if self.stride[0] == 2:
            x = jnp.concatenate([x[:, :1], x], axis=1)
        skip = space_to_depth(x, self.stride)
        # [..., out * g] -> [..., out, g]: consecutive packed channels are averaged.
        skip = skip.reshape(*skip.shape[:-1], -1, self.group_size).mean(axis=-1)
        return space_to_depth(self.conv(x, causal=causal), self.stride) + skip


class DepthToSpaceUpsample(nnx.Module):
    """Decoder `compress_*`: conv to `prod(stride) * in / reduction` channels then depth-to-space; with
    `residual`, plus the input's depth-to-space tiled `prod(stride) / reduction` times over channels."""

    def __init__(self, in_channels: int, stride: tuple[int, int, int], *, residual: bool = False,
                 reduction: int = 1, spatial_padding_mode: str = "zeros", param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.stride = tuple(stride)
        self.residual = residual
        self.repeats = math.prod(self.stride) // reduction
        self.conv = CausalConv3d(in_channels, math.prod(self.stride) * in_channels // reduction, 3,
                                 spatial_padding_mode=spatial_padding_mode, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array, causal: bool = True) -> jax.Array:
        """`[B, F, H, W, in]` -> `[B, F', H*s1, W*s2, in / reduction]`, F' = 2F - 1 for a time stride of 2."""
        drop = 1 if self.stride[0] == 2 else 0
        y = depth_to_space(self.conv(x, causal=causal), self.stride)[:, drop:]
        if self.residual:
            # torch's `.repeat` over channels concatenates whole copies: [x, x, ...].
            skip = jnp.tile(depth_to_space(x, self.stride), (1, 1, 1, 1, self.repeats))[:, drop:]
            y = y + skip
        return y
