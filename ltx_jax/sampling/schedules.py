"""Sigma schedules: the dev `LTX2Scheduler` for any step and token count, and the distilled stage lists.

Counterparts: ltx_core `components/schedulers.py` (`LTX2Scheduler.execute`) and ltx_pipelines
`utils/constants.py` (`DISTILLED_SIGMA_VALUES`, `STAGE_2_DISTILLED_SIGMA_VALUES`).

Schedules are host-side NumPy float32 arrays `[steps + 1]` (static per run; the jitted loop takes them as
an argument). The dev schedule repeats the official float32 operation sequence, rounding included, because
near sigma = 1 the stretch `1 - (1 - s) / scale` amplifies single-ulp differences (the official 4096-token
schedule starts at 0.9999998, not 1.0).
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_SCHEDULER_TOKENS", "DISTILLED_STAGE1_SIGMAS", "DISTILLED_STAGE2_SIGMAS", "dev_sigmas",
           "distilled_sigmas", "dev_shift"]

BASE_SHIFT_ANCHOR = 1024
MAX_SHIFT_ANCHOR = 4096
# Token count the official pipelines use: every one- and two-stage pipeline calls the scheduler without a
# latent; only the HQ (res_2s) pipeline passes its stage-1 latent, so there tokens = F' * H' * W'.
DEFAULT_SCHEDULER_TOKENS = MAX_SHIFT_ANCHOR

# The distilled model's schedules (8 stage-1 steps, 3 stage-2 steps).
DISTILLED_STAGE1_SIGMAS = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0)
DISTILLED_STAGE2_SIGMAS = (0.909375, 0.725, 0.421875, 0.0)

_F32 = np.float32


def dev_shift(tokens: int, max_shift: float = 2.05, base_shift: float = 0.95) -> float:
    """The shift `mu`, linear in the token count through (1024, base) and (4096, max); not clamped."""
    slope = (max_shift - base_shift) / (MAX_SHIFT_ANCHOR - BASE_SHIFT_ANCHOR)
    return tokens * slope + (base_shift - slope * BASE_SHIFT_ANCHOR)


def _linspace_1_to_0(n: int) -> np.ndarray:
    """`torch.linspace(1, 0, n)` in float32, as ltx-core's CPU torch computes it.

    The first half counts up from 1, the second down from 0, each `start + step * i` with a single
    rounding (the kernel is compiled with FMA contraction; float64 holds the float32 product exactly).
    """
    step = np.float64((_F32(0.0) - _F32(1.0)) / _F32(n - 1))
    i = np.arange(n, dtype=np.float64)
    up = (1.0 + step * i).astype(_F32)
    down = (0.0 - step * (n - 1 - i)).astype(_F32)
    return np.where(i < n // 2, up, down).astype(_F32)


def dev_sigmas(steps: int, tokens: int | None = None, *, max_shift: float = 2.05, base_shift: float = 0.95,
               stretch: bool = True, terminal: float = 0.1) -> np.ndarray:
    """The dev model's schedule, equal to `LTX2Scheduler().execute(steps, latent)`.

    Args:
        steps: number of denoising steps (>= 1).
        tokens: latent token count F' * H' * W' (the official `prod(latent.shape[2:])`); None means the
            4096 the official pipelines use (shift 2.05).
        max_shift, base_shift, stretch, terminal: as in `LTX2Scheduler.execute`.

    Returns:
        float32 `[steps + 1]`, decreasing, ending in 0; with `stretch` the last non-zero value is
        `terminal` (up to float32 rounding).

    Raises:
        ValueError: steps < 1, tokens < 1, terminal outside (0, 1), or a schedule the official code would
            return with NaN (one step where the float32 shift maps sigma = 1 exactly onto 1: 0 / 0 in the
            stretch).
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
    tokens = DEFAULT_SCHEDULER_TOKENS if tokens is None else tokens
    if isinstance(tokens, bool) or not isinstance(tokens, (int, np.integer)) or tokens < 1:
        raise ValueError(f"tokens must be a positive integer (F' * H' * W' latent cells); got {tokens!r}")
    if not 0.0 < terminal < 1.0:
        raise ValueError(f"terminal must be in (0, 1); got {terminal}")
    sigmas = _linspace_1_to_0(steps + 1)
    e = _F32(np.exp(dev_shift(int(tokens), max_shift, base_shift)))  # math.exp in double, used as float32
    with np.errstate(divide="ignore"):
        # `e / (e + (1 / s - 1))`: torch evaluates `scalar / tensor` as `reciprocal(tensor) * scalar`.
        shifted = (_F32(1.0) / (e + ((_F32(1.0) / sigmas) - _F32(1.0)))) * e
    sigmas = np.where(sigmas != 0, shifted, _F32(0.0)).astype(_F32)
    if stretch:
        nz = sigmas != 0
        one_minus = _F32(1.0) - sigmas[nz]
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = one_minus[-1] / _F32(1.0 - terminal)
            sigmas[nz] = _F32(1.0) - one_minus / scale
    if not np.isfinite(sigmas).all():
        raise ValueError(f"the dev schedule for steps={steps}, tokens={tokens} is undefined (0/0 in the terminal "
                         "stretch, as in the official scheduler); use steps >= 2 or stretch=False")
    return sigmas


def distilled_sigmas(stage: int) -> np.ndarray:
    """The distilled schedule for stage 1 (`[9]`, 8 steps) or stage 2 (`[4]`, 3 steps), float32."""
    if stage not in (1, 2):
        raise ValueError(f"the distilled pipeline has stages 1 and 2; got {stage!r}")
    return np.asarray(DISTILLED_STAGE1_SIGMAS if stage == 1 else DISTILLED_STAGE2_SIGMAS, dtype=_F32)
