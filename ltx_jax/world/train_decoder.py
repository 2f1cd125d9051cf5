"""Stage 1b of the embedded default (issue 17): the video VAE's decoder trained on with the encoder frozen.

No ltx_core counterpart (ltx-core ships no VAE training). Why a second stage: stage 1 (`world.train_vae`) trains
encoder and decoder together and fixes the latent space the DiT learns; its decoder is still blurry when that
space has settled (objects drawn as soft blobs, textures washed out). Training the decoder further on the frozen
encoder's latents, as Stable Diffusion's ft-MSE decoder and LTX-Video's decoder fine-tuning do, sharpens the
reconstructions without moving the latent space: the DiT trained on stage 1's latents is unaffected, and stage 2
may run before, after or beside this stage.

Recipe: a pool of `pool` clips of the world seed `seed` is rendered and encoded once (the encoder is frozen, so
their latents are fixed: no rendering or encoding per step); each step draws `batch` of them from (seed, step);
loss `train_vae.pixel_loss` as in stage 1 (L1 + MSE, object pixels weighted), with a smaller object weight (the
heavy weight there made the decoder spread the object's colour over its surroundings); AdamW with warm-up and cosine
decay. Output in `out/`: `video_vae.npz` (stage 1's encoder and latent statistics bit for bit, the new decoder)
and `video_vae.json` (stage 1's config, this stage's config, held-out metrics as stage 1 writes them).
Resumable like every world stage (`world.loop`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ltx_jax.nn.conv import size_invariant
from ltx_jax.training.step import OptimConfig, TrainState, make_optimizer
from ltx_jax.world.loop import initial_state, run_steps
from ltx_jax.world.train_vae import held_out, load_autoencoder, pixel_loss, save_weights, world_clips

__all__ = ["DecoderTrainConfig", "train_decoder"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecoderTrainConfig:
    steps: int = 3600
    batch: int = 8
    learning_rate: float = 1e-3  # the encoder is frozen, so the rate that collapsed stage 1's latents is safe here
    warmup_steps: int = 20
    object_weight: float = 2.0
    pool: int = 2048        # training clips, rendered and encoded once
    seed: int = 0           # world seed of the pool (stage 1's training clips)
    save_every: int = 100

    def __post_init__(self):
        for name in ("steps", "batch", "pool", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"world decoder training: {name}={getattr(self, name)} must be >= 1")
        if self.pool < self.batch:
            raise ValueError(f"world decoder training: pool={self.pool} clips cannot fill a batch of {self.batch}")
        if self.object_weight < 0:
            raise ValueError(f"world decoder training: object_weight={self.object_weight} must be >= 0")
        if not self.learning_rate > 0 or not 0 <= self.warmup_steps <= self.steps:
            raise ValueError(f"world decoder training: need lr > 0 and 0 <= warmup_steps <= steps (lr="
                             f"{self.learning_rate}, warmup_steps={self.warmup_steps}, steps={self.steps})")


def _optim(cfg: DecoderTrainConfig) -> OptimConfig:
    return OptimConfig(learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps, steps=cfg.steps,
                       min_lr_ratio=0.05, weight_decay=0.0, max_grad_norm=1.0, b2=0.99)


@partial(jax.jit, static_argnames=("graphdef",))
def _encode(params, video: jax.Array, *, graphdef) -> jax.Array:
    with size_invariant(jax.default_backend() == "cpu"):
        return nnx.merge(graphdef, params)(video)


@partial(jax.jit, static_argnames=("graphdef", "optim", "object_weight"), donate_argnums=0)
def _train_step(state: TrainState, fixed, latent: jax.Array, video: jax.Array, *, graphdef, optim: OptimConfig,
                object_weight: float) -> tuple[TrainState, jax.Array]:
    """One step on the decoder's `nnx.Param`s; `fixed` (its latent statistics) stays as stage 1 fitted it."""
    tx = make_optimizer(optim)

    def loss_fn(params):
        with size_invariant(jax.default_backend() == "cpu"):
            return pixel_loss(nnx.merge(graphdef, params, fixed)(latent), video, object_weight)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state, ema=None, key=state.key), loss


