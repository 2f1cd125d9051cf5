"""Synthetic checkpoints in the official file layout, written from `schema` with seeded random values.

Used by the demo (a bundled tiny checkpoint the project builds itself, no torch involved) and by
benchmarks that need a large file with the real key set. Values are random and only meant to be
well-scaled (weights ~ N(0, 1/fan_in)); they do not come from any trained model.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ltx_jax.configs import LTXConfig, UpsamplerConfig
from ltx_jax.checkpoint import schema as S
from ltx_jax.checkpoint.safetensors_file import save_file


def _tensor(key: str, shape: tuple[int, ...], seed: int, dtype: np.dtype) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    if key.endswith("std-of-means"):
        value = 0.5 + rng.random(shape)
    elif key.endswith("blur_down.kernel"):
        k = np.array([1.0, 4.0, 6.0, 4.0, 1.0])
        value = (np.outer(k, k) / 256.0).reshape(shape)
    elif key.endswith("timestep_scale_multiplier"):
        value = np.full(shape, 1000.0)
    elif len(shape) >= 2 and not key.endswith(("table", "registers")):
        fan_in = int(np.prod(shape[1:]))
        value = rng.standard_normal(shape) / np.sqrt(fan_in)
    else:
        value = 0.1 * rng.standard_normal(shape)
    return value.astype(dtype)


def write_schema_file(schema: Mapping[str, tuple[int, ...]], path: str | Path, metadata: Mapping[str, str],
                      seed: int = 0, dtype: np.dtype | str = np.float32) -> Path:
    """Write every key of `schema`, tensor by tensor (memory bounded by the largest tensor)."""
    dtype = np.dtype(dtype)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(schema)
    save_file({k: (lambda k=k: _tensor(k, schema[k], seed, dtype)) for k in keys}, path, metadata,
              shapes={k: (schema[k], dtype) for k in keys})
    return path


def write_checkpoint(config: LTXConfig, path: str | Path, seed: int = 0, dtype: np.dtype | str = np.float32) -> Path:
    """A single-file checkpoint with transformer, connectors and video VAE, config in the metadata."""
    schema = {k: s for part in S.checkpoint_schema(config).values() for k, s in part.items()}
    return write_schema_file(schema, path, config.to_metadata(), seed, dtype)


def write_upsampler(config: UpsamplerConfig, path: str | Path, seed: int = 0,
                    dtype: np.dtype | str = np.float32) -> Path:
    return write_schema_file(S.upsampler_schema(config), path, {"config": json.dumps(config.to_dict())}, seed, dtype)
