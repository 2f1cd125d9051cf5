"""Multi-modal guidance for the dev model: CFG, STG, modality isolation and std rescale, in x0 space.

Counterparts: ltx_core `components/guiders.py` (`MultiModalGuiderParams`, `MultiModalGuider.calculate`,
`do_*_generation`, `should_skip_step`), ltx_pipelines `utils/helpers.py` (`multi_modal_guider_denoising_func`:
which passes run and with which perturbations) and `utils/constants.py` (`LTX_2_PARAMS`, `LTX_2_3_PARAMS`,
`LTX_2_3_HQ_PARAMS`, `detect_params`, `DEFAULT_NEGATIVE_PROMPT`, kept as data in
`ltx_jax/data/negative_prompt.txt`).

Each step runs up to four transformer passes on the same latents: `cond` (positive context), `uncond`
(negative context), `perturbed` (self-attention replaced by its value projection in `stg_blocks`) and
`isolated` (audio-video cross-attention off in every block). Video and audio have their own parameters but
share the passes: a pass runs (for both streams) when either stream needs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources

import jax
import jax.numpy as jnp

__all__ = ["GuiderParams", "PipelineDefaults", "LTX_2_DEFAULTS", "LTX_2_3_DEFAULTS", "LTX_2_3_HQ_DEFAULTS",
           "PASS_KINDS", "defaults_for_version", "passes_needed", "pass_perturbations", "guide",
           "default_negative_prompt"]

PASS_KINDS = ("cond", "uncond", "perturbed", "isolated")  # the official order within a step


@dataclass(frozen=True, kw_only=True)
class GuiderParams:
    """One stream's guidance parameters (`MultiModalGuiderParams`); the defaults are neutral (no guidance)."""

    cfg_scale: float = 1.0
    stg_scale: float = 0.0
    stg_blocks: tuple[int, ...] = ()
    rescale_scale: float = 0.0
    modality_scale: float = 1.0
    skip_step: int = 0  # > 0: guide only every (skip_step + 1)-th step, reuse the last x0 otherwise

    def __post_init__(self):
        object.__setattr__(self, "stg_blocks", tuple(int(b) for b in self.stg_blocks))
        if self.skip_step < 0:
            raise ValueError(f"skip_step must be >= 0; got {self.skip_step}")

    # A pass is needed when its scale is not neutral (math.isclose, as the official guider).
    @property
    def needs_uncond(self) -> bool:
        return not math.isclose(self.cfg_scale, 1.0)

    @property
    def needs_perturbed(self) -> bool:
        return not math.isclose(self.stg_scale, 0.0)

    @property
    def needs_isolated(self) -> bool:
        return not math.isclose(self.modality_scale, 1.0)

    def should_skip_step(self, step: int) -> bool:
        return self.skip_step != 0 and step % (self.skip_step + 1) != 0

    def with_stg_blocks(self, blocks: tuple[int, ...]) -> GuiderParams:
        return GuiderParams(cfg_scale=self.cfg_scale, stg_scale=self.stg_scale, stg_blocks=tuple(blocks),
                            rescale_scale=self.rescale_scale, modality_scale=self.modality_scale,
                            skip_step=self.skip_step)


@dataclass(frozen=True, kw_only=True)
class PipelineDefaults:
    """The official `PipelineParams` of a model version (stage-1 size is the half-size of two-stage runs)."""

    seed: int = 10
    stage_1_height: int = 512
    stage_1_width: int = 768
    num_frames: int = 121
    frame_rate: float = 24.0
    num_inference_steps: int = 40
    video: GuiderParams = field(default_factory=GuiderParams)
    audio: GuiderParams = field(default_factory=GuiderParams)


_DEV_VIDEO = dict(cfg_scale=3.0, stg_scale=1.0, rescale_scale=0.7, modality_scale=3.0, skip_step=0)
_DEV_AUDIO = dict(cfg_scale=7.0, stg_scale=1.0, rescale_scale=0.7, modality_scale=3.0, skip_step=0)
LTX_2_DEFAULTS = PipelineDefaults(num_inference_steps=40, video=GuiderParams(**_DEV_VIDEO, stg_blocks=(29,)),
                                  audio=GuiderParams(**_DEV_AUDIO, stg_blocks=(29,)))
LTX_2_3_DEFAULTS = PipelineDefaults(num_inference_steps=30, video=GuiderParams(**_DEV_VIDEO, stg_blocks=(28,)),
                                    audio=GuiderParams(**_DEV_AUDIO, stg_blocks=(28,)))
