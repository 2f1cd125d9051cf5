"""The parity runner under a mesh of 8 simulated CPU devices (`experiments/parity.py --mesh data=2,context=4`):
the official fixture's arrays stay within the single-device bounds, and the report shows the sharded path really ran
(the DiT's video tokens and velocity on `context`, the plan's split of the heads, the row-sharded VAE decode).
A strategy that cannot split the fixture's heads fails those arrays with the reason; the run goes on.

Cost: the main fixture's transformer, VAE and schedule checks through the CLI (Ulysses), and the transformer check
with ring attention plus the refused split in one more subprocess. The other components under a mesh (loops,
upsamplers, FP8, LoRA, audio, Gemma, TAE) are measured by hand with the same CLI (numbers in docs/sharding.md)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, build_reference
from ltx_jax.parity import transformer, vae

pytestmark = [pytest.mark.reference, pytest.mark.sharding]
PARITY = ROOT / "experiments" / "parity.py"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
ENV.pop("XLA_FLAGS", None)  # the CLI sets the device count itself


def _bound(name: str) -> float:
    """The single-device bound of an array (the component modules' constants)."""
    if name.startswith("transformer.out."):
        return transformer.BOUND_F32
    if name.startswith(("vae_encode.", "vae_decode.")):
        return vae.BOUND
    assert "sigmas" in name, name
    return 0.0  # schedules: bit for bit


def test_cli_under_a_mesh_keeps_the_bounds_and_runs_sharded():
    path = build_reference("ltx23-tiny", 0)
    result = subprocess.run([sys.executable, str(PARITY), str(path), "--json", "--mesh", "data=2,context=4",
                             "--attention", "ulysses", "--only", r"^(transformer|vae|schedules)$"],
                            capture_output=True, text=True, cwd=ROOT, env=ENV)
    out = json.loads(result.stdout)
    assert out["ok"] is True and result.returncode == 0, result.stderr[-3000:]
    assert out["mesh"] == {"data": 2, "context": 4, "tensor": 1} and out["attention"] == "ulysses"
    arrays = out["arrays"]
    assert len([n for n in arrays if n.startswith("transformer.out.")]) >= 10
    assert {"vae_encode.out.latent", "vae_decode.out.video"} <= set(arrays)
    for name, a in arrays.items():
        assert a["bound"] == _bound(name) and a["max_rel_err"] <= a["bound"], (name, a)
    place = {n: a["placement"] for n, a in arrays.items()}
    for name, text in place.items():
        if name.startswith("transformer.out."):  # tokens and output on context, 4 heads split 4 ways by Ulysses
            assert text.startswith("sharded DiT") and "ulysses 4 x ring 1" in text, (name, text)
            assert "velocity P(None, 'context'" in text and "on 8 devices" in text, (name, text)
    assert place["vae_decode.out.video"].startswith("sharded decode") and "'context'" in place["vae_decode.out.video"]
    assert place["vae_encode.out.latent"].startswith("replicated") and "on 8 devices" in place["vae_encode.out.latent"]
    sched = [t for n, t in place.items() if "sigmas" in n]
    assert sched and all(t.startswith("host") for t in sched)


SCRIPT = textwrap.dedent("""
    import json, sys
    from ltx_jax.parity import run_parity
    from ltx_jax.parity.mesh import ParityMesh
    ring = run_parity(sys.argv[1], "^transformer$", mesh=ParityMesh.build("data=2,context=4", "ring")).to_json()
    refused = run_parity(sys.argv[1], "^(transformer|schedules)$", mesh=ParityMesh.build("context=8", "ulysses"))
    print(json.dumps({"ring": ring, "refused": refused.to_json()}))
""")


def test_ring_attention_and_a_refused_split():
    path = build_reference("ltx23-tiny", 0)
    env = {**ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], capture_output=True, text=True, cwd=ROOT,
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    ring = out["ring"]
    assert ring["ok"] is True and ring["attention"] == "ring"
    assert len(ring["arrays"]) >= 10
    for name, a in ring["arrays"].items():
        assert a["bound"] == transformer.BOUND_F32 and a["max_rel_err"] <= a["bound"], (name, a)
        assert "ring (ulysses 1 x ring 4" in a["placement"] and "velocity P(None, 'context'" in a["placement"], a
    # 4 heads cannot be split 8 ways by Ulysses: the transformer's arrays fail with the reason, the schedules still run
    refused = out["refused"]
    assert refused["ok"] is False
    failed = {n: a for n, a in refused["arrays"].items() if n.startswith("transformer.out.")}
    assert len(failed) >= 10 and all(not a["ok"] for a in failed.values())
    assert all("ulysses attention needs the head count to be divisible by the context size" in a["error"]
               for a in failed.values()), failed
    sched = {n: a for n, a in refused["arrays"].items() if "sigmas" in n}
    assert sched and all(a["ok"] for a in sched.values())


def test_too_few_devices_for_the_mesh_is_a_clear_error():
    """An XLA_FLAGS device count the caller already set is kept; a mesh larger than it is refused before any check."""
    env = {**ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    result = subprocess.run([sys.executable, str(PARITY), str(build_reference("ltx23-tiny", 0)), "--mesh",
                             "data=2,context=4"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 2 and not result.stdout
    assert "--mesh data=2,context=4 needs 8 devices; only 4 cpu devices are available" in result.stderr, result.stderr
