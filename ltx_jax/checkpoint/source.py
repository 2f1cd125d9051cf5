"""Tensor sources under the official keys: one read interface over an official safetensors file, our
converted checkpoint and a diffusers folder, plus wrappers that transform what is read (FP8
dequantization, LoRA merging, read logging).

Everything downstream (conversion, export, sharded restore, LoRA) works on a `Source` (`open.open_source`
picks the kind for a path): a mapping from
official file key to `TensorSpec` (shape, dtype, in storage order) and `read(key, index)`, which returns
a fresh array holding only `tensor[index]`. A region read touches only the bytes of that region (a
memory-mapped slice for safetensors, the overlapping chunks for our Orbax checkpoint), which is what lets
each device of a sharded restore read only its own shard.

Counterpart: ltx_core `loader/sft_loader.py` (`SafetensorsStateDictLoader`, which reads whole files
into torch tensors).
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np

from ltx_jax.checkpoint.safetensors_file import SafetensorsFile

__all__ = ["TensorSpec", "Source", "SafetensorsSource", "TensorsSource", "Dequantized", "Logged", "Index",
           "normalize_index", "iter_row_blocks", "FP8_DTYPES"]

Index = tuple[slice, ...]
FP8_DTYPES = (np.dtype(ml_dtypes.float8_e4m3fn), np.dtype(ml_dtypes.float8_e5m2))
_PAGE = mmap.PAGESIZE


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def normalize_index(index: Index | None, shape: Sequence[int]) -> Index:
    """A full tuple of step-1 slices with explicit bounds (what `make_array_from_callback` passes, padded)."""
    index = tuple(index or ())
    if len(index) > len(shape):
        raise IndexError(f"index {index} has more axes than shape {tuple(shape)}")
    out = []
    for i, n in enumerate(shape):
        s = index[i] if i < len(index) else slice(None)
        start, stop, step = s.indices(n)
        if step != 1:
            raise IndexError(f"only contiguous slices are supported, got {s}")
        out.append(slice(start, stop))
    return tuple(out)


def region_shape(index: Index) -> tuple[int, ...]:
    return tuple(s.stop - s.start for s in index)


class Source:
    """Official tensors by file key. Subclasses set `name`, `metadata` and implement `specs`/`read`."""

    name: str = "<source>"
    metadata: Mapping[str, str] = {}

    def specs(self) -> Mapping[str, TensorSpec]:
        """{file key: TensorSpec}, in storage order."""
        raise NotImplementedError

    def read(self, key: str, index: Index | None = None) -> np.ndarray:
        """A fresh array with `tensor[index]` (all of it when `index` is None), in the stored dtype."""
        raise NotImplementedError

    def files(self) -> list[Path]:
        """The files the tensors come from (for the manifest's source record)."""
        return []

    def __contains__(self, key: str) -> bool:
        return key in self.specs()

    def keys(self) -> list[str]:
        return list(self.specs())

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SafetensorsSource(Source):
    """An official `.safetensors` file. Whole tensors and leading-axis row ranges are read with `pread`
    (no memory map, so the pages read do not stay in this process's RSS); other regions through the
    memory map, after which those pages are released again (`MADV_DONTNEED`)."""

    def __init__(self, path: str | os.PathLike | SafetensorsFile):
        self.file = path if isinstance(path, SafetensorsFile) else SafetensorsFile(path)
        self.name = str(self.file.path)
        self.metadata = dict(self.file.metadata)
        infos = sorted(self.file.infos.values(), key=lambda i: i.begin)
        self._specs = {i.name: TensorSpec(i.shape, i.numpy_dtype) for i in infos}
        self._fd: int | None = None
        self._lock = threading.Lock()

    def specs(self) -> Mapping[str, TensorSpec]:
        return self._specs

    def files(self) -> list[Path]:
        return [self.file.path]

    def _pread(self, offset: int, nbytes: int) -> np.ndarray:
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.file.path, os.O_RDONLY)
        out = np.empty(nbytes, np.uint8)
        view, done = memoryview(out), 0
        while done < nbytes:
            n = os.preadv(self._fd, [view[done:]], offset + done)
            if n <= 0:
                raise OSError(f"{self.name}: short read at byte {offset + done} (file truncated while reading?)")
            done += n
        return out

    def read(self, key: str, index: Index | None = None) -> np.ndarray:
        info = self.file.info(key)
        spec = self._specs[key]
        index = normalize_index(index, spec.shape)
        if spec.shape and all(s.start == 0 and s.stop == n for s, n in zip(index[1:], spec.shape[1:])):
            # A leading-axis row range is one contiguous byte range of a row-major tensor.
            row = spec.nbytes // spec.shape[0] if spec.shape[0] else 0
            start, stop = index[0].start, index[0].stop
            raw = self._pread(self.file.header_size + info.begin + start * row, (stop - start) * row)
            return raw.view(spec.dtype).reshape(region_shape(index))
        if not spec.shape:
            return self._pread(self.file.header_size + info.begin, spec.nbytes).view(spec.dtype).reshape(())
        out = np.array(self.file[key][index])
        self._release(self.file.header_size + info.begin, info.nbytes)
        return out

    def _release(self, offset: int, nbytes: int) -> None:
        buffer = self.file._buffer()
        start = offset - offset % _PAGE
        try:
            buffer.madvise(mmap.MADV_DONTNEED, start, min(nbytes + offset - start, len(buffer) - start))
        except (AttributeError, OSError, ValueError):  # not every platform has madvise
            pass

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.file.close()


