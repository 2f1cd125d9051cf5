"""Multi-head attention with q/k RMSNorm, RoPE, per-head gating and STG bypass; the GELU feed-forward.

Counterparts: ltx_core `model/transformer/attention.py` (`Attention`), `feed_forward.py` (`FeedForward`),
`gelu_approx.py` (`GELUApprox`). Attribute names equal the official keys (`to_out.0`, `net.0.proj`, `net.2`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.parallel import AttentionPlan, attend, head_sharded_rms_norm, splits_heads
from ltx_jax.nn.linear import Linear
from ltx_jax.nn.norms import rms_norm
from ltx_jax.nn.rope import apply_rope

__all__ = ["RMSNorm", "Attention", "FeedForward"]

Rope = tuple[jax.Array, jax.Array]


class RMSNorm(nnx.Module):
    """`torch.nn.RMSNorm(dim)` with its learnable weight; float32 inside, result in x's dtype."""

    def __init__(self, dim: int, *, eps: float = 1e-6, param_dtype=jnp.float32):
        self.eps = eps
        self.weight = nnx.Param(jnp.ones((dim,), param_dtype))

    def __call__(self, x: jax.Array, plan: AttentionPlan | None = None, *, heads: int = 1,
                 video_tokens: bool = False) -> jax.Array:
        """x: `[B, T, dim]`. Under a plan that splits `heads` over `tensor`, the width is head-sharded and the
        mean of squares is summed over `tensor` explicitly (`ltx_jax.parallel.head_sharded_rms_norm`)."""
        if splits_heads(plan, heads):
            return head_sharded_rms_norm(x, self.weight[...], self.eps, plan, video_tokens=video_tokens)
        return rms_norm(x, self.weight[...], self.eps)


class Attention(nnx.Module):
    """q from `x`, k/v from `context` (default `x`); q/k RMSNorm over the full width (across heads)."""

    def __init__(self, query_dim: int, context_dim: int | None, heads: int, head_dim: int, *, gated: bool,
                 eps: float = 1e-6, implementation: str = "auto", param_dtype=jnp.float32, rngs: nnx.Rngs):
        inner = heads * head_dim
        context_dim = query_dim if context_dim is None else context_dim
        self.heads, self.head_dim, self.implementation = heads, head_dim, implementation
        self.q_norm = RMSNorm(inner, eps=eps, param_dtype=param_dtype)
        self.k_norm = RMSNorm(inner, eps=eps, param_dtype=param_dtype)
        self.to_q = Linear(query_dim, inner, param_dtype=param_dtype, rngs=rngs)
        self.to_k = Linear(context_dim, inner, param_dtype=param_dtype, rngs=rngs)
        self.to_v = Linear(context_dim, inner, param_dtype=param_dtype, rngs=rngs)
        self.to_gate_logits = Linear(query_dim, heads, param_dtype=param_dtype, rngs=rngs) if gated else None
        self.to_out = nnx.List([Linear(inner, query_dim, param_dtype=param_dtype, rngs=rngs)])

    def __call__(self, x: jax.Array, context: jax.Array | None = None, *, pe: Rope | None = None,
                 k_pe: Rope | None = None, bias: jax.Array | None = None,
                 keep: jax.Array | None = None, plan: AttentionPlan | None = None, role: str = "text") -> jax.Array:
        """Attention output projected back to the query width.

        Args:
            x: `[B, T, query_dim]`.
            context: `[B, S, context_dim]`, or None for self-attention.
            pe: RoPE tables for q (and k unless `k_pe` is given); None: no RoPE (text cross-attention).
            bias: additive logits bias `[B, 1, T, S]` or None.
            keep: `[B]` in {0, 1}: 0 replaces the attention result by the value projection before the
                gate and `to_out` (STG), per sample. None: attention everywhere.
            plan, role: the sequence-parallel plan of the forward (None: single device / GSPMD) and this
                call's role in it (`ltx_jax.parallel.ROLES`).

        Returns:
            `[B, T, query_dim]`.
        """
        context = x if context is None else context
        b, t = x.shape[:2]
        v = self.to_v(context)
        q = self.q_norm(self.to_q(x), plan, heads=self.heads, video_tokens=role in ("video_self", "video_text", "a2v"))
        k = self.k_norm(self.to_k(context), plan, heads=self.heads, video_tokens=role in ("video_self", "v2a"))
        if pe is not None:
            q = apply_rope(q, *pe)
            k = apply_rope(k, *(pe if k_pe is None else k_pe))
        split = lambda a: a.reshape(a.shape[0], a.shape[1], self.heads, self.head_dim)  # noqa: E731
        out = attend(split(q), split(k), split(v), bias, plan, role, self.implementation)
        out = out.reshape(b, t, -1)
        if keep is not None:
            # ltx_core blends attn*m + v*(1-m); with m in {0, 1} this is exactly one or the other.
            m = keep.astype(out.dtype)[:, None, None]
            out = out * m + v * (1 - m)
        if self.to_gate_logits is not None:
            # 2*sigmoid: a zero-initialised gate is the identity.
            gates = 2.0 * jax.nn.sigmoid(self.to_gate_logits(x))  # [B, T, H]
            out = (out.reshape(b, t, self.heads, self.head_dim) * gates[..., None]).reshape(b, t, -1)
        return self.to_out[0](out)


class _GELUProjection(nnx.Module):
    def __init__(self, dim_in: int, dim_out: int, *, param_dtype, rngs: nnx.Rngs):
        self.proj = Linear(dim_in, dim_out, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        # torch GELU(approximate="tanh"); jax.nn.gelu's default is also the tanh form, said explicitly.
        return jax.nn.gelu(self.proj(x), approximate=True)


class FeedForward(nnx.Module):
    """`net.0.proj` (dim -> mult*dim, GELU-tanh), `net.1` (an Identity: no weights), `net.2` (back to dim)."""

    def __init__(self, dim: int, *, mult: int = 4, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.net = nnx.List([_GELUProjection(dim, dim * mult, param_dtype=param_dtype, rngs=rngs), None,
                             Linear(dim * mult, dim, param_dtype=param_dtype, rngs=rngs)])

    def __call__(self, x: jax.Array) -> jax.Array:
        """`[..., dim]` -> `[..., dim]`."""
        return self.net[2](self.net[0](x))
