"""The resumable step loop the world's trainers share (VAE, audio, distillation): restore, step, log, checkpoint.

No ltx_core counterpart. The state is one `training.step.TrainState` pytree saved with Orbax
(`training.checkpoints.TrainCheckpoints`) under `out/checkpoints`; the per-step metrics go to `out/loss.jsonl`,
first cut back to the restored step (steps run after the last checkpoint are run again, so the file holds one
line per step). Each step's data and draws must be a function of (seed, step), so a resumed run continues the
uninterrupted curve.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp

from ltx_jax.training.checkpoints import TrainCheckpoints
from ltx_jax.training.step import TrainState, make_optimizer

__all__ = ["run_steps", "initial_state"]


def initial_state(params, optim, seed: int) -> TrainState:
    """Step 0 of a run: `params`, fresh optimizer moments for `optim` (an `OptimConfig`), the run's key, every
    array committed to the default device. (Uncommitted step / key arrays would be placed differently from the
    step's outputs, and the jitted step would compile twice: 30-50 s each on 2 cores.)"""
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                       opt_state=jax.jit(make_optimizer(optim).init)(params), ema=None,
                       key=jax.random.key_data(jax.random.key(seed)))
    return jax.device_put(state, jax.devices()[0])


def _truncate_curve(path: Path, step: int) -> None:
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)


def run_steps(out: Path, state: TrainState, record: dict, step: Callable[[TrainState, int], tuple[TrainState, dict]],
              *, total: int, save_every: int, stop_after: int | None = None, label: str = "step",
              log: Callable[[str], None] = print) -> tuple[TrainState, dict[int, float], float]:
    """Resume from `out/checkpoints` if it holds a state (refused if its `record` differs), then run steps up to
    `total`, or `stop_after` steps of this call; returns (state, {step: loss}, seconds).

    Args:
        step: `(state, s) -> (state, metrics)` for step index s (metrics hold "loss"; scalars).
    """
    ckpt = TrainCheckpoints(out / "checkpoints", keep=2, async_save=False)
    if ckpt.latest_step() is not None:
        state = ckpt.restore(state, record)
        log(f"resumed at step {int(state.step)}")
    start, t0, losses = int(state.step), time.perf_counter(), {}
    end = total if stop_after is None else min(total, start + stop_after)
    _truncate_curve(out / "loss.jsonl", start)
    try:
        with open(out / "loss.jsonl", "a") as curve:
            for s in range(start, end):
                state, metrics = step(state, s)
                metrics = {k: float(v) for k, v in metrics.items()}
                losses[s + 1] = metrics["loss"]
                curve.write(json.dumps({"step": s + 1, **metrics}) + "\n")
                if (s + 1) % 50 == 0 or s + 1 == end:
                    curve.flush()
                    log(f"{label} {s + 1}/{total} loss {metrics['loss']:.4f} ({time.perf_counter() - t0:.0f} s)")
                if (s + 1) % save_every == 0 or s + 1 == end:
                    ckpt.save(state, record, force=True)
        ckpt.wait()
    finally:
        ckpt.close()
    return state, losses, round(time.perf_counter() - t0, 1)
