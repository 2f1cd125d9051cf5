"""Parity of the schedules: every sigma list a fixture records is an output we compute, bit for bit.

Counterparts: ltx_core `LTX2Scheduler.execute` (`sched.dev.stepsNN.tokens_*`, the dev runs' `<run>.sigmas`),
ltx_pipelines `utils/constants.py` (`DISTILLED_SIGMA_VALUES`, `STAGE_2_DISTILLED_SIGMA_VALUES`: `sched.distilled.*`,
`loop.<stage>.sigmas`, the distilled runs' `<run>.sigmas`) and `utils/res2s.py` / `samplers.py`
(`res2s.loop_sigmas`, `res2s.coeffs`). Which schedule a run uses is the format's (docs/reference-fixtures-loops.md):
`guided` the default-token dev schedule, `i2v.*` and `keyframe` the distilled stage-1 list, `res2s` the dev schedule
of its own latent's token count; the step count is the config, read from the recorded array's length.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np

from ltx_jax.parity import Check, Fixture, FixtureError

__all__ = ["CHECKS", "run_schedule", "RUN_SCHEDULE", "COEFF_BOUND"]

# float64 coefficient table: same formulas, libm vs torch's double math (measured 0 on CPU; a few ulps allowed)
COEFF_BOUND = 1e-14
# run -> (schedule kind): "dev" (4096 tokens), "dev_tokens" (the run's own latent token count), "distilled"
RUN_SCHEDULE = {"guided": "dev", "i2v.s100": "distilled", "i2v.s050": "distilled", "keyframe": "distilled",
                "res2s": "dev_tokens"}
_TOKENS = {"default": None}


def _sched_name(name: str) -> np.ndarray:
    from ltx_jax.sampling import dev_sigmas, distilled_sigmas

    if m := re.fullmatch(r"sched\.dev\.steps(\d+)\.tokens_(default|\d+)", name):
        steps, tokens = int(m.group(1)), m.group(2)
        return dev_sigmas(steps, None if tokens == "default" else int(tokens))
    if m := re.fullmatch(r"sched\.distilled\.stage([12])", name):
        return distilled_sigmas(int(m.group(1)))
    raise FixtureError(f"{name}: not a schedule name of the format (sched.dev.stepsNN.tokens_X, "
                       "sched.distilled.stage1/2)")


def run_schedule(fx: Fixture, run: str) -> np.ndarray:
    """Our schedule for a loop-fixture run (the step count from the recorded `<run>.sigmas`' length)."""
    from ltx_jax.sampling import dev_sigmas, distilled_sigmas

    kind = RUN_SCHEDULE.get(run)
    steps = fx[f"{run}.sigmas"].shape[0] - 1
    if kind == "distilled":
        return distilled_sigmas(1)
    if kind == "dev":
        return dev_sigmas(steps)
    if kind == "dev_tokens":  # the latent of the run's stage: F' * H' * W' of its output latent [B, C, F, H, W]
        return dev_sigmas(steps, int(np.prod(fx[f"{run}.out.video_latent"].shape[2:])))
    raise FixtureError(f"run {run!r}: the format fixes no schedule for it")


def _res2s(fx: Fixture, sigmas: np.ndarray) -> Iterator[tuple[str, np.ndarray, float]]:
    from ltx_jax.sampling.steps import res2s_plan

    plan = res2s_plan(sigmas)
    if "res2s.loop_sigmas" in fx:
        yield "res2s.loop_sigmas", plan.loop_sigmas, 0.0
    if "res2s.coeffs" in fx:
        cols = [plan.column(c) for c in ("h", "a21", "b1", "b2", "sub_sigma")]
        yield "res2s.coeffs", np.stack(cols, axis=1), COEFF_BOUND


def _run(fx: Fixture) -> Iterator[tuple[str, np.ndarray, float]]:
    from ltx_jax.sampling import distilled_sigmas

    if fx.mesh is not None:  # under a mesh too: schedules are numpy
        from ltx_jax.parity.mesh import HOST
        fx.mesh.note(HOST)

    for name in fx.names(r"^sched\."):
        yield name, _sched_name(name), 0.0
    for stage in (1, 2):
        for name in (f"loop.stage{stage}.sigmas", f"loop.sigmas.stage{stage}"):
            if name in fx:
                yield name, distilled_sigmas(stage), 0.0
    for run in RUN_SCHEDULE:
        if f"{run}.sigmas" in fx:
            ours = run_schedule(fx, run)
            yield f"{run}.sigmas", ours, 0.0
            if run == "res2s":
                yield from _res2s(fx, ours)


_COVERS = (r"^sched\.|^loop\.(stage[12]\.sigmas|sigmas\.stage[12])$|^(guided|i2v\.s\d+|keyframe|res2s)\.sigmas$"
           r"|^res2s\.(loop_sigmas|coeffs)$")

CHECKS = [Check("schedules", lambda fx: bool(fx.names(_COVERS)), _run, covers=_COVERS)]
