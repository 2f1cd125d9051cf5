"""Jitted VAE encode and decode, whole or tiled, and the streaming decode that yields frames chunk by chunk.

Counterparts: ltx_core `model/video_vae/video_vae.py` (`VideoEncoder.tiled_encode`, `VideoDecoder.tiled_decode`,
`decode_video`). Channels-last: pixels `[B, F, H, W, 3]`, latents `[B, F', H', W', C]` (normalized).

Memory: a tiled decode holds one temporal group of tiles at a time (a `[B, T, H, W, 3]` float32 buffer
for the group's frames and the previous group's), whatever the video's length; `decode_stream` hands
out finished frames as soon as no later tile can touch them. Each distinct tile shape compiles once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.types import VideoShapeError, check_video_shape
from ltx_jax.video_vae.decoder import VideoDecoder
from ltx_jax.video_vae.encoder import VideoEncoder
from ltx_jax.video_vae.tiling import Tile, TilingConfig, decode_tiles, encode_tiles, group_by_time

__all__ = ["encode", "decode", "decode_stream", "decode_noise", "to_uint8"]

NoiseArg = jax.Array | np.ndarray | Sequence[jax.Array | np.ndarray] | None


@partial(jax.jit, static_argnums=0)
def _run_decoder(graphdef, state, latent, timestep, noise):
    return nnx.merge(graphdef, state)(latent, timestep=timestep, noise=noise)


@partial(jax.jit, static_argnums=0)
def _run_encoder(graphdef, state, video):
    return nnx.merge(graphdef, state)(video)


@partial(jax.jit, donate_argnums=(0, 1))
def _accumulate(buffer, weights, values, mask, start):
    """buffer[:, start...] += values * mask; weights[:, start...] += mask (in place: buffers are donated).

    buffer `[B, T, H, W, C]`, weights `[1, T, H, W, 1]`, values `[B, t, h, w, C]`, mask `[1, t, h, w, 1]`,
    start: (t0, h0, w0) int32 (traced, so moving the tile does not recompile).
    """
    at = (0, start[0], start[1], start[2], 0)
    cur = jax.lax.dynamic_slice(buffer, at, values.shape)
    buffer = jax.lax.dynamic_update_slice(buffer, cur + values.astype(buffer.dtype) * mask, at)
    cur_w = jax.lax.dynamic_slice(weights, at, mask.shape)
    return buffer, jax.lax.dynamic_update_slice(weights, cur_w + mask, at)


@partial(jax.jit, static_argnums=(4, 5), donate_argnums=(0, 1, 2, 3))
def _blend_overlap(prev, prev_w, cur, cur_w, offset, length):
    """Sum the frames two consecutive groups share into both (ltx_core's temporal overlap blend)."""
    prev = prev.at[:, offset:].add(cur[:, :length])
    prev_w = prev_w.at[:, offset:].add(cur_w[:, :length])
    return prev, prev_w, cur.at[:, :length].set(prev[:, offset:]), cur_w.at[:, :length].set(prev_w[:, offset:])


@partial(jax.jit, static_argnums=(2, 3))
def _finish(buffer, weights, frames, dtype):
    return (buffer[:, :frames] / jnp.maximum(weights[:, :frames], 1e-8)).astype(dtype)


def to_uint8(video: jax.Array) -> jax.Array:
    """Pixels in [-1, 1] to uint8 as ltx_core's `decode_video` does: ((x + 1) / 2).clip(0, 1) * 255, truncated."""
    return (jnp.clip((video.astype(jnp.float32) + 1.0) / 2.0, 0.0, 1.0) * 255.0).astype(jnp.uint8)


def decode_noise(key: jax.Array, latent: jax.Array, dtype=None) -> jax.Array:
    """The N(0, 1) draw a timestep-conditioned decoder mixes into the latent (shape of the latent)."""
    return jax.random.normal(key, latent.shape, dtype or latent.dtype)


def _resolve_noise(decoder: VideoDecoder, latent, noise: NoiseArg, key) -> NoiseArg:
    if not decoder.timestep_conditioning:
        if noise is not None:
            raise ValueError("this decoder has no timestep conditioning and takes no noise")
        return None
    if noise is None:
        if key is None:
            raise ValueError("this decoder is timestep-conditioned: pass noise= (N(0,1), the latent's shape, or one "
                             "array per tile) or key=")
        return decode_noise(key, latent)
    return noise


def _tile_noise(noise: NoiseArg, index: int, tile: Tile, count: int):
    if noise is None:
        return None
    if isinstance(noise, jax.Array | np.ndarray):
        # One noise field for the whole latent: each tile takes its window (tiles agree on their overlap).
        return jnp.asarray(noise)[:, tile.source[0], tile.source[1], tile.source[2]]
    if len(noise) != count:
        raise ValueError(f"per-tile noise: got {len(noise)} arrays for {count} tiles")
    return jnp.asarray(noise[index])


def decode_stream(decoder: VideoDecoder, latent: jax.Array, tiling: TilingConfig | None = None, *,
                  timestep: jax.Array | float | None = None, noise: NoiseArg = None,
                  key: jax.Array | None = None) -> Iterator[jax.Array]:
    """Decode tile by tile, yielding consecutive pixel chunks `[B, T_i, 32 H', 32 W', 3]` (sum T_i = 8(F'-1)+1).

    Args:
        decoder: a `VideoDecoder`.
        latent: normalized latent `[B, F', H', W', C]`.
        tiling: tile sizes / overlaps (`TilingConfig.default()` is ltx_core's); None decodes in one piece.
        timestep: decode timestep (timestep-conditioned decoders; default 0.05).
        noise: for a timestep-conditioned decoder, either one `N(0,1)` array of the latent's shape (each tile
            uses its window of it), or one array per tile in tile order (what ltx_core draws from its torch
            generator, one `randn(tile shape)` per tile); or give `key` to draw the former.

    Yields:
        chunks in the latent's dtype, computed in float32 and blended with ltx_core's trapezoidal masks.
    """
    latent = jnp.asarray(latent)
    if latent.ndim != 5:
        raise VideoShapeError(f"latent must be [B, F', H', W', C]; got shape {latent.shape}")
    noise = _resolve_noise(decoder, latent, noise, key)
    graphdef, state = nnx.split(decoder)
    if timestep is not None:
        timestep = jnp.asarray(timestep, latent.dtype)
    tiles = decode_tiles(latent.shape[1:4], tiling)
    b, height, width = latent.shape[0], tiles[-1].target[1].stop, tiles[-1].target[2].stop
    index, prev = 0, None
    for group in group_by_time(tiles):
        frames = group[0].target[0]
        buffer = jnp.zeros((b, frames.stop - frames.start, height, width, 3), jnp.float32)
        weights = jnp.zeros((1, frames.stop - frames.start, height, width, 1), jnp.float32)
        for tile in group:
            src = latent[:, tile.source[0], tile.source[1], tile.source[2]]
            out = _run_decoder(graphdef, state, src, timestep, _tile_noise(noise, index, tile, len(tiles)))
            index += 1
            # ltx_core writes min(decoded, target) frames; equal for the released layouts.
            t = min(out.shape[1], tile.target[0].stop - tile.target[0].start)
            mask = tile.blend_mask()[:t]
            mask = np.broadcast_to(mask, (t, out.shape[2], out.shape[3], 1))[None]
            start = jnp.asarray([tile.target[0].start - frames.start, tile.target[1].start, tile.target[2].start],
                                jnp.int32)
            buffer, weights = _accumulate(buffer, weights, out[:, :t], jnp.asarray(mask), start)
        if prev is not None:
            p_buf, p_w, p_frames = prev
            if p_frames.stop > frames.start:
                offset, shared = frames.start - p_frames.start, p_frames.stop - frames.start
                p_buf, p_w, buffer, weights = _blend_overlap(p_buf, p_w, buffer, weights, offset, shared)
            if frames.start > p_frames.start:  # ltx_core yields an empty chunk when two groups start together
                yield _finish(p_buf, p_w, frames.start - p_frames.start, latent.dtype)
            del p_buf, p_w
        prev = (buffer, weights, frames)
    buffer, weights, frames = prev
    yield _finish(buffer, weights, frames.stop - frames.start, latent.dtype)


def decode(decoder: VideoDecoder, latent: jax.Array, tiling: TilingConfig | None = None, *,
           timestep: jax.Array | float | None = None, noise: NoiseArg = None,
           key: jax.Array | None = None) -> jax.Array:
    """Decode a normalized latent `[B, F', H', W', C]` to pixels `[B, 8(F'-1)+1, 32 H', 32 W', 3]`.

    Untiled (`tiling=None`): one jitted call. Tiled: the chunks of `decode_stream` concatenated (the
    whole output is then in memory; iterate `decode_stream` to keep memory bounded). Arguments as there.
    """
    if tiling is None:
        latent = jnp.asarray(latent)
        noise = _resolve_noise(decoder, latent, noise, key)
        if noise is not None and not isinstance(noise, jax.Array | np.ndarray):
            raise ValueError("untiled decode takes one noise array (the latent's shape)")
        graphdef, state = nnx.split(decoder)
        t = None if timestep is None else jnp.asarray(timestep, latent.dtype)
        return _run_decoder(graphdef, state, latent, t, None if noise is None else jnp.asarray(noise))
    return jnp.concatenate(list(decode_stream(decoder, latent, tiling, timestep=timestep, noise=noise, key=key)),
                           axis=1)


def encode(encoder: VideoEncoder, video: jax.Array | np.ndarray, tiling: TilingConfig | None = None) -> jax.Array:
    """Encode pixels `[B, F, H, W, 3]` in [-1, 1] to the normalized latent `[B, 1+(F-1)/8, H/32, W/32, C]`.

    Tiled: each tile is encoded alone (cut on the host when `video` is a NumPy array, so only one tile is
    on the device) and the latents are averaged with ltx_core's 0/1 masks (inner-edge cells dropped).

    Raises:
        VideoShapeError: F is not 1 + 8k or H, W are not multiples of 32 (ltx_core crops extra frames instead).
    """
    if video.ndim != 5 or video.shape[-1] != 3:
        raise VideoShapeError(f"video must be [B, F, H, W, 3]; got shape {tuple(video.shape)}")
    check_video_shape(*video.shape[1:4])
    graphdef, state = nnx.split(encoder)
    if tiling is None:
        return _run_encoder(graphdef, state, jnp.asarray(video))
    tiles = encode_tiles(tuple(video.shape[1:4]), tiling)
    shape = (video.shape[0], *(t.stop for t in tiles[-1].target), encoder.latent_channels)
    # float32 accumulation (ltx_core accumulates in the model dtype; identical in float32).
    buffer, weights = jnp.zeros(shape, jnp.float32), jnp.zeros((1, *shape[1:4], 1), jnp.float32)
    out_dtype = None
    for tile in tiles:
        out = _run_encoder(graphdef, state, jnp.asarray(video[:, tile.source[0], tile.source[1], tile.source[2]]))
        out_dtype = out.dtype
        mask = np.broadcast_to(tile.blend_mask(), (*out.shape[1:4], 1))[None]
        start = jnp.asarray([s.start for s in tile.target], jnp.int32)
        buffer, weights = _accumulate(buffer, weights, out, jnp.asarray(mask), start)
    return (buffer / jnp.maximum(weights, 1e-8)).astype(out_dtype)
