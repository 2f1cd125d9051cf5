"""Sequence-parallel attention under `jax.shard_map`: Ulysses, ring, their hybrid, and the cross-attentions.

No ltx_core counterpart (see `plan.py`). Every function takes global `[B, T, H, Dh]` q/k/v (and an additive
bias broadcastable to `[B, 1, T, S]`), runs the local kernel of `ltx_jax.nn.attention` on each device's
shard, and returns the global `[B, T, H, Dh]` output in q's dtype, sharded like q:

  sequence_attention  self-attention with q, k, v all sequence-sharded: Ulysses all-to-all (heads <->
                      sequence) over the `ulysses` factor, ring (ppermute of K/V blocks, log-sum-exp merge)
                      over the `ring` factor;
  local_kv_attention  sharded queries, replicated keys/values (text, audio->video): no communication;
  sharded_kv_attention  replicated queries, keys sharded over `context` (video->audio): partial outputs
                      and log-sum-exps combined with one pmax of the LSE and one psum.
The batch goes on `data` and the heads on `tensor` when those axes divide them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from ltx_jax.nn.attention import attention_with_lse
from ltx_jax.parallel.plan import AttentionPlan, SequenceSplit

__all__ = ["sequence_attention", "local_kv_attention", "sharded_kv_attention", "merge_partials"]


def merge_partials(o1, l1, o2, l2):
    """Two normalised partial results over disjoint key sets -> their union's (float32)."""
    m = jnp.maximum(l1, l2)
    w1, w2 = jnp.exp(l1 - m), jnp.exp(l2 - m)
    total = w1 + w2
    out = (o1.astype(jnp.float32) * w1[..., None] + o2.astype(jnp.float32) * w2[..., None]) / total[..., None]
    return out, m + jnp.log(total)


def _axis(plan: AttentionPlan, name: str, size: int) -> str | None:
    n = plan.axis_size(name)
    return name if n > 1 and size % n == 0 else None


def _check_tokens(what: str, tokens: int, n: int) -> None:
    if tokens % n:
        raise ValueError(f"{what} has {tokens} tokens, not divisible by the context size {n}; sequence-parallel "
                         f"attention needs equal shards (use --attention gspmd, or a size whose token count "
                         f"divides)")


def _bias_spec(bias, b_axis, rows_axis, cols_axis):
    if bias is None:
        return None
    if bias.ndim != 4 or bias.shape[1] != 1:
        raise ValueError(f"attention bias of shape {bias.shape}; expected [B|1, 1, T|1, S|1]")
    return P(b_axis if bias.shape[0] > 1 else None, None, rows_axis if bias.shape[2] > 1 else None,
             cols_axis if bias.shape[3] > 1 else None)


def sequence_attention(q, k, v, bias, plan: AttentionPlan, split: SequenceSplit, implementation: str = "auto"):
    """Self-attention with the sequence split `split.ring` (outer) x `split.ulysses` (inner) ways.

    Ulysses: each device trades its token shard of all its heads for all tokens of its share of the heads
    (one all-to-all each for q, k, v and the output). Ring: each device keeps its queries and sees every
    K/V block once as the blocks go round; partial results merge by log-sum-exp. The bias (rare: the
    keyframe self-attention mask) is passed by query rows of the ring block, all key columns.
    """
    b, t, h, _ = q.shape
    _check_tokens("self-attention", t, split.ulysses * split.ring)
    mesh = plan.split_mesh(split)
    ba = plan.batch_axis if b % plan.axis_size(plan.batch_axis) == 0 else None
    ha = plan.head_axis if plan.head_split(h) > 1 else None
    seq = P(ba, ("ring", "ulysses"), ha, None)
    bspec = _bias_spec(bias, ba, "ring", None)
    u, r = split.ulysses, split.ring

    def body(q, k, v, bias):
        if u > 1:
            q, k, v = (jax.lax.all_to_all(x, "ulysses", 2, 1, tiled=True) for x in (q, k, v))
        out = _ring(q, k, v, bias, r, implementation) if r > 1 else \
            attention_with_lse(q, k, v, bias=bias, implementation=implementation)[0]
        out = out.astype(q.dtype)
        if u > 1:
            out = jax.lax.all_to_all(out, "ulysses", 1, 2, tiled=True)
        return out

    in_specs = (seq, seq, seq, bspec)
    return jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=seq, check_vma=False)(q, k, v, bias)


