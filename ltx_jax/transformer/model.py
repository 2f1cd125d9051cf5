"""The audio-video DiT (`LTXModel`) and its x0 wrapper (`X0Model`).

Counterpart: ltx_core `model/transformer/model.py` (`LTXModel`, AudioVideo type; `X0Model`).

The 48 blocks are one module created with `nnx.vmap` (every parameter has a leading layer axis) and run
with `nnx.scan`, so compile time does not grow with depth. In the checkpoint they are
`transformer_blocks.{i}.*`; `ltx_jax.convert.loading` stacks them (its rule 1). An FP8 file that quantizes
only some blocks (the official ones leave the first and last few in bf16) is restored with
`transformer_blocks` as an `nnx.List` of stacked segments, runs of consecutive blocks of one kind, scanned
one after the other (`ltx_jax.convert.fp8_restore`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.configs import Runtime, TransformerConfig
from ltx_jax.nn.linear import Linear
from ltx_jax.nn.norms import layer_norm
from ltx_jax.parallel import STRATEGIES, AttentionPlan
from ltx_jax.transformer.adaln import AdaLayerNormSingle, CaptionProjection
from ltx_jax.transformer.block import BasicAVTransformerBlock
from ltx_jax.transformer.modality import PERTURBATION_TYPES, Modality, Perturbations
from ltx_jax.transformer.preprocess import (StreamArgs, context_bias, cross_rope, other_sigma, self_attention_bias,
                                            stream_rope, timestep_modulation)

__all__ = ["LTXModel", "X0Model", "to_denoised", "block_segments", "stacked_layers"]


def block_segments(blocks: nnx.Module) -> list[nnx.Module]:
    """The stacked block modules to scan in order: `blocks` itself, or the segments of an `nnx.List`."""
    return list(blocks) if isinstance(blocks, nnx.List) else [blocks]


def stacked_layers(stack: nnx.Module) -> int:
    """Length of the leading layer axis of a stacked (vmapped) module."""
    return int(jax.tree.leaves(nnx.state(stack))[0].shape[0])


class LTXModel(nnx.Module):
    """Velocity prediction for video and audio tokens (either stream may be absent)."""

    def __init__(self, config: TransformerConfig, runtime: Runtime = Runtime(), *, rngs: nnx.Rngs):
        c = self.config = config
        # ltx_core reshapes the (projected) text context to the stream width and builds the audio-video RoPE at
        # audio_cross_attention_dim, so both text widths must equal the stream widths.
        if (c.cross_attention_dim, c.audio_cross_attention_dim) != (c.inner_dim, c.audio_inner_dim):
            raise ValueError(f"cross_attention_dim={c.cross_attention_dim} / audio_cross_attention_dim="
                             f"{c.audio_cross_attention_dim} must equal the video / audio widths "
                             f"{c.inner_dim} / {c.audio_inner_dim} (ltx-core assumes it)")
        pd = jnp.dtype(runtime.param_dtype)
        self.compute_dtype = jnp.dtype(runtime.compute_dtype)
        self.attention = runtime.attention
        v, a, coef = c.inner_dim, c.audio_inner_dim, c.adaln_coefficients
        adaln = lambda dim, k: AdaLayerNormSingle(dim, k, param_dtype=pd, rngs=rngs)  # noqa: E731
        self.patchify_proj = Linear(c.in_channels, v, param_dtype=pd, rngs=rngs)
        self.audio_patchify_proj = Linear(c.audio_in_channels, a, param_dtype=pd, rngs=rngs)
        if c.has_caption_projection:
            self.caption_projection = CaptionProjection(c.caption_channels, v, param_dtype=pd, rngs=rngs)
            self.audio_caption_projection = CaptionProjection(c.caption_channels, a, param_dtype=pd, rngs=rngs)
        self.adaln_single = adaln(v, coef)
        self.audio_adaln_single = adaln(a, coef)
        if c.cross_attention_adaln:
            self.prompt_adaln_single = adaln(v, 2)
            self.audio_prompt_adaln_single = adaln(a, 2)
        self.av_ca_video_scale_shift_adaln_single = adaln(v, 4)
        self.av_ca_audio_scale_shift_adaln_single = adaln(a, 4)
        self.av_ca_a2v_gate_adaln_single = adaln(v, 1)
        self.av_ca_v2a_gate_adaln_single = adaln(a, 1)
        self.scale_shift_table = nnx.Param(jnp.zeros((2, v), pd))
        self.audio_scale_shift_table = nnx.Param(jnp.zeros((2, a), pd))
        self.proj_out = Linear(v, c.out_channels, param_dtype=pd, rngs=rngs)
        self.audio_proj_out = Linear(a, c.audio_out_channels, param_dtype=pd, rngs=rngs)

        @nnx.split_rngs(splits=c.num_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def blocks(r: nnx.Rngs) -> BasicAVTransformerBlock:
            return BasicAVTransformerBlock(c, runtime, rngs=r)

        self.transformer_blocks = blocks(rngs)

    # -- inputs --------------------------------------------------------------------------------

    def _check(self, m: Modality, audio: bool) -> None:
        c, name = self.config, "audio" if audio else "video"
        channels = c.audio_in_channels if audio else c.in_channels
        ctx_dim = (c.audio_cross_attention_dim if audio else c.cross_attention_dim) if not c.has_caption_projection \
            else c.caption_channels
        n_axes = len(c.audio_positional_embedding_max_pos if audio else c.positional_embedding_max_pos)
        if m.latent.ndim != 3 or m.latent.shape[-1] != channels:
            raise ValueError(f"{name} latent has shape {tuple(m.latent.shape)}; expected [B, T, {channels}] "
                             f"({name} in_channels={channels})")
        b, t = m.latent.shape[:2]
        if m.positions.shape not in ((b, n_axes, t, 2), (b, n_axes, t)):
            raise ValueError(f"{name} positions have shape {tuple(m.positions.shape)}; expected "
                             f"[{b}, {n_axes}, {t}, 2] ([batch, axes, tokens, (start, end)])")
        if m.context.ndim != 3 or m.context.shape[0] != b or m.context.shape[-1] != ctx_dim:
            raise ValueError(f"{name} context has shape {tuple(m.context.shape)}; expected [{b}, S, {ctx_dim}] "
                             f"(the {name} text connector output width)")
        if m.timesteps.size not in (b, b * t):
            raise ValueError(f"{name} timesteps have shape {tuple(m.timesteps.shape)}; expected [{b}, {t}] "
                             f"(per token) or [{b}, 1]")

    def _prepare(self, m: Modality, other: Modality | None, audio: bool) -> tuple[jax.Array, StreamArgs]:
        c, dtype = self.config, self.compute_dtype
        pre = "audio_" if audio else ""
        b = m.latent.shape[0]
        x = getattr(self, pre + "patchify_proj")(m.latent.astype(dtype))
        timesteps, embedded = timestep_modulation(getattr(self, pre + "adaln_single"), m.timesteps, b,
                                                  c.timestep_scale_multiplier, dtype)
        sigma = jnp.broadcast_to(jnp.asarray(m.sigma, jnp.float32).reshape(-1), (b,))
        prompt = None
        if c.cross_attention_adaln:
            prompt, _ = timestep_modulation(getattr(self, pre + "prompt_adaln_single"), sigma, b,
                                            c.timestep_scale_multiplier, dtype)
        context = m.context.astype(dtype)
        if c.has_caption_projection:
            context = getattr(self, pre + "caption_projection")(context)
        args = StreamArgs(context=context, context_bias=context_bias(m.context_mask, dtype), timesteps=timesteps,
                          embedded_timestep=embedded, pe=stream_rope(c, m.positions, audio=audio, dtype=dtype),
                          self_bias=self_attention_bias(m.attention_mask, dtype), prompt_timestep=prompt,
                          enabled=m.enabled)
        if other is not None:
            t = other_sigma(m, other)  # [B, 1]
            scale_shift, _ = timestep_modulation(getattr(self, f"av_ca_{'audio' if audio else 'video'}_scale_shift"
                                                                    "_adaln_single"),
                                                 t, b, c.timestep_scale_multiplier, dtype)
            # ltx_core: gate timestep = sigma * ts_mult * (av_ca_mult / ts_mult), in that order.
            gate_adaln = getattr(self, "av_ca_v2a_gate_adaln_single" if audio else "av_ca_a2v_gate_adaln_single")
            gate, _ = timestep_modulation(gate_adaln, t * c.timestep_scale_multiplier, b,
                                          c.av_ca_timestep_scale_multiplier / c.timestep_scale_multiplier, dtype)
            args = args.replace(cross_pe=cross_rope(c, m.positions, audio=audio, dtype=dtype),
                                cross_scale_shift=scale_shift, cross_gate=gate)
        return x, args

    def _output(self, x: jax.Array, embedded: jax.Array, audio: bool) -> jax.Array:
        pre = "audio_" if audio else ""
        table = getattr(self, pre + "scale_shift_table")[...]
        values = table[None, None].astype(x.dtype) + embedded[:, :, None]  # [B, T', 2, D]
        shift, scale = values[:, :, 0], values[:, :, 1]
        # torch.nn.LayerNorm(elementwise_affine=False, eps=norm_eps): mean-centred, not RMS.
        x = layer_norm(x, eps=self.config.norm_eps) * (1 + scale) + shift
        return getattr(self, pre + "proj_out")(x)

    # -- forward -------------------------------------------------------------------------------

    def __call__(self, video: Modality | None, audio: Modality | None, perturbations: Perturbations | None = None,
                 *, plan: AttentionPlan | None = None) -> tuple[jax.Array | None, jax.Array | None]:
        """Velocities.

        Args:
            video: video stream inputs (latent `[B, Tv, in_channels]`) or None for an audio-only run.
            audio: audio stream inputs (latent `[B, Ta, audio_in_channels]`) or None for a video-only run.
            perturbations: per-block, per-sample attention skips (STG, modality isolation) or None.
            plan: sequence-parallel attention plan (`ltx_jax.sharding.attention_plan`), or None. A strategy
                named in the model's `Runtime.attention` overrides the plan's.

        Returns:
            (video velocity `[B, Tv, out_channels]` or None, audio velocity `[B, Ta, audio_out_channels]`
            or None), in the compute dtype.
        """
        if video is None and audio is None:
            raise ValueError("at least one of video and audio is needed")
        for m, is_audio in ((video, False), (audio, True)):
            if m is not None:
                self._check(m, is_audio)
        batch = (video or audio).latent.shape[0]
        if video is not None and audio is not None and audio.latent.shape[0] != batch:
            raise ValueError(f"video batch {batch} != audio batch {audio.latent.shape[0]}")
        vx, vargs = self._prepare(video, audio, False) if video is not None else (None, None)
        ax, aargs = self._prepare(audio, video, True) if audio is not None else (None, None)
        if plan is not None and self.attention in STRATEGIES and self.attention != "auto":
            plan = dataclasses.replace(plan, strategy=self.attention,
                                       ulysses=plan.ulysses if self.attention == "hybrid" else 0)
        vargs = vargs.replace(plan=plan) if vargs is not None else None
        aargs = aargs.replace(plan=plan) if aargs is not None else None
        if perturbations is None:
            perturbations = Perturbations.none(self.config.num_layers, batch)
        keep = perturbations.keep()
        for name in PERTURBATION_TYPES:
            if keep[name].shape != (self.config.num_layers, batch):
                raise ValueError(f"perturbations.{name} has shape {keep[name].shape}; expected "
                                 f"({self.config.num_layers}, {batch}) [layers, batch]")

        @nnx.scan(in_axes=(0, nnx.Carry, None, 0), out_axes=nnx.Carry)
        def run(block: BasicAVTransformerBlock, carry, streams, keep_i):
            return block(*carry, *streams, keep_i)

        carry, start = (vx, ax), 0
        for segment in block_segments(self.transformer_blocks):  # one, unless an FP8 file mixes block kinds
            n = stacked_layers(segment)
            carry = run(segment, carry, (vargs, aargs), jax.tree.map(lambda k, s=start, n=n: k[s:s + n], keep))
            start += n
        vx, ax = carry
        v_out = self._output(vx, vargs.embedded_timestep, False) if video is not None else None
        a_out = self._output(ax, aargs.embedded_timestep, True) if audio is not None else None
        return v_out, a_out


def to_denoised(latent: jax.Array, velocity: jax.Array, timesteps: jax.Array) -> jax.Array:
    """x0 = x - v * sigma_token, in float32, cast back to the latent's dtype (ltx_core `to_denoised`)."""
    t = timesteps.astype(jnp.float32).reshape(latent.shape[0], -1, 1)
    return (latent.astype(jnp.float32) - velocity.astype(jnp.float32) * t).astype(latent.dtype)


class X0Model(nnx.Module):
    """Denoised predictions: `x0 = x - v * timesteps` per token (conditioning tokens, at t = 0, stay x)."""

    def __init__(self, velocity_model: LTXModel):
        self.velocity_model = velocity_model

    def __call__(self, video: Modality | None, audio: Modality | None, perturbations: Perturbations | None = None,
                 *, plan: AttentionPlan | None = None) -> tuple[jax.Array | None, jax.Array | None]:
        """Same arguments as `LTXModel`; returns x0 per stream in the dtype of that stream's latent."""
        v, a = self.velocity_model(video, audio, perturbations, plan=plan)
        return (to_denoised(video.latent, v, video.timesteps) if v is not None else None,
                to_denoised(audio.latent, a, audio.timesteps) if a is not None else None)
