"""Tile geometry of the tiled VAE decode and encode: tile sizes, overlaps and blending masks.

Counterparts: ltx_core `model/video_vae/tiling.py` (`TilingConfig`, the 1-D masks) and the split / map
functions of `model/video_vae/video_vae.py` (`VideoDecoder._prepare_tiles`, `prepare_tiles_for_encoding`).
Pure Python / NumPy: no arrays of the video are touched here. Axes are (frames, height, width).

Decode: tiles cut from the latent, blended in pixel space with trapezoidal ramps over the overlap.
Temporal tiles after the first start one latent frame early (that frame decodes to a single pixel
frame, like a video's first frame) and their left ramp is one latent frame longer.
Encode: tiles cut from the pixels, blended in latent space with 0/1 masks that drop the latent cells
next to an inner tile edge (they saw padding instead of neighbours).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ltx_jax.types import VIDEO_SCALE_FACTORS

__all__ = ["SpatialTilingConfig", "TemporalTilingConfig", "TilingConfig", "Intervals", "Tile", "decode_tiles",
           "encode_tiles", "trapezoidal_mask", "rectangular_mask", "group_by_time"]

logger = logging.getLogger(__name__)
ENCODE_MIN_SPATIAL_OVERLAP = 64  # pixels: one latent cell (32 px) dropped at each inner tile edge
ENCODE_MIN_TEMPORAL_OVERLAP = 16  # frames


@dataclass(frozen=True)
class SpatialTilingConfig:
    """Square spatial tiles: size >= 64 px, size and overlap multiples of 32, overlap < size."""

    tile_size_in_pixels: int
    tile_overlap_in_pixels: int = 0

    def __post_init__(self):
        s, o = self.tile_size_in_pixels, self.tile_overlap_in_pixels
        if s < 64 or s % 32 or o % 32 or not 0 <= o < s:
            raise ValueError(f"spatial tiling needs size >= 64, size and overlap multiples of 32 and 0 <= overlap < "
                             f"size; got size {s}, overlap {o}")


@dataclass(frozen=True)
class TemporalTilingConfig:
    """Temporal tiles in pixel frames: size >= 16, size and overlap multiples of 8, overlap < size."""

    tile_size_in_frames: int
    tile_overlap_in_frames: int = 0

    def __post_init__(self):
        s, o = self.tile_size_in_frames, self.tile_overlap_in_frames
        if s < 16 or s % 8 or o % 8 or not 0 <= o < s:
            raise ValueError(f"temporal tiling needs size >= 16, size and overlap multiples of 8 and 0 <= overlap < "
                             f"size; got size {s}, overlap {o}")


@dataclass(frozen=True)
class TilingConfig:
    """Which axes are tiled; `None` leaves an axis whole."""

    spatial_config: SpatialTilingConfig | None = None
    temporal_config: TemporalTilingConfig | None = None

    @classmethod
    def default(cls) -> TilingConfig:
        """ltx_core's default: 512 px tiles with 64 px overlap, 64-frame tiles with 24 frames overlap."""
        return cls(SpatialTilingConfig(512, 64), TemporalTilingConfig(64, 24))


