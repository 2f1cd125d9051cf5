"""The jitted loops against the official ones (float32, from the recorded noise): the two-stage distilled loop
of the main fixtures (every step's x0, the upsample and the decode) and the loop fixtures' guided, i2v, keyframe
and res_2s runs (every evaluation's input, per-pass and guided x0, the output); one trace per run; callbacks;
input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltx_jax.parity import Fixture, relative_error
from ltx_jax.parity.loop import BOUND, loop_models, recorded_state, run_two_stage
from ltx_jax.parity.loop_runs import LOOP_RUNS, recorded_guidance, run_loop_fixture
from ltx_jax.sampling import GuiderParams, LatentState
from ltx_jax.sampling.loops import TRACES, Callbacks, Sampler, dev_sampler, distilled_sampler, res2s_sampler, sample
from ltx_jax.sampling.samplers import Guidance, Prompt, TextContext, combine, model_sigma

pytestmark = pytest.mark.reference


def _check_all(fx: Fixture, ours: dict[str, np.ndarray], pattern: str) -> dict[str, float]:
    """Every fixture array matching `pattern` is computed, and each is within BOUND."""
    missing = [n for n in fx.names(pattern) if n not in ours]
    assert not missing, f"not reproduced: {missing[:6]}"
    errs = {n: relative_error(v, fx[n]) for n, v in ours.items() if n in fx}
    bad = {n: e for n, e in errs.items() if not e <= BOUND}
    assert not bad, bad
    return errs


def test_distilled_two_stage_loop(reference):
    """8 + 3 steps, upsampler, re-noising and decode chained on our own results from the official stage-1 noise."""
    fx = Fixture(reference)
    errs = _check_all(fx, run_two_stage(fx), r"^loop\.(step\d\d\.|stage\d\.out\.|upsample\.out\.|decode\.out\.)")
    assert sum(n.startswith("loop.step") for n in errs) == 22  # 11 steps x (video, audio)
    assert errs["loop.decode.out.video"] <= BOUND and errs["loop.stage2.video.noised_latent"] <= BOUND
    assert errs["loop.stage2.video.pre_noise_latent"] <= BOUND  # our upsampled latent, chained into stage 2


@pytest.mark.parametrize("run", LOOP_RUNS)
def test_loop_fixture_run(loops_reference, run):
    """guided: CFG + STG + modality + rescale, 4 passes batched; i2v (strength 1 / 0.5); keyframe (appended
    tokens); res2s (guided, SDE noise recorded): every evaluation's latent input, pass x0, guided x0, output."""
    fx = Fixture(loops_reference)
    ours = run_loop_fixture(fx, run)
    errs = _check_all(fx, ours, rf"^{run}\.(step|eval)\d\d\.(video|audio)_(latent_in|x0)|^{run}\.out\.")
    # what the runner claims bit for bit: per-evaluation sigma (float64 at res_2s sub-steps) and timesteps, masks,
    # positions of the conditioned state
    exact = [n for n in ours if n in fx and n.endswith((".sigma", "_timesteps", ".denoise_mask", ".positions"))]
    assert len(exact) >= 12
    for n in exact:
        assert np.asarray(ours[n]).astype(fx[n].dtype).tobytes() == fx[n].tobytes(), n
    if run in ("guided", "res2s"):  # guidance changes x0 far beyond the bound: the passes are really combined
        assert relative_error(fx[f"{run}.{'step' if run == 'guided' else 'eval'}00.video_x0.cond"],
                              fx[f"{run}.{'step' if run == 'guided' else 'eval'}00.video_x0"]) > 100 * BOUND
        assert any("_x0.uncond" in n for n in errs) and any("_x0.isolated" in n for n in errs)
    if run == "keyframe":
        assert ours["keyframe.out.video_tokens"].shape[1] == 64  # 48 grid tokens + 16 appended
        assert ours["keyframe.out.video_latent"].shape[2:] == (3, 4, 4)


