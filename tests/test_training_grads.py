"""Gradients of the training loss against central finite differences on the tiny model (float32).

Directional derivatives `g . d` for random unit directions d over all trained parameters, against
`(L(p + h d) - L(p - h d)) / 2h` with the same draws (fixed key): LoRA mode (A and B, with B moved off
its zero init) and full fine-tuning (every Param of a float32 model).
"""

import functools

import jax
import numpy as np
from flax import nnx
from test_training_objective import tiny_batch

from ltx_jax.configs import LTX_2_3_TINY, Runtime
from ltx_jax.training.lora import LoraConfig, add_lora
from ltx_jax.training.objective import ObjectiveConfig
from ltx_jax.training.step import OptimConfig, Trainer, forward_loss
from ltx_jax.transformer import LTXModel

OBJECTIVE = ObjectiveConfig(first_frame_p=0.5)


@functools.partial(jax.jit, static_argnums=0)
def _grad(static, params, frozen, batch, key):
    return jax.grad(lambda p: forward_loss(static, p, frozen, batch, key)[0])(params)


@functools.partial(jax.jit, static_argnums=0)
def _loss(static, params, frozen, batch, key):
    return forward_loss(static, params, frozen, batch, key)[0]


def _check(trainer, params, batch, n_dirs=3, h=3e-2):
    key = jax.random.key(7)
    g = _grad(trainer.static, params, trainer.frozen, batch, key)
    leaves, treedef = jax.tree.flatten(params)
    g_leaves = jax.tree.leaves(g)
    g_norm = np.sqrt(sum(float((np.asarray(x, np.float64) ** 2).sum()) for x in g_leaves))
    rng = np.random.default_rng(0)
    errs = []
    for k in range(n_dirs):
        # the gradient direction itself, then random directions
        d = [np.asarray(x, np.float32) if k == 0 else rng.standard_normal(x.shape).astype(np.float32)
             for x in g_leaves]
        norm = np.sqrt(sum(float((x.astype(np.float64) ** 2).sum()) for x in d))
        d = [x / norm for x in d]
        shifted = lambda s: jax.tree.unflatten(treedef, [p + s * h * dx for p, dx in zip(leaves, d)])  # noqa: E731
        fd = (float(_loss(trainer.static, shifted(1.0), trainer.frozen, batch, key))
              - float(_loss(trainer.static, shifted(-1.0), trainer.frozen, batch, key))) / (2 * h)
        an = sum(float((np.asarray(gx, np.float64) * dx).sum()) for gx, dx in zip(g_leaves, d))
        # |g . d| <= |g|: errors relative to the gradient norm (the slope along d can be near 0)
        errs.append(abs(fd - an) / g_norm)
        if k == 0:
            assert abs(an - g_norm) <= 1e-4 * g_norm
    assert g_norm > 1e-4, g_norm
    return max(errs)


def test_lora_gradients_match_finite_differences():
    model = LTXModel(LTX_2_3_TINY.transformer, Runtime(param_dtype="float32", compute_dtype="float32"),
                     rngs=nnx.Rngs(0))
    add_lora(model, LoraConfig(rank=2, targets=r"\.(to_q|to_v|ff\.net\.2)$"), seed=2)
    trainer = Trainer(model, mode="lora", objective=OBJECTIVE, optim=OptimConfig(steps=2))
    params = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(x.size), x.shape),
                          trainer.init(0).params)
    err = _check(trainer, params, tiny_batch(audio=False))
    assert err < 2e-3, err


def test_full_finetune_gradients_match_finite_differences():
    model = LTXModel(LTX_2_3_TINY.transformer, Runtime(param_dtype="float32", compute_dtype="float32"),
                     rngs=nnx.Rngs(1))
    trainer = Trainer(model, mode="full", objective=OBJECTIVE, optim=OptimConfig(steps=2))
    err = _check(trainer, trainer.init(0).params, tiny_batch(audio=False))
    assert err < 2e-3, err
