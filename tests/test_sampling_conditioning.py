"""Keyframe attention-strength masks, positions and the early checks of conditioning (loop fixtures
`keyframe.attn.*`, extra arrays built with `ConditioningItemAttentionStrengthWrapper`)."""

import jax.numpy as jnp
import numpy as np
import pytest

from ltx_jax.parity import Fixture
from ltx_jax.sampling import (ConditioningError, build_attention_mask, clear_conditioning, condition_by_keyframe,
                              condition_by_latent_index, initial_state, keyframe_positions, latent_grid,
                              unpatchify_video, video_positions)
from ltx_jax.types import VideoLatentShape, VideoShapeError

pytestmark = pytest.mark.reference
FPS = 24.0


@pytest.fixture(scope="module")
def fx(loops_reference):
    return Fixture(loops_reference)


def test_three_keyframes_with_attention_strength_equal_official(fx):
    c = fx.manifest["config"]["transformer"]["in_channels"]
    shape = VideoLatentShape(1, 3, 4, 4, c)
    state = initial_state(video_positions(3, 4, 4, fps=FPS), channels=c)
    frame_idx, strength = fx["keyframe.attn.frame_idx"].tolist(), fx["keyframe.attn.strength"].tolist()
    attention = [jnp.asarray(fx["keyframe.attn.cross_mask.0"]), 0.5, None]  # per token, scalar, no wrapper
    for i in range(3):
        latent = jnp.asarray(np.moveaxis(fx[f"keyframe.attn.latent.{i}"], 1, -1))
        state = condition_by_keyframe(state, latent, shape=shape, frame_idx=frame_idx[i], strength=strength[i],
                                      fps=FPS, attention_strength=attention[i])
    assert state.num_tokens == 48 + 3 * 16
    np.testing.assert_array_equal(np.asarray(state.attention_mask), fx["keyframe.attn.attention_mask"])
    np.testing.assert_array_equal(np.asarray(state.positions), fx["keyframe.attn.positions"])
    np.testing.assert_array_equal(np.asarray(state.denoise_mask), fx["keyframe.attn.denoise_mask"])
    np.testing.assert_array_equal(np.asarray(state.latent), fx["keyframe.attn.latent"])
    cleared = clear_conditioning(state, shape.token_count)
    assert cleared.attention_mask is None and cleared.num_tokens == 48
    np.testing.assert_array_equal(np.asarray(cleared.positions), fx["keyframe.attn.positions"][:, :, :48])


def test_keyframe_time_offsets_and_causal_fix(fx):
    pos = fx["keyframe.attn.positions"][0, 0]  # [T, 2] time bounds
    np.testing.assert_array_equal(pos[48:64], keyframe_positions(16, 4, 4, fps=FPS)[0, 0])
    assert tuple(pos[48]) == (np.float32(16 / 24), np.float32(24 / 24))  # no causal fix away from frame 0
    assert tuple(pos[64]) == (np.float32(8 / 24), np.float32(16 / 24))
    assert tuple(pos[80]) == (0.0, np.float32(1 / 24))  # frame 0: causal fix, [0, 1) pixel frames
    # the noisy latent frame 2 covers the same pixels as the keyframe at 16 but is causally shifted
    assert tuple(pos[32]) == (np.float32(9 / 24), np.float32(17 / 24))


def test_attention_mask_blocks():
    cross = jnp.asarray([[0.25, 0.75]])
    m = np.asarray(build_attention_mask(None, num_noisy=3, num_existing=4, cross=cross))
    assert m.shape == (1, 6, 6)
    np.testing.assert_array_equal(m[0, :4, :4], 1.0)
    np.testing.assert_array_equal(m[0, :3, 4:], [[0.25, 0.75]] * 3)
    np.testing.assert_array_equal(m[0, 4:, :3], [[0.25] * 3, [0.75] * 3])
    np.testing.assert_array_equal(m[0, 3, 4:], 0.0)  # earlier conditioning token <-> new tokens
    np.testing.assert_array_equal(m[0, 4:, 4:], 1.0)


def test_latent_index_places_frames_by_token_offset():
    shape = VideoLatentShape(1, 3, 2, 2, 4)
    state = initial_state(video_positions(3, 2, 2, fps=FPS), channels=4)
    frame = jnp.arange(16, dtype=jnp.float32).reshape(1, 1, 2, 2, 4)
    out = condition_by_latent_index(state, frame, shape=shape, latent_idx=1, strength=0.25)
    tokens = np.asarray(unpatchify_video(out.latent, shape))
    np.testing.assert_array_equal(tokens[:, 1], np.asarray(frame[:, 0]))
    np.testing.assert_array_equal(tokens[:, [0, 2]], 0.0)
    np.testing.assert_array_equal(np.asarray(out.denoise_mask)[0, :, 0], [1] * 4 + [0.75] * 4 + [1] * 4)


def test_bad_sizes_and_indices_fail_early():
    with pytest.raises(VideoShapeError, match="1 \\+ 8k"):
        latent_grid(18, 128, 128)
    with pytest.raises(VideoShapeError, match="multiple of 32"):
        latent_grid(17, 100, 128)
    with pytest.raises(VideoShapeError, match="multiple of 64"):
        latent_grid(17, 96, 128, two_stage=True)
    assert latent_grid(121, 512, 768, two_stage=True) == (16, 16, 24)
    shape = VideoLatentShape(1, 3, 4, 4, 16)
    state = initial_state(video_positions(3, 4, 4, fps=FPS), channels=16)
    frame = jnp.zeros((1, 1, 4, 4, 16))
    for idx in (17, -1):
        with pytest.raises(ConditioningError, match="outside the video's 17 pixel frames"):
            condition_by_keyframe(state, frame, shape=shape, frame_idx=idx, strength=1.0, fps=FPS)
    with pytest.raises(ConditioningError, match="latent_idx 3"):
        condition_by_latent_index(state, frame, shape=shape, latent_idx=3, strength=1.0)
    with pytest.raises(ConditioningError, match="does not match"):
        condition_by_latent_index(state, jnp.zeros((1, 1, 8, 8, 16)), shape=shape, latent_idx=0, strength=1.0)
    with pytest.raises(ConditioningError, match="strength"):
        condition_by_latent_index(state, frame, shape=shape, latent_idx=0, strength=1.5)
    with pytest.raises(ConditioningError, match="attention_strength"):
        condition_by_keyframe(state, frame, shape=shape, frame_idx=8, strength=1.0, fps=FPS,
                              attention_strength=jnp.ones((3,)))
    with pytest.raises(ConditioningError, match="fill the latent grid"):
        unpatchify_video(jnp.zeros((1, 64, 16)), shape)
