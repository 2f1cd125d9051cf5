"""res_2s against the official `res2s_audio_video_denoising_loop` (loop fixtures `res2s.*`): coefficients,
every evaluation's input from the recorded x0s and SDE noises, the final output, and the noise normalization."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltx_jax.parity import Fixture, relative_error
from ltx_jax.sampling import (normalize_sde_noise, post_process_latent, res2s_plan, res2s_step, res2s_substep,
                              sde_noise, timesteps_from_mask)
from ltx_jax.sampling.steps import res2s_coefficients

pytestmark = pytest.mark.reference


@pytest.fixture(scope="module")
def fx(loops_reference):
    return Fixture(loops_reference)


@pytest.fixture(scope="module")
def plan(fx):
    return res2s_plan(fx["res2s.sigmas"])


def _state(fx, stream):  # noqa: ANN001, ANN202
    g = lambda f: jnp.asarray(fx[f"res2s.in.{stream}.{f}"])  # noqa: E731
    return g("noised_latent"), g("denoise_mask"), g("clean_latent")


def test_plan_equals_the_official_loop(fx, plan):
    np.testing.assert_array_equal(plan.loop_sigmas, fx["res2s.loop_sigmas"])
    assert plan.final_eval and plan.steps == 3
    ref = fx["res2s.coeffs"]  # float64 [steps, (h, a21, b1, b2, sub_sigma)]
    assert ref.dtype == np.float64
    ours = np.stack([plan.column(c) for c in ("h", "a21", "b1", "b2", "sub_sigma")], axis=1)
    np.testing.assert_allclose(ours, ref, rtol=1e-13, atol=0)
    assert [bool(b) for b in plan.column("bong")] == fx.manifest["runs"]["res2s"]["bong_iteration_per_step"]
    for i in range(plan.steps):  # the sub-step eval gets sqrt(s_i s_i+1) as a float64 sigma
        sub = fx[f"res2s.eval{2 * i + 1:02d}.sigma"]
        assert sub.dtype == np.float64 and sub[0] == plan.column("sub_sigma")[i]
        assert fx[f"res2s.eval{2 * i:02d}.sigma"][0] == plan.loop_sigmas[i]
    assert fx[f"res2s.eval{2 * plan.steps:02d}.sigma"][0] == np.float32(0.0011)


def test_coefficients_small_h_limit():
    a21, b1, b2 = res2s_coefficients(0.0)
    assert (a21, b1, b2) == (0.5, 0.0, 1.0)  # phi_1(0) = 1, phi_2(0) = 1/2: the midpoint rule
    a21, b1, b2 = res2s_coefficients(1e-6)
    assert abs(b1 + b2 - 1.0) < 1e-6 and abs(a21 - 0.5) < 1e-6


def test_timesteps_of_every_eval(fx, plan):
    for stream in ("video", "audio"):
        _, mask, _ = _state(fx, stream)
        for e in range(2 * plan.steps + 1):
            p = f"res2s.eval{e:02d}"
            # the float64 sub-step sigma meets a float32 mask: torch multiplies in float32
            ours = timesteps_from_mask(mask, np.float32(fx[f"{p}.sigma"][0]))
            np.testing.assert_array_equal(np.asarray(ours), fx[f"{p}.{stream}_timesteps"], err_msg=p)


def _blend(fx, name, mask, clean):  # noqa: ANN001, ANN202
    return post_process_latent(jnp.asarray(fx[name]), mask, clean)


@pytest.mark.parametrize("chained", [False, True], ids=["per_step", "chained"])
def test_every_eval_input_and_the_output(fx, plan, chained):
    substep, step = jax.jit(res2s_substep), jax.jit(res2s_step, static_argnums=7)
    for stream in ("video", "audio"):
        x, mask, clean = _state(fx, stream)
        for i in range(plan.steps):
            row = jnp.asarray(plan.table[i], jnp.float32)
            ev, mid, nxt = (f"res2s.eval{2 * i + k:02d}" for k in range(3))
            assert relative_error(np.asarray(x), fx[f"{ev}.{stream}_latent_in"]) <= 1e-6, ev
            if not chained:
                x = jnp.asarray(fx[f"{ev}.{stream}_latent_in"])
            d1 = _blend(fx, f"{ev}.{stream}_x0", mask, clean)
            noise = jnp.asarray(fx[f"res2s.sde_noise.{i:02d}.substep.{stream}"], jnp.float32)
            x_mid, anchor, eps1 = substep(x, d1, noise, row, mask, clean)
            assert relative_error(np.asarray(x_mid), fx[f"{mid}.{stream}_latent_in"]) <= 1e-6, (mid, stream)
            d2 = _blend(fx, f"{mid}.{stream}_x0", mask, clean)
            noise = jnp.asarray(fx[f"res2s.sde_noise.{i:02d}.step.{stream}"], jnp.float32)
            x = step(anchor, eps1, d2, noise, row, mask, clean, jnp.float32)
            assert relative_error(np.asarray(x), fx[f"{nxt}.{stream}_latent_in"]) <= 1e-6, (nxt, stream)
        # the final eval at 0.0011 replaces the latent by its blended x0
        final = _blend(fx, f"res2s.eval{2 * plan.steps:02d}.{stream}_x0", mask, clean)
        np.testing.assert_array_equal(np.asarray(final), fx[f"res2s.out.{stream}_tokens"])


def test_bong_refinement_matters(fx, plan):
    """Without the anchor refinement at step 0 (h < 0.5), the next state is measurably off."""
    assert plan.column("bong")[0] == 1
    x, mask, clean = _state(fx, "video")
    row = jnp.asarray(plan.table[0], jnp.float32)
    d1 = _blend(fx, "res2s.eval00.video_x0", mask, clean)
    x_mid, _, _ = res2s_substep(x, d1, jnp.asarray(fx["res2s.sde_noise.00.substep.video"], jnp.float32), row,
                                mask, clean)
    d2 = _blend(fx, "res2s.eval01.video_x0", mask, clean)
    no_bong = res2s_step(x.astype(jnp.float32), d1 - x, d2, jnp.asarray(fx["res2s.sde_noise.00.step.video"],
                         jnp.float32), row, mask, clean, jnp.float32)
    assert relative_error(np.asarray(no_bong), fx["res2s.eval02.video_latent_in"]) > 1e-3


def test_sde_noise_normalization(fx, plan):
    for i in range(plan.steps):
        for kind in ("substep", "step"):
            for stream in ("video", "audio"):
                raw = fx[f"res2s.sde_noise_raw.{i:02d}.{kind}.{stream}"]
                ref = fx[f"res2s.sde_noise.{i:02d}.{kind}.{stream}"]
                assert raw.dtype == ref.dtype == np.float64
                assert relative_error(np.asarray(normalize_sde_noise(jnp.asarray(raw, jnp.float32))), ref) <= 1e-6
                assert relative_error(raw, ref) > 1e-3  # the normalization is not the identity
    n = np.asarray(sde_noise(jax.random.key(0), (2, 48, 16)))
    np.testing.assert_allclose(n.mean(axis=(1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(n.std(axis=(1, 2), ddof=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("sigmas", [[1.0], [0.5, 0.7, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0]])
def test_bad_schedules_fail_early(sigmas):
    with pytest.raises(ValueError, match="res_2s"):
        res2s_plan(np.asarray(sigmas, np.float32))
