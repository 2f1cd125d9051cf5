"""Compile time with and without JAX's persistent compilation cache (the cache `ltx-jax generate` turns on).

    .venv/bin/python experiments/bench_compile.py --tiny     # `ltx-jax generate` twice on the tiny model
    .venv/bin/python experiments/bench_compile.py --full     # one full-size LTX-2.3 DiT step, lowered abstractly

`--tiny` writes the bundled tiny checkpoint and upsampler (as `ltx-jax demo` does), then runs the distilled
pipeline (17 x 128 x 128) twice, each in a new process with the same fresh cache folder: the first compiles
everything, the second reads every executable back. Timings come from the sidecars (compile = tracing +
lowering + backend compile or cache read, summed over the phases).

`--full` lowers one x0 step of the LTX-2.3 preset (121 frames at 512 x 768: 6,144 video + 126 audio tokens,
bf16, nothing allocated) and compiles it for this machine's backend, cold, then again after clearing JAX's
in-memory caches so the executable comes from the persistent cache. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tiny(work: Path) -> dict:
    import numpy as np

    from ltx_jax.configs import LTX_2_3_TINY, TINY_UPSAMPLERS
    from ltx_jax.checkpoint.synthetic import write_checkpoint, write_upsampler

    ckpt = write_checkpoint(LTX_2_3_TINY, work / "ckpt.safetensors")
    ups = write_upsampler(TINY_UPSAMPLERS["spatial_x2"], work / "up.safetensors")
    c = LTX_2_3_TINY.connector
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((c.text_num_hidden_states, 1, 128, c.text_hidden_size)).astype(np.float32)
    np.savez(work / "prompt.npz", hidden_states=hidden, attention_mask=(np.arange(128) >= 100)[None].astype(np.int64))
    runs = []
    for i in range(2):
        out = work / f"run{i}.mp4"
        cmd = [sys.executable, "-m", "ltx_jax.cli", "generate", "--prompt-file", str(work / "prompt.npz"),
               "--checkpoint", str(ckpt), "--upsampler", str(ups), "--frames", "17", "--height", "128", "--width",
               "128", "--out", str(out), "--cache-dir", str(work / "cache"), "--quiet"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
        wall = time.perf_counter() - t0
        side = json.loads(out.with_suffix(".json").read_text())
        t = side["timings"]
        runs.append({"process_wall_s": round(wall, 2), "total_s": t["total_s"], "compile_s": t["compile_s"],
                     "per_phase_compile_s": {k: v["compile_s"] for k, v in t.items() if isinstance(v, dict)},
                     "cache_hits": side["compilation"]["hits"], "cache_misses": side["compilation"]["misses"]})
    return {"tiny_distilled_17x128x128": {"first": runs[0], "cached": runs[1]}}


def full(work: Path) -> dict:
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    sys.path.insert(0, str(ROOT / "experiments"))
    from bench_dit import _abstract_step

    from ltx_jax.configs import LTX_2_3

    jax.config.update("jax_compilation_cache_dir", str(work / "cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    cc.reset_cache()
    t0 = time.perf_counter()
    step, _, params, tv, ta = _abstract_step(LTX_2_3.transformer)
    lower_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    step.compile()
    cold = time.perf_counter() - t0
    jax.clear_caches()
    t0 = time.perf_counter()
    step2, _, _, _, _ = _abstract_step(LTX_2_3.transformer)
    lower2 = time.perf_counter() - t0
    t0 = time.perf_counter()
    step2.compile()
    cached = time.perf_counter() - t0
    files = list((work / "cache").iterdir())
    return {"ltx23_full_step": {"params": params, "video_tokens": tv, "audio_tokens": ta, "backend": jax.default_backend(),
                                "lower_s": round(lower_s, 2), "compile_cold_s": round(cold, 2),
                                "lower_again_s": round(lower2, 2), "compile_cached_s": round(cached, 2),
                                "cache_entries": len(files), "cache_bytes": sum(f.stat().st_size for f in files)}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--full", action="store_true")
    args = p.parse_args()
    out = {}
    with tempfile.TemporaryDirectory(prefix="ltx-bench-compile-") as d:
        if args.tiny or not args.full:
            (Path(d) / "tiny").mkdir()
            out.update(tiny(Path(d) / "tiny"))
        if args.full:
            (Path(d) / "full").mkdir()
            out.update(full(Path(d) / "full"))
    out["cpu_count"] = os.cpu_count()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
