"""The composed pipelines: distilled two-stage (and one-stage), dev two-stage, dev one-stage, HQ (res_2s) two-stage,
audio-to-video.

Counterparts: ltx_pipelines `distilled.py` (`DistilledPipeline`), `ti2vid_two_stages.py`
(`TI2VidTwoStagesPipeline`), `ti2vid_one_stage.py` (`TI2VidOneStagePipeline`), `ti2vid_two_stages_hq.py`
(`TI2VidTwoStagesHQPipeline`), `a2vid_two_stage.py` (`A2VidPipelineTwoStage`), without the text encoder (prompts are precomputed contexts). The final audio
latent is decoded to a waveform (`decode_audio`, in exact-seam chunks for long audio) when the models carry the
audio VAE decoder and the vocoder; an image-conditioned run keeps the audio path.

Two-stage: stage 1 at the target size divided by the spatial upscale (2, or 1.5 with the x1.5 upsampler),
the latent upsampler, then 3 distilled Euler (or res_2s) steps re-noised at 0.909375 with the stage-1 audio
re-noised likewise, then the decode. Optionally the temporal x2 upsampler doubles the frame rate of the
final latent before the decode (F' -> 2F' - 1; no extra denoising, not part of the 1.0.0 pipelines).

Randomness: one `jax.random.key(seed)` split per use (stage noises, res_2s SDE noise, decoder noise); it
cannot equal torch's generator. To replay another implementation's run, pass its draws (`RunOptions.noise`,
`.decode_noise`; `stages.load_noise` reads them, also straight from a reference fixture).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import numpy as np
from flax import nnx

from ltx_jax.pipelines.audio_input import AudioInput, audio_tokens
from ltx_jax.pipelines.media import ImageCondition
from ltx_jax.pipelines.options import RunOptions, Stage
from ltx_jax.pipelines.stages import Models, StageOutput, encode_images, run_stage
from ltx_jax.pipelines.phases import phase, settle
from ltx_jax.sampling import (DISTILLED_STAGE2_SIGMAS, LTX_2_3_HQ_DEFAULTS, GuiderParams, defaults_for_version,
                              latent_grid)
from ltx_jax.sampling.loops import Sampler, dev_sampler, distilled_sampler, res2s_sampler
from ltx_jax.sampling.samplers import Prompt, TextContext
from ltx_jax.sharding import ShardingRules
from ltx_jax.types import VideoShapeError

__all__ = ["Request", "RunOptions", "Generation", "validate", "distilled_two_stage", "distilled_one_stage",
           "dev_two_stage", "dev_one_stage", "hq_two_stage", "a2vid_two_stage", "PIPELINES"]


@dataclass(frozen=True)
class Request:
    """What to generate: the final pixel size, frame rate, seed and conditioning images."""

    frames: int = 121
    height: int = 1024
    width: int = 1536
    fps: float = 24.0
    seed: int = 10
    images: tuple[ImageCondition, ...] = ()
    audio: AudioInput | None = None  # the audio-to-video pipeline's input audio (`pipelines.audio_input.read_audio`)
    # False: video positions in the model dtype, as ltx-core 1.0.0 (see `run_stage`); True: float32.
    float32_positions: bool = False


@dataclass
class Generation:
    """A pipeline's result.

    Attributes:
        video: float32 pixels `[B, F, H, W, 3]` in [-1, 1] (None when not decoded).
        latent: the final video latent `[B, F', H', W', C]` (after the optional temporal upscale).
        audio_latent: the final audio tokens `[B, T, C_audio]` (patchified `[B, C, T, mel]`).
        audio: float32 waveform `[B, 2, samples]` in [-1, 1] (None when not decoded or no audio models): as
            ltx-core's `decode_audio`, (4 T - 3) mel frames x the vocoder's samples per frame, T =
            round(frames / fps * 25). a2vid: the input audio itself, at its own rate.
        sample_rate: the waveform's rate (24000 LTX-2, 48000 LTX-2.3), None without audio.
        stages: each stage's output (its loop record when requested).
    """

    video: np.ndarray | None
    latent: jax.Array
    audio_latent: jax.Array
    stages: list[StageOutput] = field(default_factory=list)
    audio: np.ndarray | None = None
    sample_rate: int | None = None

    def frames_uint8(self) -> np.ndarray:
        """`[F, H, W, 3]` uint8 of the first sample, mapped as ltx_core's `decode_video` does."""
        from ltx_jax.video_vae import to_uint8
        return np.asarray(to_uint8(self.video[0]))


