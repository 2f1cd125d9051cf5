"""Mesh and sharding of the sampler's activations: guidance branches on `data`, video tokens on `context`.

No ltx_core counterpart (the official code runs one device, or Ulysses with a full replica per GPU).

One rules object for everything: `ltx_jax.convert.restore.ShardingRules` maps dotted names to
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
  activation.state.{video,audio}                the loop's `[B, T, C]` latents between steps (video stays on
                                                `data` x `context`: never regathered between steps)
A mesh axis that does not divide its dimension is dropped for that tensor (replicated along it), so
3 guidance passes on a 4-way `data` axis still run, just without branch parallelism.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from ltx_jax.convert.restore import ShardingRules
from ltx_jax.parallel.plan import STRATEGIES, AttentionPlan

__all__ = ["MESH_AXES", "make_mesh", "parse_mesh", "inference_rules", "weight_rules", "attention_plan", "spec_for",
           "constrain", "place", "shard_state", "ShardingRules", "InferenceRules", "WEIGHT_PRESETS"]

MESH_AXES = ("data", "context", "tensor")
P = PartitionSpec


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


def parse_mesh(text: str | None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """`"data=2,context=4"` (any subset of the axes; the rest 1) -> mesh. None or "": every visible device on
    `context` (sequence parallelism is what makes one video faster)."""
    devices = list(jax.devices() if devices is None else devices)
    if not text:
        return make_mesh(context=len(devices), devices=devices)
    sizes = {}
    for part in text.split(","):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or name not in MESH_AXES or name in sizes or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"--mesh {text!r}: expected comma-separated AXIS=N with AXIS in {MESH_AXES}, "
                             f"each at most once, N >= 1")
        sizes[name] = int(value)
    return make_mesh(**sizes, devices=devices)


@dataclass(frozen=True)
class InferenceRules(ShardingRules):
    """`ShardingRules` plus the attention strategy of the run (`ltx_jax.parallel`) and the weight preset."""

    attention: str = "auto"
    ulysses: int = 0
    weights: str = "replicated"


def attention_plan(rules: ShardingRules | None, requested: str = "auto") -> AttentionPlan | None:
    """The attention plan of a forward under `rules` (None: no mesh, single-device kernels).

    `requested` (the Runtime's attention setting) wins when it names a strategy; otherwise the rules'
    strategy (`inference_rules(attention=...)`) is used. Kernel names ("xla", "cudnn") are not strategies.
    """
    if rules is None or "context" not in rules.mesh.axis_names:
        return None
    strategy = requested if requested in STRATEGIES and requested != "auto" else getattr(rules, "attention", "auto")
    return AttentionPlan(rules.mesh, strategy, getattr(rules, "ulysses", 0) if strategy == "hybrid" else 0)


WEIGHT_PRESETS = ("replicated", "fsdp", "tensor")
_ATTN = r"(attn1|attn2|audio_attn1|audio_attn2|audio_to_video_attn|video_to_audio_attn)"


def weight_rules(preset: str) -> tuple[tuple[str, PartitionSpec], ...]:
    """Parameter rules of a weight preset (stacked block weights have the layer axis first).

    replicated: none (every device holds everything: the official multi-GPU layout).
    fsdp: every block parameter split on its first non-layer axis over `data` x `context`; GSPMD gathers
        each layer's slice inside the layer scan.
    tensor: Megatron-style heads and MLP on `tensor`: q/k/v/gate/MLP-in split by output (heads), the
        output projections by input; the q/k RMSNorm weights split with the heads (the norm's mean of
        squares becomes a sum over `tensor`, exact).
    """
    if preset == "replicated":
        return ()
    if preset == "fsdp":
        return ((r"^transformer_blocks\.", P(None, ("data", "context"))),)
    if preset == "tensor":
        blocks = r"^transformer_blocks\."
        return (
            (blocks + _ATTN + r"\.(to_q|to_k|to_v|to_gate_logits)\.(weight|bias)$", P(None, "tensor", None)),
            (blocks + _ATTN + r"\.(q_norm|k_norm)\.weight$", P(None, "tensor")),
            (blocks + _ATTN + r"\.to_out\.0\.weight$", P(None, None, "tensor")),
            (blocks + r"(ff|audio_ff)\.net\.0\.proj\.(weight|bias)$", P(None, "tensor", None)),
            (blocks + r"(ff|audio_ff)\.net\.2\.weight$", P(None, None, "tensor")),
        )
    raise ValueError(f"weight preset {preset!r}; expected one of {WEIGHT_PRESETS}")


def _check_spec(name: str, spec: PartitionSpec, mesh: Mesh) -> None:
    used = [a for entry in spec for a in ((entry,) if isinstance(entry, str) else (entry or ()))]
    if len(used) != len(set(used)):
        raise ValueError(f"sharding rule for {name!r} uses a mesh axis twice: {spec}")
    unknown = sorted(set(used) - set(mesh.axis_names))
    if unknown:
        raise ValueError(f"sharding rule for {name!r} names axes {unknown} not in the mesh {mesh.axis_names}")


def inference_rules(mesh: Mesh, *, branches_on_data: bool = True, tokens_on_context: bool = True,
                    params: Sequence[tuple[str, PartitionSpec]] = (), weights: str = "replicated",
                    attention: str = "auto", ulysses: int = 0) -> InferenceRules:
    """The default sampler layout: guidance branches (and batch) on `data`, video tokens on `context`.

    Args:
        mesh: from `make_mesh`.
        branches_on_data: put the batched forward's leading axis (passes x batch) on `data`.
        tokens_on_context: sequence-shard video tokens (not audio: about 126 tokens, replicated).
        params: parameter rules `(regex over module paths, spec)`, checked first; parameters no rule
            matches are replicated (weights fit one GPU in bf16 / FP8).
        weights: a weight preset (`weight_rules`), applied after `params`.
        attention: the sequence-parallel attention strategy (`ltx_jax.parallel.STRATEGIES`).
        ulysses: hybrid only: the Ulysses group size (0: automatic).

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
        (r"^activation\.state(\.video)?$", P(d, c, None)),
        (r"^activation\.state\.audio$", P(d)),
    ]
    rules = tuple((pattern, spec) for pattern, spec in (*params, *weight_rules(weights), *acts))
    for pattern, spec in rules:
        _check_spec(pattern, spec, mesh)
    if attention not in STRATEGIES:
        raise ValueError(f"attention strategy {attention!r}; expected one of {STRATEGIES}")
    AttentionPlan(mesh, attention, ulysses)  # validates the hybrid group size now, not at the first forward
    return InferenceRules(mesh, rules, attention=attention, ulysses=ulysses, weights=weights)


def spec_for(rules: ShardingRules, name: str, shape: tuple[int, ...]) -> PartitionSpec:
    """The rule's spec for `name`, cut to the array's rank, with axes that do not divide their dim dropped."""
    spec = rules(name, shape).spec
    entries = list(spec)[: len(shape)] + [None] * max(0, len(shape) - len(spec))
    out = []
    for size, entry in zip(shape, entries, strict=True):
        axes = (entry,) if isinstance(entry, str) else tuple(entry or ())
        n = int(np.prod([rules.mesh.shape[a] for a in axes])) if axes else 1
        out.append(entry if axes and size % n == 0 else None)
    return P(*out)


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

    For large models restore straight into the sharding instead (`convert.restore.restore(..., shardings=rules)`).
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
