"""`generate`'s outputs: the mp4 (video + AAC audio), the JSON sidecar, previews, all written atomically; file
hashes, versions, peak memory; the persistent compilation cache and its index of seen shapes.

Counterpart: ltx_pipelines `utils/media_io.py` (`encode_video`, which writes the mp4 in place); here every file
is written under a temporary name in the target folder and renamed when complete, so an interrupted run
leaves no half-written mp4 or sidecar at the final names (a `kill -9` can leave a `.partial` file, never a
file under the name asked for).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import resource
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["atomic_path", "write_video", "write_frames_dir", "write_gif_or_mp4", "file_hash", "versions", "peak_memory",
           "cache_root", "enable_compilation_cache", "ExecutableIndex", "sidecar_path", "write_json"]


def cache_root(override: str | None = None) -> Path:
    """`--cache-dir`, else `$LTX_JAX_CACHE`, else `~/.cache/ltx-jax`."""
    return Path(override or os.environ.get("LTX_JAX_CACHE") or Path.home() / ".cache" / "ltx-jax")


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temporary path next to `final`, renamed to `final` when the block completes; removed when it fails."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=_json_default) + "\n")


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, (set, tuple)):
        return list(x)
    return repr(x)


def sidecar_path(video: Path) -> Path:
    return video.with_suffix(".json")


def _mux(path: Path, frames: np.ndarray, fps: float, audio: np.ndarray | None, sample_rate: int | None,
         container_format: str = "mp4") -> None:
    """H.264 (yuv420p) + optional AAC, with PyAV. `audio` float32 `[channels, samples]` in [-1, 1]."""
    from fractions import Fraction

    import av

    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format=container_format) as out:
        v = out.add_stream("libx264", rate=rate)
        v.height, v.width, v.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        a = None
        if audio is not None:
            layout = "stereo" if audio.shape[0] == 2 else "mono"
            a = out.add_stream("aac", rate=int(sample_rate), layout=layout)
        for frame in frames:
            out.mux(v.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(v.encode())
        if a is not None:
            samples = np.ascontiguousarray(np.clip(audio, -1, 1).astype(np.float32))
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
            frame.sample_rate = int(sample_rate)
            out.mux(a.encode(frame))
            out.mux(a.encode())


def write_video(path: Path, frames: np.ndarray, fps: float, audio: np.ndarray | None = None,
                sample_rate: int | None = None, *, atomic: bool = True) -> Path:
    """Write the mp4 (atomically unless the caller manages the temporary name):
    `ltx_jax.pipelines.media.write_mp4` when this build has it, else our muxer."""
    from ltx_jax.pipelines import media

    writer = getattr(media, "write_mp4", None)
    with (atomic_path(path) if atomic else contextlib.nullcontext(path)) as tmp:
        if writer is not None:
            writer(tmp, frames, fps, audio=audio, sample_rate=sample_rate)
        else:
            _mux(tmp, frames, fps, audio, sample_rate)
    return path


def write_frames_dir(out: Path, frames: np.ndarray, fps: float, formats: tuple[str, ...], audio, sample_rate,
                     generation) -> list[Path]:
    """The folder output of `generate --out DIR`: video.npz, frame_NNNN.png, video.mp4 and latents.npz, each
    file written atomically."""
    from ltx_jax.pipelines.media import write_png

    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "npz" in formats:
        with atomic_path(out / "video.npz") as tmp, open(tmp, "wb") as fh:
            sound = {} if audio is None else {"audio": np.asarray(audio, np.float32), "sample_rate": np.int32(sample_rate)}
            np.savez_compressed(fh, frames=frames, fps=np.float32(fps), **sound)
        written.append(out / "video.npz")
    if "png" in formats:
        for i, frame in enumerate(frames):
            with atomic_path(out / f"frame_{i:04d}.png") as tmp:
                write_png(tmp, frame)
            written.append(out / f"frame_{i:04d}.png")
    if "mp4" in formats:
        written.append(write_video(out / "video.mp4", frames, fps, audio, sample_rate))
    with atomic_path(out / "latents.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, video_latent=np.asarray(generation.latent, np.float32),
                 audio_tokens=np.asarray(getattr(generation, "audio_latent", generation.audio), np.float32))
    written.append(out / "latents.npz")
    if audio is not None:
        with atomic_path(out / "audio.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, waveform=audio, sample_rate=np.int32(sample_rate))
        written.append(out / "audio.npz")
    return written


def write_gif_or_mp4(path: Path, frames: np.ndarray, fps: float) -> Path:
    """A small preview: GIF (PyAV's gif encoder, palette) or mp4 by the suffix; written atomically."""
    import av

    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".gif":
            with av.open(str(tmp), "w", format="gif") as out:
                s = out.add_stream("gif", rate=max(1, round(fps)))
                s.height, s.width, s.pix_fmt = frames.shape[1], frames.shape[2], "rgb8"
                for f in frames:
                    out.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
                out.mux(s.encode())
        else:
            h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
            _mux(tmp, frames[:, :h, :w], fps, None, None)
    return path


def file_hash(path: str | Path, cache: Path | None = None) -> dict:
    """{"path", "bytes", "sha256"} of a file or folder (files in sorted order); cached by (path, size, mtime)."""
    p = Path(path).resolve()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    stamp = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()
    index = (cache / "hashes.json") if cache else None
    known = {}
    if index is not None and index.is_file():
        with contextlib.suppress(ValueError):
            known = json.loads(index.read_text())
    if key not in known:
        h = hashlib.sha256()
        for f in files:
            if p.is_dir():
                h.update(str(f.relative_to(p)).encode() + b"\0")
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 24):
                    h.update(chunk)
        known[key] = h.hexdigest()
        if index is not None:
            index.parent.mkdir(parents=True, exist_ok=True)
            write_json(index, known)
    return {"path": str(p), "bytes": sum(s for _, s, _ in stamp), "sha256": known[key]}


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("ltx-jax", "jax", "jaxlib", "flax", "numpy", "av", "rich", "ml_dtypes"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[name] = md.version(name)
    import jax
    out["backend"] = jax.default_backend()
    out["devices"] = [str(d) for d in jax.devices()]
    return out


def peak_memory() -> dict:
    """Peak host RSS of this process and peak bytes in use per device (where the backend reports it)."""
    import jax

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    devices = {}
    for d in jax.local_devices():
        try:
            stats = d.memory_stats() or {}
        except Exception:  # noqa: BLE001
            stats = {}
        devices[str(d)] = stats.get("peak_bytes_in_use")
    return {"host_peak_rss_bytes": rss, "device_peak_bytes_in_use": devices}


def enable_compilation_cache(directory: Path | None) -> str:
    """Turn JAX's persistent compilation cache on at `directory` (None: off); every executable is cached."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    current = jax.config.jax_compilation_cache_dir
    if directory is None:
        return "compilation cache off"
    directory.mkdir(parents=True, exist_ok=True)
    if current != str(directory):
        jax.config.update("jax_compilation_cache_dir", str(directory))
        cc.reset_cache()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(directory)


class ExecutableIndex:
    """Which run shapes compiled before into this cache directory: predicts "compile" or "cached" up front.

    The key hashes what decides the executables (pipeline, sizes, token counts, passes, dtype, mesh, attention,
    fp8, model config, JAX version and backend); JAX's own cache decides in the end (hits are reported).
    """

    def __init__(self, directory: Path | None):
        self.path = None if directory is None else directory / "ltx-jax-runs.json"

    def key(self, plan) -> str:
        import jax
        parts = [plan.pipeline, [(s.name, s.frames, s.height, s.width, s.video_tokens, s.audio_tokens, s.passes,
                                   s.evaluations) for s in plan.stages], plan.dtype, plan.mesh, plan.attention,
                 plan.fp8, plan.weights, plan.tiling, bool(plan.images if hasattr(plan, "images") else 0),
                 plan.config.to_metadata() if hasattr(plan.config, "to_metadata") else repr(plan.config),
                 jax.__version__, jax.default_backend(), jax.device_count()]
        return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:16]

    def _read(self) -> dict:
        if self.path is None or not self.path.is_file():
            return {}
        with contextlib.suppress(ValueError):
            return json.loads(self.path.read_text())
        return {}

    def seen(self, plan) -> bool:
        return self.key(plan) in self._read()

    def add(self, plan, compile_s: float) -> None:
        if self.path is None:
            return
        known = self._read()
        known[self.key(plan)] = {"pipeline": plan.pipeline, "compile_s": round(compile_s, 3)}
        write_json(self.path, known)
