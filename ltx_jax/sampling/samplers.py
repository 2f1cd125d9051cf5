"""One denoising evaluation: the guidance passes as one batched forward, then the multi-modal combination.

Counterparts: ltx_pipelines `utils/helpers.py` (`simple_denoising_func`, `multi_modal_guider_denoising_func`,
`modality_from_latent_state`) and ltx_core `components/guiders.py` (`MultiModalGuider.calculate`).

The official denoising function runs up to four transformer calls per step, one per pass (`cond`,
`uncond`, `perturbed`, `isolated`). Here the passes are stacked along the batch axis and run as one
forward of batch P*B (P passes, B samples): pass k owns rows `[k*B, (k+1)*B)`, `uncond` rows get the
negative context, `perturbed` / `isolated` rows get their attention skips from a per-row `Perturbations`
array. Which passes run is static (it sets the batch size); the guidance scales and STG blocks are arrays,
so changing them does not recompile. With a `ShardingRules` the stacked rows go on the `data` mesh axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from ltx_jax.sampling.conditioning import LatentState, timesteps_from_mask
from ltx_jax.sampling.guidance import GuiderParams, pass_perturbations, passes_needed
from ltx_jax.sharding import ShardingRules, attention_plan, constrain
from ltx_jax.transformer import Modality, Perturbations, forward

__all__ = ["TextContext", "Prompt", "Guidance", "SCALE_COLUMNS", "DenoiseSpec", "denoise", "combine"]

# Columns of a guidance scale row, computed on the host in float64 as the official Python floats are, then
# cast to float32 (torch casts a Python scalar operand to the tensor's dtype).
SCALE_COLUMNS = ("cfg_minus_1", "stg", "modality_minus_1", "rescale", "one_minus_rescale")


@struct.dataclass
class TextContext:
    """One prompt's connector outputs: video `[B or 1, S, D_video]`, audio `[B or 1, S, D_audio]`."""

    video: jax.Array
    audio: jax.Array


@struct.dataclass
class Prompt:
    """The positive context and, for CFG, the negative one (the official default negative prompt's encoding)."""

    positive: TextContext
    negative: TextContext | None = None


@dataclass(frozen=True)
class Guidance:
    """Guidance of both streams (`MultiModalGuiderParams` per stream); the default is no guidance (distilled).

    `passes` (static) decides the batch of the forward; `scales()` and `perturbations()` are the array
    inputs. Video and audio share the passes: a pass runs for both streams when either needs it.
    """

    video: GuiderParams = field(default_factory=GuiderParams)
    audio: GuiderParams = field(default_factory=GuiderParams)

    @property
    def passes(self) -> tuple[str, ...]:
        return passes_needed(self.video, self.audio)

    @property
    def skip_step(self) -> int:
        if self.video.skip_step != self.audio.skip_step:
            # ltx_core then runs the skipped stream with `enabled=False`, which changes the other stream's
            # cross-attention input; only equal periods (both streams reuse the last x0) are implemented.
            raise ValueError(f"video skip_step {self.video.skip_step} != audio skip_step {self.audio.skip_step}: "
                             "only equal skip periods are supported")
        return self.video.skip_step

    def scales(self) -> np.ndarray:
        """float32 `[2, len(SCALE_COLUMNS)]`, rows (video, audio)."""
        def row(p: GuiderParams) -> list[float]:
            return [p.cfg_scale - 1, p.stg_scale, p.modality_scale - 1, p.rescale_scale, 1 - p.rescale_scale]
        return np.asarray([row(self.video), row(self.audio)], np.float32)

    def perturbations(self, num_layers: int, batch: int) -> Perturbations:
        """`[num_layers, P*B]` skips, rows in pass order (`Perturbations.build` per row)."""
        rows = []
        for kind in self.passes:
            rows += [pass_perturbations(kind, self.video, self.audio, num_layers)] * batch
        return Perturbations.build(num_layers, rows)


@dataclass(frozen=True)
class DenoiseSpec:
    """Static choices of the evaluation: the passes, batched or one forward per pass, sharding rules."""

    passes: tuple[str, ...] = ("cond",)
    batched: bool = True
    rules: ShardingRules | None = None


def _branch_context(prompt: Prompt, passes: tuple[str, ...], batch: int, stream: str) -> jax.Array:
    """`[P*B, S, D]`: the positive context per pass, the negative one for `uncond` (`[1, S, D]` broadcast to B)."""
    pos = getattr(prompt.positive, stream)
    parts = []
    for kind in passes:
        ctx = pos
        if kind == "uncond":
            if prompt.negative is None:
                raise ValueError("CFG (cfg_scale != 1) needs prompt.negative (the negative prompt's context)")
            ctx = getattr(prompt.negative, stream)
        parts.append(jnp.broadcast_to(ctx, (batch, *ctx.shape[1:])))
    return jnp.concatenate(parts, axis=0)


def _tile(x: jax.Array | None, n: int) -> jax.Array | None:
    """`[B, ...]` -> `[n*B, ...]`, n copies stacked along the batch (pass k owns rows k*B ... (k+1)*B - 1)."""
    return x if x is None or n == 1 else jnp.concatenate([x] * n, axis=0)


