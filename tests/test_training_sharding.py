"""Data-parallel training on 8 simulated CPU devices equals single-device training, and FSDP training runs
(and equals it too), and so does sequence-parallel training (context > 1). A subprocess, since the device
count is fixed when jax is imported.

Same tiny float32 audio-video model with LoRA adapters, same batch of 8, 3 AdamW steps: single device, then
the batch on an 8-way `data` axis with FSDP (weights and LoRA factors split over `data` too; data-parallel with
replicated weights differs only in where the weights live, measured 3.1e-7 loss / 1.0e-6 params before it was
dropped to save a compilation), then `data=2 x context=4`: video tokens split over `context`, the attention
through the sequence-parallel plan (`auto`: Ulysses over the 4 heads, local-KV text/audio->video, LSE-merged
video->audio). Losses and trained parameters must agree within float32 reduction-order differences.
Adam's eps is 1e-3 here: with
the default 1e-8, `m / (sqrt(v) + eps)` turns the rounding noise of near-zero gradient entries into full
lr-sized steps of either sign (measured: parameters 1.3e-3 apart while the losses agree to 4e-7), which
is Adam's behaviour, not the mesh's.
"""

import json
import os
import sys
import textwrap
from pathlib import Path

import background
import pytest

pytestmark = [pytest.mark.sharding]
ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from test_training_objective import tiny_batch
    from ltx_jax.configs import LTX_2_3_TINY, Runtime
    from ltx_jax.sharding import attention_plan, shard_state
    from ltx_jax.training.lora import LoraConfig, add_lora
    from ltx_jax.training.objective import ObjectiveConfig
    from ltx_jax.training.sharding import place_batch, train_mesh, train_rules
    from ltx_jax.training.step import OptimConfig, Trainer
    import test_training_objective as T
    T.B = 8
    batch = tiny_batch(audio=True)

    def run(rules, context=False):
        model = LTXModel(LTX_2_3_TINY.transformer, Runtime(param_dtype="float32", compute_dtype="float32"),
                         rngs=nnx.Rngs(0))
        add_lora(model, LoraConfig(rank=4, targets=r"\\.(to_q|to_k|to_v|to_out\\.0|ff\\.net\\.2)$"), seed=0)
        tr = Trainer(model, mode="lora", objective=ObjectiveConfig(first_frame_p=0.5),
                     optim=OptimConfig(steps=3, learning_rate=1e-2, eps=1e-3),
                     shard=(lambda s: shard_state(s, rules)) if rules else None,
                     plan=attention_plan(rules) if context else None)
        state, losses = tr.init(0), []
        b = place_batch(batch, rules)
        for _ in range(3):
            state, m = tr.step(state, b)
            losses.append(float(m["loss"]))
        leaves = [np.asarray(x) for x in jax.tree.leaves(state.params)]
        specs = sorted({str(x.sharding.spec) for x in jax.tree.leaves(state.params)}) if rules else []
        opt_specs = sorted({str(x.sharding.spec) for x in jax.tree.leaves(state.opt_state)}) if rules else []
        video_spec = str(b.video.sharding.spec) if rules else ""
        return losses, leaves, (specs, opt_specs, video_spec)

    from ltx_jax.transformer import LTXModel
    single, p1, _ = run(None)
    out = {"devices": jax.device_count(), "single": single}
    for name, mesh, fsdp in (("fsdp8", dict(data=8), True), ("data2_context4", dict(data=2, context=4), False)):
        losses, p, specs = run(train_rules(train_mesh(**mesh), fsdp=fsdp), context="context" in mesh)
        out[name] = {"losses": losses, "specs": specs[0], "opt_specs": specs[1], "video_spec": specs[2],
                     "loss_rel": max(abs(a - b) / abs(b) for a, b in zip(losses, single)),
                     "param_rel": max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)) for a, b in zip(p, p1))}
    print("RESULT" + json.dumps(out))
""")


# cheaper XLA:CPU compilation (the numbers do not depend on it); started early beside the rest of the suite
# (tests/background.py)
background.register("training_sharding", __name__, [sys.executable, "-c", SCRIPT], cwd=ROOT, timeout=900,
                    env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
                             XLA_FLAGS="--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
                                       "--xla_llvm_disable_expensive_passes=true"))


def test_data_parallel_fsdp_and_sequence_parallel_equal_single_device():
    result = background.result("training_sharding")
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT"))[6:])
    print(json.dumps(out))
    assert out["devices"] == 8
    for name in ("fsdp8", "data2_context4"):
        assert out[name]["loss_rel"] < 1e-5, out[name]
        assert out[name]["param_rel"] < 1e-4, out[name]
    assert any("data" in s for s in out["fsdp8"]["specs"])  # FSDP really split the trained factors
    # Adam's moments are split like their parameters (step counts replicated)
    assert set(out["fsdp8"]["opt_specs"]) == set(out["fsdp8"]["specs"]) | {"P()"}, out["fsdp8"]
    assert out["single"][0] != out["single"][2]  # the steps trained something
    assert out["data2_context4"]["video_spec"] == "P('data', 'context', None)"  # tokens really split
