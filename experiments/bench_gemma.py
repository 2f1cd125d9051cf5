"""Gemma-3 text encoder: timings on a hub folder, and the full 12B forward lowered abstractly (nothing allocated).

Run:  .venv/bin/python experiments/bench_gemma.py [GEMMA_DIR] [--dtype bfloat16|float32] [--batch 2] [--lower-full]
GEMMA_DIR: any Hugging Face Gemma-3 folder (e.g. a Gemma fixture's `gemma/`): load, first call (compile + run),
second call, per prompt. --lower-full: `Gemma3TextModel` with the released 12B config, batch x 1024 tokens,
lowered and compiled from shapes only: FLOPs (XLA cost analysis) and XLA's memory analysis (parameters,
temporaries, output). Prints one JSON object.

Measured on the 2-core CPU machine (shared): tiny fixture folder, f32, batch 2: load 0.37 s, first call 8.1 s
(compile), then 1.6 s. --lower-full, bf16, batch 2 (prompt + negative): 4.57e13 FLOPs (matmuls 4.41e13 + attention
1.65e12 at full 1024^2), compiled in 5.4 s; XLA:CPU memory analysis: 23.53 GB parameters, 1.32 GB temporaries,
0.77 GB output (the 49 hidden states).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.configs import Runtime
from ltx_jax.text_encoder import GEMMA3_12B, Gemma3TextModel, load_gemma, negative_prompt
from ltx_jax.text_encoder.encoder import hidden_states_fn


def lower_full(runtime: Runtime, batch: int) -> dict:
    abstract = nnx.eval_shape(lambda: Gemma3TextModel(GEMMA3_12B, runtime, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    ids = jax.ShapeDtypeStruct((batch, 1024), jnp.int32)
    start = time.perf_counter()
    compiled = hidden_states_fn.lower(graphdef, state, ids, ids).compile()
    seconds = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    mem = compiled.memory_analysis()
    c, tokens = GEMMA3_12B, batch * 1024
    matrices = sum(int(np.prod(v.shape)) for p, v in nnx.to_flat_state(state) if len(v.shape) == 3)
    analytic = 2 * tokens * matrices + 4 * batch * 1024 ** 2 * c.num_attention_heads * c.head_dim * c.num_hidden_layers
    return {"config": "gemma-3-12b", "batch": batch, "tokens": 1024, "dtype": runtime.compute_dtype,
            "compile_s": round(seconds, 2), "analytic_flops": float(analytic),
            # XLA counts a scan body once, not per iteration: this is about one layer's FLOPs.
            "xla_flops_one_scan_iteration": float(cost.get("flops", float("nan"))),
            "parameter_bytes": int(mem.argument_size_in_bytes), "temp_bytes": int(mem.temp_size_in_bytes),
            "output_bytes": int(mem.output_size_in_bytes)}


def run_folder(folder: str, runtime: Runtime, batch: int) -> dict:
    start = time.perf_counter()
    gemma = load_gemma(folder, runtime)
    load = time.perf_counter() - start
    prompts = (["A red fox runs through fresh snow at dawn.", negative_prompt()] * batch)[:batch]
    ids, mask = gemma.tokenize(prompts)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(gemma.hidden_states(ids, mask))
        times.append(time.perf_counter() - start)
    return {"folder": folder, "batch": batch, "dtype": runtime.compute_dtype, "load_s": round(load, 3),
            "first_call_s": round(times[0], 3), "call_s": round(float(np.median(times[1:])), 3),
            "layers": gemma.config.num_hidden_layers, "hidden": gemma.config.hidden_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lower-full", action="store_true")
    args = parser.parse_args()
    runtime = Runtime(param_dtype=args.dtype, compute_dtype=args.dtype)
    out = {"backend": jax.default_backend()}
    if args.folder:
        out["folder_run"] = run_folder(args.folder, runtime, args.batch)
    if args.lower_full:
        out["full_12b"] = lower_full(runtime, args.batch)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
