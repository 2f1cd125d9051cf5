"""Jitted denoising loops: Euler (the dev model guided, the distilled model unguided) and res_2s.

Counterparts: ltx_pipelines `utils/samplers.py` (`euler_denoising_loop`, `res2s_audio_video_denoising_loop`) with
the denoising functions of `utils/helpers.py`, and ltx_core `components/diffusion_steps.py`.

Each loop is one `jax.jit` around a `lax.scan` over the steps (res_2s: over its evaluations), so a whole run
compiles once per shape and pass structure. Everything that varies between runs of one shape is an array
argument: latents (donated), contexts, masks, positions, sigmas, guidance scales, STG blocks, SDE noise or
its key, and the id of the host callbacks. `TRACES` counts traces per loop, for tests.

Progress and x0 previews leave through `jax.debug.callback` to a dispatcher keyed by run id (no recompiles).
"""

from __future__ import annotations

import collections
import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from ltx_jax.sampling.conditioning import LatentState, post_process_latent
from ltx_jax.sampling.guidance import GuiderParams
from ltx_jax.sampling.noise import sde_noise
from ltx_jax.sampling.samplers import DenoiseSpec, Guidance, Prompt, denoise, model_sigma
from ltx_jax.sampling.schedules import dev_sigmas, distilled_sigmas
from ltx_jax.sampling.steps import euler_step, res2s_plan, res2s_step, res2s_substep
from ltx_jax.sharding import ShardingRules, constrain, place, shard_state
from ltx_jax.transformer import Perturbations

__all__ = ["Sampler", "Callbacks", "LoopResult", "sample", "lower", "distilled_sampler", "dev_sampler", "res2s_sampler",
           "TRACES"]

TRACES: collections.Counter = collections.Counter()  # {"euler" | "res2s": traces so far}
_CALLBACKS: dict[int, Callbacks] = {}
_RUN_IDS = itertools.count()


@dataclass(frozen=True)
class Callbacks:
    """Host callbacks of one run.

    Attributes:
        progress: `(step, total, sigma)` after each model evaluation (res_2s: 2 per step, plus the final one).
        preview: `(step, x0)` with the blended video x0 of the grid tokens, numpy `[B, F'*H'*W', C]`
            (a `tiny_vae.PreviewHook` with `grid=(F', H', W')` fits).
    """

    progress: Callable[[int, int, float], None] | None = None
    preview: Callable[[int, np.ndarray], None] | None = None


def _dispatch(kind: str, run_id, step, value) -> None:
    cb = _CALLBACKS.get(int(run_id))
    if cb is None:
        return
    if kind == "progress" and cb.progress is not None:
        total, sigma = value
        cb.progress(int(step), int(total), float(sigma))
    elif kind == "preview" and cb.preview is not None:
        cb.preview(int(step), np.asarray(value))


@dataclass(frozen=True)
class _Plan:
    """Static part of a loop call (hashable): passes and batching, what to record and report, final eval."""

    denoise: DenoiseSpec
    record: bool = False
    progress: bool = False
    preview_tokens: int = 0  # > 0: send the first `preview_tokens` video x0 tokens to `Callbacks.preview`
    skip: bool = False
    explicit_noise: bool = False
    ordered: bool = True  # ordered host callbacks are refused on multi-device computations


@struct.dataclass
class _Fixed:
    """The loop's non-donated inputs: the states without their latents, prompt, perturbations, run id."""

    video: LatentState
    audio: LatentState
    prompt: Prompt
    perturbations: Perturbations
    run_id: jax.Array
    total: jax.Array


def _report(plan: _Plan, fixed: _Fixed, step: jax.Array, sigma: jax.Array, x0_video: jax.Array) -> None:
    if plan.progress:
        jax.debug.callback(functools.partial(_dispatch, "progress"), fixed.run_id, step, (fixed.total, sigma),
                           ordered=plan.ordered)
    if plan.preview_tokens:
        jax.debug.callback(functools.partial(_dispatch, "preview"), fixed.run_id, step,
                           x0_video[:, :plan.preview_tokens], ordered=plan.ordered)


def _evaluate(graphdef, params, fixed: _Fixed, xv, xa, sigma_m, sigma_t, scales, plan: _Plan):
    """Guided x0 of both streams at the given latents, and the per-pass x0 (see `samplers.denoise`)."""
    v, a = fixed.video.replace(latent=xv), fixed.audio.replace(latent=xa)
    return denoise(graphdef, params, v, a, fixed.prompt, sigma_m, sigma_t, scales, fixed.perturbations, plan.denoise)


