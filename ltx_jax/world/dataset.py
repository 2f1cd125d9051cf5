"""The world dataset on disk, in the training issue's input format (`ltx_jax.training.preprocess.read_captions`).

Counterpart: the clip folders ltx-trainer's `process_dataset.py` reads. Layout of `out`:
  clips/clip_00000.mp4 ...   H.264 yuv420p + stereo AAC at `sample_rate` (16 kHz by default)
  captions.jsonl             one object per clip: `video` (path relative to `out`), `caption`, `seed`, the
                             ground-truth attribute words (colour, shape, direction, background, pitch, sound)
  world.json                 how it was made: seed, clips, frames, size, fps, sample rate, the grammar
Clip i is rendered from `numpy.random.default_rng([seed, i])`, so any clip can be re-made alone. Each file is
written atomically (captions.jsonl and world.json last); an existing dataset is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from ltx_jax.world.grammar import Grammar, Scene, grammar, sample_scene
from ltx_jax.world.media import write_clip_mp4
from ltx_jax.world.render import SAMPLE_RATE, check_clip_shape, render_audio, render_frames

__all__ = ["WorldSpec", "scene_of", "make_clip", "write_dataset"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorldSpec:
    seed: int = 0
    clips: int = 64
    frames: int = 25  # 1 + 8k
    height: int = 64  # multiple of 32
    width: int = 64
    fps: int = 24
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self):
        check_clip_shape(self.frames, self.height, self.width)
        if self.clips < 1 or self.fps < 1 or self.sample_rate < 8000:
            raise ValueError(f"clips={self.clips}, fps={self.fps}, sample_rate={self.sample_rate}: need clips >= 1, "
                             "fps >= 1, sample_rate >= 8000")

    @property
    def num_samples(self) -> int:
        return int(round(self.frames / self.fps * self.sample_rate))


def scene_of(spec: WorldSpec, index: int, g: Grammar | None = None) -> Scene:
    """The scene of clip `index` (without rendering it)."""
    return sample_scene(np.random.default_rng([spec.seed, index]), spec.height, spec.width, g or grammar())


def make_clip(spec: WorldSpec, index: int, g: Grammar | None = None) -> tuple[Scene, np.ndarray, np.ndarray]:
    """(scene, frames uint8 [F, H, W, 3], audio float32 [2, N]) of clip `index`."""
    g = g or grammar()
    scene = scene_of(spec, index, g)
    return (scene, render_frames(scene, spec.frames, spec.height, spec.width, g),
            render_audio(scene, spec.num_samples, spec.sample_rate, g))


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_dataset(out: str | os.PathLike, spec: WorldSpec, log=None) -> Path:
    """Render and write `spec.clips` clips under `out`; returns the captions.jsonl path."""
    out = Path(out)
    g = grammar()
    if (out / "captions.jsonl").exists() or (out / "world.json").exists():
        raise FileExistsError(f"{out}: already holds a dataset (captions.jsonl / world.json); choose another --out")
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(spec.clips):
        scene, frames, audio = make_clip(spec, i, g)
        rel = f"clips/clip_{i:05d}.mp4"
        write_clip_mp4(out / rel, frames, spec.fps, audio, spec.sample_rate)
        rows.append({"video": rel, "caption": scene.caption, "seed": [spec.seed, i], **scene.attributes()})
        if log is not None:
            log(f"{rel}: {scene.caption}")
    _write_text(out / "captions.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    meta = {**dataclasses.asdict(spec), "audio_channels": 2, "video_codec": "h264 yuv420p", "audio_codec": "aac",
            "grammar": dataclasses.asdict(g)}
    _write_text(out / "world.json", json.dumps(meta, indent=1) + "\n")
    return out / "captions.jsonl"
