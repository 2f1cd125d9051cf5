"""The top-level `convert/` entry points run as scripts on the tiny official file: to ltx-jax, back to one
official file (bit-identical per tensor, same metadata), and inspect."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, build_reference
from ltx_jax.checkpoint.safetensors_file import SafetensorsFile


def _run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "convert" / script), *args], capture_output=True, text=True,
                            cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.reference
def test_convert_scripts_round_trip_the_tiny_official_file(tmp_path):
    src = build_reference("ltx23-tiny", 0) / "ltx_checkpoint.safetensors"
    report = json.loads(_run("inspect_file.py", str(src), "--json"))
    assert report["kind"] == "ltx_checkpoint" and report["warnings"] == []
    ckpt = tmp_path / "ckpt"
    assert _run("to_ltx_jax.py", str(src), str(ckpt), "--quiet").strip() == str(ckpt.absolute())
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert manifest["kind"] == "ltx_checkpoint" and (ckpt / "COMPLETE").is_file()
    back = tmp_path / "back.safetensors"
    _run("to_official.py", str(ckpt), str(back))
    with SafetensorsFile(src) as a, SafetensorsFile(back) as b:
        assert sorted(a) == sorted(b) and dict(a.metadata) == dict(b.metadata)
        for key in a:
            x, y = np.asarray(a[key]), np.asarray(b[key])
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), key
