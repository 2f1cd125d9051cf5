"""Resumable training checkpoints with Orbax: atomic, asynchronous, keeping the last N.

Counterpart: ltx-trainer `_save_checkpoint` / `_load_checkpoint` (there: the LoRA weights only, so a resumed
run restarts the optimizer and data order). Here the whole `TrainState` is saved (step, float32 trained
parameters, optimizer moments, EMA, the run's key) plus a JSON record of what the run was (seed, data
identity, trained-parameter paths), so a resumed run continues the same loss curve: the per-step key is
`fold_in(key, step)` and the data order is a function of (seed, step).

Orbax's `CheckpointManager` writes each step under a temporary name and renames it when complete, so an
interrupted save leaves nothing that `latest_step` returns; saves run in a background thread
(`wait()` joins them) and only the last `keep` steps stay on disk. Leaves are stored under flat names
(`00000`, ...) with their tree paths in the JSON record, so restoring checks that the tree is the same.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from ltx_jax.training.step import TrainState

__all__ = ["CheckpointMismatch", "TrainCheckpoints"]


class CheckpointMismatch(ValueError):
    """A checkpoint that belongs to a different run (other trained parameters, seed or data)."""


def _flat(state: TrainState) -> tuple[dict[str, Any], list[str], Any]:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    arrays = {f"{i:05d}": leaf for i, (_, leaf) in enumerate(leaves)}
    return arrays, [jax.tree_util.keystr(p) for p, _ in leaves], treedef


class TrainCheckpoints:
    """`save(state, record)` every so often, `restore(like)` at start-up.

    Args:
        directory: where steps go (`<directory>/<step>/`).
        keep: how many recent steps to keep.
        async_save: write in the background (the next train steps run meanwhile).
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3, async_save: bool = True):
        if keep < 1:
            raise ValueError(f"checkpoint keep={keep} must be >= 1")
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                               create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "record"))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, state: TrainState, record: dict[str, Any], *, force: bool = False) -> bool:
        arrays, paths, _ = _flat(state)
        step = int(jax.device_get(state.step))
        return self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(arrays), record=ocp.args.JsonSave({**record, "paths": paths, "step": step})),
            force=force)

    def restore(self, like: TrainState, record: dict[str, Any], step: int | None = None) -> TrainState:
        """The saved state at `step` (default: latest), placed like `like` (same shardings and dtypes).

        Raises:
            CheckpointMismatch: the tree paths or the record (seed, data, ...) differ from this run's.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
        arrays, paths, treedef = _flat(like)
        saved = self._manager.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))["record"]
        if saved.get("paths") != paths:
            raise CheckpointMismatch(f"checkpoint {self.directory}/{step} holds a different training state "
                                     "(trained parameters or optimizer differ from this run's)")
        for k, v in record.items():
            if saved.get(k) != v:
                raise CheckpointMismatch(f"checkpoint {self.directory}/{step} has {k}={saved.get(k)!r}; this run has "
                                         f"{v!r} (resume with the same settings, or use another output directory)")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, arrays)
        out = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
        return jax.tree_util.tree_unflatten(treedef, [out[k] for k in sorted(arrays)])

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