class TensorsSource(Source):
    """A {file key: array} mapping (numpy or jax arrays, e.g. a state dict) as a `Source`."""

    def __init__(self, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None,
                 name: str = "tensors"):
        self.tensors, self.name = tensors, str(getattr(tensors, "path", name))
        self.metadata = dict(metadata if metadata is not None else getattr(tensors, "metadata", None) or {})
        self._specs = {k: TensorSpec(tuple(np.shape(v)), np.dtype(v.dtype)) for k, v in tensors.items()}

    def specs(self) -> Mapping[str, TensorSpec]:
        return self._specs

    def read(self, key: str, index: Index | None = None) -> np.ndarray:
        return np.array(np.asarray(self.tensors[key])[normalize_index(index, self._specs[key].shape)])


class _Wrapper(Source):
    def __init__(self, base: Source):
        self.base = base
        self.name = base.name
        self.metadata = base.metadata

    def specs(self) -> Mapping[str, TensorSpec]:
        return self.base.specs()

    def read(self, key: str, index: Index | None = None) -> np.ndarray:
        return self.base.read(key, index)

    def files(self) -> list[Path]:
        return self.base.files()

    def close(self) -> None:
        self.base.close()


class Dequantized(_Wrapper):
    """Scaled FP8 layers read as float32 `q * weight_scale` (the official `FP8Linear` dequantization);
    their `weight_scale` / `input_scale` keys disappear. For restoring an FP8 file into a bf16 / f32 model.

    `input_scale` is the static activation scale of the scaled-matmul path; without an FP8 matmul it has no
    use, so it is dropped here (and said so in the docstring of `restore`).
    """

    def __init__(self, base: Source):
        super().__init__(base)
        specs = base.specs()
        self.scaled = {k[: -len(".weight_scale")] + ".weight" for k in specs if k.endswith(".weight_scale")}
        self._specs = {}
        for k, s in specs.items():
            if k.endswith((".weight_scale", ".input_scale")) and k.rsplit(".", 1)[0] + ".weight" in self.scaled:
                continue
            self._specs[k] = TensorSpec(s.shape, np.dtype(np.float32)) if k in self.scaled else s

    def specs(self) -> Mapping[str, TensorSpec]:
        return self._specs

    def read(self, key: str, index: Index | None = None) -> np.ndarray:
        if key not in self.scaled:
            return self.base.read(key, index)
        scale = self.base.read(key[: -len("weight")] + "weight_scale").astype(np.float32)
        return self.base.read(key, index).astype(np.float32) * scale


class Logged(_Wrapper):
    """Records every `(key, index)` read, with the thread, for tests of who reads what."""

    def __init__(self, base: Source):
        super().__init__(base)
        self.reads: list[tuple[str, Index, int]] = []
        self._lock = threading.Lock()

    def read(self, key: str, index: Index | None = None) -> np.ndarray:
        norm = normalize_index(index, self.specs()[key].shape)
        with self._lock:
            self.reads.append((key, norm, threading.get_ident()))
        return self.base.read(key, index)


def iter_row_blocks(spec: TensorSpec, max_bytes: int) -> Iterator[Index]:
    """Leading-axis row ranges of at most `max_bytes` each (one block for 0-d and small tensors)."""
    if not spec.shape or spec.shape[0] == 0:
        yield normalize_index(None, spec.shape)
        return
    row = max(1, spec.nbytes // spec.shape[0])
    rows = max(1, max_bytes // row)
    for start in range(0, spec.shape[0], rows):
        stop = min(spec.shape[0], start + rows)
        yield (slice(start, stop),) + tuple(slice(0, n) for n in spec.shape[1:])
