"""Builds one LoRA reference fixture folder (docs/reference-fixtures-lora.md) from ltx-core 1.0.0 on CPU.

Run with the reference interpreter (never imports ltx_jax), after the main fixture of the same config and seed:

    .venv-ref/bin/python tests/reference/build_lora.py --main DIR/ltx23-tiny_seed0 --out DIR/ltx23-tiny_seed0_lora

The bf16 checkpoint is the main fixture's float32 checkpoint rounded to bfloat16, and the transformer inputs are the
main fixture's `transformer.in.*` arrays, so both folders describe the same model and inputs. Built under a
temporary name and renamed into place; exits non-zero with a message on failure.
"""

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import safetensors.torch
import torch

from ltxref.atomic import build_atomically
from ltxref import lora_cases as L
from ltxref.official import package_versions
from ltxref.record import Recorder


def build(main: Path, out: Path) -> dict:
    start = time.perf_counter()
    manifest = json.loads((main / "manifest.json").read_text())
    preset, seed = manifest["config"], manifest["seeds"]["weights"]
    num_layers = preset["transformer"]["num_layers"]
    shapes = L.write_bf16_checkpoint(main, out)
    targets = L.lora_targets(num_layers)
    for name, rank in ((L.LORA_A, 4), (L.LORA_B, 2)):
        safetensors.torch.save_file(L.make_lora(targets[name], rank, shapes, seed), str(out / name))
    probes = L.write_probes(out, shapes, seed)
    rec = Recorder()
    inputs = L.load_inputs(main)
    for k, v in sorted(inputs.items()):
        rec.add(k, torch.from_numpy(v), torch_dtype=manifest["arrays"].get(k, {}).get("torch_dtype"))
    cases = L.run_cases(rec, out, inputs, num_layers)
    fp8 = L.scaled_fp8_fusion(rec, main, out, num_layers)
    facts = L.run_probes(out, num_layers)
    rec.save(str(out / "fixtures.npz"))
    return {
        "format": "docs/reference-fixtures-lora.md", "builder": "tests/reference/build_lora.py",
        "main_fixture": main.name, "config_name": manifest["config_name"], "config": preset, "seed": seed,
        "lora_files": {n: {"rank": r, "targets": targets[n]} for n, r in ((L.LORA_A, 4), (L.LORA_B, 2))},
        "inputs": L.INPUTS_NOTE, "lora_keys": L.manifest_lora_keys(out), "probes": probes, **cases,
        "scaled_fp8": fp8, "facts": facts,
        "recorded_params": L.recorded_params(num_layers), "arrays": rec.meta,
        "file_sizes": {p.name: p.stat().st_size for p in sorted(out.glob("*.safetensors"))},
        "timings_s": {"total": round(time.perf_counter() - start, 3)}, "versions": package_versions(),
    }


def build_dir(main: Path, out: Path) -> dict:
    return build_atomically(out, lambda tmp: build(main.resolve(), tmp))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--main", required=True, help="the main fixture folder of the same config and seed")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        m = build_dir(Path(args.main), Path(args.out))
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        print(f"build_lora.py: FAILED for {args.main}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"build_lora.py: {args.out} ({len(m['arrays'])} arrays, {m['timings_s']['total']:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
