"""Schedules against the official `LTX2Scheduler` and distilled lists (loop fixtures, `sched.*`)."""

import re

import numpy as np
import pytest

from ltx_jax.parity import Fixture
from ltx_jax.sampling import (DEFAULT_SCHEDULER_TOKENS, DISTILLED_STAGE1_SIGMAS, DISTILLED_STAGE2_SIGMAS, dev_sigmas,
                              distilled_sigmas)
from ltx_jax.sampling.schedules import dev_shift

pytestmark = pytest.mark.reference
TOKENS = {"default": None, "1536": 1536, "6144": 6144}


@pytest.fixture(scope="module")
def fx(loops_reference):
    return Fixture(loops_reference)


def _ulps(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32).astype(np.int64)).max())


def test_dev_schedule_equals_official_for_every_step_and_token_count(fx):
    names = fx.names(r"^sched\.dev\.")
    assert len(names) >= 5 * 3 + 6, names
    worst = 0
    for name in names:
        steps, tag = re.match(r"sched\.dev\.steps(\d+)\.tokens_(\w+)$", name).groups()
        ours, ref = dev_sigmas(int(steps), TOKENS[tag]), fx[name]
        assert ours.dtype == np.float32 and ours.shape == ref.shape == (int(steps) + 1,)
        assert ours[-1] == 0.0 and ref[-1] == 0.0
        np.testing.assert_array_equal(ours, ref, err_msg=name)  # bit for bit (pinned torch 2.13.0 CPU)
        worst = max(worst, _ulps(ours, ref))
    assert worst == 0


def test_official_nan_schedules_are_refused_and_the_one_step_quirk_kept(fx):
    nonfinite = fx.manifest["sched"]["nonfinite_not_stored"]
    assert nonfinite, "the official one-step schedule at 1536/6144 tokens is NaN"
    for entry in nonfinite:
        steps, tag = re.match(r"sched\.dev\.steps(\d+)\.tokens_(\w+)$", entry["name"]).groups()
        with pytest.raises(ValueError, match="undefined"):
            dev_sigmas(int(steps), TOKENS[tag])
    # One step at 4096 tokens: float32 rounding makes the official schedule [0.1, 0] instead of NaN.
    np.testing.assert_array_equal(dev_sigmas(1), fx["sched.dev.steps01.tokens_default"])


def test_schedules_the_loops_used(fx):
    np.testing.assert_array_equal(dev_sigmas(4), fx["guided.sigmas"])  # pipelines pass no latent: 4096 tokens
    np.testing.assert_array_equal(dev_sigmas(3, tokens=3 * 4 * 4), fx["res2s.sigmas"])  # HQ: the stage latent
    assert fx["guided.sigmas"][0] == np.float32(0.9999998)  # not 1.0, as the format doc warns


def test_distilled_lists_equal_official(fx):
    np.testing.assert_array_equal(distilled_sigmas(1), fx["sched.distilled.stage1"])
    np.testing.assert_array_equal(distilled_sigmas(2), fx["sched.distilled.stage2"])
    np.testing.assert_array_equal(distilled_sigmas(1), fx["i2v.s100.sigmas"])
    defaults = fx.manifest["official_defaults"]
    assert tuple(defaults["DISTILLED_SIGMA_VALUES"]) == DISTILLED_STAGE1_SIGMAS
    assert tuple(defaults["STAGE_2_DISTILLED_SIGMA_VALUES"]) == DISTILLED_STAGE2_SIGMAS


def test_shift_is_linear_in_tokens_and_not_clamped():
    assert dev_shift(DEFAULT_SCHEDULER_TOKENS) == pytest.approx(2.05, abs=1e-12)
    assert dev_shift(1024) == pytest.approx(0.95, abs=1e-12)
    assert dev_shift(48) < 0.95 and dev_shift(24576) > 2.05
    # a larger shift keeps sigmas higher for longer
    assert np.all(dev_sigmas(30, 24576)[1:-1] > dev_sigmas(30, 1536)[1:-1])


@pytest.mark.parametrize("steps", [0, -3, 2.5, True, "8"])
def test_bad_step_counts_fail_early(steps):
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        dev_sigmas(steps)


def test_bad_tokens_terminal_and_stage_fail_early():
    with pytest.raises(ValueError, match="tokens"):
        dev_sigmas(8, tokens=0)
    with pytest.raises(ValueError, match="terminal"):
        dev_sigmas(8, terminal=1.0)
    with pytest.raises(ValueError, match="stages 1 and 2"):
        distilled_sigmas(3)