def _guided_inputs(fx: Fixture, seed: int):
    """The guided run's state with fresh random noise / contexts (values only: same shapes)."""
    rng = np.random.default_rng(seed)
    state = lambda s: LatentState(  # noqa: E731
        latent=jnp.asarray(rng.standard_normal(fx[f"guided.in.{s}.noised_latent"].shape), jnp.float32),
        denoise_mask=jnp.asarray(fx[f"guided.in.{s}.denoise_mask"]),
        positions=jnp.asarray(fx[f"guided.in.{s}.positions"]),
        clean_latent=jnp.asarray(fx[f"guided.in.{s}.clean_latent"]))
    ctx = lambda k: TextContext(*(jnp.asarray(fx[f"ctx.{k}.{s}"] * (1 + 0.1 * seed), jnp.float32)  # noqa: E731
                                  for s in ("video", "audio")))
    return state("video"), state("audio"), Prompt(ctx("pos"), ctx("neg"))


def test_one_trace_per_run_and_no_recompile(loops_reference):
    """A whole guided run traces the loop once; new noise, prompt, guidance scales, STG block and callbacks
    reuse it; a different step count (a new shape) retraces, so the counter does count."""
    fx = Fixture(loops_reference)
    _, dit, _, _ = loop_models(str(fx.path))
    layers = fx.manifest["config"]["transformer"]["num_layers"]
    common = dict(stg_scale=1.0, stg_blocks=(layers - 1,), rescale_scale=0.7, modality_scale=3.0)
    video_g, audio_g = GuiderParams(cfg_scale=3.0, **common), GuiderParams(cfg_scale=7.0, **common)
    steps, seen = [], []
    cb = Callbacks(progress=lambda i, n, s: steps.append((i, n, s)), preview=lambda i, x0: seen.append((i, x0)))
    sample(dit, dev_sampler(3, video_g, audio_g), *_guided_inputs(fx, 0), callbacks=cb, grid_tokens=48)
    jax.effects_barrier()
    before, cache = TRACES["euler"], _cache_size()
    other_v = GuiderParams(cfg_scale=2.0, stg_scale=0.5, stg_blocks=(0,), rescale_scale=0.3, modality_scale=2.0)
    runs = [(dev_sampler(3, video_g, audio_g), 1, cb), (dev_sampler(3, other_v, audio_g), 2, Callbacks(
        progress=lambda *a: None, preview=lambda *a: None))]
    outs = []
    for sampler, seed, callbacks in runs:
        res = sample(dit, sampler, *_guided_inputs(fx, seed), callbacks=callbacks, grid_tokens=48)
        outs.append(np.asarray(res.video.latent))
    assert TRACES["euler"] == before and _cache_size() == cache
    assert relative_error(outs[0], outs[1]) > 1e-2  # the changed values did reach the computation
    assert [s[:2] for s in steps] == [(i % 3, 3) for i in range(6)]
    np.testing.assert_allclose([s[2] for s in steps[:3]], dev_sampler(3, video_g, audio_g).sigmas[:3], rtol=0)
    assert [i for i, _ in seen] == [0, 1, 2] * 2 and seen[0][1].shape == (1, 48, 16)
    sample(dit, dev_sampler(2, video_g, audio_g), *_guided_inputs(fx, 3), callbacks=cb, grid_tokens=48)
    assert TRACES["euler"] == before + 1


def _cache_size() -> int:
    from ltx_jax.sampling.loops import _euler_loop
    return _euler_loop._cache_size()


def test_preview_is_the_blended_x0_and_latents_are_donated(loops_reference):
    fx = Fixture(loops_reference)
    _, dit, _, _ = loop_models(str(fx.path))
    video, audio, prompt = _guided_inputs(fx, 5)
    latent = video.latent
    seen = []
    res = sample(dit, distilled_sampler(2), video, audio, Prompt(prompt.positive), record=True,
                 callbacks=Callbacks(preview=lambda i, x0: seen.append(x0)), grid_tokens=48)
    assert latent.is_deleted()  # donated to the loop
    assert len(seen) == 3
    for i, x0 in enumerate(seen):  # mask is all ones here: blended == raw guided x0
        np.testing.assert_array_equal(x0, np.asarray(res.record["video_x0"][i]))


