"""The Gemma-3 text decoder (no LM head) returning every hidden state, as NNX modules.

Counterparts: transformers `models/gemma3/modeling_gemma3.py` (`Gemma3TextModel`, `Gemma3DecoderLayer`,
`Gemma3Attention`, `Gemma3MLP`, `Gemma3RMSNorm`, `Gemma3TextScaledWordEmbedding`), which ltx_core
`text_encoders/gemma/encoders/base_encoder.py` runs as `model.model(ids, mask, output_hidden_states=True)`.

Module paths mirror the hub keys under `language_model.model.` (`embed_tokens.weight`,
`layers.{i}.self_attn.q_proj.weight`, `norm.weight`, ...). The layers are one module created with
`nnx.vmap` (leading layer axis) and run with `nnx.scan`; whether a layer is sliding or global is a scanned
boolean, so the 48 layers compile once whatever the pattern.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.configs import Runtime
from ltx_jax.configs.gemma import GemmaConfig
from ltx_jax.nn.linear import Linear

__all__ = ["Gemma3TextModel", "Gemma3DecoderLayer", "Gemma3RMSNorm", "rope_tables", "attention_masks"]


class Gemma3RMSNorm(nnx.Module):
    """x * rsqrt(mean(x^2) + eps) * (1 + w), in float32, cast back to x's dtype after the multiply."""

    def __init__(self, dim: int, eps: float, param_dtype):
        self.eps = eps
        self.weight = nnx.Param(jnp.zeros((dim,), param_dtype))  # the hub stores w; the scale is 1 + w

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (y * (1.0 + self.weight[...].astype(jnp.float32))).astype(x.dtype)


class Gemma3MLP(nnx.Module):
    """down(gelu_tanh(gate(x)) * up(x)); no biases."""

    def __init__(self, config: GemmaConfig, pd, rngs: nnx.Rngs):
        h, m = config.hidden_size, config.intermediate_size
        self.gate_proj = Linear(h, m, bias=False, param_dtype=pd, rngs=rngs)
        self.up_proj = Linear(h, m, bias=False, param_dtype=pd, rngs=rngs)
        self.down_proj = Linear(m, h, bias=False, param_dtype=pd, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        # transformers' gelu_pytorch_tanh is the tanh approximation.
        return self.down_proj(jax.nn.gelu(self.gate_proj(x), approximate=True) * self.up_proj(x))


def _rotate(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate-half RoPE: pairs (i, i + D/2). x `[B, T, N, D]`, cos/sin `[T, D]` (already in x's dtype)."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[None, :, None, :] + rotated * sin[None, :, None, :]


class Gemma3Attention(nnx.Module):
    """GQA self-attention with per-head q/k RMSNorms before RoPE and scale `query_pre_attn_scalar^-0.5`."""

    def __init__(self, config: GemmaConfig, pd, rngs: nnx.Rngs):
        c = config
        self.num_heads, self.num_kv_heads, self.head_dim = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.scale = float(c.query_pre_attn_scalar) ** -0.5
        self.q_proj = Linear(c.hidden_size, c.num_attention_heads * c.head_dim, bias=False, param_dtype=pd, rngs=rngs)
        self.k_proj = Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=False, param_dtype=pd, rngs=rngs)
        self.v_proj = Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=False, param_dtype=pd, rngs=rngs)
        self.o_proj = Linear(c.num_attention_heads * c.head_dim, c.hidden_size, bias=False, param_dtype=pd, rngs=rngs)
        self.q_norm = Gemma3RMSNorm(c.head_dim, c.rms_norm_eps, pd)
        self.k_norm = Gemma3RMSNorm(c.head_dim, c.rms_norm_eps, pd)

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, mask: jax.Array) -> jax.Array:
        """x `[B, T, H]`, cos/sin `[T, Dh]`, mask `[B, T, T]` bool (query, key) -> `[B, T, H]`."""
        b, t, _ = x.shape
        kv, g, d = self.num_kv_heads, self.num_heads // self.num_kv_heads, self.head_dim
        q = self.q_norm(self.q_proj(x).reshape(b, t, kv * g, d))
        k = self.k_norm(self.k_proj(x).reshape(b, t, kv, d))
        v = self.v_proj(x).reshape(b, t, kv, d)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        # Query head j*g + i reads KV head j (transformers' repeat_kv is a repeat-interleave).
        q = q.reshape(b, t, kv, g, d)
        scores = jnp.einsum("btkgd,bskd->bkgts", q, k, preferred_element_type=jnp.float32) * self.scale
        # Rows of pad queries have every key masked: a finite minimum keeps them finite (values there are
        # implementation-defined in the reference too, and nothing downstream reads them).
        scores = jnp.where(mask[:, None, None], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        out = jnp.einsum("bkgts,bskd->btkgd", probs, v).reshape(b, t, kv * g * d)
        return self.o_proj(out)


class Gemma3DecoderLayer(nnx.Module):
    """Sandwich-norm block: x + post_attn(attn(in(x))), then + post_ff(mlp(pre_ff(x)))."""

    def __init__(self, config: GemmaConfig, runtime: Runtime, *, rngs: nnx.Rngs):
        pd, h, eps = jnp.dtype(runtime.param_dtype), config.hidden_size, config.rms_norm_eps
        self.self_attn = Gemma3Attention(config, pd, rngs)
        self.mlp = Gemma3MLP(config, pd, rngs)
        self.input_layernorm = Gemma3RMSNorm(h, eps, pd)
        self.post_attention_layernorm = Gemma3RMSNorm(h, eps, pd)
        self.pre_feedforward_layernorm = Gemma3RMSNorm(h, eps, pd)
        self.post_feedforward_layernorm = Gemma3RMSNorm(h, eps, pd)

    def __call__(self, x, cos, sin, mask):
        x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), cos, sin, mask))
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


