"""`ltx-jax export`: an ltx-jax checkpoint (or any source) back to the official single-file layout.

Keys, dtypes, tensor order and the safetensors `__metadata__` are those the source recorded, so
official -> ltx-jax -> official is bit-identical per tensor (with `--dtype keep`), and the file loads in
ltx-core's `ModelLedger` like the original. Written tensor by tensor with the atomic streaming writer,
so memory stays at one tensor.

Counterpart: the official files themselves (`safetensors.torch.save_file` of the state dicts).
"""

from __future__ import annotations

import os
from pathlib import Path

from ltx_jax.checkpoint.safetensors_file import save_file
from ltx_jax.checkpoint.open import open_source
from ltx_jax.checkpoint.source import Source

__all__ = ["export"]


def export(src: str | os.PathLike | Source, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write `src` (an ltx-jax checkpoint, a diffusers folder or an official file) as one official
    `.safetensors` file, with the source's metadata.

    Raises:
        FileExistsError: `out` exists and `overwrite` is False.
        CheckpointError: `src` is an incomplete checkpoint.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (pass overwrite=True / --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    source = open_source(src)
    try:
        specs = source.specs()
        save_file({k: (lambda k=k: source.read(k)) for k in specs}, out, dict(source.metadata),
                  shapes={k: (s.shape, s.dtype) for k, s in specs.items()})
    finally:
        source.close()
    return out
