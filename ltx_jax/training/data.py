"""The cached training set: per-clip latent files, buckets by shape, and a deterministic batch order.

Counterpart: ltx-trainer `datasets.py` (`PrecomputedDataset`: per-clip latent and condition files written by
its preprocessing scripts) and its bucketed sampling. Training reads only these files: no VAE, no Gemma.

Cache folder layout (written by `training.preprocess` or `write_clip`):
  latents/<id>.npz   video_latent [F', H', W', C] (normalized VAE latent), video_context [S, Dv],
                     audio_context [S, Da] (text-connector outputs), optional audio_latent [Ta, Ca]
                     (patchified audio tokens), fps (scalar)
  index.jsonl        one line per clip: id, file, caption, fps, grid [F', H', W'], audio_tokens, context_len
Clips are bucketed by (grid, audio tokens, context length): a batch holds clips of one bucket only. The order
is a function of (seed, step): epoch e shuffles each bucket with `default_rng([seed, e])`, cuts it into full
batches (a remainder smaller than the batch is skipped that epoch) and shuffles the batches. Resuming at
step s therefore continues with exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from ltx_jax.sampling.positions import audio_positions, video_positions
from ltx_jax.training.objective import Batch

__all__ = ["DataError", "CachedDataset", "write_clip", "write_index", "dataset_fingerprint"]


class DataError(ValueError):
    """A cache folder or clip that cannot be used (names the file and the problem)."""


def write_clip(cache: str | os.PathLike, clip_id: str, *, video_latent: np.ndarray, video_context: np.ndarray,
               audio_context: np.ndarray, fps: float, caption: str = "",
               audio_latent: np.ndarray | None = None) -> Path:
    """Write one clip's cached arrays atomically (temporary file, then rename)."""
    if video_latent.ndim != 4:
        raise DataError(f"clip {clip_id}: video_latent must be [F', H', W', C]; got {video_latent.shape}")
    for name, ctx in (("video_context", video_context), ("audio_context", audio_context)):
        if ctx.ndim != 2:
            raise DataError(f"clip {clip_id}: {name} must be [S, D] (connector output); got {ctx.shape}")
    out = Path(cache) / "latents" / f"{clip_id}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial-{os.getpid()}.npz")
    arrays = dict(video_latent=np.asarray(video_latent, np.float32),
                  video_context=np.asarray(video_context, np.float32),
                  audio_context=np.asarray(audio_context, np.float32), fps=np.float32(fps),
                  caption=np.asarray(caption))
    if audio_latent is not None:
        arrays["audio_latent"] = np.asarray(audio_latent, np.float32)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def write_index(cache: str | os.PathLike) -> Path:
    """(Re)build `index.jsonl` from the clip files present (sorted by id)."""
    cache = Path(cache)
    lines = []
    for f in sorted((cache / "latents").glob("*.npz")):
        if f.name.startswith("."):
            continue
        with np.load(f) as z:
            lat = z["video_latent"]
            lines.append({"id": f.stem, "file": f"latents/{f.name}", "caption": str(z["caption"]),
                          "fps": float(z["fps"]), "grid": list(lat.shape[:3]), "channels": int(lat.shape[3]),
                          "audio_tokens": int(z["audio_latent"].shape[0]) if "audio_latent" in z else 0,
                          "context_len": int(z["video_context"].shape[0])})
    if not lines:
        raise DataError(f"{cache}: no cached clips under latents/")
    out = cache / "index.jsonl"
    tmp = cache / f".index.jsonl.partial-{os.getpid()}"
    tmp.write_text("".join(json.dumps(x) + "\n" for x in lines))
    os.replace(tmp, out)
    return out


def dataset_fingerprint(index_path: Path) -> str:
    return hashlib.sha256(index_path.read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class _Bucket:
    key: tuple
    items: tuple[int, ...]


class CachedDataset:
    """Batches from a cache folder in the deterministic (seed, step) order described above.

    Raises:
        DataError: no index, a clip file missing, or no bucket with at least `batch_size` clips.
    """

    def __init__(self, cache: str | os.PathLike, *, batch_size: int, seed: int = 0, with_audio: bool | None = None):
        self.cache = Path(cache)
        index = self.cache / "index.jsonl"
        if not index.is_file():
            raise DataError(f"{self.cache}: no index.jsonl (run `ltx-jax train-preprocess` first)")
        self.entries = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
        self.fingerprint = dataset_fingerprint(index)
        if batch_size < 1:
            raise DataError(f"batch_size={batch_size} must be >= 1")
        self.batch_size, self.seed = batch_size, seed
        has_audio = {e["audio_tokens"] > 0 for e in self.entries}
        if with_audio and has_audio != {True}:
            raise DataError(f"{self.cache}: with_audio is on but some clips have no audio_latent")
        self.with_audio = bool(with_audio if with_audio is not None else has_audio == {True})
        groups: dict[tuple, list[int]] = {}
        for i, e in enumerate(self.entries):
            key = (tuple(e["grid"]), e["audio_tokens"] if self.with_audio else 0, e["context_len"], e["fps"])
            groups.setdefault(key, []).append(i)
        self.buckets = [_Bucket(k, tuple(v)) for k, v in sorted(groups.items())]
        self.batches_per_epoch = sum(len(b.items) // batch_size for b in self.buckets)
        if self.batches_per_epoch == 0:
            sizes = {str(b.key[0]): len(b.items) for b in self.buckets}
            raise DataError(f"{self.cache}: no bucket holds batch_size={batch_size} clips (clips per latent grid: "
                            f"{sizes}); lower the batch size or add clips")

    def _epoch(self, epoch: int) -> list[tuple[int, ...]]:
        rng = np.random.default_rng([self.seed, epoch])
        batches = []
        for b in self.buckets:
            items = np.array(b.items)[rng.permutation(len(b.items))]
            n = len(items) // self.batch_size
            batches += [tuple(int(x) for x in items[k * self.batch_size:(k + 1) * self.batch_size]) for k in range(n)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def indices(self, step: int) -> tuple[int, ...]:
        """Clip indices (into `entries`) of the batch for optimizer step `step`."""
        epoch, j = divmod(int(step), self.batches_per_epoch)
        return self._epoch(epoch)[j]

    def load(self, indices: tuple[int, ...]) -> Batch:
        arrays = []
        for i in indices:
            path = self.cache / self.entries[i]["file"]
            if not path.is_file():
                raise DataError(f"{path}: listed in index.jsonl but missing (re-run the preprocessing)")
            with np.load(path) as z:
                arrays.append({k: z[k] for k in z.files})
        f, h, w = self.entries[indices[0]]["grid"]
        fps = float(self.entries[indices[0]]["fps"])
        b = len(indices)
        stack = lambda k: jnp.asarray(np.stack([a[k] for a in arrays]))  # noqa: E731
        video = np.stack([a["video_latent"] for a in arrays]).reshape(b, f * h * w, -1)
        batch = Batch(video=jnp.asarray(video), video_positions=jnp.asarray(video_positions(f, h, w, fps=fps, batch=b)),
                      video_context=stack("video_context"), audio_context=stack("audio_context"), frame_tokens=h * w)
        if self.with_audio:
            ta = arrays[0]["audio_latent"].shape[0]
            batch = batch.replace(audio=stack("audio_latent"),
                                  audio_positions=jnp.asarray(audio_positions(ta, batch=b)))
        return batch

    def batch(self, step: int) -> Batch:
        return self.load(self.indices(step))