class Embedding(nnx.Module):
    """`weight[ids] * sqrt(hidden)`, the scale cast to the weight's dtype first (bf16: sqrt(3840) -> 62.0)."""

    def __init__(self, rows: int, dim: int, param_dtype, rngs: nnx.Rngs):
        self.scale = math.sqrt(dim)
        self.weight = nnx.Param(jax.random.normal(rngs.params(), (rows, dim), param_dtype))

    def __call__(self, ids: jax.Array) -> jax.Array:
        w = self.weight[...]
        return jnp.take(w, ids, axis=0) * jnp.asarray(self.scale, w.dtype)


def rope_tables(config: GemmaConfig, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(cos_local, sin_local, cos_global, sin_global) `[T, Dh]` float32 for positions arange(T).

    inv_freq = 1 / base^(2i/Dh) in float32 as transformers computes it; global layers use base `rope_theta`
    and the linear scaling (inv_freq / factor); the attention factor is 1.
    """
    d = config.head_dim
    exponents = np.arange(0, d, 2, dtype=np.int64).astype(np.float32) / np.float32(d)
    positions = np.arange(length, dtype=np.float32)
    out = []
    for base, factor in ((config.rope_local_base_freq, 1.0), (config.rope_theta, config.rope_scaling_factor)):
        inv = (np.float32(1.0) / np.power(np.float32(base), exponents)).astype(np.float32)
        inv = (inv / np.float32(factor)).astype(np.float32)
        freqs = np.outer(positions, inv).astype(np.float32)
        emb = np.concatenate([freqs, freqs], axis=-1)
        out += [np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)]
    return tuple(out)


def attention_masks(attention_mask: jax.Array, window: int) -> tuple[jax.Array, jax.Array]:
    """(global, sliding) `[B, T, T]` bool masks from a `[B, T]` padding mask (1 = token).

    Key j is visible to query i iff j <= i and j is a token; sliding layers also need i - j < window.
    """
    t = attention_mask.shape[-1]
    i, j = jnp.arange(t)[:, None], jnp.arange(t)[None, :]
    keys = attention_mask.astype(bool)[:, None, :]
    causal = (j <= i)[None] & keys
    return causal, causal & ((i - j) < window)[None]


class Gemma3TextModel(nnx.Module):
    """Token ids -> the L+1 hidden states (scaled embeddings, each layer's output, the last one normed)."""

    def __init__(self, config: GemmaConfig, runtime: Runtime = Runtime(), *, rngs: nnx.Rngs):
        self.config = config
        self.compute_dtype = jnp.dtype(runtime.compute_dtype)
        pd = jnp.dtype(runtime.param_dtype)
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size, pd, rngs)

        @nnx.split_rngs(splits=config.num_hidden_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def layers(r: nnx.Rngs) -> Gemma3DecoderLayer:
            return Gemma3DecoderLayer(config, runtime, rngs=r)

        self.layers = layers(rngs)
        self.norm = Gemma3RMSNorm(config.hidden_size, config.rms_norm_eps, pd)

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
        """Every hidden state, stacked as the official code stacks them.

        Args:
            input_ids: `[B, T]` int token ids (left padded).
            attention_mask: `[B, T]` 1 for tokens, 0 for padding. Positions are arange(T), pads included, as
                ltx_core calls the model without position ids.

        Returns:
            `[L+1, B, T, hidden]` in the compute dtype: index 0 the scaled embeddings, index i < L the output of
            layer i, index L the final norm of the last layer's output. Values at pad positions are arbitrary.
        """
        # The scan's last output is the last layer's raw output; the official stack ends with its final norm.
        return self.with_prenorm(input_ids, attention_mask)[0]

    def with_prenorm(self, input_ids: jax.Array, attention_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(`__call__`'s hidden states, the last layer's output before the final norm `[B, T, hidden]`)."""
        x, last, outs = self._run(input_ids, attention_mask)
        return jnp.concatenate([x[None], outs[:-1], self.norm(last)[None]], axis=0), last

    def _run(self, input_ids: jax.Array, attention_mask: jax.Array):
        """(scaled embeddings `[B, T, H]`, last layer output `[B, T, H]`, every layer's output `[L, B, T, H]`)."""
        c = self.config
        x = self.embed_tokens(input_ids).astype(self.compute_dtype)
        # cos/sin in float32, then cast to the activations' dtype, as transformers does.
        tables = [jnp.asarray(a, self.compute_dtype) for a in rope_tables(c, input_ids.shape[-1])]
        global_mask, sliding_mask = attention_masks(attention_mask, c.sliding_window)

        @nnx.scan(in_axes=(0, nnx.Carry, 0), out_axes=(nnx.Carry, 0))
        def run(layer: Gemma3DecoderLayer, h, is_sliding):
            cos = jnp.where(is_sliding, tables[0], tables[2])
            sin = jnp.where(is_sliding, tables[1], tables[3])
            h = layer(h, cos, sin, jnp.where(is_sliding, sliding_mask, global_mask))
            return h, h

        last, outs = run(self.layers, x, jnp.asarray(c.sliding, bool))
        return x, last, outs
