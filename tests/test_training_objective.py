"""The training loss on a fixed batch against the flow-matching loss written out in NumPy.

The independent side: sigma = sigmoid(std * n + mu) with the dev token shift mu computed here from its
definition (linear through (1024, 0.95) and (4096, 2.05)), the official `GaussianNoiser` arithmetic
`x = eps * (m * s) + x0 * (1 - m * s)` with denoise mask m (0 on first-frame tokens of conditioned samples),
per-token timesteps `s * m`, target `eps - x0`, the official masked loss `mean(err * m) / mean(m)` for video
and a plain mean for audio, caption dropout to the empty prompt. The standard-normal / uniform draws are
inputs (the documented key order of `noise_batch`); the model's velocity on the NumPy-built inputs comes
from the plain forward. The loss under test is the jitted `Trainer.loss` (noising, forward and loss fused).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ltx_jax.configs import LTX_2_3_TINY, Runtime
from ltx_jax.sampling.positions import audio_positions, video_positions
from ltx_jax.training.lora import LoraConfig, add_lora
from ltx_jax.training.objective import Batch, ObjectiveConfig
from ltx_jax.training.step import OptimConfig, Trainer, step_key
from ltx_jax.transformer import LTXModel, Modality

F, H, W, B, S, TA = 2, 2, 3, 4, 8, 5


def tiny_batch(seed=0, audio=True):
    c = LTX_2_3_TINY.transformer
    rng = np.random.default_rng(seed)
    arr = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)  # noqa: E731
    batch = Batch(video=arr(B, F * H * W, c.in_channels), video_positions=jnp.asarray(video_positions(F, H, W, fps=24.0,
                                                                                                      batch=B)),
                  video_context=arr(B, S, c.cross_attention_dim), audio_context=arr(B, S, c.audio_cross_attention_dim),
                  frame_tokens=H * W)
    if audio:
        batch = batch.replace(audio=arr(B, TA, c.audio_in_channels),
                              audio_positions=jnp.asarray(audio_positions(TA, batch=B)))
    return batch


def numpy_loss(trainer, state, batch, objective, empty):
    k_sigma, k_cond, k_vn, k_an, k_drop = jax.random.split(step_key(state), 5)
    x0, a0 = np.asarray(batch.video, np.float64), np.asarray(batch.audio, np.float64)
    b, t, _ = x0.shape
    n = np.asarray(jax.random.normal(k_sigma, (b,)), np.float64)
    slope = (2.05 - 0.95) / (4096 - 1024)
    mu = t * slope + 0.95 - 1024 * slope
    s = 1.0 / (1.0 + np.exp(-(objective.sigma_std * n + mu)))
    cond = np.asarray(jax.random.uniform(k_cond, (b,))) < objective.first_frame_p
    m = np.ones((b, t))
    m[cond, :batch.frame_tokens] = 0.0
    eps = np.asarray(jax.random.normal(k_vn, x0.shape), np.float64)
    a_eps = np.asarray(jax.random.normal(k_an, a0.shape), np.float64)
    drop = np.asarray(jax.random.uniform(k_drop, (b,))) < objective.caption_dropout_p
    ms = m[..., None] * s[:, None, None]
    x = eps * ms + x0 * (1 - ms)                       # GaussianNoiser
    xa = a_eps * s[:, None, None] + a0 * (1 - s[:, None, None])
    v_ctx = np.where(drop[:, None, None], np.asarray(empty[0])[None], np.asarray(batch.video_context))
    a_ctx = np.where(drop[:, None, None], np.asarray(empty[1])[None], np.asarray(batch.audio_context))
    model = trainer.model(state)
    f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    v_pred, a_pred = model(Modality(latent=f32(x), sigma=f32(s), timesteps=f32(s[:, None] * m),
                                    positions=batch.video_positions, context=f32(v_ctx)),
                           Modality(latent=f32(xa), sigma=f32(s), timesteps=f32(np.repeat(s[:, None], TA, 1)),
                                    positions=batch.audio_positions, context=f32(a_ctx)))
    v_err = (np.asarray(v_pred, np.float64) - (eps - x0)) ** 2
    video = (v_err * m[..., None]).mean() / m[..., None].mean()
    audio = ((np.asarray(a_pred, np.float64) - (a_eps - a0)) ** 2).mean()
    return objective.video_weight * video + objective.audio_weight * audio, video, audio, cond, drop


def test_loss_equals_numpy_flow_matching():
    c = LTX_2_3_TINY.transformer
    model = LTXModel(c, Runtime(param_dtype="float32", compute_dtype="float32"), rngs=nnx.Rngs(0))
    add_lora(model, LoraConfig(rank=2), seed=1)
    for node in nnx.iter_graph(model):  # non-zero B, so the adapters take part in the prediction
        if type(node[1]).__name__ == "TrainableLora":
            node[1].lora_B[...] = 0.05 * jnp.ones_like(node[1].lora_B[...])
    rng = np.random.default_rng(5)
    empty = (jnp.asarray(rng.standard_normal((S, c.cross_attention_dim)), jnp.float32),
             jnp.asarray(rng.standard_normal((S, c.audio_cross_attention_dim)), jnp.float32))
    objective = ObjectiveConfig(first_frame_p=0.5, caption_dropout_p=0.5, video_weight=1.0, audio_weight=0.7,
                                sigma_std=1.3)
    trainer = Trainer(model, mode="lora", objective=objective, optim=OptimConfig(steps=4), empty_context=empty)
    state = trainer.init(seed=3)
    batch = tiny_batch()
    covered = set()
    for step in (0, 1):
        state = state.replace(step=jnp.asarray(step, jnp.int32))
        loss, parts = trainer.loss(state, batch)
        ref, video, audio, cond, drop = numpy_loss(trainer, state, batch, objective, empty)
        assert abs(float(parts["video"]) - video) <= 1e-5 * max(1.0, video)
        assert abs(float(parts["audio"]) - audio) <= 1e-5 * max(1.0, audio)
        assert abs(float(loss) - ref) <= 1e-5 * max(1.0, ref), (float(loss), ref)
        covered |= {("cond", bool(x)) for x in cond} | {("drop", bool(x)) for x in drop}
    # the draws exercised both branches of first-frame conditioning and of caption dropout
    assert covered == {("cond", True), ("cond", False), ("drop", True), ("drop", False)}, covered


def test_objective_config_refuses_bad_values():
    with pytest.raises(ValueError, match="first_frame_p"):
        ObjectiveConfig(first_frame_p=1.5)
    with pytest.raises(ValueError, match="empty_context"):
        model = LTXModel(LTX_2_3_TINY.transformer, Runtime(param_dtype="float32"), rngs=nnx.Rngs(0))
        add_lora(model, LoraConfig(rank=2))
        Trainer(model, mode="lora", objective=dataclasses.replace(ObjectiveConfig(), caption_dropout_p=0.1))
    with pytest.raises(ValueError, match="matches no Linear"):
        add_lora(LTXModel(LTX_2_3_TINY.transformer, Runtime(param_dtype="float32"), rngs=nnx.Rngs(0)),
                 LoraConfig(rank=2, targets=r"to_nothing$"))
