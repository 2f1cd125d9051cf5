"""Composed generation pipelines on precomputed prompts (ltx_pipelines `distilled.py`, `ti2vid_*.py`).

    from ltx_jax.pipelines import Request, distilled_two_stage, load_models, load_prompt
    models = load_models("ltx-2.3-22b-distilled.safetensors", upsampler="ltx-2.3-spatial-upscaler-x2-1.0.safetensors")
    out = distilled_two_stage(models, load_prompt("prompt.npz"), Request(frames=121, height=1024, width=1536))
    frames = out.frames_uint8()  # [F, H, W, 3]

  media       ImageCondition, the official image preprocessing (CRF round trip via optional PyAV), PNG/npz/mp4
  options     RunOptions (how a pipeline runs: steps, guidance, noise, tiling, callbacks, rules, ...), Stage
  stages      Models / load_models, load_prompt, load_noise, encode_images, run_stage (one denoising stage)
  generation  Request, Generation, distilled_two_stage, dev_two_stage, dev_one_stage, hq_two_stage, a2vid_two_stage
  audio_input AudioInput, read_audio (a file's audio track, as `decode_audio_from_file`), audio_tokens
  phases      named phases the pipelines mark (timed by whoever listens)
  the `ltx-jax generate` command: command (arguments), plan (checks), memory (estimate and check), progress
  (rich display, timings), outputs (atomic mp4 + sidecar, hashes, compilation cache), run (end to end),
  capabilities (which optional parts this build has)
"""

from ltx_jax.pipelines.audio_input import AudioInput, read_audio
from ltx_jax.pipelines.generation import (PIPELINES, Generation, Request, a2vid_two_stage, dev_one_stage,
                                          dev_two_stage, distilled_one_stage, distilled_two_stage, hq_two_stage,
                                          validate)
from ltx_jax.pipelines.media import (DEFAULT_IMAGE_CRF, ImageCondition, MediaError, crf_round_trip, load_image,
                                     preprocess_image, resize_and_center_crop, write_frames, write_mp4,
                                     write_png)
from ltx_jax.pipelines.options import RunOptions, Stage
from ltx_jax.pipelines.stages import (NOISE_KEYS, Models, StageNoise, StageOutput, encode_images, load_models,
                                      load_noise, load_prompt, run_stage)

__all__ = ["Request", "RunOptions", "Stage", "Generation", "PIPELINES", "validate", "distilled_two_stage",
           "distilled_one_stage",
           "dev_two_stage", "dev_one_stage", "hq_two_stage", "a2vid_two_stage", "AudioInput", "read_audio",
           "ImageCondition", "MediaError", "DEFAULT_IMAGE_CRF", "crf_round_trip", "load_image",
           "preprocess_image", "resize_and_center_crop", "write_frames", "write_mp4", "write_png", "Models", "StageNoise",
           "StageOutput", "NOISE_KEYS", "encode_images", "load_models", "load_noise", "load_prompt", "run_stage"]
