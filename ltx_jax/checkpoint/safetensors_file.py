"""Safetensors reading and writing without torch: header parsing with validation, lazy memory-mapped
tensors (bf16 and float8 through ml_dtypes), and an atomic streaming writer.

safetensors 0.8's own numpy reader cannot load FP8 tensors (numpy has no float8), hence this file.
Format: 8-byte little-endian header length N, N bytes of JSON `{name: {dtype, shape, data_offsets},
"__metadata__": {str: str}}`, then the data region; offsets are relative to the data region.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np

__all__ = ["SafetensorsError", "TensorInfo", "SafetensorsFile", "save_file", "DTYPES"]

# safetensors dtype name -> numpy dtype.
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2), "I64": np.dtype(np.int64), "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16), "I8": np.dtype(np.int8), "U64": np.dtype(np.uint64),
    "U32": np.dtype(np.uint32), "U16": np.dtype(np.uint16), "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_NAMES = {v: k for k, v in DTYPES.items()}

# Pickle-based formats: loading them runs arbitrary code, so they are refused outright.
_PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"}
_MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's own limit


class SafetensorsError(ValueError):
    """A file that is not a valid safetensors file; the message names the file and the problem."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # safetensors name, e.g. "BF16"
    shape: tuple[int, ...]
    begin: int  # byte offsets inside the data region
    end: int

    @property
    def numpy_dtype(self) -> np.dtype:
        return DTYPES[self.dtype]

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def _refuse_pickle(path: Path, head: bytes) -> None:
    kind = None
    if head[:4] == b"PK\x03\x04":
        kind = "a zip archive (PyTorch's torch.save format)"
    elif head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        kind = "a Python pickle"
    elif path.suffix.lower() in _PICKLE_SUFFIXES:
        kind = f"a '{path.suffix}' file (pickle-based PyTorch checkpoint)"
    if kind:
        raise SafetensorsError(
            f"{path}: is {kind}; pickled checkpoints can run arbitrary code and are not read. "
            "Convert it to .safetensors in PyTorch first (safetensors.torch.save_file(state_dict, ...)).")


