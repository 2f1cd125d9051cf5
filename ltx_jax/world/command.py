"""`ltx-jax world --out DIR --clips N --seed S`: write a synthetic world dataset (see `world.dataset`), and
optionally the word-level tokenizer + tiny random Gemma-3 folder over its vocabulary (`--gemma DIR`).

No ltx_core counterpart (issue 17's training data).
"""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    p = sub.add_parser("world", help="write a synthetic captioned audio-visual dataset (clips mp4 + captions.jsonl)",
                       description="Render N clips of coloured shapes moving on plain or textured backgrounds, with a "
                                   "tone whose pitch follows the shape, captioned from the world grammar; written in "
                                   "the `ltx-jax train-preprocess` input format.")
    p.add_argument("--out", required=True, help="dataset folder (clips/, captions.jsonl, world.json)")
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=25, help="1 + 8k")
    p.add_argument("--height", type=int, default=64, help="multiple of 32")
    p.add_argument("--width", type=int, default=64, help="multiple of 32")
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--gemma", help="also write the world tokenizer + a tiny random Gemma-3 folder here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ltx_jax.world.dataset import WorldSpec, write_dataset

    from pathlib import Path

    start = time.perf_counter()
    if args.gemma and Path(args.gemma).exists():  # checked first, so a refused run writes nothing
        print(f"error: {args.gemma}: already exists; choose another folder for the tiny Gemma", file=sys.stderr)
        return 2
    try:
        spec = WorldSpec(seed=args.seed, clips=args.clips, frames=args.frames, height=args.height,
                         width=args.width, fps=args.fps)
        path = write_dataset(args.out, spec)
        if args.gemma:
            from ltx_jax.world.tokenizer import write_tiny_gemma
            write_tiny_gemma(args.gemma, seed=args.seed)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {spec.clips} clips ({spec.frames}x{spec.height}x{spec.width} @ {spec.fps} fps, audio "
          f"{spec.sample_rate} Hz stereo) and {path} in {time.perf_counter() - start:.1f} s")
    return 0


