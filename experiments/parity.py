"""Parity of ltx-jax against a reference fixture directory (shared format; see docs/reference-fixtures.md).

Run:  .venv/bin/python experiments/parity.py FIXTURE_DIR [--json] [--only REGEX]
                                              [--mesh data=2,context=4 [--attention ulysses|ring|hybrid|gspmd]]
Prints max |ours - ref| / max |ref| per reference output array and exits 1 if any exceeds its bound
(2 if the directory is not a fixture, or the mesh cannot be built). With --json, prints one object:
{"ok": bool, "arrays": {name: {"max_rel_err", "bound", "ok"}}, "skipped": {name: reason}, ...}.

--mesh runs every component under that mesh, with the same bounds: on simulated CPU devices (this script sets
XLA_FLAGS=--xla_force_host_platform_device_count=N, N the mesh size, unless XLA_FLAGS already sets a count).
Components with a sharded path take it (the DiT with the --attention strategy, the loops, the video VAE decode,
the Gemma decoder); the others run replicated on the mesh. The report adds "mesh" and "attention", and each array a
"placement" saying which path it took (ltx_jax/parity/mesh.py). A strategy that cannot split the fixture's heads
fails the arrays of that component with the reason; the run goes on.
"""

import argparse
import json
import math
import os
import re
import sys

_COUNT = "--xla_force_host_platform_device_count"


def _mesh_size(text: str) -> int | None:
    """N of `data=2,context=4` (None if it does not parse: the mesh builder then names the problem)."""
    sizes = [part.partition("=")[2].strip() for part in text.split(",")]
    return math.prod(int(s) for s in sizes) if all(s.isdigit() for s in sizes) else None


def _simulate_devices(n: int) -> None:
    """Ask XLA for `n` host devices, before jax is imported (an existing count in XLA_FLAGS is kept)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if _COUNT not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {_COUNT}={n}".strip()


def _mesh(text: str, attention: str):
    import jax

    from ltx_jax.parity.mesh import ParityMesh

    need = _mesh_size(text)
    devices = jax.devices()
    if need is not None and len(devices) < need:
        cpu = jax.devices("cpu")
        if len(cpu) < need:
            given = re.search(rf"{_COUNT}=(\d+)", os.environ.get("XLA_FLAGS", ""))
            why = f" (XLA_FLAGS sets {_COUNT}={given.group(1)})" if given else ""
            have = f"{len(cpu)} cpu" if devices[0].platform == "cpu" else \
                f"{len(devices)} {devices[0].platform} and {len(cpu)} cpu"
            raise ValueError(f"--mesh {text} needs {need} devices; only {have} devices are available{why}")
        devices = cpu
        jax.config.update("jax_default_device", cpu[0])  # so that uncommitted arrays live beside the mesh
    return ParityMesh.build(text, attention, devices[:need] if need else devices)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixture_dir")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", help="regex on component names")
    parser.add_argument("--mesh", help="run under this mesh, e.g. data=2,context=4 (axes data, context, tensor)")
    parser.add_argument("--attention", default="auto", choices=("auto", "ulysses", "ring", "hybrid", "gspmd"),
                        help="sequence-parallel attention strategy under --mesh (default auto)")
    args = parser.parse_args()
    if args.attention != "auto" and not args.mesh:
        parser.error("--attention needs --mesh")
    if args.mesh and (n := _mesh_size(args.mesh)):
        _simulate_devices(n)

    from ltx_jax.parity import FixtureError, format_table, run_parity  # after XLA_FLAGS: jax reads it at import

    try:
        mesh = _mesh(args.mesh, args.attention) if args.mesh else None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        report = run_parity(args.fixture_dir, args.only, mesh=mesh)
    except FixtureError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=1) if args.json else format_table(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
