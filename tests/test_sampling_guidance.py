"""Guidance against the official `MultiModalGuider` (loop fixtures `guided.*`, `res2s.*`) and its defaults."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltx_jax.parity import Fixture, relative_error
from ltx_jax.sampling import (LTX_2_3_DEFAULTS, LTX_2_3_HQ_DEFAULTS, LTX_2_DEFAULTS, GuiderParams,
                              default_negative_prompt, defaults_for_version, guide, pass_perturbations, passes_needed)

pytestmark = pytest.mark.reference


@pytest.fixture(scope="module")
def fx(loops_reference):
    return Fixture(loops_reference)


def _params(d: dict) -> GuiderParams:
    return GuiderParams(**d)


def _guided_x0s(fx: Fixture, run: str, kind: str, params: dict[str, GuiderParams]):
    """Yields (array name, ours, official) for every eval of a guided run and both streams."""
    evals = sorted({m.group(1) for n in fx.arrays if (m := re.match(rf"^{re.escape(run)}\.({kind}\d\d)\.", n))})
    assert evals
    for ev in evals:
        for stream in ("video", "audio"):
            pre = f"{run}.{ev}.{stream}_x0"
            passes = {k: jnp.asarray(fx[f"{pre}.{k}"]) for k in ("uncond", "perturbed", "isolated")
                      if f"{pre}.{k}" in fx}
            yield pre, guide(jnp.asarray(fx[f"{pre}.cond"]), params[stream], **passes), fx[pre]


@pytest.mark.parametrize("run,kind", [("guided", "step"), ("res2s", "eval")])
def test_guided_x0_from_recorded_passes(fx, run, kind):
    info = fx.manifest["runs"][run]
    params = {"video": _params(info["video_guider_params"]), "audio": _params(info["audio_guider_params"])}
    for name, ours, ref in _guided_x0s(fx, run, kind, params):
        err = relative_error(np.asarray(ours), ref)
        assert err <= 1e-6, (name, err)
        # the guidance moved the prediction (least at the final res_2s eval, sigma = 0.0011, where x0 ~ x)
        assert relative_error(fx[f"{name}.cond"], ref) > 1e-4, name


def test_guide_jits_and_rescale_uses_one_whole_tensor_std(fx):
    p = _params(fx.manifest["runs"]["guided"]["video_guider_params"])
    pre = "guided.step01.video_x0"
    args = {k: jnp.asarray(fx[f"{pre}.{k}"]) for k in ("cond", "uncond", "perturbed", "isolated")}
    jitted = jax.jit(lambda c, u, pt, m: guide(c, p, uncond=u, perturbed=pt, isolated=m))
    out = jitted(args["cond"], args["uncond"], args["perturbed"], args["isolated"])
    assert relative_error(np.asarray(out), fx[pre]) <= 1e-6
    c, u, pt, m = (np.asarray(args[k], np.float64) for k in ("cond", "uncond", "perturbed", "isolated"))
    pred = c + (p.cfg_scale - 1) * (c - u) + p.stg_scale * (c - pt) + (p.modality_scale - 1) * (c - m)
    r = p.rescale_scale
    rescaled = pred * (r * c.std(ddof=1) / pred.std(ddof=1) + 1 - r)
    assert relative_error(rescaled, fx[pre]) <= 1e-6
    # a per-channel std (over tokens) would be measurably different
    per_channel = pred * (r * c.std(axis=(0, 1), ddof=1) / pred.std(axis=(0, 1), ddof=1) + 1 - r)
    assert relative_error(per_channel, fx[pre]) > 1e-3


def test_passes_and_their_order_match_the_official_loop(fx):
    for run in ("guided", "res2s"):
        info = fx.manifest["runs"][run]
        video, audio = _params(info["video_guider_params"]), _params(info["audio_guider_params"])
        assert list(passes_needed(video, audio)) == info["passes_per_eval"]
    assert passes_needed(GuiderParams(), GuiderParams()) == ("cond",)  # distilled: one pass
    assert passes_needed(GuiderParams(), GuiderParams(cfg_scale=7.0)) == ("cond", "uncond")  # either stream


def test_pass_perturbations(fx):
    info = fx.manifest["runs"]["guided"]
    video, audio = _params(info["video_guider_params"]), _params(info["audio_guider_params"])
    last = fx.manifest["config"]["transformer"]["num_layers"] - 1
    assert pass_perturbations("perturbed", video, audio, num_layers=last + 1) == [
        ("video_self_attn", (last,)), ("audio_self_attn", (last,))]
    assert pass_perturbations("isolated", video, audio) == [("a2v_cross_attn", None), ("v2a_cross_attn", None)]
    assert pass_perturbations("cond", video, audio) == pass_perturbations("uncond", video, audio) == []
    only_video = pass_perturbations("perturbed", video, GuiderParams(cfg_scale=7.0))
    assert only_video == [("video_self_attn", (last,))]
    with pytest.raises(ValueError, match="stg_blocks"):
        pass_perturbations("perturbed", video.with_stg_blocks((28,)), audio, num_layers=2)
    with pytest.raises(ValueError, match="unknown pass"):
        pass_perturbations("negative", video, audio)


def _as_dict(p: GuiderParams) -> dict:
    return {"cfg_scale": p.cfg_scale, "stg_scale": p.stg_scale, "stg_blocks": list(p.stg_blocks),
            "rescale_scale": p.rescale_scale, "modality_scale": p.modality_scale, "skip_step": p.skip_step}


def _pipeline_dict(d) -> dict:  # noqa: ANN001
    return {"seed": d.seed, "stage_1_height": d.stage_1_height, "stage_1_width": d.stage_1_width,
            "num_frames": d.num_frames, "frame_rate": d.frame_rate, "num_inference_steps": d.num_inference_steps,
            "video_guider_params": _as_dict(d.video), "audio_guider_params": _as_dict(d.audio)}


def test_official_defaults_as_data(fx):
    official = fx.manifest["official_defaults"]
    assert _pipeline_dict(LTX_2_DEFAULTS) == official["LTX_2_PARAMS"]
    assert _pipeline_dict(LTX_2_3_DEFAULTS) == official["LTX_2_3_PARAMS"]
    assert _pipeline_dict(LTX_2_3_HQ_DEFAULTS) == official["LTX_2_3_HQ_PARAMS"]
    detected = fx.manifest["detected_params"]
    assert _pipeline_dict(defaults_for_version(detected["model_version"])) == detected["params"]
    assert defaults_for_version("") is LTX_2_DEFAULTS and defaults_for_version("2.3.0") is LTX_2_3_DEFAULTS


def test_default_negative_prompt_is_the_official_text(fx):
    assert default_negative_prompt() == fx.manifest["official_defaults"]["DEFAULT_NEGATIVE_PROMPT"]


def test_skip_step_and_missing_passes():
    p = GuiderParams(cfg_scale=3.0, skip_step=2)
    assert [p.should_skip_step(i) for i in range(6)] == [False, True, True, False, True, True]
    assert not GuiderParams().should_skip_step(5)
    x = jnp.ones((1, 4, 2))
    with pytest.raises(ValueError, match="needs the uncond pass"):
        guide(x, p)
    with pytest.raises(ValueError, match="skip_step"):
        GuiderParams(skip_step=-1)
