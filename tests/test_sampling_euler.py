"""Conditioning, noising and Euler steps against the official loops (loop fixtures `guided`, `i2v.*`,
`keyframe`, and the main fixtures' distilled `loop.*`), with the recorded x0 of each step: no transformer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltx_jax.parity import Fixture, relative_error
from ltx_jax.sampling import (LatentState, audio_positions, audio_token_count, clear_conditioning,
                              condition_by_keyframe, condition_by_latent_index, euler_step, initial_state,
                              noise_latent, noise_state, post_process_latent, timesteps_from_mask, unpatchify_video,
                              video_positions)
from ltx_jax.types import VideoLatentShape

pytestmark = pytest.mark.reference
RUNS = ("guided", "i2v.s100", "i2v.s050", "keyframe")
I2V_STRENGTH = {"i2v.s100": 1.0, "i2v.s050": 0.5}
PIXELS = (17, 128, 128)
FPS = 24.0


@pytest.fixture(scope="module")
def fx(loops_reference):
    return Fixture(loops_reference)


def channels_last(x: np.ndarray) -> jax.Array:
    """Official `[B, C, F, H, W]` -> ltx-jax `[B, F, H, W, C]`."""
    return jnp.asarray(np.moveaxis(x, 1, -1))


def grid(fx: Fixture) -> VideoLatentShape:
    return VideoLatentShape(1, 3, 4, 4, fx.manifest["config"]["transformer"]["in_channels"])


def our_states(fx: Fixture, run: str) -> tuple[LatentState, LatentState]:
    """The (video, audio) states before noising, built from scratch as the official pipeline does."""
    shape = grid(fx)
    video = initial_state(video_positions(shape.frames, shape.height, shape.width, fps=FPS), channels=shape.channels)
    if run in I2V_STRENGTH:
        video = condition_by_latent_index(video, channels_last(fx["i2v.in.image_latent"]), shape=shape, latent_idx=0,
                                          strength=I2V_STRENGTH[run])
    elif run == "keyframe":
        video = condition_by_keyframe(video, channels_last(fx["keyframe.in.image_latent"]), shape=shape,
                                      frame_idx=int(fx["keyframe.in.frame_idx"][0]), strength=1.0, fps=FPS)
    audio = initial_state(audio_positions(audio_token_count(PIXELS[0], FPS)), channels=128)
    return video, audio


def recorded_state(fx: Fixture, run: str, stream: str) -> LatentState:
    g = lambda f: jnp.asarray(fx[f"{run}.in.{stream}.{f}"])  # noqa: E731
    return LatentState(latent=g("noised_latent"), denoise_mask=g("denoise_mask"), positions=g("positions"),
                       clean_latent=g("clean_latent"))


@pytest.mark.parametrize("run", RUNS)
def test_conditioned_state_equals_official(fx, run):
    for stream, state in zip(("video", "audio"), our_states(fx, run), strict=True):
        for field, ours in (("pre_noise_latent", state.latent), ("clean_latent", state.clean_latent),
                            ("denoise_mask", state.denoise_mask), ("positions", state.positions)):
            np.testing.assert_array_equal(np.asarray(ours), fx[f"{run}.in.{stream}.{field}"],
                                          err_msg=f"{run}.{stream}.{field}")
        assert state.attention_mask is None
    if run == "keyframe":
        np.testing.assert_array_equal(np.asarray(our_states(fx, run)[0].positions[:, :, 48:]),
                                      fx["keyframe.in.appended_positions"])


@pytest.mark.parametrize("run", RUNS)
def test_noising_reproduces_noised_latent(fx, run):
    for stream, state in zip(("video", "audio"), our_states(fx, run), strict=True):
        p = f"{run}.in.{stream}"
        noised = noise_state(state, jnp.asarray(fx[f"{p}.noise"]), float(fx[f"{p}.noise_scale"][0]))
        assert relative_error(np.asarray(noised.latent), fx[f"{p}.noised_latent"]) <= 1e-6
    if run == "i2v.s100":  # strength 1: frame-0 tokens are never noised
        np.testing.assert_array_equal(fx[f"{run}.in.video.noised_latent"][:, :16],
                                      fx[f"{run}.in.video.clean_latent"][:, :16])


def _steps(fx: Fixture, run: str) -> int:
    return len(fx[f"{run}.sigmas"]) - 1


@pytest.mark.parametrize("run", RUNS)
def test_timesteps_and_blended_x0_per_step(fx, run):
    for stream in ("video", "audio"):
        st = recorded_state(fx, run, stream)
        for i in range(_steps(fx, run)):
            p = f"{run}.step{i:02d}"
            sigma = fx[f"{p}.sigma"][0]
            assert sigma == fx[f"{run}.sigmas"][i]
            np.testing.assert_array_equal(np.asarray(timesteps_from_mask(st.denoise_mask, sigma)),
                                          fx[f"{p}.{stream}_timesteps"])
            blended = post_process_latent(jnp.asarray(fx[f"{p}.{stream}_x0"]), st.denoise_mask, st.clean_latent)
            ref = fx[f"{p}.{stream}_x0_blended"] if f"{p}.{stream}_x0_blended" in fx else fx[f"{p}.{stream}_x0"]
            assert relative_error(np.asarray(blended), ref) <= 1e-6, p
    assert (f"{run}.step00.video_x0_blended" in fx) == (run != "guided")


@pytest.mark.parametrize("run", RUNS)
def test_each_euler_step_from_recorded_inputs(fx, run):
    sigmas, step = fx[f"{run}.sigmas"], jax.jit(euler_step)
    for stream in ("video", "audio"):
        st = recorded_state(fx, run, stream)
        for i in range(_steps(fx, run)):
            p = f"{run}.step{i:02d}"
            x0 = post_process_latent(jnp.asarray(fx[f"{p}.{stream}_x0"]), st.denoise_mask, st.clean_latent)
            ours = step(jnp.asarray(fx[f"{p}.{stream}_latent_in"]), x0, sigmas[i], sigmas[i + 1])
            last = i + 1 == _steps(fx, run)
            nxt = f"{run}.out.{stream}_tokens" if last else f"{run}.step{i + 1:02d}.{stream}_latent_in"
            # XLA turns the division by sigma into a reciprocal multiply and fuses x + v*dt into an FMA:
            # last-bit differences from torch, nothing more
            assert relative_error(np.asarray(ours), fx[nxt]) <= 1e-6, (p, stream)


@pytest.mark.parametrize("run", RUNS)
def test_euler_trajectory_from_noised_latent(fx, run):
    sigmas = fx[f"{run}.sigmas"]
    for stream in ("video", "audio"):
        st = recorded_state(fx, run, stream)
        x = st.latent
        for i in range(_steps(fx, run)):
            p = f"{run}.step{i:02d}"
            assert relative_error(np.asarray(x), fx[f"{p}.{stream}_latent_in"]) <= 1e-6, p
            x0 = post_process_latent(jnp.asarray(fx[f"{p}.{stream}_x0"]), st.denoise_mask, st.clean_latent)
            x = euler_step(x, x0, sigmas[i], sigmas[i + 1])
        assert relative_error(np.asarray(x), fx[f"{run}.out.{stream}_tokens"]) <= 1e-6
        if run == "i2v.s100" and stream == "video":  # mask 0: x = clean from the start, so v = 0 exactly
            np.testing.assert_array_equal(np.asarray(x[:, :16]), fx[f"{run}.in.video.clean_latent"][:, :16])
        if run == "i2v.s050" and stream == "video":  # strength 0.5: pulled from 0.5 noise + 0.5 clean to clean
            clean = fx[f"{run}.in.video.clean_latent"][:, :16]
            assert np.abs(np.asarray(x[:, :16]) - clean).max() < 0.5 * np.abs(st.latent[:, :16] - clean).max()


@pytest.mark.parametrize("run", RUNS)
def test_clear_conditioning_and_unpatchify(fx, run):
    shape = grid(fx)
    state = recorded_state(fx, run, "video").replace(latent=jnp.asarray(fx[f"{run}.out.video_tokens"]))
    cleared = clear_conditioning(state, shape.token_count)
    assert cleared.num_tokens == 48 and cleared.attention_mask is None
    np.testing.assert_array_equal(np.asarray(cleared.denoise_mask), np.ones((1, 48, 1), np.float32))
    np.testing.assert_array_equal(np.asarray(unpatchify_video(cleared.latent, shape)),
                                  np.asarray(channels_last(fx[f"{run}.out.video_latent"])))
    audio = fx[f"{run}.out.audio_tokens"]  # [B, T, (c f)] -> official [B, 8, T, 16]
    np.testing.assert_array_equal(audio.reshape(1, -1, 8, 16).transpose(0, 2, 1, 3), fx[f"{run}.out.audio_latent"])


def test_distilled_two_stage_euler_from_main_fixture(reference):
    """The main fixtures' `loop.*`: stage 1 from its noise, stage-2 re-noising of the upsampled latent, stage 2."""
    fx = Fixture(reference)
    step = 0
    for stage, (f, h, w) in (("stage1", (3, 4, 4)), ("stage2", (3, 8, 8))):
        sigmas = fx[f"loop.{stage}.sigmas"]
        np.testing.assert_array_equal(fx[f"loop.{stage}.video.positions"], video_positions(f, h, w, fps=FPS))
        np.testing.assert_array_equal(fx[f"loop.{stage}.audio.positions"], audio_positions(18))
        for stream in ("video", "audio"):
            p = f"loop.{stage}.{stream}"
            mask = jnp.ones(fx[f"{p}.noise"].shape[:2] + (1,), jnp.float32)
            x = noise_latent(jnp.asarray(fx[f"{p}.pre_noise_latent"]), jnp.asarray(fx[f"{p}.noise"]), mask,
                             float(fx[f"{p}.noise_scale"][0]))
            assert relative_error(np.asarray(x), fx[f"{p}.noised_latent"]) <= 1e-6
            for i in range(len(sigmas) - 1):
                x = euler_step(x, jnp.asarray(fx[f"loop.step{step + i:02d}.{stream}_x0"]), sigmas[i], sigmas[i + 1])
            ref = fx[f"loop.{stage}.out.{stream}_latent"]
            ours = np.asarray(unpatchify_video(x, VideoLatentShape(1, f, h, w, x.shape[-1]))) if stream == "video" \
                else np.asarray(x).reshape(1, -1, 8, 16).transpose(0, 2, 1, 3)
            ref = np.moveaxis(ref, 1, -1) if stream == "video" else ref
            assert relative_error(ours, ref) <= 1e-6, (stage, stream)
        step += len(sigmas) - 1
    np.testing.assert_array_equal(fx["loop.stage2.video.pre_noise_latent"],  # the upsampled stage-1 latent
                                  np.moveaxis(fx["loop.upsample.out.video_latent"], 1, -1).reshape(1, -1, 16))
