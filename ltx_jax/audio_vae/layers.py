"""Building blocks of the audio VAE on channels-last spectrograms `[B, T, F, C]` (time, mel, channels).

Counterparts in ltx_core `model/audio_vae/`: `causal_conv_2d.py` (`CausalConv2d`), `resnet.py`
(`ResnetBlock`), `upsample.py` (`Upsample`), `downsample.py` (`Downsample`), and
`model/common/normalization.py` (`PixelNorm`, GroupNorm). The official "height" axis is time (dim 2 of
`[B, C, T, F]`), "width" is the mel axis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.nn.conv import Conv
from ltx_jax.video_vae.ops import GroupNorm

__all__ = ["CAUSALITY_AXES", "CausalConv2d", "ResnetBlock", "Upsample", "Downsample", "make_norm"]

CAUSALITY_AXES = ("height", "width", "none", "width-compatibility")
PIXEL_NORM_EPS = 1e-6


def _conv_pads(axis: str, kernel: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((time before, after), (mel before, after)) zero padding of a causal k x k convolution."""
    p = kernel - 1
    sym = (p // 2, p - p // 2)
    if axis == "height":
        return (p, 0), sym
    if axis in ("width", "width-compatibility"):
        return sym, (p, 0)
    return sym, sym


class CausalConv2d(nnx.Module):
    """Zero-pad (causal along `axis`), then a stride-1 `Conv2d` named `conv` (keys `<name>.conv.weight`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, axis: str, param_dtype, rngs):
        self.pads = _conv_pads(axis, kernel_size)
        self.conv = Conv(in_channels, out_channels, kernel_size, ndim=2, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """`[B, T, F, in]` -> `[B, T, F, out]`."""
        return self.conv(jnp.pad(x, ((0, 0), *self.pads, (0, 0))))


def pixel_norm(x: jax.Array) -> jax.Array:
    """`x / sqrt(mean_c(x^2) + 1e-6)` over channels (ltx_core `PixelNorm(dim=1, eps=1e-6)`)."""
    return x / jnp.sqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + PIXEL_NORM_EPS)


def make_norm(norm_type: str, channels: int, param_dtype):
    """PixelNorm (no parameters) or GroupNorm(32, channels, eps=1e-6) with `weight`/`bias`."""
    if norm_type == "pixel":
        return None
    return GroupNorm(32, channels, eps=1e-6, param_dtype=param_dtype)


def _norm(module, x: jax.Array) -> jax.Array:
    return pixel_norm(x) if module is None else module(x)


class ResnetBlock(nnx.Module):
    """norm -> SiLU -> causal conv3 -> norm -> SiLU -> causal conv3, plus the input (a causal 1x1 `nin_shortcut`
    when the width changes). No time embedding, no dropout (the audio VAE has neither)."""

    def __init__(self, in_channels: int, out_channels: int, *, norm_type: str, axis: str, param_dtype, rngs):
        self.norm1 = make_norm(norm_type, in_channels, param_dtype)
        self.conv1 = CausalConv2d(in_channels, out_channels, 3, axis=axis, param_dtype=param_dtype, rngs=rngs)
        self.norm2 = make_norm(norm_type, out_channels, param_dtype)
        self.conv2 = CausalConv2d(out_channels, out_channels, 3, axis=axis, param_dtype=param_dtype, rngs=rngs)
        self.nin_shortcut = (CausalConv2d(in_channels, out_channels, 1, axis=axis, param_dtype=param_dtype, rngs=rngs)
                             if in_channels != out_channels else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv1(jax.nn.silu(_norm(self.norm1, x)))
        h = self.conv2(jax.nn.silu(_norm(self.norm2, h)))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


class Upsample(nnx.Module):
    """Nearest x2 on time and mel, a causal conv3 (`upsample.conv.conv`), then the first time row (axis
    "height") or mel column (axis "width") dropped: T -> 2T - 1 for the causal time axis."""

    def __init__(self, channels: int, *, axis: str, param_dtype, rngs):
        self.axis = axis
        self.conv = CausalConv2d(channels, channels, 3, axis=axis, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        x = self.conv(x)
        if self.axis == "height":
            return x[:, 1:]
        if self.axis == "width":
            return x[:, :, 1:]
        return x


_DOWN_PADS = {"none": ((0, 1), (0, 1)), "width": ((0, 1), (2, 0)), "height": ((2, 0), (0, 1)),
              "width-compatibility": ((0, 1), (1, 0))}


class Downsample(nnx.Module):
    """Zero-pad (time 2 before, mel 1 after, for the causal time axis), then a plain stride-2 3x3 `Conv2d`
    named `conv` (keys `downsample.conv.weight`, one `.conv` fewer than the causal convs): 4n+1 -> 2n+1."""

    def __init__(self, channels: int, *, axis: str, param_dtype, rngs):
        self.pads = _DOWN_PADS[axis]
        self.conv = Conv(channels, channels, 3, stride=2, ndim=2, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(jnp.pad(x, ((0, 0), *self.pads, (0, 0))))
