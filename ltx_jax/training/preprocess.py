"""Preprocessing: a folder of clips + captions -> the latent cache `training.data` reads.

Counterpart: ltx-trainer's `scripts/process_dataset.py` (`process_videos.py`, `process_captions.py`): clips are
resized / cropped to a bucket, encoded once with the video VAE, captions once with the text encoder, and the
results cached per clip so training never runs the VAE or Gemma.

Input: a folder with a captions table, `captions.csv` (header with `video` or `media_path`, and `caption`)
or `captions.jsonl` (one object per line with the same keys); clip paths are relative to the folder.

Shape rules (the VAE takes F = 1 + 8k frames and H, W multiples of 32), `shape_mode`:
  "crop"   (default) keep the first 1 + 8k frames (at most `max_frames`), centre-crop H and W down to
           multiples of 32; clips under 1 frame or 32 x 32 pixels are refused;
  "refuse" any clip not already 1 + 8k frames and x32 sizes is refused.
Refused clips are listed with the reason in `refused.jsonl` and skipped; they never stop the run.

Text: `encode_captions(list of captions) -> list of (video_context [S, Dv], audio_context [S, Da])` (the
text-connector outputs). `contexts_from_folder(dir, text)` gives one for precomputed prompt files
`<dir>/<sha256(caption)[:16]>.npz` in the `generate --prompt` format (connector outputs, or Gemma hidden
states run through the checkpoint's connectors); `training.encoders.gemma_captions` runs Gemma itself.
Audio (optional): `encode_audio(clip path, frames kept, fps) -> [Ta, Ca] tokens or None` (no sound track;
`training.encoders.clip_audio_encoder` runs the audio VAE); without it the cache is video-only.

Resumable: a clip whose cache file exists is skipped; each file is written atomically; the index is rebuilt
from the files at the end.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ltx_jax.training.data import DataError, write_clip, write_index

__all__ = ["read_captions", "read_clip", "conform", "caption_id", "contexts_from_folder", "preprocess"]

CaptionEncoder = Callable[[Sequence[str]], Sequence[tuple[np.ndarray, np.ndarray]]]


def read_captions(folder: str | os.PathLike) -> list[tuple[str, str]]:
    """[(clip path relative to folder, caption)] from captions.csv or captions.jsonl."""
    folder = Path(folder)
    csv_path, jsonl_path = folder / "captions.csv", folder / "captions.jsonl"
    if csv_path.is_file():
        with csv_path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        source = csv_path
    elif jsonl_path.is_file():
        rows = [json.loads(line) for line in jsonl_path.read_text().splitlines() if line.strip()]
        source = jsonl_path
    else:
        raise DataError(f"{folder}: no captions.csv or captions.jsonl")
    out = []
    for n, row in enumerate(rows):
        video = row.get("video", row.get("media_path"))
        if video is None or "caption" not in row:
            raise DataError(f"{source}: row {n + 1} needs a 'video' (or 'media_path') and a 'caption' field; "
                            f"got {sorted(row)}")
        out.append((str(video), str(row["caption"])))
    return out


def read_clip(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """(frames uint8 [F, H, W, 3], fps) of a video file, read with PyAV."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.base_rate or 24)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    if not frames:
        raise DataError(f"{path}: no video frames")
    return np.stack(frames), fps


def conform(frames: np.ndarray, *, mode: str = "crop", max_frames: int | None = None) -> np.ndarray:
    """Apply the shape rules above; raises DataError with the reason for a refused clip."""
    f, h, w = frames.shape[:3]
    if mode == "refuse":
        if (f - 1) % 8 or h % 32 or w % 32 or (max_frames and f > max_frames):
            raise DataError(f"{f} frames of {h}x{w}: needs 1 + 8k frames (<= {max_frames}) and sizes that are "
                            "multiples of 32 (shape_mode='refuse')")
        return frames
    if mode != "crop":
        raise DataError(f"shape_mode={mode!r}; expected 'crop' or 'refuse'")
    if h < 32 or w < 32:
        raise DataError(f"{h}x{w} pixels is below the 32 x 32 minimum")
    n = f if max_frames is None else min(f, max_frames)
    n = 1 + 8 * ((n - 1) // 8)
    h2, w2 = h - h % 32, w - w % 32
    top, left = (h - h2) // 2, (w - w2) // 2
    return frames[:n, top:top + h2, left:left + w2]


def caption_id(caption: str) -> str:
    return hashlib.sha256(caption.encode()).hexdigest()[:16]


def contexts_from_folder(folder: str | os.PathLike, text=None) -> CaptionEncoder:
    """A caption encoder reading `<folder>/<caption_id>.npz` prompt files (`generate --prompt` format)."""
    from ltx_jax.pipelines.stages import load_prompt

    folder = Path(folder)

    def encode(captions: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for c in captions:
            path = folder / f"{caption_id(c)}.npz"
            if not path.is_file():
                raise DataError(f"no precomputed context for caption {c[:60]!r}: expected {path}")
            p = load_prompt(path, text).positive
            out.append((np.asarray(p.video)[0], np.asarray(p.audio)[0]))
        return out

    return encode


def preprocess(folder: str | os.PathLike, cache: str | os.PathLike, *, encoder, encode_captions: CaptionEncoder,
               encode_audio: Callable[[Path, int, float], np.ndarray | None] | None = None, shape_mode: str = "crop",
               max_frames: int | None = None, log: Callable[[str], None] = print) -> dict:
    """Encode every clip of `folder` into `cache` (skipping clips already cached); returns counts.

    Args:
        encoder: the video VAE encoder (`restore(ckpt, "vae_encoder")`).
    """
    from ltx_jax.video_vae import encode

    folder, cache = Path(folder), Path(cache)
    rows = read_captions(folder)
    cache.mkdir(parents=True, exist_ok=True)
    refused, done, skipped = [], 0, 0
    for video, caption in rows:
        clip_id = f"{Path(video).stem}-{hashlib.sha256(video.encode()).hexdigest()[:8]}"
        if (cache / "latents" / f"{clip_id}.npz").is_file():
            skipped += 1
            continue
        try:
            frames, fps = read_clip(folder / video)
            frames = conform(frames, mode=shape_mode, max_frames=max_frames)
        except (DataError, OSError) as e:
            refused.append({"video": video, "reason": str(e)})
            log(f"refused {video}: {e}")
            continue
        try:
            audio = encode_audio(folder / video, frames.shape[0], fps) if encode_audio is not None else None
        except (DataError, OSError) as e:
            refused.append({"video": video, "reason": f"audio: {e}"})
            log(f"refused {video}: audio: {e}")
            continue
        pixels = frames.astype(np.float32)[None] / 127.5 - 1.0
        latent = np.asarray(encode(encoder, pixels), np.float32)[0]
        (v_ctx, a_ctx), = encode_captions([caption])
        write_clip(cache, clip_id, video_latent=latent, video_context=v_ctx, audio_context=a_ctx, fps=fps,
                   caption=caption, audio_latent=audio)
        done += 1
        log(f"encoded {video}: {frames.shape[0]}x{frames.shape[1]}x{frames.shape[2]} -> latent {latent.shape[:3]}")
    (cache / "refused.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refused))
    write_index(cache)
    return {"encoded": done, "skipped": skipped, "refused": len(refused)}
