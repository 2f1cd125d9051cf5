"""Run-time LoRA modules: `LoraLinear` wraps a `Linear`, `y = W x + b + sum_i s_i * B_i (A_i x)`.

The base weights stay untouched, so strengths can change between calls and several LoRAs share one base. For
stacked blocks (run with `nnx.scan`) the factors carry the layer axis too, `A [layers, R, in]`,
`B [layers, out, R]`, with zeros for layers a LoRA does not target; several LoRAs are concatenated along the
rank axis, and `strength [layers, R]` is a variable (`LoraStrength`), so changing strengths does not
recompile. Filling them from LoRA files is the transformer's `apply_lora_runtime`
(`ltx_jax/transformer/lora.py`).

Numerics differ from a merge by rounding only: ltx-core rounds `B*s @ A` to the LoRA dtype before adding
it to W; here the product is never formed, and `x @ A^T` runs in the activation dtype.
Counterpart: none in ltx-core (it only fuses, `loader/fuse_loras.py`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["LoraLinear", "LoraStrength", "set_lora_strengths"]


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
