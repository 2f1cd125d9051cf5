"""GPU check of the FP8 path: is cuBLASLt's FP8 GEMM in the optimized HLO, and how fast is one transformer block
at full width in FP8 against bf16? Prints one JSON object. Ran on one H200 on 2026-12-04 in 100 s
(experiments/gpu_checks.sh; results/gpu_check_fp8.json).

    .venv/bin/python experiments/gpu_check_fp8.py                 # full width: LTX-2.3 block, 6144 video tokens
    .venv/bin/python experiments/gpu_check_fp8.py --small         # CPU smoke test of the script's logic

Builds an LTX-2.3 `LTXModel` with one block (video 32 x 128 = 4096 wide, audio 32 x 64) and random
weights in bf16, calibrates input scales on the run's own inputs (`ltx_jax.pipelines.quantize.calibrate`:
121 frames at 512 x 768 = 16 x 16 x 24 = 6144 video tokens, 126 audio tokens, 128 text tokens), and makes an
FP8 copy of every block Linear (`quantize_blocks_in_memory`). Then for bf16, FP8 "weights" and FP8 "scaled":

* the optimized HLO of one jitted block forward: custom calls whose target names an FP8 GEMM
  (`__cublas$lt$matmul$f8`) and all cuBLAS GEMM custom calls, counted;
* the median of `--repeats` timed runs of that block (after a warm-up), and its output's cosine / relative
  L2 against the bf16 block;
* the bytes of the block's weights.

`native_fp8_gemm` (compute capability >= 8.9) decides whether the scaled mode feeds e4m3 operands to
`dot_general`; the JSON reports it with the device kind, so a run on an older GPU or on CPU says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from ltx_jax.configs import LTX_2_3, Runtime  # noqa: E402
from ltx_jax.nn.fp8 import native_fp8_gemm, set_fp8_mode, state_nbytes  # noqa: E402
from ltx_jax.pipelines.quantize import QuantizeSpec, calibrate, quantize_blocks_in_memory, select_layers  # noqa: E402
from ltx_jax.transformer.model import LTXModel  # noqa: E402

F8_GEMM = re.compile(r'custom_call_target="(__cublas\$lt\$matmul\$f8[^"]*)"')
ANY_GEMM = re.compile(r'custom_call_target="(__cublas\$[^"]*)"')


def hlo_counts(compiled) -> dict:
    text = compiled.as_text()
    return {"fp8_gemm_custom_calls": len(F8_GEMM.findall(text)), "cublas_custom_calls": len(ANY_GEMM.findall(text)),
            "f8_types_in_hlo": len(re.findall(r"\bf8e4m3fn\[", text))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="1/16 width, few tokens: a CPU test of the logic")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    t_start = time.perf_counter()
    c = dataclasses.replace(LTX_2_3.transformer, num_layers=1)
    frames, height, width = 121, 512, 768
    if args.small:
        c = dataclasses.replace(c, num_attention_heads=4, attention_head_dim=64, audio_num_attention_heads=4,
                                audio_attention_head_dim=32, cross_attention_dim=256, audio_cross_attention_dim=128)
        frames, height, width = 9, 128, 128
    rt = Runtime(param_dtype="bfloat16", compute_dtype="bfloat16")
    model = LTXModel(c, rt, rngs=nnx.Rngs(0))
    spec = QuantizeSpec(exclude_blocks=(), frames=frames, height=height, width=width, sigmas=(0.725,))
    layers = select_layers(c, spec)
    amax = calibrate(model, spec, layers)

    from ltx_jax.pipelines.quantize import _calibration_inputs
    from ltx_jax.transformer import Perturbations
    video, audio = next(_calibration_inputs(c, spec, jnp.bfloat16))
    (vx, vargs), (ax, aargs) = nnx.jit(lambda m, v, a: (m._prepare(v, a, False), m._prepare(a, v, True)))(
        model, video, audio)
    keep = jax.tree.map(lambda k: k[0], Perturbations.none(1, 1).keep())

    def block_fn(graphdef, state, vx, ax, vargs, aargs, keep):
        stack = nnx.merge(graphdef, state)
        graph, st = nnx.split(stack)
        block = nnx.merge(graph, jax.tree.map(lambda a: a[0], st))
        return block(vx, ax, vargs, aargs, keep)

    results = {"device": str(jax.devices()[0].device_kind), "backend": jax.default_backend(),
               "native_fp8_gemm": native_fp8_gemm(), "video_tokens": int(vx.shape[1]), "audio_tokens": int(ax.shape[1]),
               "width": c.inner_dim, "small": args.small, "runs": {}}
    outputs = {}
    for name in ("bf16", "fp8_weights", "fp8_scaled"):
        if name == "fp8_weights":
            quantize_blocks_in_memory(model, amax, mode="weights")
        elif name == "fp8_scaled":
            set_fp8_mode(model, "scaled")
        graphdef, state = nnx.split(model.transformer_blocks)
        fn = jax.jit(block_fn, static_argnums=0)
        t0 = time.perf_counter()
        compiled = fn.lower(graphdef, state, vx, ax, vargs, aargs, keep).compile()
        compile_s = time.perf_counter() - t0
        out = jax.block_until_ready(compiled(state, vx, ax, vargs, aargs, keep))  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(state, vx, ax, vargs, aargs, keep))
            times.append(time.perf_counter() - t0)
        outputs[name] = [np.asarray(o, np.float64) for o in out]
        results["runs"][name] = {"compile_s": round(compile_s, 2), "median_ms": round(1e3 * statistics.median(times), 3),
                                 "min_ms": round(1e3 * min(times), 3), "weight_bytes": state_nbytes(state),
                                 **hlo_counts(compiled)}
    for name in ("fp8_weights", "fp8_scaled"):
        errs = {}
        for s, a, b in zip(("video", "audio"), outputs[name], outputs["bf16"]):
            a, b = a.ravel(), b.ravel()
            errs[s] = {"cosine": float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)),
                       "rel_l2": float(np.linalg.norm(a - b) / np.linalg.norm(b))}
        results["runs"][name]["vs_bf16"] = errs
        results["runs"][name]["speedup_vs_bf16"] = round(results["runs"]["bf16"]["median_ms"]
                                                         / results["runs"][name]["median_ms"], 3)
    results["fp8_gemm_in_hlo"] = results["runs"]["fp8_scaled"]["fp8_gemm_custom_calls"] > 0
    results["total_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
