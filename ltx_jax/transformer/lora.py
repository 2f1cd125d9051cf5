"""LoRAs applied to an `LTXModel` at run time, without merging: each targeted `Linear` is swapped for an
`ltx_jax.nn.lora.LoraLinear` that wraps it, without editing the transformer's code (the wrapper is
substituted in the module graph); factors of the stacked blocks are stacked per layer.

Numerics differ from a merge by rounding only: ltx-core rounds `B*s @ A` to the LoRA dtype before adding
it to W; here the product is never formed, and `x @ A^T` runs in the activation dtype.
Counterpart: none in ltx-core (it only fuses, `loader/fuse_loras.py`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.checkpoint.layout import TRANSFORMER_PREFIX
from ltx_jax.checkpoint.lora import LoraFile, check_targets, load_lora
from ltx_jax.checkpoint.source import TensorSpec
from ltx_jax.nn.lora import LoraLinear, LoraStrength, set_lora_strengths

__all__ = ["apply_lora_runtime", "set_lora_strengths", "LoraLinear", "LoraStrength"]

STACKED = "transformer_blocks"


def _navigate(model: nnx.Module, parts: list[str]):
    node = model
    for p in parts:
        node = node[int(p)] if p.isdigit() else getattr(node, p)
    return node


def _model_specs(model: nnx.Module) -> dict[str, TensorSpec]:
    """Official file keys (per layer) and shapes of the model's weights, for `check_targets`."""
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        key = ".".join(str(p) for p in path)
        if key.startswith(STACKED + "."):
            for i in range(var.shape[0]):
                out[f"{TRANSFORMER_PREFIX}{STACKED}.{i}.{key[len(STACKED) + 1:]}"] = TensorSpec(
                    tuple(var.shape[1:]), np.dtype(var.dtype))
        else:
            out[TRANSFORMER_PREFIX + key] = TensorSpec(tuple(var.shape), np.dtype(var.dtype))
    return out


def apply_lora_runtime(model: nnx.Module, loras: Sequence[tuple[LoraFile | str | os.PathLike, float]],
                       dtype=None) -> nnx.Module:
    """Wrap every Linear of `model` (an `LTXModel`) that a LoRA targets; returns the same model, modified.

    Args:
        model: the transformer, e.g. from `restore(..., "transformer")` or `load_transformer`.
        loras: (LoRA file or path, strength) pairs.
        dtype: dtype of the stored LoRA factors (default: the file's).

    Raises:
        LoraError: pairs that match no weight of the model, or shape mismatches.
    """
    files = [(lf if isinstance(lf, LoraFile) else load_lora(lf), float(s)) for lf, s in loras]
    specs = _model_specs(model)
    for lf, _ in files:
        check_targets(lf, specs, type(model).__name__)
    # {module path without the layer index: {layer or None: [(file index, pair path)]}}
    groups: dict[str, dict[int | None, list[tuple[int, str]]]] = {}
    for n, (lf, _) in enumerate(files):
        for p in lf.pairs:
            parts = p.split(".")
            if parts[0] == STACKED:
                groups.setdefault(".".join([STACKED] + parts[2:]), {}).setdefault(int(parts[1]), []).append((n, p))
            else:
                groups.setdefault(p, {}).setdefault(None, []).append((n, p))
    for module_path, by_layer in groups.items():
        parts = module_path.split(".")
        parent, leaf = _navigate(model, parts[:-1]), parts[-1]
        base = parent[int(leaf)] if leaf.isdigit() else getattr(parent, leaf)
        stacked = parts[0] == STACKED
        layers = base.weight.shape[0] if stacked else 1
        fan_out, fan_in = base.weight.shape[-2:]
        # Rank slots: each file gets its maximum rank over the layers it targets here.
        ranks = {}
        for entries in by_layer.values():
            for n, p in entries:
                ranks[n] = max(ranks.get(n, 0), files[n][0].ranks[p])
        offsets, total = {}, 0
        for n in sorted(ranks):
            offsets[n], total = total, total + ranks[n]
        first = files[min(ranks)][0]
        first_a = next(iter(first.pairs.values()))[0]
        store = np.dtype(dtype) if dtype is not None else first.source.specs()[first_a].dtype
        a = np.zeros((layers, total, fan_in), store)
        b = np.zeros((layers, fan_out, total), store)
        strength = np.zeros((layers, total), np.float32)
        slots = [""] * total
        for layer, entries in by_layer.items():
            i = layer if layer is not None else 0
            for n, p in entries:
                lf, s = files[n]
                ka, kb = lf.pairs[p]
                r, o = lf.ranks[p], offsets[n]
                a[i, o:o + r] = lf.source.read(ka).astype(store)
                b[i, :, o:o + r] = lf.source.read(kb).astype(store)
                strength[i, o:o + r] = s
        for n in ranks:
            slots[offsets[n]:offsets[n] + ranks[n]] = [files[n][0].name] * ranks[n]
        if not stacked:
            a, b, strength = a[0], b[0], strength[0]
        wrapped = LoraLinear(base, jnp.asarray(a), jnp.asarray(b), jnp.asarray(strength), slots)
        if leaf.isdigit():
            parent[int(leaf)] = wrapped
        else:
            setattr(parent, leaf, wrapped)
    return model
