"""A fully fine-tuned transformer written back as an official single-file checkpoint.

Counterpart: the official checkpoints themselves (one `.safetensors` with `model.diffusion_model.*`, the VAEs,
the connectors and the config in `__metadata__`), which ltx-core's `ModelLedger` and our `restore` both load.

The transformer's tensors come from the trained model, mapped to file keys by the one layout rule
(`checkpoint.layout.file_keys`: stacked block parameters are split back into `transformer_blocks.<i>.*`);
every other tensor (VAE, audio VAE, vocoder, connectors) and the metadata are copied from the base checkpoint
unchanged. Written tensor by tensor with the atomic streaming writer (nothing half-written on failure).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from ltx_jax.checkpoint.layout import LAYOUT, file_keys
from ltx_jax.checkpoint.open import open_source
from ltx_jax.checkpoint.safetensors_file import save_file

__all__ = ["save_full_checkpoint"]

_DTYPES = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(jax.numpy.bfloat16)}


def save_full_checkpoint(model: nnx.Module, base: str | os.PathLike, out: str | os.PathLike, *,
                         dtype: str = "bfloat16") -> Path:
    """Write `model` (an `LTXModel`, no LoRA adapters, no FP8 weights) with the rest of `base` to `out`.

    Args:
        dtype: storage dtype of the transformer's floating tensors ("bfloat16", as the official files, or
            "float32").

    Raises:
        ValueError: a dtype not offered, or a model whose parameters do not cover the base file's transformer keys.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"export dtype {dtype!r}; expected one of {sorted(_DTYPES)}")
    component = LAYOUT["transformer"]
    _, state = nnx.split(model)
    flat = dict(nnx.to_flat_state(state))
    tensors: dict[str, object] = {}
    for path, (keys, _, stacked) in file_keys(component, state).items():
        value = flat[path].get_value()
        if not isinstance(value, jax.Array):
            raise ValueError(f"{'.'.join(map(str, path))}: holds {type(value).__name__}, not an array (export a "
                             "model without LoRA adapters or FP8 weights)")
        for i, key in enumerate(keys):
            tensors[key] = (lambda v=value, i=i, s=stacked: np.asarray(jax.device_get(v[i] if s else v)))
    source = open_source(base)
    try:
        specs = source.specs()
        mine = {k for k in specs if component.owns_key(k)}
        if mine != set(tensors):
            missing, extra = sorted(mine - set(tensors)), sorted(set(tensors) - mine)
            raise ValueError(f"{source.name}: the model's transformer keys differ from the file's "
                             f"(missing {missing[:4]}, extra {extra[:4]})")
        target = _DTYPES[dtype]
        writers, shapes = {}, {}
        for key, spec in specs.items():
            if key in tensors:
                writers[key] = lambda f=tensors[key]: f().astype(target)
                shapes[key] = (spec.shape, target)
            else:
                writers[key] = lambda key=key: source.read(key)
                shapes[key] = (spec.shape, spec.dtype)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file(writers, out, dict(source.metadata), shapes=shapes)
    finally:
        source.close()
    return out