def _blend(fixed: _Fixed, gv, ga):
    """`post_process_latent` of both streams: the x0 the steppers use."""
    return (post_process_latent(gv, fixed.video.denoise_mask, fixed.video.clean_latent),
            post_process_latent(ga, fixed.audio.denoise_mask, fixed.audio.clean_latent))


def _record(plan: _Plan, xv, xa, raw) -> dict | None:
    if not plan.record:
        return None
    gv, ga, pv, pa = raw
    return {"video_latent_in": xv, "audio_latent_in": xa, "video_x0": gv, "audio_x0": ga, "video_x0_passes": pv,
            "audio_x0_passes": pa}


@functools.partial(jax.jit, static_argnames=("graphdef", "plan"), donate_argnames=("video_latent", "audio_latent"))
def _euler_loop(graphdef, params, video_latent, audio_latent, fixed: _Fixed, sigmas, scales, skip, *, plan: _Plan):
    """`euler_denoising_loop`: sigmas `[N+1]`, scales `[N, 2, 5]`, skip `[N]` bool (reuse the last x0)."""
    TRACES["euler"] += 1
    rules = plan.denoise.rules

    def body(carry, xs):
        xv, xa, last = carry
        i, sigma, sigma_next, scale, skip_i = xs
        evaluate = functools.partial(_evaluate, graphdef, params, fixed, xv, xa, sigma, sigma, scale, plan)
        if plan.skip:  # a skipped step reuses the last guided x0 without running the model (as ltx_pipelines)
            n = len(plan.denoise.passes)
            def reuse():
                return (*last, jnp.zeros((n, *xv.shape), xv.dtype), jnp.zeros((n, *xa.shape), xa.dtype))
            raw = jax.lax.cond(skip_i, reuse, evaluate)
            last = raw[:2]
        else:
            raw = evaluate()
        bv, ba = _blend(fixed, raw[0], raw[1])
        _report(plan, fixed, i, sigma, bv)
        out = _record(plan, xv, xa, raw)
        xv = constrain(euler_step(xv, bv, sigma, sigma_next), rules, "activation.state.video")
        xa = constrain(euler_step(xa, ba, sigma, sigma_next), rules, "activation.state.audio")
        return (xv, xa, last), out

    n = sigmas.shape[0] - 1
    last = (jnp.zeros_like(video_latent), jnp.zeros_like(audio_latent)) if plan.skip else ()
    xs = (jnp.arange(n, dtype=jnp.int32), sigmas[:-1], sigmas[1:], scales, skip)
    (xv, xa, _), recorded = jax.lax.scan(body, (video_latent, audio_latent, last), xs)
    return xv, xa, recorded


