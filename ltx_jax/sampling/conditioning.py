"""Latent state and conditioning: first-frame / latent-index replacement, appended keyframes, masks.

Counterparts: ltx_core `types.py` (`LatentState`), `tools.py` (`create_initial_state`, `clear_conditioning`,
patchify / unpatchify), `conditioning/types/latent_cond.py` (`VideoConditionByLatentIndex`),
`conditioning/types/keyframe_cond.py` (`VideoConditionByKeyframeIndex`),
`conditioning/types/attention_strength_wrapper.py` and `conditioning/mask_utils.py` (attention-strength
masks), ltx_pipelines `utils/helpers.py` (`timesteps_from_mask`, `post_process_latent`).

Everything works on patchified tokens `[B, T, C]` (video T in (f, h, w) order), denoise masks and
timesteps `[B, T, 1]`, positions `[B, n, T, 2]`. Token counts and indices are static Python ints, so each
function traces to fixed shapes. Video latents are channels-last `[B, F', H', W', C]` as elsewhere in
ltx-jax (the official layout is `[B, C, F', H', W']`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ltx_jax.sampling.positions import keyframe_positions
from ltx_jax.types import VIDEO_SCALE_FACTORS, ScaleFactors, VideoLatentShape

__all__ = ["LatentState", "ConditioningError", "patchify_video", "unpatchify_video", "initial_state",
           "condition_by_latent_index", "condition_by_keyframe", "build_attention_mask", "timesteps_from_mask",
           "post_process_latent", "clear_conditioning"]


class ConditioningError(ValueError):
    """A conditioning input that does not fit the latent (shape, index or strength)."""


@struct.dataclass
class LatentState:
    """One stream's sampling state (video or audio).

    Attributes:
        latent: `[B, T, C]` current tokens.
        denoise_mask: `[B, T, 1]` float32, 1 = denoise fully, 0 = keep clean (1 - strength for conditions).
        positions: `[B, n, T, 2]` `[start, end)` bounds (n = 3 video, 1 audio).
        clean_latent: `[B, T, C]` the conditioning values (zeros elsewhere).
        attention_mask: `[B, T, T]` self-attention weights in [0, 1], or None for full attention.
    """

    latent: jax.Array
    denoise_mask: jax.Array
    positions: jax.Array
    clean_latent: jax.Array
    attention_mask: jax.Array | None = None

    @property
    def num_tokens(self) -> int:
        return self.latent.shape[1]


def patchify_video(latent: jax.Array) -> jax.Array:
    """`[B, F', H', W', C]` -> `[B, F' * H' * W', C]` (patch size 1; the official `b c f h w -> b (f h w) c`)."""
    b, f, h, w, c = latent.shape
    return latent.reshape(b, f * h * w, c)


def unpatchify_video(tokens: jax.Array, shape: VideoLatentShape) -> jax.Array:
    """`[B, T, C]` -> `[B, F', H', W', C]`; T must equal F' * H' * W' (call `clear_conditioning` first)."""
    if tokens.shape[1] != shape.token_count:
        raise ConditioningError(f"{tokens.shape[1]} tokens do not fill the latent grid {shape} "
                                f"({shape.token_count} tokens); clear appended conditioning tokens first")
    return tokens.reshape(tokens.shape[0], shape.frames, shape.height, shape.width, tokens.shape[-1])


def initial_state(positions: jax.Array | np.ndarray, latent: jax.Array | None = None, *,
                  channels: int | None = None, dtype: jnp.dtype = jnp.float32) -> LatentState:
    """The state `create_initial_state` builds: latent (zeros if None), mask ones, clean = latent.

    Args:
        positions: `[B, n, T, 2]`.
        latent: `[B, T, C]` initial tokens (e.g. the upsampled stage-1 latent) or None.
        channels: token width when `latent` is None.
    """
    b, _, t, _ = positions.shape
    if latent is None:
        if channels is None:
            raise ValueError("initial_state needs `latent` or `channels`")
        latent = jnp.zeros((b, t, channels), dtype)
    elif latent.shape[:2] != (b, t):
        raise ConditioningError(f"latent {latent.shape} does not match positions {positions.shape} (B, T)")
    return LatentState(latent=latent, denoise_mask=jnp.ones((b, t, 1), jnp.float32),
                       positions=jnp.asarray(positions), clean_latent=latent)