def validate(pipeline: str, request: Request, *, upscale: float = 2.0, steps: int | None = None) -> None:
    """Refuse a request before any model work: frame count (1 + 8k), sizes (multiples of 32; two-stage: of
    64, or 96 with the x1.5 upscale), fps, image frame indices, step count.

    Raises:
        VideoShapeError / ValueError naming the bad value and the valid ones.
    """
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}; choose from {sorted(PIPELINES)}")
    if not request.fps > 0:
        raise ValueError(f"fps must be positive; got {request.fps}")
    latent_grid(request.frames, request.height, request.width)
    if not pipeline.endswith("one-stage"):
        if upscale not in (2.0, 1.5):
            raise ValueError(f"spatial upscale must be 2 (x2 upsampler) or 1.5 (x1.5 upsampler); got {upscale}")
        multiple = 64 if upscale == 2.0 else 96
        for name, size in (("height", request.height), ("width", request.width)):
            if size % multiple:
                raise VideoShapeError(f"{name} {size}: a two-stage pipeline with upscale {upscale} needs a multiple "
                                      f"of {multiple} (stage 1 runs at 1/{upscale} of it, a multiple of 32)")
    for img in request.images:
        if not 0 <= img.frame_idx < request.frames:
            raise ValueError(f"conditioning image frame_idx {img.frame_idx} is outside the video's {request.frames} "
                             f"frames (valid: 0..{request.frames - 1})")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
    if (pipeline == "a2vid") != (request.audio is not None):
        raise ValueError("the a2vid pipeline needs Request.audio (pipelines.audio_input.read_audio)"
                         if pipeline == "a2vid" else f"the {pipeline} pipeline takes no input audio (use a2vid)")


def _stage(models: Models, request: Request, height: int, width: int, **kwargs) -> Stage:
    """A stage of this request at `height` x `width`: the request's frames, fps, images (encoded at this size)."""
    cfg = models.config
    return Stage(frames=request.frames, height=height, width=width, fps=request.fps, channels=cfg.in_channels,
                 audio_channels=cfg.audio_in_channels, dtype=models.dtype, float32_positions=request.float32_positions,
                 images=request.images, encoded=encode_images(models, request.images, height, width), **kwargs)


def _keys(seed: int) -> dict[str, jax.Array]:
    key = jax.random.key(seed)
    return {name: jax.random.fold_in(key, i) for i, name in enumerate(("stage1", "stage2", "decode"))}


def _decode(models: Models, latent: jax.Array, *, noise: np.ndarray | None, key: jax.Array, tiling,
            rules: ShardingRules | None = None) -> np.ndarray:
    from ltx_jax.video_vae import decode, decode_noise
    if rules is not None and tiling is None and rules.mesh.size > 1:  # rows split over the whole mesh
        from ltx_jax.video_vae.sharded import decode_sharded
        if models.decoder.timestep_conditioning and noise is None:
            noise = decode_noise(key, latent)
        return np.asarray(decode_sharded(models.decoder, latent, rules,
                                         noise=noise if models.decoder.timestep_conditioning else None))
    if not models.decoder.timestep_conditioning:
        return np.asarray(decode(models.decoder, latent, tiling))
    return np.asarray(decode(models.decoder, latent, tiling, noise=noise, key=None if noise is not None else key))


@nnx.jit
def _upsample(upsampler, statistics, latent: jax.Array) -> jax.Array:
    """`upsample_video` (un-normalize with the encoder's statistics, upsample, normalize), jitted."""
    from ltx_jax.upsampler import upsample_video
    return upsample_video(latent, statistics, upsampler).astype(latent.dtype)


def _finish(models: Models, stages: list[StageOutput], options: RunOptions, key: jax.Array,
            input_audio: AudioInput | None = None) -> Generation:
    latent = stages[-1].video
    if options.temporal_upscale:
        if models.temporal_upsampler is None or models.encoder is None:
            raise ValueError("temporal_upscale needs models.temporal_upsampler and models.encoder "
                             "(load_models(temporal_upsampler=...))")
        with phase("temporal_upsample"):
            latent = settle(_upsample(models.temporal_upsampler, models.encoder.per_channel_statistics, latent))
    video = None
    if options.decode:
        with phase("decode"):
            video = _decode(models, latent, noise=options.decode_noise, key=key, tiling=options.tiling,
                            rules=options.rules)
    audio, rate = None, None
    if input_audio is not None:  # a2vid returns the input audio itself, as the official pipeline
        audio, rate = input_audio.waveform[None], input_audio.sample_rate
    elif options.decode and models.audio_decoder is not None and models.vocoder is not None:
        from ltx_jax.audio_vae import decode_audio_chunked, tokens_to_latent
        with phase("audio"):
            audio, rate = decode_audio_chunked(models.audio_decoder, models.vocoder,
                                               tokens_to_latent(stages[-1].audio, models.audio_decoder.config.z_channels))
    return Generation(video=video, latent=latent, audio_latent=stages[-1].audio, stages=stages, audio=audio,
                      sample_rate=rate)


