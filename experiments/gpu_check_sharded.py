"""GPU check of the sequence-parallel attention path with cuDNN (run on 1+ NVIDIA GPUs; < 8 min on one H200).

Run:  .venv/bin/python experiments/gpu_check_sharded.py [--json]

Ran on one H200 on 2026-12-04 (experiments/gpu_checks.sh; results/gpu_check_sharded.json: all ok). What it
checks, in order (each step reports and the script goes on; exit status 1 if any check fails):
  1. cuDNN `attention_with_lse` (bf16, head dim 64 and 128) against the float32 XLA kernel: output error and,
     the main risk, the log-sum-exp residual's convention (natural log, includes the max);
  2. the ring merge with cuDNN partials: keys split into 4 blocks, merged by `merge_partials`, equal to
     the unsplit attention (proves the LSE is usable for ring and video->audio);
  3. `jax.shard_map` around cuDNN on a mesh of every visible GPU (1 GPU: a 1-device mesh, the manual-sharding
     lowering of the custom call): Ulysses, ring and hybrid strategies compile, equal the single-device
     result (bf16 bound), and report the compiled HLO's cuDNN custom calls and collectives;
  4. timing: one x0 forward of the `mid` transformer (4 layers, 16 heads x 64) at 4 x 32 x 48 = 6144 video
     tokens, bf16, under the best strategy, and the same attention call at LTX-2.3 size (32 heads x 128,
     24,576 tokens) per strategy, median of 5 after warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ltx_jax.nn.attention import _xla_attention, attention_with_lse  # noqa: E402
from ltx_jax.parallel import AttentionPlan, attend, hlo, merge_partials  # noqa: E402
from ltx_jax.sharding import inference_rules, make_mesh  # noqa: E402


def _time(fn, *args, n=5):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _rel(a, b):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def check_lse(out: dict) -> bool:
    ok = True
    rng = np.random.default_rng(0)
    for d in (64, 128):
        q, k, v = (jnp.asarray(rng.standard_normal((2, 1024, 8, d)), jnp.bfloat16) for _ in range(3))
        o, lse = jax.jit(lambda q, k, v: attention_with_lse(q, k, v, implementation="cudnn"))(q, k, v)
        ro, rl = _xla_attention(q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32), None)
        e_o, e_l = _rel(o, ro), float(np.max(np.abs(np.asarray(lse) - np.asarray(rl))))
        out[f"lse_d{d}"] = {"out_rel_err": e_o, "lse_abs_err": e_l, "lse_dtype": str(lse.dtype)}
        ok &= e_o < 2e-2 and e_l < 5e-2
        # ring merge of 4 key blocks
        blocks = [jax.jit(lambda q, k, v: attention_with_lse(q, k, v, implementation="cudnn"))(
            q, k[:, i * 256:(i + 1) * 256], v[:, i * 256:(i + 1) * 256]) for i in range(4)]
        mo, ml = blocks[0]
        for bo, bl in blocks[1:]:
            mo, ml = merge_partials(mo, ml, bo, bl)
        out[f"merge_d{d}"] = {"out_rel_err": _rel(mo, ro)}
        ok &= out[f"merge_d{d}"]["out_rel_err"] < 2e-2
    return ok


def check_strategies(out: dict) -> bool:
    n = jax.device_count()
    ok = True
    rng = np.random.default_rng(1)
    q, k, v = (jnp.asarray(rng.standard_normal((1, 4096, 32, 128)), jnp.bfloat16) for _ in range(3))
    ref = jax.jit(lambda q, k, v: attention_with_lse(q, k, v, implementation="cudnn")[0])(q, k, v)
    mesh = make_mesh(context=n)
    for strategy in ("ulysses", "ring", "hybrid"):
        name = f"{strategy}_context{n}"
        try:
            plan = AttentionPlan(mesh, strategy)
            fn = jax.jit(lambda q, k, v: attend(q, k, v, None, plan, "video_self"))
            t0 = time.perf_counter()
            text = fn.lower(q, k, v).compile().as_text()
            res = fn(q, k, v)
            out[name] = {"compile_s": round(time.perf_counter() - t0, 2), "rel_err": _rel(res, ref),
                         "cudnn_calls": text.count("__cudnn$fmha"),
                         "collectives": {k2: v2["count"] for k2, v2 in hlo.collectives(text, n).items() if v2["count"]}}
            ok &= out[name]["rel_err"] < 2e-2 and out[name]["cudnn_calls"] > 0
        except Exception as e:  # report and go on
            out[name] = {"error": f"{type(e).__name__}: {str(e)[:400]}"}
            ok = False
    return ok


def timing(out: dict) -> None:
    import sharded_common as sc
    from ltx_jax.sharding import shard_state
    n = jax.device_count()
    rng = np.random.default_rng(2)
    q, k, v = (jnp.asarray(rng.standard_normal((1, 24576, 32, 128)), jnp.bfloat16) for _ in range(3))
    mesh = make_mesh(context=n)
    for strategy in ("gspmd", "ulysses", "ring"):
        plan = AttentionPlan(mesh, strategy)
        try:
            out[f"attn_24k_{strategy}_s"] = _time(jax.jit(lambda q, k, v: attend(q, k, v, None, plan, "video_self")),
                                                  q, k, v)
        except Exception as e:
            out[f"attn_24k_{strategy}_s"] = f"{type(e).__name__}: {str(e)[:300]}"
    cfg = sc.config("mid")
    g, s = sc.model_state(cfg, "bfloat16")
    vin, ain = sc.inputs(cfg, batch=1, frames=4, height=32, width=48, audio_tokens=128, text_tokens=256,
                         dtype="bfloat16")
    rules = inference_rules(mesh)
    ss = shard_state(s, rules)
    pv, pa = sc.place_inputs(vin, ain, rules)
    t0 = time.perf_counter()
    jax.block_until_ready(sc.step(g, ss, pv, pa, rules=rules))
    out["mid_6144_first_call_s"] = round(time.perf_counter() - t0, 2)
    out["mid_6144_step_s"] = _time(lambda *a: sc.step(*a, rules=rules), g, ss, pv, pa)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    out = {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]}
    if jax.default_backend() != "gpu":
        out["error"] = "no GPU: this script checks the cuDNN path and needs one"
        print(json.dumps(out))
        return 1
    t0 = time.perf_counter()
    ok = True
    for stage in (check_lse, check_strategies, timing):  # a stage that raises is reported; the next still runs
        try:
            ok &= stage(out) is not False
        except Exception as e:
            out[f"{stage.__name__}_error"] = f"{type(e).__name__}: {str(e)[:600]}"
            ok = False
        print(json.dumps({stage.__name__: round(time.perf_counter() - t0, 1)}), file=sys.stderr, flush=True)
    out["total_s"] = round(time.perf_counter() - t0, 1)
    out["ok"] = bool(ok)
    print(json.dumps(out, indent=None if args.json else 1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
