"""The reference environment must be exactly the pinned one (tests/reference/pins.txt): no silent fallback.

`check_environment()` runs when `ltxref.official` is imported, i.e. before any builder touches the official code.
"""

import importlib.metadata as md
import platform
import sys
from pathlib import Path

PINS_FILE = Path(__file__).resolve().parents[1] / "pins.txt"


def pins() -> dict[str, str]:
    """{name: version} from pins.txt (`python` is major.minor)."""
    out = {}
    for line in PINS_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split()
            out[name] = version
    return out


def mismatches() -> list[str]:
    """Human-readable differences between this interpreter and the pins (empty when it is the pinned one)."""
    want, bad = pins(), []
    py = ".".join(platform.python_version_tuple()[:2])
    if py != want["python"]:
        bad.append(f"Python {platform.python_version()} (pinned: {want['python']})")
    for name, version in want.items():
        if name == "python":
            continue
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            bad.append(f"{name} missing (pinned: {version})")
            continue
        base, _, local = have.partition("+")
        if base != version:
            bad.append(f"{name} {have} (pinned: {version})")
        if name == "torch":
            import torch

            if torch.version.cuda is not None or local not in ("", "cpu"):
                bad.append(f"torch {have} is not the CPU build (torch.version.cuda = {torch.version.cuda})")
    return bad


def check_environment() -> None:
    """Exit with a clear message when the reference environment is not the pinned one."""
    bad = mismatches()
    if bad:
        sys.exit("reference environment is not the pinned one (tests/reference/pins.txt): " + "; ".join(bad)
                 + f". Interpreter: {sys.executable}. Recreate it with scripts/env.sh (remove .venv-ref first).")
