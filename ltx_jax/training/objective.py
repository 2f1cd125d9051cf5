"""The flow-matching training objective of LTX-2 / LTX-2.3: noising, per-token timesteps, masked velocity loss.

Counterpart: ltx-trainer (Lightricks' PyTorch trainer) `training_strategies/text_to_video.py`
(`prepare_training_inputs`, `_prepare_audio_inputs`, `compute_loss`) and `timestep_samplers.py`
(`ShiftedLogitNormalTimestepSampler`); the noising is ltx_core's `GaussianNoiser` arithmetic
(`x = eps * (m * s) + x0 * (1 - m * s)` with denoise mask m), shared with the samplers through
`ltx_jax.sampling.noise.noise_latent`.

Per sample, one sigma for video and audio: `sigma = sigmoid(std * n + mu(T))`, n ~ N(0, 1), with
`mu(T) = dev_shift(T)` the dev scheduler's token-count shift (T = video tokens F'*H'*W'). This is the
same shift the dev schedule applies (`e^mu / (e^mu + 1/s - 1)` equals `sigmoid(logit(s) + mu)`), applied to
a logit-normal base instead of a uniform grid, as the official trainer does.

First-frame conditioning (image-to-video), with probability `first_frame_p` per sample: the tokens of
latent frame 0 keep their clean value, get timestep 0 and are left out of the loss, as the pipelines
condition (`denoise_mask = 0`, per-token timestep `sigma * mask`). The video loss is the official
`mean(mask * (v - target)^2) / mean(mask)`; the audio loss (no conditioning) is a plain mean.
Caption dropout swaps a sample's contexts for the empty prompt's, so the model learns the unconditional
branch classifier-free guidance needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from ltx_jax.sampling.noise import noise_latent
from ltx_jax.sampling.schedules import dev_shift

__all__ = ["ObjectiveConfig", "Batch", "Noised", "sample_sigmas", "first_frame_mask", "noise_batch",
           "masked_mse", "flow_matching_loss"]


@dataclass(frozen=True, kw_only=True)
class ObjectiveConfig:
    """Loss settings (defaults: the official trainer's `text_to_video` strategy and `shifted_logit_normal`)."""

    sigma_std: float = 1.0           # std of the logit-normal before the shift
    shift: float | None = None       # None: dev_shift(video tokens); a number fixes mu
    first_frame_p: float = 0.1       # probability of first-frame (i2v) conditioning per sample
    caption_dropout_p: float = 0.0   # probability of the empty-prompt context per sample
    video_weight: float = 1.0
    audio_weight: float = 1.0

    def __post_init__(self):
        for name in ("first_frame_p", "caption_dropout_p"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"objective.{name}={v} must be in [0, 1]")
        if not self.sigma_std > 0:
            raise ValueError(f"objective.sigma_std={self.sigma_std} must be > 0")
        if self.video_weight < 0 or self.audio_weight < 0:
            raise ValueError("objective video_weight / audio_weight must be >= 0")


@struct.dataclass
class Batch:
    """One training batch of cached latents and contexts (patchified tokens, channels last).

    `frame_tokens` (H' * W', tokens per latent frame) is static: it sizes the first-frame mask.
    Audio fields are None for video-only data.
    """

    video: jax.Array                    # [B, Tv, C] clean video latent tokens
    video_positions: jax.Array          # [B, 3, Tv, 2]
    video_context: jax.Array            # [B, S, Dv]
    audio_context: jax.Array            # [B, S, Da]
    audio: jax.Array | None = None      # [B, Ta, Ca]
    audio_positions: jax.Array | None = None  # [B, 1, Ta, 2]
    frame_tokens: int = struct.field(pytree_node=False, default=1)


@struct.dataclass
class Noised:
    """What the model sees and what it must predict, for one batch."""

    video: jax.Array            # noised video tokens
    video_timesteps: jax.Array  # [B, Tv] sigma * denoise mask
    video_target: jax.Array     # eps - x0
    video_loss_mask: jax.Array  # [B, Tv] 1 = in the loss
    sigma: jax.Array            # [B]
    video_context: jax.Array
    audio_context: jax.Array
    audio: jax.Array | None = None
    audio_timesteps: jax.Array | None = None
    audio_target: jax.Array | None = None


def sample_sigmas(key: jax.Array, batch: int, tokens: int, config: ObjectiveConfig) -> jax.Array:
    """`[B]` float32 `sigmoid(std * n + mu)`, mu = dev_shift(tokens) unless fixed."""
    mu = dev_shift(int(tokens)) if config.shift is None else float(config.shift)
    n = jax.random.normal(key, (batch,), jnp.float32)
    return jax.nn.sigmoid(n * jnp.float32(config.sigma_std) + jnp.float32(mu))


def first_frame_mask(key: jax.Array, batch: int, tokens: int, frame_tokens: int, p: float) -> jax.Array:
    """`[B, T]` bool, True for the tokens of latent frame 0 in the samples drawn for conditioning."""
    chosen = jax.random.uniform(key, (batch,)) < p
    first = jnp.arange(tokens) < frame_tokens
    return chosen[:, None] & first[None, :]


def noise_batch(key: jax.Array, batch: Batch, config: ObjectiveConfig,
                empty_context: tuple[jax.Array, jax.Array] | None = None) -> Noised:
    """Draw sigma, conditioning, noise and caption dropout for `batch` from one key (all in float32).

    Key use (fixed order, so runs are reproducible): split into sigma, first-frame, video noise, audio noise,
    caption dropout.
    """
    b, t, _ = batch.video.shape
    k_sigma, k_cond, k_vn, k_an, k_drop = jax.random.split(key, 5)
    sigma = sample_sigmas(k_sigma, b, t, config)
    cond = first_frame_mask(k_cond, b, t, batch.frame_tokens, config.first_frame_p)
    denoise = 1.0 - cond.astype(jnp.float32)                     # [B, T]
    x0 = batch.video.astype(jnp.float32)
    eps = jax.random.normal(k_vn, x0.shape, jnp.float32)
    video = noise_latent(x0, eps, denoise[..., None], sigma[:, None, None])
    v_ctx, a_ctx = batch.video_context, batch.audio_context
    if config.caption_dropout_p > 0:
        if empty_context is None:
            raise ValueError("caption_dropout_p > 0 needs the empty prompt's contexts (empty_context)")
        drop = jax.random.uniform(k_drop, (b,)) < config.caption_dropout_p
        v_ctx = jnp.where(drop[:, None, None], jnp.broadcast_to(empty_context[0], v_ctx.shape).astype(v_ctx.dtype),
                          v_ctx)
        a_ctx = jnp.where(drop[:, None, None], jnp.broadcast_to(empty_context[1], a_ctx.shape).astype(a_ctx.dtype),
                          a_ctx)
    out = Noised(video=video, video_timesteps=sigma[:, None] * denoise, video_target=eps - x0,
                 video_loss_mask=denoise, sigma=sigma, video_context=v_ctx, audio_context=a_ctx)
    if batch.audio is not None:
        a0 = batch.audio.astype(jnp.float32)
        a_eps = jax.random.normal(k_an, a0.shape, jnp.float32)
        ones = jnp.ones(a0.shape[:2] + (1,), jnp.float32)
        out = out.replace(audio=noise_latent(a0, a_eps, ones, sigma[:, None, None]),
                          audio_timesteps=jnp.broadcast_to(sigma[:, None], a0.shape[:2]),
                          audio_target=a_eps - a0)
    return out


def masked_mse(pred: jax.Array, target: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """The official masked loss: `mean((pred - target)^2 * mask) / mean(mask)` in float32 (plain mean without mask)."""
    err = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32))
    if mask is None:
        return err.mean()
    m = mask.astype(jnp.float32)[..., None]
    return (err * m).mean() / m.mean()


def flow_matching_loss(video_pred: jax.Array, audio_pred: jax.Array | None, noised: Noised,
                       config: ObjectiveConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`w_v * video_loss + w_a * audio_loss`; returns (loss, {"video": ..., "audio": ...})."""
    video = masked_mse(video_pred, noised.video_target, noised.video_loss_mask)
    parts = {"video": video}
    loss = jnp.float32(config.video_weight) * video
    if audio_pred is not None and noised.audio_target is not None:
        audio = masked_mse(audio_pred, noised.audio_target)
        parts["audio"] = audio
        loss = loss + jnp.float32(config.audio_weight) * audio
    return loss, parts
