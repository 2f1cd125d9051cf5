"""The reference fixtures: built by the official code, laid out as the official files, readable by us.

These check the fixture builder itself (its round trip through the official loader, its key list)
and our side of the file contract (schema, configs, inspect) on the files ltx-core wrote.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from ltx_jax.configs import LTX_2_3_TINY, LTX_2_TINY, TINY_UPSAMPLERS, from_metadata, upsampler_from_metadata
from ltx_jax.checkpoint import schema as S
from ltx_jax.checkpoint.inspect import inspect_file
from ltx_jax.checkpoint.safetensors_file import SafetensorsFile

pytestmark = pytest.mark.reference
PRESETS = {"ltx2-tiny": LTX_2_TINY, "ltx23-tiny": LTX_2_3_TINY}


def _name(reference):
    return reference.name.rsplit("_seed", 1)[0]


def test_round_trip_through_the_official_loader_passed(reference):
    manifest = json.loads((reference / "manifest.json").read_text())
    report = manifest["round_trip"]
    assert report["ok"] is True, report
    assert all(c["ok"] and not c["meta_left"] and not c["mismatched"] for c in report["components"].values())
    with SafetensorsFile(reference / "ltx_checkpoint.safetensors") as f:
        assert sorted(f) == sorted(manifest["checkpoint_keys"])


def test_checkpoint_is_the_official_layout_of_its_config(reference):
    with SafetensorsFile(reference / "ltx_checkpoint.safetensors") as f:
        shapes = {k: i.shape for k, i in f.infos.items()}
        config = from_metadata(f.metadata, tensor_shapes=shapes)
        assert config == PRESETS[_name(reference)]
        expected = {k: s for part in S.checkpoint_schema(config).values() for k, s in part.items()}
        assert shapes == expected
        assert {i.dtype for i in f.infos.values()} == {"F32"}


def test_upsampler_files(reference):
    for kind, preset in TINY_UPSAMPLERS.items():
        with SafetensorsFile(reference / f"upsampler_{kind}.safetensors") as f:
            config = upsampler_from_metadata(f.metadata)
            assert config == preset and config.kind == kind
            assert {k: i.shape for k, i in f.infos.items()} == S.upsampler_schema(config)
        report = inspect_file(str(reference / f"upsampler_{kind}.safetensors"))
        assert report.details["upsampler_kind"] == kind and not report.warnings


def test_inspect_on_the_official_checkpoint_and_its_fp8_variant(reference):
    report = inspect_file(str(reference / "ltx_checkpoint.safetensors"))
    assert report.kind == "ltx_checkpoint" and not report.warnings
    family = "LTX-2.3" if _name(reference) == "ltx23-tiny" else "LTX-2"
    assert report.description.startswith(f"{family} full checkpoint")
    fp8 = inspect_file(str(reference / "ltx_transformer_fp8.safetensors"))
    assert fp8.kind == "ltx_transformer"
    assert fp8.details["precision"] == "fp8-scaled"
    assert fp8.details["fp8_weight_scales"] == fp8.details["fp8_input_scales"] == fp8.details["fp8_tensors"] > 0
    with SafetensorsFile(reference / "ltx_transformer_fp8.safetensors") as f:
        # every FP8 weight carries both scalar scales, as in the official pre-quantized files
        for k, i in f.infos.items():
            if i.dtype == "F8_E4M3":
                stem = k[: -len("weight")]
                assert f.infos[stem + "weight_scale"].shape == () and f.infos[stem + "input_scale"].shape == ()


# Checks that other tests already run on this fixture for both configs, in process (test_transformer,
# test_vae, test_upsampler, test_connector: seeds 0, 1 and 2; their bf16 tests): the CLI run here selects the
# rest (loops, schedules, FP8), so that no model is compared twice in CI, and the dry run checks that the
# whole directory is accounted for.
_TESTED_PER_SEED = ("transformer", "vae", "upsampler", "connector", "transformer_bf16", "connector_bf16")


def test_parity_cli_json_format(reference):
    from ltx_jax.parity import plan_coverage
    plan = plan_coverage(reference).to_json()
    with np.load(reference / "fixtures.npz") as z:  # every array accounted for, none unclaimed
        assert set(plan["arrays"]) | set(plan["skipped"]) | set(plan["inputs"]) == set(z.files)
    assert plan["ok"] and not plan["unclaimed"], plan["unclaimed"]
    rest = f"^(?!({'|'.join(_TESTED_PER_SEED)})$)"
    result = subprocess.run([sys.executable, str(ROOT / "experiments/parity.py"), str(reference), "--json",
                             "--only", rest], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    out = json.loads(result.stdout)
    assert set(out) == {"ok", "arrays", "skipped", "inputs", "unclaimed"}
    failed = {n: a for n, a in out["arrays"].items() if not a["ok"]}
    assert out["ok"] is True and result.returncode == 0, (failed, out["unclaimed"], result.stderr[-2000:])
    for name, entry in out["arrays"].items():
        assert set(entry) >= {"max_rel_err", "bound", "ok"}, name
    assert {"loop.decode.out.video", "loop.stage1.sigmas", "loop.stage2.video.pre_noise_latent",
            } <= set(out["arrays"]), sorted(out["arrays"])
    by_check = {n: why.split("would be compared by ", 1)[1].split(" ", 1)[0] for n, why in plan["inputs"].items()
                if why.startswith("would be compared by")}
    assert set(out["arrays"]) == {n for n, check in by_check.items() if check not in _TESTED_PER_SEED}


def test_parity_cli_refuses_a_non_fixture(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "experiments/parity.py"), str(tmp_path)],
                            capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2 and "not a fixture directory" in result.stderr
