"""One dual-stream (video + audio) transformer block.

Counterpart: ltx_core `model/transformer/transformer.py` (`BasicAVTransformerBlock`,
`apply_cross_attention_adaln`). Order per block: video self-attn, video text cross-attn, audio self-attn,
audio text cross-attn, audio<->video cross-attn (both directions from the same pre-update norms),
video FFN, audio FFN. `rms` is a weightless RMSNorm (eps = norm_eps) computed in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.configs import Runtime, TransformerConfig
from ltx_jax.nn.norms import rms_norm
from ltx_jax.transformer.attention import Attention, FeedForward
from ltx_jax.transformer.preprocess import StreamArgs

__all__ = ["BasicAVTransformerBlock"]


def _ada(table: jax.Array, timesteps: jax.Array, rows: slice) -> list[jax.Array]:
    """Rows of `table[coef, D]` plus the matching slice of `timesteps[B, T', coef*D]` -> list of `[B, T', D]`."""
    b, t = timesteps.shape[:2]
    coef = table.shape[0]
    values = table[rows][None, None].astype(timesteps.dtype) + timesteps.reshape(b, t, coef, -1)[:, :, rows]
    return [values[:, :, i] for i in range(values.shape[2])]


def _av_ada(table: jax.Array, scale_shift: jax.Array, gate: jax.Array, rows: slice):
    """AV tables `[5, D]`: rows 0-3 (scale, shift per direction) modulated by `scale_shift` `[B,1,4D]`,
    row 4 (gate) by `gate` `[B,1,D]`. Note the order: scale first, then shift (the main AdaLN is shift first)."""
    scale, shift = _ada(table[:4], scale_shift, rows)
    (g,) = _ada(table[4:], gate, slice(None))
    return scale, shift, g


class BasicAVTransformerBlock(nnx.Module):
    def __init__(self, config: TransformerConfig, runtime: Runtime, *, rngs: nnx.Rngs):
        c = config
        self.eps, self.cross_attention_adaln = c.norm_eps, c.cross_attention_adaln
        kw = dict(gated=c.apply_gated_attention, eps=c.norm_eps, implementation=runtime.kernel,
                  param_dtype=jnp.dtype(runtime.param_dtype), rngs=rngs)
        pd = jnp.dtype(runtime.param_dtype)
        v, a = c.inner_dim, c.audio_inner_dim
        vh, vd, ah, ad = c.num_attention_heads, c.attention_head_dim, c.audio_num_attention_heads, c.audio_attention_head_dim
        coef = c.adaln_coefficients
        self.attn1 = Attention(v, None, vh, vd, **kw)
        self.attn2 = Attention(v, c.cross_attention_dim, vh, vd, **kw)
        self.ff = FeedForward(v, param_dtype=pd, rngs=rngs)
        self.scale_shift_table = nnx.Param(jnp.zeros((coef, v), pd))
        self.audio_attn1 = Attention(a, None, ah, ad, **kw)
        self.audio_attn2 = Attention(a, c.audio_cross_attention_dim, ah, ad, **kw)
        self.audio_ff = FeedForward(a, param_dtype=pd, rngs=rngs)
        self.audio_scale_shift_table = nnx.Param(jnp.zeros((coef, a), pd))
        # Cross-modal attention runs at the audio width and head count in both directions.
        self.audio_to_video_attn = Attention(v, a, ah, ad, **kw)  # q: video, k/v: audio
        self.video_to_audio_attn = Attention(a, v, ah, ad, **kw)  # q: audio, k/v: video
        self.scale_shift_table_a2v_ca_audio = nnx.Param(jnp.zeros((5, a), pd))
        self.scale_shift_table_a2v_ca_video = nnx.Param(jnp.zeros((5, v), pd))
        if c.cross_attention_adaln:
            self.prompt_scale_shift_table = nnx.Param(jnp.zeros((2, v), pd))
            self.audio_prompt_scale_shift_table = nnx.Param(jnp.zeros((2, a), pd))

    def _text_cross_attention(self, x: jax.Array, args: StreamArgs, attn: Attention, table: nnx.Param,
                              prompt_table: nnx.Param | None, role: str) -> jax.Array:
        if not self.cross_attention_adaln:  # LTX-2: plain pre-norm cross-attention, no gate
            return attn(rms_norm(x, eps=self.eps), args.context, bias=args.context_bias, plan=args.plan, role=role)
        # LTX-2.3: the query is modulated (rows 6-8: shift, scale, gate); the context is modulated by
        # the prompt AdaLN of the scalar sigma (row 0 shift, row 1 scale) and is not normalised.
        shift_q, scale_q, gate = _ada(table[...], args.timesteps, slice(6, 9))
        b = x.shape[0]
        kv = prompt_table[...][None, None].astype(x.dtype) + \
            args.prompt_timestep.reshape(b, args.prompt_timestep.shape[1], 2, -1)
        shift_kv, scale_kv = kv[:, :, 0], kv[:, :, 1]
        q_in = rms_norm(x, eps=self.eps) * (1 + scale_q) + shift_q
        return attn(q_in, args.context * (1 + scale_kv) + shift_kv, bias=args.context_bias, plan=args.plan,
                    role=role) * gate

    def _self_and_text(self, x, args: StreamArgs, keep, attn1, attn2, table, prompt_table, stream: str):
        shift, scale, gate = _ada(table[...], args.timesteps, slice(0, 3))
        h = rms_norm(x, eps=self.eps) * (1 + scale) + shift
        x = x + attn1(h, pe=args.pe, bias=args.self_bias, keep=keep, plan=args.plan, role=f"{stream}_self") * gate
        return x + self._text_cross_attention(x, args, attn2, table, prompt_table, f"{stream}_text")

    def _feed_forward(self, x, args: StreamArgs, ff, table):
        shift, scale, gate = _ada(table[...], args.timesteps, slice(3, 6))
        return x + ff(rms_norm(x, eps=self.eps) * (1 + scale) + shift) * gate

    def __call__(self, vx: jax.Array | None, ax: jax.Array | None, video: StreamArgs | None,
                 audio: StreamArgs | None, keep: dict[str, jax.Array]) -> tuple[jax.Array | None, jax.Array | None]:
        """One block.

        Args:
            vx: `[B, Tv, Dv]` video tokens or None (no video stream); ax: `[B, Ta, Da]` or None.
            video, audio: the streams' `StreamArgs` (None with their tokens).
            keep: `{perturbation type: [B]}`, 1 = run, 0 = skip (see `Perturbations`).

        Returns:
            Updated (vx, ax).
        """
        run_v = video is not None and video.enabled
        run_a = audio is not None and audio.enabled
        prompt = getattr(self, "prompt_scale_shift_table", None)
        audio_prompt = getattr(self, "audio_prompt_scale_shift_table", None)
        if run_v:
            vx = self._self_and_text(vx, video, keep["video_self_attn"], self.attn1, self.attn2,
                                     self.scale_shift_table, prompt, "video")
        if run_a:
            ax = self._self_and_text(ax, audio, keep["audio_self_attn"], self.audio_attn1, self.audio_attn2,
                                     self.audio_scale_shift_table, audio_prompt, "audio")
        run_a2v = run_v and audio is not None
        run_v2a = run_a and video is not None
        if run_a2v or run_v2a:
            vn, an = rms_norm(vx, eps=self.eps), rms_norm(ax, eps=self.eps)  # both directions use these
            vt, at = self.scale_shift_table_a2v_ca_video[...], self.scale_shift_table_a2v_ca_audio[...]
            if run_a2v:
                v_scale, v_shift, v_gate = _av_ada(vt, video.cross_scale_shift, video.cross_gate, slice(0, 2))
                a_scale, a_shift, _ = _av_ada(at, audio.cross_scale_shift, audio.cross_gate, slice(0, 2))
                out = self.audio_to_video_attn(vn * (1 + v_scale) + v_shift, an * (1 + a_scale) + a_shift,
                                               pe=video.cross_pe, k_pe=audio.cross_pe, plan=video.plan, role="a2v")
                vx = vx + out * v_gate * keep["a2v_cross_attn"].astype(vx.dtype)[:, None, None]
            if run_v2a:
                a_scale, a_shift, a_gate = _av_ada(at, audio.cross_scale_shift, audio.cross_gate, slice(2, 4))
                v_scale, v_shift, _ = _av_ada(vt, video.cross_scale_shift, video.cross_gate, slice(2, 4))
                out = self.video_to_audio_attn(an * (1 + a_scale) + a_shift, vn * (1 + v_scale) + v_shift,
                                               pe=audio.cross_pe, k_pe=video.cross_pe, plan=video.plan, role="v2a")
                ax = ax + out * a_gate * keep["v2a_cross_attn"].astype(ax.dtype)[:, None, None]
        if run_v:
            vx = self._feed_forward(vx, video, self.ff, self.scale_shift_table)
        if run_a:
            ax = self._feed_forward(ax, audio, self.audio_ff, self.audio_scale_shift_table)
        return vx, ax
