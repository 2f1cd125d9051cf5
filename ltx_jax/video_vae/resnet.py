"""ResNet blocks of the video VAE, with the decoder's optional timestep modulation.

Counterpart: ltx_core `model/video_vae/resnet.py` (`ResnetBlock3D`, `UNetMidBlock3D`). Channels-last
activations `[B, F, H, W, C]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.configs import ConfigError
from ltx_jax.nn.conv import CausalConv3d, Conv, size_invariant_active
from ltx_jax.nn.embeddings import CombinedTimestepEmbedding
from ltx_jax.nn.norms import pixel_norm
from ltx_jax.video_vae.ops import GroupNorm

__all__ = ["ResnetBlock3D", "UNetMidBlock3D", "vae_pixel_norm"]


def vae_pixel_norm(x: jax.Array) -> jax.Array:
    """ltx_core `PixelNorm()` over channels: eps is its constructor default 1e-8 (not the 1e-6 of
    `build_normalization_layer`). Computed in float32; ltx_core uses the tensor's dtype, which only
    differs in bf16. Inside `size_invariant()` the channel sum is pairwise (halves added elementwise), whose
    order does not depend on the number of rows, unlike XLA:CPU's reduction."""
    x32 = x.astype(jnp.float32)
    if not size_invariant_active():
        return pixel_norm(x32, axis=-1, eps=1e-8).astype(x.dtype)
    s = x32 * x32
    width = 1 << (s.shape[-1] - 1).bit_length()
    if width != s.shape[-1]:  # zero channels up to a power of two add exact zeros
        s = jnp.pad(s, [(0, 0)] * (s.ndim - 1) + [(0, width - s.shape[-1])])
    while s.shape[-1] > 1:
        s = s[..., : s.shape[-1] // 2] + s[..., s.shape[-1] // 2:]
    return (x32 / jnp.sqrt(s / x.shape[-1] + 1e-8)).astype(x.dtype)


class ResnetBlock3D(nnx.Module):
    """norm1 -> (modulate) -> SiLU -> conv1 -> norm2 -> (modulate) -> SiLU -> conv2, plus the input.

    When the channel count changes, the input goes through `norm3` (GroupNorm with one group, eps 1e-6)
    and a 1x1x1 `conv_shortcut`. With timestep conditioning, `scale_shift_table[4, C]` plus the block's
    timestep embedding gives (shift1, scale1, shift2, scale2).
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, *, timestep_conditioning: bool = False,
                 inject_noise: bool = False, spatial_padding_mode: str = "zeros", param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        if inject_noise:
            # Needs torch-generator spatial noise inside the block; no released checkpoint enables it.
            raise ConfigError("vae decoder block 'inject_noise': true is not implemented")
        out_channels = out_channels or in_channels
        kw = dict(spatial_padding_mode=spatial_padding_mode, param_dtype=param_dtype, rngs=rngs)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, **kw)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, **kw)
        if in_channels != out_channels:
            self.norm3 = GroupNorm(1, in_channels, eps=1e-6, param_dtype=param_dtype)
            self.conv_shortcut = Conv(in_channels, out_channels, 1, param_dtype=param_dtype, rngs=rngs)
        else:
            self.norm3 = self.conv_shortcut = None
        self.timestep_conditioning = timestep_conditioning
        # ltx_core allocates this with zeros; the checkpoint fills it.
        self.scale_shift_table = nnx.Param(jnp.zeros((4, in_channels), param_dtype)) if timestep_conditioning \
            else None

    def __call__(self, x: jax.Array, causal: bool = True, timestep_embed: jax.Array | None = None) -> jax.Array:
        """x: `[B, F, H, W, in]`; timestep_embed: `[B, 4*in]` when conditioned. Returns `[B, F, H, W, out]`."""
        h = vae_pixel_norm(x)
        if self.timestep_conditioning:
            if timestep_embed is None:
                raise ValueError("this ResnetBlock3D is timestep-conditioned: pass timestep_embed")
            b, c = x.shape[0], self.scale_shift_table.shape[1]
            # [4, C] + [B, 4, C] -> [B, 4, C], rows (shift1, scale1, shift2, scale2); broadcast over F, H, W.
            ada = self.scale_shift_table[...].astype(x.dtype)[None] + timestep_embed.reshape(b, 4, c)
            shift1, scale1, shift2, scale2 = (ada[:, i, None, None, None, :] for i in range(4))
            h = h * (1 + scale1) + shift1
        h = self.conv1(jax.nn.silu(h), causal=causal)
        h = vae_pixel_norm(h)
        if self.timestep_conditioning:
            h = h * (1 + scale2) + shift2
        h = self.conv2(jax.nn.silu(h), causal=causal)
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(self.norm3(x))
        return x + h


class UNetMidBlock3D(nnx.Module):
    """`res_x` block: `num_layers` ResnetBlock3D at a fixed width; when timestep-conditioned, one
    `time_embedder` (sinusoid -> MLP to 4C) shared by its blocks."""

    def __init__(self, channels: int, num_layers: int, *, timestep_conditioning: bool = False,
                 inject_noise: bool = False, spatial_padding_mode: str = "zeros", param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.timestep_conditioning = timestep_conditioning
        self.time_embedder = CombinedTimestepEmbedding(4 * channels, param_dtype=param_dtype, rngs=rngs) \
            if timestep_conditioning else None
        self.res_blocks = nnx.List([
            ResnetBlock3D(channels, channels, timestep_conditioning=timestep_conditioning, inject_noise=inject_noise,
                          spatial_padding_mode=spatial_padding_mode, param_dtype=param_dtype, rngs=rngs)
            for _ in range(num_layers)])

    def __call__(self, x: jax.Array, causal: bool = True, timestep: jax.Array | None = None) -> jax.Array:
        """x: `[B, F, H, W, C]`; timestep: `[B]` (already multiplied by the decoder's scale)."""
        embed = None
        if self.timestep_conditioning:
            if timestep is None:
                raise ValueError("this res_x block is timestep-conditioned: pass timestep")
            embed = self.time_embedder(timestep.reshape(-1), x.dtype)  # [B, 4C]
        for block in self.res_blocks:
            x = block(x, causal=causal, timestep_embed=embed)
        return x