@dataclass(frozen=True)
class Intervals:
    """How one axis is cut: interval i is [starts[i], ends[i]) with blend ramps of the given lengths."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    left_ramps: tuple[int, ...]
    right_ramps: tuple[int, ...]

    @classmethod
    def whole(cls, length: int) -> Intervals:
        return cls((0,), (length,), (0,), (0,))


def split_symmetric(length: int, size: int, overlap: int) -> Intervals:
    """Tiles of `size` with `overlap`, the last one cut at `length`; one tile if it fits."""
    if length <= size:
        return Intervals.whole(length)
    if size <= overlap:
        raise ValueError(f"tile size {size} must exceed the overlap {overlap}")
    count = (length + size - 2 * overlap - 1) // (size - overlap)
    starts = [i * (size - overlap) for i in range(count)]
    ends = [s + size for s in starts[:-1]] + [length]
    return Intervals(tuple(starts), tuple(ends), (0,) + (overlap,) * (count - 1), (overlap,) * (count - 1) + (0,))


def split_temporal_latents(length: int, size: int, overlap: int) -> Intervals:
    """Decode: as `split_symmetric`, but each tile after the first starts one latent frame early."""
    if length <= size:
        return Intervals.whole(length)
    iv = split_symmetric(length, size, overlap)
    return Intervals(iv.starts[:1] + tuple(s - 1 for s in iv.starts[1:]), iv.ends,
                     iv.left_ramps[:1] + tuple(r + 1 for r in iv.left_ramps[1:]), iv.right_ramps)


def split_temporal_frames(length: int, size: int, overlap: int) -> Intervals:
    """Encode: as `split_symmetric` in pixel frames, each tile but the last one frame longer (1 + 8k
    frames), no right ramps."""
    if length <= size:
        return Intervals.whole(length)
    iv = split_symmetric(length, size, overlap)
    return Intervals(iv.starts, tuple(e + 1 for e in iv.ends[:-1]) + iv.ends[-1:], iv.left_ramps,
                     (0,) * len(iv.starts))


def trapezoidal_mask(length: int, left: int, right: int, left_starts_from_zero: bool = False) -> np.ndarray:
    """`[length]` float32 weights: linear ramps up over `left` and down over `right` samples, 1 between.

    The ramps exclude their end points (no zero weight), except a left ramp that `left_starts_from_zero`
    (a temporal tile whose first frame is its causal, single-frame start).
    """
    if length <= 0:
        raise ValueError("mask length must be positive")
    left, right = min(max(left, 0), length), min(max(right, 0), length)
    mask = np.ones(length, np.float32)
    if left:
        ramp = np.linspace(0.0, 1.0, left + (1 if left_starts_from_zero else 2), dtype=np.float32)[:-1]
        mask[:left] *= ramp if left_starts_from_zero else ramp[1:]
    if right:
        mask[length - right:] *= np.linspace(1.0, 0.0, right + 2, dtype=np.float32)[1:-1]
    return np.clip(mask, 0.0, 1.0)


def rectangular_mask(length: int, left: int, right: int) -> np.ndarray:
    """`[length]` float32: 0 on the first `left` and last `right` samples, 1 elsewhere."""
    if length <= 0:
        raise ValueError("mask length must be positive")
    mask = np.ones(length, np.float32)
    mask[:max(left, 0)] = 0.0
    if right > 0:
        mask[-right:] = 0.0
    return mask


@dataclass(frozen=True)
class Tile:
    """One tile: where it is cut from the input, where its output goes, and its per-axis blend weights
    (in output units; `None` means weight 1 along that axis). All tuples are (frames, height, width)."""

    source: tuple[slice, slice, slice]
    target: tuple[slice, slice, slice]
    masks: tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]

    def blend_mask(self) -> np.ndarray:
        """`[t, h, w, 1]` float32, the outer product of the per-axis masks (broadcast where `None`)."""
        out = np.ones((1, 1, 1, 1), np.float32)
        for axis, m in enumerate(self.masks):
            if m is not None:
                shape = [1, 1, 1, 1]
                shape[axis] = m.shape[0]
                out = out * m.reshape(shape)
        return out


def _product(per_axis: list[list[tuple[slice, slice, np.ndarray | None]]]) -> list[Tile]:
    """Tiles in ltx_core's order: frames outermost, then height, then width."""
    return [Tile((f[0], h[0], w[0]), (f[1], h[1], w[1]), (f[2], h[2], w[2]))
            for f in per_axis[0] for h in per_axis[1] for w in per_axis[2]]


