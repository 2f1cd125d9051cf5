"""Mesh and sharding of the sampler's activations: guidance branches on `data`, video tokens on `context`.

No ltx_core counterpart (the official code runs one device, or Ulysses with a full replica per GPU).

One rules object for everything: `ShardingRules` maps dotted names to
`PartitionSpec`s by the first matching regex. Parameters use their module paths
(`transformer_blocks.attn1.to_q.weight`, as `restore` passes them); activations use the names below,
all under `activation.`, so that one `ShardingRules` places the weights at restore time and constrains the
sampler's tensors at trace time. Unmatched names are replicated.

Activation names (P*B = guidance passes x batch, the batched forward's leading axis):
  activation.video.latent / .x0 / .timesteps   `[P*B, Tv, C]` / `[P*B, Tv, 1]`
  activation.video.positions                    `[P*B, 3, Tv, 2]`
  activation.video.attention_mask               `[P*B, Tv, Tv]`
  activation.audio.*                            likewise with Ta (audio is short: only the branch axis)
  activation.{video,audio}.context              `[P*B, S, D]`
  activation.state                              the loop's `[B, ...]` state between steps
A mesh axis that does not divide its dimension is dropped for that tensor (replicated along it), so
3 guidance passes on a 4-way `data` axis still run, just without branch parallelism.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = ["MESH_AXES", "make_mesh", "inference_rules", "spec_for", "constrain", "place", "shard_state",
           "ShardingRules", "fit_spec"]

MESH_AXES = ("data", "context", "tensor")
P = PartitionSpec


def fit_spec(spec: PartitionSpec, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
    """`spec` fitted to an array of `shape`: cut or padded to its rank, and a mesh axis (or axis group) that
    does not divide its dimension dropped (that dimension replicated), so one rule covers weights and biases."""
    entries = list(spec)[: len(shape)] + [None] * max(0, len(shape) - len(spec))
    out = []
    for size, entry in zip(shape, entries, strict=True):
        axes = (entry,) if isinstance(entry, str) else tuple(entry or ())
        n = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
        out.append(entry if axes and size % n == 0 else None)
    return P(*out)


@dataclass(frozen=True)
class ShardingRules:
    """`[(regex, PartitionSpec), ...]` over dotted names: module paths of parameters
    (`transformer_blocks.attn1.to_q.weight`) and `activation.*` names. The first `re.search` match wins and
    its spec is fitted to the shape (`fit_spec`); unmatched names are replicated. Stacked parameters have
    the layer axis first, so their specs name it first (e.g. `P(None, "tensor")`)."""

    mesh: Mesh
    rules: Sequence[tuple[str, PartitionSpec]] = ()

    def spec(self, path: str, shape: tuple[int, ...]) -> PartitionSpec:
        for pattern, spec in self.rules:
            if re.search(pattern, path):
                return fit_spec(spec, shape, self.mesh)
        return P()

    def __call__(self, path: str, shape: tuple[int, ...]) -> NamedSharding:
        return NamedSharding(self.mesh, self.spec(path, shape))


def make_mesh(data: int = 1, context: int = 1, tensor: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A `('data', 'context', 'tensor')` mesh with Auto axes.

    Auto on purpose: jax 0.12's `jax.make_mesh` defaults to Explicit axes, under which attention over a
    sequence-sharded q/k fails at trace time; with Auto, GSPMD inserts the gathers the sharded attention
    needs and the result equals the single-device one.
    """
    devices = list(jax.devices() if devices is None else devices)
    n = data * context * tensor
    if n != len(devices):
        raise ValueError(f"mesh data={data} x context={context} x tensor={tensor} = {n} devices; "
                         f"{len(devices)} available")
    grid = np.asarray(devices, dtype=object).reshape(data, context, tensor)
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def _check_spec(name: str, spec: PartitionSpec, mesh: Mesh) -> None:
    used = [a for entry in spec for a in ((entry,) if isinstance(entry, str) else (entry or ()))]
    if len(used) != len(set(used)):
        raise ValueError(f"sharding rule for {name!r} uses a mesh axis twice: {spec}")
    unknown = sorted(set(used) - set(mesh.axis_names))
    if unknown:
        raise ValueError(f"sharding rule for {name!r} names axes {unknown} not in the mesh {mesh.axis_names}")


def inference_rules(mesh: Mesh, *, branches_on_data: bool = True, tokens_on_context: bool = True,
                    params: Sequence[tuple[str, PartitionSpec]] = ()) -> ShardingRules:
    """The default sampler layout: guidance branches (and batch) on `data`, video tokens on `context`.

    Args:
        mesh: from `make_mesh`.
        branches_on_data: put the batched forward's leading axis (passes x batch) on `data`.
        tokens_on_context: sequence-shard video tokens (not audio: about 126 tokens, replicated).
        params: parameter rules `(regex over module paths, spec)`, checked first; parameters no rule
            matches are replicated (weights fit one GPU in bf16 / FP8).

    Raises:
        ValueError: a rule uses a mesh axis twice or names an axis the mesh does not have.
    """
    d = "data" if branches_on_data else None
    c = "context" if tokens_on_context else None
    acts = [
        (r"^activation\.video\.(latent|x0|timesteps)$", P(d, c, None)),
        (r"^activation\.video\.positions$", P(d, None, c, None)),
        (r"^activation\.video\.attention_mask$", P(d, c, None)),
        (r"^activation\.audio\.(latent|x0|timesteps|positions|attention_mask)$", P(d)),
        (r"^activation\.(video|audio)\.context$", P(d)),
        (r"^activation\.state$", P(d)),
    ]
    rules = tuple((pattern, spec) for pattern, spec in (*params, *acts))
    for pattern, spec in rules:
        _check_spec(pattern, spec, mesh)
    return ShardingRules(mesh, rules)


def spec_for(rules: ShardingRules, name: str, shape: tuple[int, ...]) -> PartitionSpec:
    """The rule's spec for `name`, fitted to `shape` (see `fit_spec`)."""
    return rules.spec(name, shape)


def constrain(x: jax.Array | None, rules: ShardingRules | None, name: str) -> jax.Array | None:
    """`with_sharding_constraint` by activation name (identity without rules or for None)."""
    if rules is None or x is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(rules.mesh, spec_for(rules, name, x.shape)))


def place(tree, rules: ShardingRules | None, name: str = "activation.state"):
    """`device_put` every array leaf of `tree` with the spec of `name` (inputs of a sharded jit must live on
    the mesh, not committed to one device)."""
    if rules is None:
        return tree
    return jax.tree.map(lambda x: jax.device_put(x, NamedSharding(rules.mesh, spec_for(rules, name, np.shape(x)))),
                        tree)


def shard_state(state: nnx.State, rules: ShardingRules) -> nnx.State:
    """Move an already-loaded model state onto the mesh by its module paths (replicated where no rule matches).

    For large models restore straight into the sharding instead (`ltx_jax.checkpoint.restore(..., shardings=rules)`).
    """
    flat = []
    for path, var in nnx.to_flat_state(state):
        dotted = ".".join(str(p) for p in path)
        if dotted.startswith("activation."):
            raise ValueError(f"module path {dotted!r} collides with the activation namespace")
        value = var.get_value()
        sharding = NamedSharding(rules.mesh, spec_for(rules, dotted, np.shape(value)))
        flat.append((path, var.replace(jax.device_put(value, sharding))))
    return nnx.from_flat_state(flat)