def _two_stage(models: Models, prompt: Prompt, request: Request, stage1: Sampler | None, stage2: Sampler, dit2,
               options: RunOptions, hq_stage1=None, frozen_audio: np.ndarray | None = None) -> Generation:
    if models.upsampler is None or models.encoder is None:
        raise ValueError("a two-stage pipeline needs models.upsampler and models.encoder")
    kind, upscale = models.upsampler.kind, options.upscale
    if (upscale == 2.0) != kind.startswith("spatial_x2") or (upscale == 1.5) != kind.startswith("spatial_x1_5"):
        raise ValueError(f"upscale {upscale} does not match the loaded upsampler ({kind})")
    noise = options.noise or {}
    keys = _keys(request.seed)
    h1, w1 = int(request.height / upscale), int(request.width / upscale)
    if stage1 is None:  # HQ: the stage-1 schedule depends on the stage-1 token count
        grid = latent_grid(request.frames, h1, w1)
        stage1 = hq_stage1(int(np.prod(grid)))
    with phase("stage1"):
        frozen = {} if frozen_audio is None else {"initial_audio": frozen_audio, "frozen_audio": True}
        out1 = run_stage(models.dit, stage1, prompt, _stage(models, request, h1, w1, noise=noise.get("stage1"),
                                                            key=keys["stage1"], **frozen), options)
    with phase("upsample"):
        upsampled = settle(_upsample(models.upsampler, models.encoder.per_channel_statistics, out1.video[:1]))
    with phase("stage2"):
        out2 = run_stage(dit2, stage2, prompt, _stage(models, request, request.height, request.width,
                                                      initial_video=upsampled,
                                                      initial_audio=out1.audio if frozen_audio is None else frozen_audio,
                                                      noise_scale=float(stage2.sigmas[0]), noise=noise.get("stage2"),
                                                      key=keys["stage2"], frozen_audio=frozen_audio is not None),
                         options)
    return _finish(models, [out1, out2], options, keys["decode"], request.audio if frozen_audio is not None else None)


def _options(pipeline: str, request: Request, options: RunOptions | None, overrides: dict) -> RunOptions:
    """`options` with keyword overrides, validated with the request for `pipeline` before any model work."""
    options = (options or RunOptions()).replace(**overrides)
    if pipeline.startswith("distilled") and (options.steps, options.video, options.audio) != (None, None, None):
        raise ValueError("the distilled pipeline has fixed steps (8 + 3) and no guidance: steps / video / audio "
                         "options do not apply")
    if pipeline.endswith("one-stage") and options.upscale != 2.0:
        raise ValueError(f"{pipeline} runs at the full size; the upscale option does not apply")
    validate(pipeline, request, upscale=options.upscale, steps=options.steps)
    return options


def distilled_two_stage(models: Models, prompt: Prompt, request: Request, options: RunOptions | None = None,
                        **overrides) -> Generation:
    """`DistilledPipeline`: 8 + 3 Euler steps on the distilled model, no guidance.

    Args:
        models: `load_models(distilled checkpoint, upsampler=spatial x2 (or x1.5) file)`.
        prompt: positive context (a negative one is unused).
        request: final size: frames 1 + 8k, height / width multiples of 64 (x1.5: of 96).
        options: how to run (`RunOptions`); keyword `overrides` replace its fields (`noise=`, `record=True`, ...).
    """
    options = _options("distilled", request, options, overrides)
    return _two_stage(models, prompt, request, distilled_sampler(1), distilled_sampler(2),
                      models.dit_stage2 or models.dit, options)


def _guiders(models: Models, options: RunOptions):
    d = defaults_for_version(models.model_version)
    steps = options.steps if options.steps is not None else d.num_inference_steps
    return options.video or d.video, options.audio or d.audio, steps


def dev_two_stage(models: Models, prompt: Prompt, request: Request, options: RunOptions | None = None,
                  **overrides) -> Generation:
    """`TI2VidTwoStagesPipeline`: guided dev Euler at half size, then 3 distilled steps with the dev model plus
    the distilled LoRA (`models.dit_stage2`, from `load_models(..., stage2_loras=[(lora, 1.0)])`).

    Guidance and steps default to the checkpoint version's official values (`defaults_for_version`); the
    schedule is `LTX2Scheduler` at its 4096-token default, as in the pipeline. `prompt.negative` is required.
    """
    if models.dit_stage2 is None:
        raise ValueError("dev_two_stage runs stage 2 with the dev model + distilled LoRA: "
                         "load_models(..., stage2_loras=[(distilled_lora, 1.0)])")
    options = _options("dev", request, options, overrides)
    v, a, steps = _guiders(models, options)
    return _two_stage(models, prompt, request, dev_sampler(steps, v, a), distilled_sampler(2), models.dit_stage2,
                      options)


