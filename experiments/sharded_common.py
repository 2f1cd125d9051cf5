"""Shared set-up of the sharded benchmark and the sharding tests: model sizes, one step's inputs, the
jitted (optionally sharded) forward, and its compiled-HLO statistics.

Sizes (LTX-2.3 block: gated attention, prompt AdaLN, split RoPE):
  tiny  2 layers, video 8 heads x 8 (64 wide), audio 8 heads x 4 (32), 16 latent channels: head counts
        that split 8 ways, so every strategy runs on 8 devices;
  mid   4 layers, video 16 x 64 (1024), audio 16 x 32 (512), 128 latent channels;
  full  the LTX-2.3 preset (48 layers, 32 x 128 / 32 x 64), abstract (never materialised).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding

from ltx_jax.configs import LTX_2_3, LTX_2_3_TINY, Runtime
from ltx_jax.parallel import hlo
from ltx_jax.sharding import attention_plan, constrain, spec_for
from ltx_jax.sampling.positions import audio_positions, video_positions
from ltx_jax.transformer import LTXModel, Modality

SIZES = ("tiny", "mid", "full")


def config(size: str):
    base = LTX_2_3_TINY.transformer
    if size == "tiny":
        return dataclasses.replace(base, num_attention_heads=8, attention_head_dim=8, audio_num_attention_heads=8,
                                   audio_attention_head_dim=4)
    if size == "mid":
        return dataclasses.replace(base, num_attention_heads=16, attention_head_dim=64, cross_attention_dim=1024,
                                   audio_num_attention_heads=16, audio_attention_head_dim=32,
                                   audio_cross_attention_dim=512, in_channels=128, out_channels=128,
                                   num_layers=4, caption_channels=1024)
    if size == "full":
        return LTX_2_3.transformer
    raise ValueError(f"size {size!r}; expected one of {SIZES}")


def model_state(cfg, dtype: str = "float32", *, abstract: bool = False, seed: int = 0):
    """(graphdef, state) with random weights (tables and norms perturbed too), or abstract shapes."""
    runtime = Runtime(param_dtype=dtype, compute_dtype=dtype)
    make = lambda: LTXModel(cfg, runtime, rngs=nnx.Rngs(seed))  # noqa: E731
    if abstract:
        return nnx.split(nnx.eval_shape(make))
    graphdef, state = nnx.split(make())
    leaves, tree = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    leaves = [x + (0.05 * jax.random.normal(k, x.shape)).astype(x.dtype) for x, k in zip(leaves, keys, strict=True)]
    return graphdef, jax.tree.unflatten(tree, leaves)


def inputs(cfg, *, batch: int = 2, frames: int = 2, height: int = 8, width: int = 8, audio_tokens: int = 16,
           text_tokens: int = 8, dtype: str = "float32", abstract: bool = False, seed: int = 0):
    """(video, audio) `Modality` of one step: latent grid frames x height x width, per-token timesteps."""
    dt = jnp.dtype(dtype)
    tv = frames * height * width
    ctx_v = cfg.caption_channels if cfg.has_caption_projection else cfg.cross_attention_dim
    ctx_a = cfg.caption_channels if cfg.has_caption_projection else cfg.audio_cross_attention_dim
    shapes = {"vl": ((batch, tv, cfg.in_channels), dt), "al": ((batch, audio_tokens, cfg.audio_in_channels), dt),
              "vc": ((batch, text_tokens, ctx_v), dt), "ac": ((batch, text_tokens, ctx_a), dt),
              "vt": ((batch, tv), jnp.float32), "at": ((batch, audio_tokens), jnp.float32)}
    vp = video_positions(frames, height, width, fps=24.0, batch=batch)
    ap = audio_positions(audio_tokens, batch=batch)
    if abstract:
        a = {k: jax.ShapeDtypeStruct(s, d) for k, (s, d) in shapes.items()}
        vp, ap = jax.ShapeDtypeStruct(vp.shape, jnp.float32), jax.ShapeDtypeStruct(ap.shape, jnp.float32)
        sigma = jax.ShapeDtypeStruct((batch,), jnp.float32)
    else:
        rng = np.random.default_rng(seed)
        a = {k: jnp.asarray(rng.standard_normal(s), d) for k, (s, d) in shapes.items()}
        a["vt"] = jnp.asarray(rng.uniform(0.2, 1.0, shapes["vt"][0]), jnp.float32)
        a["at"] = jnp.asarray(rng.uniform(0.2, 1.0, shapes["at"][0]), jnp.float32)
        vp, ap = jnp.asarray(vp), jnp.asarray(ap)
        sigma = jnp.asarray(rng.uniform(0.2, 1.0, (batch,)), jnp.float32)
    video = Modality(latent=a["vl"], sigma=sigma, timesteps=a["vt"], positions=vp, context=a["vc"])
    audio = Modality(latent=a["al"], sigma=sigma, timesteps=a["at"], positions=ap, context=a["ac"])
    return video, audio


def _constrain_modality(m: Modality | None, rules, stream: str) -> Modality | None:
    if m is None or rules is None:
        return m
    name = f"activation.{stream}."
    return m.replace(latent=constrain(m.latent, rules, name + "latent"),
                     timesteps=constrain(m.timesteps, rules, name + "timesteps"),
                     positions=constrain(m.positions, rules, name + "positions"),
                     context=constrain(m.context, rules, name + "context"))


@functools.partial(jax.jit, static_argnames=("graphdef", "rules"))
def step(graphdef, state, video, audio, *, rules=None):
    """One x0 forward, laid out by `rules` (None: single device) with its attention plan."""
    from ltx_jax.transformer import forward
    v, a = _constrain_modality(video, rules, "video"), _constrain_modality(audio, rules, "audio")
    vx0, ax0 = forward(graphdef, state, v, a, x0=True, plan=attention_plan(rules))
    return constrain(vx0, rules, "activation.video.x0"), constrain(ax0, rules, "activation.audio.x0")


def place(tree, rules, name: str):
    """device_put each leaf by the spec of `name` (replicated when no rule matches)."""
    if rules is None:
        return tree
    return jax.tree.map(lambda x: jax.device_put(x, NamedSharding(rules.mesh, spec_for(rules, name, x.shape))), tree)


def place_inputs(video, audio, rules):
    if rules is None:
        return video, audio
    pv = video.replace(latent=place(video.latent, rules, "activation.video.latent"),
                       timesteps=place(video.timesteps, rules, "activation.video.timesteps"),
                       positions=place(video.positions, rules, "activation.video.positions"),
                       context=place(video.context, rules, "activation.video.context"),
                       sigma=place(video.sigma, rules, "activation.inputs"))
    pa = jax.tree.map(lambda x: place(x, rules, "activation.audio.latent"), audio)
    return pv, pa


def stats(compiled_text: str, devices: int) -> dict:
    """Per-device dot FLOPs and collective volumes of one compiled call."""
    return {"dot_flops": hlo.dot_flops(compiled_text), "collectives": hlo.collectives(compiled_text, devices)}
