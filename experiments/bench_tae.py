"""Benchmark the tiny autoencoder's decode (jitted) against the full video VAE's on the same latent.

Run:  .venv/bin/python experiments/bench_tae.py [--frames F --height H --width W] [--dtype bfloat16]
          [--repeats 3] [--tae FILE] [--vae-checkpoint FILE] [--no-vae] [--modes parallel,streaming,preview]
Defaults: 768x512, 121 frames (latent [1, 16, 16, 24, 128]) on an accelerator; 384x256, 25 frames on
CPU. Weights: `--tae` (a taeltx*.safetensors) or random ones in the taeltx2_3 layout; the VAE is the
LTX-2.3 decoder (`ltx_jax.video_vae`, random weights unless `--vae-checkpoint`), included when that
package imports, otherwise reported as skipped with the reason.

Each (model, mode) runs in its own subprocess, so the device's peak-memory counter belongs to it alone.
Prints one JSON object: {"setup": {...}, "results": [{model, mode, compile_s, median_s, frames_per_s,
xla_bytes: {temp, argument, output}, device_peak_bytes, host_peak_rss_bytes, output_shape}], ...}
with `tae_vs_vae` speed and memory ratios when both ran.
Result on the 2-core CPU dev box: see the docstring of the report in the issue (numbers vary with load).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import traceback


def _latent(args):
    import jax
    t, h, w = (args.frames - 1) // 8 + 1, args.height // 32, args.width // 32
    return jax.random.normal(jax.random.key(0), (1, t, h, w, 128))


def _time(compiled, call_args, repeats: int) -> list[float]:
    import jax
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*call_args))
        times.append(time.perf_counter() - t0)
    return times


def _tae(args, mode):
    import jax.numpy as jnp
    from flax import nnx

    from ltx_jax.tiny_vae import TAELTX2_3, Preview, TinyAutoencoder, load_tae
    from ltx_jax.tiny_vae.api import _decode, _preview

    dtype = jnp.dtype(args.dtype)
    if args.tae:
        tae = load_tae(args.tae, param_dtype=dtype)
    else:
        tae = TinyAutoencoder(TAELTX2_3, param_dtype=dtype, rngs=nnx.Rngs(0))
    z = _latent(args).astype(dtype)
    if mode == "preview":
        p = Preview(tae, dtype=dtype)
        return _preview.lower(p.graphdef, p.params, z, None), (p.params, z)
    graphdef, params = nnx.split(tae)
    return _decode.lower(graphdef, params, z, mode=mode, chunk=1), (params, z)


def _vae(args, mode):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from ltx_jax.configs import LTX_2_3, Runtime
    from ltx_jax.video_vae import VideoDecoder, load_video_decoder

    runtime = Runtime(param_dtype=args.dtype, compute_dtype=args.dtype)
    if args.vae_checkpoint:
        vae = load_video_decoder(args.vae_checkpoint, runtime)
    else:
        vae = VideoDecoder(LTX_2_3.vae, runtime, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(vae)
    z = _latent(args).astype(args.dtype)
    noise = jax.random.normal(jax.random.key(1), z.shape, z.dtype) if vae.timestep_conditioning else None

    @jax.jit
    def decode(params, z, noise):
        # [-1, 1] -> [0, 1] so both models produce the same kind of frames
        return (nnx.merge(graphdef, params)(z, noise=noise) + 1) / 2

    return decode.lower(params, z, noise), (params, z, noise)


def worker(args) -> dict:
    import jax
    out = {"model": args.worker, "mode": args.mode}
    t0 = time.perf_counter()
    lowered, call_args = (_tae if args.worker == "tae" else _vae)(args, args.mode)
    t1 = time.perf_counter()
    out["build_and_trace_s"] = t1 - t0  # weights (random init or file) + tracing
    compiled = lowered.compile()
    out["compile_s"] = time.perf_counter() - t1
    mem = compiled.memory_analysis()
    if mem is not None:
        out["xla_bytes"] = {"temp": mem.temp_size_in_bytes, "argument": mem.argument_size_in_bytes,
                            "output": mem.output_size_in_bytes}
    result = compiled(*call_args)
    out["output_shape"] = list(jax.block_until_ready(result).shape)
    times = _time(compiled, call_args, args.repeats)
    out["times_s"] = times
    out["median_s"] = statistics.median(times)
    out["frames_per_s"] = out["output_shape"][1] / out["median_s"]
    stats = jax.local_devices()[0].memory_stats() or {}
    out["device_peak_bytes"] = stats.get("peak_bytes_in_use")
    out["host_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32", "float16"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tae", help="taeltx*.safetensors (default: random weights, taeltx2_3 layout)")
    parser.add_argument("--vae-checkpoint", help="official LTX checkpoint with the video VAE (default: random)")
    parser.add_argument("--no-vae", action="store_true")
    parser.add_argument("--modes", default="parallel,streaming,preview", help="TAE modes to time")
    parser.add_argument("--worker", choices=("tae", "vae"), help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()

    import jax
    backend = jax.default_backend()
    small = backend == "cpu"
    args.frames = args.frames or (25 if small else 121)
    args.height = args.height or (256 if small else 512)
    args.width = args.width or (384 if small else 768)
    if args.worker:
        try:
            print(json.dumps(worker(args)))
        except Exception as e:  # reported in the JSON rather than as a crash of the whole bench
            print(json.dumps({"model": args.worker, "mode": args.mode, "error": f"{type(e).__name__}: {e}",
                              "traceback": traceback.format_exc()[-2000:]}))
        return 0

    setup = {"backend": backend, "device": str(jax.local_devices()[0]), "dtype": args.dtype, "frames": args.frames,
             "height": args.height, "width": args.width,
             "latent_shape": [1, (args.frames - 1) // 8 + 1, args.height // 32, args.width // 32, 128],
             "tae_weights": args.tae or "random (taeltx2_3 layout)", "repeats": args.repeats}
    runs = [("tae", m) for m in args.modes.split(",")]
    skipped = {}
    if args.no_vae:
        skipped["vae"] = "--no-vae"
    else:
        try:
            import ltx_jax.video_vae  # noqa: F401
            runs.append(("vae", "parallel"))
            setup["vae_weights"] = args.vae_checkpoint or "random (LTX-2.3 decoder layout)"
        except Exception as e:
            skipped["vae"] = f"ltx_jax.video_vae does not import: {type(e).__name__}: {e}"
    common = ["--frames", str(args.frames), "--height", str(args.height), "--width", str(args.width),
              "--dtype", args.dtype, "--repeats", str(args.repeats)]
    common += ["--tae", args.tae] if args.tae else []
    common += ["--vae-checkpoint", args.vae_checkpoint] if args.vae_checkpoint else []
    results = []
    for model, mode in runs:
        proc = subprocess.run([sys.executable, __file__, *common, "--worker", model, "--mode", mode],
                              capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        failed = {"model": model, "mode": mode, "error": f"worker exited {proc.returncode}: {proc.stderr[-2000:]}"}
        results.append(json.loads(lines[-1]) if lines else failed)
    report = {"setup": setup, "results": results, "skipped": skipped}
    by = {(r["model"], r["mode"]): r for r in results if "error" not in r}
    if ("tae", "parallel") in by and ("vae", "parallel") in by:
        tae, vae = by["tae", "parallel"], by["vae", "parallel"]
        peak = lambda r: r.get("device_peak_bytes") or r["host_peak_rss_bytes"]  # noqa: E731
        report["tae_vs_vae"] = {"speedup": vae["median_s"] / tae["median_s"],
                                "xla_temp_bytes_ratio": vae["xla_bytes"]["temp"] / max(tae["xla_bytes"]["temp"], 1),
                                "peak_bytes_ratio": peak(vae) / peak(tae)}
    print(json.dumps(report, indent=1))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
