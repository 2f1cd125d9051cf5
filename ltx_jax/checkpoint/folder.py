"""The ltx-jax checkpoint on disk: an Orbax checkpoint of the official tensors plus `config.json`,
`manifest.json` and a completion marker, written atomically and streamed in row blocks.

Layout of a checkpoint folder `OUT/`:

    weights/        Orbax (OCDBT + zarr3, uncompressed) PyTree: {official file key: array}, one leaf per
                    file tensor, keys and dtypes exactly as the source file (after the dtype policy)
    config.json     the architecture config (the `config` JSON of the official metadata, parsed)
    manifest.json   format version, converter version, source files (name, size, sha256), kind,
                    components, dtype policy, the source's safetensors metadata, every tensor's shape and
                    dtype in source order, LoRAs merged
    COMPLETE        written last; `open_checkpoint` refuses a folder without it

Why per-file-tensor leaves and not the stacked `[layers, ...]` module state: official FP8 files quantize
only some blocks (block 0 and the last ones stay bf16, and only quantized layers have `weight_scale` /
`input_scale`), so per-layer dtypes and keys differ and cannot be stacked; export back to the official
file is then a key-for-key copy; and the largest leaf is the largest file tensor, which bounds memory
when writing. Stacking happens at restore time, per device, from the layers each device owns
(`ltx_jax.checkpoint.loader.restore`).

Plain Orbax can read it too: `ocp.PyTreeCheckpointer().restore(OUT / "weights")` gives {key: ndarray}.
Counterpart: none in ltx_core (it always reads the original safetensors file).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts
from orbax.checkpoint import type_handlers as ocp_handlers

from ltx_jax.checkpoint.source import Index, Source, TensorSpec, iter_row_blocks, normalize_index

__all__ = ["CheckpointError", "LazyTensor", "write_checkpoint", "open_checkpoint", "is_checkpoint_dir",
           "CheckpointSource", "FORMAT", "FORMAT_VERSION", "WEIGHTS", "MANIFEST", "CONFIG", "COMPLETE"]

FORMAT = "ltx-jax-checkpoint"
FORMAT_VERSION = 1
WEIGHTS, MANIFEST, CONFIG, COMPLETE = "weights", "manifest.json", "config.json", "COMPLETE"
BLOCK_BYTES = 64 << 20  # upper bound on the rows written per tensorstore write (and zarr3 write chunk)
# OCDBT keeps recently written B-tree nodes in a cache pool (Orbax's default: 100 MB); one checkpoint write
# never re-reads them, so a small pool keeps host memory at the blocks in flight.
OCDBT_CACHE_BYTES = 16 << 20
CHUNK_BYTES = 8 << 20  # zarr3 read sub-chunks: the granularity of a sharded region read


class CheckpointError(ValueError):
    """Not an ltx-jax checkpoint, an incomplete one (interrupted conversion), or one of another format version."""


@dataclass
class LazyTensor:
    """A tensor to be written without holding it in memory: `read(index)` returns the rows of `index`."""

    key: str
    spec: TensorSpec
    read: Callable[[Index], np.ndarray]
    order: int = 0  # writes happen in this order (the source file's offset order: sequential reads)


class _LazyTensorHandler(ocp_handlers.NumpyHandler):
    """Orbax type handler that writes `LazyTensor`s one at a time, in row blocks of at most BLOCK_BYTES.

    Each row block is its own zarr3 write chunk (Orbax's per-shard `write_shape`, as when every host
    writes its own shard), so a block is encoded and written independently: host memory holds one block,
    never the whole tensor. The stored arrays are ordinary Orbax numpy leaves.
    """

    def __init__(self, block_bytes: int, progress: Callable[[str, int], None] | None):
        super().__init__(deepcopy_host_arrays=False)
        self.block_bytes, self.progress = block_bytes, progress

    async def _write_one(self, value: LazyTensor, info, arg, context: ts.Context) -> None:
        await info.await_path_creation()
        spec = value.spec
        blocks = list(iter_row_blocks(spec, self.block_bytes))
        write_shape = tuple(s.stop - s.start for s in blocks[0]) if spec.shape else ()
        tspec = ocp_handlers.get_json_tspec_write(
            info, use_ocdbt=info.is_ocdbt_checkpoint, global_shape=spec.shape, local_shape=write_shape,
            dtype=spec.dtype, process_index=ocp.multihost.process_index() if info.is_ocdbt_checkpoint else None,
            arg=arg)
        store = await ts.open(ts.Spec(tspec), create=True, open=True, context=context)
        for index in blocks:
            block = np.require(value.read(index), requirements="C")
            if block.shape != tuple(s.stop - s.start for s in index) or block.dtype != spec.dtype:
                raise CheckpointError(f"{value.key}: reader returned {block.shape} {block.dtype} for rows "
                                      f"{index[0] if index else ()} of {spec.shape} {spec.dtype}")
            # The block is not touched again, so tensorstore may encode straight from it (no extra copy).
            await store[index].write(block, can_reference_source_data_indefinitely=True)
            del block
        if self.progress is not None:
            self.progress(value.key, spec.nbytes)

    async def _write_all(self, values, infos, args):
        # Writes overlap (tensorstore I/O is asynchronous) but the bytes held at once stay under two
        # blocks: a tensor counts for at most one block, since it is read and written block by block.
        budget, used, running = 2 * self.block_bytes, 0, {}
        if not infos:
            return
        # All data goes through this one child context (Orbax itself writes no array data here), so the
        # OCDBT database has a single writer.
        context = ts.Context(ts.Context.Spec({"cache_pool#ocdbt": {"total_bytes_limit": OCDBT_CACHE_BYTES}}),
                             parent=infos[0].ts_context)
        for value, info, arg in sorted(zip(values, infos, args), key=lambda t: t[0].order):
            size = min(value.spec.nbytes, self.block_bytes)
            while running and (used + size > budget or len(running) >= 64):
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    used -= running.pop(task)
                    task.result()  # re-raise a failed write here
            running[asyncio.ensure_future(self._write_one(value, info, arg, context))] = size
            used += size
        for task in list(running):
            await task

    async def serialize(self, values, infos, args=None):
        args = args or [ocp.SaveArgs()] * len(values)
        return [ocp.future.CommitFutureAwaitingContractedSignals(self._write_all(values, infos, args),
                                                                 name="ltx_lazy_tensors")]


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        f.write(json.dumps(obj, indent=1, sort_keys=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(out: str | os.PathLike, tensors: Sequence[LazyTensor], config: Mapping[str, Any],
                     manifest: Mapping[str, Any] | Callable[[], Mapping[str, Any]], *, overwrite: bool = False,
                     block_bytes: int | None = None,
                     chunk_bytes: int = CHUNK_BYTES, progress: Callable[[str, int], None] | None = None) -> Path:
    """Write a checkpoint folder atomically: everything goes to `OUT.partial-<pid>/`, `COMPLETE` is written
    last, and the folder is renamed to `OUT` only then. A process killed at any point leaves no `OUT` (or
    the previous one, untouched) and a `.partial` folder that `open_checkpoint` refuses.

    Args:
        out: destination folder.
        tensors: what to write, in any order (written in `LazyTensor.order`).
        config: the architecture config, written to config.json.
        manifest: everything else to record (or a callable giving it, called once the tensors are written);
            `format`, `format_version` and `tensors` are filled in here.
        overwrite: replace an existing checkpoint at `out` (only after the new one is complete).
        block_bytes: rows per write; default a quarter of the largest tensor (1 MiB .. BLOCK_BYTES). At most
            two blocks are in flight and tensorstore holds one encoded copy of each, so the host memory used
            for tensor data stays around the size of the largest tensor.

    Raises:
        CheckpointError: `out` exists and `overwrite` is False.
    """
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise CheckpointError(f"{out}: already exists (pass overwrite=True / --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):  # left by killed conversions of the same target
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    if block_bytes is None:
        largest = max((t.spec.nbytes for t in tensors), default=0)
        block_bytes = min(BLOCK_BYTES, max(1 << 20, largest // 4))
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        # Every leaf is a LazyTensor, so the registry needs no other handler.
        registry = ocp_handlers.create_type_handler_registry((LazyTensor, _LazyTensorHandler(block_bytes, progress)))
        handler = ocp.PyTreeCheckpointHandler(use_ocdbt=True, use_zarr3=True, use_compression=False,
                                              type_handler_registry=registry)
        tree = {t.key: t for t in tensors}
        save_args = {t.key: ocp.SaveArgs(chunk_byte_size=chunk_bytes) for t in tensors}
        with ocp.Checkpointer(handler) as checkpointer:
            checkpointer.save(tmp / WEIGHTS, args=ocp.args.PyTreeSave(tree, save_args=save_args))
        order = sorted(tensors, key=lambda t: t.order)
        manifest = manifest() if callable(manifest) else manifest
        record = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest,
                  "tensors": {t.key: {"shape": list(t.spec.shape), "dtype": t.spec.dtype.name} for t in order}}
        _write_json(tmp / CONFIG, config)
        _write_json(tmp / MANIFEST, record)
        _write_json(tmp / COMPLETE, {"format": FORMAT, "tensors": len(order)})
        _fsync_dir(tmp)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
        _fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_checkpoint_dir(path: str | os.PathLike) -> bool:
    """True for a folder that claims to be an ltx-jax checkpoint (complete or not)."""
    p = Path(path)
    return p.is_dir() and ((p / MANIFEST).is_file() or (p / WEIGHTS).is_dir() or (p / COMPLETE).is_file()
                           or p.name.startswith(".") and ".partial-" in p.name)


class CheckpointSource(Source):
    """A complete ltx-jax checkpoint as a `Source`: region reads go through tensorstore and touch only the
    zarr3 sub-chunks (CHUNK_BYTES) that overlap the region."""

    layout = "ltx-jax-checkpoint"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).absolute()
        self.name = str(self.path)
        problems = [n for n in (MANIFEST, CONFIG, COMPLETE) if not (self.path / n).is_file()]
        if not (self.path / WEIGHTS / "commit_success.txt").is_file() and not (self.path / WEIGHTS /
                                                                                "_CHECKPOINT_METADATA").is_file():
            problems.append(f"{WEIGHTS}/ (Orbax commit)")
        if problems:
            raise CheckpointError(f"{self.path}: incomplete ltx-jax checkpoint, missing {', '.join(problems)} "
                                  "(a conversion was interrupted or failed; convert again)")
        self.manifest = json.loads((self.path / MANIFEST).read_text())
        self.config = json.loads((self.path / CONFIG).read_text())
        if self.manifest.get("format") != FORMAT:
            raise CheckpointError(f"{self.path}: manifest format {self.manifest.get('format')!r} is not {FORMAT!r}")
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{self.path}: checkpoint format version {self.manifest.get('format_version')} "
                                  f"is not supported by this ltx-jax (reads version {FORMAT_VERSION}); convert again")
        self.metadata = dict(self.manifest.get("metadata") or {})
        self._specs = {k: TensorSpec(tuple(v["shape"]), np.dtype(v["dtype"]))
                       for k, v in self.manifest["tensors"].items()}
        self._stores: dict[str, ts.TensorStore] = {}
        self._lock = threading.Lock()
        self._context = ts.Context({"cache_pool": {"total_bytes_limit": 0},
                                    "cache_pool#ocdbt": {"total_bytes_limit": OCDBT_CACHE_BYTES}})

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", "unknown")

    def specs(self) -> Mapping[str, TensorSpec]:
        return self._specs

    def files(self) -> list[Path]:
        return [self.path]

    def _store(self, key: str) -> ts.TensorStore:
        with self._lock:
            store = self._stores.get(key)
            if store is None:
                info = ocp_handlers.ParamInfo(name=key, parent_dir=self.path / WEIGHTS, is_ocdbt_checkpoint=True,
                                              use_zarr3=True, ts_context=self._context)
                tspec = ocp_handlers.get_json_tspec_read(info, use_ocdbt=True)
                store = ts.open(tspec, open=True, read=True, context=self._context).result()
                self._stores[key] = store
            return store

    def read(self, key: str, index: Index | None = None) -> np.ndarray:
        spec = self._specs.get(key)
        if spec is None:
            raise KeyError(f"{self.name}: no tensor {key!r}")
        index = normalize_index(index, spec.shape)
        return np.asarray(self._store(key)[index].read().result(), dtype=spec.dtype)


def open_checkpoint(path: str | os.PathLike) -> CheckpointSource:
    """Open a complete ltx-jax checkpoint folder for reading (raises `CheckpointError` otherwise)."""
    return CheckpointSource(path)
