"""Parity of ltx-jax against a reference fixture directory (shared format; see docs/reference-fixtures.md).

Run:  .venv/bin/python experiments/parity.py FIXTURE_DIR [--json] [--only REGEX]
Prints max |ours - ref| / max |ref| per reference output array and exits 1 if any exceeds its bound
(2 if the directory is not a fixture). With --json, prints one object:
{"ok": bool, "arrays": {name: {"max_rel_err", "bound", "ok"}}, "skipped": {name: reason}}.
"""

import argparse
import json
import sys

from ltx_jax.parity import FixtureError, format_table, run_parity


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixture_dir")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", help="regex on component names")
    args = parser.parse_args()
    try:
        report = run_parity(args.fixture_dir, args.only)
    except FixtureError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=1) if args.json else format_table(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
