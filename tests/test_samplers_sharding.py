"""The guided loop on 8 simulated CPU devices (a subprocess: the device count is fixed at jax import): guidance
passes on a 4-way `data` axis, video tokens on a 2-way `context` axis (and 2 x 4), equal to the single-device run;
and the distilled two-stage pipeline with the transformer restored into an 8-way `context` mesh, equal to the
official decode."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.reference, pytest.mark.sharding]
ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, re, sys
    import jax, jax.numpy as jnp, numpy as np
    from ltx_jax.parity import Fixture, relative_error
    from ltx_jax.parity.loop import loop_models, recorded_state
    from ltx_jax.parity.loop_runs import recorded_guidance
    from ltx_jax.sampling.loops import Sampler, lower, sample
    from ltx_jax.sampling.samplers import Prompt, TextContext
    from ltx_jax.sharding import inference_rules, make_mesh

    fx = Fixture(sys.argv[1])
    _, dit, _, _ = loop_models(str(fx.path))
    sampler = Sampler(fx["guided.sigmas"][:3], guidance=recorded_guidance(fx, "guided"))  # 2 guided steps, 4 passes
    ctx = {k: TextContext(jnp.asarray(fx[f"ctx.{k}.video"]), jnp.asarray(fx[f"ctx.{k}.audio"])) for k in ("pos", "neg")}
    prompt = Prompt(ctx["pos"], ctx["neg"])
    states = lambda: (recorded_state(fx, "guided.in.video"), recorded_state(fx, "guided.in.audio"))
    single = sample(dit, sampler, *states(), prompt, record=True)
    out = {"devices": jax.device_count(), "passes": len(sampler.guidance.passes)}
    for name, (d, c) in {"data4_context2": (4, 2), "data2_context4": (2, 4)}.items():
        rules = inference_rules(make_mesh(data=d, context=c))
        sharded = sample(dit, sampler, *states(), prompt, record=True, rules=rules)
        errs = {"video": relative_error(np.asarray(sharded.video.latent), np.asarray(single.video.latent)),
                "audio": relative_error(np.asarray(sharded.audio.latent), np.asarray(single.audio.latent)),
                "x0_passes": relative_error(np.asarray(sharded.record["video_x0_passes"]),
                                            np.asarray(single.record["video_x0_passes"]))}
        hlo = lower(dit, sampler, *states(), prompt, rules=rules).compile().as_text()
        ops = {op: len(re.findall(rf"\\b{op}(-start)?\\(", hlo)) for op in ("all-gather", "all-reduce", "all-to-all",
                                                                          "collective-permute")}
        out[name] = {"max_rel_err": errs, "collectives": ops, "num_partitions": int(re.search(
            r"num_partitions=(\\d+)", hlo).group(1)) if "num_partitions=" in hlo else None}
    out["guided_vs_fixture"] = relative_error(np.asarray(single.record["video_x0"][1]), fx["guided.step01.video_x0"])

    # The distilled two-stage pipeline with the transformer restored straight into the mesh (tokens on context).
    from ltx_jax.configs import Runtime
    from ltx_jax.pipelines import Request, distilled_two_stage, load_models, load_noise
    main = Fixture(sys.argv[2])
    rules = inference_rules(make_mesh(data=1, context=8))
    models = load_models(main.path / "ltx_checkpoint.safetensors", rules=rules,
                         upsampler=main.path / "upsampler_spatial_x2_rational.safetensors",
                         runtime=Runtime(param_dtype="float32", compute_dtype="float32"))
    noise, decode_noise = load_noise(main.path / "fixtures.npz")
    prompt = Prompt(TextContext(jnp.asarray(main["connector.out.video_encoding"]),
                                jnp.asarray(main["connector.out.audio_encoding"])))
    gen = distilled_two_stage(models, prompt, Request(frames=17, height=256, width=256), noise=noise,
                              decode_noise=decode_noise, rules=rules)
    leaf = jax.tree.leaves(models.dit[1])[0]
    out["pipeline_param_devices"] = len(leaf.sharding.device_set)
    out["pipeline_vs_official"] = relative_error(np.moveaxis(gen.video, -1, 1), main["loop.decode.out.video"])
    print(json.dumps(out))
""")


def test_guided_step_on_8_simulated_devices():
    """LTX-2.3 only (the richer block: gated attention, prompt AdaLN); the loop code is the same for both."""
    from conftest import build_loops_reference, build_reference

    loops_reference, main = build_loops_reference("ltx23-tiny", 0), build_reference("ltx23-tiny", 0)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(loops_reference), str(main)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["devices"] == 8 and out["passes"] == 4
    assert out["guided_vs_fixture"] <= 1e-4
    assert out["pipeline_param_devices"] == 8 and out["pipeline_vs_official"] <= 1e-4
    for name in ("data4_context2", "data2_context4"):
        r = out[name]
        assert max(r["max_rel_err"].values()) <= 1e-5, (name, r)
        assert r["num_partitions"] == 8, (name, r)
        assert sum(r["collectives"].values()) > 0, (name, r)  # really partitioned, not replicated everywhere
