"""Per-call inputs of the DiT: one `Modality` per stream, and the guidance `Perturbations`.

Counterparts: ltx_core `model/transformer/modality.py` (`Modality`) and `guidance/perturbations.py`
(`BatchedPerturbationConfig`). Both are pytrees, so a jitted forward takes them as arguments; the
perturbations are arrays (one switch per block and sample), so choosing STG blocks or switching the
audio-video attention off per call does not recompile.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

__all__ = ["Modality", "Perturbations", "PERTURBATION_TYPES"]

# ltx_core PerturbationType values, without the "skip_" prefix.
PERTURBATION_TYPES = ("video_self_attn", "audio_self_attn", "a2v_cross_attn", "v2a_cross_attn")


@struct.dataclass
class Modality:
    """One stream's inputs (video or audio).

    Attributes:
        latent: `[B, T, C]` patchified latent tokens (video T ordered (f, h, w); audio C = (c, mel)).
        sigma: `[B]` (or a scalar) the step's noise level; drives the prompt AdaLN (LTX-2.3) and, for
            the *other* stream, the audio-video cross-attention modulation.
        timesteps: `[B, T]`, `[B, T, 1]` or `[B, 1]`: per-token sigma, `denoise_mask * sigma`
            (conditioning tokens at 0).
        positions: `[B, n, T, 2]` `[start, end)` bounds, n = 3 (t in seconds, h, w in pixels) for video,
            n = 1 (seconds) for audio. The dtype is used for the position arithmetic, as in ltx_core.
        context: `[B, S, D_ctx]` text context (the connector output).
        context_mask: `[B, S]` binary text mask or None (the pipelines pass None).
        attention_mask: `[B, T, T]` self-attention weights in [0, 1] (log-space bias) or None.
        enabled: False leaves this stream's tokens untouched by the blocks (still read by the other
            stream's cross-attention and still projected out), as ltx_core does for skipped guidance
            steps. Static: changing it recompiles.
    """

    latent: jax.Array
    sigma: jax.Array
    timesteps: jax.Array
    positions: jax.Array
    context: jax.Array
    context_mask: jax.Array | None = None
    attention_mask: jax.Array | None = None
    enabled: bool = struct.field(pytree_node=False, default=True)


@struct.dataclass
class Perturbations:
    """Which attentions to skip, per block and sample: bool arrays `[num_layers, B]`, True = skip.

    A skipped self-attention returns its value projection (STG); a skipped audio-to-video or
    video-to-audio attention adds nothing (modality isolation).
    """

    video_self_attn: jax.Array
    audio_self_attn: jax.Array
    a2v_cross_attn: jax.Array
    v2a_cross_attn: jax.Array

    @classmethod
    def none(cls, num_layers: int, batch: int) -> Perturbations:
        off = np.zeros((num_layers, batch), bool)
        return cls(*(jnp.asarray(off) for _ in PERTURBATION_TYPES))

    @classmethod
    def build(cls, num_layers: int, per_sample: Sequence[Iterable[tuple[str, Iterable[int] | None]]]) -> Perturbations:
        """From a list (one entry per sample) of `(type, blocks)` pairs; `blocks=None` means every block.

        Example: STG on block 28 for sample 1 of 2, video and audio:
            `Perturbations.build(48, [[], [("video_self_attn", [28]), ("audio_self_attn", [28])]])`
        """
        skip = {t: np.zeros((num_layers, len(per_sample)), bool) for t in PERTURBATION_TYPES}
        for b, items in enumerate(per_sample):
            for kind, blocks in items:
                if kind not in skip:
                    raise ValueError(f"unknown perturbation {kind!r}; expected one of {PERTURBATION_TYPES}")
                rows = range(num_layers) if blocks is None else list(blocks)
                for i in rows:
                    if not 0 <= i < num_layers:
                        raise ValueError(f"perturbation {kind!r} names block {i}; the model has {num_layers}")
                    skip[kind][i, b] = True
        return cls(*(jnp.asarray(skip[t]) for t in PERTURBATION_TYPES))

    def keep(self) -> dict[str, jax.Array]:
        """{type: `[num_layers, B]` float 1 = run, 0 = skip}, the form the blocks multiply by."""
        return {t: 1.0 - getattr(self, t).astype(jnp.float32) for t in PERTURBATION_TYPES}