def _check_strength(strength: float) -> float:
    if not 0.0 <= float(strength) <= 1.0:
        raise ConditioningError(f"conditioning strength must be in [0, 1]; got {strength}")
    return float(strength)


def condition_by_latent_index(state: LatentState, latent: jax.Array, *, shape: VideoLatentShape, latent_idx: int,
                              strength: float) -> LatentState:
    """Replace the tokens of latent frames `[latent_idx, latent_idx + F_c)` (`VideoConditionByLatentIndex`).

    Image-to-video conditions latent frame 0 with the encoded image. The replaced tokens are set in both
    `latent` and `clean_latent`, and get `denoise_mask = 1 - strength` (0 for strength 1: never noised,
    t = 0, x0 = x).

    Args:
        state: the video state (its first `shape.token_count` tokens are the grid).
        latent: `[B, F_c, H', W', C]` encoded frames (normalized latents), same B, H', W', C as `shape`.
        shape: the state's latent grid.
        latent_idx: first latent frame to replace.
        strength: in [0, 1].
    """
    strength = _check_strength(strength)
    b, fc, h, w, c = latent.shape
    if (b, h, w, c) != (shape.batch, shape.height, shape.width, shape.channels):
        raise ConditioningError(f"conditioning latent {tuple(latent.shape)} [B, F, H, W, C] does not match the "
                                f"video latent {shape}: batch, height, width and channels must be equal")
    if not 0 <= latent_idx <= shape.frames - fc:
        raise ConditioningError(f"latent_idx {latent_idx} with {fc} frame(s) is outside the {shape.frames} latent "
                                f"frames (valid: 0..{shape.frames - fc})")
    start = latent_idx * h * w
    stop = start + fc * h * w
    tokens = patchify_video(latent).astype(state.latent.dtype)
    mask = jnp.full((b, stop - start, 1), 1.0 - strength, state.denoise_mask.dtype)
    return state.replace(latent=state.latent.at[:, start:stop].set(tokens),
                         clean_latent=state.clean_latent.at[:, start:stop].set(tokens.astype(state.clean_latent.dtype)),
                         denoise_mask=state.denoise_mask.at[:, start:stop].set(mask))


def build_attention_mask(existing: jax.Array | None, *, num_noisy: int, num_existing: int,
                         cross: jax.Array) -> jax.Array:
    """The `[B, N + M, N + M]` self-attention mask after appending M conditioning tokens (`mask_utils`).

    Blocks: noisy x noisy and earlier tokens keep `existing` (ones if None); new x new = 1; noisy <-> new =
    `cross` (`[B, M]`, per new token, both directions); earlier conditioning tokens <-> new = 0.
    """
    b, m = cross.shape
    total = num_existing + m
    top = jnp.ones((b, num_existing, num_existing), cross.dtype) if existing is None else existing.astype(cross.dtype)
    # [B, N, M]: noisy rows see cross[:, j], earlier conditioning rows see 0
    right = jnp.concatenate([jnp.broadcast_to(cross[:, None, :], (b, num_noisy, m)),
                             jnp.zeros((b, num_existing - num_noisy, m), cross.dtype)], axis=1)
    bottom = jnp.concatenate([jnp.swapaxes(right, 1, 2), jnp.ones((b, m, m), cross.dtype)], axis=2)  # [B, M, N+M]
    mask = jnp.concatenate([jnp.concatenate([top, right], axis=2), bottom], axis=1)
    assert mask.shape == (b, total, total)
    return mask


