"""Audio VAE encoder and decoder: log-mel spectrogram `[B, 2, T, 64]` <-> normalized latent `[B, 8, T/4, 16]`.

Counterpart: ltx_core `model/audio_vae/audio_vae.py` (`AudioEncoder`, `AudioDecoder`, `build_mid_block`) with
`downsample.py` / `upsample.py` (`build_downsampling_path`, `build_upsampling_path`) and
`components/patchifiers.py` (`AudioPatchifier`: token = `c * F + f`).

Public arrays use the official layout `[B, C, T, F]`; inside, activations are channels-last `[B, T, F, C]`.
The per-channel statistics are sized by `ch` (as ltx-core builds them) and act on the patchified `(c f)`
vector, so they only fit when `z_channels * latent mel bins == ch` (128 in every released file).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.audio_vae.tokens import latent_to_tokens, tokens_to_latent
from ltx_jax.audio_vae.layers import CausalConv2d, Downsample, ResnetBlock, Upsample, make_norm, pixel_norm
from ltx_jax.configs import AudioVAEConfig, ConfigError, Runtime
from ltx_jax.video_vae.ops import PerChannelStatistics

__all__ = ["AudioEncoder", "AudioDecoder", "LATENT_DOWNSAMPLE_FACTOR", "mel_frames_for_latents",
           "check_audio_vae_config"]

LATENT_DOWNSAMPLE_FACTOR = 4


def check_audio_vae_config(c: AudioVAEConfig) -> None:
    """Refuse what the port does not build (attention blocks; GroupNorm on a causal axis, which ltx-core refuses)."""
    if c.mid_block_add_attention:
        raise ConfigError("audio_vae ddconfig.mid_block_add_attention=True (attention blocks) is not supported")
    levels = {c.resolution // 2**i for i in range(len(c.ch_mult))}
    if levels & set(c.attn_resolutions):
        raise ConfigError(f"audio_vae ddconfig.attn_resolutions={c.attn_resolutions} would add attention blocks at "
                          f"resolutions {sorted(levels & set(c.attn_resolutions))}; not supported")
    if c.norm_type == "group" and c.causality_axis != "none":
        raise ConfigError("audio_vae: GroupNorm with a causal axis is refused by ltx-core too")


def mel_frames_for_latents(latent_frames: int, causality_axis: str = "height") -> int:
    """Decoded mel length: 4 T - 3 for a causal axis (at least 1), 4 T otherwise."""
    t = latent_frames * LATENT_DOWNSAMPLE_FACTOR
    return max(t - (LATENT_DOWNSAMPLE_FACTOR - 1), 1) if causality_axis != "none" else t


def _dtypes(runtime: Runtime):
    return jnp.dtype(runtime.param_dtype), jnp.dtype(runtime.compute_dtype)


class _Stage(nnx.Module):
    """One resolution level: `block.{j}` ResnetBlocks, then `downsample` / `upsample` (or none)."""

    def __init__(self, blocks: list, resample=None, *, up: bool):
        self.block = nnx.List(blocks)
        if up:
            self.upsample = resample
        else:
            self.downsample = resample


class _Mid(nnx.Module):
    def __init__(self, channels: int, *, norm_type: str, axis: str, param_dtype, rngs):
        kw = dict(norm_type=norm_type, axis=axis, param_dtype=param_dtype, rngs=rngs)
        self.block_1 = ResnetBlock(channels, channels, **kw)
        self.block_2 = ResnetBlock(channels, channels, **kw)

    def __call__(self, x):
        return self.block_2(self.block_1(x))


def _finish(norm, conv, h):
    h = pixel_norm(h) if norm is None else norm(h)
    return conv(jax.nn.silu(h))


class AudioEncoder(nnx.Module):
    """Log-mel `[B, in_channels, T, F]` -> normalized latent means `[B, z, T', F']` (T = 4 T' - 3 for 3 levels)."""

    def __init__(self, config: AudioVAEConfig, runtime: Runtime = Runtime(), *, rngs: nnx.Rngs):
        check_audio_vae_config(config)
        self.config = config
        param_dtype, self.dtype = _dtypes(runtime)
        c, axis = config, config.causality_axis
        kw = dict(norm_type=c.norm_type, axis=axis, param_dtype=param_dtype, rngs=rngs)
        self.per_channel_statistics = PerChannelStatistics(c.ch, param_dtype=param_dtype)
        self.conv_in = CausalConv2d(c.in_channels, c.ch, 3, axis=axis, param_dtype=param_dtype, rngs=rngs)
        in_mult = (1, *c.ch_mult)
        stages, block_in = [], c.ch
        for level, mult in enumerate(c.ch_mult):
            block_in, block_out = c.ch * in_mult[level], c.ch * mult
            blocks = []
            for _ in range(c.num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out, **kw))
                block_in = block_out
            down = Downsample(block_in, axis=axis, param_dtype=param_dtype, rngs=rngs) \
                if level != len(c.ch_mult) - 1 else None
            stages.append(_Stage(blocks, down, up=False))
        self.down = nnx.List(stages)
        self.mid = _Mid(block_in, **kw)
        self.norm_out = make_norm(c.norm_type, block_in, param_dtype)
        self.conv_out = CausalConv2d(block_in, 2 * c.z_channels if c.double_z else c.z_channels, 3, axis=axis,
                                     param_dtype=param_dtype, rngs=rngs)

    def conv_out_features(self, mel: jax.Array) -> jax.Array:
        """`[B, C, T, F]` -> `conv_out` output `[B, 2z, T', F']` (means then log-variances when double_z)."""
        h = self.conv_in(jnp.moveaxis(mel.astype(self.dtype), 1, -1))
        for stage in self.down:
            for block in stage.block:
                h = block(h)
            if stage.downsample is not None:
                h = stage.downsample(h)
        h = self.mid(h)
        return jnp.moveaxis(_finish(self.norm_out, self.conv_out, h), -1, 1)

    def __call__(self, mel: jax.Array) -> jax.Array:
        """`[B, C, T, F]` log-mel -> normalized latent `[B, z', T', F']` (z' = first half of the channels)."""
        h = self.conv_out_features(mel)
        means = h[:, : -(-h.shape[1] // 2)]  # torch.chunk(h, 2, dim=1)[0]
        b, z, t, f = means.shape
        if z * f != self.config.ch:
            raise ValueError(f"audio encoder: latent {z} channels x {f} mel bins = {z * f} values per frame, but the "
                             f"per-channel statistics hold ch={self.config.ch}")
        return tokens_to_latent(self.per_channel_statistics.normalize(latent_to_tokens(means)), z)


class AudioDecoder(nnx.Module):
    """Normalized latent `[B, z, T, F']` -> log-mel `[B, out_ch, 4T - 3, mel_bins]`."""

    def __init__(self, config: AudioVAEConfig, runtime: Runtime = Runtime(), *, rngs: nnx.Rngs):
        check_audio_vae_config(config)
        self.config = config
        param_dtype, self.dtype = _dtypes(runtime)
        c, axis = config, config.causality_axis
        kw = dict(norm_type=c.norm_type, axis=axis, param_dtype=param_dtype, rngs=rngs)
        self.per_channel_statistics = PerChannelStatistics(c.ch, param_dtype=param_dtype)
        block_in = c.ch * c.ch_mult[-1]
        self.conv_in = CausalConv2d(c.z_channels, block_in, 3, axis=axis, param_dtype=param_dtype, rngs=rngs)
        self.mid = _Mid(block_in, **kw)
        stages = [None] * len(c.ch_mult)
        for level in reversed(range(len(c.ch_mult))):
            block_out = c.ch * c.ch_mult[level]
            blocks = []
            for _ in range(c.num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, block_out, **kw))
                block_in = block_out
            up = Upsample(block_in, axis=axis, param_dtype=param_dtype, rngs=rngs) if level != 0 else None
            stages[level] = _Stage(blocks, up, up=True)
        self.up = nnx.List(stages)
        self.norm_out = make_norm(c.norm_type, block_in, param_dtype)
        self.conv_out = CausalConv2d(block_in, c.out_ch, 3, axis=axis, param_dtype=param_dtype, rngs=rngs)

    def denormalize(self, latent: jax.Array) -> jax.Array:
        """`[B, z, T, F']`: patchify, `x * std + mean` per token column, unpatchify."""
        b, z, t, f = latent.shape
        if z * f != self.config.ch:
            raise ValueError(f"audio decoder: latent {z} x {f} = {z * f} values per frame, statistics hold "
                             f"ch={self.config.ch}")
        return tokens_to_latent(self.per_channel_statistics.un_normalize(latent_to_tokens(latent)), z)

    def __call__(self, latent: jax.Array) -> jax.Array:
        """`[B, z, T, F']` normalized latent -> `[B, out_ch, mel_frames_for_latents(T), mel_bins]`."""
        c = self.config
        b, _, t, f = latent.shape
        h = jnp.moveaxis(self.denormalize(latent.astype(self.dtype)), 1, -1)
        h = self.mid(self.conv_in(h))
        for level in reversed(range(len(self.up))):
            stage = self.up[level]
            for block in stage.block:
                h = block(h)
            if stage.upsample is not None:
                h = stage.upsample(h)
        h = jnp.moveaxis(_finish(self.norm_out, self.conv_out, h), -1, 1)
        # ltx-core's _adjust_output_shape: crop, then zero-pad, to (out_ch, target frames, mel bins).
        frames, bins = mel_frames_for_latents(t, c.causality_axis), c.mel_bins or f
        h = h[:, : c.out_ch, :frames, :bins]
        return jnp.pad(h, ((0, 0), (0, 0), (0, frames - h.shape[2]), (0, bins - h.shape[3])))
