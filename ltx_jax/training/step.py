"""The jitted train step: flow-matching loss, gradients of the trained parameters, optax AdamW, optional EMA.

Counterpart: ltx-trainer `LtxvTrainer._training_step` + its optimizer / scheduler / `clip_grad_norm_` set-up
(AdamW, gradient clipping at `max_grad_norm`), in one `jax.jit`.

The model is split once into a static graph, the trained parameters (float32 master weights: LoRA factors,
or every `Param` for full fine-tuning of a float32-loaded model) and the frozen rest (the base, in bf16 or
another dtype). The forward computes in the runtime's compute dtype (bf16): every Linear casts its weight to
the activation dtype, so gradients come back in float32 for the float32 masters. The per-step key is
`fold_in(key, step)`, so a resumed run draws exactly what the uninterrupted one drew.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import NamedSharding, PartitionSpec

from ltx_jax.parallel import AttentionPlan
from ltx_jax.training.lora import LoraParam
from ltx_jax.training.objective import Batch, ObjectiveConfig, flow_matching_loss, noise_batch
from ltx_jax.transformer.modality import Modality

__all__ = ["OptimConfig", "TrainState", "Trainer", "make_optimizer", "learning_rate", "forward_loss", "step_key", "init_optimizer", "optimizer_shardings"]


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """AdamW with linear warm-up and cosine decay (defaults: the official trainer's lr 5e-4, clip 1.0)."""

    learning_rate: float = 5e-4
    warmup_steps: int = 0
    steps: int = 3000                 # total steps (the cosine reaches min_lr_ratio * lr at the end)
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.01
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    max_grad_norm: float = 1.0        # 0 disables clipping
    ema_decay: float | None = None    # e.g. 0.999; None: no EMA

    def __post_init__(self):
        if self.steps < 1 or self.warmup_steps < 0 or self.warmup_steps > self.steps:
            raise ValueError(f"optim: need steps >= 1 and 0 <= warmup_steps <= steps; got steps={self.steps}, "
                             f"warmup_steps={self.warmup_steps}")
        if not self.learning_rate > 0:
            raise ValueError(f"optim.learning_rate={self.learning_rate} must be > 0")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"optim.ema_decay={self.ema_decay} must be in (0, 1)")


def learning_rate(config: OptimConfig) -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, config.warmup_steps, max(config.steps, config.warmup_steps + 1),
        config.learning_rate * config.min_lr_ratio)


def make_optimizer(config: OptimConfig) -> optax.GradientTransformation:
    parts = [optax.clip_by_global_norm(config.max_grad_norm)] if config.max_grad_norm > 0 else []
    parts.append(optax.adamw(learning_rate(config), b1=config.b1, b2=config.b2, eps=config.eps,
                             weight_decay=config.weight_decay))
    return optax.chain(*parts)


@struct.dataclass
class TrainState:
    """Everything a resumed run needs, as one pytree: step, float32 trained params, optimizer state, EMA, key."""

    step: jax.Array          # int32 scalar: optimizer steps done
    params: Any              # nnx.State of the trained parameters
    opt_state: Any
    ema: Any                 # like params, or None
    key: jax.Array           # uint32 raw key data of the run's base key


def _trained_filter(mode: str):
    if mode == "lora":
        return LoraParam
    if mode == "full":
        return nnx.Param
    raise ValueError(f"training mode {mode!r}; expected 'lora' or 'full'")


def optimizer_shardings(tx: optax.GradientTransformation, params):
    """Shardings for `tx.init(params)`: every moment placed like its parameter (FSDP keeps Adam's m and v
    sharded; a plain jit of `init` may return them replicated), scalars (step counts) replicated on the same
    mesh. None when the parameters are not on a mesh."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    shardings = {jax.tree_util.keystr(p): getattr(x, "sharding", None) for p, x in leaves}
    mesh_sharding = next((s for s in shardings.values() if isinstance(s, NamedSharding)), None)
    if mesh_sharding is None:
        return None
    replicated = NamedSharding(mesh_sharding.mesh, PartitionSpec())

    def place(path, leaf):
        key = jax.tree_util.keystr(path)
        match = max((k for k in shardings if key.endswith(k)), key=len, default=None)
        return shardings[match] if match is not None and leaf.ndim else replicated

    return jax.tree_util.tree_map_with_path(place, jax.eval_shape(tx.init, params))


def init_optimizer(tx: optax.GradientTransformation, params):
    """`tx.init(params)`, placed by `optimizer_shardings`."""
    return jax.jit(tx.init, out_shardings=optimizer_shardings(tx, params))(params)


@dataclass(frozen=True)
class _Static:
    """The hashable, static part of a train step (one compilation per distinct value and batch shape)."""

    graphdef: nnx.GraphDef
    objective: ObjectiveConfig
    optim: OptimConfig
    plan: AttentionPlan | None = None  # sequence-parallel attention (video tokens on `context`), or None

    @property
    def tx(self) -> optax.GradientTransformation:
        return make_optimizer(self.optim)


def forward_loss(static: _Static, params, frozen, batch: Batch, key: jax.Array, empty_context=None):
    """(loss, parts) for `params` on `batch` with the draws of `key` (differentiable in params)."""
    model = nnx.merge(static.graphdef, params, frozen, copy=True)  # fresh Variables at this trace level
    noised = noise_batch(key, batch, static.objective, empty_context)
    dtype = model.compute_dtype
    video = Modality(latent=noised.video.astype(dtype), sigma=noised.sigma, timesteps=noised.video_timesteps,
                     positions=batch.video_positions, context=noised.video_context)
    audio = None
    if noised.audio is not None:
        audio = Modality(latent=noised.audio.astype(dtype), sigma=noised.sigma, timesteps=noised.audio_timesteps,
                         positions=batch.audio_positions, context=noised.audio_context)
    v_pred, a_pred = model(video, audio, plan=static.plan)
    return flow_matching_loss(v_pred, a_pred, noised, static.objective)


def step_key(state: TrainState) -> jax.Array:
    """The step's key: `fold_in(base key, step)` (a resumed run draws what the uninterrupted one drew)."""
    return jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)


