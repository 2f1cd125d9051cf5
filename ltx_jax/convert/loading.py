"""Fill an NNX module's state from official tensors, strictly in both directions.

Module attribute paths mirror the official state-dict keys (`transformer_blocks.attn1.to_q.weight`,
`to_out.0.bias`, ...), so the mapping is a join of the path with dots plus the few structural rules
below, written once here:

1. **Stacking.** A module path under a stacked prefix (e.g. `transformer_blocks`, whose blocks are
   created with `nnx.vmap` and run with `nnx.scan`) holds an array with a leading layer axis; its
   layer `i` is the file key with `<prefix>.<i>.` in place of `<prefix>.`.
2. **Names NNX cannot hold.** Official buffer names with a hyphen (`mean-of-means`) are module
   attributes with an underscore (`mean_of_means`).
3. **File prefixes.** A component's keys sit under a prefix in the single file
   (`model.diffusion_model.`, `vae.decoder.`, ...), given by the caller.

Every module variable must be filled from the file and every file key under the prefix must be
consumed (or explicitly ignored): anything else raises `LoadError` listing the keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["LoadError", "module_keys", "load_state", "load_module"]


class LoadError(ValueError):
    """Checkpoint keys and module parameters do not match (missing, unexpected, wrong shape)."""


def _to_official(name: str) -> str:
    return name.replace("_of_", "-of-") if re.search(r"per_channel_statistics\.\w+_of_\w+$", name) else name


def module_keys(state: nnx.State, stacked: Sequence[str] = ()) -> dict[str, tuple[tuple, tuple[int, ...], int | None]]:
    """{official key (with `{i}` for a stacked layer index): (state path, shape, stacked axis length)}."""
    out = {}
    for path, var in nnx.to_flat_state(state):
        joined = ".".join(str(p) for p in path)
        key, layers = _to_official(joined), None
        for prefix in stacked:
            if key.startswith(prefix + "."):
                key = prefix + ".{i}." + key[len(prefix) + 1:]
                layers = var.shape[0]
                break
        out[key] = (path, tuple(var.shape), layers)
    return out


def load_state(abstract: nnx.Module | nnx.State, tensors: Mapping[str, np.ndarray], *, prefix: str = "",
               stacked: Sequence[str] = (), ignore: Callable[[str], bool] | None = None,
               dtype: jnp.dtype | None = None, source: str = "checkpoint",
               transform: Callable[[str, np.ndarray], np.ndarray] | None = None) -> nnx.State:
    """Build the filled state of `abstract` (a module or state, possibly from `nnx.eval_shape`).

    Args:
        abstract: the module (or its state) whose variables are to be filled.
        tensors: file key -> array (e.g. a `SafetensorsFile`); only keys starting with `prefix` count.
        prefix: the component's prefix in the file.
        stacked: module path prefixes whose variables carry a leading layer axis (rule 1).
        ignore: file keys (with prefix) that belong to another component and are not an error.
        dtype: cast every array to this dtype; default: the dtype of the abstract variable.
        source: the file name, for error messages.
        transform: optional (file key, array) -> array applied after reading (e.g. dequantization).

    Raises:
        LoadError: missing keys, unexpected keys or a shape mismatch, each named.
    """
    state = nnx.state(abstract) if isinstance(abstract, nnx.Module) else abstract
    expected = module_keys(state, stacked)
    available = {k[len(prefix):]: k for k in tensors if k.startswith(prefix)}
    if ignore is not None:
        available = {k: full for k, full in available.items() if not ignore(full)}
    flat = dict(nnx.to_flat_state(state))
    consumed, missing, wrong = set(), [], []
    for key, (path, shape, layers) in expected.items():
        names = [key.format(i=i) for i in range(layers)] if layers is not None else [key]
        absent = [n for n in names if n not in available]
        if absent:
            missing += [prefix + n for n in absent]
            consumed.update(n for n in names if n in available)
            continue
        arrays = []
        for n in names:
            a = tensors[available[n]]
            if transform is not None:
                a = transform(available[n], a)
            arrays.append(a)
            consumed.add(n)
        want = shape[1:] if layers is not None else shape
        bad = [(n, tuple(a.shape)) for n, a in zip(names, arrays) if tuple(a.shape) != want]
        if bad:
            wrong += [f"{prefix}{n}: file {s}, model {want}" for n, s in bad]
            continue
        var = flat[path]
        target = dtype or var.dtype
        value = np.stack(arrays) if layers is not None else arrays[0]
        flat[path] = var.replace(jnp.asarray(np.asarray(value), dtype=target))
    unexpected = sorted(prefix + k for k in available.keys() - consumed)
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                parts.append(f"{len(items)} {label}: " + ", ".join(items[:8]) + (" ..." if len(items) > 8 else ""))
        raise LoadError(f"{source}: keys do not match the model (prefix {prefix!r}); " + "; ".join(parts))
    return nnx.from_flat_state(list(flat.items()))


def load_module(build: Callable[[], nnx.Module], tensors: Mapping[str, np.ndarray], **kwargs) -> nnx.Module:
    """Construct `build()` abstractly (no allocation), then fill it from `tensors` (see `load_state`)."""
    abstract = nnx.eval_shape(build)
    graphdef, _ = nnx.split(abstract)
    return nnx.merge(graphdef, load_state(abstract, tensors, **kwargs))

