"""Runtime choices, as opposed to what the model is: dtypes, kernels, remat. Passed to every module.

No ltx_core counterpart as one object (ltx-core passes `dtype` and the attention function separately).
"""

from __future__ import annotations

from dataclasses import dataclass

from ltx_jax.configs.base import ConfigError

__all__ = ["Runtime"]


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """How to run, as opposed to what the model is: dtypes, kernels, remat. Passed to modules."""

    param_dtype: str = "bfloat16"
    compute_dtype: str = "bfloat16"
    attention: str = "auto"  # "auto" picks by backend: cudnn on GPU, xla elsewhere
    remat: bool = False

    _ATTENTION = ("auto", "xla", "cudnn")

    def __post_init__(self):
        if self.attention not in self._ATTENTION:
            raise ConfigError(f"Runtime.attention={self.attention!r}; supported: {self._ATTENTION}")
