"""Audio decode (latent -> 48 kHz waveform): whole vs chunked side by side, time, working memory and max |chunked - whole|.

Run (CPU):
    .venv/bin/python experiments/bench_audio.py [--checkpoint FILE] [--seconds 8,32,96,192] [--chunk 64]

Each (mode, length) runs in a fresh worker process (`MALLOC_MMAP_THRESHOLD_=65536`, so freed buffers go back to
the OS and RSS follows live memory): load the audio VAE decoder and the vocoder, one cold decode (compiles), then
the peak-RSS mark is reset (`/proc/self/clear_refs` 5) and one warm decode runs. Per run:
- `warm_s`, `cold_s`: wall time of the warm and the cold (compiling) decode.
- `xla_mb`: XLA's own accounting of the decode's programs (`compiled.memory_analysis()`: temporaries + arguments
  + outputs, the largest over the programs it ran; for chunked that is one window's decoder and vocoder program).
- `working_mb`: the warm decode's peak RSS above its starting RSS, minus the host output waveform (`output_mb`,
  B x 2 x samples x 4 B, which any decode must hold). Compilation is not in it (the cold run did that).
- `max_abs_diff` (chunked rows): max |chunked - whole| over the waveform, `max_rel_diff` that / max |whole|.
Chunked decoding (`decode_audio_chunked`, `--chunk` latents per audio-VAE window and 4x that in mel frames per
vocoder window) compiles one window shape and writes each window's kept samples into a preallocated host buffer,
so its working memory stays flat while the whole decode's grows with the length. Weights: the bundled tiny
LTX-2.3 audio parts (`LTX_2_3_TINY_AV`: the released rates, 16 kHz + BWE to 48 kHz, narrow vocoders), random,
written in the official layout, unless --checkpoint names a real file. Prints one JSON object.

Gave (2 shared CPU cores under load, chunks of 64; experiments/results/bench_audio.json): working MB whole 148 /
594 / 1738 and chunked 89 / 81 / 61 for 8 / 32 / 96 s; XLA MB whole 107 / 331 / 935, chunked 75.1 at every
length; max |chunked - whole| / max |whole| 2.1e-6 / 6.1e-6 / 7.6e-6; chunked 2.2-3.1x the whole decode's time.
`--chunk 256 --modes chunked` (results/bench_audio_chunk256.json): working 222 / 202 MB, XLA 144.4 MB at 32 / 96 s,
96 s decoded in 166 s (whole: 209 s). Timings on the shared machine vary up to 2x between repeats.
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


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM (peak RSS) to the current RSS


def _xla_mb(programs) -> float:
    """Largest temp + argument + output bytes over the programs `(module, input shape)` that a decode ran."""
    import jax
    from flax import nnx

    from ltx_jax.audio_vae.api import _apply
    best = 0
    for module, shape, dtype in programs:
        graphdef, state = nnx.split(module)
        stats = _apply.lower(graphdef, state, jax.ShapeDtypeStruct(shape, dtype), "__call__").compile().memory_analysis()
        best = max(best, stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes)
    return best / 2**20


def worker(checkpoint: str, seconds: float, mode: str, chunk: int, save: str) -> dict:
    import jax
    import numpy as np

    from ltx_jax.audio_vae import api, chunking, load_audio_decoder, load_vocoder
    from ltx_jax.configs import Runtime
    runtime = Runtime(param_dtype="float32", compute_dtype="float32")
    decoder, vocoder = load_audio_decoder(checkpoint, runtime), load_vocoder(checkpoint, runtime)
    t = round(seconds * 25)
    latent = np.random.default_rng(0).standard_normal((1, 8, t, 16)).astype(np.float32)
    programs = set()

    def run_recorded(module, x):
        programs.add((module, tuple(x.shape), np.dtype(x.dtype)))
        return api.run_jitted(module, x)

    def run():
        if mode == "whole":
            mel = run_recorded(decoder, latent)
            wave = np.asarray(jax.block_until_ready(jnp_moveaxis(run_recorded(vocoder, mel))), np.float32)
            return wave
        mel = chunking.decode_mel_chunked(decoder, latent, chunk, run_recorded)
        return chunking.vocode_chunked(vocoder, mel, 4 * chunk, run_recorded)

    def jnp_moveaxis(x):
        return jax.numpy.moveaxis(x, -1, 1)

    start = time.perf_counter()
    wave = run()
    cold = time.perf_counter() - start
    del wave
    base = _status_mb("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    wave = run()
    warm = time.perf_counter() - start
    peak = _status_mb("VmHWM") - base
    output_mb = wave.nbytes / 2**20
    rate = api.sample_rate(vocoder)
    if save:
        np.save(save, wave)
    return {"mode": mode, "seconds": seconds, "latents": t, "samples": int(wave.shape[-1]), "sample_rate": rate,
            "cold_s": round(cold, 2), "warm_s": round(warm, 2), "output_mb": round(output_mb, 1),
            "working_mb": round(peak - output_mb, 1), "xla_mb": round(_xla_mb(programs), 1),
            "programs": sorted(str(s) for _, s, _ in programs)[:4],
            "audio_seconds_per_s": round(wave.shape[-1] / rate / warm, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint")
    ap.add_argument("--seconds", default="8,32,96,192")
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--modes", default="whole,chunked", help="whole,chunked (max |chunked - whole| needs both)")
    ap.add_argument("--worker", nargs=4, metavar=("CHECKPOINT", "SECONDS", "MODE", "SAVE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        ckpt, seconds, mode, save = args.worker
        print(json.dumps(worker(ckpt, float(seconds), mode, args.chunk, save)))
        return 0
    import numpy as np
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if checkpoint is None:
            from ltx_jax.audio_vae import audio_schema
            from ltx_jax.checkpoint.synthetic import write_schema_file
            from ltx_jax.configs import LTX_2_3_TINY_AV
            c = LTX_2_3_TINY_AV
            checkpoint = str(Path(tmp) / "audio.safetensors")
            meta = {"config": json.dumps({"audio_vae": c.audio_vae.to_dict(), "vocoder": c.vocoder.to_dict()})}
            write_schema_file(audio_schema(c), checkpoint, meta, seed=0, config=c)
        for seconds in args.seconds.split(","):
            waves = {}
            for mode in args.modes.split(","):
                save = str(Path(tmp) / f"{mode}.npy")
                cmd = [sys.executable, __file__, "--chunk", str(args.chunk), "--worker", checkpoint, seconds, mode, save]
                res = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if res.returncode != 0:
                    runs.append({"mode": mode, "seconds": float(seconds), "error": res.stderr[-2000:]})
                    continue
                runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
                waves[mode] = np.load(save)
                os.unlink(save)
            if len(waves) == 2:
                d = float(np.max(np.abs(waves["chunked"] - waves["whole"])))
                runs[-1]["max_abs_diff"] = d
                runs[-1]["max_rel_diff"] = d / float(np.max(np.abs(waves["whole"])))
            print(json.dumps(runs[-len(waves):]), file=sys.stderr, flush=True)
    whole = {r["seconds"]: r for r in runs if r.get("mode") == "whole" and "error" not in r}
    chunked = {r["seconds"]: r for r in runs if r.get("mode") == "chunked" and "error" not in r}
    ratios = {str(s): {"warm_time": round(chunked[s]["warm_s"] / whole[s]["warm_s"], 2),
                       "working_mb": round(chunked[s]["working_mb"] / max(whole[s]["working_mb"], 1e-9), 3),
                       "xla_mb": round(chunked[s]["xla_mb"] / whole[s]["xla_mb"], 3)}
              for s in sorted(set(whole) & set(chunked))}
    print(json.dumps({"benchmark": "audio decode, whole vs chunked",
                      "checkpoint": args.checkpoint or "tiny LTX_2_3_TINY_AV (random)", "chunk_latents": args.chunk,
                      "chunked_over_whole": ratios, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
