"""`ltx-jax encode`: prompt text -> the prompt file `ltx-jax generate --prompt FILE` reads, with no PyTorch.

Counterpart: the text part of each ltx_pipelines pipeline (`encode_prompts([prompt, negative_prompt], ledger)`,
then the encoder freed). Here Gemma runs once for the prompt and the negative prompt (one batch), the contexts
are cached by hash under `--cache`, and Gemma is freed before the command returns.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    p = sub.add_parser("encode", help="prompt text -> prompt .npz for `generate` (Gemma-3 + the checkpoint's connectors)",
                       description="Tokenize and encode a prompt and a negative prompt with a Hugging Face Gemma-3 folder "
                                   "and the text connectors of an LTX checkpoint; writes video_context, audio_context "
                                   "and negative_* to an .npz that `ltx-jax generate --prompt` reads.")
    p.add_argument("gemma", help="Hugging Face Gemma-3 folder (config.json, tokenizer.json, model*.safetensors)")
    p.add_argument("checkpoint", help="official LTX single-file checkpoint (its text connectors are used)")
    p.add_argument("--prompt", required=True, help="prompt text")
    p.add_argument("--negative", help="negative prompt (default: the official default negative prompt)")
    p.add_argument("--no-negative", action="store_true", help="write no negative context (distilled pipelines)")
    p.add_argument("--out", required=True, help=".npz to write (atomically)")
    p.add_argument("--cache", help="folder of cached contexts (by hash of the Gemma files, weights and prompt)")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ltx_jax.configs import ConfigError, Runtime
    from ltx_jax.convert.loading import LoadError
    from ltx_jax.convert.safetensors_file import SafetensorsError
    from ltx_jax.text_encoder import (GemmaFolderError, TokenizerError, encode_prompts, load_gemma,
                                      load_text_embeddings_for, negative_prompt, write_prompt_file)

    runtime = Runtime(param_dtype=args.dtype, compute_dtype=args.dtype)
    prompts = [args.prompt] + ([] if args.no_negative else [args.negative or negative_prompt()])
    start = time.perf_counter()
    try:
        gemma = load_gemma(args.gemma, runtime)
        text = load_text_embeddings_for(gemma, args.checkpoint, runtime)
        contexts = encode_prompts(gemma, text, prompts, cache_dir=args.cache)
        gemma.free()
        path = write_prompt_file(args.out, contexts[0], contexts[1] if len(contexts) > 1 else None)
    except (GemmaFolderError, TokenizerError, ConfigError, LoadError, SafetensorsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(path), "prompts": len(prompts), "seconds": round(time.perf_counter() - start, 3),
                      "video_context": list(contexts[0][0].shape), "audio_context": list(contexts[0][1].shape)}))
    return 0
