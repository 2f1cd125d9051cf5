"""N-d convolution with PyTorch's weight layout and padding modes, and the VAE's causal 3-D convolution.

Counterparts: `torch.nn.Conv2d` / `torch.nn.Conv3d` (weights `[out, in, *kernel]`, `padding_mode`
zeros / reflect / replicate / circular) and ltx_core `model/video_vae/convolution.py` (`CausalConv3d`).

Activations are channels-last (`[N, *spatial, C]`, e.g. NDHWC for video) while weights keep the
official `OI<spatial>` layout, so checkpoint tensors load without a transpose; the dimension numbers
of the convolution tell XLA the layouts and it picks the kernel layout itself.

Inside `size_invariant()` a stride-1 convolution is written as im2col + one dot instead (the shifted views
concatenated one axis at a time, then `[M, taps*in] x [taps*in, out]`). XLA:CPU's convolution orders its
sums by problem size, so a row slice of a decode does not compute the bits the whole decode computes for
those rows (1.1e-6 apart on the tiny decoder); its dots do (1.9e-7 remains, see docs/sharding.md). The
video decoder turns this on for the CPU backend only; GPUs and TPUs keep the backend convolution.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["Conv", "CausalConv3d", "PADDING_MODES", "size_invariant", "size_invariant_active"]

# torch padding_mode -> jnp.pad mode. torch's "reflect" excludes the edge sample, as numpy's does.
PADDING_MODES = {"zeros": None, "reflect": "reflect", "replicate": "edge", "circular": "wrap"}

_SPATIAL = "DHW"

_SIZE_INVARIANT = contextvars.ContextVar("ltx_jax_size_invariant_conv", default=False)


@contextlib.contextmanager
def size_invariant(enabled: bool = True) -> Iterator[None]:
    """While tracing inside this context, stride-1 ungrouped convolutions are im2col + dot (see module doc)."""
    token = _SIZE_INVARIANT.set(enabled)
    try:
        yield
    finally:
        _SIZE_INVARIANT.reset(token)


def size_invariant_active() -> bool:
    return _SIZE_INVARIANT.get()


def _conv_as_dot(x: jax.Array, weight: jax.Array, pads: list[tuple[int, int]]) -> jax.Array:
    """Stride-1 convolution of channels-last `x` with an `OI<spatial>` weight as im2col + one dot."""
    kernel, n_out = weight.shape[2:], weight.shape[0]
    x = jnp.pad(x, [(0, 0), *pads, (0, 0)])
    for axis in reversed(range(len(kernel))):  # last axis first: channels end up ordered (*taps, in)
        size = x.shape[1 + axis] - kernel[axis] + 1
        x = jnp.concatenate([jax.lax.slice_in_dim(x, t, t + size, axis=1 + axis) for t in range(kernel[axis])],
                            axis=-1)
    w = jnp.moveaxis(weight, (0, 1), (-1, -2)).reshape(-1, n_out)  # [*kernel, in, out] flattened
    return jax.lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))


def _tuple(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    return (value,) * n if isinstance(value, int) else tuple(value)


class Conv(nnx.Module):
    """`torch.nn.ConvNd` on channels-last input: `[N, *spatial, in] -> [N, *spatial', out]`.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: int or one int per spatial dim; its length fixes the dimensionality (1, 2 or 3).
        stride, padding: as in torch (symmetric padding per spatial dim).
        padding_mode: one of `PADDING_MODES` (torch's names).
        groups: feature groups (depthwise when equal to the channel count).
        ndim: number of spatial dims when `kernel_size` is an int.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], *,
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0, padding_mode: str = "zeros",
                 groups: int = 1, bias: bool = True, ndim: int = 3, param_dtype=jnp.float32, rngs: nnx.Rngs):
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode={padding_mode!r}; supported: {tuple(PADDING_MODES)}")
        kernel = _tuple(kernel_size, ndim)
        self.ndim = len(kernel)
        self.stride = _tuple(stride, self.ndim)
        self.padding = _tuple(padding, self.ndim)
        self.padding_mode = padding_mode
        self.groups = groups
        # PyTorch's default init (kaiming_uniform with a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        fan_in = in_channels // groups * math.prod(kernel)
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = nnx.Param(jax.random.uniform(rngs.params(), (out_channels, in_channels // groups, *kernel),
                                                   param_dtype, -bound, bound))
        self.bias = nnx.Param(jax.random.uniform(rngs.params(), (out_channels,), param_dtype, -bound, bound)) \
            if bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: `[N, *spatial, in]` -> `[N, *spatial', out]` in x's dtype."""
        pads = [(p, p) for p in self.padding]
        mode = PADDING_MODES[self.padding_mode]
        if mode is not None and any(self.padding):
            x = jnp.pad(x, [(0, 0), *pads, (0, 0)], mode=mode)
            pads = [(0, 0)] * self.ndim
        spatial = _SPATIAL[-self.ndim:]
        if size_invariant_active() and self.groups == 1 and all(s == 1 for s in self.stride):
            y = _conv_as_dot(x, self.weight[...].astype(x.dtype), pads)
            return y if self.bias is None else y + self.bias[...].astype(y.dtype)
        y = jax.lax.conv_general_dilated(
            x, self.weight[...].astype(x.dtype), window_strides=self.stride, padding=pads,
            dimension_numbers=(f"N{spatial}C", f"OI{spatial}", f"N{spatial}C"), feature_group_count=self.groups)
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)
        return y


class CausalConv3d(nnx.Module):
    """ltx_core's `CausalConv3d`: frames padded by repeating edge frames, then a `Conv` named `conv`.

    Causal: the first frame repeated `k - 1` times in front, so output frame t sees frames <= t.
    Non-causal: the first and the last frame repeated `(k - 1) // 2` times at each end.
    Height and width are padded by `k // 2` in `spatial_padding_mode`. Key names: `<name>.conv.weight`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *,
                 stride: int | Sequence[int] = 1, spatial_padding_mode: str = "zeros", param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.time_kernel_size = kernel_size
        self.conv = Conv(in_channels, out_channels, kernel_size, stride=stride,
                         padding=(0, kernel_size // 2, kernel_size // 2), padding_mode=spatial_padding_mode,
                         param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array, causal: bool = True) -> jax.Array:
        """x: `[B, F, H, W, in]` -> `[B, F', H', W', out]` (F' = F for stride 1)."""
        k = self.time_kernel_size
        front, back = (k - 1, 0) if causal else ((k - 1) // 2, (k - 1) // 2)
        parts = [jnp.repeat(x[:, :1], front, axis=1)] if front else []
        parts.append(x)
        if back:
            parts.append(jnp.repeat(x[:, -1:], back, axis=1))
        return self.conv(jnp.concatenate(parts, axis=1) if len(parts) > 1 else x)
