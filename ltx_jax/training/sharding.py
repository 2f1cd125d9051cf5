"""Training layouts on a `('data', 'context', 'tensor')` mesh: batch on `data`, weights replicated or FSDP.

No ltx-trainer counterpart beyond its accelerate DDP / FSDP modes. Built on `ltx_jax.sharding` (one
`ShardingRules` for parameters and activations): the batch's leading axis goes on `data` (data parallel:
XLA turns the mean of the per-shard losses into an all-reduce of the gradients); with `fsdp=True` every
Linear weight is also split along its input features over `data` (stacked block weights `[L, out, in]`),
gathered per use inside the step, so per-device weight memory drops by the `data` size. Axes that do not
divide a dimension are dropped for that tensor (replicated), as everywhere in `ltx_jax.sharding`.
"""

from __future__ import annotations

from jax.sharding import PartitionSpec as P

from ltx_jax.sharding import ShardingRules, inference_rules, make_mesh

__all__ = ["train_rules", "train_mesh"]

FSDP_PARAMS = (
    (r"^transformer_blocks\..*\.(weight|lora_A)$", P(None, None, "data")),
    (r"^transformer_blocks\..*\.lora_B$", P(None, "data", None)),
    (r"\.weight$", P(None, "data")),
)


def train_mesh(data: int = 1, context: int = 1, tensor: int = 1):
    return make_mesh(data=data, context=context, tensor=tensor)


def train_rules(mesh, *, fsdp: bool = False) -> ShardingRules:
    """Batch (`activation.state`) on `data`; weights FSDP over `data` when `fsdp`, else replicated."""
    return inference_rules(mesh, tokens_on_context=mesh.shape["context"] > 1, params=FSDP_PARAMS if fsdp else ())
