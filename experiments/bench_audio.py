"""Audio decode (latent -> 48 kHz waveform): whole vs chunked, wall time and peak memory as the audio gets longer.

Run (CPU):
    .venv/bin/python experiments/bench_audio.py [--checkpoint FILE] [--seconds 8,32,128] [--chunk 64]

Every (mode, length) runs in a fresh worker process: load the audio VAE decoder and the vocoder, one cold decode
(compiles), one warm decode. Reported per run: `warm_s`, `cold_s`, and `peak_mb`, the peak RSS of the worker
above its RSS after loading (the cold decode, so it includes XLA compilation; on CPU the arrays live in host
memory). Chunked decoding (`decode_audio_chunked`, `--chunk` latents per audio-VAE window and 4x that in mel
frames per vocoder window) keeps one window's activations alive, so its peak stays flat while the whole decode
grows with the length. Weights: the bundled tiny LTX-2.3 audio parts (`LTX_2_3_TINY_AV`: the released rates, 16 kHz
+ BWE to 48 kHz, narrow vocoders), random, written in the official layout, unless --checkpoint names a real
file. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def worker(checkpoint: str, seconds: float, mode: str, chunk: int) -> dict:
    import jax
    import numpy as np

    from ltx_jax.audio_vae import decode_audio, decode_audio_chunked, load_audio_decoder, load_vocoder
    from ltx_jax.configs import Runtime
    runtime = Runtime(param_dtype="float32", compute_dtype="float32")
    decoder, vocoder = load_audio_decoder(checkpoint, runtime), load_vocoder(checkpoint, runtime)
    t = round(seconds * 25)
    latent = np.random.default_rng(0).standard_normal((1, 8, t, 16)).astype(np.float32)
    base = _rss_mb()

    def run():
        if mode == "whole":
            wave, rate = decode_audio(decoder, vocoder, latent)
            return np.asarray(jax.block_until_ready(wave)), rate
        return decode_audio_chunked(decoder, vocoder, latent, chunk_latents=chunk)

    start = time.perf_counter()
    wave, rate = run()
    cold = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    del wave
    start = time.perf_counter()
    wave, rate = run()
    warm = time.perf_counter() - start
    return {"mode": mode, "seconds": seconds, "latents": t, "samples": int(wave.shape[-1]), "sample_rate": rate,
            "cold_s": round(cold, 2), "warm_s": round(warm, 2), "peak_mb": round(peak, 1),
            "audio_seconds_per_s": round(wave.shape[-1] / rate / warm, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint")
    ap.add_argument("--seconds", default="8,32,128")
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--modes", default="chunked,whole")
    ap.add_argument("--worker", nargs=3, metavar=("CHECKPOINT", "SECONDS", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], float(args.worker[1]), args.worker[2], args.chunk)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if checkpoint is None:
            from ltx_jax.configs import LTX_2_3_TINY_AV
            from ltx_jax.audio_vae import audio_schema
            from ltx_jax.checkpoint.synthetic import write_schema_file
            c = LTX_2_3_TINY_AV
            checkpoint = str(Path(tmp) / "audio.safetensors")
            meta = {"config": json.dumps({"audio_vae": c.audio_vae.to_dict(), "vocoder": c.vocoder.to_dict()})}
            write_schema_file(audio_schema(c), checkpoint, meta, seed=0, config=c)
        runs = []
        for mode in args.modes.split(","):
            for seconds in args.seconds.split(","):
                cmd = [sys.executable, __file__, "--chunk", str(args.chunk), "--worker", checkpoint, seconds, mode]
                res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
                if res.returncode != 0:
                    runs.append({"mode": mode, "seconds": float(seconds), "error": res.stderr[-2000:]})
                else:
                    runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(json.dumps({"benchmark": "audio decode", "checkpoint": args.checkpoint or "tiny LTX_2_3_TINY_AV (random)",
                      "chunk_latents": args.chunk, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
