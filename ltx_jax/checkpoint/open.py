"""`open_source`: the right `Source` for a path (official file, ltx-jax checkpoint folder, diffusers folder) or
an in-memory mapping. The one place that knows every source kind, so the kinds never import each other.

Counterpart: ltx_core `loader/sft_loader.py` (which reads only official safetensors files).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ltx_jax.checkpoint.diffusers import is_diffusers_dir, open_diffusers
from ltx_jax.checkpoint.folder import CheckpointError, is_checkpoint_dir, open_checkpoint
from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
from ltx_jax.checkpoint.source import SafetensorsSource, Source, TensorsSource

__all__ = ["open_source", "SourceArg"]

SourceArg = str | os.PathLike | Source | SafetensorsFile | Mapping[str, np.ndarray]


def open_source(path: SourceArg) -> Source:
    """An official `.safetensors` file, our converted checkpoint folder, a diffusers-format folder, an open
    `SafetensorsFile`, or a {file key: array} mapping, as a `Source` (a `Source` is returned as is).

    Raises:
        SafetensorsError / CheckpointError / DiffusersError: the path is none of these, or malformed.
    """
    if isinstance(path, Source):
        return path
    if isinstance(path, SafetensorsFile):
        return SafetensorsSource(path)
    if isinstance(path, Mapping):
        return TensorsSource(path)
    p = Path(path)
    if p.is_dir():
        if is_checkpoint_dir(p):
            return open_checkpoint(p)
        if is_diffusers_dir(p):
            return open_diffusers(p)
        raise CheckpointError(f"{p}: a folder that is neither an ltx-jax checkpoint (manifest.json + COMPLETE) nor a "
                              "diffusers-format LTX-2 folder (model_index.json or transformer/config.json)")
    return SafetensorsSource(p)
