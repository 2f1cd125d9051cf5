"""Layers of the TAEHV tiny autoencoder: per-frame 2-D convs, memory blocks, temporal pool / grow.

Counterpart: madebyollin/taehv `taehv.py` (`conv`, `Clamp`, `MemBlock`, `TPool`, `TGrow`, and the
`WideMemBlock` of its `taeltx2_3_wide` branch), written from docs/tae.md section 2.1.

Activations are channels-last video chunks `[B, T, H, W, C]`. Convolution weights keep PyTorch's OIHW
layout, so the checkpoint loads without a transpose and module paths equal the file keys
(`conv.0.weight`, ...); `Conv2d` transposes to HWIO at call time. Grouped weights are
`[O, I / groups, kh, kw]` with contiguous groups in both frameworks.

Temporal state: a memory block mixes each frame with the previous frame's *input to the same block*.
Every block here takes a chunk of consecutive frames plus that block's last input frame before the
chunk (`None` = start of the video, zeros), and returns its new last input frame. Running the whole
clip as one chunk is upstream's parallel mode; a scan over chunks is its sequential / streaming mode.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["Conv2d", "Clamp", "ReLU", "Upsample", "MemBlock", "WideMemBlock", "TPool", "TGrow",
           "pixel_shuffle", "pixel_unshuffle", "MEMORY_BLOCKS"]


class Conv2d(nnx.Module):
    """`torch.nn.Conv2d` applied to every frame: weight `[out, in / groups, k, k]`, zero padding k // 2.

    Padding is explicit ((1, 1), (1, 1)) for 3x3: XLA's 'SAME' pads (0, 1) for even sizes at stride 2,
    which would shift the sampling grid of the stride-2 encoder convs.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, stride: int = 1,
                 groups: int = 1, bias: bool = True, param_dtype=jnp.float32, rngs: nnx.Rngs):
        fan_in = in_channels // groups * kernel_size**2
        # He-normal init; real weights always come from a checkpoint.
        self.weight = nnx.Param(jax.random.normal(rngs.params(), (out_channels, in_channels // groups,
                                                                  kernel_size, kernel_size), param_dtype)
                                * (2.0 / fan_in) ** 0.5)
        self.bias = nnx.Param(jnp.zeros((out_channels,), param_dtype)) if bias else None
        self.stride, self.groups, self.padding = stride, groups, kernel_size // 2

    def __call__(self, x: jax.Array) -> jax.Array:
        """x `[..., H, W, in]` -> `[..., ceil(H / stride), ceil(W / stride), out]`."""
        lead, (h, w, c) = x.shape[:-3], x.shape[-3:]
        # float32 asks for full precision: on GPU the default would let XLA use TF32 (10-bit mantissa).
        precision = jax.lax.Precision.HIGHEST if x.dtype == jnp.float32 else None
        p = self.padding
        # OIHW -> HWIO here rather than an OIHW dimension spec: inside a scan (streaming mode) XLA:CPU
        # cannot relayout a loop-invariant OIHW kernel and falls back to a ~15x slower conv (jax#12868).
        kernel = self.weight[...].astype(x.dtype).transpose(2, 3, 1, 0)
        y = jax.lax.conv_general_dilated(
            x.reshape(-1, h, w, c), kernel, (self.stride, self.stride), ((p, p), (p, p)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=self.groups, precision=precision)
        if self.bias is not None:
            y = y + self.bias[...].astype(x.dtype)
        return y.reshape(*lead, *y.shape[1:])


class Clamp(nnx.Module):
    """Soft clamp of the latents to (-3, 3): tanh(x / 3) * 3 (first op of the decoder)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.tanh(x / 3) * 3


class ReLU(nnx.Module):
    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(x)


class Upsample(nnx.Module):
    """Nearest-neighbour x`scale` on H and W (`nn.Upsample(scale_factor=2)`); identity when scale is 1."""

    def __init__(self, scale: int):
        self.scale = scale

    def __call__(self, x: jax.Array) -> jax.Array:
        """x `[B, T, H, W, C]` -> `[B, T, s*H, s*W, C]` with out[i] = in[i // s]."""
        if self.scale == 1:
            return x
        return jnp.repeat(jnp.repeat(x, self.scale, axis=-3), self.scale, axis=-2)


def _past(x: jax.Array, last: jax.Array | None) -> jax.Array:
    """Each frame's previous frame: `[B, t, H, W, C]` shifted by one along t, `last` (or 0) first."""
    first = jnp.zeros_like(x[:, :1]) if last is None else last[:, None].astype(x.dtype)
    return jnp.concatenate([first, x[:, :-1]], axis=1)


class MemBlock(nnx.Module):
    """relu(c4(relu(c2(relu(c0([x, past]))))) + x) with 3x3 convs c0: 2n -> n, c2, c4: n -> n.

    The skip is the identity (n_in == n_out in every LTX model, so upstream has no `skip` weights).
    Concatenation order is [current, past]: the first n input channels of c0 act on the current frame.
    """

    def __init__(self, n: int, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(param_dtype=param_dtype, rngs=rngs)
        self.conv = nnx.List([Conv2d(2 * n, n, **kw), ReLU(), Conv2d(n, n, **kw), ReLU(), Conv2d(n, n, **kw)])

    def __call__(self, x: jax.Array, last: jax.Array | None) -> tuple[jax.Array, jax.Array]:
        """x `[B, t, H, W, n]`, last `[B, H, W, n]` or None -> (y `[B, t, H, W, n]`, x[:, -1])."""
        h = jnp.concatenate([x, _past(x, last)], axis=-1)
        for layer in self.conv:
            h = layer(h)
        return jax.nn.relu(h + x), x[:, -1]


class WideMemBlock(nnx.Module):
    """relu(c6(relu(c4(relu(c2(relu(c0([x, past]))))))) + x) of the `taeltx2_3_wide` decoder.

    c0: 1x1 2n -> n; c2, c6: 3x3 n -> n in `groups` groups (64 channels each); c4: 1x1 n -> n.
    """

    def __init__(self, n: int, groups: int, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(param_dtype=param_dtype, rngs=rngs)
        self.conv = nnx.List([Conv2d(2 * n, n, 1, **kw), ReLU(), Conv2d(n, n, 3, groups=groups, **kw), ReLU(),
                              Conv2d(n, n, 1, **kw), ReLU(), Conv2d(n, n, 3, groups=groups, **kw)])

    __call__ = MemBlock.__call__


MEMORY_BLOCKS = (MemBlock, WideMemBlock)


class TPool(nnx.Module):
    """Temporal pool: s consecutive frames side by side on channels (earlier first), 1x1 conv s*n -> n."""

    def __init__(self, n: int, stride: int, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.stride = stride
        self.conv = Conv2d(n * stride, n, 1, bias=False, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x `[B, T, H, W, n]` (T a multiple of s) -> `[B, T / s, H, W, n]`."""
        b, t, h, w, n = x.shape
        s = self.stride
        if t % s:
            raise ValueError(f"TPool: {t} frames is not a multiple of its stride {s}")
        # [B, T/s, s, H, W, n] -> [B, T/s, H, W, s*n]: channel block k = frame k of the group
        x = x.reshape(b, t // s, s, h, w, n).transpose(0, 1, 3, 4, 2, 5).reshape(b, t // s, h, w, s * n)
        return self.conv(x)


class TGrow(nnx.Module):
    """Temporal grow: 1x1 conv n -> s*n, channel block k becomes output frame k (earlier first).

    With stride 1 (a preview decoder with that time upscale off) the weight is the *last* n rows of the
    checkpoint's 2n, i.e. the later frame, as upstream's `patch_tgrow_layers` does.
    """

    def __init__(self, n: int, stride: int, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.stride = stride
        self.conv = Conv2d(n, n * stride, 1, bias=False, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x `[B, T, H, W, n]` -> `[B, s*T, H, W, n]`."""
        b, t, h, w, n = x.shape
        s = self.stride
        y = self.conv(x)
        # [B, T, H, W, s, n] -> [B, T, s, H, W, n] -> [B, s*T, H, W, n]
        return y.reshape(b, t, h, w, s, n).transpose(0, 1, 4, 2, 3, 5).reshape(b, t * s, h, w, n)


def pixel_unshuffle(x: jax.Array, p: int) -> jax.Array:
    """`[..., H, W, C]` -> `[..., H/p, W/p, C*p*p]`, PyTorch channel order c*p*p + dy*p + dx.

    Not the LTX VAE's patchify order (that one puts the width offset before the height offset).
    """
    *lead, h, w, c = x.shape
    n = len(lead)
    x = x.reshape(*lead, h // p, p, w // p, p, c)  # [..., h, dy, w, dx, c]
    x = x.transpose(*range(n), n, n + 2, n + 4, n + 1, n + 3)  # [..., h, w, c, dy, dx]
    return x.reshape(*lead, h // p, w // p, c * p * p)


def pixel_shuffle(x: jax.Array, p: int) -> jax.Array:
    """`[..., h, w, C*p*p]` -> `[..., h*p, w*p, C]`, inverse of `pixel_unshuffle` (PyTorch order)."""
    *lead, h, w, cpp = x.shape
    c = cpp // (p * p)
    n = len(lead)
    x = x.reshape(*lead, h, w, c, p, p)  # [..., h, w, c, dy, dx]
    x = x.transpose(*range(n), n, n + 3, n + 1, n + 4, n + 2)  # [..., h, dy, w, dx, c]
    return x.reshape(*lead, h * p, w * p, c)
