"""Parity of our implementation against a reference fixture directory (the shared format).

A fixture directory (docs/reference-fixtures.md, or a TAE fixture as in shared/fixtures/taeltx2_3)
holds official-layout weight files, `fixtures.npz` (inputs and reference outputs) and
`manifest.json`. Each component module in this package contributes `CHECKS`: for the arrays it
knows, it runs our code on the stored inputs and yields (array name, our output, bound), or (array name,
None, reason) for an array it decides at run time not to reproduce. The runner reports max |ours - ref| /
max |ref| per array.

Nothing passes by omission: every array of `fixtures.npz` ends up in exactly one of
  arrays     compared with our output (within its bound),
  inputs     given to our code as an input by a check that ran (`Check.inputs`, with the reason),
  skipped    deliberately not reproduced (a module's `NOT_CHECKED` reason, or not selected by `--only`),
  unclaimed  none of the above (an unknown array, a check that did not apply or did not yield it):
             a failure, so `ok` is false.
An array a check `covers` (an output) is never accepted as an input: the runner computes what it checks.

Under a mesh (`run_parity(..., mesh=ParityMesh)`, `ltx_jax.parity.mesh`) every check reads it from `Fixture.mesh`,
the bounds stay the same, and each compared array gets a `placement`: the path it took (sharded, replicated, host).
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

__all__ = ["Fixture", "FixtureError", "Check", "Report", "run_parity", "plan_coverage", "relative_error", "format_table",
           "COMPONENT_MODULES"]

# Component modules, each with a CHECKS list. Later components add themselves here.
COMPONENT_MODULES: list[str] = ["ltx_jax.parity.tae", "ltx_jax.parity.vae", "ltx_jax.parity.upsampler",
                                 "ltx_jax.parity.transformer", "ltx_jax.parity.lora", "ltx_jax.parity.loop",
                                 "ltx_jax.parity.loop_runs", "ltx_jax.parity.loop_stage2",
                                 "ltx_jax.parity.schedules", "ltx_jax.parity.fp8", "ltx_jax.parity.audio",
                                 "ltx_jax.parity.gemma"]

class FixtureError(ValueError):
    """Not a fixture directory in a format this runner knows."""


@dataclass
class Fixture:
    """A fixture directory: lazy access to its arrays, manifest and files."""

    path: Path
    mesh: Any = None  # a `ltx_jax.parity.mesh.ParityMesh` to run the checks under, or None (one device)

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


@dataclass
class Check:
    """One component's parity check: which fixtures it applies to, and what it computes."""

    name: str
    applies: Callable[[Fixture], bool]
    run: Callable[[Fixture], Iterator[tuple[str, np.ndarray, float]]]
    covers: str = ""  # regex of the reference outputs this check compares: each must be yielded when it applies
    inputs: tuple[tuple[str, str], ...] = ()  # (regex, reason) of the arrays it reads as given inputs