@functools.partial(jax.jit, static_argnames=("graphdef", "plan"), donate_argnames=("video_latent", "audio_latent"))
def _res2s_loop(graphdef, params, video_latent, audio_latent, fixed: _Fixed, evals, scales, noise, *, plan: _Plan):
    """`res2s_audio_video_denoising_loop` (legacy mode) as one scan over its model evaluations.

    evals: dict of `[E]` arrays: `phase` (0 at sigma_i, 1 at the sub-step, 2 the final eval), `step`,
    `sigma_t`, `sigma_m`, and `row` `[E, len(RES2S_COLUMNS)]`. noise: `(video [N, 2, B, Tv, C],
    audio [N, 2, B, Ta, Ca])` already normalized (sub-step, step), or a PRNG key.
    """
    TRACES["res2s"] += 1
    rules = plan.denoise.rules
    fv, fa = fixed.video, fixed.audio

    def draw(step, phase, x, stream):
        if plan.explicit_noise:
            arr = noise[stream]
            return jax.lax.dynamic_index_in_dim(jax.lax.dynamic_index_in_dim(arr, step, 0, False),
                                                jnp.minimum(phase, 1), 0, False)
        key = jax.random.fold_in(jax.random.fold_in(noise, step * 2 + jnp.minimum(phase, 1)), stream)
        return sde_noise(key, x.shape)

    def body(carry, xs):
        xv, xa, anc_v, eps_v, anc_a, eps_a = carry
        e, phase, step, sigma_t, sigma_m, row, scale = xs
        raw = _evaluate(graphdef, params, fixed, xv, xa, sigma_m, sigma_t, scale, plan)
        bv, ba = _blend(fixed, raw[0], raw[1])
        _report(plan, fixed, e, sigma_t, bv)
        out = _record(plan, xv, xa, raw)
        nv, na = draw(step, phase, xv, 0), draw(step, phase, xa, 1)

        def sub(_):
            mv, av_, ev_ = res2s_substep(xv, bv, nv, row, fv.denoise_mask, fv.clean_latent)
            ma, aa, ea = res2s_substep(xa, ba, na, row, fa.denoise_mask, fa.clean_latent)
            return mv, ma, av_, ev_, aa, ea

        def full(_):
            nxv = res2s_step(anc_v, eps_v, bv, nv, row, fv.denoise_mask, fv.clean_latent, xv.dtype)
            nxa = res2s_step(anc_a, eps_a, ba, na, row, fa.denoise_mask, fa.clean_latent, xa.dtype)
            return nxv, nxa, anc_v, eps_v, anc_a, eps_a

        def final(_):
            return bv.astype(xv.dtype), ba.astype(xa.dtype), anc_v, eps_v, anc_a, eps_a

        new = jax.lax.switch(phase, (sub, full, final), None)
        new = (constrain(new[0], rules, "activation.state.video"), constrain(new[1], rules, "activation.state.audio"), *new[2:])
        return new, out

    f32 = lambda x: jnp.zeros(x.shape, jnp.promote_types(x.dtype, jnp.float32))  # noqa: E731
    init = (video_latent, audio_latent, f32(video_latent), f32(video_latent), f32(audio_latent), f32(audio_latent))
    n = evals["phase"].shape[0]
    xs = (jnp.arange(n, dtype=jnp.int32), evals["phase"], evals["step"], evals["sigma_t"], evals["sigma_m"],
          evals["row"], scales)
    carry, recorded = jax.lax.scan(body, init, xs)
    return carry[0], carry[1], recorded


@dataclass(frozen=True, eq=False)
class Sampler:
    """A denoising loop's recipe: schedule, method and guidance.

    Attributes:
        sigmas: float32 `[N + 1]` schedule (N steps).
        method: "euler" or "res2s".
        guidance: per-stream guidance; the default (neutral) is one pass per evaluation.
        batched_passes: guidance passes as one batched forward (else one forward per pass).
        bongmath: res_2s anchor refinement.
    """

    sigmas: np.ndarray
    method: str = "euler"
    guidance: Guidance = field(default_factory=Guidance)
    batched_passes: bool = True
    bongmath: bool = True

    def __post_init__(self):
        s = np.asarray(self.sigmas, np.float32).reshape(-1)
        if s.size < 2:
            raise ValueError(f"a schedule needs at least 2 sigmas (1 step); got {s.size}")
        if not (np.all(np.isfinite(s)) and np.all(np.diff(s) < 0) and np.all(s[:-1] > 0) and s[-1] >= 0):
            raise ValueError(f"sigmas must be finite, positive and strictly decreasing (a final 0 allowed); got {s}")
        if self.method not in ("euler", "res2s"):
            raise ValueError(f"method must be 'euler' or 'res2s'; got {self.method!r}")
        if self.method == "res2s" and self.guidance.skip_step:
            raise ValueError("skip_step is not supported with res_2s")
        object.__setattr__(self, "sigmas", s)

    @property
    def steps(self) -> int:
        return self.sigmas.size - 1


def distilled_sampler(stage: int = 1) -> Sampler:
    """The distilled model's sampler: fixed sigmas (8 stage-1 or 3 stage-2 steps), one pass, Euler."""
    return Sampler(distilled_sigmas(stage))


def dev_sampler(steps: int, video: GuiderParams, audio: GuiderParams, *, tokens: int | None = None) -> Sampler:
    """The dev model's guided Euler sampler on the `LTX2Scheduler` schedule (tokens None: the pipelines' 4096)."""
    return Sampler(dev_sigmas(steps, tokens), guidance=Guidance(video, audio))


def res2s_sampler(steps: int, video: GuiderParams, audio: GuiderParams, *, tokens: int | None = None,
                  sigmas: np.ndarray | None = None) -> Sampler:
    """The HQ pipeline's res_2s sampler (stage 1: `LTX2Scheduler` with the stage's token count)."""
    return Sampler(dev_sigmas(steps, tokens) if sigmas is None else sigmas, method="res2s",
                   guidance=Guidance(video, audio))


