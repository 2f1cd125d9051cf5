"""Video shapes in pixel and latent space, the VAE's scale factors, and the size rules.

Counterpart: ltx_core `types.py` (`VideoPixelShape`, `VideoLatentShape`, `SpatioTemporalScaleFactors`,
`VIDEO_SCALE_FACTORS`). Here shapes are channels-last, as ltx-jax's video arrays are:
pixels `[B, F, H, W, 3]`, latents `[B, F', H', W', C]`.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["ScaleFactors", "VIDEO_SCALE_FACTORS", "VideoPixelShape", "VideoLatentShape", "VideoShapeError",
           "check_video_shape"]


class VideoShapeError(ValueError):
    """A video size the VAE cannot encode (frame count not 1 + 8k, or H/W not a multiple of the stride)."""


class ScaleFactors(NamedTuple):
    """Pixels per latent cell along (time, height, width)."""

    time: int
    height: int
    width: int


# The video VAE compresses 8x in time (causally: 1 + 8k frames -> 1 + k) and 32x in height and width.
VIDEO_SCALE_FACTORS = ScaleFactors(time=8, height=32, width=32)


class VideoPixelShape(NamedTuple):
    """A pixel video `[batch, frames, height, width, 3]`."""

    batch: int
    frames: int
    height: int
    width: int

    def to_latent(self, channels: int, scale: ScaleFactors = VIDEO_SCALE_FACTORS) -> VideoLatentShape:
        """The latent shape the encoder produces (the size rules are checked)."""
        check_video_shape(self.frames, self.height, self.width, scale=scale)
        return VideoLatentShape(self.batch, (self.frames - 1) // scale.time + 1, self.height // scale.height,
                                self.width // scale.width, channels)


class VideoLatentShape(NamedTuple):
    """A latent video `[batch, frames, height, width, channels]`."""

    batch: int
    frames: int
    height: int
    width: int
    channels: int

    @classmethod
    def of(cls, shape: tuple[int, ...]) -> VideoLatentShape:
        if len(shape) != 5:
            raise VideoShapeError(f"a latent video is [B, F, H, W, C]; got shape {tuple(shape)}")
        return cls(*map(int, shape))

    def to_pixels(self, scale: ScaleFactors = VIDEO_SCALE_FACTORS) -> VideoPixelShape:
        """The decoded video's shape: `8 (F' - 1) + 1` frames, `32 H'` x `32 W'` pixels."""
        return VideoPixelShape(self.batch, (self.frames - 1) * scale.time + 1, self.height * scale.height,
                               self.width * scale.width)

    @property
    def token_count(self) -> int:
        return self.frames * self.height * self.width


def check_video_shape(frames: int, height: int, width: int, *, spatial_multiple: int = 32,
                      scale: ScaleFactors = VIDEO_SCALE_FACTORS) -> None:
    """Refuse a pixel size the VAE (or a pipeline) cannot take.

    Args:
        frames, height, width: the pixel video's size.
        spatial_multiple: H and W must be multiples of this: 32 for the VAE; the two-stage pipelines
            (stage 1 at half size, then the x2 latent upsampler) need 64.

    Raises:
        VideoShapeError: naming the bad dimension and the nearest valid values.
    """
    if spatial_multiple % scale.height or spatial_multiple % scale.width:
        raise ValueError(f"spatial_multiple={spatial_multiple} must be a multiple of the VAE stride {scale.height}")
    if frames < 1 or (frames - 1) % scale.time:
        lo = (max(frames, 1) - 1) // scale.time * scale.time + 1
        raise VideoShapeError(f"frame count must be 1 + {scale.time}k (1, 9, 17, 25, ...); got {frames} "
                              f"(nearest valid: {lo} or {lo + scale.time})")
    for name, size in (("height", height), ("width", width)):
        if size < spatial_multiple or size % spatial_multiple:
            lo = max(size // spatial_multiple, 1) * spatial_multiple
            raise VideoShapeError(f"{name} must be a positive multiple of {spatial_multiple}; got {size} "
                                  f"(nearest valid: {lo}{f' or {lo + spatial_multiple}' if lo < size else ''})")