def add_vae_parser(sub) -> None:
    from ltx_jax.world.train_vae import VAETrainConfig

    d = VAETrainConfig()
    p = sub.add_parser("world-vae", help="train the embedded default's video VAE on the synthetic world (resumable)",
                       description="Stage 1 of the embedded default (issue 17): the LTX-2.3 video VAE layout at a small "
                                   "width, trained as an autoencoder of fresh world clips. Re-running with the same "
                                   "settings resumes from OUT/checkpoints; at the last step it fits the latent "
                                   "statistics, reports the held-out PSNR and writes OUT/video_vae.npz.")
    p.add_argument("--out", required=True)
    for name in ("steps", "batch", "latent_channels", "decoder_base_channels", "frames", "height", "width", "seed",
                 "save_every"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    p.add_argument("--lr", type=float, default=d.learning_rate)
    p.add_argument("--object-weight", type=float, default=d.object_weight,
                   help="extra loss weight on the object's pixels (0: plain L1 + MSE)")
    p.add_argument("--scene-weight", type=float, default=d.scene_weight,
                   help="weight of the scene read-out loss (a linear head from the latent to the scene parameters, "
                        "not kept; 0: none)")
    p.set_defaults(func=run_vae)


def run_vae(args: argparse.Namespace) -> int:
    import json

    from ltx_jax.world.train_vae import VAETrainConfig, train_video_vae

    try:
        cfg = VAETrainConfig(steps=args.steps, batch=args.batch, latent_channels=args.latent_channels,
                             decoder_base_channels=args.decoder_base_channels, frames=args.frames,
                             height=args.height, width=args.width, seed=args.seed, save_every=args.save_every,
                             learning_rate=args.lr, object_weight=args.object_weight,
                             scene_weight=args.scene_weight)
        print(json.dumps(train_video_vae(args.out, cfg)))
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def add_dit_parser(sub) -> None:
    from ltx_jax.world.train_dit import DiTTrainConfig

    d = DiTTrainConfig()
    p = sub.add_parser("world-dit", help="train the embedded default's DiT on the synthetic world (resumable)",
                       description="Stage 2 of the embedded default (issue 17): builds the tiny LTX-2.3 checkpoint "
                                   "around a finished world-vae run (official single file), the world dataset, "
                                   "its latent cache and the tiny Gemma, then trains the transformer with flow "
                                   "matching and caption dropout (`ltx-jax train`, full, float32). Re-running "
                                   "resumes; the result is OUT/train/model.safetensors.")
    p.add_argument("--out", required=True)
    p.add_argument("--vae", required=True, help="a finished `ltx-jax world-vae --out` folder")
    for name in ("clips", "layers", "heads", "steps", "batch", "warmup_steps", "seed", "checkpoint_every"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    p.add_argument("--lr", type=float, default=d.learning_rate)
    p.add_argument("--caption-dropout", type=float, default=d.caption_dropout_p)
    p.add_argument("--stop-after", type=int, default=None, help="stop (with a checkpoint) after this many steps")
    p.set_defaults(func=run_dit)


def run_dit(args: argparse.Namespace) -> int:
    import json

    from ltx_jax.training.config import ConfigError
    from ltx_jax.training.data import DataError
    from ltx_jax.world.train_dit import DiTTrainConfig, train_dit
    from ltx_jax.world.train_vae import load_trained, video_vae_config

    try:
        vae_cfg, weights = load_trained(args.vae)
        cfg = DiTTrainConfig(clips=args.clips, layers=args.layers, heads=args.heads, steps=args.steps,
                             batch=args.batch, warmup_steps=args.warmup_steps,
                             seed=args.seed, checkpoint_every=args.checkpoint_every, learning_rate=args.lr,
                             caption_dropout_p=args.caption_dropout)
        summary = train_dit(args.out, weights, video_vae_config(vae_cfg), cfg, frames=vae_cfg.frames,
                            height=vae_cfg.height, width=vae_cfg.width, stop_after=args.stop_after,
                            log=lambda s: print(s, file=sys.stderr))
    except (ValueError, OSError, ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    losses = summary["losses"]
    print(json.dumps({"steps": summary["steps"], "last_loss": losses[max(losses)] if losses else None,
                      **{k: summary[k] for k in ("model", "model_ema") if k in summary}}))
    return 0


def add_distill_parser(sub) -> None:
    from ltx_jax.world.distill import DistillConfig

    d = DistillConfig()
    p = sub.add_parser("world-distill", help="distill the world's dev model into an 8-step CFG-free student",
                       description="Stage 3 of the embedded default (issue 17): guided trajectory distillation of "
                                   "a finished world-dit run onto the official 8 distilled sigmas (see "
                                   "ltx_jax/world/distill.py). Re-running resumes; the result is "
                                   "OUT/student.safetensors.")
    p.add_argument("--dit", required=True, help="a finished `ltx-jax world-dit --out` folder (the teacher)")
    p.add_argument("--out", required=True)
    for name in ("steps", "batch", "warmup_steps", "substeps", "seed", "checkpoint_every"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    p.add_argument("--lr", type=float, default=d.learning_rate)
    p.add_argument("--cfg", type=float, default=d.cfg, help="the teacher's video CFG scale")
    p.add_argument("--trainable", choices=("linear", "all"), default=d.trainable,
                   help="linear: only linear weights move (the student is the teacher + a LoRA); all: every parameter")
    p.add_argument("--stop-after", type=int, default=None, help="stop (with a checkpoint) after this many steps")
    p.set_defaults(func=run_distill)


def run_distill(args: argparse.Namespace) -> int:
    import json

    from ltx_jax.training.data import DataError
    from ltx_jax.world.distill import DistillConfig, distill

    try:
        cfg = DistillConfig(steps=args.steps, batch=args.batch, warmup_steps=args.warmup_steps, substeps=args.substeps,
                            seed=args.seed, checkpoint_every=args.checkpoint_every, learning_rate=args.lr,
                            cfg=args.cfg, trainable=args.trainable)
        result = distill(args.dit, args.out, cfg, stop_after=args.stop_after, log=lambda s: print(s, file=sys.stderr))
    except (ValueError, OSError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    losses = result.pop("losses")
    print(json.dumps({**result, "last_loss": losses[max(losses)] if losses else None}))
    return 0


def add_default_parser(sub) -> None:
    from ltx_jax.world.recipe import Recipe

    d = Recipe()
    p = sub.add_parser("world-default", help="reproduce the embedded default from scratch: every stage, packaged",
                       description="The one command behind ltx_jax/data/world_default (issue 17): trains the video "
                                   "VAE, the dev DiT, the audio decoder + vocoder and the 8-step student on the "
                                   "synthetic world, packages them (bf16 official file + distilled LoRA + tiny "
                                   "Gemma + manifest) in OUT/default and measures their prompt adherence. Every "
                                   "stage resumes when re-run. About 110 min on 2 CPU cores at the defaults "
                                   "(103 measured with an 800-step audio stage), 11.4 on one H200 (two runs "
                                   "side by side).")
    p.add_argument("--out", required=True, help="run folder (vae/, dit/, audio/, distill/, default/, recipe.json)")
    p.add_argument("--install", nargs="?", const="package", metavar="DIR",
                   help="copy OUT/default here when done (no DIR: the package's ltx_jax/data/world_default)")
    p.add_argument("--tiny", action="store_true", help="a few steps of each stage at 9x32x32 (a smoke run)")
    p.add_argument("--vae-steps", type=int, default=d.vae.steps)
    p.add_argument("--decoder-steps", type=int, default=d.decoder.steps)
    p.add_argument("--dit-steps", type=int, default=d.dit.steps)
    p.add_argument("--audio-steps", type=int, default=d.audio.steps)
    p.add_argument("--distill-steps", type=int, default=d.distill.steps)
    p.add_argument("--prompts", type=int, default=d.prompts, help="held-out prompts of the adherence check (0: skip)")
    p.add_argument("--set", action="append", default=[], metavar="STAGE.FIELD=VALUE",
                   help="change one recipe field after the flags above, e.g. vae.object_weight=3 (repeatable; "
                        "stages vae, decoder, dit, audio, distill)")
    p.add_argument("--sequential", action="store_true",
                   help="run every stage in this process (default: the decoder and audio stages beside the DiT)")
    p.set_defaults(func=run_default)


def run_default(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from ltx_jax.training.data import DataError
    from ltx_jax.world.package import DEFAULT_DIR
    from ltx_jax.world.recipe import Recipe, reproduce

    try:
        r = Recipe.tiny() if args.tiny else Recipe()
        if not args.tiny:
            r = dataclasses.replace(r, vae=dataclasses.replace(r.vae, steps=args.vae_steps),
                                    decoder=dataclasses.replace(r.decoder, steps=args.decoder_steps,
                                                                warmup_steps=min(r.decoder.warmup_steps,
                                                                                 args.decoder_steps)),
                                    dit=dataclasses.replace(r.dit, steps=args.dit_steps),
                                    audio=dataclasses.replace(r.audio, steps=args.audio_steps,
                                                              warmup_steps=min(r.audio.warmup_steps, args.audio_steps)),
                                    distill=dataclasses.replace(r.distill, steps=args.distill_steps),
                                    prompts=args.prompts)
        r = r.override(args.set)
        install = DEFAULT_DIR if args.install == "package" else args.install
        result = reproduce(args.out, r, install=install, beside=not args.sequential,
                           log=lambda s: print(s, file=sys.stderr))
    except (ValueError, OSError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m = result.get("manifest", {})
    print(json.dumps({"finished": result["finished"], "default": result.get("default"),
                      "total_bytes": m.get("total_bytes"), "adherence": m.get("adherence")}))
    return 0
