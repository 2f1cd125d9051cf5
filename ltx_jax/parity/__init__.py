"""Parity of our implementation against a reference fixture directory (the shared format).

A fixture directory (docs/reference-fixtures.md, or a TAE fixture as in shared/fixtures/taeltx2_3)
holds official-layout weight files, `fixtures.npz` (inputs and reference outputs) and
`manifest.json`. Each component module in this package contributes `CHECKS`: for the arrays it
knows, it runs our code on the stored inputs and yields (array name, our output, bound). The runner
reports max |ours - ref| / max |ref| per array; reference outputs nobody checks are listed as
skipped, with the reason.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Fixture", "FixtureError", "Check", "run_parity", "relative_error", "format_table", "COMPONENT_MODULES"]

# Component modules, each with a CHECKS list. Later components add themselves here.
COMPONENT_MODULES: list[str] = ["ltx_jax.parity.tae", "ltx_jax.parity.vae", "ltx_jax.parity.upsampler",
                                 "ltx_jax.parity.transformer", "ltx_jax.parity.lora", "ltx_jax.parity.loop",
                                 "ltx_jax.parity.gemma", "ltx_jax.parity.audio", "ltx_jax.parity.fp8"]

# Names of reference *outputs* in the shared formats; everything else is an input.
_OUTPUT = re.compile(r"(^|\.)out(\.|_|$)|^loop\.step\d+\.|^loop\.decode\.out|\.latent_(parallel|sequential|streaming)$"
                     r"|\.tap\.|^fp8\.out\.|\.raw_parallel$|\.encoder_model_input$"
                     r"|^(guided|i2v\.s\d+|keyframe|res2s)\.(step|eval)\d+\.\w+_x0"
                     r"|^(tok|gemma|ltx|ltx_bf16)\.[^.]+\.")  # the Gemma text path (reference-fixtures-gemma.md)


class FixtureError(ValueError):
    """Not a fixture directory in a format this runner knows."""


@dataclass
class Fixture:
    """A fixture directory: lazy access to its arrays, manifest and files."""

    path: Path

    def __post_init__(self):
        self.path = Path(self.path)
        if not (self.path / "fixtures.npz").is_file() or not (self.path / "manifest.json").is_file():
            raise FixtureError(f"{self.path}: not a fixture directory (needs fixtures.npz and manifest.json)")

    @cached_property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / "manifest.json").read_text())

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        with np.load(self.path / "fixtures.npz") as z:
            return {k: z[k] for k in z.files}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self.arrays

    def names(self, pattern: str) -> list[str]:
        r = re.compile(pattern)
        return sorted(n for n in self.arrays if r.search(n))

    @property
    def kind(self) -> str:
        """'ltx' (official checkpoint + components) or 'tae' (TAEHV fixture)."""
        if (self.path / "ltx_checkpoint.safetensors").is_file():
            return "ltx"
        if any(self.path.glob("tae*.safetensors")):
            return "tae"
        return "unknown"

    @property
    def outputs(self) -> list[str]:
        return sorted(n for n in self.arrays if _OUTPUT.search(n))


@dataclass
class Check:
    """One component's parity check: which fixtures it applies to, and what it computes."""

    name: str
    applies: Callable[[Fixture], bool]
    run: Callable[[Fixture], Iterator[tuple[str, np.ndarray, float]]]
    covers: str = ""  # regex of the fixture arrays this check is responsible for (for skip reasons)


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """max |ours - ref| / max |ref| (shapes must match)."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        raise ValueError(f"shape {ours.shape} != reference {ref.shape}")
    if not np.all(np.isfinite(ours)):
        return float("inf")
    scale = np.max(np.abs(ref))
    return float(np.max(np.abs(ours - ref)) / scale) if scale > 0 else float(np.max(np.abs(ours)))


def relative_l2(ours: np.ndarray, ref: np.ndarray) -> float:
    """||ours - ref|| / ||ref|| (for outputs where a few elements may legitimately differ, e.g. FP8 roundings)."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        raise ValueError(f"shape {ours.shape} != reference {ref.shape}")
    if not np.all(np.isfinite(ours)):
        return float("inf")
    scale = np.linalg.norm(ref)
    return float(np.linalg.norm(ours - ref) / scale) if scale > 0 else float(np.linalg.norm(ours))


def _checks() -> tuple[list[Check], list[tuple[str, str]]]:
    """Every component's checks, and its (regex, reason) list of outputs it deliberately does not reproduce."""
    checks, not_checked = [], []
    for name in COMPONENT_MODULES:
        module = importlib.import_module(name)
        checks += module.CHECKS
        not_checked += getattr(module, "NOT_CHECKED", [])
    return checks, not_checked


@dataclass
class Report:
    arrays: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(a["ok"] for a in self.arrays.values())

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "arrays": self.arrays, "skipped": self.skipped}


def run_parity(path: str | Path, only: str | None = None) -> Report:
    """Run every applicable check on the fixture directory at `path`."""
    fixture = Fixture(path)
    report = Report()
    checks, not_checked = _checks()
    covered_by: dict[str, str] = {}
    for n in fixture.outputs:
        for pattern, reason in not_checked:
            if re.search(pattern, n):
                covered_by.setdefault(n, reason)
    for check in checks:
        if only and not re.search(only, check.name):
            for n in fixture.names(check.covers) if check.covers else ():
                covered_by.setdefault(n, f"{check.name}: not selected by --only")
            continue
        try:
            applies = check.applies(fixture)
        except Exception as e:  # a malformed manifest: this check's arrays fail, the run goes on
            applies, report.arrays[check.name] = False, {"max_rel_err": float("inf"), "bound": 0.0, "ok": False,
                                                         "error": f"applies: {type(e).__name__}: {e}"}
        if not applies:
            for n in fixture.names(check.covers) if check.covers else ():
                covered_by.setdefault(n, f"{check.name}: not applicable to this fixture")
            continue
        try:
            for name, ours, bound, *metric in check.run(fixture):  # optional 4th item: "rel_l2"
                err = (relative_l2 if metric == ["rel_l2"] else relative_error)(ours, fixture[name])
                report.arrays[name] = {"max_rel_err": err, "bound": bound, "ok": bool(err <= bound),
                                       **({"metric": "rel_l2"} if metric == ["rel_l2"] else {})}
        except Exception as e:  # a crash in one component is a failure of its arrays, not of the run
            for n in fixture.names(check.covers) if check.covers else [check.name]:
                if n not in report.arrays:
                    report.arrays[n] = {"max_rel_err": float("inf"), "bound": 0.0, "ok": False,
                                        "error": f"{type(e).__name__}: {e}"}
    for name in fixture.outputs:
        if name not in report.arrays:
            report.skipped[name] = covered_by.get(name, "no implementation checks this array yet")
    return report


def format_table(report: Report) -> str:
    lines = [f"{'array':<58} {'max_rel_err':>12} {'bound':>9}  ok"]
    for name, a in sorted(report.arrays.items()):
        flag = "ok" if a["ok"] else "FAIL"
        lines.append(f"{name:<58} {a['max_rel_err']:>12.3e} {a['bound']:>9.1e}  {flag}"
                     + (f"  ({a['error']})" if "error" in a else "") + ("  (relative L2)" if "metric" in a else ""))
    lines.append(f"{len(report.arrays)} checked, {sum(not a['ok'] for a in report.arrays.values())} failed, "
                 f"{len(report.skipped)} skipped")
    for name, why in sorted(report.skipped.items()):
        lines.append(f"  skipped {name}: {why}")
    return "\n".join(lines)