def decode_tiles(latent_fhw: tuple[int, int, int], config: TilingConfig | None) -> list[Tile]:
    """Tiles of a latent `(F', H', W')` for a tiled decode; targets are in output pixels."""
    f, h, w = latent_fhw
    sf = VIDEO_SCALE_FACTORS
    axes: list[list[tuple[slice, slice, np.ndarray | None]]] = []
    spatial = config.spatial_config if config else None
    long_side = max(h, w)
    for length, scale in ((h, sf.height), (w, sf.width)):
        if spatial is None:
            axes.append([(slice(0, length), slice(0, length * scale), None)])
            continue
        size, overlap = spatial.tile_size_in_pixels // scale, spatial.tile_overlap_in_pixels // scale
        # The shorter side gets proportionally smaller tiles. Python's round() (half to even), as ltx_core.
        tile = max(max(2, overlap + 1), round(size * length / long_side))
        iv = split_symmetric(length, tile, overlap)
        axes.append([(slice(b, e), slice(b * scale, e * scale),
                      trapezoidal_mask((e - b) * scale, lr * scale, rr * scale))
                     for b, e, lr, rr in zip(iv.starts, iv.ends, iv.left_ramps, iv.right_ramps)])
    temporal = config.temporal_config if config else None
    if temporal is None:
        t_axis = [(slice(0, f), slice(0, (f - 1) * sf.time + 1), None)]
    else:
        iv = split_temporal_latents(f, temporal.tile_size_in_frames // sf.time,
                                    temporal.tile_overlap_in_frames // sf.time)
        t_axis = []
        for b, e, lr, rr in zip(iv.starts, iv.ends, iv.left_ramps, iv.right_ramps):
            start, stop = b * sf.time, 1 + (e - 1) * sf.time
            left = 0 if lr == 0 else 1 + (lr - 1) * sf.time
            t_axis.append((slice(b, e), slice(start, stop), trapezoidal_mask(stop - start, left, rr * sf.time, True)))
    return _product([t_axis, *axes])


def encode_tiles(pixel_fhw: tuple[int, int, int], config: TilingConfig | None) -> list[Tile]:
    """Tiles of a pixel video `(F, H, W)` for a tiled encode; targets are in latent cells.

    Overlaps below 64 px / 16 frames are raised to those minimums (ltx_core does the same, with a warning).
    """
    f, h, w = pixel_fhw
    sf = VIDEO_SCALE_FACTORS
    axes: list[list[tuple[slice, slice, np.ndarray | None]]] = []
    spatial = config.spatial_config if config else None
    for length, scale in ((h, sf.height), (w, sf.width)):
        if spatial is None:
            axes.append([(slice(0, length), slice(0, length // scale), None)])
            continue
        overlap = spatial.tile_overlap_in_pixels
        if overlap < ENCODE_MIN_SPATIAL_OVERLAP:
            logger.warning("tiled encode: spatial overlap %d px raised to %d", overlap, ENCODE_MIN_SPATIAL_OVERLAP)
            overlap = ENCODE_MIN_SPATIAL_OVERLAP
        iv = split_symmetric(length, spatial.tile_size_in_pixels, overlap)
        axes.append([(slice(b, e), slice(b // scale, e // scale),
                      rectangular_mask(e // scale - b // scale, max(0, lr // scale - 1), 1 if rr else 0))
                     for b, e, lr, rr in zip(iv.starts, iv.ends, iv.left_ramps, iv.right_ramps)])
    temporal = config.temporal_config if config else None
    if temporal is None:
        t_axis = [(slice(0, f), slice(0, (f - 1) // sf.time + 1), None)]
    else:
        overlap = temporal.tile_overlap_in_frames
        if overlap < ENCODE_MIN_TEMPORAL_OVERLAP:
            logger.warning("tiled encode: temporal overlap %d frames raised to %d", overlap,
                           ENCODE_MIN_TEMPORAL_OVERLAP)
            overlap = ENCODE_MIN_TEMPORAL_OVERLAP
        iv = split_temporal_frames(f, temporal.tile_size_in_frames, overlap)
        t_axis = []
        for b, e, lr in zip(iv.starts, iv.ends, iv.left_ramps):
            start, stop = b // sf.time, (e - 1) // sf.time + 1
            left = 0 if lr == 0 else 1 + (lr - 1) // sf.time
            t_axis.append((slice(b, e), slice(start, stop), rectangular_mask(stop - start, left, 0)))
    return _product([t_axis, *axes])


def group_by_time(tiles: list[Tile]) -> list[list[Tile]]:
    """Consecutive tiles sharing a temporal target, in order (the streaming decode's chunks)."""
    groups: list[list[Tile]] = []
    for tile in tiles:
        if groups and groups[-1][0].target[0] == tile.target[0]:
            groups[-1].append(tile)
        else:
            groups.append([tile])
    return groups
