"""`ltx-jax convert SRC OUT`: any official file (or a diffusers folder) to an ltx-jax checkpoint, streamed.

Kinds: the single-file LTX-2 / LTX-2.3 checkpoints (dev, distilled, bf16 or FP8), transformer-only files,
latent upsamplers, LoRAs (distilled LoRA, IC-LoRAs, camera LoRAs) and the TAE. The kind and the component
set come from the keys (`inspect`), the config from the file's own metadata; every tensor of a selected
component is checked against the config's official layout (nothing missing, nothing unexpected, every
shape right) before anything is written. Tensors are then read and written in row blocks in the file's
own order, so host memory stays at a few blocks (`checkpoint.BLOCK_BYTES`) whatever the file size, and the
source's sha256 is computed by a background thread in the same pass.

Counterpart: ltx_core `loader/sft_loader.py` + `loader/sd_ops.py` (what the official loader reads from the
same files); the official loader has no converter.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from ltx_jax.checkpoint import schema as S
from ltx_jax.checkpoint.folder import CheckpointSource, LazyTensor, write_checkpoint
from ltx_jax.checkpoint.inspect import inspect_file
from ltx_jax.checkpoint.layout import file_group, match
from ltx_jax.checkpoint.lora import LoraError, LoraMerged, load_lora
from ltx_jax.checkpoint.open import open_source
from ltx_jax.checkpoint.safetensors_file import SafetensorsError
from ltx_jax.checkpoint.source import FP8_DTYPES, SafetensorsSource, Source, TensorSpec
from ltx_jax.checkpoint.tae_layout import TAECheckpointError, tae_config_from_shapes, tae_schema
from ltx_jax.configs import ConfigError, from_metadata, upsampler_from_metadata

__all__ = ["ConvertError", "convert", "detect", "DTYPE_POLICIES", "COMPONENT_GROUPS", "CONVERTER_VERSION"]

CONVERTER_VERSION = 1
DTYPE_POLICIES = {"keep": None, "bf16": np.dtype(ml_dtypes.bfloat16), "bfloat16": np.dtype(ml_dtypes.bfloat16),
                  "f32": np.dtype(np.float32), "float32": np.dtype(np.float32)}
# Floating dtypes the policy casts (numpy reports ml_dtypes' bfloat16 as kind "V", so list them).
_CASTABLE = {np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64), np.dtype(ml_dtypes.bfloat16)}
# --components names -> inspect's component names. The decoders need the shared statistics too.
COMPONENT_GROUPS = {
    "transformer": ("transformer",), "connectors": ("connectors",),
    "vae": ("vae_encoder", "vae_decoder", "vae_statistics"),
    "vae_encoder": ("vae_encoder", "vae_statistics"), "vae_decoder": ("vae_decoder", "vae_statistics"),
    "audio_vae": ("audio_vae_encoder", "audio_vae_decoder", "audio_vae_statistics"), "vocoder": ("vocoder",),
}
# Extra statistics some released files carry and ltx-core ignores: kept for export, not used.
_CARRIED_STATISTICS = ("vae.per_channel_statistics.",)
# No schema (no implementation yet): carried through unvalidated and listed in the manifest.
_UNVALIDATED_COMPONENTS = {"audio_vae_encoder", "audio_vae_decoder", "audio_vae_statistics", "vocoder"}


class ConvertError(ValueError):
    """The input cannot be converted; the message names the file and the problem."""


def detect(source: Source) -> tuple[str, str]:
    """(kind, description) of a source: `inspect` for files, the source's own record otherwise."""
    if isinstance(source, SafetensorsSource):
        report = inspect_file(source.name)
        return report.kind, report.description
    if isinstance(source, CheckpointSource):
        return source.kind, source.manifest.get("description", source.kind)
    return getattr(source, "kind", "unknown"), getattr(source, "description", "")


