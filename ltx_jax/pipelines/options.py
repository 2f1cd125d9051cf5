"""How a pipeline runs, as opposed to `Request` (what it generates): one options object for the four pipelines,
`Stage` (one denoising stage's size and starting point) for `run_stage`, and `StageNoise` (explicit draws).

Counterpart: the keyword arguments of ltx_pipelines' `__call__`s (`num_inference_steps`, guider params,
`tiling_config`, the generator) and of `utils/helpers.py` `denoise_audio_video`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from ltx_jax.pipelines.media import ImageCondition
    from ltx_jax.sampling.guidance import GuiderParams
    from ltx_jax.sampling.loops import Callbacks
    from ltx_jax.sharding import ShardingRules

__all__ = ["RunOptions", "Stage", "StageNoise"]


@dataclass(frozen=True)
class StageNoise:
    """Explicit noise of one stage: the noiser's draws (token layout `[B, T, C]`, video then audio) and, for
    res_2s, the normalized SDE draws `(video [N, 2, B, Tv, C], audio [N, 2, B, Ta, Ca])` (sub-step, step)."""

    video: np.ndarray
    audio: np.ndarray
    sde: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Options of `distilled_two_stage`, `dev_two_stage`, `dev_one_stage` and `hq_two_stage`.

    Attributes:
        steps, video, audio: stage-1 steps and guidance (dev / HQ; default: the checkpoint version's official
            values). The distilled pipeline has fixed steps and no guidance and refuses them.
        noise: {"stage1" | "stage2": StageNoise} explicit draws (replay); decode_noise `[B, F', H', W', C]`.
        upscale: 2 (official) or 1.5 (stage 1 at 2/3 size, x1.5 upsampler); two-stage pipelines only.
        temporal_upscale: double the frame rate of the final latent with `models.temporal_upsampler`.
        tiling: `video_vae.TilingConfig` for the decode (None: one piece).
        callbacks: progress / preview callbacks of the loops. rules: run the loops on this mesh layout.
        record: keep every step's inputs and x0 in `Generation.stages[i].record`. decode: decode to pixels.
    """

    steps: int | None = None
    video: GuiderParams | None = None
    audio: GuiderParams | None = None
    noise: Mapping[str, StageNoise] | None = None
    decode_noise: np.ndarray | None = None
    upscale: float = 2.0
    temporal_upscale: bool = False
    tiling: Any = None
    callbacks: Callbacks | None = None
    rules: ShardingRules | None = None
    record: bool = False
    decode: bool = True

    def replace(self, **changes) -> RunOptions:
        """A copy with `changes` (field names only: anything else is a TypeError naming it)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown pipeline option(s) {unknown}; RunOptions has "
                            f"{[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes) if changes else self


@dataclass(frozen=True, kw_only=True)
class Stage:
    """One denoising stage (`run_stage`): its pixel size, latent channels, dtypes and starting point.

    Attributes:
        frames, height, width, fps: this stage's pixel size (checked: 1 + 8k frames, multiples of 32).
        channels, audio_channels: latent channels of the DiT's video and audio inputs.
        dtype: of the latents, noise and loop state (the official pipelines: the model dtype).
        float32_positions: keep video positions float32 (default: `dtype`, as ltx-core 1.0.0; see `run_stage`).
        images, encoded: the conditioning images and their latents from `encode_images` at this size.
        initial_video: `[1, F', H', W', C]` (e.g. the upsampled stage-1 latent); initial_audio: `[1, T, Ca]`.
        noise_scale: the noiser's scale (1 for a first stage, the first sigma for a second stage).
        noise: explicit draws (replay); else `key` draws video then audio.
        frozen_audio: keep `initial_audio` clean through the stage (audio-to-video, `denoise_video_only`):
            audio noise scale 0 and denoise mask 0, so its timesteps are 0 and every step returns it unchanged.
    """

    frames: int
    height: int
    width: int
    fps: float
    channels: int
    audio_channels: int
    dtype: Any = jnp.float32
    float32_positions: bool = False
    images: Sequence[ImageCondition] = ()
    encoded: Sequence[jax.Array] = ()
    initial_video: jax.Array | None = None
    initial_audio: jax.Array | None = None
    noise_scale: float = 1.0
    noise: StageNoise | None = None
    key: jax.Array | None = None
    frozen_audio: bool = False
