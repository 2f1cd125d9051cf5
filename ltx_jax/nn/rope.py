"""Rotary position embeddings: frequency grid, cos/sin tables from positions, and their application.

Counterpart: ltx_core `model/transformer/rope.py` (`generate_freq_grid_np`, `generate_freq_grid_pytorch`,
`precompute_freqs_cis`, `apply_rotary_emb`).

Layouts (ours keeps tokens before heads, `[B, T, H, ...]`, the layout attention consumes):
  * interleaved: cos/sin `[B, T, dim]`; channel pairs (2i, 2i+1) rotate together.
  * split: cos/sin `[B, T, H, Dh/2]`; each head's channels split in halves (x1, x2) that rotate together,
    and every head gets its own contiguous slice of the frequency table.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["frequency_grid", "rope_tables", "apply_rope"]


@functools.lru_cache(maxsize=32)
def frequency_grid(theta: float, n_axes: int, dim: int, double_precision: bool) -> np.ndarray:
    """[dim // (2 n_axes)] float32 angular frequencies theta^(k/(F-1)) * pi/2, k = 0..F-1.

    Built on the host: JAX has float64 off by default (jnp.float64 silently becomes float32), and the
    float32 variant must reproduce torch's float32 `linspace` and `pow` (bit for bit below 32 frequencies,
    within 2 ulp above), because the angles reach ~theta*pi/2 = 1.6e4 rad where one ulp of a frequency is
    already ~1e-3 rad.
    """
    count = dim // (2 * n_axes)
    if double_precision:
        # ltx_core generate_freq_grid_np: numpy float64 throughout, cast to float32 at the end.
        exps = np.linspace(0.0, np.log(theta) / np.log(theta), count, dtype=np.float64)
        return (np.power(theta, exps) * math.pi / 2).astype(np.float32)
    # ltx_core generate_freq_grid_pytorch: torch.linspace(0, 1, F) then theta ** x, all float32.
    # torch's CPU linspace computes element i as step*i below F//2 and as end - step*(F-1-i) above,
    # the latter contracted to one fused multiply-add (a single rounding); in float64 that value is
    # exact (it needs 23 + log2(F) bits), so rounding it once to float32 reproduces torch.
    step = np.float32(np.float32(1.0) / np.float32(count - 1)) if count > 1 else np.float32(0.0)
    i = np.arange(count)
    low = (step * i.astype(np.float32)).astype(np.float32)
    high = (1.0 - np.float64(step) * (count - 1 - i)).astype(np.float32)
    exps = np.where(i < count // 2, low, high) if count > 1 else np.zeros(count, np.float32)
    # torch's scalar float pow equals the correctly rounded power; in its vectorised (SLEEF) chunks of
    # 2 x 16 elements it may be 1 ulp off (2 after the * pi/2), so grids of >= 32 frequencies can differ in a
    # few entries. Only the "float32" precision uses this path; the released checkpoints use "float64".
    grid = np.power(np.float64(theta), exps.astype(np.float64)).astype(np.float32)
    return (grid * np.float32(math.pi / 2)).astype(np.float32)


def rope_tables(positions: jax.Array, *, dim: int, heads: int, max_pos: Sequence[int], theta: float,
                rope_type: str, double_precision: bool, use_middle: bool,
                dtype: jnp.dtype) -> tuple[jax.Array, jax.Array]:
    """cos/sin tables for positions.

    Args:
        positions: `[B, n, T, 2]` `[start, end)` bounds (or `[B, n, T]` points) per axis. Its dtype is
            kept for the position arithmetic, as ltx_core does (bf16 video positions in the bf16
            pipeline); the frequency product is float32.
        dim: rotated width (heads * head_dim).
        heads: head count (split layout only).
        max_pos: per-axis normaliser (fractional position = pos / max_pos).
        rope_type: "interleaved" or "split".
        use_middle: take the midpoint of `[start, end)`; otherwise the start.
        dtype: dtype of the returned tables (ltx_core casts them to the activation dtype).

    Returns:
        (cos, sin): `[B, T, dim]` (interleaved) or `[B, T, heads, dim // (2 heads)]` (split).
    """
    n = positions.shape[1]
    if n != len(max_pos):
        raise ValueError(f"positions have {n} axes but max_pos has {len(max_pos)} entries")
    rnd = _rounding(positions.dtype)
    p = positions.astype(jnp.float32)
    if p.ndim == 4:
        p = rnd(rnd(p[..., 0] + p[..., 1]) / 2.0) if use_middle else p[..., 0]
    grid = jnp.asarray(frequency_grid(float(theta), n, dim, double_precision))  # [F]
    # [B, n, T] -> [B, T, n]; each axis divided by its own max, in the positions' precision
    frac = jnp.stack([rnd(p[:, i] / max_pos[i]) for i in range(n)], axis=-1)
    # [B, T, n, 1] * [F] -> [B, T, n, F] -> [B, T, F, n] -> [B, T, F*n]: frequency-major, axis-minor
    angles = grid * rnd(frac[..., None] * 2 - 1)
    angles = jnp.swapaxes(angles, -1, -2).reshape(*angles.shape[:2], -1)
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    if rope_type == "split":
        pad = dim // 2 - angles.shape[-1]
        cos = jnp.pad(cos, ((0, 0), (0, 0), (pad, 0)), constant_values=1.0)  # padding rotates by 0
        sin = jnp.pad(sin, ((0, 0), (0, 0), (pad, 0)), constant_values=0.0)
        # [B, T, dim/2] -> [B, T, H, Dh/2]: head h owns a contiguous slice of frequencies
        cos = cos.reshape(*cos.shape[:2], heads, -1)
        sin = sin.reshape(*sin.shape[:2], heads, -1)
    elif rope_type == "interleaved":
        cos, sin = jnp.repeat(cos, 2, axis=-1), jnp.repeat(sin, 2, axis=-1)
        pad = dim % (2 * n)
        cos = jnp.pad(cos, ((0, 0), (0, 0), (pad, 0)), constant_values=1.0)
        sin = jnp.pad(sin, ((0, 0), (0, 0), (pad, 0)), constant_values=0.0)
    else:
        raise ValueError(f"unknown rope_type {rope_type!r} (interleaved or split)")
    return cos.astype(dtype), sin.astype(dtype)


def _rounding(dtype: jnp.dtype):
    """Rounding to `dtype` after each op, as torch does for half-precision tensors.

    torch computes each bf16 op in float32 and rounds its result; XLA may keep float32 between fused
    bf16 ops (excess precision), which here moves angles of up to 1.6e4 rad by whole radians.
    `reduce_precision` is an explicit op XLA does not elide.
    """
    if jnp.dtype(dtype) == jnp.float32:
        return lambda x: x
    info = jnp.finfo(dtype)
    return lambda x: jax.lax.reduce_precision(x, exponent_bits=info.nexp, mantissa_bits=info.nmant)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate `x` `[B, T, H*Dh]` with tables from `rope_tables` (the layout picks the variant)."""
    if cos.ndim == 3:  # interleaved: out = x*cos + rot(x)*sin, rot(x)_(2i, 2i+1) = (-x_(2i+1), x_(2i))
        pairs = x.reshape(*x.shape[:-1], -1, 2)
        rotated = jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)
        return x * cos + rotated * sin
    heads, half = cos.shape[-2:]
    # [B, T, H*Dh] -> [B, T, H, 2, Dh/2]: first and second half of each head (tables may have B = 1)
    halves = x.reshape(*x.shape[:2], heads, 2, half)
    x1, x2 = halves[..., 0, :], halves[..., 1, :]
    out = jnp.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-2)
    return out.reshape(x.shape)
