"""The attention entry point of the transformer: picks the strategy of one call by its role.

No ltx_core counterpart. Roles and what runs under a sequence-parallel plan (video tokens on `context`,
audio tokens replicated over it, as the sampler lays them out):
  video_self            the plan's strategy (Ulysses / ring / hybrid);
  video_text, a2v       sharded video queries, replicated text / audio keys: no communication;
  v2a                   replicated audio queries, video keys sharded: LSE merge (pmax + psum);
  audio_self, audio_text, text   replicated: the single-device kernel (GSPMD).
Without a plan, or with `gspmd`, every call is the single-device kernel and GSPMD partitions it.
"""

from __future__ import annotations

import jax

from ltx_jax.nn.attention import dot_product_attention
from ltx_jax.parallel.plan import AttentionPlan
from ltx_jax.parallel.strategies import local_kv_attention, sequence_attention, sharded_kv_attention

__all__ = ["attend", "ROLES"]

ROLES = ("video_self", "video_text", "audio_self", "audio_text", "a2v", "v2a", "text")


def attend(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array | None, plan: AttentionPlan | None,
           role: str, implementation: str = "auto") -> jax.Array:
    """softmax(q k^T / sqrt(Dh) + bias) v for `[B, T, H, Dh]` inputs, partitioned by `plan` for `role`."""
    if role not in ROLES:
        raise ValueError(f"attention role {role!r}; expected one of {ROLES}")
    if plan is None or not plan.sequence_parallel or role in ("audio_self", "audio_text", "text"):
        return dot_product_attention(q, k, v, bias=bias, implementation=implementation)
    if role == "video_self":
        return sequence_attention(q, k, v, bias, plan, plan.split(q.shape[2]), implementation)
    if role in ("video_text", "a2v"):
        return local_kv_attention(q, k, v, bias, plan, implementation)
    return sharded_kv_attention(q, k, v, bias, plan, implementation)
