"""Errors of the checkpoint layer (each message names the file and the problem)."""

from __future__ import annotations

__all__ = ["LoadError"]


class LoadError(ValueError):
    """Checkpoint keys and module parameters do not match (missing, unexpected, wrong shape)."""