# The HQ (res_2s) two-stage pipeline: no STG, its own rescale, 15 steps at 1088x1920 (stage 1 half of it).
LTX_2_3_HQ_DEFAULTS = PipelineDefaults(
    num_inference_steps=15, stage_1_height=1088 // 2, stage_1_width=1920 // 2,
    video=GuiderParams(cfg_scale=3.0, stg_scale=0.0, rescale_scale=0.45, modality_scale=3.0),
    audio=GuiderParams(cfg_scale=7.0, stg_scale=0.0, rescale_scale=1.0, modality_scale=3.0))


def defaults_for_version(model_version: str) -> PipelineDefaults:
    """`detect_params`: a checkpoint `model_version` starting with "2.3" gets the LTX-2.3 defaults, any other
    (or a missing one) the LTX-2 defaults."""
    return LTX_2_3_DEFAULTS if str(model_version or "").startswith("2.3") else LTX_2_DEFAULTS


def passes_needed(video: GuiderParams, audio: GuiderParams) -> tuple[str, ...]:
    """The passes a step runs, in the official order; `cond` always."""
    need = {"cond": True, "uncond": video.needs_uncond or audio.needs_uncond,
            "perturbed": video.needs_perturbed or audio.needs_perturbed,
            "isolated": video.needs_isolated or audio.needs_isolated}
    return tuple(k for k in PASS_KINDS if need[k])


def pass_perturbations(kind: str, video: GuiderParams, audio: GuiderParams,
                       num_layers: int | None = None) -> list[tuple[str, tuple[int, ...] | None]]:
    """The attentions a pass skips, as `(type, blocks)` pairs (`blocks=None`: every block).

    The form `ltx_jax.transformer.modality.Perturbations.build` takes per batch entry. STG skips video
    self-attention in the video `stg_blocks` only if video STG is on, likewise audio.
    """
    if kind not in PASS_KINDS:
        raise ValueError(f"unknown pass {kind!r}; expected one of {PASS_KINDS}")
    out: list[tuple[str, tuple[int, ...] | None]] = []
    if kind == "perturbed":
        for name, p in (("video_self_attn", video), ("audio_self_attn", audio)):
            if p.needs_perturbed:
                if num_layers is not None and any(not 0 <= b < num_layers for b in p.stg_blocks):
                    raise ValueError(f"stg_blocks {p.stg_blocks} name blocks outside 0..{num_layers - 1}")
                out.append((name, p.stg_blocks))
    elif kind == "isolated":
        out = [("a2v_cross_attn", None), ("v2a_cross_attn", None)]
    return out


def guide(cond: jax.Array, params: GuiderParams, *, uncond: jax.Array | None = None,
          perturbed: jax.Array | None = None, isolated: jax.Array | None = None) -> jax.Array:
    """Combine one stream's per-pass x0 predictions (`MultiModalGuider.calculate`).

    `pred = c + (cfg - 1)(c - u) + stg (c - p) + (mod - 1)(c - m)`, summed in that order; then, if
    rescale r != 0, `pred *= r * std(c) / std(pred) + (1 - r)` with unbiased stds over the whole tensor
    (batch included: one scalar, as torch's `Tensor.std()`).

    Args:
        cond: `[B, T, C]` x0 of the cond pass; the others likewise, each required when its scale is not
            neutral (a missing pass contributes nothing, as the official 0.0 placeholder does).
        params: this stream's parameters.

    Returns:
        `[B, T, C]` guided x0 in cond's dtype.
    """
    for name, x, needed in (("uncond", uncond, params.needs_uncond), ("perturbed", perturbed, params.needs_perturbed),
                            ("isolated", isolated, params.needs_isolated)):
        if needed and x is None:
            raise ValueError(f"guidance {params} needs the {name} pass")
    pred = cond
    if uncond is not None:
        pred = pred + (params.cfg_scale - 1) * (cond - uncond)
    if perturbed is not None:
        pred = pred + params.stg_scale * (cond - perturbed)
    if isolated is not None:
        pred = pred + (params.modality_scale - 1) * (cond - isolated)
    if params.rescale_scale != 0:
        factor = jnp.std(cond, ddof=1) / jnp.std(pred, ddof=1)
        pred = pred * (params.rescale_scale * factor + (1 - params.rescale_scale))
    return pred.astype(cond.dtype)


def default_negative_prompt() -> str:
    """The official default negative prompt (`DEFAULT_NEGATIVE_PROMPT`), read from the package data."""
    text = (resources.files("ltx_jax") / "data" / "negative_prompt.txt").read_text(encoding="utf-8")
    return text[:-1] if text.endswith("\n") else text