def condition_by_keyframe(state: LatentState, latent: jax.Array, *, shape: VideoLatentShape, frame_idx: int,
                          strength: float, fps: float, attention_strength: float | jax.Array | None = None,
                          scale: ScaleFactors = VIDEO_SCALE_FACTORS) -> LatentState:
    """Append keyframe tokens at pixel frame `frame_idx` (`VideoConditionByKeyframeIndex`, optionally wrapped
    in `ConditioningItemAttentionStrengthWrapper`).

    The tokens go after the existing ones (in `latent` and `clean_latent`), with `denoise_mask =
    1 - strength` and positions from `keyframe_positions` (time offset by `frame_idx`, no causal fix unless
    frame 0). They are removed again by `clear_conditioning`.

    Args:
        state: the video state, possibly with earlier appended tokens.
        latent: `[B, F_k, H', W', C]` encoded keyframe(s).
        shape: the video's latent grid (its token count is the number of noisy tokens).
        frame_idx: pixel frame index, 0 <= frame_idx < the video's pixel frame count.
        strength: in [0, 1].
        fps: frame rate of the video.
        attention_strength: None (full attention, unless the state already has a mask, which is then
            extended with ones), a scalar, or `[M]` / `[B, M]` per-token weights in [0, 1] between the new
            tokens and the noisy tokens.
    """
    strength = _check_strength(strength)
    b, fk, h, w, c = latent.shape
    if (b, h, w, c) != (shape.batch, shape.height, shape.width, shape.channels):
        raise ConditioningError(f"keyframe latent {tuple(latent.shape)} [B, F, H, W, C] does not match the video "
                                f"latent {shape}")
    num_pixel_frames = (shape.frames - 1) * scale.time + 1
    if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)) \
            or not 0 <= frame_idx < num_pixel_frames:
        raise ConditioningError(f"keyframe frame_idx {frame_idx!r} is outside the video's {num_pixel_frames} pixel "
                                f"frames (valid: 0..{num_pixel_frames - 1})")
    tokens = patchify_video(latent).astype(state.latent.dtype)
    m = tokens.shape[1]
    pos = jnp.asarray(keyframe_positions(int(frame_idx), h, w, fps=fps, frames=fk, batch=b, scale=scale))
    mask = jnp.full((b, m, 1), 1.0 - strength, state.denoise_mask.dtype)

    attn = state.attention_mask
    if attention_strength is not None or attn is not None:
        if attention_strength is None:
            cross = jnp.ones((b, m), jnp.float32)
        else:
            cross = jnp.asarray(attention_strength, jnp.float32)
            if cross.ndim == 0:
                cross = jnp.full((b, m), cross)
            elif cross.shape in ((m,), (1, m)):
                cross = jnp.broadcast_to(cross.reshape(1, m), (b, m))
            elif cross.shape != (b, m):
                raise ConditioningError(f"attention_strength must be a scalar, [{m}] or [{b}, {m}]; "
                                        f"got shape {cross.shape}")
        attn = build_attention_mask(attn, num_noisy=shape.token_count, num_existing=state.num_tokens, cross=cross)
    return LatentState(
        latent=jnp.concatenate([state.latent, tokens], axis=1),
        denoise_mask=jnp.concatenate([state.denoise_mask, mask], axis=1),
        positions=jnp.concatenate([state.positions, pos.astype(state.positions.dtype)], axis=2),
        clean_latent=jnp.concatenate([state.clean_latent, tokens.astype(state.clean_latent.dtype)], axis=1),
        attention_mask=attn,
    )


def timesteps_from_mask(denoise_mask: jax.Array, sigma: jax.Array | float) -> jax.Array:
    """Per-token timesteps `denoise_mask * sigma`: `[B, T, 1]` (conditioned tokens get t = 0)."""
    return denoise_mask * jnp.asarray(sigma, denoise_mask.dtype)


def post_process_latent(x0: jax.Array, denoise_mask: jax.Array, clean: jax.Array) -> jax.Array:
    """`x0 * mask + clean * (1 - mask)` in float32 (or wider), cast to x0's dtype. Shapes `[B, T, C]`, mask
    `[B, T, 1]`."""
    dt = jnp.promote_types(x0.dtype, jnp.float32)
    mask = denoise_mask.astype(dt)
    return (x0.astype(dt) * mask + clean.astype(dt) * (1 - mask)).astype(x0.dtype)


def clear_conditioning(state: LatentState, num_tokens: int) -> LatentState:
    """Keep the first `num_tokens` (the grid), drop appended tokens and the attention mask; mask = ones."""
    if not 0 < num_tokens <= state.num_tokens:
        raise ConditioningError(f"num_tokens {num_tokens} is outside 1..{state.num_tokens}")
    return LatentState(latent=state.latent[:, :num_tokens],
                       denoise_mask=jnp.ones_like(state.denoise_mask[:, :num_tokens]),
                       positions=state.positions[:, :, :num_tokens],
                       clean_latent=state.clean_latent[:, :num_tokens], attention_mask=None)
