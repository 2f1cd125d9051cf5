"""LoRAs applied at run time, without merging: `y = W x + b + sum_i s_i * B_i (A_i x)`.

`apply_lora_runtime(model, loras)` swaps each targeted `Linear` of an `LTXModel` for a `LoraLinear` that
wraps it (the base weights stay untouched, so strengths can change between calls and several LoRAs share
one base), without editing the transformer's code: the wrapper is substituted in the module graph. For the
stacked blocks (`transformer_blocks`, run with `nnx.scan`) the LoRA factors are stacked too,
`A [layers, R, in]`, `B [layers, out, R]`, with zeros for layers a LoRA does not target; several LoRAs
are concatenated along the rank axis, and `strength [layers, R]` is a variable (`LoraStrength`), so
changing strengths does not recompile.

Numerics differ from a merge by rounding only: ltx-core rounds `B*s @ A` to the LoRA dtype before adding
it to W; here the product is never formed, and `x @ A^T` runs in the activation dtype.
Counterpart: none in ltx-core (it only fuses, `loader/fuse_loras.py`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.convert.lora import LoraFile, check_targets, load_lora
from ltx_jax.convert.schema import TRANSFORMER_PREFIX
from ltx_jax.convert.source import TensorSpec

__all__ = ["LoraLinear", "LoraStrength", "apply_lora_runtime", "set_lora_strengths"]

STACKED = "transformer_blocks"


class LoraStrength(nnx.Variable):
    """Per-rank-slot strengths of a `LoraLinear` (not a trainable parameter)."""


class LoraLinear(nnx.Module):
    """A `Linear` plus low-rank terms: `base(x) + ((x @ A^T) * strength) @ B^T`.

    Shapes (one layer): A `[R, in]`, B `[out, R]`, strength `[R]`; stacked blocks add a leading layer axis.
    """

    def __init__(self, base: nnx.Module, a: jax.Array, b: jax.Array, strength: jax.Array, slots: list[str]):
        self.base = base
        self.lora_A = nnx.Param(a)
        self.lora_B = nnx.Param(b)
        self.strength = LoraStrength(strength)
        self.slots = tuple(slots)  # which LoRA file owns each rank slot (static, for set_lora_strengths)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.base(x)
        a, b = self.lora_A[...].astype(x.dtype), self.lora_B[...].astype(x.dtype)
        # [..., in] x [R, in] -> [..., R]
        h = jax.lax.dot_general(x, a, (((x.ndim - 1,), (1,)), ((), ())))
        h = h * self.strength[...].astype(x.dtype)
        # [..., R] x [out, R] -> [..., out]
        return y + jax.lax.dot_general(h, b, (((h.ndim - 1,), (1,)), ((), ())))


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


def set_lora_strengths(model: nnx.Module, strengths: dict[str, float]) -> None:
    """Set the strength of each named LoRA file (as given to `apply_lora_runtime`) in every wrapped layer.

    Only rank slots a file actually uses in a layer are non-zero there, so untargeted layers stay unaffected.
    """
    for _, node in nnx.iter_graph(model):
        if isinstance(node, LoraLinear):
            value = np.array(node.strength[...])
            used = np.array(node.lora_A[...]).any(axis=-1)  # [..., R]: slot filled in that layer
            for j, name in enumerate(node.slots):
                if name in strengths:
                    value[..., j] = np.where(used[..., j], strengths[name], 0.0)
            node.strength[...] = jnp.asarray(value)