def test_guidance_combination_and_sigma_rounding():
    rng = np.random.default_rng(0)
    c, u, p, m = (jnp.asarray(rng.standard_normal((1, 6, 4)), jnp.float32) for _ in range(4))
    g = Guidance(GuiderParams(cfg_scale=3.0, stg_scale=1.0, rescale_scale=0.7, modality_scale=3.0))
    ours = combine({"cond": c, "uncond": u, "perturbed": p, "isolated": m}, jnp.asarray(g.scales()[0]))
    pred = c + 2 * (c - u) + (c - p) + 2 * (c - m)
    ref = pred * (0.7 * np.std(c, ddof=1) / np.std(pred, ddof=1) + 0.3)
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=2e-6, atol=1e-6)
    assert g.passes == ("cond", "uncond", "perturbed", "isolated")
    sub = np.sqrt(0.725 * 0.421875)  # a res_2s sub-step sigma: float64 in the official loop
    assert np.float32(model_sigma(sub) * np.float32(1000)) == np.float32(sub * 1000)


@pytest.mark.parametrize("make, match", [
    (lambda: Sampler(np.asarray([1.0], np.float32)), "at least 2"),
    (lambda: Sampler(np.asarray([0.5, 0.7, 0.0], np.float32)), "decreasing"),
    (lambda: Sampler(np.asarray([1.0, 0.0], np.float32), method="heun"), "method"),
    (lambda: dev_sampler(0, GuiderParams(), GuiderParams()), "steps"),
    (lambda: res2s_sampler(3, GuiderParams(skip_step=1), GuiderParams(skip_step=1)), "skip_step"),
    (lambda: Guidance(GuiderParams(skip_step=1), GuiderParams()).skip_step, "skip_step"),
])
def test_bad_sampler_arguments_fail_early(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_loop_inputs_fail_early(loops_reference):
    fx = Fixture(loops_reference)
    _, dit, _, _ = loop_models(str(fx.path))
    video, audio, prompt = _guided_inputs(fx, 0)
    guided = dev_sampler(2, GuiderParams(cfg_scale=3.0), GuiderParams(cfg_scale=3.0))
    with pytest.raises(ValueError, match="negative"):
        sample(dit, guided, video, audio, Prompt(prompt.positive))
    res2s = res2s_sampler(2, GuiderParams(), GuiderParams())
    with pytest.raises(ValueError, match="key="):
        sample(dit, res2s, video, audio, prompt)
    with pytest.raises(ValueError, match="sde_noise shapes"):
        sample(dit, res2s, video, audio, prompt, sde_noise=(np.zeros((2, 2, 1, 47, 16)), np.zeros((2, 2, 1, 18, 128))))
    with pytest.raises(ValueError, match="batch"):
        sample(dit, distilled_sampler(2), video, audio.replace(latent=jnp.zeros((2, 18, 128))), prompt)


def test_sequential_passes_and_skip_step(loops_reference):
    """One forward per pass gives the batched result (the official guided step 0); with skip_step = 1 both
    streams reuse step 0's guided x0 at step 1 (`should_skip_step`), and compute again at step 2."""
    fx = Fixture(loops_reference)
    _, dit, _, _ = loop_models(str(fx.path))
    prompt = Prompt(*(TextContext(jnp.asarray(fx[f"ctx.{k}.video"]), jnp.asarray(fx[f"ctx.{k}.audio"]))
                      for k in ("pos", "neg")))
    sequential = Sampler(fx["guided.sigmas"][:2], guidance=recorded_guidance(fx, "guided"), batched_passes=False)
    video, audio = recorded_state(fx, "guided.in.video"), recorded_state(fx, "guided.in.audio")
    res = sample(dit, sequential, video, audio, prompt, record=True)
    for s in ("video", "audio"):
        assert relative_error(np.asarray(res.record[f"{s}_x0"][0]), fx[f"guided.step00.{s}_x0"]) <= BOUND
    skip = Sampler(distilled_sampler(1).sigmas[:4], guidance=Guidance(GuiderParams(skip_step=1),
                                                                      GuiderParams(skip_step=1)))
    rec = sample(dit, skip, *_guided_inputs(fx, 1)[:2], Prompt(prompt.positive), record=True).record
    np.testing.assert_array_equal(np.asarray(rec["video_x0"][1]), np.asarray(rec["video_x0"][0]))
    np.testing.assert_array_equal(np.asarray(rec["audio_x0"][1]), np.asarray(rec["audio_x0"][0]))
    assert relative_error(np.asarray(rec["video_x0"][2]), np.asarray(rec["video_x0"][1])) > 1e-4


ATTN_REF = """
import sys
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, "tests/reference")
from ltxref.weights import ledger
from ltx_core.components.diffusion_steps import EulerDiffusionStep
from ltx_core.types import LatentState
from ltx_pipelines.utils.helpers import simple_denoising_func
from ltx_pipelines.utils.samplers import euler_denoising_loop
d, inp, out = Path(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3]
t = lambda k: torch.from_numpy(inp[k])
model = ledger(d, torch.float32).transformer()
st = lambda s, attn: LatentState(latent=t(f"{s}.noised"), denoise_mask=t(f"{s}.mask"), positions=t(f"{s}.positions"),
                                 clean_latent=t(f"{s}.clean"), attention_mask=t("video.attn") if attn else None)
with torch.inference_mode():
    v, a = euler_denoising_loop(t("sigmas"), st("video", True), st("audio", False), EulerDiffusionStep(),
                                simple_denoising_func(t("ctx.video"), t("ctx.audio"), model))
np.savez(out, video=v.latent.numpy(), audio=a.latent.numpy())
"""


def test_keyframes_with_attention_strength_mask(tmp_path):
    """Three appended keyframes, two with attention-strength masks (`keyframe.attn.*`: a per-token mask and a
    scalar 0.5), noised and denoised 2 steps: the [B, T, T] mask goes through the loop (and is tiled per pass)
    as in the official loop with `ConditioningItemAttentionStrengthWrapper`. LTX-2.3 only (the mask handling
    inside the DiT is the transformer's, tested per variant there)."""
    from conftest import build_loops_reference, run_ref_python

    fx = Fixture(build_loops_reference("ltx23-tiny", 0))
    _, dit, _, _ = loop_models(str(fx.path))
    mask, latent = fx["keyframe.attn.denoise_mask"], fx["keyframe.attn.latent"]
    noise = np.random.default_rng(0).standard_normal(latent.shape).astype(np.float32)
    arrays = {"sigmas": distilled_sampler(1).sigmas[:3], "video.noised": noise * mask + latent * (1 - mask),
              "video.mask": mask, "video.positions": fx["keyframe.attn.positions"], "video.clean": latent,
              "video.attn": fx["keyframe.attn.attention_mask"], "ctx.video": fx["ctx.pos.video"],
              "ctx.audio": fx["ctx.pos.audio"]}
    for f, k in (("noised", "noised_latent"), ("mask", "denoise_mask"), ("positions", "positions"),
                 ("clean", "clean_latent")):
        arrays[f"audio.{f}"] = fx[f"keyframe.in.audio.{k}"]
    attn = arrays["video.attn"]
    assert ((attn > 0) & (attn < 1)).any() and (attn == 0).any()  # partial weights and blocked pairs
    np.savez(tmp_path / "in.npz", **arrays)
    run_ref_python(ATTN_REF, str(fx.path), str(tmp_path / "in.npz"), str(tmp_path / "out.npz"))
    ref = np.load(tmp_path / "out.npz")
    video = LatentState(latent=jnp.asarray(arrays["video.noised"]), denoise_mask=jnp.asarray(mask),
                        positions=jnp.asarray(arrays["video.positions"]), clean_latent=jnp.asarray(latent),
                        attention_mask=jnp.asarray(arrays["video.attn"]))
    audio = recorded_state(fx, "keyframe.in.audio")
    prompt = Prompt(TextContext(jnp.asarray(fx["ctx.pos.video"]), jnp.asarray(fx["ctx.pos.audio"])))
    res = sample(dit, Sampler(arrays["sigmas"]), video, audio, prompt)
    err = relative_error(np.asarray(res.video.latent), ref["video"])
    assert err <= BOUND and relative_error(np.asarray(res.audio.latent), ref["audio"]) <= BOUND
    with pytest.raises(ValueError, match="donated"):  # the first loop consumed the latents
        sample(dit, Sampler(arrays["sigmas"]), video, audio, prompt)
    no_mask = sample(dit, Sampler(arrays["sigmas"]), video.replace(latent=jnp.asarray(arrays["video.noised"]),
                                                                   attention_mask=None),
                     recorded_state(fx, "keyframe.in.audio"), prompt)
    assert relative_error(np.asarray(no_mask.video.latent), ref["video"]) > 20 * err  # the mask matters
