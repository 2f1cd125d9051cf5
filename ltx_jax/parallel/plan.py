"""Which sequence-parallel attention strategy runs, on which mesh axes: the `AttentionPlan`.

No ltx_core counterpart (ltx-pipelines' multi-GPU mode is Ulysses with a full weight replica per GPU, over a
custom CUDA-IPC all-to-all). The plan is built once per forward from the sharding rules (mesh + requested
strategy) and travels to every attention call as a static value; modules never read flags or globals.

Strategies (`--attention`):
  gspmd    the single-device kernel under GSPMD (XLA inserts the gathers it needs);
  ulysses  all-to-all heads <-> sequence around the local kernel (needs heads % context == 0);
  ring     K/V blocks go round the `context` axis by ppermute, online-softmax merge by log-sum-exp;
  hybrid   `context` = ring x ulysses: Ulysses inside groups of `ulysses` devices, ring between groups;
  auto     ulysses when the heads split, else the largest hybrid that splits them, else ring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jax.sharding import AxisType, Mesh

__all__ = ["AttentionPlan", "STRATEGIES", "SequenceSplit"]

STRATEGIES = ("auto", "gspmd", "ulysses", "ring", "hybrid")


@dataclass(frozen=True)
class SequenceSplit:
    """A resolved sequence-parallel layout: `ulysses` x `ring` = the context size (ring-major token order)."""

    ulysses: int
    ring: int

    @property
    def name(self) -> str:
        if self.ring == 1:
            return "ulysses"
        return "ring" if self.ulysses == 1 else "hybrid"


@dataclass(frozen=True)
class AttentionPlan:
    """Mesh and strategy of the attention calls of one forward.

    Attributes:
        mesh: the `('data', 'context', 'tensor')` mesh the activations live on.
        strategy: one of `STRATEGIES`.
        ulysses: hybrid only: the Ulysses group size (a divisor of the context size); 0 picks the largest
            divisor below the context size that splits the heads.
        batch_axis, context_axis, head_axis: mesh axis names (a missing or size-1 axis is simply not used).
    """

    mesh: Mesh
    strategy: str = "auto"
    ulysses: int = 0
    batch_axis: str = "data"
    context_axis: str = "context"
    head_axis: str = "tensor"

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"attention strategy {self.strategy!r}; expected one of {STRATEGIES}")
        if self.context_axis not in self.mesh.axis_names:
            raise ValueError(f"mesh {self.mesh.axis_names} has no {self.context_axis!r} axis")
        n = self.context
        if self.ulysses and (self.strategy != "hybrid" or n % self.ulysses):
            raise ValueError(f"ulysses={self.ulysses} is a hybrid setting and must divide the context size {n}")

    def axis_size(self, name: str) -> int:
        return int(self.mesh.shape[name]) if name in self.mesh.axis_names else 1

    @property
    def context(self) -> int:
        return self.axis_size(self.context_axis)

    @property
    def sequence_parallel(self) -> bool:
        """False: every call runs the single-device kernel under GSPMD."""
        return self.strategy != "gspmd" and self.context > 1

    def head_split(self, heads: int) -> int:
        """Heads per tensor shard's share: the tensor axis size when it divides `heads`, else 1."""
        t = self.axis_size(self.head_axis)
        return t if heads % t == 0 else 1

    def split(self, heads: int) -> SequenceSplit:
        """The Ulysses x ring factorisation of `context` for a self-attention with `heads` heads.

        Raises:
            ValueError: ulysses (or a hybrid with an explicit group size) whose head count, after the
                tensor split, is not divisible by its Ulysses size.
        """
        n, local_heads = self.context, heads // self.head_split(heads)
        if self.strategy == "ring":
            return SequenceSplit(1, n)
        if self.strategy == "ulysses":
            if local_heads % n:
                raise ValueError(f"ulysses attention needs the head count to be divisible by the context size: "
                                 f"{local_heads} heads per tensor shard, context={n}; use --attention ring or "
                                 f"hybrid, or a context size dividing {local_heads}")
            return SequenceSplit(n, 1)
        if self.strategy == "hybrid" and self.ulysses:
            if local_heads % self.ulysses:
                raise ValueError(f"hybrid attention with a Ulysses group of {self.ulysses} needs the head count "
                                 f"divisible by it; got {local_heads} heads per tensor shard")
            return SequenceSplit(self.ulysses, n // self.ulysses)
        divisors = [u for u in range(n, 0, -1) if n % u == 0 and local_heads % u == 0]
        if self.strategy == "hybrid":  # largest proper split (both factors > 1 when possible)
            proper = [u for u in divisors if 1 < u < n]
            u = proper[0] if proper else divisors[0]
            return SequenceSplit(u, n // u)
        return SequenceSplit(divisors[0], n // divisors[0])  # auto: as much Ulysses as the heads allow

    def split_mesh(self, split: SequenceSplit) -> Mesh:
        """The same devices with `context` factored as (`ring`, `ulysses`), ring-major, so that the token
        order of `P(data, ('ring', 'ulysses'))` equals that of `P(data, 'context')` and no data moves."""
        names = list(self.mesh.axis_names)
        i = names.index(self.context_axis)
        shape = list(self.mesh.devices.shape)
        devices = np.asarray(self.mesh.devices).reshape(*shape[:i], split.ring, split.ulysses, *shape[i + 1:])
        new_names = (*names[:i], "ring", "ulysses", *names[i + 1:])
        return Mesh(devices, new_names, axis_types=(AxisType.Auto,) * len(new_names))