def _components_of(keys: Iterable[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k in keys:
        out.setdefault(file_group(k), []).append(k)
    return out


def _fail(name: str, what: str, items: Sequence[str]) -> str:
    return f"{len(items)} {what}: " + ", ".join(items[:8]) + (" ..." if len(items) > 8 else "")


def _check_layout(name: str, specs: dict[str, TensorSpec], expected: dict[str, tuple[int, ...]],
                  extra_ok: Callable[[str], bool] = lambda k: False) -> None:
    """Strict both ways (`layout.match`): every expected key with its shape, no other key (unless `extra_ok`)."""
    match(name, "its config's official layout", expected, {k: s.shape for k, s in specs.items()}, extra_ok,
          error=ConvertError)


def _fp8_scale_ok(specs: dict[str, TensorSpec], expected: dict, key: str) -> bool:
    """`<layer>.weight_scale` / `.input_scale`: f32 scalars next to an FP8 `<layer>.weight`."""
    if not key.endswith((".weight_scale", ".input_scale")):
        return False
    weight = key.rsplit(".", 1)[0] + ".weight"
    return weight in expected and specs.get(weight, TensorSpec((), np.dtype(np.float32))).dtype in FP8_DTYPES \
        and specs[key].shape in ((), (1,))


def _validate_ltx(source: Source, wanted: Sequence[str] | None) -> tuple[dict, list[str], list[str]]:
    """Config, selected keys and carried-unvalidated keys of a full / transformer-only checkpoint."""
    name, specs = source.name, dict(source.specs())
    try:
        config = from_metadata(source.metadata, tensor_shapes={k: s.shape for k, s in specs.items()})
    except ConfigError as e:
        raise ConvertError(f"{name}: config in the safetensors metadata: {e}") from None
    present = _components_of(specs)
    if "other" in present:
        raise ConvertError(f"{name}: " + _fail(name, "key(s) belong to no LTX-2 component", present["other"]))
    parts = sorted({p for g in (wanted or present) for p in COMPONENT_GROUPS.get(g, (g,))})
    unknown = [g for g in (wanted or ()) if g not in COMPONENT_GROUPS]
    absent = [p for p in parts if p not in present]
    if unknown or absent:
        raise ConvertError(f"{name}: component(s) {unknown + absent} not in this file (it has {sorted(present)}; "
                           f"--components takes {sorted(COMPONENT_GROUPS)})")
    schema = S.checkpoint_schema(config)
    selected, carried = [], []
    for part in parts:
        keys = {k: specs[k] for k in present[part]}
        selected += present[part]
        if part in _UNVALIDATED_COMPONENTS:
            carried += present[part]
            continue
        expected = schema[part]
        extra = (lambda k: k.startswith(_CARRIED_STATISTICS)) if part == "vae_statistics" else \
            (lambda k, e=expected: _fp8_scale_ok(specs, e, k))
        _check_layout(f"{name} [{part}]", keys, expected, extra)
        carried += [k for k in keys if k not in expected and not k.endswith(("_scale",))]
    meta = json.loads(source.metadata["config"])
    return meta, selected, carried


def _validate_upsampler(source: Source) -> dict:
    try:
        config = upsampler_from_metadata(source.metadata)
    except ConfigError as e:
        raise ConvertError(f"{source.name}: upsampler config in the metadata: {e}") from None
    _check_layout(source.name, dict(source.specs()), S.upsampler_schema(config))
    return config.to_dict()


def _validate_tae(source: Source) -> dict:
    specs = dict(source.specs())
    try:
        config = tae_config_from_shapes({k: s.shape for k, s in specs.items()})
    except TAECheckpointError as e:
        raise ConvertError(f"{source.name}: {e}") from None
    _check_layout(source.name, specs, tae_schema(config))
    return {"tae": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(config).items()}}


def _sha256_files(paths: Sequence[Path], out: dict, block: int = 4 << 20) -> threading.Thread:
    """sha256 of each file in a background thread (hashlib releases the GIL), one fixed-size buffer."""
    def run():
        buf = bytearray(block)
        view = memoryview(buf)
        for p in paths:
            h = hashlib.sha256()
            with open(p, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    h.update(view[:n])
            out[str(p)] = h.hexdigest()
    thread = threading.Thread(target=run, name="sha256", daemon=True)
    thread.start()
    return thread


def _source_files(source: Source) -> list[Path]:
    files = []
    for f in source.files():
        files += sorted(p for p in f.rglob("*") if p.is_file() and ".partial-" not in str(p)) if f.is_dir() else [f]
    return files


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled = total, 0, enabled
        self.start = self.last = time.perf_counter()

    def __call__(self, key: str, nbytes: int) -> None:
        self.done += nbytes
        now = time.perf_counter()
        if self.enabled and (now - self.last > 5 or self.done == self.total):
            self.last = now
            rate = self.done / max(now - self.start, 1e-9) / 1e6
            print(f"  {self.done / 1e9:.2f} / {self.total / 1e9:.2f} GB ({rate:.0f} MB/s)", file=sys.stderr)


def convert(src: str | os.PathLike | Source, out: str | os.PathLike, *, dtype: str = "keep",
            components: Sequence[str] | None = None, loras: Sequence[tuple[str, float]] = (),
            overwrite: bool = False, verbose: bool = False, hash_source: bool = True) -> Path:
    """Convert an official file (or diffusers folder, or one of our checkpoints) into an ltx-jax checkpoint.

    Args:
        src: the official `.safetensors` file, a diffusers-format folder, or an ltx-jax checkpoint.
        out: the checkpoint folder to create (atomically; see `checkpoint.write_checkpoint`).
        dtype: `keep` (as in the file), `bf16` or `f32`: applies to floating tensors that are not FP8;
            FP8 weights and their scales are always kept as they are.
        components: for full checkpoints, a subset of `COMPONENT_GROUPS` (default: all in the file).
        loras: (LoRA path, strength) pairs merged into the transformer weights (official order and dtypes;
            the target dtype is the dtype policy's, or each weight's own with `keep`).
        hash_source: record each source file's sha256 in the manifest (read in a parallel pass).

    Raises:
        ConvertError / SafetensorsError / LoraError: malformed input, wrong kind, a key missing or unexpected,
            a changed shape, a pickle file; the message names the file and the problem.
    """
    if dtype not in DTYPE_POLICIES:
        raise ConvertError(f"--dtype {dtype!r}: choose one of {sorted(DTYPE_POLICIES)}")
    target = DTYPE_POLICIES[dtype]
    source = open_source(src)
    try:
        return _convert(source, out, target, dtype, components, loras, overwrite, verbose, hash_source)
    except SafetensorsError as e:
        raise ConvertError(str(e)) from None
    finally:
        source.close()


def _convert(source: Source, out, target, dtype: str, components, loras, overwrite: bool, verbose: bool,
             hash_source: bool) -> Path:
    kind, description = detect(source)
    carried: list[str] = []
    if kind in ("ltx_checkpoint", "ltx_transformer"):
        config, selected, carried = _validate_ltx(source, components)
    else:
        if components and list(components) != [kind]:
            raise ConvertError(f"{source.name}: a {kind} file has no components {list(components)}")
        if loras:
            raise ConvertError(f"{source.name}: LoRAs merge into a transformer; this is a {kind} file")
        if kind == "upsampler":
            config = _validate_upsampler(source)
        elif kind == "tae":
            config = _validate_tae(source)
        elif kind == "lora":
            lf = load_lora(source)
            config = {"lora": {"pairs": len(lf.pairs), "ranks": sorted(set(lf.ranks.values()))}}
        else:
            raise ConvertError(f"{source.name}: not an LTX-2 file ({description or kind}); convert takes full or "
                               "transformer-only checkpoints, latent upsamplers, LoRAs and the TAE")
        selected = list(source.specs())
    base_specs = source.specs()

    def cast_to(key: str) -> np.dtype:
        d = base_specs[key].dtype
        fp8_scale = key.endswith(("_scale",)) and base_specs.get(key.rsplit(".", 1)[0] + ".weight",
                                                                  base_specs[key]).dtype in FP8_DTYPES
        return target if target is not None and d in _CASTABLE and not fp8_scale else d

    reader: Source = source
    lora_record = []
    if loras:
        if "transformer" not in {file_group(k) for k in selected}:
            raise ConvertError(f"{source.name}: --lora needs the transformer component")
        try:
            reader = LoraMerged(source, loras, dtype=lambda k: cast_to(k) if target is not None else None)
        except LoraError as e:
            raise ConvertError(str(e)) from None
        lora_record = reader.record()
    specs = reader.specs()
    order = {k: i for i, k in enumerate(base_specs)}
    tensors = []
    for key in selected:
        have = specs[key].dtype
        want = have if have in FP8_DTYPES else cast_to(key)

        def read(index, key=key, want=want, have=have):
            a = reader.read(key, index)
            return a if have == want else a.astype(want)
        tensors.append(LazyTensor(key, TensorSpec(specs[key].shape, want), read, order[key]))

    for name, why in getattr(source, "skipped", {}).items():  # reported, never silently dropped
        print(f"note: {source.name}/{name} not converted: {why}", file=sys.stderr)
    hashes: dict[str, str] = {}
    files = _source_files(source)
    thread = _sha256_files(files, hashes) if hash_source else None
    total = sum(t.spec.nbytes for t in tensors)
    progress = _Progress(total, verbose)
    try:
        manifest_src = {"layout": getattr(source, "layout", "official-safetensors"), "files": []}
        manifest: dict[str, Any] = {
            "converter": {"name": "ltx-jax", "version": _version(), "converter_version": CONVERTER_VERSION},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": manifest_src, "kind": kind, "description": description,
            "components": sorted({file_group(k) for k in selected}) if kind.startswith("ltx_") else [kind],
            "dtype_policy": dtype, "loras": lora_record, "metadata": dict(source.metadata),
            "carried_unvalidated": sorted(carried), "not_converted": dict(getattr(source, "skipped", {})),
        }

        def finish_manifest() -> dict:  # called after the tensors are written: hashing overlaps writing
            if thread is not None:
                thread.join()
            base = Path(source.name)
            for f in files:
                rel = str(f.relative_to(base)) if base.is_dir() and f.is_relative_to(base) else f.name
                manifest_src["files"].append({"name": rel, "size": f.stat().st_size, "sha256": hashes.get(str(f))})
            return manifest

        return write_checkpoint(out, tensors, config, finish_manifest, overwrite=overwrite, progress=progress)
    finally:
        if reader is not source:
            reader.close()


def _version() -> str:
    try:
        return importlib.metadata.version("ltx-jax")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
