"""Projected DiT step time of LTX-2.3 on 1-64 H100/H200 GPUs from measured compute and communication volumes.

Run:  .venv/bin/python experiments/scaling_model.py BENCH.jsonl [--json]
where BENCH.jsonl holds `bench_sharded.py --size full --mesh data=1,context=8 --json` outputs (one per
strategy; ulysses and ring needed) at one video size. Prints a table (or JSON) of projected seconds per step.

Model (stated assumptions, no fitted constants):
  compute   F(N) = (F1 - R) / N + R, from the measured per-device dot FLOPs at N = 8 (R: the replicated part,
            audio stream and text K/V, solved from F8 = (F1 - R) / 8 + R); time = F / (MFU x peak),
            peak 989 TFLOP/s dense bf16 (H100 and H200 SXM), MFU 0.5 (the LTX-2 paper's 1.22 s/step at 720p
            on an H100 is about 48%).
  Ulysses   bytes per device per layer B(N) = B8 x [(N-1)/N^2] / [7/64] (all-to-all of T/N tokens);
            N <= 8: NVLink 4, 450 GB/s per direction per GPU, 70% achieved in all-to-all (315 GB/s);
            N > 8 (heads allow up to 32): the share (N-8)/(N-1) of each all-to-all crosses InfiniBand NDR,
            50 GB/s per GPU (one 400 Gb/s NIC per GPU), 80% achieved (40 GB/s); not overlapped with compute.
  hybrid    N > 8: Ulysses over the 8 GPUs of a node, ring over R = N/8 nodes: the node's Ulysses bytes
            at 8-way split of T/R tokens plus R-1 K/V block transfers over InfiniBand, each overlapped with
            the attention of one block (exposed only when a transfer outlasts it).
  ring      all N: B(N) = B8 x [(N-1)/N] / [7/8] per layer; transfers overlapped with block attention.
  video->audio pmax+psum and other small collectives are included in the measured bytes.
  XLA:CPU widens bf16 collectives to f32 (its float-normalization pass), so bytes measured from a CPU-compiled
  bf16 program are halved here to the bf16 payload a GPU moves (`--no-cpu-widening` keeps them).
"""

from __future__ import annotations

import argparse
import json
import sys

PEAK, MFU = 989e12, 0.5
NVLINK, IB = 450e9 * 0.7, 50e9 * 0.8
LAT = 20e-6  # per collective launch / latency


def project(ulysses: dict, ring: dict, gpus=(1, 2, 4, 8, 16, 32, 64), cpu_widening: bool = True) -> dict:
    f1, f8 = ulysses["dot_flops_single_device"], ulysses["dot_flops_per_device"]
    layers = ulysses["setup"]["layers"]
    rep = max(0.0, (f8 - f1 / 8) * 8 / 7)
    widen = 0.5 if cpu_widening and ulysses["setup"]["backend"] == "cpu" and ulysses["setup"]["dtype"] == "bfloat16" \
        else 1.0
    bu8 = widen * sum(ulysses["per_layer_sent_bytes"].values())
    br8 = widen * sum(ring["per_layer_sent_bytes"].values())
    heads = 32
    rate = PEAK * MFU
    tokens = ulysses["setup"]["video_tokens"]
    # attention share of the per-layer compute (self-attention logits + values: 4 T^2 D per layer, D = 4096)
    attn_flops_layer = 4.0 * tokens ** 2 * 4096
    out = {}
    for n in gpus:
        compute = ((f1 - rep) / n + rep) / rate
        row = {"compute_s": compute}
        if n == 1:
            row.update(ulysses_s=compute, ring_s=compute, hybrid_s=compute)
            out[n] = row
            continue
        # Ulysses (heads % N == 0)
        bu = bu8 * ((n - 1) / n ** 2) / (7 / 64)
        if n <= 8:
            t_u = layers * (bu / NVLINK + 4 * LAT)
        else:
            off = (n - 8) / (n - 1)
            t_u = layers * (bu * off / IB + bu * (1 - off) / NVLINK + 4 * LAT)
        row["ulysses_s"] = compute + t_u if heads % n == 0 else None
        row["ulysses_comm_s"] = t_u
        # ring: overlapped block transfers
        br = br8 * ((n - 1) / n) / (7 / 8)
        bw = NVLINK if n <= 8 else IB
        step_attn = attn_flops_layer / n / n / rate  # one block's attention per device
        t_r = layers * (n - 1) * max(0.0, br / (n - 1) / bw - step_attn)
        row["ring_s"] = compute + t_r
        row["ring_exposed_comm_s"] = t_r
        if n > 8:
            r = n // 8
            bu_node = bu8 * ((8 - 1) / 8 ** 2) / (7 / 64) / r  # 8-way Ulysses of T/R tokens
            kv_block = br8 * (8 / 7) / 8 / r  # per-device K/V of one ring block (T/R tokens, H/8 heads)
            step_attn = attn_flops_layer / n / r / rate
            t_h = layers * (bu_node / NVLINK + 4 * LAT + (r - 1) * max(0.0, kv_block / IB - step_attn))
            row["hybrid_s"] = compute + t_h
            row["hybrid_comm_s"] = t_h
        else:
            row["hybrid_s"] = row["ulysses_s"]
        out[n] = row
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bench", help="JSON lines from bench_sharded.py --size full")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-cpu-widening", action="store_true", help="take CPU-measured bytes as they are")
    args = p.parse_args()
    runs = {}
    for line in open(args.bench):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            runs[r["setup"]["attention"]] = r
    if "ulysses" not in runs or "ring" not in runs:
        print("need ulysses and ring runs in the bench file", file=sys.stderr)
        return 2
    table = project(runs["ulysses"], runs["ring"], cpu_widening=not args.no_cpu_widening)
    if args.json:
        print(json.dumps(table))
        return 0
    one = table[1]["compute_s"]
    print(f"{'GPUs':>4} {'compute':>8} {'ulysses':>8} {'ring':>8} {'hybrid':>8} {'best speedup':>12}")
    for n, r in table.items():
        best = min(v for v in (r.get("ulysses_s"), r["ring_s"], r["hybrid_s"]) if v is not None)
        fmt = lambda v: f"{v:8.3f}" if v is not None else "       -"  # noqa: E731
        print(f"{n:>4} {fmt(r['compute_s'])} {fmt(r.get('ulysses_s'))} {fmt(r['ring_s'])} {fmt(r['hybrid_s'])} "
              f"{one / best:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