def _relative(ours: np.ndarray, ref: np.ndarray, norm) -> float:
    """norm(ours - ref) / norm(ref), in float64; inf if ours is not finite; norm(ours) where ref is all zero."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        raise ValueError(f"shape {ours.shape} != reference {ref.shape}")
    if not np.all(np.isfinite(ours)):
        return float("inf")
    scale = norm(ref)
    return float(norm(ours - ref) / scale) if scale > 0 else float(norm(ours))


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """max |ours - ref| / max |ref| (shapes must match)."""
    return _relative(ours, ref, lambda x: np.max(np.abs(x)))


def relative_l2(ours: np.ndarray, ref: np.ndarray) -> float:
    """||ours - ref|| / ||ref|| (for outputs where a few elements may legitimately differ, e.g. FP8 roundings)."""
    return _relative(ours, ref, np.linalg.norm)


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
    inputs: dict[str, str] = field(default_factory=dict)
    unclaimed: dict[str, str] = field(default_factory=dict)
    mesh: dict[str, Any] | None = None  # `ParityMesh.describe()` of a run under a mesh

    @property
    def ok(self) -> bool:
        return not self.unclaimed and all(a["ok"] for a in self.arrays.values())

    def to_json(self) -> dict[str, Any]:
        out = {"ok": self.ok, "arrays": self.arrays, "skipped": self.skipped, "inputs": self.inputs,
               "unclaimed": self.unclaimed}
        if self.mesh is not None:
            out.update(mesh=self.mesh["mesh"], attention=self.mesh["attention"])
        return out


def _same_bits(ours, ref: np.ndarray) -> bool:
    """Bit-for-bit equality in the stored dtype (a bound of 0 claims bit-exactness, signed zeros included)."""
    ours = np.asarray(ours)
    return ours.shape == ref.shape and np.ascontiguousarray(ours.astype(ref.dtype)).tobytes() == \
        np.ascontiguousarray(ref).tobytes()


def _matches(names: list[str], pattern: str) -> list[str]:
    r = re.compile(pattern)
    return [n for n in names if r.search(n)]


def _fail(report: Report, name: str, error: str) -> None:
    report.arrays[name] = {"max_rel_err": float("inf"), "bound": 0.0, "ok": False, "error": error}


def run_parity(path: str | Path, only: str | None = None, *, mesh=None, dry_run: bool = False) -> Report:
    """Run every applicable check on the fixture directory at `path` and account for every array.

    `mesh`: a `ltx_jax.parity.mesh.ParityMesh` to run every check under (same bounds; arrays get a `placement`).

    `dry_run`: decide which check claims which array without running any model (`plan_coverage`); arrays a
    check would compare are listed under `inputs` as "would be compared by <check>".
    """
    fixture = Fixture(path, mesh)
    report = Report(mesh=mesh.describe() if mesh is not None else None)
    names = sorted(fixture.arrays)
    checks, not_checked = _checks()
    would_compare: dict[str, str] = {}
    inputs: dict[str, str] = {}
    unselected: dict[str, str] = {}
    why_unclaimed: dict[str, str] = {}
    for check in checks:
        claimed = set(_matches(names, check.covers)) if check.covers else set()
        for pattern, reason in check.inputs:
            claimed |= set(_matches(names, pattern))
        if only and not re.search(only, check.name):
            for n in claimed:
                unselected.setdefault(n, f"{check.name}: not selected by --only")
            continue
        try:
            applies = check.applies(fixture)
        except Exception as e:  # a malformed manifest: this check fails, the run goes on
            applies = False
            _fail(report, check.name, f"applies: {type(e).__name__}: {e}")
        if not applies:
            for n in claimed:
                why_unclaimed.setdefault(n, f"{check.name} does not apply to this fixture")
            continue
        for pattern, reason in check.inputs:
            for n in _matches(names, pattern):
                inputs.setdefault(n, f"{check.name}: {reason}")
        covered = _matches(names, check.covers) if check.covers else []
        if dry_run:
            for n in covered:
                would_compare.setdefault(n, check.name)
            continue
        if mesh is not None:
            mesh.notes.clear()
        try:
            for name, ours, bound, *metric in check.run(fixture):  # optional 4th item: "rel_l2"
                if ours is None:  # named as not checked, with the check's reason
                    report.skipped[name] = f"{check.name}: {bound}"
                    continue
                if name not in fixture:
                    raise FixtureError(f"check {check.name} compared {name!r}, which the fixture lacks")
                try:
                    err = (relative_l2 if metric == ["rel_l2"] else relative_error)(ours, fixture[name])
                except ValueError as e:  # a shape mismatch fails this array only
                    _fail(report, name, str(e))
                    continue
                entry = {"max_rel_err": err, "bound": bound, "ok": bool(err <= bound),
                         **({"metric": "rel_l2"} if metric == ["rel_l2"] else {})}
                if bound == 0.0 and err == 0.0 and not _same_bits(ours, fixture[name]):
                    entry.update(ok=False, error="equal values but different bits (e.g. the sign of a zero)")
                if mesh is not None:
                    entry["placement"] = mesh.placement(name)
                report.arrays[name] = entry
        except Exception as e:  # a crash in one component is a failure of its arrays, not of the run
            for n in covered or [check.name]:
                if n not in report.arrays:
                    _fail(report, n, f"{type(e).__name__}: {e}")
        for n in covered:
            if n not in report.arrays and n not in report.skipped:
                why_unclaimed.setdefault(n, f"{check.name} applies but did not compare it")
    for name in names:
        if name in report.arrays or name in report.skipped:
            continue
        if name in would_compare:
            report.inputs[name] = f"would be compared by {would_compare[name]} (dry run)"
            continue
        reason = next((r for p, r in not_checked if re.search(p, name)), None)
        if reason is not None:
            report.skipped[name] = reason
        elif name in inputs and not any(re.search(c.covers, name) for c in checks if c.covers):
            report.inputs[name] = inputs[name]
        elif name in unselected:
            report.skipped[name] = unselected[name]
        else:
            report.unclaimed[name] = why_unclaimed.get(name, "no check compares it or names it as an input, and "
                                                              "no reason for leaving it unchecked is given")
    return report


def plan_coverage(path: str | Path) -> Report:
    """Which check claims each array of the fixture, without running anything (`unclaimed` is the hole list)."""
    return run_parity(path, dry_run=True)


def format_table(report: Report) -> str:
    lines = []
    if report.mesh is not None:
        m = report.mesh
        lines.append(f"mesh {' x '.join(f'{k}={v}' for k, v in m['mesh'].items())} ({m['devices']} devices), "
                     f"attention {m['attention']}")
    lines.append(f"{'array':<58} {'max_rel_err':>12} {'bound':>9}  ok")
    for name, a in sorted(report.arrays.items()):
        flag = "ok" if a["ok"] else "FAIL"
        lines.append(f"{name:<58} {a['max_rel_err']:>12.3e} {a['bound']:>9.1e}  {flag}"
                     + (f"  ({a['error']})" if "error" in a else "") + ("  (relative L2)" if "metric" in a else ""))
    lines.append(f"{len(report.arrays)} checked, {sum(not a['ok'] for a in report.arrays.values())} failed, "
                 f"{len(report.inputs)} inputs, {len(report.skipped)} skipped, {len(report.unclaimed)} unclaimed")
    for name, why in sorted(report.skipped.items()):
        lines.append(f"  skipped {name}: {why}")
    for name, why in sorted(report.unclaimed.items()):
        lines.append(f"  UNCLAIMED {name}: {why}")
    placements: dict[str, list[str]] = {}
    for name, a in sorted(report.arrays.items()):
        if "placement" in a:
            placements.setdefault(a["placement"], []).append(name)
    for text, names in placements.items():
        lines.append(f"  placement of {len(names)} array(s) ({names[0]}, ...): {text}")
    lines.append("ok" if report.ok else "NOT OK")
    return "\n".join(lines)
