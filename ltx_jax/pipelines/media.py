"""Image conditioning input and video output: the official image preprocessing, PNG / npz / mp4 writers.

Counterpart: ltx_pipelines `utils/media_io.py` (`load_image_conditioning`, `preprocess`: the H.264 CRF round
trip, `resize_and_center_crop`, `normalize_latent`, `encode_video`). PyAV (`av`) and Pillow are optional:
without them the CRF round trip, mp4 output and reading PNG/JPEG images fail with a message saying what to
install; `.npy` images and PNG / npz output always work.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ImageCondition", "DEFAULT_IMAGE_CRF", "load_image", "crf_round_trip", "resize_and_center_crop",
           "preprocess_image", "write_png", "write_frames", "write_mp4", "MediaError", "OUTPUT_FORMATS",
           "output_formats"]

DEFAULT_IMAGE_CRF = 33  # ltx_pipelines DEFAULT_IMAGE_CRF


class MediaError(ValueError):
    """An image that cannot be used, or an optional media dependency that is missing."""


@dataclass(frozen=True)
class ImageCondition:
    """One conditioning image (`ImageConditioningInput`): pixel `frame_idx` 0 replaces the first latent
    frame (`VideoConditionByLatentIndex`), any other frame is appended as a keyframe.

    Attributes:
        image: uint8 `[H, W, 3 or 4]` (alpha dropped), any size: it is resized to cover the target.
        frame_idx: pixel frame index, 0 <= frame_idx < frames.
        strength: in [0, 1]; the conditioned tokens get denoise mask 1 - strength.
        crf: H.264 CRF of the round trip the official preprocessing applies (0: none; needs PyAV otherwise).
        attention_strength: keyframes only: None (full attention), or the weight in [0, 1] of the attention
            between the keyframe tokens and the video tokens (`ConditioningItemAttentionStrengthWrapper`).
    """

    image: np.ndarray
    frame_idx: int = 0
    strength: float = 1.0
    crf: int = DEFAULT_IMAGE_CRF
    attention_strength: float | None = None

    def __post_init__(self):
        img = np.asarray(self.image)
        if img.ndim != 3 or img.shape[-1] not in (3, 4) or min(img.shape[:2]) < 2:
            raise MediaError(f"conditioning image must be [H, W, 3] (or RGBA) with H, W >= 2; got shape {img.shape}")
        if img.dtype != np.uint8:
            raise MediaError(f"conditioning image must be uint8 (0..255, as decoded from a file); got {img.dtype}")
        if not 0.0 <= float(self.strength) <= 1.0:
            raise MediaError(f"conditioning strength must be in [0, 1]; got {self.strength}")
        if isinstance(self.frame_idx, bool) or int(self.frame_idx) != self.frame_idx or self.frame_idx < 0:
            raise MediaError(f"conditioning frame_idx must be a non-negative integer; got {self.frame_idx!r}")
        if self.crf < 0:
            raise MediaError(f"crf must be >= 0; got {self.crf}")
        if self.attention_strength is not None and not 0.0 <= float(self.attention_strength) <= 1.0:
            raise MediaError(f"attention_strength must be in [0, 1]; got {self.attention_strength}")
        object.__setattr__(self, "image", img[..., :3])


def load_image(path: str | Path) -> np.ndarray:
    """uint8 `[H, W, 3]` from `.npy`, or PNG / JPEG / WebP / ... (Pillow when installed, else PyAV's decoders).

    Raises:
        MediaError: the file cannot be decoded as an image.
    """
    path = Path(path)
    if path.suffix == ".npy":
        return np.load(path)
    try:
        from PIL import Image
    except ImportError:
        Image = None
    try:
        if Image is not None:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        av = _av()
        with av.open(str(path)) as container:
            return next(container.decode(video=0)).to_ndarray(format="rgb24")
    except MediaError:
        raise
    except Exception as e:  # noqa: BLE001 - every decoder failure means the same to the caller
        raise MediaError(f"{path}: cannot be read as an image ({type(e).__name__}: {e})") from None


def _av():
    try:
        import av
    except ImportError as e:
        raise MediaError("the official image preprocessing round-trips the image through H.264 (CRF 33) with PyAV: "
                         "pip install av, or pass crf=0 to skip it (results then differ from the official "
                         "pipeline's)") from e
    return av


def crf_round_trip(image: np.ndarray, crf: int = DEFAULT_IMAGE_CRF) -> np.ndarray:
    """`preprocess`: encode as one H.264 frame (libx264, yuv420p, preset veryfast) and decode it again.

    The image is first cropped to even height and width (codec requirement), as the official code does.
    """
    if crf == 0:
        return image
    av = _av()
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=1, options={"crf": str(crf), "preset": "veryfast"})
        stream.height, stream.width = h, w
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h, :w]), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    buf.seek(0)
    with av.open(buf) as inp:
        stream = next(s for s in inp.streams if s.type == "video")
        return next(inp.decode(stream)).to_ndarray(format="rgb24")


def _bilinear_axis(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torch `interpolate(mode="bilinear", align_corners=False)` taps along one axis (float32 arithmetic)."""
    scale = np.float32(np.float32(src) / np.float32(dst))
    # `scale * (i + 0.5) - 0.5` with one rounding: torch's CPU kernel is compiled with FMA contraction, and
    # the fraction (the interpolation weight) inherits every rounding of this position.
    half = np.arange(dst, dtype=np.float32) + np.float32(0.5)
    pos = (np.float64(scale) * half.astype(np.float64) - 0.5).astype(np.float32)
    pos = np.maximum(pos, np.float32(0.0))
    i0 = np.minimum(np.floor(pos).astype(np.int64), src - 1)
    i1 = np.minimum(i0 + 1, src - 1)
    return i0, i1, (pos - i0).astype(np.float32)


def resize_and_center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (bilinear, no antialias) to cover `height x width` keeping the aspect ratio, then centre-crop.

    Args:
        image: `[H, W, 3]` (any numeric dtype; computed in float32).

    Returns:
        float32 `[height, width, 3]` in the input's value range.
    """
    src_h, src_w = image.shape[:2]
    scale = max(height / src_h, width / src_w)
    new_h, new_w = math.ceil(src_h * scale), math.ceil(src_w * scale)  # ceil: never smaller than the target
    x = image.astype(np.float32)
    r0, r1, fy = _bilinear_axis(src_h, new_h)
    x = x[r0] * (1 - fy)[:, None, None] + x[r1] * fy[:, None, None]
    c0, c1, fx = _bilinear_axis(src_w, new_w)
    x = x[:, c0] * (1 - fx)[None, :, None] + x[:, c1] * fx[None, :, None]
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return x[top:top + height, left:left + width]


def preprocess_image(cond: ImageCondition, height: int, width: int) -> np.ndarray:
    """`load_image_conditioning` after decoding: CRF round trip, resize to cover, centre crop, `/127.5 - 1`.

    Returns:
        float32 `[1, 1, height, width, 3]` in [-1, 1] (a one-frame video for the VAE encoder).
    """
    image = crf_round_trip(cond.image, cond.crf)
    pixels = resize_and_center_crop(image, height, width) / np.float32(127.5) - np.float32(1.0)
    return pixels[None, None].astype(np.float32)


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """A minimal RGB8 PNG writer (no Pillow needed): `rgb` uint8 `[H, W, 3]`."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + np.ascontiguousarray(rgb[y]).tobytes() for y in range(h))  # filter 0 per row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
                           + chunk(b"IEND", b""))


