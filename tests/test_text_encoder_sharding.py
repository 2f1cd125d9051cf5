"""The Gemma encoder restored straight into a mesh of 8 simulated CPU devices (a subprocess: the device count is
fixed at jax import), FSDP and tensor rules, equals the single-device encoder; and the 12B config's per-device
parameter bytes on 1, 4 and 8 devices, from shapes only (the README's table)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import build_gemma_reference

pytestmark = [pytest.mark.reference, pytest.mark.sharding]
ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from ltx_jax.configs import Runtime
    from ltx_jax.parity import relative_error
    from ltx_jax.sharding import make_mesh
    from ltx_jax.text_encoder import GEMMA3_12B, gemma_rules, load_gemma, per_device_bytes

    folder = sys.argv[1]
    f32 = Runtime(param_dtype="float32", compute_dtype="float32")
    fx = np.load(folder + "/../fixtures.npz")
    ids = np.concatenate([fx[f"tok.{n}.input_ids"][:, -128:] for n in ("long", "medium")])
    mask = np.concatenate([fx[f"tok.{n}.attention_mask"][:, -128:] for n in ("long", "medium")])
    single = np.asarray(load_gemma(folder, f32).hidden_states(ids, mask))
    out = {"devices": jax.device_count(), "sharded": {}, "bytes_12b": {}}
    mesh = make_mesh(data=2, context=1, tensor=4)
    for weights in ("fsdp", "tensor"):
        gemma = load_gemma(folder, f32, shardings=gemma_rules(mesh, weights))
        q = gemma.state["layers"]["self_attn"]["q_proj"]["weight"][...]
        got = np.asarray(gemma.hidden_states(ids, mask))
        out["sharded"][weights] = {"max_rel_err": relative_error(got, single),
                                   "q_proj_shard": list(q.addressable_shards[0].data.shape), "q_proj": list(q.shape)}
    for weights in ("fsdp", "tensor"):
        for n in (1, 4, 8):
            rules = gemma_rules(make_mesh(tensor=n, devices=jax.devices()[:n]), weights)
            out["bytes_12b"][f"{weights}_{n}"] = per_device_bytes(GEMMA3_12B, Runtime(), rules)
    out["bytes_12b"]["total"] = per_device_bytes(GEMMA3_12B, Runtime(), None)
    print(json.dumps(out))
""")


def test_sharded_encoder_equals_single_device():
    folder = build_gemma_reference("gemma-tiny") / "gemma"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(folder)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps(out, indent=1))
    assert out["devices"] == 8
    for weights, r in out["sharded"].items():
        assert r["max_rel_err"] <= 1e-6, (weights, r)
        assert r["q_proj_shard"] != r["q_proj"], (weights, r)  # really sharded
    b = out["bytes_12b"]
    assert b["total"] == 11_766_034_176 * 2  # bf16
    assert b["fsdp_1"] == b["tensor_1"] == b["total"]
    for n in (4, 8):  # FSDP splits every matrix; only the norms (a few MB) stay replicated
        assert b["total"] / n <= b[f"fsdp_{n}"] <= b["total"] / n * 1.001
        assert b[f"fsdp_{n}"] <= b[f"tensor_{n}"] <= b["total"]
