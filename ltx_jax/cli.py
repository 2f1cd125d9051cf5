"""`ltx-jax` command line: inspect, demo, convert, export, quantize, encode, generate, train, train-preprocess."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ltx_jax.checkpoint.safetensors_file import SafetensorsError


def _inspect(args: argparse.Namespace) -> int:
    from ltx_jax.checkpoint.inspect import format_report, inspect_file

    reports = []
    for path in args.files:
        try:
            reports.append(inspect_file(path))
        except SafetensorsError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.json:
        out = [r.to_json() for r in reports]
        print(json.dumps(out[0] if len(out) == 1 else out, indent=1))
    else:
        print("\n\n".join(format_report(r) for r in reports))
    return 0


def _demo(args: argparse.Namespace) -> int:
    """The main job: the embedded default (trained on the synthetic world) makes a clip of the prompt, and the
    world's analyzer says whether it shows what was asked (`ltx_jax.world.demo`). `--random`: the machinery
    check on random weights instead (`_random_demo`)."""
    if args.random:
        return _random_demo(args)
    from ltx_jax.world.demo import run_demo

    try:
        result = run_demo(args.prompt, pipeline=args.pipeline, out=args.out, seed=args.seed, quiet=args.json)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, default=str))
    return 0


def _random_demo(args: argparse.Namespace) -> int:
    """A tiny distilled two-stage generation on random weights, end to end.

    Builds the bundled tiny LTX-2.3-layout checkpoint and x2 upsampler (seeded random weights, the official
    file layout, written by our own writer) and a random stand-in for Gemma's hidden states, inspects the
    files, and runs `generate` (distilled pipeline, 17 frames at 128x128) on them. The weights are random,
    so the frames are noise; what the run shows is the whole path from official files to pixels.
    """
    import numpy as np

    from ltx_jax.audio_vae import audio_schema
    from ltx_jax.checkpoint.synthetic import write_checkpoint, write_upsampler
    from ltx_jax.configs import LTX_2_3_TINY_AV, TINY_UPSAMPLERS

    out = Path(args.out)
    checkpoint = write_checkpoint(LTX_2_3_TINY_AV, out / "ltx23-tiny.safetensors", seed=args.seed,
                                  extra_schema=audio_schema(LTX_2_3_TINY_AV))
    upsampler = write_upsampler(TINY_UPSAMPLERS["spatial_x2"], out / "ltx23-tiny-spatial-upscaler-x2.safetensors",
                                seed=args.seed)
    c = LTX_2_3_TINY_AV.connector
    rng = np.random.default_rng(args.seed)
    # [L+1, B, S, G] hidden states with 20 valid (left-padded) tokens, as Gemma would give them
    hidden = rng.standard_normal((c.text_num_hidden_states, 1, 128, c.text_hidden_size)).astype(np.float32)
    mask = (np.arange(128) >= 108).astype(np.int64)[None]
    prompt = out / "prompt.npz"
    np.savez(prompt, hidden_states=hidden, attention_mask=mask)
    if _inspect(argparse.Namespace(files=[str(checkpoint), str(upsampler)], json=args.json)) != 0:
        return 1
    print(file=sys.stderr)
    return main(["generate", str(checkpoint), "--prompt", str(prompt), "--upsampler", str(upsampler),
                 "--pipeline", "distilled", "--frames", "17", "--height", "128", "--width", "128",
                 "--seed", str(args.seed), "--dtype", "float32", "--out", str(out / "video"),
                 *(["--quiet"] if args.json else [])])


def _convert(args: argparse.Namespace) -> int:
    """Official file / diffusers folder -> ltx-jax checkpoint (Orbax + config.json + manifest.json)."""
    from ltx_jax.checkpoint.folder import CheckpointError
    from ltx_jax.checkpoint.converter import ConvertError, convert
    from ltx_jax.checkpoint.lora import LoraError, parse_lora_arg

    components = args.components.split(",") if args.components else None
    try:
        out = convert(args.src, args.out, dtype=args.dtype, components=components,
                      loras=[parse_lora_arg(x) for x in args.lora], overwrite=args.overwrite, verbose=not args.quiet)
    except (ConvertError, SafetensorsError, LoraError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


def _export(args: argparse.Namespace) -> int:
    """ltx-jax checkpoint (or diffusers folder) -> the official single-file layout."""
    from ltx_jax.checkpoint.folder import CheckpointError
    from ltx_jax.checkpoint.exporter import export

    try:
        out = export(args.src, args.out, overwrite=args.overwrite)
    except (CheckpointError, SafetensorsError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


def _quantize(args: argparse.Namespace) -> int:
    """bf16 / f32 checkpoint -> FP8 in the official layout (ltx_jax.pipelines.quantize)."""
    import json

    from ltx_jax.pipelines.quantize import DEFAULT_EXCLUDED_BLOCKS, QuantizeSpec, quantize_checkpoint

    exclude = DEFAULT_EXCLUDED_BLOCKS if args.exclude_blocks is None else \
        tuple(int(b) for b in args.exclude_blocks.split(",") if b.strip())
    spec = QuantizeSpec(mode=args.mode, exclude_blocks=exclude, include=args.include, other_dtype=args.other_dtype,
                        frames=args.frames, height=args.height, width=args.width, seed=args.seed, prompt=args.prompt)
    try:
        report = quantize_checkpoint(args.src, args.out, spec, overwrite=args.overwrite)
    except (ValueError, FileExistsError, FileNotFoundError, SafetensorsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in report.items() if k != "input_amax"}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ltx-jax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="what a safetensors file is, from its header alone")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=_inspect)
    from ltx_jax.world.demo import DEFAULT_PROMPT
    p = sub.add_parser("demo", help="the embedded default (a tiny LTX-2.3 trained on the synthetic world): prompt -> "
                                    "mp4 with sound + contact sheet, judged by the world's analyzer")
    p.add_argument("prompt", nargs="?", default=DEFAULT_PROMPT, help=f"default: {DEFAULT_PROMPT!r}")
    p.add_argument("--pipeline", default="distilled", choices=["distilled", "dev"],
                   help="distilled: the 8-step CFG-free student (default); dev: the teacher, 32 steps at CFG 3")
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--random", action="store_true",
                   help="instead: build a random-weight tiny checkpoint + upsampler, inspect them, run the distilled "
                        "two-stage pipeline (the machinery check; the frames are noise)")
    p.set_defaults(func=_demo)
    p = sub.add_parser("convert", help="official file or diffusers folder -> ltx-jax checkpoint")
    p.add_argument("src", help="official .safetensors file (checkpoint, transformer-only, FP8, upsampler, LoRA, TAE) "
                               "or a diffusers-format LTX-2 / LTX-2.3 folder")
    p.add_argument("out", help="checkpoint folder to create (written atomically)")
    p.add_argument("--dtype", default="keep", choices=["keep", "bf16", "f32"],
                   help="floating tensors other than FP8 weights and scales (default: as in the file)")
    p.add_argument("--components", help="comma-separated subset of transformer, connectors, vae, vae_encoder, "
                                        "vae_decoder, audio_vae, vocoder (default: all in the file)")
    p.add_argument("--lora", action="append", default=[], metavar="PATH[:STRENGTH]",
                   help="merge a LoRA into the transformer (repeatable; strength default 1.0)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT once the new checkpoint is complete")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_convert)
    p = sub.add_parser("export", help="ltx-jax checkpoint -> official single-file .safetensors")
    p.add_argument("src", help="ltx-jax checkpoint folder (or a diffusers folder)")
    p.add_argument("out", help=".safetensors file to write")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_export)
    p = sub.add_parser("quantize", help="bf16 / f32 checkpoint -> FP8 .safetensors in the official FP8 layout")
    p.add_argument("src", help="official single-file checkpoint (or ltx-jax checkpoint folder)")
    p.add_argument("out", help=".safetensors file to write")
    p.add_argument("--mode", default="scaled", choices=["scaled", "cast"],
                   help="scaled: e4m3 + weight_scale + calibrated input_scale; cast: weight-only e4m3 (fp8-cast)")
    p.add_argument("--exclude-blocks", help="comma-separated block indices kept bf16 (default: 0,43,44,45,46,47, "
                                            "ltx-core's list; '' quantizes every block)")
    p.add_argument("--include", default=".*", help="regex over the Linear path inside a block (default: all)")
    p.add_argument("--other-dtype", default="keep", choices=["keep", "bf16"])
    p.add_argument("--prompt", help="calibration prompt (.npz with video_context / audio_context)")
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_quantize)
    from ltx_jax.pipelines.command import add_parser as add_generate_parser
    from ltx_jax.text_encoder.command import add_parser as add_encode_parser
    add_encode_parser(sub)
    from ltx_jax.world.command import (add_default_parser, add_dit_parser, add_distill_parser,
                                       add_parser as add_world_parser, add_vae_parser)
    add_world_parser(sub)
    add_vae_parser(sub)
    add_dit_parser(sub)
    add_distill_parser(sub)
    add_default_parser(sub)
    add_generate_parser(sub)
    from ltx_jax.training.command import add_parser as add_train_parser
    add_train_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