def _parse_header(path: Path, raw: bytes, data_size: int) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise SafetensorsError(f"{path}: __metadata__ must map strings to strings")
    infos: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(entry, dict) or {"dtype", "shape", "data_offsets"} - entry.keys():
            raise SafetensorsError(f"{where}: entry needs dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPES:
            raise SafetensorsError(f"{where}: unsupported dtype {dtype!r} (supported: {sorted(DTYPES)})")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise SafetensorsError(f"{where}: shape {shape!r} is not a list of non-negative ints")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise SafetensorsError(f"{where}: data_offsets {offsets!r} is not [begin, end]")
        begin, end = offsets
        if not 0 <= begin <= end:
            raise SafetensorsError(f"{where}: data_offsets {offsets} are not ordered")
        if end > data_size:
            raise SafetensorsError(f"{where}: data_offsets end {end} is past the end of the data ({data_size} bytes);"
                                   " the file is truncated or the header is wrong")
        expected = math.prod(shape) * DTYPES[dtype].itemsize
        if end - begin != expected:
            raise SafetensorsError(f"{where}: {end - begin} bytes for shape {shape} {dtype}, expected {expected}")
        infos[name] = TensorInfo(name, dtype, tuple(shape), begin, end)
    # Tensors may not overlap (and, as in the reference implementation, may not leave holes).
    cursor, previous = 0, None
    for info in sorted(infos.values(), key=lambda i: (i.begin, i.end)):
        if info.begin < cursor:
            raise SafetensorsError(f"{path}: tensors {previous!r} and {info.name!r} overlap in the data region")
        if info.begin > cursor:
            raise SafetensorsError(f"{path}: {info.begin - cursor} unindexed bytes before tensor {info.name!r}")
        cursor, previous = info.end, info.name
    if cursor != data_size:
        raise SafetensorsError(f"{path}: data region is {data_size} bytes but tensors cover {cursor}"
                               " (trailing bytes or a truncated header)")
    return infos, metadata


class SafetensorsFile(Mapping[str, np.ndarray]):
    """A read-only, lazily memory-mapped safetensors file: `f[name]` is a zero-copy numpy view.

    Only the header is read at open; tensor bytes are paged in when a tensor (or a slice of it, see
    `read_slice`) is touched, so a 46 GB checkpoint opens in milliseconds.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise SafetensorsError(f"{self.path}: no such file")
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            _refuse_pickle(self.path, head)
            if len(head) < 8:
                raise SafetensorsError(f"{self.path}: {size} bytes is too short for a safetensors file")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or 8 + n > size:
                raise SafetensorsError(f"{self.path}: header length {n} does not fit in a {size}-byte file;"
                                       " not a safetensors file, or truncated")
            raw = f.read(n)
        self.header_size = 8 + n
        self.infos, self.metadata = _parse_header(self.path, raw, size - self.header_size)
        self._mmap: mmap.mmap | None = None

    def _buffer(self) -> mmap.mmap:
        if self._mmap is None:
            with open(self.path, "rb") as f:
                self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._mmap

    def close(self) -> None:
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:  # views still alive; the map is freed with them
                pass
            self._mmap = None

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getitem__(self, name: str) -> np.ndarray:
        info = self.info(name)
        if info.size == 0:
            return np.zeros(info.shape, info.numpy_dtype)
        flat = np.frombuffer(self._buffer(), dtype=info.numpy_dtype, count=info.size,
                             offset=self.header_size + info.begin)
        return flat.reshape(info.shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self.infos)

    def __len__(self) -> int:
        return len(self.infos)

    def info(self, name: str) -> TensorInfo:
        try:
            return self.infos[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor {name!r}") from None

    def read_slice(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
        """A copy of `f[name][index]`; only the pages that hold the slice are read."""
        return np.array(self[name][index])

    @property
    def num_parameters(self) -> int:
        return sum(i.size for i in self.infos.values())


TensorSource = np.ndarray | Callable[[], np.ndarray]


def save_file(tensors: Mapping[str, TensorSource] | Iterable[tuple[str, TensorSource]],
              path: str | os.PathLike, metadata: Mapping[str, str] | None = None,
              shapes: Mapping[str, tuple[tuple[int, ...], np.dtype]] | None = None) -> None:
    """Write a safetensors file atomically (temporary file in the same folder, then rename).

    Args:
        tensors: name -> array, or name -> zero-argument callable returning the array. With
            callables and `shapes` (name -> (shape, dtype)), tensors are produced and written one at a
            time, so memory stays bounded by the largest tensor.
        path: destination; never left half-written.
        metadata: the `__metadata__` string map.
    """
    path = Path(path)
    items = list(tensors.items() if isinstance(tensors, Mapping) else tensors)
    if shapes is None:
        items = [(k, v() if callable(v) else v) for k, v in items]
        shapes = {k: (tuple(v.shape), v.dtype) for k, v in items}
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, _ in items:
        shape, dtype = shapes[name]
        dtype = np.dtype(dtype)
        if dtype not in _NAMES:
            raise SafetensorsError(f"{path}: tensor {name!r} has dtype {dtype}, which safetensors cannot store")
        nbytes = math.prod(shape) * dtype.itemsize
        header[name] = {"dtype": _NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # align the data region to 8 bytes, as the reference writer does
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(raw)))
            f.write(raw)
            for name, value in items:
                array = np.require(value() if callable(value) else value, requirements="C")
                shape, dtype = shapes[name]
                if tuple(array.shape) != tuple(shape) or array.dtype != np.dtype(dtype):
                    raise SafetensorsError(f"{path}: tensor {name!r} is {array.shape} {array.dtype}, "
                                           f"announced {tuple(shape)} {np.dtype(dtype)}")
                f.write(array.reshape(-1).view(np.uint8).data if array.size else b"")
                del array  # before producing the next tensor: peak memory is one tensor, not two
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
