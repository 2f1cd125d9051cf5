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
    # "auto": the kernel by backend (cudnn on GPU, xla elsewhere) and, under a mesh, the best sequence-parallel
    # strategy; "xla" / "cudnn" force a kernel; "gspmd" / "ulysses" / "ring" / "hybrid" force a strategy
    # (`ltx_jax.parallel`) with the kernel picked by backend.
    attention: str = "auto"
    remat: bool = False
    # FP8 files: "off" restores them dequantized in param_dtype; "weights" keeps e4m3 weights and dequantizes
    # in the compute dtype at matmul time; "scaled" runs the official static scaled matmul (ltx_jax.nn.fp8).
    fp8: str = "off"

    _FP8 = ("off", "weights", "scaled")
    _ATTENTION = ("auto", "xla", "cudnn", "gspmd", "ulysses", "ring", "hybrid")

    @property
    def kernel(self) -> str:
        """The local attention kernel request ("auto", "xla" or "cudnn")."""
        return self.attention if self.attention in ("xla", "cudnn") else "auto"

    def __post_init__(self):
        if self.attention not in self._ATTENTION:
            raise ConfigError(f"Runtime.attention={self.attention!r}; supported: {self._ATTENTION}")
        if self.fp8 not in self._FP8:
            raise ConfigError(f"Runtime.fp8={self.fp8!r}; supported: {self._FP8}")
