"""1-D convolutions and BigVGAN-v2 anti-aliased resampling on channels-last signals `[B, L, C]`.

Counterparts in ltx_core `model/audio_vae/vocoder.py`: `nn.Conv1d` / `nn.ConvTranspose1d` (torch weight
layouts), `SnakeBeta` (log-scale alpha and beta), `UpSample1d` (kaiser filter from the checkpoint; the
non-persistent Hann-sinc filter of the BWE skip), `LowPassFilter1d` / `DownSample1d` and `Activation1d`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.nn.dsp import HANN_ROLLOFF, HANN_ZERO_CROSSINGS, hann_sinc_filter, kaiser_sinc_filter
from ltx_jax.video_vae.ops import Buffer

__all__ = ["Conv1d", "ConvTranspose1d", "SnakeBeta", "Activation1d", "upsample_1d", "lowpass_1d",
           "hann_sinc_filter", "kaiser_sinc_filter", "HANN_ROLLOFF", "HANN_ZERO_CROSSINGS"]


def _uniform(rngs, shape, fan_in, dtype):
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(rngs.params(), shape, dtype, -bound, bound)


class Conv1d(nnx.Module):
    """`torch.nn.Conv1d` (weight `[out, in, k]`) with explicit (left, right) zero padding and dilation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, dilation: int = 1,
                 padding: tuple[int, int] = (0, 0), bias: bool = True, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.dilation, self.padding = dilation, tuple(padding)
        fan_in = in_channels * kernel_size
        self.weight = nnx.Param(_uniform(rngs, (out_channels, in_channels, kernel_size), fan_in, param_dtype))
        self.bias = nnx.Param(_uniform(rngs, (out_channels,), fan_in, param_dtype)) if bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        """`[B, L, in]` -> `[B, L', out]`."""
        y = jax.lax.conv_general_dilated(x, self.weight[...].astype(x.dtype), (1,), [self.padding],
                                         rhs_dilation=(self.dilation,), dimension_numbers=("NWC", "OIW", "NWC"))
        return y if self.bias is None else y + self.bias[...].astype(y.dtype)


class ConvTranspose1d(nnx.Module):
    """`torch.nn.ConvTranspose1d(in, out, k, stride, padding)` (weight `[in, out, k]`): length (L-1) s - 2p + k."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int, *,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.stride, self.padding, self.kernel_size = stride, padding, kernel_size
        fan_in = out_channels * kernel_size
        self.weight = nnx.Param(_uniform(rngs, (in_channels, out_channels, kernel_size), fan_in, param_dtype))
        self.bias = nnx.Param(_uniform(rngs, (out_channels,), fan_in, param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        k, p = self.kernel_size, self.padding
        # A transposed convolution is a convolution of the stride-dilated input with the flipped kernel.
        w = jnp.flip(self.weight[...], axis=-1).transpose(1, 0, 2).astype(x.dtype)  # [out, in, k]
        y = jax.lax.conv_general_dilated(x, w, (1,), [(k - 1 - p, k - 1 - p)], lhs_dilation=(self.stride,),
                                         dimension_numbers=("NWC", "OIW", "NWC"))
        return y + self.bias[...].astype(y.dtype)


def _depthwise(x: jax.Array, taps: jax.Array, *, stride: int = 1, lhs_dilation: int = 1,
               padding: tuple[int, int] = (0, 0)) -> jax.Array:
    """The same 1-D filter `taps [k]` on every channel of `[B, L, C]` (torch `groups=C` with an expanded filter):
    cross-correlation after inserting `lhs_dilation - 1` zeros between samples and zero-padding, then every
    `stride`-th output. Written as k shifted multiply-adds: XLA:CPU's grouped convolution (and its gradient) was
    4.5x slower on the vocoder's training step (measured on its 16 kHz generator); on GPU both fuse."""
    b, n, c = x.shape
    if lhs_dilation > 1:
        zeros = jnp.zeros((b, n, lhs_dilation - 1, c), x.dtype)
        x = jnp.concatenate([x[:, :, None], zeros], axis=2).reshape(b, n * lhs_dilation, c)
        x = x[:, :(n - 1) * lhs_dilation + 1]
    x = jnp.pad(x, ((0, 0), tuple(padding), (0, 0)))
    k = taps.shape[0]
    size = x.shape[1] - k + 1
    taps = taps.astype(x.dtype)
    y = sum(taps[i] * x[:, i:i + size] for i in range(k))
    return y[:, ::stride] if stride > 1 else y


def upsample_1d(x: jax.Array, taps: jax.Array, ratio: int, pad: int, crop: tuple[int, int]) -> jax.Array:
    """ltx_core `UpSample1d.forward`: replicate-pad `pad` each side, `ratio * conv_transpose1d(stride=ratio)`
    with the depthwise filter, keep `[crop_left : -crop_right]`."""
    k = taps.shape[0]
    x = jnp.pad(x, ((0, 0), (pad, pad), (0, 0)), mode="edge")
    y = ratio * _depthwise(x, jnp.flip(taps), lhs_dilation=ratio, padding=(k - 1, k - 1))
    return y[:, crop[0]: y.shape[1] - crop[1]]


def lowpass_1d(x: jax.Array, taps: jax.Array, stride: int) -> jax.Array:
    """ltx_core `LowPassFilter1d.forward` (replicate padding k/2 - even on the left, k/2 on the right)."""
    k = taps.shape[0]
    x = jnp.pad(x, ((0, 0), (k // 2 - int(k % 2 == 0), k // 2), (0, 0)), mode="edge")
    return _depthwise(x, taps, stride=stride)


class SnakeBeta(nnx.Module):
    """`x + 1 / (exp(beta) + 1e-9) * sin(x * exp(alpha))^2`, alpha and beta stored as logarithms (`act.alpha`)."""

    def __init__(self, channels: int, *, param_dtype=jnp.float32):
        self.alpha = nnx.Param(jnp.zeros((channels,), param_dtype))
        self.beta = nnx.Param(jnp.zeros((channels,), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        alpha = jnp.exp(self.alpha[...].astype(x.dtype))
        beta = jnp.exp(self.beta[...].astype(x.dtype))
        return x + (1.0 / (beta + 1e-9)) * jnp.square(jnp.sin(x * alpha))


class _Filter(nnx.Module):
    def __init__(self, size: int, param_dtype):
        self.filter = Buffer(jnp.zeros((1, 1, size), param_dtype))


class _Down(nnx.Module):
    def __init__(self, size: int, param_dtype):
        self.lowpass = _Filter(size, param_dtype)


class Activation1d(nnx.Module):
    """x2 kaiser-sinc upsample -> SnakeBeta -> x2 low-pass downsample. Both 12-tap filters are checkpoint
    buffers (`upsample.filter`, `downsample.lowpass.filter`), read from the file, never recomputed."""

    RATIO = 2
    TAPS = 12

    def __init__(self, channels: int, *, param_dtype=jnp.float32):
        self.act = SnakeBeta(channels, param_dtype=param_dtype)
        self.upsample = _Filter(self.TAPS, param_dtype)
        self.downsample = _Down(self.TAPS, param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        r, k = self.RATIO, self.TAPS
        pad = k // r - 1
        crop = (pad * r + (k - r) // 2, pad * r + (k - r + 1) // 2)
        x = upsample_1d(x, self.upsample.filter[...].reshape(-1), r, pad, crop)
        x = self.act(x)
        return lowpass_1d(x, self.downsample.lowpass.filter[...].reshape(-1), r)
