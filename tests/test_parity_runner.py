"""The parity runner (`experiments/parity.py` -> `ltx_jax.parity`) cannot pass by omission: every array of every
kind of fixture directory (main, loop, LoRA, TAE) is compared, named as an input, or skipped with a reason; an
array nobody claims, a schedule that differs by one ulp, or a loop whose upsampler the manifest does not name fail.
The full runs of each component are in the component tests (test_transformer, test_vae, test_samplers, ...); here
the runner runs for real on the LoRA folder (its cheapest full run) through the CLI, and `ok` is read from JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ltx_jax.parity import plan_coverage, run_parity
from conftest import ROOT, build_loops_reference, build_lora_reference, build_reference

pytestmark = pytest.mark.reference
PARITY = ROOT / "experiments" / "parity.py"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's ltx_jax, whatever the editable install points to


def _names(path: Path) -> set[str]:
    with np.load(path / "fixtures.npz") as z:
        return set(z.files)


def _accounted(out: dict) -> set[str]:
    return set(out["arrays"]) | set(out["skipped"]) | set(out["inputs"]) | set(out["unclaimed"])


@pytest.fixture(scope="module", params=["main", "loops", "lora", "tae"])
def fixture_dir(request, tae_fixture) -> Path:
    return {"main": lambda: build_reference("ltx23-tiny", 0), "loops": lambda: build_loops_reference("ltx2-tiny", 0),
            "lora": lambda: build_lora_reference("ltx2-tiny", 0), "tae": lambda: tae_fixture}[request.param]()


def test_every_array_is_claimed(fixture_dir):
    """Without running a model: each array is compared by a check, an input of one, or skipped with a reason."""
    report = plan_coverage(fixture_dir)
    assert not report.unclaimed, report.unclaimed
    assert report.ok and _accounted(report.to_json()) == _names(fixture_dir)
    assert all(report.skipped.values()) and all(report.inputs.values())


def test_runner_cli_json_ok_on_a_lora_folder():
    """A full run through the CLI: `ok` from the JSON, every array accounted for, merged weights bit for bit."""
    path = build_lora_reference("ltx2-tiny", 0)
    result = subprocess.run([sys.executable, str(PARITY), str(path), "--json"], capture_output=True, text=True,
                            cwd=ROOT, env=ENV)
    out = json.loads(result.stdout)
    assert out["ok"] is True and result.returncode == 0, (out["unclaimed"], result.stderr[-2000:])
    assert _accounted(out) == _names(path) and not out["unclaimed"]
    weights = {n: a for n, a in out["arrays"].items() if ".weight." in n or ".weight_scale." in n}
    assert len(weights) >= 60 and all(a["bound"] == 0.0 and a["max_rel_err"] == 0.0 for a in weights.values())
    assert any(n.startswith("lora.fp8cast_ab.weight.") for n in weights)
    assert any(n.startswith("lora.fp8scaled_ab.weight_scale.") for n in weights)
    assert {"lora.a_f32.out.video_velocity", "lora.ab.out.audio_velocity"} <= set(out["arrays"])


def _copy(src: Path, dst: Path, extra: dict[str, np.ndarray] | None = None, manifest=None) -> Path:
    """A fixture directory that links `src`'s files, with `extra` arrays added to (or replacing) fixtures.npz."""
    dst.mkdir()
    for p in src.iterdir():
        if p.name not in ("fixtures.npz", "manifest.json"):
            (dst / p.name).symlink_to(p)
    with np.load(src / "fixtures.npz") as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(dst / "fixtures.npz", **{**arrays, **(extra or {})})
    m = json.loads((src / "manifest.json").read_text())
    (dst / "manifest.json").write_text(json.dumps(manifest(m) if manifest else m))
    return dst


def test_an_unclaimed_array_fails_the_run(tmp_path):
    """An array no check knows (another builder's extra) makes `ok` false and the exit code 1."""
    path = _copy(build_lora_reference("ltx2-tiny", 0), tmp_path / "fx", {"mystery.out.thing": np.ones(3)})
    result = subprocess.run([sys.executable, str(PARITY), str(path), "--json", "--only", "^nothing$"],
                            capture_output=True, text=True, cwd=ROOT, env=ENV)
    out = json.loads(result.stdout)
    assert out["ok"] is False and result.returncode == 1
    assert list(out["unclaimed"]) == ["mystery.out.thing"]


def test_schedules_are_computed_and_compared_bit_for_bit(tmp_path):
    """The runner compares the recorded schedules with its own; one ulp off in one is a failure."""
    src = build_loops_reference("ltx2-tiny", 0)
    with np.load(src / "fixtures.npz") as z:
        stage1 = z["sched.distilled.stage1"].copy()
    stage1[3] = np.nextafter(stage1[3], np.float32(2))
    report = run_parity(_copy(src, tmp_path / "fx", {"sched.distilled.stage1": stage1}), only="^schedules$")
    bad = {n for n, a in report.arrays.items() if not a["ok"]}
    assert bad == {"sched.distilled.stage1"}, bad
    assert sum(n.startswith("sched.dev.") for n in report.arrays) >= 21 and not report.unclaimed
    assert all(report.arrays[n]["bound"] == 0.0 for n in report.arrays if not n.endswith("coeffs"))


def test_a_loop_without_a_named_upsampler_fails(tmp_path):
    """The manifest must name the loop's upsampler: the runner never picks one by how close it lands."""
    def drop(m):
        m["inputs"].pop("loop_upsampler")
        return m
    path = _copy(build_reference("ltx2-tiny", 0), tmp_path / "fx", manifest=drop)
    report = run_parity(path, only="^loop$")
    assert not report.ok
    errors = {a.get("error", "") for n, a in report.arrays.items() if n.startswith("loop.")}
    assert errors and all("names no loop upsampler" in e for e in errors), errors
