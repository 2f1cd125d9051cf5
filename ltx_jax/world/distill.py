"""Stage 3 of the embedded default (issue 17): an 8-step student distilled from the guided dev teacher.

No ltx_core counterpart (Lightricks do not publish their distillation recipe). Recipe: guided trajectory
distillation onto the official distilled sigma grid (`DISTILLED_STAGE1_SIGMAS`, 8 Euler steps, CFG = 1), the
single-round form of Meng et al. 2023, "On Distillation of Guided Diffusion Models" (the student absorbs CFG)
combined with the multi-step teacher targets of consistency distillation (Song et al. 2023): for a batch of
training clips and their captions,
  1. pick a grid interval [s_i, s_{i+1}] per sample and noise the clean latents to s_i (the forward process,
     whose marginal a flow ODE preserves, as consistency distillation does);
  2. the frozen teacher integrates from s_i to s_{i+1} with `substeps` guided Euler steps (CFG against the
     empty prompt, `cfg` on the video stream and `audio_cfg` on the audio stream, both from the same
     unconditional pass, as the dev pipeline runs it);
  3. the student, initialized from the teacher, must land on the same point with ONE Euler step without
     guidance: its velocity is regressed onto (x_teacher(s_{i+1}) - x(s_i)) / (s_{i+1} - s_i).
By default only the weights of the linear layers are trained (`trainable="linear"`): biases, norms and the AdaLN
tables keep the teacher's values, so the student is exactly the teacher plus a full-rank LoRA in the official
layout, which is how it ships (the released distilled LTX-2.3 comes as a LoRA too).
So 8 student evaluations replace the teacher's `steps` x 2 guided ones. Resumable like stage 2 (Orbax state,
data order and draws a function of (seed, step)); the student is written as `student.safetensors`, the
teacher's file with the transformer replaced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ltx_jax.sampling.schedules import DISTILLED_STAGE1_SIGMAS
from ltx_jax.training.objective import Batch
from ltx_jax.training.step import OptimConfig, TrainState, make_optimizer
from ltx_jax.world.loop import initial_state, run_steps

__all__ = ["DistillConfig", "distill"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DistillConfig:
    steps: int = 800
    batch: int = 16
    learning_rate: float = 2e-4
    warmup_steps: int = 20
    cfg: float = 3.0
    audio_cfg: float = 7.0      # the official dev defaults: video CFG 3, audio CFG 7
    substeps: int = 4
    seed: int = 0
    checkpoint_every: int = 200
    trainable: str = "linear"   # "linear": only the linear layers' weights move, so the student is the teacher
    #                             plus a LoRA (`world.package`); "all": every transformer parameter

    def __post_init__(self):
        for name in ("steps", "batch", "substeps", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"world distillation: {name}={getattr(self, name)} must be >= 1")
        if not self.learning_rate > 0 or not 0 <= self.warmup_steps <= self.steps:
            raise ValueError("world distillation: need learning_rate > 0 and 0 <= warmup_steps <= steps")
        if self.trainable not in ("linear", "all"):
            raise ValueError(f"world distillation: trainable={self.trainable!r}; expected 'linear' or 'all'")


def linear_weights(model: nnx.Module):
    """An nnx filter of the weights of `model`'s linear layers: what an official LoRA can change."""
    from ltx_jax.nn.linear import Linear

    paths = {tuple(path) + ("weight",) for path, node in nnx.iter_graph(model) if isinstance(node, Linear)}
    return lambda path, value: tuple(path) in paths


def _call(graphdef, params, rest, video, audio, sigma, batch: Batch, v_ctx, a_ctx):
    """Velocities (video, audio) of the model at `sigma` [B] (every token at the same sigma)."""
    from ltx_jax.transformer.modality import Modality

    model = nnx.merge(graphdef, params, rest, copy=True)
    t_v = jnp.broadcast_to(sigma[:, None], video.shape[:2])
    t_a = jnp.broadcast_to(sigma[:, None], audio.shape[:2])
    return model(Modality(latent=video, sigma=sigma, timesteps=t_v, positions=batch.video_positions, context=v_ctx),
                 Modality(latent=audio, sigma=sigma, timesteps=t_a, positions=batch.audio_positions, context=a_ctx))


def _double(batch: Batch) -> Batch:
    return batch.replace(video_positions=jnp.concatenate([batch.video_positions] * 2),
                         audio_positions=jnp.concatenate([batch.audio_positions] * 2))


