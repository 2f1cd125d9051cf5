"""Train-step benchmark: step time, tokens/s and memory per device for a mesh; prints one JSON object.

Run:  .venv/bin/python experiments/bench_train.py [--preset ltx23-tiny] [--frames 9 --height 128 --width 128]
          [--batch 2] [--mesh data=1] [--fsdp] [--mode lora|full] [--dtype bfloat16] [--remat] [--steps 5]
      XLA_FLAGS=--xla_force_host_platform_device_count=8 .venv/bin/python experiments/bench_train.py \
          --preset ltx23 --abstract --mesh data=8 --fsdp --remat --frames 121 --height 512 --width 768 [--fp8]

Real mode: a tiny (or any preset's) model with random weights, random cached-latent batches, `--steps` timed
LoRA / full steps after one compile step. Prints {setup, compile_s, step_s (median), tokens_per_s,
samples_per_s, memory (XLA's per-device memory analysis of the compiled step: arguments, outputs, temps),
device_memory (the backend's peak bytes in use, where it reports them)}.
`--fp8`: the frozen base with the official FP8 layer set (block Linears of blocks 1-42 as e4m3 weights with
their scales, `Runtime.fp8="weights"`; abstract mode only).
`--abstract`: nothing is allocated; the step is lowered and compiled for `jax.ShapeDtypeStruct` inputs on the
mesh (the full 22B model fits this way on any machine) and only XLA's memory analysis is printed. On CPU this
is XLA:CPU's buffer assignment (XLA's blocked attention, not the cuDNN flash kernel), an upper bound for GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.configs import LTX_2_3, LTX_2_3_TINY, Runtime
from ltx_jax.sampling.positions import audio_positions, audio_token_count, latent_grid, video_positions
from ltx_jax.sharding import place, shard_state
from ltx_jax.training.lora import LoraConfig, add_lora
from ltx_jax.training.objective import Batch, ObjectiveConfig
from ltx_jax.training.sharding import train_mesh, train_rules
from ltx_jax.training.step import OptimConfig, Trainer, _train_step_jit, optimizer_shardings
from ltx_jax.transformer import LTXModel

PRESETS = {"ltx23-tiny": LTX_2_3_TINY, "ltx23": LTX_2_3}


def _mesh(text: str) -> dict[str, int]:
    out = {}
    for part in text.split(","):
        k, v = part.split("=")
        out[k.strip()] = int(v)
    return out


def _batch(cfg, b, frames, height, width, text, audio: bool, abstract: bool):
    f, h, w = latent_grid(frames, height, width)
    t = f * h * w
    ta = audio_token_count(frames, 24.0)
    shapes = dict(video=(b, t, cfg.in_channels), video_context=(b, text, cfg.cross_attention_dim),
                  audio_context=(b, text, cfg.audio_cross_attention_dim))
    if abstract:
        arr = {k: jax.ShapeDtypeStruct(s, jnp.bfloat16) for k, s in shapes.items()}
    else:
        rng = np.random.default_rng(0)
        arr = {k: jnp.asarray(rng.standard_normal(s), jnp.bfloat16) for k, s in shapes.items()}
    batch = Batch(video_positions=jnp.asarray(video_positions(f, h, w, fps=24.0, batch=b)), frame_tokens=h * w, **arr)
    if audio:
        a = (b, ta, cfg.audio_in_channels)
        batch = batch.replace(audio=jax.ShapeDtypeStruct(a, jnp.bfloat16) if abstract else
                              jnp.asarray(np.random.default_rng(1).standard_normal(a), jnp.bfloat16),
                              audio_positions=jnp.asarray(audio_positions(ta, batch=b)))
    return batch, t, ta if audio else 0


def _memory(compiled) -> dict:
    m = compiled.memory_analysis()
    if m is None:
        return {}
    keys = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes", "alias_size_in_bytes",
            "generated_code_size_in_bytes")
    out = {k: int(getattr(m, k)) for k in keys if hasattr(m, k)}
    out["total_gib"] = round((out.get("argument_size_in_bytes", 0) + out.get("output_size_in_bytes", 0)
                              - out.get("alias_size_in_bytes", 0) + out.get("temp_size_in_bytes", 0)) / 2**30, 3)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="ltx23-tiny", choices=sorted(PRESETS))
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--text", type=int, default=128)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--mesh", default="data=1")
    ap.add_argument("--fsdp", action="store_true")
    ap.add_argument("--mode", default="lora", choices=["lora", "full"])
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--dtype", default="bfloat16", help="base weights (frozen) dtype; full mode trains float32")
    ap.add_argument("--remat", action="store_true")
    ap.add_argument("--audio", action="store_true", help="joint audio-video training")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--abstract", action="store_true")
    ap.add_argument("--fp8", action="store_true", help="FP8 base (official layer set); with --abstract")
    args = ap.parse_args(argv)
    mesh_shape = _mesh(args.mesh)
    cfg = PRESETS[args.preset].transformer
    pd = "float32" if args.mode == "full" else args.dtype
    if args.fp8 and (not args.abstract or args.mode != "lora"):
        ap.error("--fp8 is for --abstract LoRA runs (a real FP8 run restores an FP8 file: `ltx-jax train`)")
    rt = Runtime(param_dtype=pd, compute_dtype="bfloat16", remat=args.remat, fp8="weights" if args.fp8 else "off")
    n = int(np.prod(list(mesh_shape.values())))
    rules = train_rules(train_mesh(**mesh_shape), fsdp=args.fsdp) if n > 1 else None
    build = lambda: LTXModel(cfg, rt, rngs=nnx.Rngs(0))  # noqa: E731
    if args.fp8:
        build = lambda: _fp8_abstract(cfg, rt)  # noqa: E731
    model = nnx.eval_shape(build) if args.abstract else build()
    if args.mode == "lora":
        add_lora(model, LoraConfig(rank=args.rank), seed=0) if not args.abstract else None
    setup = {**vars(args), "devices": jax.device_count(), "backend": jax.default_backend()}
    objective, optim = ObjectiveConfig(), OptimConfig(steps=1000)
    batch, t, ta = _batch(cfg, args.batch, args.frames, args.height, args.width, args.text, args.audio, args.abstract)
    if args.abstract:
        if args.mode == "lora":  # adapters on the abstract model: build them abstractly as well
            model = nnx.eval_shape(lambda: _with_lora(build(), args.rank))
        trainer = _abstract_trainer(model, args.mode, objective, optim, rules)
        state, batch = _abstract_state(trainer, batch, rules)
        t0 = time.perf_counter()
        compiled = _train_step_jit.lower(trainer.static, trainer.frozen, state, batch, None).compile()
        print(json.dumps({"setup": setup, "video_tokens": t, "audio_tokens": ta, "compile_s": time.perf_counter() - t0,
                          "trained_parameters": sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params)),
                          "memory_per_device": _memory(compiled)}))
        return 0
    trainer = Trainer(model, mode=args.mode, objective=objective, optim=optim,
                      shard=(lambda s: shard_state(s, rules)) if rules else None)
    state = trainer.init(0)
    batch = place(batch, rules)
    t0 = time.perf_counter()
    compiled = _train_step_jit.lower(trainer.static, trainer.frozen, state, batch, None).compile()
    compile_s = time.perf_counter() - t0
    state, m = compiled(trainer.frozen, state, batch, None)
    jax.block_until_ready(m)
    times = []
    for _ in range(args.steps):
        t1 = time.perf_counter()
        state, m = compiled(trainer.frozen, state, batch, None)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t1)
    step = statistics.median(times)
    stats = {}
    for d in jax.local_devices()[:1]:
        s = d.memory_stats() or {}
        stats = {k: s[k] for k in ("peak_bytes_in_use", "bytes_in_use", "bytes_limit") if k in s}
    print(json.dumps({"setup": setup, "video_tokens": t, "audio_tokens": ta, "trained_parameters": trainer.num_trained,
                      "compile_s": compile_s, "step_s": step, "times_s": times,
                      "tokens_per_s": args.batch * (t + ta) / step, "samples_per_s": args.batch / step,
                      "loss": float(m["loss"]), "memory_per_device": _memory(compiled), "device_memory": stats}))
    return 0


def _fp8_abstract(cfg, rt):
    """The model with FP8 weights where the official quantizer puts them (`select_layers`: block Linears of
    blocks 1-42), blocks split into segments as `checkpoint.fp8_restore` splits them. Call under `eval_shape`."""
    from ltx_jax.checkpoint.fp8_restore import block_plan
    from ltx_jax.checkpoint.layout import TRANSFORMER_PREFIX
    from ltx_jax.nn.fp8 import FP8Weight
    from ltx_jax.nn.linear import Linear
    from ltx_jax.pipelines.quantize import QuantizeSpec, select_layers

    model = LTXModel(cfg, rt, rngs=nnx.Rngs(0))
    bounds, sets = block_plan(set(select_layers(cfg, QuantizeSpec())), TRANSFORMER_PREFIX, cfg.num_layers)
    graphdef, state = nnx.split(model.transformer_blocks)
    segments = []
    for (start, stop), names in zip(bounds, sets):
        seg = nnx.merge(graphdef, jax.tree.map(lambda a, i=start, j=stop: a[i:j], state))
        for path, node in nnx.iter_modules(seg):
            if ".".join(map(str, path)) in names and isinstance(node, Linear):
                w = node.weight.get_value()
                ones = jnp.ones((stop - start,), jnp.float32)
                node.weight.set_value(FP8Weight(jnp.zeros(w.shape, jnp.float8_e4m3fn), ones, ones, mode="weights"))
        segments.append(seg)
    model.transformer_blocks = nnx.List(segments)
    return model


def _with_lora(model, rank):
    add_lora(model, LoraConfig(rank=rank), seed=0)
    return model


def _abstract_trainer(model, mode, objective, optim, rules):
    trainer = Trainer.__new__(Trainer)
    from ltx_jax.training.step import _Static, _trained_filter
    graphdef, params, frozen = nnx.split(model, _trained_filter(mode), ...)
    trainer.mode, trainer.objective, trainer.optim = mode, objective, optim
    trainer.static, trainer.graphdef, trainer.empty_context = _Static(graphdef, objective, optim), graphdef, None
    trainer.frozen = _abstract_shard(frozen, rules)
    trainer._initial = _abstract_shard(params, rules)
    return trainer


def _abstract_shard(state, rules):
    if rules is None:
        return state
    from jax.sharding import NamedSharding

    from ltx_jax.sharding import spec_for
    from ltx_jax.nn.fp8 import FP8Weight
    flat = []
    for path, var in nnx.to_flat_state(state):
        dotted = ".".join(str(p) for p in path)
        v = var.get_value()
        def sds(x, spec):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(rules.mesh, spec))
        if isinstance(v, FP8Weight):  # e4m3 value sharded like a weight, scales replicated
            rep = jax.sharding.PartitionSpec()
            v = v.replace(value=sds(v.value, spec_for(rules, dotted, v.value.shape)),
                          weight_scale=sds(v.weight_scale, rep), input_scale=sds(v.input_scale, rep))
            flat.append((path, var.replace(v)))
            continue
        flat.append((path, var.replace(sds(v, spec_for(rules, dotted, v.shape)))))
    return nnx.from_flat_state(flat)


def _abstract_state(trainer, batch, rules):
    """Abstract TrainState and batch, with the shardings a real run would give them."""
    from jax.sharding import NamedSharding

    from ltx_jax.sharding import spec_for
    from ltx_jax.training.step import TrainState

    params = trainer._initial
    tx = trainer.static.tx
    opt = jax.eval_shape(tx.init, params)
    if rules is not None:  # the moments sharded like their parameters, as a real run places them
        opt = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), opt,
                           optimizer_shardings(tx, params))
    rep = NamedSharding(rules.mesh, jax.sharding.PartitionSpec()) if rules is not None else None
    state = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32, sharding=rep), params=params, opt_state=opt, ema=None,
                       key=jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=rep))

    def leaf(x):
        sh = NamedSharding(rules.mesh, spec_for(rules, "activation.state", x.shape)) if rules is not None else None
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh)

    return state, jax.tree.map(leaf, batch)


if __name__ == "__main__":
    raise SystemExit(main())
