"""Flow-matching steps: Euler, and the res_2s second-order SDE sampler's coefficients and updates.

Counterparts: ltx_core `components/diffusion_steps.py` (`EulerDiffusionStep`, `Res2sDiffusionStep`),
`utils.py` (`to_velocity`), ltx_pipelines `utils/res2s.py` (`phi`, `get_res2s_coefficients`) and
`utils/samplers.py` (`res2s_audio_video_denoising_loop`, `_inject_sde_noise`, legacy mode).

Per-step scalars of res_2s (h, RK and SDE coefficients) depend only on the schedule, so `res2s_plan` computes
them once on the host in float64 (Python math, as the official loop does) and the jitted update reads one
row per step. The updates run in the latents' dtype promoted to float32. The official loop runs them in
float64 with differences such as `(x - x_det) / (sigma - sigma_next)` that cancel badly in float32; here
the same update is rearranged so that only `x0 - x` is formed from latents and every scalar factor is
precomputed:
  substep  x_mid  = alpha_s * (x + k_s * (d1 - x)) + up_s * noise_s               (then blended with clean)
  anchor   x_a    = (x_mid - c * d1) / (1 - c), c = h * a21  (the fixed point of the 100 bong iterations)
  step     x_next = alpha * (x_a + k1 * (d1 - x_a) + k2 * (d2 - x_a)) + up * noise  (then blended)
with k_s = h a21 (sigma - down_s) / (sigma - sub), k1 = h b1 (sigma - down) / (sigma - next), k2 likewise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.sampling.conditioning import post_process_latent

__all__ = ["to_velocity", "euler_step", "phi", "res2s_coefficients", "sde_coefficients", "Res2sPlan",
           "res2s_plan", "res2s_substep", "res2s_step", "RES2S_FINAL_SIGMA", "RES2S_COLUMNS"]

RES2S_FINAL_SIGMA = 0.0011  # the official loop replaces a final sigma of 0 by [0.0011, 0]
RES2S_C2 = 0.5  # midpoint; sub_sigma = sqrt(sigma * sigma_next) is hard-coded for it
# Columns of `Res2sPlan.table`, one row per full step.
RES2S_COLUMNS = ("sigma", "sigma_next", "sub_sigma", "h", "a21", "b1", "b2", "bong", "c",
                 "alpha_sub", "k_sub", "up_sub", "alpha", "k1", "k2", "up")


def _f32(x: jax.Array) -> jax.Array:
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def to_velocity(x: jax.Array, x0: jax.Array, sigma: jax.Array | float) -> jax.Array:
    """`(x - x0) / sigma` in float32, cast back to x's dtype (as ltx_core's `to_velocity`). Shapes: any."""
    return ((_f32(x) - _f32(x0)) / sigma).astype(x.dtype)


def euler_step(x: jax.Array, x0: jax.Array, sigma: jax.Array | float, sigma_next: jax.Array | float) -> jax.Array:
    """One Euler step of `EulerDiffusionStep`: `x + v * (sigma_next - sigma)` with `v = (x - x0) / sigma`.

    Args:
        x: `[B, T, C]` current latent tokens.
        x0: `[B, T, C]` the denoised prediction, already blended with the clean latent
            (`post_process_latent`): the official loop steps every token, including conditioned ones.
        sigma, sigma_next: float32 scalars, sigma > 0 (not checked under jit; the official code raises).

    Returns:
        `[B, T, C]` in x's dtype. The velocity is rounded to x's dtype before the update (bf16 in the bf16
        pipeline), as the official code does.
    """
    sigma = jnp.asarray(sigma, jnp.float32)
    dt = jnp.asarray(sigma_next, jnp.float32) - sigma
    v = to_velocity(x, x0, sigma)
    return (_f32(x) + _f32(v) * dt).astype(x.dtype)


def phi(j: int, neg_h: float) -> float:
    """phi_j(z) = (e^z - sum_{k<j} z^k / k!) / z^j, with phi_j(0) = 1 / j!."""
    if abs(neg_h) < 1e-10:
        return 1.0 / math.factorial(j)
    remainder = sum(neg_h**k / math.factorial(k) for k in range(j))
    return (math.exp(neg_h) - remainder) / neg_h**j


def res2s_coefficients(h: float, c2: float = RES2S_C2) -> tuple[float, float, float]:
    """(a21, b1, b2) of the res_2s exponential RK step of size h = ln(sigma / sigma_next)."""
    a21 = c2 * phi(1, -h * c2)
    b2 = phi(2, -h) / c2
    b1 = phi(1, -h) - b2
    return a21, b1, b2


def sde_coefficients(sigma: float, sigma_next: float, up_fraction: float = 0.5) -> tuple[float, float, float]:
    """(alpha, k, sigma_up) of `Res2sDiffusionStep.step` for sigma -> sigma_next, sigma_up = 0.5 sigma_next.

    The SDE step maps (anchor x, deterministic result x_det) to `alpha * (x + k (x_det - x)) + up * noise`,
    with sigma_res = sqrt(next^2 - up^2), alpha = (1 - next) + sigma_res, down = sigma_res / alpha and
    k = (sigma - down) / (sigma - next). Where the official step returns x_det unchanged (sigma_up or
    sigma_next is 0) this gives (1, 1, 0).
    """
    up = min(sigma_next * up_fraction, sigma_next * 0.9999)
    if up == 0.0 or sigma_next == 0.0:
        return 1.0, 1.0, 0.0
    residual = math.sqrt(max(sigma_next**2 - up**2, 0.0))
    alpha = (1.0 - sigma_next) + residual
    down = residual / alpha
    return alpha, (sigma - down) / (sigma - sigma_next), up


@dataclass(frozen=True)
class Res2sPlan:
    """Host-side plan of a res_2s run.

    Attributes:
        loop_sigmas: float32 `[steps + 1]` or `[steps + 2]`: the schedule with a final 0 replaced by
            `[0.0011, 0]` (what the official loop iterates over).
        table: float64 `[steps, len(RES2S_COLUMNS)]`, one row per full step (cast to float32 for the device).
        final_eval: the schedule ended in 0, so a last model evaluation at 0.0011 replaces the latent by
            its (blended) x0.
    """

    loop_sigmas: np.ndarray
    table: np.ndarray
    final_eval: bool

    @property
    def steps(self) -> int:
        return self.table.shape[0]

    def column(self, name: str) -> np.ndarray:
        return self.table[:, RES2S_COLUMNS.index(name)]


def res2s_plan(sigmas: np.ndarray, *, bongmath: bool = True) -> Res2sPlan:
    """Per-step coefficients of `res2s_audio_video_denoising_loop` (c2 = 0.5, legacy mode).

    Args:
        sigmas: `[N + 1]` float32 schedule, strictly decreasing and positive except a possible final 0.
        bongmath: refine the anchor where h < 0.5 and sigma > 0.03 (the official default).

    Raises:
        ValueError: fewer than 2 entries, or a schedule that is not positive and strictly decreasing.
    """
    s = np.asarray(sigmas, dtype=np.float32).reshape(-1)
    if s.size < 2:
        raise ValueError(f"a res_2s schedule needs at least 2 sigmas (1 step); got {s.size}")
    if not (np.all(np.diff(s) < 0) and np.all(s[:-1] > 0) and s[-1] >= 0):
        raise ValueError(f"res_2s sigmas must be positive and strictly decreasing (a final 0 allowed); got {s}")
    final_eval = bool(s[-1] == 0)
    loop = np.concatenate([s[:-1], np.asarray([RES2S_FINAL_SIGMA, 0.0], np.float32)]) if final_eval else s
    rows = []
    for i in range(s.size - 1):
        sig, nxt = float(loop[i]), float(loop[i + 1])  # float32 values held exactly in float64
        h = -math.log(nxt / sig)
        a21, b1, b2 = res2s_coefficients(h)
        sub = math.sqrt(sig * nxt)
        alpha_s, k_s, up_s = sde_coefficients(sig, sub)
        alpha, k, up = sde_coefficients(sig, nxt)
        bong = bongmath and h < 0.5 and sig > 0.03
        rows.append((sig, nxt, sub, h, a21, b1, b2, float(bong), h * a21, alpha_s, k_s * h * a21, up_s,
                     alpha, k * h * b1, k * h * b2, up))
    return Res2sPlan(loop_sigmas=loop, table=np.asarray(rows, np.float64), final_eval=final_eval)


def _col(row: jax.Array, name: str, dtype: jnp.dtype) -> jax.Array:
    return row[RES2S_COLUMNS.index(name)].astype(dtype)


def res2s_substep(x: jax.Array, x0: jax.Array, noise: jax.Array, row: jax.Array, denoise_mask: jax.Array,
                  clean: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """First half of a res_2s step: the noised midpoint and the (bong-refined) anchor.

    Args:
        x: `[B, T, C]` the step's starting latent (the anchor before refinement).
        x0: `[B, T, C]` the blended x0 of the evaluation at sigma.
        noise: `[B, T, C]` the substep SDE noise (normalized as `_get_new_noise`).
        row: `[len(RES2S_COLUMNS)]` this step's row of `Res2sPlan.table`.
        denoise_mask: `[B, T, 1]`; clean: `[B, T, C]`.

    Returns:
        (x_mid in x's dtype: the latent of the evaluation at sub_sigma, anchor, eps1 = x0 - anchor);
        anchor and eps1 are in the compute dtype (float32 or wider) for `res2s_step`.
    """
    dt = jnp.promote_types(x.dtype, jnp.float32)
    xf, d1 = x.astype(dt), x0.astype(dt)
    x_mid = _col(row, "alpha_sub", dt) * (xf + _col(row, "k_sub", dt) * (d1 - xf)) \
        + _col(row, "up_sub", dt) * noise.astype(dt)
    x_mid = post_process_latent(x_mid, denoise_mask, clean)  # legacy mode blends after the SDE step
    c = _col(row, "c", dt)
    refined = (x_mid - c * d1) / (1 - c)
    anchor = jnp.where(_col(row, "bong", dt) > 0, refined, xf)
    return x_mid.astype(x.dtype), anchor, d1 - anchor


def res2s_step(anchor: jax.Array, eps1: jax.Array, x0_mid: jax.Array, noise: jax.Array, row: jax.Array,
               denoise_mask: jax.Array, clean: jax.Array, out_dtype: jnp.dtype) -> jax.Array:
    """Second half of a res_2s step: RK combination of both evaluations, SDE noise, blend, cast.

    Args:
        anchor, eps1: from `res2s_substep`.
        x0_mid: `[B, T, C]` the blended x0 of the evaluation at sub_sigma.
        noise: `[B, T, C]` the step SDE noise.
        row, denoise_mask, clean: as for `res2s_substep`.
        out_dtype: the model dtype the official loop casts the new latent to.

    Returns:
        `[B, T, C]` the latent at sigma_next, in `out_dtype`.
    """
    dt = anchor.dtype
    eps2 = x0_mid.astype(dt) - anchor
    x_next = _col(row, "alpha", dt) * (anchor + _col(row, "k1", dt) * eps1 + _col(row, "k2", dt) * eps2) \
        + _col(row, "up", dt) * noise.astype(dt)
    return post_process_latent(x_next, denoise_mask, clean).astype(out_dtype)
