"""Checkpoint I/O: safetensors read/write, sources (official file, diffusers folder, our Orbax folder), the
official layout written once, the one restore path, LoRA merge, conversion, export and inspect.

Layer: above configs / nn / types / sharding, below the models. Nothing here imports a model package: each
model package binds its constructor to its layout entry (`loader.bind`) when imported.

Modules: `safetensors_file` (torch-free reader / writer), `source` (the `Source` interface, region reads,
FP8 dequantization), `folder` (our Orbax checkpoint folder), `diffusers` (diffusers folders under official
keys), `open` (`open_source`: the kind for a path), `layout` (prefixes, key views, stacking rule, strict
matcher: `LAYOUT`), `schema` / `tae_layout` (every key and shape a config implies), `loader` (`restore`), `lora`,
`inspect`, `converter`, `exporter`, `synthetic` (seeded files in the official layout).

The names below are imported on first use, so `import ltx_jax.checkpoint` stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "LoadError": "errors",
    "Source": "source", "TensorSpec": "source", "SafetensorsSource": "source", "TensorsSource": "source",
    "SafetensorsFile": "safetensors_file", "SafetensorsError": "safetensors_file", "save_file": "safetensors_file",
    "open_source": "open",
    "CheckpointError": "folder", "open_checkpoint": "folder", "write_checkpoint": "folder",
    "DiffusersError": "diffusers",
    "LAYOUT": "layout", "Component": "layout", "match": "layout", "file_group": "layout",
    "restore": "loader", "restore_state": "loader", "bind": "loader",
    "LoraError": "lora", "LoraMerged": "lora", "load_lora": "lora",
    "inspect_file": "inspect", "format_report": "inspect",
    "convert": "converter", "ConvertError": "converter", "COMPONENT_GROUPS": "converter",
    "export": "exporter",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
