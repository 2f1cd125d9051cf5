"""`generate`'s progress: the plan up front, a bar per denoising stage with steps/s, a line per phase, and the
timings (wall and compile time per phase) for the sidecar. Drawn with rich.

No ltx_core counterpart (the official loops wrap their steps in tqdm). Compile time is attributed to the phase
running when JAX reports it (`jax.monitoring` events for tracing, lowering and backend compilation, which
includes reading an executable back from the persistent cache); cache hits and misses are counted too. A phase's
compile time is the length of the union of its events' intervals [end - duration, end], clipped to the phase:
tracing events nest (an outer jit's trace includes its inner jits' traces, each reported too), so a plain sum
counted them twice and could exceed the phase's wall time (measured: 33.2 s of "compile" in a 17.7 s phase).
"""

from __future__ import annotations

import time
from typing import Any

import jax

__all__ = ["Reporter", "format_plan"]

_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_ACTIVE: list[Reporter] = []
_REGISTERED = False


def _on_duration(event: str, duration: float, **_: Any) -> None:
    if event in _COMPILE_EVENTS:
        for r in _ACTIVE:
            r._compile(event, duration)


def _on_event(event: str, **_: Any) -> None:
    for r in _ACTIVE:
        if event == "/jax/compilation_cache/cache_hits":
            r.cache["hits"] += 1
        elif event == "/jax/compilation_cache/cache_misses":
            r.cache["misses"] += 1


def _union_length(spans: list[tuple[float, float]]) -> float:
    """Total length covered by the intervals `spans` (overlaps counted once)."""
    total, reach = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b > reach:
            total += b - max(a, reach)
            reach = b
    return total


def _register() -> None:
    global _REGISTERED
    if not _REGISTERED:
        jax.monitoring.register_event_duration_secs_listener(_on_duration)
        jax.monitoring.register_event_listener(_on_event)
        _REGISTERED = True


_STAGE_LABEL = {"stage1": "stage 1", "stage2": "stage 2"}


class Reporter:
    """Phase listener (`ltx_jax.pipelines.phases`) and sampler progress callback.

    Attributes:
        timings: {phase: {"wall_s", "compile_s"}} in the order the phases ran.
        cache: persistent compilation cache {"hits", "misses"}.
    """

    def __init__(self, quiet: bool = False):
        from rich.console import Console

        self.quiet = quiet
        self.console = Console(stderr=True, quiet=quiet, highlight=False)
        if not self.console.is_terminal:  # logs and pipes: wide enough for the plan table on one line per stage
            self.console.width = max(self.console.width, 140)
        self.timings: dict[str, dict[str, float]] = {}
        self.cache = {"hits": 0, "misses": 0}
        self._stack: list[tuple[str, float]] = []
        self._intervals: dict[str, list[tuple[float, float]]] = {}  # compile events per phase, perf_counter times
        self._progress = None
        self._task = None
        self._steps: dict[str, int] = {}

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def __enter__(self) -> Reporter:
        _register()
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc) -> None:
        self._close_bar()
        _ACTIVE.remove(self)

    def line(self, text: str) -> None:
        self.console.print(text)

    # -- phases ------------------------------------------------------------------------------------------------
    def start(self, name: str) -> None:
        self._stack.append((name, time.perf_counter()))
        entry = self.timings.setdefault(name, {"wall_s": 0.0, "compile_s": 0.0})
        entry.setdefault("start_s", round(time.perf_counter() - self._t0, 3) if hasattr(self, "_t0") else 0.0)

    def end(self, name: str, failed: bool) -> None:
        started_name, t = self._stack.pop()
        wall = time.perf_counter() - t
        entry = self.timings[name]
        entry["wall_s"] = round(entry["wall_s"] + wall, 3)
        self._close_bar()
        compile_s = entry["compile_s"]
        steps = self._steps.get(name)
        rate = ""
        if steps:
            run = max(wall - compile_s, 1e-9)
            entry["steps"] = steps
            entry["steps_per_s"] = round(steps / run, 3)
            rate = f", {steps} evaluations at {steps / run:.2f}/s"
        status = "[red]failed[/red] " if failed else ""
        self.line(f"{status}{_STAGE_LABEL.get(name, name)}: {wall:.2f} s (compile {compile_s:.2f} s{rate})")

    def mark_start(self) -> None:
        self._t0 = time.perf_counter()

    def _compile(self, event: str, duration: float) -> None:
        if self._stack:
            name, started = self._stack[-1]
            end = time.perf_counter()
            spans = self._intervals.setdefault(name, [])
            spans.append((max(end - duration, started), end))
            self.timings[name]["compile_s"] = round(_union_length(spans), 3)

    # -- sampler progress --------------------------------------------------------------------------------------
    def progress(self, step: int, total: int, sigma: float) -> None:
        """`Callbacks.progress`: one tick per model evaluation of the current stage."""
        name = self._stack[-1][0] if self._stack else "denoise"
        if self._progress is None and not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[rate]}"), TextColumn("sigma {task.fields[sigma]}"),
                                      TimeElapsedColumn(), console=self.console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task(_STAGE_LABEL.get(name, name), total=total, rate="", sigma="")
            self._first = time.perf_counter()
        self._steps[name] = step + 1
        if self._progress is not None:
            done = step + 1
            elapsed = time.perf_counter() - self._first
            rate = f"{(done - 1) / elapsed:.2f} steps/s" if done > 1 and elapsed > 0 else ""
            self._progress.update(self._task, completed=done, total=total, rate=rate, sigma=f"{sigma:.4f}")

    def _close_bar(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress, self._task = None, None


def format_plan(plan, memory, cache_note: str) -> Any:
    """A rich table of the plan: stages with sizes and token counts, memory per device, compilation."""
    from rich.table import Table

    from ltx_jax.pipelines.memory import GiB

    t = Table(title=f"ltx-jax generate: {plan.pipeline} pipeline", show_header=True, header_style="bold")
    for col in ("stage", "frames x H x W", "latent grid", "video tokens", "audio tokens", "text tokens", "passes",
                "evaluations"):
        t.add_column(col, justify="right" if col not in ("stage", "frames x H x W") else "left")
    for st in plan.stages:
        t.add_row(st.name, f"{st.frames} x {st.height} x {st.width}", "x".join(map(str, st.grid)),
                  str(st.video_tokens), str(st.audio_tokens), str(plan.text_tokens), str(st.passes),
                  str(st.evaluations))
    mesh = ",".join(f"{k}={v}" for k, v in plan.mesh.items())
    phases = ", ".join(f"{k} {memory.total(k) / GiB:.2f}" for k in memory.phases)
    cap = "unknown" if memory.capacity is None else f"{memory.capacity / GiB:.1f} GiB ({memory.capacity_source})"
    t.caption = (f"mesh {mesh} on {plan.devices} device(s), weights {plan.weights}, attention {plan.attention}, "
                 f"fp8 {plan.fp8}, {plan.dtype}\nestimated memory per device (GiB): {phases}; peak "
                 f"{memory.peak / GiB:.2f} GiB in {memory.peak_phase}; capacity {cap}\n{cache_note}")
    return t