def dev_one_stage(models: Models, prompt: Prompt, request: Request, options: RunOptions | None = None,
                  **overrides) -> Generation:
    """`TI2VidOneStagePipeline`: guided dev Euler at the full size (multiples of 32), then the decode."""
    options = _options("dev-one-stage", request, options, overrides)
    v, a, steps = _guiders(models, options)
    keys = _keys(request.seed)
    with phase("stage1"):
        out = run_stage(models.dit, dev_sampler(steps, v, a), prompt,
                        _stage(models, request, request.height, request.width,
                               noise=(options.noise or {}).get("stage1"), key=keys["stage1"]), options)
    return _finish(models, [out], options, keys["decode"])


def distilled_one_stage(models: Models, prompt: Prompt, request: Request, options: RunOptions | None = None,
                        **overrides) -> Generation:
    """The distilled model's 8 stage-1 sigmas at the full size in one stage (no upsampler, no guidance): not
    an official pipeline; for models distilled at their final size (the embedded default, issue 17)."""
    options = _options("distilled-one-stage", request, options, overrides)
    keys = _keys(request.seed)
    with phase("stage1"):
        out = run_stage(models.dit, distilled_sampler(1), prompt,
                        _stage(models, request, request.height, request.width,
                               noise=(options.noise or {}).get("stage1"), key=keys["stage1"]), options)
    return _finish(models, [out], options, keys["decode"])


def hq_two_stage(models: Models, prompt: Prompt, request: Request, options: RunOptions | None = None,
                 **overrides) -> Generation:
    """`TI2VidTwoStagesHQPipeline`: res_2s in both stages; stage 1 guided (HQ defaults: 15 steps, no STG) on
    the schedule of the stage-1 token count, stage 2 unguided on the 3 distilled sigmas.

    The official pipeline merges the distilled LoRA at 0.25 into the stage-1 model and at 0.5 into the
    stage-2 one: `load_models(..., loras=[(lora, 0.25)], stage2_loras=[(lora, 0.5)])`.
    """
    options = _options("hq", request, options, overrides)
    d = LTX_2_3_HQ_DEFAULTS
    v, a = options.video or d.video, options.audio or d.audio
    steps = d.num_inference_steps if options.steps is None else options.steps
    stage2 = res2s_sampler(3, GuiderParams(), GuiderParams(), sigmas=np.asarray(DISTILLED_STAGE2_SIGMAS, np.float32))
    return _two_stage(models, prompt, request, None, stage2, models.dit_stage2 or models.dit, options,
                      hq_stage1=lambda tokens: res2s_sampler(steps, v, a, tokens=tokens))


def a2vid_two_stage(models: Models, prompt: Prompt, request: Request, options: RunOptions | None = None,
                    **overrides) -> Generation:
    """`A2VidPipelineTwoStage`: dev two-stage with the video conditioned on `request.audio`.

    The audio is encoded by `models.audio_encoder` (`load_models(..., audio_encoder=True)`; resampled to its
    16 kHz) and cut to the video's length; both stages keep those tokens clean (`Stage.frozen_audio`: scale-0
    noise, denoise mask 0, so the audio timesteps are 0). Stage 1: guided dev Euler at half size, video
    guidance only (the audio guider is neutral; the unconditional pass gives the audio stream the positive
    audio context, as the official guider without a negative context does). Stage 2: upsample, 3 distilled
    steps with the dev model + distilled LoRA. The returned waveform is the input audio (its own rate).
    """
    if models.dit_stage2 is None:
        raise ValueError("a2vid_two_stage runs stage 2 with the dev model + distilled LoRA: "
                         "load_models(..., stage2_loras=[(distilled_lora, 1.0)])")
    if models.audio_encoder is None:
        raise ValueError("a2vid_two_stage encodes the input audio: load_models(..., audio_encoder=True)")
    options = _options("a2vid", request, options, overrides)
    if options.audio is not None:
        raise ValueError("a2vid: the audio stream is frozen; audio guidance does not apply")
    if prompt.negative is None:
        raise ValueError("a2vid: stage 1 is guided; pass a Prompt with a negative context")
    v, _, steps = _guiders(models, options)
    with phase("audio_encode"):
        tokens = audio_tokens(models.audio_encoder, request.audio, request.frames, request.fps)
    guided = Prompt(prompt.positive, TextContext(prompt.negative.video, prompt.positive.audio))
    return _two_stage(models, guided, request, dev_sampler(steps, v, GuiderParams()), distilled_sampler(2),
                      models.dit_stage2, options, frozen_audio=tokens)


PIPELINES = {"distilled": distilled_two_stage, "distilled-one-stage": distilled_one_stage, "dev": dev_two_stage,
             "dev-one-stage": dev_one_stage, "hq": hq_two_stage, "a2vid": a2vid_two_stage}