@functools.partial(jax.jit, static_argnums=0)
def _loss_only(static: _Static, frozen, state: TrainState, batch: Batch, empty_context):
    return forward_loss(static, state.params, frozen, batch, step_key(state), empty_context)


def _train_step(static: _Static, frozen, state: TrainState, batch: Batch, empty_context):
    (loss, parts), grads = jax.value_and_grad(forward_loss, argnums=1, has_aux=True)(
        static, state.params, frozen, batch, step_key(state), empty_context)
    updates, opt_state = static.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema
    if ema is not None:
        d = jnp.float32(static.optim.ema_decay)
        ema = jax.tree.map(lambda e, p: d * e + (1 - d) * p, ema, params)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": learning_rate(static.optim)(state.step),
               **{f"loss_{k}": v for k, v in parts.items()}}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema=ema), metrics


# Donating the state lets XLA update it in place on accelerators; the CPU backend does not implement donation.
_train_step_jit = jax.jit(_train_step, static_argnums=0,
                          donate_argnums=(2,) if jax.default_backend() != "cpu" else ())


class Trainer:
    """Holds the static parts (graph, frozen state, optimizer, loss config) and calls the compiled step.

    Args:
        model: an `LTXModel`, with LoRA adapters added (`training.lora.add_lora`) for mode "lora".
        mode: "lora" (train `LoraParam`s, everything else frozen) or "full" (train every `Param`).
        objective, optim: loss and optimizer settings.
        empty_context: (video, audio) contexts of the empty prompt `[S, D]`, for caption dropout.
        shard: optional callable placing a state (params or frozen) on the mesh (see `training.sharding`).
        plan: the sequence-parallel attention plan when video tokens are split over `context`
            (`ltx_jax.sharding.attention_plan(rules)`); None runs single-device attention kernels (GSPMD).
    """

    def __init__(self, model: nnx.Module, *, mode: str, objective: ObjectiveConfig = ObjectiveConfig(),
                 optim: OptimConfig = OptimConfig(), empty_context: tuple[jax.Array, jax.Array] | None = None,
                 shard: Callable[[Any], Any] | None = None, plan: AttentionPlan | None = None):
        self.mode, self.objective, self.optim = mode, objective, optim
        graphdef, params, self.frozen = nnx.split(model, _trained_filter(mode), ...)
        bad = {str(v.dtype) for v in jax.tree.leaves(params) if v.dtype != jnp.float32}
        if bad:
            raise ValueError(f"trained parameters must be float32 master weights; found {sorted(bad)} (load the "
                             "model with param_dtype='float32' for full fine-tuning)")
        if not jax.tree.leaves(params):
            raise ValueError(f"mode {mode!r}: the model has no trainable parameters (add LoRA adapters first?)")
        if objective.caption_dropout_p > 0 and empty_context is None:
            raise ValueError("objective.caption_dropout_p > 0 needs the empty prompt's contexts (empty_context)")
        self.static = _Static(graphdef, objective, optim, plan)
        self.graphdef = graphdef
        self.shard = shard or (lambda s: s)
        self.frozen = self.shard(self.frozen)
        self._initial = self.shard(params)
        self.empty_context = empty_context

    def init(self, seed: int) -> TrainState:
        params = self._initial
        opt_state = init_optimizer(self.static.tx, params)
        ema = jax.tree.map(jnp.copy, params) if self.optim.ema_decay is not None else None
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, ema=ema,
                          key=jax.random.key_data(jax.random.key(seed)))

    @property
    def num_trained(self) -> int:
        return sum(int(x.size) for x in jax.tree.leaves(self._initial))

    def step(self, state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        """One optimizer step (compiled once per batch shape)."""
        return _train_step_jit(self.static, self.frozen, state, batch, self.empty_context)

    def loss(self, state: TrainState, batch: Batch):
        """(loss, parts) the next `step` would see, without updating (same draws)."""
        return _loss_only(self.static, self.frozen, state, batch, self.empty_context)

    def model(self, state: TrainState, *, ema: bool = False) -> nnx.Module:
        """The model with the state's trained parameters (or their EMA) merged in."""
        params = state.ema if ema and state.ema is not None else state.params
        return nnx.merge(self.graphdef, params, self.frozen)
