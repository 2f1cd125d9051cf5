"""The q/k RMSNorm of a head-sharded attention under `jax.shard_map`: exact over the full width.

No ltx_core counterpart (ltx_core normalises the whole `H * Dh` width on one GPU). With the heads split over
the `tensor` axis each device holds `H * Dh / n` of the width; the norm's mean of squares is its local sum of
squares summed over `tensor` (one psum of `[B, T, 1]`), divided by the full width, as on one device.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from ltx_jax.parallel.plan import AttentionPlan

__all__ = ["head_sharded_rms_norm", "splits_heads"]


def splits_heads(plan: AttentionPlan | None, heads: int) -> bool:
    """Whether `plan` splits `heads` over its tensor axis (then the q/k norm goes through the psum)."""
    return plan is not None and plan.head_split(heads) > 1


def head_sharded_rms_norm(x: jax.Array, weight: jax.Array, eps: float, plan: AttentionPlan, *,
                          video_tokens: bool) -> jax.Array:
    """`x / sqrt(mean(x^2 over the full width) + eps) * weight` with the width split over `plan.head_axis`.

    Args:
        x: `[B, T, H * Dh]`, the width (heads-major) split over the tensor axis.
        weight: `[H * Dh]`, split the same way.
        eps: the norm's epsilon.
        plan: the forward's plan (its mesh and axis names).
        video_tokens: the tokens are video tokens (sequence-sharded over `context` when they divide).

    Returns:
        `[B, T, H * Dh]` in x's dtype (float32 inside), laid out like x.
    """
    b, t, width = x.shape
    ba = plan.batch_axis if b % plan.axis_size(plan.batch_axis) == 0 else None
    ta = plan.context_axis if video_tokens and plan.context > 1 and t % plan.context == 0 else None
    spec = P(ba, ta, plan.head_axis)

    def body(x, w):
        x32 = x.astype(jnp.float32)
        sum_sq = jax.lax.psum(jnp.sum(x32 * x32, axis=-1, keepdims=True), plan.head_axis)  # [B, T, 1]
        y = x32 * jax.lax.rsqrt(sum_sq / width + eps) * w.astype(jnp.float32)
        return y.astype(x.dtype)

    return jax.shard_map(body, mesh=plan.mesh, in_specs=(spec, P(plan.head_axis)), out_specs=spec,
                         check_vma=False)(x, weight)
