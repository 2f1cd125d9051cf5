"""The array recorder: every fixture array goes through `Recorder.add`, which remembers its torch dtype."""

import numpy as np
import torch


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class Recorder:
    """Collects named arrays as float32 / int64 numpy arrays plus per-array metadata for the manifest."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.meta: dict[str, dict] = {}

    def add(self, name: str, value: torch.Tensor | float | int, note: str | None = None,
            torch_dtype: str | None = None, keep_float64: bool = False) -> torch.Tensor:
        """Stores `value` under `name` (float -> float32, integer/bool -> int64). Returns the tensor unchanged.

        `keep_float64=True` stores a float64 tensor as float64 (the loop fixtures' res_2s arrays).
        """
        if name in self.arrays:
            raise KeyError(f"array {name!r} recorded twice")
        t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
        src = dtype_name(t.dtype)
        t = t.detach().cpu()
        if keep_float64 and t.dtype == torch.float64:
            arr = t.numpy().copy()
        elif t.is_floating_point():
            arr = t.to(torch.float32).numpy().copy()
        elif t.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool):
            arr = t.to(torch.int64).numpy().copy()
        else:
            raise TypeError(f"{name}: unsupported dtype {t.dtype}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise FloatingPointError(f"array {name!r} has non-finite values")
        self.arrays[name] = arr
        m = {"shape": list(arr.shape), "dtype": str(arr.dtype), "torch_dtype": torch_dtype or src}
        if arr.dtype.kind == "f" and arr.size:
            m["max_abs"] = float(np.abs(arr).max())
            m["std"] = float(arr.astype(np.float64).std())
        if note:
            m["note"] = note
        self.meta[name] = m
        return value if isinstance(value, torch.Tensor) else t

    def save(self, path: str) -> None:
        np.savez(path, **self.arrays)
