"""`ltx-jax train CONFIG.toml` and `ltx-jax train-preprocess`: the command-line side of `ltx_jax.training`.

Counterpart: ltx-trainer `scripts/train.py CONFIG.yaml` and `scripts/process_dataset.py`.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_parser"]


def _train(args: argparse.Namespace) -> int:
    from ltx_jax.training.checkpoints import CheckpointMismatch
    from ltx_jax.training.config import ConfigError, load_config
    from ltx_jax.training.data import DataError
    from ltx_jax.training.run import train

    try:
        config = load_config(args.config)
        if args.no_progress:
            import dataclasses
            config = dataclasses.replace(config, output=dataclasses.replace(config.output, progress=False))
        summary = train(config, stop_after=args.stop_after, log=lambda s: print(s, file=sys.stderr))
    except (ConfigError, DataError, CheckpointMismatch, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    losses = summary["losses"]
    print(json.dumps({"steps": summary["steps"], "last_loss": losses[max(losses)] if losses else None,
                      "trained_parameters": summary["trained_parameters"],
                      **{k: summary[k] for k in ("lora", "lora_ema", "model", "model_ema") if k in summary}}))
    return 0


def _preprocess(args: argparse.Namespace) -> int:
    from ltx_jax.configs import Runtime
    from ltx_jax.checkpoint import restore
    from ltx_jax.checkpoint.errors import LoadError
    from ltx_jax.checkpoint.gemma_folder import GemmaFolderError
    from ltx_jax.training.data import DataError
    from ltx_jax.training.preprocess import contexts_from_folder, preprocess

    try:
        rt = Runtime(param_dtype=args.dtype, compute_dtype=args.dtype)
        encoder = restore(args.checkpoint, "vae_encoder", runtime=rt)
        if args.gemma:
            from ltx_jax.training.encoders import gemma_captions
            captions = gemma_captions(args.gemma, args.checkpoint, rt)
        else:
            text = None
            if args.text_connectors:
                from flax import nnx
                text = nnx.split(restore(args.checkpoint, "text_embeddings", runtime=rt))
            captions = contexts_from_folder(args.contexts, text)
        audio = None
        if args.audio:
            from ltx_jax.audio_vae import load_audio_encoder
            from ltx_jax.training.encoders import clip_audio_encoder
            audio = clip_audio_encoder(load_audio_encoder(args.checkpoint, rt))
        counts = preprocess(args.dataset, args.cache, encoder=encoder, encode_captions=captions, encode_audio=audio,
                            shape_mode=args.shape_mode, max_frames=args.max_frames,
                            log=lambda s: print(s, file=sys.stderr))
    except (DataError, LoadError, GemmaFolderError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(counts))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="LoRA or full fine-tuning from a TOML config (resumes from its output folder)")
    p.add_argument("config", help="CONFIG.toml (sections: model, data, output, lora, objective, optim, mesh, sample)")
    p.add_argument("--stop-after", type=int, default=None, help="stop (with a checkpoint) after this many steps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (JSON lines still go to log.jsonl)")
    p.set_defaults(func=_train)
    p = sub.add_parser("train-preprocess", help="encode a clip folder (captions.csv / .jsonl) into a latent cache")
    p.add_argument("dataset", help="folder with captions.csv or captions.jsonl and the clips")
    p.add_argument("cache", help="cache folder to create or complete (resumable)")
    p.add_argument("--checkpoint", required=True,
                   help="official checkpoint (video VAE encoder, text connectors, audio VAE encoder with --audio)")
    text = p.add_mutually_exclusive_group(required=True)
    text.add_argument("--gemma", help="Gemma-3 Hugging Face folder: captions run through it and the checkpoint's "
                                      "connectors")
    text.add_argument("--contexts",
                      help="folder of precomputed prompt files <sha256(caption)[:16]>.npz (generate --prompt format)")
    p.add_argument("--audio", action="store_true",
                   help="encode each clip's sound track with the checkpoint's audio VAE (clips without one stay "
                        "video-only)")
    p.add_argument("--text-connectors", action="store_true",
                   help="with --contexts: the prompt files hold Gemma hidden states; run them through the connectors")
    p.add_argument("--shape-mode", choices=["crop", "refuse"], default="crop")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.set_defaults(func=_preprocess)
