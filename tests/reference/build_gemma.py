"""Builds one Gemma-3 text-path fixture directory (docs/reference-fixtures-gemma.md) with transformers 4.57.1
and ltx-core 1.0.0 on CPU.

Run with the reference interpreter (never imports ltx_jax):

    .venv-ref/bin/python tests/reference/build_gemma.py --config gemma-tiny --seed 0 --out DIR
    .venv-ref/bin/python tests/reference/build_gemma.py --configs gemma-tiny,gemma-tiny-odd --seed 0 --root ROOT
      (one process, ROOT/<config>_seed<seed>/ each; saves the ~20 s of imports per directory)

--config: `gemma-tiny` (the doc's shared example: hidden 64, 4 x 16 heads, window 8, pattern 3) or
`gemma-tiny-odd` (heads x head_dim != hidden, query_pre_attn_scalar != head_dim, one KV head, pattern 2).
The directory is built under a temporary name and renamed into place at the end.
"""

import argparse
import os
import sys
import traceback
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ltxref.atomic import Laps, build_atomically  # noqa: E402
from ltxref.gemma_folder import CORPUS, write_folder  # noqa: E402
from ltxref.gemma_runs import (LTX_TEXT_FILE, MAX_LENGTH, ledger_path, official_tokens, plain_transformers,  # noqa: E402
                               seed_for, write_ltx_text_checkpoint)
from ltxref.official import package_versions  # noqa: E402
from ltxref.record import Recorder  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
ROPE = {"rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0}}
CONFIGS = {
    "gemma-tiny": {"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 6, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 8,
                   "sliding_window_pattern": 3, **ROPE},
    "gemma-tiny-odd": {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 4, "num_attention_heads": 4,
                       "num_key_value_heads": 1, "head_dim": 24, "query_pre_attn_scalar": 20, "sliding_window": 16,
                       "sliding_window_pattern": 2, "rope_theta": 500_000.0, "rope_local_base_freq": 5_000.0,
                       "rope_scaling": {"rope_type": "linear", "factor": 4.0}},
}
PROMPTS = {
    "short": "A red fox runs through fresh snow at dawn.",
    "medium": "  Café crème at the naïve façade: 東京の夜, ☕ and émigrés under neon light.  ",
    "long": " ".join(CORPUS[:5]) + " The fox stops, looks at the camera, and disappears into the trees.",
    "overlong": " ".join(CORPUS * 12),
}


def build(out: Path, name: str, seed: int) -> dict:
    import json

    lap = Laps()
    preset = json.loads((CONFIG_DIR / "ltx23-tiny.json").read_text())
    text = CONFIGS[name]
    folder = out / "gemma"
    info = write_folder(folder, text, seed_for(seed, "gemma"))
    write_ltx_text_checkpoint(out / LTX_TEXT_FILE, preset, text["hidden_size"], text["num_hidden_layers"],
                              seed_for(seed, "ltx"))
    lap("files")

    rec = Recorder()
    prompts = official_tokens(rec, folder, PROMPTS)
    if prompts["overlong"]["untruncated_tokens"] <= MAX_LENGTH or prompts["long"]["valid_tokens"] < 100:
        raise AssertionError(f"prompt lengths do not cover the cases: {prompts}")
    lap("tokenizer")
    sdpa_eager = plain_transformers(rec, folder, list(PROMPTS))
    lap("transformers")
    ledger_path(rec, out, info["config"], PROMPTS, torch.float32, "ltx")
    lap("ltx_f32")
    ledger_path(rec, out, info["config"], PROMPTS, torch.bfloat16, "ltx_bf16")
    lap("ltx_bf16")

    diffs = {}
    for p in PROMPTS:
        a = rec.arrays
        if not np.array_equal(a[f"ltx.{p}.hidden_states"], a[f"gemma.{p}.hidden_states"]):
            raise AssertionError(f"{p}: ltx-core's hidden states differ from plain transformers' in float32")
        valid = a[f"tok.{p}.attention_mask"][0].astype(bool)
        hs32, hs16 = a[f"ltx.{p}.hidden_states"][:, :, valid], a[f"ltx_bf16.{p}.hidden_states"][:, :, valid]
        diffs[p] = {
            "ltx_vs_plain_hidden_states_equal": True, **sdpa_eager[p],
            "bf16_vs_f32_hidden_max_abs_over_range": float(np.abs(hs16 - hs32).max() / np.abs(hs32).max()),
            **{f"bf16_vs_f32_{k}_max_abs": float(np.abs(a[f"ltx_bf16.{p}.{k}"] - a[f"ltx.{p}.{k}"]).max())
               for k in ("video_encoding", "audio_encoding")},
        }
    rec.save(str(out / "fixtures.npz"))
    lap("save")
    files = {str(f.relative_to(out)): f.stat().st_size for f in sorted(out.rglob("*")) if f.is_file()}
    return {
        "format": "docs/reference-fixtures-gemma.md",
        "builder": "tests/reference/build_gemma.py",
        "config_name": name, "seed": seed,
        "gemma_config": info["config"], "ltx_preset": "tests/reference/configs/ltx23-tiny.json",
        "ltx_text_config": {"transformer": preset["transformer"]},
        "layer_types": ["full_attention" if (i + 1) % text["sliding_window_pattern"] == 0 else "sliding_attention"
                        for i in range(text["num_hidden_layers"])],
        "tokenizer_size": info["tokenizer_size"], "embedding_rows": info["rows"], "max_length": MAX_LENGTH,
        "prompts": prompts, "diffs": diffs,
        "compat": "transformers 4.57.1: the official path runs unmodified; GEMMA3_CONFIG_FOR_LTX is overwritten "
                  "with the folder's config while the ledger builds the encoder",
        "timings": lap.timings, "files": files,
        "arrays": rec.meta, "versions": package_versions(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS))
    parser.add_argument("--out")
    parser.add_argument("--configs", help="comma-separated config names, built under --root")
    parser.add_argument("--root")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.configs:
        if not args.root:
            parser.error("--configs needs --root")
        todo = [(c, Path(args.root) / f"{c}_seed{args.seed}") for c in args.configs.split(",")]
    elif args.config and args.out:
        todo = [(args.config, Path(args.out))]
    else:
        parser.error("give --config and --out, or --configs and --root")
    unknown = [c for c, _ in todo if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configs {unknown}; choose from {sorted(CONFIGS)}")
    torch.set_num_threads(2)
    try:
        for name, out in todo:
            build_atomically(out, lambda tmp, name=name: build(tmp, name, args.seed))
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