def _pool(vae_cfg, encoder: tuple, cfg: DecoderTrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 clips [pool, F, H, W, 3], their latents [pool, F', H', W', C]) of world seed `cfg.seed`."""
    spec = vae_cfg.world(cfg.seed)
    frames, latents = [], []
    for i in range(0, cfg.pool, 16):
        clips = world_clips(spec, i, min(16, cfg.pool - i))
        latents.append(np.asarray(_encode(encoder[1], jnp.asarray(clips), graphdef=encoder[0])))
        frames.append(np.rint((clips + 1.0) * 127.5).astype(np.uint8))  # exact: the clips are uint8 / 127.5 - 1
    return np.concatenate(frames), np.concatenate(latents)


def train_decoder(out: str | Path, vae: str | Path, cfg: DecoderTrainConfig, *, stop_after: int | None = None,
                  log: Callable[[str], None] = print) -> dict:
    """Train (or resume) the decoder of the finished stage-1 run `vae` (`train_vae.load_autoencoder`) in `out/`
    (`checkpoints/`, `loss.jsonl`, and when done `video_vae.npz` + `video_vae.json`).

    Returns:
        {"step", "seconds", and, only when the last step is done, "held_out_psnr", "held_out_agreement",
        "stage1_held_out_psnr" (the same clips through stage 1's decoder)}.
    """
    out = Path(out)
    vae_cfg, graphdef, params = load_autoencoder(vae)
    model = nnx.merge(graphdef, params)
    encoder = nnx.split(model.encoder)
    dec_graphdef, dec_params, fixed = nnx.split(model.decoder, nnx.Param, ...)
    out.mkdir(parents=True, exist_ok=True)
    optim = _optim(cfg)
    state = initial_state(dec_params, optim, cfg.seed)
    record = {"what": "world video VAE decoder", "config": dataclasses.asdict(cfg),
              "stage1": dataclasses.asdict(vae_cfg)}
    pool: list = []  # rendered at the first step this call runs (a finished run resumed renders nothing)

    def step(state: TrainState, s: int):
        if not pool:
            log(f"rendering and encoding {cfg.pool} pool clips")
            pool.extend(_pool(vae_cfg, encoder, cfg))
        frames, latents = pool
        pick = np.sort(np.random.default_rng([cfg.seed, s]).choice(cfg.pool, cfg.batch, replace=False))
        video = jnp.asarray(frames[pick].astype(np.float32) / 127.5 - 1.0)
        state, loss = _train_step(state, fixed, jnp.asarray(latents[pick]), video, graphdef=dec_graphdef,
                                  optim=optim, object_weight=cfg.object_weight)
        return state, {"loss": loss}

    state, _, seconds = run_steps(out, state, record, step, total=cfg.steps, save_every=cfg.save_every,
                                  stop_after=stop_after, log=log)
    result = {"step": int(state.step), "seconds": seconds}
    if int(state.step) < cfg.steps:
        return result
    vae_cfg, graphdef, params = load_autoencoder(vae)  # afresh: the steps donated the decoder's arrays
    before = held_out(vae_cfg, graphdef, params)["held_out_psnr"]
    model = nnx.merge(graphdef, params)
    nnx.update(model.decoder, state.params)
    _, params = nnx.split(model)
    metrics = {**held_out(vae_cfg, graphdef, params), "stage1_held_out_psnr": before}
    log(f"held-out PSNR {metrics['held_out_psnr']:.2f} dB (stage 1's decoder: {before:.2f} dB), analyzer agreement "
        f"on the reconstructions {metrics['held_out_agreement']}")
    save_weights(out, vae_cfg, params, {**metrics, "decoder": dataclasses.asdict(cfg)})
    return {**result, **metrics}
