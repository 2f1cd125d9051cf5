"""Writing a fixture directory atomically: build into a hidden sibling, then rename it into place.

An interrupted or failed build leaves no directory that looks complete (the cache in tests/conftest.py
treats a directory with a manifest.json as built).
"""

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch


def build_atomically(out: Path, build: Callable[[Path], dict]) -> dict:
    """Run `build(tmp)` (which fills `tmp` and returns the manifest) in inference mode, write `manifest.json`,
    and move `tmp` to `out` (replacing an existing `out`). Returns the manifest."""
    out = Path(out).resolve()
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        with torch.inference_mode():
            manifest = build(tmp)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


class Laps:
    """Wall time of consecutive build phases: `laps("phase")` closes a phase; `laps.timings` (+ "total")."""

    def __init__(self):
        self.timings: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, key: str) -> None:
        now = time.perf_counter()
        self.timings[key] = round(now - self._clock, 3)
        self.timings["total"] = round(sum(v for k, v in self.timings.items() if k != "total"), 3)
        self._clock = now
