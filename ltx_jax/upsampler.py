"""Latent upsamplers (spatial x2, rational x2 / x1.5 with the fixed blur, temporal x2) and `upsample_video`.

Counterpart: ltx_core `model/upsampler/` (`LatentUpsampler`, `ResBlock`, `SpatialRationalResampler`,
`BlurDownsample`, `PixelShuffleND`, `upsample_video`). Latents are channels-last `[B, F, H, W, C]`.
Each upsampler ships as its own file, with its flat config in the metadata and keys without prefix.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.checkpoint.open import SourceArg
from ltx_jax.checkpoint.loader import bind, restore
from ltx_jax.configs import ConfigError, Runtime, UpsamplerConfig
from ltx_jax.nn.conv import Conv
from ltx_jax.video_vae.ops import GroupNorm, Buffer, PerChannelStatistics, depth_to_space

__all__ = ["LatentUpsampler", "ResBlock", "SpatialRationalResampler", "BlurDownsample", "upsample_video",
           "load_upsampler"]

# SpatialRationalResampler: scale -> (pixel-shuffle factor, blur-downsample stride).
RATIONAL_SCALES = {0.75: (3, 4), 1.5: (3, 2), 2.0: (2, 1), 4.0: (4, 1)}
GROUPS = 32  # every GroupNorm of the upsampler: 32 groups, torch's default eps 1e-5


def _per_frame(fn, x: jax.Array) -> jax.Array:
    """Apply a 2-D op to every frame: `[B, F, H, W, C]` -> `[B*F, H, W, C]` -> `[B, F, H', W', C']`."""
    b, f = x.shape[:2]
    y = fn(x.reshape(b * f, *x.shape[2:]))
    return y.reshape(b, f, *y.shape[1:])


class ResBlock(nnx.Module):
    """conv1 -> GN -> SiLU -> conv2 -> GN -> SiLU(. + input)."""

    def __init__(self, channels: int, dims: int, *, param_dtype, rngs: nnx.Rngs):
        kw = dict(padding=1, ndim=dims, param_dtype=param_dtype, rngs=rngs)
        self.conv1 = Conv(channels, channels, 3, **kw)
        self.norm1 = GroupNorm(GROUPS, channels, param_dtype=param_dtype)
        self.conv2 = Conv(channels, channels, 3, **kw)
        self.norm2 = GroupNorm(GROUPS, channels, param_dtype=param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        """`[N, *spatial, C]` (2 or 3 spatial dims, as built)."""
        h = jax.nn.silu(self.norm1(self.conv1(x)))
        return jax.nn.silu(self.norm2(self.conv2(h)) + x)


class BlurDownsample(nnx.Module):
    """Anti-aliased stride-`s` downsampling of H, W: depthwise conv with the stored normalized binomial
    kernel (`kernel[1, 1, k, k]`, a checkpoint buffer), zero padding k // 2. Stride 1 is the identity."""

    def __init__(self, stride: int, kernel_size: int = 5, *, param_dtype=jnp.float32):
        self.stride = stride
        # Binomial row [1, 4, 6, 4, 1] for k=5; the checkpoint stores the same normalized outer product.
        row = np.array([math.comb(kernel_size - 1, i) for i in range(kernel_size)], np.float64)
        k2d = np.outer(row, row)
        self.kernel = Buffer(jnp.asarray((k2d / k2d.sum())[None, None], param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        """`[N, H, W, C]` -> `[N, ceil(H/s), ceil(W/s), C]`."""
        if self.stride == 1:
            return x
        c, k = x.shape[-1], self.kernel.shape[-1]
        weight = jnp.broadcast_to(self.kernel[...].astype(x.dtype), (c, 1, k, k))
        return jax.lax.conv_general_dilated(x, weight, (self.stride, self.stride), [(k // 2, k // 2)] * 2,
                                            dimension_numbers=("NHWC", "OIHW", "NHWC"), feature_group_count=c)


class SpatialRationalResampler(nnx.Module):
    """Per frame: conv to `num^2 * C`, pixel-shuffle by `num`, blur-downsample by `den` (scale = num/den)."""

    def __init__(self, channels: int, scale: float, *, param_dtype, rngs: nnx.Rngs):
        if float(scale) not in RATIONAL_SCALES:
            raise ConfigError(f"rational resampler scale {scale} not supported ({sorted(RATIONAL_SCALES)})")
        self.num, den = RATIONAL_SCALES[float(scale)]
        self.conv = Conv(channels, self.num ** 2 * channels, 3, padding=1, ndim=2, param_dtype=param_dtype, rngs=rngs)
        self.blur_down = BlurDownsample(den, param_dtype=param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        """`[B, F, H, W, C]` -> `[B, F, H*scale, W*scale, C]` (rounded up by the strided blur)."""
        def frame(y):  # [N, H, W, C]
            y = depth_to_space(self.conv(y)[:, None], (1, self.num, self.num))[:, 0]
            return self.blur_down(y)
        return _per_frame(frame, x)


class LatentUpsampler(nnx.Module):
    """initial conv -> GN -> SiLU -> res blocks -> upsample -> res blocks -> final conv.

    Upsample by kind: `spatial_x2` (per-frame conv to 4C + pixel shuffle, keys `upsampler.0.*`),
    `spatial_x*_rational` (`SpatialRationalResampler`, keys `upsampler.conv.*`, `upsampler.blur_down.kernel`),
    `temporal_x2` (3-D conv to 2C, shuffle along time, drop the first frame: F -> 2F - 1) and
    `spatiotemporal_x2` (3-D conv to 8C, shuffle all three axes, drop the first frame).
    With `dims=2` every conv and norm runs per frame.
    """

    def __init__(self, config: UpsamplerConfig, runtime: Runtime | None = None, *, rngs: nnx.Rngs):
        runtime = runtime or Runtime()
        dtype = jnp.dtype(runtime.param_dtype)
        u, mid, dims = config, config.mid_channels, config.dims
        if dims == 2 and (u.temporal_upsample or u.rational_resampler):
            # ltx_core builds these but its forward fails (3-D conv / 5-D reshape on per-frame 4-D input).
            raise ConfigError("upsampler: dims=2 supports only the plain spatial x2 upsampler (ltx_core cannot run "
                              "temporal or rational upsampling with dims=2)")
        self.dims, self.kind = dims, u.kind
        self.compute_dtype = jnp.dtype(runtime.compute_dtype)
        kw = dict(param_dtype=dtype, rngs=rngs)
        self.initial_conv = Conv(u.in_channels, mid, 3, padding=1, ndim=dims, **kw)
        self.initial_norm = GroupNorm(GROUPS, mid, param_dtype=dtype)
        self.res_blocks = nnx.List([ResBlock(mid, dims, **kw) for _ in range(u.num_blocks_per_stage)])
        if u.spatial_upsample and u.temporal_upsample:
            self.upsampler = nnx.List([Conv(mid, 8 * mid, 3, padding=1, ndim=3, **kw)])
            self._shuffle = (2, 2, 2)
        elif u.temporal_upsample:
            self.upsampler = nnx.List([Conv(mid, 2 * mid, 3, padding=1, ndim=3, **kw)])
            self._shuffle = (2, 1, 1)
        elif u.rational_resampler:
            self.upsampler = SpatialRationalResampler(mid, u.spatial_scale, **kw)
        else:
            self.upsampler = nnx.List([Conv(mid, 4 * mid, 3, padding=1, ndim=2, **kw)])
            self._shuffle = (1, 2, 2)
        self.post_upsample_res_blocks = nnx.List([ResBlock(mid, dims, **kw) for _ in range(u.num_blocks_per_stage)])
        self.final_conv = Conv(mid, u.in_channels, 3, padding=1, ndim=dims, **kw)

    def _upsample(self, x: jax.Array) -> jax.Array:
        if isinstance(self.upsampler, SpatialRationalResampler):
            return self.upsampler(x)
        conv = self.upsampler[0]
        if self._shuffle[0] == 2:  # temporal: 3-D conv, then the first frame stands for one pixel frame only
            return depth_to_space(conv(x), self._shuffle)[:, 1:]
        return _per_frame(lambda y: depth_to_space(conv(y)[:, None], self._shuffle)[:, 0], x)

    def __call__(self, latent: jax.Array) -> jax.Array:
        """latent: un-normalized `[B, F, H, W, C]` -> upsampled `[B, F', H', W', C]` in the compute dtype."""
        def trunk(x, blocks):
            for block in blocks:
                x = block(x)
            return x

        def body(x):  # [N, *spatial, C]
            return jax.nn.silu(self.initial_norm(self.initial_conv(x)))

        latent = latent.astype(self.compute_dtype)
        if self.dims == 2:
            x = _per_frame(body, latent)
            x = _per_frame(lambda y: trunk(y, self.res_blocks), x)
            x = self._upsample(x)
            x = _per_frame(lambda y: trunk(y, self.post_upsample_res_blocks), x)
            return _per_frame(self.final_conv, x)
        x = trunk(body(latent), self.res_blocks)
        x = trunk(self._upsample(x), self.post_upsample_res_blocks)
        return self.final_conv(x)


bind("upsampler", lambda config, runtime: LatentUpsampler(config, runtime, rngs=nnx.Rngs(0)))


def upsample_video(latent: jax.Array, statistics: PerChannelStatistics | nnx.Module,
                   upsampler: LatentUpsampler) -> jax.Array:
    """Upsample a normalized latent: un-normalize with the VAE encoder's statistics, upsample, re-normalize.

    Args:
        latent: normalized latent `[B, F, H, W, C]` (the DiT's space).
        statistics: the encoder's `per_channel_statistics`, or the encoder itself.
        upsampler: a `LatentUpsampler`.
    """
    stats = getattr(statistics, "per_channel_statistics", statistics)
    return stats.normalize(upsampler(stats.un_normalize(latent)))


def load_upsampler(source: SourceArg, runtime: Runtime | None = None, *,
                   config: UpsamplerConfig | None = None) -> LatentUpsampler:
    """A `LatentUpsampler` from its official file (config from the file's metadata), loaded strictly.

    Raises:
        LoadError: keys missing, left over or mis-shaped. ConfigError: a config the port does not implement.
    """
    return restore(source, "upsampler", runtime=runtime or Runtime(), config=config)
