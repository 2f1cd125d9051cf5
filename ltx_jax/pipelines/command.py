"""`ltx-jax generate`: the command line (arguments and their defaults); the run itself is `pipelines/run.py`.

Counterpart: ltx_pipelines `utils/args.py` (the official pipelines' argument parsers): the same defaults (per
pipeline and model version), the official guidance flag names, `--image` in the official `PATH FRAME STRENGTH
[CRF]` form or as `PATH[:FRAME[:STRENGTH]]`.

    ltx-jax generate "a prompt" --checkpoint CKPT --gemma GEMMA_DIR --upsampler UPS --out video.mp4
    ltx-jax generate --prompt-file contexts.npz --checkpoint CKPT --upsampler UPS --out video.mp4

The earlier form `ltx-jax generate CKPT --prompt PROMPT.npz ... --out DIR` still works: with `--prompt`/
`--prompt-file` and no `--checkpoint`, the positional argument is the checkpoint.
"""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def _guidance_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("guidance (defaults: the checkpoint version's official values; HQ: its own)")
    for stream in ("video", "audio"):
        g.add_argument(f"--{stream}-cfg-guidance-scale", type=float, metavar="S")
        g.add_argument(f"--{stream}-stg-guidance-scale", type=float, metavar="S")
        g.add_argument(f"--{stream}-rescale-scale", type=float, metavar="S")
        g.add_argument(f"--{stream}-stg-blocks", type=int, nargs="*", metavar="N")
        g.add_argument(f"--{stream}-skip-step", type=int, metavar="N")
    g.add_argument("--a2v-guidance-scale", type=float, metavar="S", help="video stream's modality scale")
    g.add_argument("--v2a-guidance-scale", type=float, metavar="S", help="audio stream's modality scale")


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="text (and images, keyframes) to an mp4 with sound",
                       description="Generate a video with audio from a prompt. Every argument and file is checked "
                                   "and the memory estimated before any weights load. Writes OUT.mp4 (H.264 + AAC) "
                                   "and OUT.json (arguments, file hashes, versions, timings, memory), atomically.")
    p.add_argument("prompt", nargs="?", help="the prompt text (old form: the checkpoint, with --prompt FILE)")
    p.add_argument("--checkpoint", help="official .safetensors (bf16 or FP8) or an ltx-jax checkpoint folder")
    p.add_argument("--gemma", help="Gemma-3 folder (Hugging Face layout, with tokenizer) for a text prompt")
    p.add_argument("--prompt-file", "--prompt", dest="prompt_file",
                   help="precomputed prompt (.npz / .safetensors): connector outputs video_context + audio_context "
                        "(+ negative_*), or Gemma hidden_states + attention_mask (+ negative_*)")
    p.add_argument("--negative-prompt", help="default: the official default negative prompt (dev / hq pipelines)")
    p.add_argument("--pipeline", default="distilled",
                   choices=["distilled", "distilled-one-stage", "dev", "dev-one-stage", "hq", "a2vid"],
                   help="a2vid: audio-to-video (dev two-stage conditioned on --audio; the mp4 keeps that audio); "
                        "distilled-one-stage: the 8 distilled sigmas at the full size, no upsampler (not an official "
                        "pipeline: for models distilled at their output size, like the embedded default)")
    p.add_argument("--audio", metavar="FILE", help="a2vid: the conditioning audio (any file with a stereo audio track)")
    p.add_argument("--audio-start-time", type=float, default=0.0, metavar="S", help="a2vid: read the audio from S s")
    p.add_argument("--audio-max-duration", type=float, metavar="S",
                   help="a2vid: read at most S s of audio (default: the video's duration, frames / fps)")
    p.add_argument("--upsampler", help="spatial x2 (x1.5 with --upscale 1.5) latent upsampler (two-stage pipelines)")
    p.add_argument("--distilled-lora", help="official distilled LoRA (dev: stage 2 at 1.0; hq: 0.25 / 0.5)")
    p.add_argument("--lora", action="append", default=[], metavar="FILE[:STRENGTH]",
                   help="a LoRA merged into the transformer in every stage (repeatable; strength default 1.0)")
    p.add_argument("--fp8", default="off", choices=["off", "weights", "scaled"],
                   help="FP8 checkpoints: off = dequantize at load; weights = keep e4m3, dequantize per matmul; "
                        "scaled = the official static scaled matmul")
    p.add_argument("--image", action="append", default=[], nargs="+", metavar="SPEC",
                   help="conditioning image PATH[:FRAME[:STRENGTH]] or PATH FRAME STRENGTH [CRF] (repeatable); "
                        "frame 0 replaces the first latent frame, any other frame is a keyframe")
    p.add_argument("--crf", type=int, default=33, help="H.264 CRF of the official image round trip (0: none)")
    p.add_argument("--frames", "--num-frames", dest="frames", type=int, default=121, help="1 + 8k (default 121)")
    p.add_argument("--height", type=int, help="default: 1024 (two-stage), 512 (one-stage), 1088 (hq)")
    p.add_argument("--width", type=int, help="default: 1536 (two-stage), 768 (one-stage), 1920 (hq)")
    p.add_argument("--fps", "--frame-rate", dest="fps", type=float, default=24.0)
    p.add_argument("--seed", type=int, default=10)
    p.add_argument("--steps", "--num-inference-steps", dest="steps", type=int,
                   help="stage-1 steps (dev / hq; default: the official value for the model version)")
    _guidance_flags(p)
    p.add_argument("--mesh", help="device mesh, e.g. data=2,context=4 (default: every visible device on context)")
    p.add_argument("--attention", default="auto", help="attention kernel / strategy (auto: by backend and mesh)")
    p.add_argument("--weights", default="replicated", choices=["replicated", "fsdp", "tensor"],
                   help="how the transformer weights are placed on the mesh")
    p.add_argument("--preview", metavar="TAE", help="TAE file (taeltx2_3.safetensors): x0 previews as small GIFs")
    p.add_argument("--preview-every", type=int, default=2, metavar="N", help="preview every N model evaluations")
    p.add_argument("--tiling", action="store_true", help="tiled VAE decode (bounded memory)")
    p.add_argument("--upscale", type=float, default=2.0, choices=[2.0, 1.5])
    p.add_argument("--temporal-upscale", action="store_true")
    p.add_argument("--temporal-upsampler", help="temporal x2 upsampler file (with --temporal-upscale)")
    p.add_argument("--noise", help="explicit noise (.npz, or a reference fixture's fixtures.npz) to replay a run")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument("--float32-positions", action="store_true",
                   help="keep video RoPE positions float32 in a bf16 run (ltx-core 1.0.0 casts them to bf16)")
    p.add_argument("--out", default="video.mp4", help="OUT.mp4 (+ OUT.json), or a folder (npz / png / mp4 frames)")
    p.add_argument("--format", default="npz,png", help="folder output only: comma-separated npz, png, mp4")
    p.add_argument("--cache-dir", help="compilation cache, prompt cache, file hashes (default: $LTX_JAX_CACHE or "
                                       "~/.cache/ltx-jax)")
    p.add_argument("--no-compilation-cache", action="store_true", help="do not use the persistent XLA cache")
    p.add_argument("--memory-limit", type=float, metavar="GIB", help="bytes per device to plan for (default: the "
                                                                      "device's limit)")
    p.add_argument("--no-memory-check", action="store_true", help="run even when the estimate does not fit")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.checkpoint is None and args.prompt_file is not None and args.prompt is not None:
        args.checkpoint, args.prompt = args.prompt, None  # the earlier form: generate CKPT --prompt FILE
    from ltx_jax.pipelines.run import run as run_generate
    return run_generate(args)
