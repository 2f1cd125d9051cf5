"""Training layouts on a `('data', 'context', 'tensor')` mesh: batch on `data`, weights replicated or FSDP.

No ltx-trainer counterpart beyond its accelerate DDP / FSDP modes. Built on `ltx_jax.sharding` (one
`ShardingRules` for parameters and activations): the batch's leading axis goes on `data` (data parallel:
XLA turns the mean of the per-shard losses into an all-reduce of the gradients); with `fsdp=True` every
Linear weight is also split along its input features over `data` (stacked block weights `[L, out, in]`),
gathered per use inside the step, so per-device weight memory drops by the `data` size. With `context` > 1 the
video tokens are split over `context` (sequence parallelism, the step's attention runs the plan of
`ltx_jax.sharding.attention_plan`); audio tokens and text contexts stay replicated over it, as in the sampler.
Axes that do not divide a dimension are dropped for that tensor (replicated), as everywhere in `ltx_jax.sharding`.
"""

from __future__ import annotations

from jax.sharding import PartitionSpec as P

from ltx_jax.sharding import ShardingRules, inference_rules, make_mesh, place

__all__ = ["train_rules", "train_mesh", "place_batch"]

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


_BATCH_NAMES = {"video": "activation.video.latent", "video_positions": "activation.video.positions",
                "video_context": "activation.video.context", "audio_context": "activation.audio.context",
                "audio": "activation.audio.latent", "audio_positions": "activation.audio.positions"}


def place_batch(batch, rules: ShardingRules | None):
    """A `training.objective.Batch` on the mesh, each field by its activation rule (batch on `data`, video
    tokens and their positions on `context`)."""
    if rules is None:
        return batch
    return batch.replace(**{f: place(getattr(batch, f), rules, name) for f, name in _BATCH_NAMES.items()
                            if getattr(batch, f) is not None})
