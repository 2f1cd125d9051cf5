"""Video VAE decode, ltx-jax vs the official ltx-core decoder on the same latent and weights (untiled and
tiled), and the peak memory of the streaming tiled decode as the video gets longer.

Run (CPU; the official side runs in .venv-ref, this same file in worker mode):
    .venv/bin/python experiments/bench_vae.py [--preset medium|tiny] [--checkpoint FILE] [--frames 5]
        [--lengths 5,9,17] [--repeats 2]

Every measurement runs in a fresh worker process: load the decoder, one cold decode, then `--repeats`
timed warm decodes. Reported: the best warm wall time; `peak_mb_cold`, the peak RSS of the cold decode
above the RSS after loading (JAX: includes its compilation; the robust number), and `peak_mb_warm`,
the same for the warm runs after handing freed heap back and resetting the peak counter
(/proc/self/clear_refs; allocator caches can make it read low). Host memory: on CPU both frameworks
keep their arrays there; buffers >= 1 MiB are mmapped, so freed ones leave RSS. Tiled runs consume the streamed chunks and drop them,
as a video writer would. Weights are random, written here in the official layout, unless --checkpoint
names a real file. Latents are `[1, F', 4, 6, 128]` (128 x 192 px); tiles: 128 px / 64 overlap, 24
frames / 8 overlap, i.e. 2 x 2 spatial tiles and a new temporal group every 16 frames. Prints JSON.

`medium`: the released LTX-2.3 block layout, 128 latent channels, decoder_base_channels 32 (1/16 of the
released width, whose float32 decoder alone is ~1.6 GB). `tiny`: the test preset (no timestep conditioning).

Measured (`--preset medium --repeats 3`, 2 CPU cores shared with other jobs, so times vary by up to 2x
between runs; XLA:CPU's conv3d is ~2.7x slower than torch's oneDNN one on a single 128-channel layer here):
  latent [1, 5, 4, 6, 128] (33 frames, 128 x 192), ours vs official, max rel. difference 2.4e-6:
    untiled  2.79 s vs 1.60 s (ratio 1.75), cold peak 265 vs 155 MB (ours includes XLA compilation)
    tiled    5.81 s vs 3.31 s (ratio 1.76), cold peak 311 vs 182 MB
  tiled streaming cold peak at 33 / 65 / 129 frames: ours 306 / 312 / 337 MB, official 181 / 178 / 182 MB.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PYTHON = {"ours": ROOT / ".venv" / "bin" / "python", "official": ROOT / ".venv-ref" / "bin" / "python"}
TILING = {"spatial": (128, 64), "temporal": (24, 8)}
LATENT_HW = (4, 6)


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(run, repeats: int) -> dict:
    """Peak RSS (MB) of a cold run above the RSS after loading (JAX: includes compilation), then the same
    for warm runs after handing freed heap back and resetting the peak counter; best warm time."""
    import ctypes
    base = _rss_kb("VmRSS")
    run()
    cold = _rss_kb("VmHWM") - base
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    base = _rss_kb("VmRSS")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {"time_s": round(min(times), 4), "peak_mb_cold": round(cold / 1024, 1),
            "peak_mb_warm": round((_rss_kb("VmHWM") - base) / 1024, 1)}


# ---------------------------------------------------------------------------------------------------
# Workers: decode one latent `repeats` times; save the video when `out` is not "-".
# ---------------------------------------------------------------------------------------------------


def worker_official(ckpt: str, latent_path: str, mode: str, repeats: int, out: str) -> dict:
    import torch

    import ltx_core.loader  # noqa: F401  (import order of ltx-core 1.0.0)
    from ltx_core.loader.single_gpu_model_builder import SingleGPUModelBuilder
    from ltx_core.model.video_vae import VAE_DECODER_COMFY_KEYS_FILTER, VideoDecoderConfigurator
    from ltx_core.model.video_vae.tiling import SpatialTilingConfig, TemporalTilingConfig, TilingConfig

    dec = SingleGPUModelBuilder(model_path=ckpt, model_class_configurator=VideoDecoderConfigurator,
                                model_sd_ops=VAE_DECODER_COMFY_KEYS_FILTER).build(
        device=torch.device("cpu"), dtype=torch.float32).eval()
    latent = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.load(latent_path), -1, 1)))
    cfg = TilingConfig(SpatialTilingConfig(*TILING["spatial"]), TemporalTilingConfig(*TILING["temporal"]))
    kept = {}

    def run():
        with torch.inference_mode():
            if mode == "untiled":
                kept["video"] = dec(latent)
            else:
                chunks = []
                for chunk in dec.tiled_decode(latent, cfg):
                    if out != "-":
                        chunks.append(chunk)
                kept["video"] = torch.cat(chunks, 2) if chunks else None

    stats = measure(run, repeats)
    if out != "-":
        np.save(out, np.moveaxis(kept["video"].numpy(), 1, -1))
    return {**stats, "threads": torch.get_num_threads()}


def worker_ours(ckpt: str, latent_path: str, mode: str, repeats: int, out: str) -> dict:
    import jax

    from ltx_jax.configs import Runtime
    from ltx_jax.video_vae import load_video_decoder
    from ltx_jax.video_vae.codec import decode, decode_stream
    from ltx_jax.video_vae.tiling import SpatialTilingConfig, TemporalTilingConfig, TilingConfig

    dec = load_video_decoder(ckpt, Runtime(param_dtype="float32", compute_dtype="float32"))
    latent = jax.device_put(np.load(latent_path))
    cfg = TilingConfig(SpatialTilingConfig(*TILING["spatial"]), TemporalTilingConfig(*TILING["temporal"]))
    kept = {}

    def run():
        if mode == "untiled":
            kept["video"] = decode(dec, latent).block_until_ready()
        else:
            chunks = []
            for chunk in decode_stream(dec, latent, cfg):
                chunk.block_until_ready()
                if out != "-":
                    chunks.append(chunk)
            kept["video"] = np.concatenate(chunks, axis=1) if chunks else None

    stats = measure(run, repeats)
    if out != "-":
        np.save(out, np.asarray(kept["video"]))
    return {**stats, "backend": jax.default_backend(), "devices": jax.device_count()}


def spawn(side: str, ckpt: Path, latent: Path, mode: str, repeats: int, out: Path | None) -> dict:
    cmd = [str(PYTHON[side]), __file__, "--worker", side, str(ckpt), str(latent), mode, str(repeats),
           str(out) if out else "-"]
    # A fixed mmap threshold: big buffers are mmapped and unmapped when freed (glibc's adaptive threshold
    # would keep them in the heap), so RSS follows the live working set of both frameworks.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError(f"{side} worker failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------


def write_random_checkpoint(preset: str, path: Path) -> dict:
    """A decoder file in the official layout (keys `vae.decoder.*`, statistics) with random weights."""
    from ltx_jax.configs import LTX_2_3, LTX_2_TINY
    from ltx_jax.checkpoint.safetensors_file import save_file
    from ltx_jax.checkpoint.schema import vae_decoder_schema

    if preset == "medium":
        config = dataclasses.replace(LTX_2_3.vae, decoder_base_channels=32)
    else:
        config = LTX_2_TINY.vae
    rng = np.random.default_rng(0)
    tensors = {}
    for key, shape in vae_decoder_schema(config).items():
        if key.endswith(".weight") and len(shape) >= 2:  # torch's default init scale: U(+-1/sqrt(fan_in))
            bound = 1.0 / np.sqrt(np.prod(shape[1:]))
            tensors[key] = rng.uniform(-bound, bound, shape).astype(np.float32)
        elif key.endswith("timestep_scale_multiplier"):
            tensors[key] = np.asarray(1000.0, np.float32)
        else:
            tensors[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    c = config.latent_channels
    tensors["vae.per_channel_statistics.mean-of-means"] = (0.1 * rng.standard_normal(c)).astype(np.float32)
    tensors["vae.per_channel_statistics.std-of-means"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
    save_file(tensors, path, metadata={"config": json.dumps({"vae": config.to_dict()})})
    n = sum(int(np.prod(t.shape)) for t in tensors.values())
    return {"preset": preset, "parameters": n, "vae": config.to_dict()}


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b)) / np.max(np.abs(b)))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        side, ckpt, latent, mode, repeats, out = sys.argv[2:8]
        fn = worker_ours if side == "ours" else worker_official
        print(json.dumps(fn(ckpt, latent, mode, int(repeats), out)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=("medium", "tiny"), default="medium")
    ap.add_argument("--checkpoint", help="an official checkpoint with the video VAE (instead of random weights)")
    ap.add_argument("--frames", type=int, default=5, help="latent frames of the side-by-side case")
    ap.add_argument("--lengths", default="5,9,17", help="latent frame counts of the memory sweep")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.checkpoint:
            ckpt, info = Path(args.checkpoint), {"checkpoint": args.checkpoint}
        else:
            ckpt = tmp / "vae.safetensors"
            info = write_random_checkpoint(args.preset, ckpt)
        channels = json.loads(SafetensorsFile(ckpt).metadata["config"])["vae"].get("latent_channels", 128)

        def latent(frames: int) -> Path:
            p = tmp / f"latent{frames}.npy"
            shape = (1, frames, *LATENT_HW, channels)
            np.save(p, np.random.default_rng(frames).standard_normal(shape).astype(np.float32))
            return p

        report = {"model": info, "tiling": TILING, "side_by_side": {}, "memory_sweep": []}
        lat = latent(args.frames)
        report["side_by_side"]["latent_shape"] = [1, args.frames, *LATENT_HW, channels]
        videos = {}
        for mode in ("untiled", "tiled"):
            row = {}
            for side in ("ours", "official"):
                videos[side, mode] = tmp / f"{side}_{mode}.npy"
                row[side] = spawn(side, ckpt, lat, mode, args.repeats, videos[side, mode])
            row["time_ratio_ours_over_official"] = round(row["ours"]["time_s"] / row["official"]["time_s"], 3)
            row["max_rel_err_ours_vs_official"] = rel(np.load(videos["ours", mode]), np.load(videos["official", mode]))
            report["side_by_side"][mode] = row
        for side in ("ours", "official"):
            report["side_by_side"][f"tiled_vs_untiled_rel_{side}"] = rel(np.load(videos[side, "tiled"]),
                                                                         np.load(videos[side, "untiled"]))
        for frames in map(int, args.lengths.split(",")):
            lat = latent(frames)
            row = {"latent_frames": frames, "pixel_frames": 8 * (frames - 1) + 1}
            for side in ("ours", "official"):
                row[f"{side}_tiled"] = spawn(side, ckpt, lat, "tiled", 1, None)
            row["ours_untiled"] = spawn("ours", ckpt, lat, "untiled", 1, None)
            report["memory_sweep"].append(row)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
