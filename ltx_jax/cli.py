"""`ltx-jax` command line: inspect, demo (later: convert, generate)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ltx_jax.convert.safetensors_file import SafetensorsError


def _inspect(args: argparse.Namespace) -> int:
    from ltx_jax.convert.inspect import format_report, inspect_file

    reports = []
    for path in args.files:
        try:
            reports.append(inspect_file(path))
        except SafetensorsError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.json:
        out = [r.to_json() for r in reports]
        print(json.dumps(out[0] if len(out) == 1 else out, indent=1))
    else:
        print("\n\n".join(format_report(r) for r in reports))
    return 0


def _demo(args: argparse.Namespace) -> int:
    """Build the bundled tiny LTX-2.3-layout checkpoint and its x2 upsampler, then inspect them."""
    from ltx_jax.configs import LTX_2_3_TINY, TINY_UPSAMPLERS
    from ltx_jax.convert.synthetic import write_checkpoint, write_upsampler

    out = Path(args.out)
    files = [write_checkpoint(LTX_2_3_TINY, out / "ltx23-tiny.safetensors", seed=args.seed),
             write_upsampler(TINY_UPSAMPLERS["spatial_x2"], out / "ltx23-tiny-spatial-upscaler-x2.safetensors",
                             seed=args.seed)]
    print(f"wrote {', '.join(str(f) for f in files)}\n", file=sys.stderr)
    return _inspect(argparse.Namespace(files=[str(f) for f in files], json=args.json))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ltx-jax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="what a safetensors file is, from its header alone")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=_inspect)
    p = sub.add_parser("demo", help="build the bundled tiny checkpoint and inspect it")
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
