"""`ltx-jax generate`: run a pipeline on a precomputed prompt file and write the frames.

Counterpart: the `main()` of each ltx_pipelines pipeline module (argument parsing in `utils/args.py`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["add_parser", "run"]

# Official distilled-LoRA strengths per pipeline: (stage 1, stage 2); None = not used in that stage.
_LORA_STRENGTHS = {"dev": (None, 1.0), "hq": (0.25, 0.5)}


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="run a pipeline on a precomputed prompt and write frames",
                       description="Generate a video with a composed pipeline (ltx_jax.pipelines) from a prompt file "
                                   "(connector outputs, or Gemma hidden states + mask); writes video.npz "
                                   "(uint8 frames), latents.npz, and optionally PNG frames / mp4 (PyAV).")
    p.add_argument("checkpoint", help="official single-file checkpoint or ltx-jax checkpoint folder")
    p.add_argument("--prompt", required=True, help=".npz / .safetensors: video_context + audio_context (+ negative_*), "
                                                   "or hidden_states + attention_mask (+ negative_*)")
    p.add_argument("--pipeline", default="distilled", choices=["distilled", "dev", "dev-one-stage", "hq"])
    p.add_argument("--upsampler", help="spatial x2 (or x1.5, with --upscale 1.5) latent upsampler file")
    p.add_argument("--temporal-upsampler", help="temporal x2 upsampler file (with --temporal-upscale)")
    p.add_argument("--distilled-lora", help="distilled LoRA (dev: stage 2 at 1.0; hq: 0.25 / 0.5)")
    p.add_argument("--frames", type=int, default=121)
    p.add_argument("--height", type=int, default=1024)
    p.add_argument("--width", type=int, default=1536)
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("--seed", type=int, default=10)
    p.add_argument("--steps", type=int, help="stage-1 steps (dev / hq; default: the model version's official value)")
    p.add_argument("--image", nargs=3, action="append", default=[], metavar=("PATH", "FRAME", "STRENGTH"),
                   help="conditioning image (.npy uint8, or PNG/JPEG with Pillow); frame 0 = first-frame I2V")
    p.add_argument("--crf", type=int, default=33, help="H.264 CRF of the image round trip (0: none; else needs PyAV)")
    p.add_argument("--noise", help="explicit noise (.npz: stage1.video, stage1.audio, stage2.*, decode; or a "
                                   "reference fixture's fixtures.npz) to replay another implementation's run")
    p.add_argument("--upscale", type=float, default=2.0, choices=[2.0, 1.5])
    p.add_argument("--temporal-upscale", action="store_true")
    p.add_argument("--tiling", action="store_true", help="tiled decode (TilingConfig.default())")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument("--float32-positions", action="store_true",
                   help="keep video RoPE positions float32 in a bf16 run (ltx-core 1.0.0 casts them to bf16)")
    p.add_argument("--out", default="outputs/generate")
    p.add_argument("--format", default="npz,png", help="comma-separated: npz, png, mp4")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ltx_jax.configs import Runtime
    from ltx_jax.pipelines.generation import PIPELINES, Request, validate
    from ltx_jax.pipelines.media import ImageCondition, MediaError, load_image, write_frames
    from ltx_jax.pipelines.options import RunOptions
    from ltx_jax.pipelines.stages import load_models, load_noise, load_prompt
    from ltx_jax.sampling.loops import Callbacks
    from ltx_jax.types import VideoShapeError

    t0 = time.perf_counter()
    try:
        images = tuple(ImageCondition(load_image(path), frame_idx=int(frame), strength=float(strength), crf=args.crf)
                       for path, frame, strength in args.image)
        request = Request(frames=args.frames, height=args.height, width=args.width, fps=args.fps, seed=args.seed,
                          images=images, float32_positions=args.float32_positions)
        validate(args.pipeline, request, upscale=args.upscale, steps=args.steps)
        kwargs = {}
        if args.pipeline != "dev-one-stage":
            kwargs["upscale"] = args.upscale
        if args.steps is not None:
            if args.pipeline == "distilled":
                raise ValueError("--steps: the distilled pipeline's schedules are fixed")
            kwargs["steps"] = args.steps
        loras, stage2 = [], []
        if args.pipeline in _LORA_STRENGTHS:
            if not args.distilled_lora:
                raise ValueError(f"the {args.pipeline} pipeline needs --distilled-lora")
            s1, s2 = _LORA_STRENGTHS[args.pipeline]
            loras = [(args.distilled_lora, s1)] if s1 else []
            stage2 = [(args.distilled_lora, s2)]
        if args.pipeline != "dev-one-stage" and not args.upsampler:
            raise ValueError(f"the {args.pipeline} pipeline needs --upsampler")
        runtime = Runtime(param_dtype=args.dtype, compute_dtype=args.dtype)
        text = not _has_contexts(args.prompt)
        models = load_models(args.checkpoint, upsampler=args.upsampler, temporal_upsampler=args.temporal_upsampler,
                             loras=loras, stage2_loras=stage2, runtime=runtime, text=text)
        prompt = load_prompt(args.prompt, models.text)
        noise, decode_noise = load_noise(args.noise) if args.noise else (None, None)
        tiling = None
        if args.tiling:
            from ltx_jax.video_vae import TilingConfig
            tiling = TilingConfig.default()

        def progress(step: int, total: int, sigma: float) -> None:
            if not args.quiet:
                print(f"  step {step + 1}/{total} sigma {sigma:.4f}", file=sys.stderr)

        t_load = time.perf_counter()
        options = RunOptions(noise=noise, decode_noise=decode_noise, temporal_upscale=args.temporal_upscale,
                             tiling=tiling, callbacks=Callbacks(progress=progress), **kwargs)
        out = PIPELINES[args.pipeline](models, prompt, request, options)
        frames = out.frames_uint8()
        t_run = time.perf_counter()
        fps = args.fps * (2 if args.temporal_upscale else 1)
        files = write_frames(args.out, frames, fps, tuple(f for f in args.format.split(",") if f))
        np.savez(Path(args.out) / "latents.npz", video_latent=np.asarray(out.latent),
                 audio_tokens=np.asarray(out.audio))
    except (ValueError, VideoShapeError, MediaError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = {"pipeline": args.pipeline, "frames": list(frames.shape), "fps": fps, "out": str(args.out),
               "files": len(files) + 1, "load_s": round(t_load - t0, 2), "generate_s": round(t_run - t_load, 2)}
    print(json.dumps(summary))
    return 0


def _has_contexts(path: str) -> bool:
    """Whether a prompt file holds connector outputs (else Gemma hidden states, which need the connectors)."""
    from ltx_jax.pipelines.stages import _read_arrays
    return "video_context" in _read_arrays(Path(path))