def _ring(q, k, v, bias, n: int, implementation: str):
    """Ring attention over the `ring` axis (size n) on local blocks; float32 output."""
    me = jax.lax.axis_index("ring")
    block = k.shape[1]

    def block_bias(src):
        if bias is None or bias.shape[3] == 1:
            return bias
        return jax.lax.dynamic_slice_in_dim(bias, src * block, block, axis=3)

    perm = [(j, (j + 1) % n) for j in range(n)]

    def attend_block(i, k, v, out, lse):
        """Attend to the block held at step i (it came from device me - i) and merge it in."""
        o2, l2 = attention_with_lse(q, k, v, bias=block_bias((me - i) % n), implementation=implementation)
        return merge_partials(out, lse, o2, l2)

    def step(i, carry):
        k, v, out, lse = carry
        # send the held block on before attending to it: no data dependence between the two, so the
        # transfer can overlap the block's attention
        k_next, v_next = jax.lax.ppermute(k, "ring", perm), jax.lax.ppermute(v, "ring", perm)
        out, lse = attend_block(i, k, v, out, lse)
        return k_next, v_next, out, lse

    out = jnp.zeros(q.shape, jnp.float32)
    lse = jnp.full(q.shape[:3], -jnp.inf, jnp.float32)
    k, v, out, lse = jax.lax.fori_loop(0, n - 1, step, (k, v, out, lse))
    out, _ = attend_block(n - 1, k, v, out, lse)  # the last block: nothing left to send
    return out


def local_kv_attention(q, k, v, bias, plan: AttentionPlan, implementation: str = "auto"):
    """Sequence-sharded queries against replicated keys/values: each device attends its own queries; no
    collective (text cross-attention, audio->video)."""
    b, t, h, _ = q.shape
    n = plan.context
    _check_tokens("cross-attention queries", t, n)
    ba = plan.batch_axis if b % plan.axis_size(plan.batch_axis) == 0 else None
    ha = plan.head_axis if plan.head_split(h) > 1 else None
    qs, kvs = P(ba, plan.context_axis, ha, None), P(ba, None, ha, None)
    bspec = _bias_spec(bias, ba, plan.context_axis, None)

    def body(q, k, v, bias):
        return attention_with_lse(q, k, v, bias=bias, implementation=implementation)[0].astype(q.dtype)

    return jax.shard_map(body, mesh=plan.mesh, in_specs=(qs, kvs, kvs, bspec), out_specs=qs,
                         check_vma=False)(q, k, v, bias)


def sharded_kv_attention(q, k, v, bias, plan: AttentionPlan, implementation: str = "auto"):
    """Replicated (short) queries against sequence-sharded keys/values (video->audio): each device attends
    to its key shard, then one pmax of the log-sum-exps `[B, Tq, H]` and one psum of the weighted partial
    outputs (with their weights as one extra channel) give the exact softmax over all keys."""
    b, t, h, d = q.shape
    _check_tokens("video->audio keys", k.shape[1], plan.context)
    ba = plan.batch_axis if b % plan.axis_size(plan.batch_axis) == 0 else None
    ha = plan.head_axis if plan.head_split(h) > 1 else None
    ax = plan.context_axis
    qs, kvs = P(ba, None, ha, None), P(ba, ax, ha, None)
    bspec = _bias_spec(bias, ba, None, ax)

    def body(q, k, v, bias):
        out, lse = attention_with_lse(q, k, v, bias=bias, implementation=implementation)
        # the shift only keeps exp() in range and cancels in the ratio below: no gradient through it (pmax has
        # no differentiation rule, and training differentiates this attention)
        w = jnp.exp(lse - jax.lax.pmax(jax.lax.stop_gradient(lse), ax))[..., None]
        both = jax.lax.psum(jnp.concatenate([out.astype(jnp.float32) * w, w], axis=-1), ax)
        return (both[..., :d] / both[..., d:]).astype(q.dtype)

    return jax.shard_map(body, mesh=plan.mesh, in_specs=(qs, kvs, kvs, bspec), out_specs=qs,
                         check_vma=False)(q, k, v, bias)