@struct.dataclass
class LoopResult:
    """Final states (appended conditioning tokens still in; `clear_conditioning` drops them) and, when
    requested, every evaluation's inputs and outputs stacked on a leading axis."""

    video: LatentState
    audio: LatentState
    record: dict[str, Any] | None = None


def _res2s_evals(sampler: Sampler) -> tuple[dict[str, np.ndarray], np.ndarray]:
    plan = res2s_plan(sampler.sigmas, bongmath=sampler.bongmath)
    rows, phase, step, sigma_t, sigma_m = [], [], [], [], []
    for i in range(plan.steps):
        sub = float(plan.column("sub_sigma")[i])
        for ph, s_t, s_m in ((0, np.float32(plan.loop_sigmas[i]), np.float32(plan.loop_sigmas[i])),
                             (1, np.float32(sub), model_sigma(sub))):
            rows.append(plan.table[i]), phase.append(ph), step.append(i), sigma_t.append(s_t), sigma_m.append(s_m)
    if plan.final_eval:
        last = np.float32(plan.loop_sigmas[-2])
        rows.append(plan.table[-1]), phase.append(2), step.append(plan.steps - 1)
        sigma_t.append(last), sigma_m.append(last)
    evals = {"phase": np.asarray(phase, np.int32), "step": np.asarray(step, np.int32),
             "sigma_t": np.asarray(sigma_t, np.float32), "sigma_m": np.asarray(sigma_m, np.float32),
             "row": np.asarray(rows, np.float32)}
    return evals, plan.loop_sigmas


def _prepare(dit, sampler: Sampler, video: LatentState, audio: LatentState, prompt: Prompt, *, callbacks, grid_tokens,
             key, sde_noise, rules, record):
    """(jitted loop, positional args, static plan, run id, callbacks) of one run, inputs checked and placed."""
    graphdef, params = dit
    b = video.latent.shape[0]
    if audio.latent.shape[0] != b:
        raise ValueError(f"video batch {b} != audio batch {audio.latent.shape[0]}")
    g = sampler.guidance
    passes = g.passes
    if "uncond" in passes and prompt.negative is None:
        raise ValueError("this guidance runs CFG (cfg_scale != 1): pass prompt.negative (the negative prompt)")
    cb = callbacks or Callbacks()
    run_id = next(_RUN_IDS)
    plan = _Plan(denoise=DenoiseSpec(passes=passes, batched=sampler.batched_passes, rules=rules), record=record,
                 progress=cb.progress is not None,
                 preview_tokens=(grid_tokens or video.num_tokens) if cb.preview is not None else 0,
                 skip=bool(g.skip_step), explicit_noise=sde_noise is not None,
                 ordered=rules is None or rules.mesh.size == 1)
    vl, al = video.latent, audio.latent
    for name, x in (("video", vl), ("audio", al)):
        if isinstance(x, jax.Array) and x.is_deleted():
            raise ValueError(f"{name}.latent was donated to an earlier loop; pass the state that loop returned "
                             "or a fresh array")
    if vl is video.clean_latent:  # the latent is donated; its clean copy must survive
        vl = jnp.array(vl, copy=True)
    if al is audio.clean_latent:
        al = jnp.array(al, copy=True)
    if sampler.method == "euler":
        n = sampler.steps
        skip = np.asarray([GuiderParams(skip_step=g.skip_step).should_skip_step(i) for i in range(n)])
        args, total = (sampler.sigmas, np.broadcast_to(g.scales(), (n, 2, 5)).copy(), skip), n
    else:
        evals, _ = _res2s_evals(sampler)
        total = evals["phase"].shape[0]
        if sde_noise is None:
            if key is None:
                raise ValueError("res_2s needs key= (our SDE noise) or sde_noise= (recorded)")
            noise = key
        else:
            noise = tuple(jnp.asarray(x, jnp.float32) for x in sde_noise)
            expect = [(sampler.steps, 2, *x.shape) for x in (vl, al)]
            if [tuple(x.shape) for x in noise] != expect:
                raise ValueError(f"sde_noise shapes {[x.shape for x in noise]}; expected {expect}")
        args = (evals, np.broadcast_to(g.scales(), (total, 2, 5)).copy(), noise)
    fixed = _Fixed(video=video.replace(latent=None), audio=audio.replace(latent=None), prompt=prompt,
                   perturbations=g.perturbations(_num_layers(params), b), run_id=jnp.asarray(run_id, jnp.int32),
                   total=jnp.asarray(total, jnp.int32))
    if rules is not None:  # a sharded jit's inputs must live on the mesh (parameters by their rules)
        params = shard_state(params, rules)
        vl, al = place(vl, rules, "activation.state.video"), place(al, rules, "activation.state.audio")
        fixed, args = place(fixed, rules, "activation.inputs"), place(args, rules, "activation.inputs")
    loop = _euler_loop if sampler.method == "euler" else _res2s_loop
    return loop, (graphdef, params, vl, al, fixed, *args), plan, run_id, cb