@partial(jax.jit, static_argnames=("graphdef", "optim", "cfg", "audio_cfg", "substeps"))
def _step(state: TrainState, teacher, rest, batch: Batch, empty_v, empty_a, *, graphdef, optim: OptimConfig,
          cfg: float, audio_cfg: float, substeps: int):
    grid = jnp.asarray(DISTILLED_STAGE1_SIGMAS, jnp.float32)
    key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    k_i, k_v, k_a = jax.random.split(key, 3)
    b = batch.video.shape[0]
    i = jax.random.randint(k_i, (b,), 0, grid.size - 1)
    s0, s1 = grid[i], grid[i + 1]
    x0v, x0a = batch.video.astype(jnp.float32), batch.audio.astype(jnp.float32)
    xv = (1 - s0)[:, None, None] * x0v + s0[:, None, None] * jax.random.normal(k_v, x0v.shape)
    xa = (1 - s0)[:, None, None] * x0a + s0[:, None, None] * jax.random.normal(k_a, x0a.shape)
    doubled = _double(batch)
    ctx_v = jnp.concatenate([batch.video_context, jnp.broadcast_to(empty_v, batch.video_context.shape)])
    ctx_a = jnp.concatenate([batch.audio_context, jnp.broadcast_to(empty_a, batch.audio_context.shape)])

    def teacher_substep(k, carry):
        v, a = carry
        sa = s0 + (s1 - s0) * k / substeps
        sb = s0 + (s1 - s0) * (k + 1) / substeps
        pv, pa = _call(graphdef, teacher, rest, jnp.concatenate([v, v]), jnp.concatenate([a, a]),
                       jnp.concatenate([sa, sa]), doubled, ctx_v, ctx_a)
        cond_v, uncond_v = pv[:b], pv[b:]
        vel_v = cond_v + (cfg - 1.0) * (cond_v - uncond_v)
        vel_a = pa[:b] + (audio_cfg - 1.0) * (pa[:b] - pa[b:])
        dt = (sb - sa)[:, None, None]
        return v + dt * vel_v, a + dt * vel_a

    tv, ta = jax.lax.fori_loop(0, substeps, teacher_substep, (xv, xa))
    tv, ta = jax.lax.stop_gradient(tv), jax.lax.stop_gradient(ta)
    dt = (s1 - s0)[:, None, None]
    target_v, target_a = (tv - xv) / dt, (ta - xa) / dt

    def loss_fn(params):
        pv, pa = _call(graphdef, params, rest, xv, xa, s0, batch, batch.video_context, batch.audio_context)
        lv, la = jnp.mean(jnp.square(pv - target_v)), jnp.mean(jnp.square(pa - target_a))
        return lv + la, (lv, la)

    (loss, (lv, la)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    tx = make_optimizer(optim)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), {"loss": loss, "video": lv,
                                                                                     "audio": la}


def distill(stage2: str | Path, out: str | Path, cfg: DistillConfig, *, stop_after: int | None = None,
            log: Callable[[str], None] = print) -> dict:
    """Distill `stage2/train/model.safetensors` (the teacher) on `stage2/cache` into `out/student.safetensors`.

    Returns {"steps", "seconds", "losses" (step -> loss), and "student" once the last step is done}.
    """
    from ltx_jax.checkpoint import restore
    from ltx_jax.configs import Runtime
    from ltx_jax.pipelines.stages import load_prompt
    from ltx_jax.training.data import CachedDataset
    from ltx_jax.training.export import save_full_checkpoint

    stage2, out = Path(stage2), Path(out)
    teacher_file = stage2 / "train" / "model.safetensors"
    if not teacher_file.is_file():
        raise FileNotFoundError(f"{teacher_file}: no trained teacher; run `ltx-jax world-dit` to its last step")
    out.mkdir(parents=True, exist_ok=True)
    rt = Runtime(param_dtype="float32", compute_dtype="float32")
    model = restore(teacher_file, "transformer", runtime=rt)
    graphdef, params, rest = nnx.split(model, linear_weights(model) if cfg.trainable == "linear" else nnx.Param, ...)
    teacher = jax.tree.map(jnp.copy, params)
    optim = OptimConfig(learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps, steps=cfg.steps,
                        min_lr_ratio=0.1, weight_decay=0.0)
    state = initial_state(params, optim, cfg.seed)
    empty = load_prompt(stage2 / "empty.npz").positive
    empty_v, empty_a = jnp.asarray(empty.video[0], jnp.float32), jnp.asarray(empty.audio[0], jnp.float32)
    data = CachedDataset(stage2 / "cache", batch_size=cfg.batch, seed=cfg.seed, with_audio=True)
    record = {"what": "world distillation", "config": dataclasses.asdict(cfg), "data": data.fingerprint}

    def step(state: TrainState, s: int):
        state, metrics = _step(state, teacher, rest, data.batch(s), empty_v, empty_a, graphdef=graphdef,
                               optim=optim, cfg=cfg.cfg, audio_cfg=cfg.audio_cfg, substeps=cfg.substeps)
        return state, metrics

    state, losses, seconds = run_steps(out, state, record, step, total=cfg.steps, save_every=cfg.checkpoint_every,
                                       stop_after=stop_after, label="distill step", log=log)
    result = {"steps": int(state.step), "seconds": seconds, "losses": losses}
    if int(state.step) == cfg.steps:
        student = nnx.merge(graphdef, state.params, rest)
        result["student"] = str(save_full_checkpoint(student, teacher_file, out / "student.safetensors",
                                                     dtype="float32"))
    return result
