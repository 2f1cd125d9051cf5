"""Sharded inference of one DiT step: per-device compute, memory and communication per attention strategy.

Run:  .venv/bin/python experiments/bench_sharded.py --mesh data=1,context=8 --attention ulysses --size tiny \
          [--frames 2 --height 8 --width 8 --audio-tokens 16 --text-tokens 8 --batch 2 --dtype float32 \
           --weights replicated --no-run --dump-hlo DIR --json]
      .venv/bin/python experiments/bench_sharded.py --param-bytes      # LTX-2.3 bytes per device per preset

On the CPU the devices are simulated (XLA_FLAGS=--xla_force_host_platform_device_count is set from --mesh
before jax is imported). `--size full` is the LTX-2.3 preset, lowered and compiled from abstract shapes (never
run). Prints one JSON object:
  setup; compile_s; step_s (median of 3, only when run); memory_per_device (XLA's memory analysis: arguments,
  outputs, temporaries); dot_flops_per_device, dot_flops_single_device and their ratio (each while-loop
  body counted by its trip count); collectives {kind: count, sent_bytes} per step as parsed from the
  compiled HLO, and per_layer_sent_bytes (collectives inside the layer scan, / layers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))


def _devices_needed(mesh: str | None) -> int:
    if not mesh:
        return 8
    n = 1
    for part in mesh.split(","):
        n *= int(part.partition("=")[2] or 1)
    return n


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mesh", default="data=1,context=8", help="e.g. data=2,context=4 (default: 1 x 8)")
    p.add_argument("--attention", default="auto", choices=("auto", "gspmd", "ulysses", "ring", "hybrid"))
    p.add_argument("--ulysses", type=int, default=0, help="hybrid: Ulysses group size (0: automatic)")
    p.add_argument("--weights", default="replicated", choices=("replicated", "fsdp", "tensor"))
    p.add_argument("--size", default="tiny", choices=("tiny", "mid", "full"))
    p.add_argument("--frames", type=int, default=2, help="latent frames")
    p.add_argument("--height", type=int, default=8, help="latent rows")
    p.add_argument("--width", type=int, default=8, help="latent columns")
    p.add_argument("--audio-tokens", type=int, default=16)
    p.add_argument("--text-tokens", type=int, default=8)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--no-run", action="store_true", help="compile only (implied by --size full)")
    p.add_argument("--dump-hlo", type=Path, default=None, help="write the compiled HLO text here")
    p.add_argument("--json", action="store_true", help="compact JSON on one line (default: indented)")
    p.add_argument("--param-bytes", action="store_true", help="LTX-2.3 parameter bytes per device per preset")
    args = p.parse_args(argv)
    if "jax" not in sys.modules and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={_devices_needed(args.mesh)}").strip()
    if args.param_bytes:
        result = param_bytes()
    else:
        result = bench(args)
    print(json.dumps(result, indent=None if args.json else 1))
    return result


def param_bytes() -> dict:
    """Bytes per device of the LTX-2.3 transformer (bf16) under each weight preset, on 8 and 64 devices."""
    import jax
    import numpy as np
    from jax.sharding import AbstractMesh, AxisType, NamedSharding

    import sharded_common as sc
    from ltx_jax.sharding import InferenceRules, weight_rules
    from flax import nnx

    _, state = sc.model_state(sc.config("full"), "bfloat16", abstract=True)
    leaves = [(".".join(map(str, path)), v.get_value()) for path, v in nnx.to_flat_state(state)]
    total = sum(int(np.prod(x.shape)) * x.dtype.itemsize for _, x in leaves)
    layouts = {"8": {"replicated": (1, 8, 1), "fsdp": (1, 8, 1), "tensor": (1, 1, 8)},
               "64": {"replicated": (1, 64, 1), "fsdp": (1, 64, 1), "tensor": (1, 8, 8)}}
    out = {"params": sum(int(np.prod(x.shape)) for _, x in leaves), "total_bytes": total, "per_device": {}}
    for n, presets in layouts.items():
        for preset, shape in presets.items():
            mesh = AbstractMesh(shape, ("data", "context", "tensor"), axis_types=(AxisType.Auto,) * 3)
            rules = InferenceRules(mesh, weight_rules(preset))
            per = 0
            for path, x in leaves:
                shard = NamedSharding(mesh, rules(path, x.shape).spec).shard_shape(x.shape)
                per += int(np.prod(shard)) * x.dtype.itemsize
            out["per_device"][f"{preset}@{n}"] = {"mesh": dict(zip(("data", "context", "tensor"), shape)),
                                                  "bytes": per, "GiB": round(per / 2**30, 2)}
    del jax
    return out


def bench(args) -> dict:
    import jax
    import sharded_common as sc
    from ltx_jax.parallel import hlo
    from ltx_jax.sharding import attention_plan, inference_rules, parse_mesh, shard_state

    cfg = sc.config(args.size)
    abstract = args.size == "full"
    run = not (args.no_run or abstract)
    mesh = parse_mesh(args.mesh, jax.devices()[: _devices_needed(args.mesh)])
    rules = inference_rules(mesh, attention=args.attention, ulysses=args.ulysses, weights=args.weights)
    g, s = sc.model_state(cfg, args.dtype, abstract=abstract)
    vin, ain = sc.inputs(cfg, batch=args.batch, frames=args.frames, height=args.height, width=args.width,
                         audio_tokens=args.audio_tokens, text_tokens=args.text_tokens, dtype=args.dtype,
                         abstract=abstract)
    plan = attention_plan(rules)
    split = plan.split(cfg.num_attention_heads) if plan is not None and plan.sequence_parallel else None
    setup = {"size": args.size, "mesh": dict(mesh.shape), "attention": args.attention,
             "resolved": split.name if split else "gspmd", "split": [split.ulysses, split.ring] if split else None,
             "weights": args.weights, "dtype": args.dtype, "batch": args.batch,
             "video_tokens": args.frames * args.height * args.width, "audio_tokens": args.audio_tokens,
             "text_tokens": args.text_tokens, "layers": cfg.num_layers, "backend": jax.default_backend()}
    if abstract:
        from flax import nnx
        from jax.sharding import NamedSharding
        from ltx_jax.sharding import spec_for

        def put(path, var):
            x = var.get_value()
            spec = spec_for(rules, ".".join(map(str, path)), x.shape)
            return path, var.replace(jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(mesh, spec)))
        s = nnx.from_flat_state([put(path, var) for path, var in nnx.to_flat_state(s)])
        pv, pa = _abstract_inputs(vin, ain, rules)
    else:
        s = shard_state(s, rules)
        pv, pa = sc.place_inputs(vin, ain, rules)
    t0 = time.perf_counter()
    compiled = sc.step.lower(g, s, pv, pa, rules=rules).compile()
    compile_s = time.perf_counter() - t0
    text = compiled.as_text()
    if args.dump_hlo:
        args.dump_hlo.mkdir(parents=True, exist_ok=True)
        (args.dump_hlo / f"step_{args.size}_{args.attention}_{'x'.join(map(str, mesh.shape.values()))}.hlo.txt"
         ).write_text(text)
    mem = compiled.memory_analysis()
    memory = {k: int(getattr(mem, k)) for k in ("argument_size_in_bytes", "output_size_in_bytes",
                                                "temp_size_in_bytes", "generated_code_size_in_bytes")
              if mem is not None and hasattr(mem, k)}
    ops = hlo.collective_ops(text, mesh.size)
    coll = hlo.collectives(text, mesh.size)
    per_layer = {}
    for op in ops:
        if op["weight"] >= cfg.num_layers:  # inside the layer scan
            per_layer[op["kind"]] = per_layer.get(op["kind"], 0.0) + op["weight"] * hlo._sent(op) / cfg.num_layers
    # the single-device reference program (abstract for full size)
    g1, s1 = sc.model_state(cfg, args.dtype, abstract=True)
    v1, a1 = sc.inputs(cfg, batch=args.batch, frames=args.frames, height=args.height, width=args.width,
                       audio_tokens=args.audio_tokens, text_tokens=args.text_tokens, dtype=args.dtype, abstract=True)
    single_text = sc.step.lower(g1, s1, v1, a1).compile().as_text()
    f1, fn = hlo.dot_flops(single_text), hlo.dot_flops(text)
    result = {"setup": setup, "compile_s": round(compile_s, 2), "memory_per_device": memory,
              "dot_flops_per_device": fn, "dot_flops_single_device": f1, "flops_ratio": fn / f1,
              "ideal_ratio": 1.0 / mesh.size,
              "collectives": {k: {"count": v["count"], "sent_bytes": v["sent_bytes"]} for k, v in coll.items()
                              if v["count"]},
              "per_layer_sent_bytes": per_layer}
    if run:
        times = []
        for _ in range(4):
            t0 = time.perf_counter()
            jax.block_until_ready(sc.step(g, s, pv, pa, rules=rules))
            times.append(time.perf_counter() - t0)
        result["step_s"] = round(statistics.median(times[1:]), 4)
    return result


def _abstract_inputs(video, audio, rules):
    import jax
    from jax.sharding import NamedSharding
    from ltx_jax.sharding import spec_for

    def put(x, name):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(rules.mesh, spec_for(rules, name, x.shape)))
    v = video.replace(latent=put(video.latent, "activation.video.latent"),
                      timesteps=put(video.timesteps, "activation.video.timesteps"),
                      positions=put(video.positions, "activation.video.positions"),
                      context=put(video.context, "activation.video.context"), sigma=put(video.sigma, "x"))
    a = jax.tree.map(lambda x: put(x, "activation.audio.latent"), audio)
    return v, a


if __name__ == "__main__":
    main()