def sample(dit: tuple[nnx.GraphDef, nnx.State], sampler: Sampler, video: LatentState, audio: LatentState,
           prompt: Prompt, *, callbacks: Callbacks | None = None, grid_tokens: int | None = None,
           key: jax.Array | None = None, sde_noise: tuple[jax.Array, jax.Array] | None = None,
           rules: ShardingRules | None = None, record: bool = False) -> LoopResult:
    """Run a denoising loop from noised states (`denoise_audio_video`'s loop part).

    Args:
        dit: `nnx.split(LTXModel)`.
        sampler: from `distilled_sampler`, `dev_sampler`, `res2s_sampler` or `Sampler(...)`.
        video, audio: noised states; `latent` `[B, T, C]` is donated (do not reuse it afterwards).
        prompt: contexts (`negative` needed for CFG).
        callbacks: host progress / preview callbacks.
        grid_tokens: video tokens of the latent grid (appended keyframe tokens excluded) for the preview.
        key: res_2s: PRNG key of the SDE noise (ours; the official draws cannot be reproduced).
        sde_noise: res_2s: explicit normalized SDE noise instead, `(video [N, 2, B, Tv, C], audio [N, 2, B,
            Ta, Ca])`, index 1 = (sub-step, step): replays a recorded official run.
        rules: shard the passes / tokens over a mesh (see `ltx_jax.sharding`).
        record: also return every evaluation's latent input, guided x0 and per-pass x0 (for parity).
    """
    loop, args, plan, run_id, cb = _prepare(dit, sampler, video, audio, prompt, callbacks=callbacks,
                                            grid_tokens=grid_tokens, key=key, sde_noise=sde_noise, rules=rules,
                                            record=record)
    if cb.progress is not None or cb.preview is not None:
        _CALLBACKS[run_id] = cb
    try:
        xv, xa, recorded = loop(*args, plan=plan)
        if run_id in _CALLBACKS:
            jax.block_until_ready((xv, xa))
            jax.effects_barrier()
    finally:
        _CALLBACKS.pop(run_id, None)
    return LoopResult(video=video.replace(latent=xv), audio=audio.replace(latent=xa), record=recorded)


def lower(dit: tuple[nnx.GraphDef, nnx.State], sampler: Sampler, video: LatentState, audio: LatentState,
          prompt: Prompt, **kwargs) -> jax.stages.Lowered:
    """The lowered loop of `sample(...)` with the same arguments, without running it (HLO, compile time, cost)."""
    loop, args, plan, _, _ = _prepare(dit, sampler, video, audio, prompt, callbacks=kwargs.pop("callbacks", None),
                                      grid_tokens=kwargs.pop("grid_tokens", None), key=kwargs.pop("key", None),
                                      sde_noise=kwargs.pop("sde_noise", None), rules=kwargs.pop("rules", None),
                                      record=kwargs.pop("record", False))
    if kwargs:
        raise TypeError(f"unexpected arguments {sorted(kwargs)}")
    return loop.lower(*args, plan=plan)


def _num_layers(params: nnx.State) -> int:
    """Number of DiT blocks: the stacked parameters' leading axis, summed over FP8 segments (int path[1])."""
    layers: dict = {}
    for path, var in nnx.to_flat_state(params):
        if path and path[0] == "transformer_blocks":
            layers.setdefault(path[1] if isinstance(path[1], int) else None, jax.tree.leaves(var.get_value())[0].shape[0])
    if not layers:
        raise ValueError("params hold no transformer_blocks: not an LTXModel state")
    return sum(layers.values())
