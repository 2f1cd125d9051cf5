"""RoPE positions of latent tokens: `[start, end)` bounds in pixels / seconds, as the official pipeline builds them.

Counterparts: ltx_core `components/patchifiers.py` (`VideoLatentPatchifier.get_patch_grid_bounds`,
`get_pixel_coords`, `AudioPatchifier._compute_audio_timings`), `tools.py` (`VideoLatentTools`,
`AudioLatentTools`) and `conditioning/types/keyframe_cond.py` (time offset of keyframe tokens).
Computed on the host in float32 with the official operation order (positions depend only on shapes).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["video_positions", "audio_positions", "audio_latent_count", "VIDEO_SCALE_FACTORS"]

VIDEO_SCALE_FACTORS = (8, 32, 32)  # latent -> pixel: time, height, width


def video_positions(frames: int, height: int, width: int, fps: float, *, batch: int = 1, frame_offset: int = 0,
                    causal_fix: bool = True, dtype=jnp.float32) -> jnp.ndarray:
    """`[B, 3, F*H*W, 2]` bounds of video latent tokens ordered (f, h, w).

    Axis 0 is time in seconds: latent frame f spans pixel frames `[8f, 8f+8)`, shifted by
    `1 - 8` and clamped at 0 for a causal VAE (so frame 0 is `[0, 1)`), offset by `frame_offset` pixel
    frames (keyframe conditioning; ltx_core applies the causal fix only when the offset is 0), divided
    by fps. Axes 1, 2 are pixel rows / columns `[32h, 32h+32)`.

    Args:
        frames, height, width: latent grid.
        dtype: ltx_core's `VideoLatentTools` casts the positions to the pipeline dtype (bf16 in the bf16
            pipeline); keyframe positions stay float32 there (`VideoConditionByKeyframeIndex`).
    """
    st, sh, sw = VIDEO_SCALE_FACTORS
    f, h, w = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    starts = np.stack([f.reshape(-1), h.reshape(-1), w.reshape(-1)])  # [3, N] latent units
    bounds = np.stack([starts, starts + 1], axis=-1) * np.array([st, sh, sw])[:, None, None]  # [3, N, 2] int
    if causal_fix and frame_offset == 0:
        bounds[0] = np.maximum(bounds[0] + 1 - st, 0)
    bounds[0] += frame_offset
    pos = bounds.astype(np.float32)
    pos[0] = pos[0] / np.float32(fps)
    return jnp.asarray(np.broadcast_to(pos[None], (batch, *pos.shape)), dtype=dtype)


def audio_positions(num_latents: int, *, batch: int = 1, sample_rate: int = 16000, hop_length: int = 160,
                    downsample: int = 4, causal: bool = True, shift: int = 0) -> jnp.ndarray:
    """`[B, 1, T, 2]` float32 bounds in seconds of audio latent frames.

    Latent k covers mel frames from `4k` (causal: `max(4k + 1 - 4, 0)`) to the next latent's start;
    seconds = mel frame * hop / sample rate. The official audio positions are float32 in every pipeline.
    """
    def seconds(start: int, end: int) -> np.ndarray:
        mel = np.arange(start, end, dtype=np.float32) * np.float32(downsample)
        if causal:
            mel = np.maximum(mel + np.float32(1 - downsample), np.float32(0))
        return (mel * np.float32(hop_length) / np.float32(sample_rate)).astype(np.float32)

    pos = np.stack([seconds(shift, num_latents + shift), seconds(shift + 1, num_latents + shift + 1)], axis=-1)
    return jnp.asarray(np.broadcast_to(pos[None, None], (batch, 1, num_latents, 2)))


def audio_latent_count(num_frames: int, fps: float, *, sample_rate: int = 16000, hop_length: int = 160,
                       downsample: int = 4) -> int:
    """Audio latents matching a video: round(seconds * 25) (ltx_core `AudioLatentShape.from_video_pixel_shape`)."""
    return round(float(num_frames) / float(fps) * (float(sample_rate) / float(hop_length) / float(downsample)))
