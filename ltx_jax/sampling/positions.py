"""Token positions `[start, end)` for video (seconds, pixels, pixels) and audio (seconds), and latent grids.

Counterparts: ltx_core `components/patchifiers.py` (`VideoLatentPatchifier.get_patch_grid_bounds`,
`get_pixel_coords`, `AudioPatchifier._compute_audio_timings`), `tools.py` (`VideoLatentTools.
create_initial_state`: positions / fps), `conditioning/types/keyframe_cond.py` (keyframe time offset) and
`types.py` (`AudioLatentShape.from_video_pixel_shape`).

Positions are static per shape, so they are host-side NumPy float32 arrays; the jitted code takes them as
arguments. Video tokens are ordered (f, h, w), as the patchifier flattens them. The official bf16 pipeline
casts video positions to bf16 (a visible RoPE error); that cast is the caller's choice, not made here.
"""

from __future__ import annotations

import numpy as np

from ltx_jax.types import VIDEO_SCALE_FACTORS, ScaleFactors, VideoShapeError, check_video_shape

__all__ = ["latent_grid", "video_positions", "keyframe_positions", "audio_positions", "audio_token_count",
           "AUDIO_SAMPLE_RATE", "AUDIO_HOP_LENGTH", "AUDIO_LATENT_DOWNSAMPLE"]

AUDIO_SAMPLE_RATE = 16000
AUDIO_HOP_LENGTH = 160
AUDIO_LATENT_DOWNSAMPLE = 4  # mel frames per audio latent frame (25 latent frames per second)
_F32 = np.float32


def latent_grid(frames: int, height: int, width: int, *, two_stage: bool = False,
                scale: ScaleFactors = VIDEO_SCALE_FACTORS) -> tuple[int, int, int]:
    """The latent grid (F', H', W') of a pixel video, refusing sizes the pipelines cannot take.

    Args:
        frames, height, width: pixel size of the (final) video.
        two_stage: H and W must be multiples of 64 (stage 1 runs at half size), else of 32.

    Raises:
        VideoShapeError: frame count not 1 + 8k, or H / W not a positive multiple of 32 (64).
    """
    check_video_shape(frames, height, width, spatial_multiple=64 if two_stage else 32, scale=scale)
    return (frames - 1) // scale.time + 1, height // scale.height, width // scale.width


def _check_grid(frames: int, height: int, width: int) -> None:
    for name, n in (("frames", frames), ("height", height), ("width", width)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise VideoShapeError(f"latent grid {name} must be a positive integer; got {n!r}")


def video_positions(frames: int, height: int, width: int, *, fps: float, batch: int = 1,
                    scale: ScaleFactors = VIDEO_SCALE_FACTORS, causal_fix: bool = True,
                    frame_offset: int = 0) -> np.ndarray:
    """Positions of the tokens of a latent grid, as `VideoLatentTools` builds them.

    Each latent cell covers pixel frames `[8f, 8f + 8)` shifted by the causal fix (`+ 1 - 8`, clamped at
    0: the VAE's first latent frame holds a single pixel frame), then `+ frame_offset` (keyframes), then
    divided by fps; rows `[32h, 32h + 32)`, columns `[32w, 32w + 32)`.

    Args:
        frames, height, width: latent grid (F', H', W').
        fps: frame rate (the division is done in float32, as in torch).
        causal_fix: apply the first-frame causal shift (the official keyframe conditioning applies it
            only for `frame_idx == 0`).
        frame_offset: pixel frames added to the time bounds before the division by fps.

    Returns:
        float32 `[batch, 3, F' * H' * W', 2]`.
    """
    _check_grid(frames, height, width)
    if not fps > 0:
        raise ValueError(f"fps must be positive; got {fps}")
    f, h, w = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    # [3, T] latent starts in (f, h, w) token order; ends are start + 1 (patch size 1)
    starts = np.stack([f.ravel(), h.ravel(), w.ravel()]).astype(np.int64)
    bounds = np.stack([starts, starts + 1], axis=-1) * np.asarray(scale, np.int64)[:, None, None]  # [3, T, 2]
    if causal_fix:
        bounds[0] = np.maximum(bounds[0] + 1 - scale.time, 0)
    bounds[0] += int(frame_offset)
    pos = bounds.astype(_F32)
    pos[0] = pos[0] / _F32(fps)
    return np.broadcast_to(pos, (batch, *pos.shape)).copy()


def keyframe_positions(frame_idx: int, height: int, width: int, *, fps: float, frames: int = 1, batch: int = 1,
                       scale: ScaleFactors = VIDEO_SCALE_FACTORS) -> np.ndarray:
    """Positions of keyframe tokens appended at pixel frame `frame_idx` (`VideoConditionByKeyframeIndex`).

    The keyframe's own latent grid (`frames` x H' x W', usually one frame) is placed without the causal fix
    unless `frame_idx == 0`, then offset by `frame_idx` pixel frames. A one-frame keyframe at pixel 16 of a
    24 fps video gets time `[16/24, 24/24)`.

    Returns:
        float32 `[batch, 3, frames * H' * W', 2]`.
    """
    if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)) or frame_idx < 0:
        raise ValueError(f"keyframe frame_idx must be a non-negative integer pixel frame; got {frame_idx!r}")
    return video_positions(frames, height, width, fps=fps, batch=batch, scale=scale, causal_fix=frame_idx == 0,
                           frame_offset=int(frame_idx))


def audio_token_count(num_frames: int, fps: float, *, sample_rate: int = AUDIO_SAMPLE_RATE,
                      hop_length: int = AUDIO_HOP_LENGTH, downsample: int = AUDIO_LATENT_DOWNSAMPLE) -> int:
    """Audio latent frames (= tokens) for a video of `num_frames` at `fps`: round(duration * 25)."""
    if num_frames < 1 or not fps > 0:
        raise ValueError(f"need num_frames >= 1 and fps > 0; got {num_frames}, {fps}")
    per_second = float(sample_rate) / float(hop_length) / float(downsample)
    return round(float(num_frames) / float(fps) * per_second)  # Python round, as the official code


def audio_positions(num_tokens: int, *, batch: int = 1, sample_rate: int = AUDIO_SAMPLE_RATE,
                    hop_length: int = AUDIO_HOP_LENGTH, downsample: int = AUDIO_LATENT_DOWNSAMPLE,
                    causal: bool = True, shift: int = 0) -> np.ndarray:
    """Audio token time bounds in seconds, as `AudioPatchifier.get_patch_grid_bounds`.

    Latent frame i covers mel frames `[4i, 4i + 4)`, causally shifted by `+ 1 - 4` (clamped at 0), times
    hop / sample_rate, in float32.

    Returns:
        float32 `[batch, 1, num_tokens, 2]`.
    """
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, (int, np.integer)) or num_tokens < 1:
        raise ValueError(f"num_tokens must be a positive integer; got {num_tokens!r}")

    def seconds(start: int) -> np.ndarray:
        mel = np.arange(start, start + num_tokens, dtype=_F32) * _F32(downsample)
        if causal:
            mel = np.maximum(mel + _F32(1) - _F32(downsample), _F32(0))
        return mel * _F32(hop_length) / _F32(sample_rate)

    pos = np.stack([seconds(shift), seconds(shift + 1)], axis=-1)[None]  # [1, T, 2]
    return np.broadcast_to(pos, (batch, *pos.shape)).astype(_F32).copy()
