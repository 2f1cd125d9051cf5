"""Named phases of a generation (stage 1, upsample, stage 2, decode, ...) for whoever listens.

No ltx_core counterpart (the official pipelines time nothing). The pipelines mark their phases with
`phase(name)`; the `generate` command listens (`listening(listener)`) to time them, attribute compile time
to them and draw progress. Without a listener a phase costs nothing and `settle` does not block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

import jax

__all__ = ["phase", "settle", "listening", "PhaseListener"]


class PhaseListener(Protocol):
    def start(self, name: str) -> None: ...

    def end(self, name: str, failed: bool) -> None: ...


_LISTENERS: list[PhaseListener] = []


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Mark the enclosed work as phase `name` (listeners get `start(name)` and `end(name, failed)`)."""
    for listener in _LISTENERS:
        listener.start(name)
    failed = True
    try:
        yield
        failed = False
    finally:
        for listener in reversed(_LISTENERS):
            listener.end(name, failed)


def settle(x: Any) -> Any:
    """`x`, after its computation finished when someone is timing phases (else returned at once, still async)."""
    if _LISTENERS:
        jax.block_until_ready(x)
    return x


@contextlib.contextmanager
def listening(listener: PhaseListener) -> Iterator[PhaseListener]:
    _LISTENERS.append(listener)
    try:
        yield listener
    finally:
        _LISTENERS.remove(listener)