def _modality(state: LatentState, latent: jax.Array, context: jax.Array, sigma_model: jax.Array,
              sigma_t: jax.Array, n: int, stream: str, rules: ShardingRules | None) -> Modality:
    """`modality_from_latent_state` for n stacked passes: per-token timesteps `mask * sigma`, scalar sigma."""
    name = f"activation.{stream}."
    return Modality(
        latent=constrain(_tile(latent, n), rules, name + "latent"),
        sigma=jnp.full((latent.shape[0] * n,), sigma_model, jnp.float32),
        timesteps=constrain(_tile(timesteps_from_mask(state.denoise_mask, sigma_t), n), rules, name + "timesteps"),
        positions=constrain(_tile(state.positions, n), rules, name + "positions"),
        context=constrain(context, rules, name + "context"),  # the transformer casts it to its compute dtype
        attention_mask=constrain(_tile(state.attention_mask, n), rules, name + "attention_mask"),
    )


def combine(x0: dict[str, jax.Array], scales: jax.Array) -> jax.Array:
    """`MultiModalGuider.calculate` for one stream from its per-pass x0 `[B, T, C]` and a scale row.

    `pred = c + (cfg-1)(c-u) + stg (c-p) + (mod-1)(c-m)` in that order; then, if r != 0,
    `pred *= r std(c)/std(pred) + (1-r)` with unbiased stds over the whole tensor.
    """
    c = x0["cond"]
    pred = c
    if "uncond" in x0:
        pred = pred + scales[0].astype(c.dtype) * (c - x0["uncond"])
    if "perturbed" in x0:
        pred = pred + scales[1].astype(c.dtype) * (c - x0["perturbed"])
    if "isolated" in x0:
        pred = pred + scales[2].astype(c.dtype) * (c - x0["isolated"])
    if len(x0) == 1:
        return pred  # no pass to combine (distilled, or guidance turned off): factor would be exactly 1
    r = scales[3]
    factor = jnp.std(c, ddof=1) / jnp.std(pred, ddof=1)
    rescaled = pred * (r * factor + scales[4]).astype(pred.dtype)
    return jnp.where(r != 0, rescaled, pred).astype(c.dtype)


def denoise(graphdef: nnx.GraphDef, params: nnx.State, video: LatentState, audio: LatentState, prompt: Prompt,
            sigma_model: jax.Array, sigma_t: jax.Array, scales: jax.Array, perturbations: Perturbations,
            spec: DenoiseSpec) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Guided x0 of both streams for one evaluation (traceable; called inside the jitted loops).

    Args:
        graphdef, params: `nnx.split` of the `LTXModel`.
        video, audio: the current states (`latent` `[B, T, C]`, mask, positions, clean, attention mask).
        prompt: contexts; `negative` is needed when `uncond` is among the passes.
        sigma_model: float32 scalar, the `Modality.sigma` (prompt AdaLN, cross-modal modulation).
        sigma_t: float32 scalar multiplying the denoise mask into per-token timesteps.
        scales: float32 `[2, len(SCALE_COLUMNS)]` (video, audio) from `Guidance.scales`.
        perturbations: `[num_layers, P*B]` from `Guidance.perturbations`.
        spec: static passes / batching / sharding.

    Returns:
        (video x0 `[B, Tv, C]`, audio x0 `[B, Ta, Ca]`, per-pass video x0 `[P, B, Tv, C]`, per-pass audio x0),
        guided but not yet blended with the clean latent (the loop does that, as `post_process_latent`).
    """
    passes, rules, b = spec.passes, spec.rules, video.latent.shape[0]
    contexts = {s: _branch_context(prompt, passes, b, s) for s in ("video", "audio")}
    if spec.batched:
        n = len(passes)
        v = _modality(video, video.latent, contexts["video"], sigma_model, sigma_t, n, "video", rules)
        a = _modality(audio, audio.latent, contexts["audio"], sigma_model, sigma_t, n, "audio", rules)
        vx0, ax0 = forward(graphdef, params, v, a, perturbations, x0=True, plan=attention_plan(rules))
        vx0 = constrain(vx0, rules, "activation.video.x0").reshape(n, *video.latent.shape)
        ax0 = constrain(ax0, rules, "activation.audio.x0").reshape(n, *audio.latent.shape)
    else:  # one forward per pass: 1/P of the activation memory, P times the launches
        outs = []
        for k in range(len(passes)):
            rows = slice(k * b, (k + 1) * b)
            pert = jax.tree.map(lambda x, rows=rows: x[:, rows], perturbations)
            v = _modality(video, video.latent, contexts["video"][rows], sigma_model, sigma_t, 1, "video", rules)
            a = _modality(audio, audio.latent, contexts["audio"][rows], sigma_model, sigma_t, 1, "audio", rules)
            outs.append(forward(graphdef, params, v, a, pert, x0=True, plan=attention_plan(rules)))
        vx0 = jnp.stack([o[0] for o in outs])
        ax0 = jnp.stack([o[1] for o in outs])
    guided_v = combine({k: vx0[i] for i, k in enumerate(passes)}, scales[0])
    guided_a = combine({k: ax0[i] for i, k in enumerate(passes)}, scales[1])
    return guided_v, guided_a, vx0, ax0


def model_sigma(sigma64: float, multiplier: float = 1000.0) -> np.float32:
    """A float32 sigma s whose float32 product `s * multiplier` equals the float64 product rounded once.

    The official res_2s sub-step passes `sqrt(sigma * sigma_next)` as a float64 0-d tensor; the transformer
    then forms `sigma * 1000` in float64 before the timestep embedding casts it to float32. Our transformer
    multiplies in float32, so the value handed to it is chosen among the float32 neighbours of sigma to
    give the same product (the closest one when none does).
    """
    target = np.float32(sigma64 * multiplier)
    base = np.float32(sigma64)
    best, best_err = base, math.inf
    for k in range(-4, 5):
        cand = np.float32(base + k * np.spacing(base)) if k else base
        err = abs(float(np.float32(cand * np.float32(multiplier))) - float(target))
        if err < best_err:
            best, best_err = cand, err
    return best