OUTPUT_FORMATS = ("npz", "png", "mp4")


def output_formats(spec: str) -> tuple[str, ...]:
    """The formats of a comma-separated `--format` value, refusing unknown or no formats (before any work)."""
    formats = tuple(f.strip() for f in spec.split(",") if f.strip())
    unknown = [f for f in formats if f not in OUTPUT_FORMATS]
    if unknown or not formats:
        raise MediaError(f"unknown output format(s) {unknown or [spec]}; choose from {', '.join(OUTPUT_FORMATS)}")
    return formats


def write_mp4(path: str | Path, frames_uint8: np.ndarray, fps: float, audio: np.ndarray | None = None,
              sample_rate: int | None = None) -> Path:
    """H.264 (yuv420p) video `[F, H, W, 3]` uint8, plus an AAC track from a float waveform `[channels, samples]`
    (or `[1, channels, samples]`) in [-1, 1] at `sample_rate` (ltx_pipelines `encode_video`). Written to a
    temporary name and renamed, so a failure leaves no file."""
    av = _av()
    frames = np.asarray(frames_uint8)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise MediaError(f"frames must be uint8 [F, H, W, 3]; got {frames.dtype} {frames.shape}")
    if audio is not None:
        audio = np.asarray(audio, np.float32)
        audio = audio[0] if audio.ndim == 3 else audio
        if audio.ndim != 2 or not sample_rate:
            raise MediaError(f"audio must be [channels, samples] with a sample_rate; got {audio.shape}, {sample_rate}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=round(fps))
            stream.height, stream.width, stream.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
            astream = None
            if audio is not None:
                astream = container.add_stream("aac", rate=int(sample_rate))
                astream.codec_context.layout = "stereo" if audio.shape[0] == 2 else "mono"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
            if astream is not None:
                layout = "stereo" if audio.shape[0] == 2 else "mono"
                chunk = np.ascontiguousarray(np.clip(audio, -1.0, 1.0))
                aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
                aframe.sample_rate, aframe.pts = int(sample_rate), 0
                container.mux(astream.encode(aframe))
                container.mux(astream.encode())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_frames(out_dir: str | Path, frames: np.ndarray, fps: float, formats: tuple[str, ...] = ("npz",), *,
                 audio: np.ndarray | None = None, sample_rate: int | None = None) -> list[Path]:
    """Write uint8 frames `[F, H, W, 3]` as `video.npz` (with `audio`, `sample_rate` when given),
    `frame_NNNN.png` and/or `video.mp4` (PyAV; AAC track when `audio` is given)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        if fmt == "npz":
            extra = {} if audio is None else {"audio": np.asarray(audio, np.float32),
                                               "sample_rate": np.int64(sample_rate)}
            np.savez_compressed(out / "video.npz", frames=frames, fps=np.float32(fps), **extra)
            written.append(out / "video.npz")
        elif fmt == "png":
            for i, frame in enumerate(frames):
                write_png(out / f"frame_{i:04d}.png", frame)
                written.append(out / f"frame_{i:04d}.png")
        elif fmt == "mp4":
            written.append(write_mp4(out / "video.mp4", frames, fps, audio, sample_rate))
        else:
            raise MediaError(f"unknown output format {fmt!r}; choose from npz, png, mp4")
    return written
