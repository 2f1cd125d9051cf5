"""Conversion throughput and peak host memory on a synthetic checkpoint of several GB with the real key set.

    .venv/bin/python experiments/bench_convert.py [--width-scale 0.3125] [--dir /tmp/bench_convert] [--keep]

Writes an LTX-2.3-layout bf16 checkpoint (48 blocks, every official key, widths scaled down: 32 heads of
head_dim*scale), then in separate child processes (so each has its own peak RSS): a plain sequential read of
the file (the reference speed, same run, page cache of that file dropped first with posix_fadvise), the
conversion (`ltx_jax.checkpoint.converter`), and the export back to one file; prints one JSON object. Peak RSS is
VmHWM of the child; the baseline is its VmRSS after imports, before any tensor is touched.

Result on this machine (2 shared CPU cores, load average ~3.5), width scale 0.3125 (video 32 x 40, audio
32 x 20; 4618 tensors, 2.53 B parameters, 5.07 GB bf16; largest tensor the text projection, 150.5 MB):
plain read 850 MB/s (5.96 s); convert 238 MB/s (21.3 s wall, 21.5 CPU-s, sha256 included), 0.28 of the plain
read; peak RSS 461 MB = baseline 202 MB + 259 MB (1.72 x the largest tensor); export 202 MB/s, and the exported
file is byte-identical to the source. Numbers are printed, not asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
mode, src, out = sys.argv[1:4]
from ltx_jax.checkpoint.converter import convert
from ltx_jax.checkpoint.exporter import export
base = status("VmRSS")
fd = os.open(src, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # cold(er) page cache for the file read first
os.close(fd)
start, cpu0 = time.perf_counter(), cpu()
if mode == "read":
    buf = bytearray(16 << 20)
    with open(src, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
elif mode == "convert":
    convert(src, out, overwrite=True)
elif mode == "export":
    export(src, out, overwrite=True)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu() - cpu0, "rss_baseline": base, "rss_peak": status("VmHWM")}))
"""


def child(mode: str, src: Path, out: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, mode, str(src), str(out)], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{mode} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def synthetic_config(scale: float):
    from ltx_jax.configs import LTX_2_3

    t, c = LTX_2_3.transformer, LTX_2_3.connector
    head, audio_head, text = max(8, int(128 * scale)), max(8, int(64 * scale)), int(3840 * scale)
    t = dataclasses.replace(t, attention_head_dim=head, audio_attention_head_dim=audio_head, caption_channels=text,
                            cross_attention_dim=32 * head, audio_cross_attention_dim=32 * audio_head)
    c = dataclasses.replace(c, connector_attention_head_dim=head, audio_connector_attention_head_dim=audio_head,
                            text_hidden_size=text)
    vae = dataclasses.replace(LTX_2_3.vae, decoder_base_channels=max(8, int(128 * scale)))
    return dataclasses.replace(LTX_2_3, transformer=t, connector=c, vae=vae, audio_vae=None, vocoder=None,
                               model_version="2.3-synthetic-bench")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width-scale", type=float, default=0.3125)
    ap.add_argument("--dir", default="/tmp/bench_convert")
    ap.add_argument("--keep", action="store_true", help="keep the files")
    args = ap.parse_args()

    import ml_dtypes

    from ltx_jax.checkpoint import schema as S
    from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
    from ltx_jax.checkpoint.synthetic import write_checkpoint

    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    config = synthetic_config(args.width_scale)
    src = d / "synthetic-ltx-2.3.safetensors"
    start = time.perf_counter()
    if not src.exists():
        write_checkpoint(config, src, seed=0, dtype=ml_dtypes.bfloat16)
    made = time.perf_counter() - start
    f = SafetensorsFile(src)
    size, largest = src.stat().st_size, max(i.nbytes for i in f.infos.values())
    largest_key = max(f.infos.values(), key=lambda i: i.nbytes).name
    n_tensors, n_params = len(f.infos), f.num_parameters
    schema_params = sum(S.num_parameters(p) for p in S.checkpoint_schema(config).values())
    f.close()

    read = child("read", src, d / "unused")
    conv = child("convert", src, d / "converted")
    exp = child("export", d / "converted", d / "exported.safetensors")
    identical = (d / "exported.safetensors").read_bytes() == src.read_bytes() if size < 16e9 else None
    mb = size / 1e6
    result = {
        "file": {"bytes": size, "tensors": n_tensors, "parameters": n_params, "schema_parameters": schema_params,
                 "dtype": "bf16", "largest_tensor": largest_key, "largest_tensor_bytes": largest,
                 "width_scale": args.width_scale, "layers": config.transformer.num_layers,
                 "generate_seconds": round(made, 1)},
        "plain_read": {"seconds": round(read["seconds"], 2), "MB_per_s": round(mb / read["seconds"], 1),
                       "cpu_seconds": round(read["cpu_seconds"], 1)},
        "convert": {"seconds": round(conv["seconds"], 2), "MB_per_s": round(mb / conv["seconds"], 1),
                    "cpu_seconds": round(conv["cpu_seconds"], 1),
                    "fraction_of_plain_read": round(read["seconds"] / conv["seconds"], 3),
                    "rss_baseline_MB": round(conv["rss_baseline"] / 1e6, 1),
                    "rss_peak_MB": round(conv["rss_peak"] / 1e6, 1),
                    "rss_above_baseline_MB": round((conv["rss_peak"] - conv["rss_baseline"]) / 1e6, 1),
                    "rss_above_baseline_over_largest_tensor": round((conv["rss_peak"] - conv["rss_baseline"])
                                                                    / largest, 2),
                    "output_bytes": sum(p.stat().st_size for p in (d / "converted").rglob("*") if p.is_file())},
        "export": {"seconds": round(exp["seconds"], 2), "MB_per_s": round(mb / exp["seconds"], 1),
                   "cpu_seconds": round(exp["cpu_seconds"], 1),
                   "rss_above_baseline_MB": round((exp["rss_peak"] - exp["rss_baseline"]) / 1e6, 1),
                   "file_byte_identical_to_source": identical},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "note": "page cache of the source dropped (posix_fadvise) before each child; the file was just written, "
                "so the disk may still hold it in its own cache",
    }
    print(json.dumps(result, indent=1))
    if not args.keep:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
