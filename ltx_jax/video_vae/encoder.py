"""The video VAE encoder: pixels in [-1, 1] to normalized latent means.

Counterpart: ltx_core `model/video_vae/video_vae.py` (`VideoEncoder`, `_make_encoder_block`).
Channels-last: `[B, F, H, W, 3]` -> `[B, 1 + (F-1)/8, H/32, W/32, C]` for the released block lists.
Every convolution of the encoder is causal in time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.configs import Runtime, VideoVAEConfig
from ltx_jax.nn.conv import CausalConv3d
from ltx_jax.types import check_video_shape
from ltx_jax.video_vae.ops import PerChannelStatistics, patchify
from ltx_jax.video_vae.resnet import ResnetBlock3D, UNetMidBlock3D, vae_pixel_norm
from ltx_jax.video_vae.sampling import SpaceToDepthDownsample

__all__ = ["VideoEncoder", "block_params"]

PATCH = 4
_STRIDES = {"time": (2, 1, 1), "space": (1, 2, 2), "all": (2, 2, 2)}


def block_params(raw) -> dict:
    """A JSON block's params: an int means `num_layers`."""
    return {"num_layers": raw} if isinstance(raw, int) else dict(raw)


def _encoder_block(kind: str, p: dict, ch: int, pad: str, dtype, rngs: nnx.Rngs) -> tuple[nnx.Module, int]:
    kw = dict(spatial_padding_mode=pad, param_dtype=dtype, rngs=rngs)
    if kind == "res_x":
        return UNetMidBlock3D(ch, p["num_layers"], **kw), ch
    if kind == "res_x_y":
        out = ch * p.get("multiplier", 2)
        return ResnetBlock3D(ch, out, **kw), out
    if kind in ("compress_time", "compress_space", "compress_all"):
        return CausalConv3d(ch, ch, 3, stride=_STRIDES[kind.split("_")[1]], **kw), ch
    if kind == "compress_all_x_y":
        out = ch * p.get("multiplier", 2)
        return CausalConv3d(ch, out, 3, stride=_STRIDES["all"], **kw), out
    if kind in ("compress_time_res", "compress_space_res", "compress_all_res"):
        out = ch * p.get("multiplier", 2)
        return SpaceToDepthDownsample(ch, out, _STRIDES[kind.split("_")[1]], **kw), out
    raise ValueError(f"unknown encoder block {kind!r}")


class VideoEncoder(nnx.Module):
    """patchify 4x4 -> conv_in -> down_blocks -> PixelNorm -> SiLU -> conv_out -> means -> normalize.

    `conv_out` gives `C + 1` channels (C means and one shared log-variance, `latent_log_var="uniform"`);
    only the means are returned, normalized with `per_channel_statistics`.
    """

    def __init__(self, config: VideoVAEConfig, runtime: Runtime | None = None, *, rngs: nnx.Rngs):
        runtime = runtime or Runtime()
        dtype = jnp.dtype(runtime.param_dtype)
        pad = config.encoder_padding_mode
        self.compute_dtype = jnp.dtype(runtime.compute_dtype)
        self.latent_channels = ch = config.latent_channels
        self.per_channel_statistics = PerChannelStatistics(ch, param_dtype=dtype)
        self.conv_in = CausalConv3d(3 * PATCH * PATCH, ch, 3, spatial_padding_mode=pad, param_dtype=dtype, rngs=rngs)
        blocks = []
        for kind, raw in config.encoder_blocks:
            block, ch = _encoder_block(kind, block_params(raw), ch, pad, dtype, rngs)
            blocks.append(block)
        self.down_blocks = nnx.List(blocks)
        self.conv_out = CausalConv3d(ch, config.latent_channels + 1, 3, spatial_padding_mode=pad, param_dtype=dtype,
                                     rngs=rngs)

    def __call__(self, video: jax.Array) -> jax.Array:
        """video: `[B, F, H, W, 3]` in [-1, 1], F = 1 + 8k, H and W multiples of 32.

        Returns: normalized latent means `[B, 1 + (F-1)/8, H/32, W/32, C]` (released layouts), in the
            runtime's compute dtype.

        Raises:
            VideoShapeError: F, H or W break the size rules (ltx_core silently crops extra frames).
        """
        check_video_shape(*video.shape[1:4])
        x = self.conv_in(patchify(video.astype(self.compute_dtype), PATCH))
        for block in self.down_blocks:
            x = block(x)
        x = self.conv_out(jax.nn.silu(vae_pixel_norm(x)))
        return self.per_channel_statistics.normalize(x[..., :self.latent_channels])
