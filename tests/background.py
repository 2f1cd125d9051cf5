"""A second lane for the suite's slowest subprocess fixtures, so that they overlap the rest of the run.

Why: the slowest tests (the world reproduce runs, the 8-device sharding scripts) are fresh Python subprocesses whose
time is mostly single-threaded XLA compilation. Run where pytest reaches them, they leave the second core of a
2-core CI machine idle for about 10 minutes. Here a test module registers its subprocess with `register` when it
is imported (collection); once collection is done, the jobs of the selected modules run one at a time, in
registration order, beside the main pytest process; a fixture asks for its job's `result` (waiting if it is still
running, starting it at once if it never started). The lane moves on at each test's set-up. Outputs go to
temporary files (no pipe can fill up), removed at the end of the session, when any job still running is killed.
Results are the same as running the subprocess in place: each job is the same command in the same environment.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["register", "result", "scratch", "start_selected", "advance", "stop_all"]

_JOBS: dict[str, dict] = {}   # name -> {"argv", "env", "cwd", "timeout", "module"}
_QUEUE: list[str] = []        # selected, not yet started
_RUNNING: dict[str, tuple[subprocess.Popen, Path, float]] = {}
_DONE: dict[str, subprocess.CompletedProcess] = {}
_DIR = Path(tempfile.mkdtemp(prefix="ltx-tests-lane-"))


def scratch(name: str) -> Path:
    """A fresh folder for a job's files (removed at the end of the session)."""
    path = _DIR / name
    path.mkdir(parents=True, exist_ok=False)
    return path


def register(name: str, module: str, argv: list[str], *, env: dict | None = None, cwd: str | Path | None = None,
             timeout: float) -> None:
    """Declare the job `name` of test module `module` (its `__name__`)."""
    if name in _JOBS:
        raise ValueError(f"background job {name!r} registered twice")
    _JOBS[name] = {"argv": argv, "env": env, "cwd": cwd, "timeout": timeout, "module": module}


def _start(name: str) -> None:
    job = _JOBS[name]
    out = _DIR / f"{name}.out"
    with open(out, "w") as stdout, open(out.with_suffix(".err"), "w") as stderr:
        proc = subprocess.Popen(job["argv"], stdout=stdout, stderr=stderr, env=job["env"], cwd=job["cwd"], text=True)
    _RUNNING[name] = (proc, out, time.monotonic())


def _collect(name: str, timeout: float | None) -> None:
    proc, out, t0 = _RUNNING[name]
    budget = _JOBS[name]["timeout"] - (time.monotonic() - t0) if timeout is None else timeout
    try:
        proc.wait(timeout=max(budget, 0.0))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        del _RUNNING[name]
        raise
    del _RUNNING[name]
    _DONE[name] = subprocess.CompletedProcess(_JOBS[name]["argv"], proc.returncode, out.read_text(),
                                              out.with_suffix(".err").read_text())


def advance() -> None:
    """Collect a finished job and start the next queued one (at most one job runs beside pytest)."""
    for name in list(_RUNNING):
        if _RUNNING[name][0].poll() is not None:
            _collect(name, 0.0)
    if not _RUNNING and _QUEUE:
        _start(_QUEUE.pop(0))


def start_selected(modules: set[str]) -> None:
    """Queue the jobs of the collected test modules and start the first."""
    _QUEUE[:] = [n for n, job in _JOBS.items() if job["module"] in modules and n not in _DONE and n not in _RUNNING]
    advance()


def result(name: str) -> subprocess.CompletedProcess:
    """The finished job `name` (run now if it never started); raises subprocess.TimeoutExpired past its timeout."""
    if name in _QUEUE:
        _QUEUE.remove(name)
    if name not in _DONE and name not in _RUNNING:
        _start(name)
    if name in _RUNNING:
        _collect(name, None)
    advance()
    return _DONE[name]


def stop_all() -> None:
    for proc, _, _ in _RUNNING.values():
        proc.kill()
        proc.wait()
    _RUNNING.clear()
    _QUEUE.clear()
    shutil.rmtree(_DIR, ignore_errors=True)
