"""The video VAE decoder: normalized latents to pixels in [-1, 1], optionally timestep-conditioned.

Counterpart: ltx_core `model/video_vae/video_vae.py` (`VideoDecoder.forward`, `_make_decoder_block`).
Channels-last: `[B, F', H', W', C]` -> `[B, 8(F'-1) + 1, 32 H', 32 W', 3]` for the released block lists.
The config's block list is written in encoder order and built reversed, as ltx_core does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.configs import Runtime, VideoVAEConfig
from ltx_jax.nn.conv import CausalConv3d, size_invariant
from ltx_jax.nn.embeddings import CombinedTimestepEmbedding
from ltx_jax.video_vae.encoder import PATCH, block_params
from ltx_jax.video_vae.ops import PerChannelStatistics, unpatchify
from ltx_jax.video_vae.resnet import ResnetBlock3D, UNetMidBlock3D, vae_pixel_norm
from ltx_jax.video_vae.sampling import DepthToSpaceUpsample

__all__ = ["VideoDecoder", "DECODE_NOISE_SCALE", "DECODE_TIMESTEP"]

# ltx_core VideoDecoder attributes `decode_noise_scale` and `decode_timestep` (constants, not weights).
DECODE_NOISE_SCALE = 0.025
DECODE_TIMESTEP = 0.05
_STRIDES = {"compress_time": (2, 1, 1), "compress_space": (1, 2, 2), "compress_all": (2, 2, 2)}


def _decoder_block(kind: str, p: dict, ch: int, conditioned: bool, pad: str, dtype,
                   rngs: nnx.Rngs) -> tuple[nnx.Module, int]:
    kw = dict(spatial_padding_mode=pad, param_dtype=dtype, rngs=rngs)
    if kind == "res_x":
        return UNetMidBlock3D(ch, p["num_layers"], timestep_conditioning=conditioned,
                              inject_noise=p.get("inject_noise", False), **kw), ch
    if kind == "res_x_y":
        out = ch // p.get("multiplier", 2)
        # ltx_core never conditions a res_x_y block on the timestep.
        return ResnetBlock3D(ch, out, inject_noise=p.get("inject_noise", False), **kw), out
    if kind in _STRIDES:
        reduction = p.get("multiplier", 1)
        # Only compress_all reads `residual`; ltx_core ignores the key for compress_time/space.
        residual = p.get("residual", False) if kind == "compress_all" else False
        return DepthToSpaceUpsample(ch, _STRIDES[kind], residual=residual, reduction=reduction, **kw), ch // reduction
    raise ValueError(f"unknown decoder block {kind!r}")


class VideoDecoder(nnx.Module):
    """(noise) -> un-normalize -> conv_in -> up_blocks -> PixelNorm -> (modulate) -> SiLU -> conv_out -> unpatchify.

    With `timestep_conditioning` the latent is first mixed with noise, `z = 0.025 n + 0.975 z`, and the
    decode timestep (0.05 by default), times the learned `timestep_scale_multiplier`, modulates every
    `res_x` block and the output norm (`last_scale_shift_table[2, C]`: shift, scale).
    """

    def __init__(self, config: VideoVAEConfig, runtime: Runtime | None = None, *, rngs: nnx.Rngs):
        runtime = runtime or Runtime()
        dtype = jnp.dtype(runtime.param_dtype)
        pad = config.decoder_padding_mode
        self.compute_dtype = jnp.dtype(runtime.compute_dtype)
        self.causal = config.causal_decoder
        self.timestep_conditioning = cond = config.timestep_conditioning
        self.latent_channels = config.latent_channels
        self.per_channel_statistics = PerChannelStatistics(config.latent_channels, param_dtype=dtype)
        # Three x2 channel reductions in the released layouts, hence 8x the base width at the input.
        ch = config.decoder_base_channels * 8
        self.conv_in = CausalConv3d(config.latent_channels, ch, 3, spatial_padding_mode=pad, param_dtype=dtype,
                                    rngs=rngs)
        blocks = []
        for kind, raw in reversed(config.decoder_blocks):
            block, ch = _decoder_block(kind, block_params(raw), ch, cond, pad, dtype, rngs)
            blocks.append(block)
        self.up_blocks = nnx.List(blocks)
        self.conv_out = CausalConv3d(ch, 3 * PATCH * PATCH, 3, spatial_padding_mode=pad, param_dtype=dtype,
                                     rngs=rngs)
        if cond:
            self.timestep_scale_multiplier = nnx.Param(jnp.asarray(1000.0, dtype))
            self.last_time_embedder = CombinedTimestepEmbedding(2 * ch, param_dtype=dtype, rngs=rngs)
            self.last_scale_shift_table = nnx.Param(jnp.zeros((2, ch), dtype))

    def __call__(self, latent: jax.Array, *, timestep: jax.Array | float | None = None,
                 noise: jax.Array | None = None) -> jax.Array:
        """Decode one latent video (or one tile of it).

        Args:
            latent: normalized latent `[B, F', H', W', C]`.
            timestep: decode timestep, scalar or `[B]`; default 0.05 (timestep-conditioned decoders only).
            noise: `N(0, 1)` draw of the latent's shape, required iff the decoder is timestep-conditioned
                (explicit, so that a run can replay the official generator's draw).

        Returns:
            pixels `[B, 8(F'-1) + 1, 32 H', 32 W', 3]` (released layouts), roughly in [-1, 1], in the runtime's
            compute dtype.
        """
        # On CPU, size-invariant convolutions: a row slice (decode_sharded, tiles) computes the whole decode's bits.
        with size_invariant(jax.default_backend() == "cpu"):
            return self._decode(latent, timestep, noise)

    def _decode(self, latent, timestep, noise):
        b = latent.shape[0]
        latent = latent.astype(self.compute_dtype)
        if self.timestep_conditioning:
            if noise is None:
                raise ValueError("this decoder is timestep-conditioned: pass noise (an N(0,1) array shaped like "
                                 "the latent)")
            if noise.shape != latent.shape:
                raise ValueError(f"noise shape {noise.shape} != latent shape {latent.shape}")
            latent = noise.astype(latent.dtype) * DECODE_NOISE_SCALE + (1.0 - DECODE_NOISE_SCALE) * latent
        elif noise is not None or timestep is not None:
            raise ValueError("this decoder has no timestep conditioning: it takes neither noise nor timestep")
        x = self.conv_in(self.per_channel_statistics.un_normalize(latent), causal=self.causal)
        scaled_t = None
        if self.timestep_conditioning:
            t = DECODE_TIMESTEP if timestep is None else timestep
            t = jnp.broadcast_to(jnp.asarray(t, x.dtype).reshape(-1), (b,))
            scaled_t = t * self.timestep_scale_multiplier[...].astype(x.dtype)  # [B]
        for block in self.up_blocks:
            if isinstance(block, UNetMidBlock3D):
                x = block(x, causal=self.causal, timestep=scaled_t)
            else:
                x = block(x, causal=self.causal)
        x = vae_pixel_norm(x)
        if self.timestep_conditioning:
            emb = self.last_time_embedder(scaled_t, x.dtype)  # [B, 2C]
            # [2, C] + [B, 2, C]: rows (shift, scale), broadcast over F, H, W.
            ada = self.last_scale_shift_table[...].astype(x.dtype)[None] + emb.reshape(b, 2, -1)
            x = x * (1 + ada[:, 1, None, None, None]) + ada[:, 0, None, None, None]
        x = self.conv_out(jax.nn.silu(x), causal=self.causal)
        return unpatchify(x, PATCH)
