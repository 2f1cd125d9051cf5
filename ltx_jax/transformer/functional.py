"""Jitted entry points that take the model state as an explicit pytree (split/merge at the jit boundary).

Counterpart: the calls `X0Model(...)(video, audio, perturbations)` and `EmbeddingsProcessor.process_hidden_states`
in ltx_pipelines; here the module graph is static and the state is an argument, so one compilation serves
every step, every guidance combination and any weights of the same shapes.
"""

from __future__ import annotations

import functools

import jax
from flax import nnx

from ltx_jax.parallel import AttentionPlan

from ltx_jax.transformer.model import LTXModel, X0Model
from ltx_jax.transformer.modality import Modality, Perturbations
from ltx_jax.transformer.text_embeddings import EmbeddingsProcessor

__all__ = ["forward", "encode_text"]


@functools.partial(jax.jit, static_argnames=("graphdef", "x0", "plan"))
def forward(graphdef: nnx.GraphDef, state: nnx.State, video: Modality | None, audio: Modality | None,
            perturbations: Perturbations | None = None, *, x0: bool = False, plan: AttentionPlan | None = None):
    """`LTXModel` (velocities) or `X0Model` (x0 = x - v*sigma_token) on one step's inputs.

    Args:
        graphdef, state: `nnx.split(model)` of an `LTXModel`.
        video, audio: `Modality` inputs (either may be None: audio-only / video-only).
        perturbations: `Perturbations` (STG, isolation) or None; array-valued, so changing it does not
            recompile.
        x0: return denoised predictions instead of velocities.
        plan: sequence-parallel attention plan (static; `ltx_jax.sharding.attention_plan(rules)`) or None.

    Returns:
        (video, audio) outputs, None for an absent stream.
    """
    model: LTXModel = nnx.merge(graphdef, state)
    return (X0Model(model) if x0 else model)(video, audio, perturbations, plan=plan)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def encode_text(graphdef: nnx.GraphDef, state: nnx.State, hidden_states, attention_mask):
    """`EmbeddingsProcessor` on stacked text-encoder hidden states -> (video context, audio context)."""
    processor: EmbeddingsProcessor = nnx.merge(graphdef, state)
    return processor(hidden_states, attention_mask)
