"""LoRA files in the official layout, checked strictly, and merged into base weights in the official order.

Counterpart: ltx_core `loader/fuse_loras.py` (`apply_loras`, `_prepare_deltas`, `_fuse_delta_with_*`) with
`LTXV_LORA_COMFY_RENAMING_MAP` (`loader/sd_ops.py`). The merged weight is
`W + sum_i strength_i * (B_i @ A_i)`, no alpha or rank scaling, computed in the order and dtypes of
ltx-core 1.0.0 so that merged bf16 / fp8 weights are bit-identical to the official fusion:

  product_i = L(B_i * s_i) @ A_i, in the LoRA file's dtype L (f32 accumulation, then rounded to L)
  delta     = D(sum_i D(product_i))  with D the delta dtype: the target dtype T, or bf16 when T is FP8
  fused     = T(D(delta + W))        bf16 / fp8-cast (no scale) / f16 / f32 bases
  fused     = requantize(f32(W) * weight_scale + f32(delta))   scaled FP8 bases: new weight and scale

T is the "ledger" dtype (`dtype=`), or each weight's own dtype when None. Products are formed in float64
and rounded to float32 before L: for the ranks in use the float64 sum is exact, which makes the result
independent of BLAS summation order and of how a sharded restore slices the weight.

Differences from ltx-core, on purpose (it ignores all of these silently; we raise `LoraError`):
keys that match no transformer weight (unknown module, block index out of range, text-connector targets,
the checkpoint's `model.diffusion_model.` prefix), an `A` without its `B`, Kohya names
(`lora_down` / `lora_up` / `.alpha`), DoRA magnitudes, and shape mismatches (ltx-core fails later with
a bare size error). ltx-core refuses float32 bases (`Unsupported dtype`); we merge them by the same rule.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import ml_dtypes
import numpy as np

from ltx_jax.convert.schema import TRANSFORMER_PREFIX
from ltx_jax.convert.source import FP8_DTYPES, Index, Source, TensorSpec, normalize_index, open_source

__all__ = ["LoraError", "LoraFile", "load_lora", "lora_product", "fuse", "requantize_fp8", "LoraMerged",
           "parse_lora_arg"]

FILE_PREFIX = "diffusion_model."  # what the trainer writes; ltx-core strips it wherever it appears
_PAIR = re.compile(r"^(?:diffusion_model\.)?(?P<path>.+)\.lora_(?P<ab>[AB])\.weight$")
_FP8_MAX = np.float32(448.0)  # torch.finfo(torch.float8_e4m3fn).max
BF16 = np.dtype(ml_dtypes.bfloat16)


class LoraError(ValueError):
    """A LoRA file that is not in the official layout or does not fit the base weights; names file and keys."""


@dataclass
class LoraFile:
    """One official LoRA file: `{module path: (A key, B key)}` with rank and shapes checked."""

    path: Path
    source: Source
    pairs: dict[str, tuple[str, str]]
    ranks: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.path)

    def target(self, module_path: str) -> str:
        """The base checkpoint key this pair merges into."""
        return f"{TRANSFORMER_PREFIX}{module_path}.weight"

    def shapes(self, module_path: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        a, b = self.pairs[module_path]
        specs = self.source.specs()
        return specs[a].shape, specs[b].shape


def _refusal(key: str) -> str | None:
    if re.search(r"lora_(down|up)\b|\.alpha$|lora_te|^lora_unet", key):
        return "Kohya-style key (lora_down / lora_up / alpha); the official layout is <path>.lora_A/lora_B.weight"
    if "lora_magnitude" in key:
        return "DoRA magnitude vector; ltx-core has no DoRA"
    return None


def load_lora(path: str | os.PathLike | Source) -> LoraFile:
    """Open a LoRA file and check its layout (pairs, 2-D, equal ranks). Nothing is read but the header.

    Raises:
        LoraError: keys that are not LoRA pairs in the official layout, an `A` without `B` (or the reverse),
            or `A [r, in]` / `B [out, r]` shapes that disagree; the message names the file and the keys.
    """
    source = path if isinstance(path, Source) else open_source(path)  # a file, or a converted LoRA checkpoint
    name = source.name
    specs = source.specs()
    found: dict[str, dict[str, str]] = {}
    bad: list[str] = []
    for key in specs:
        why = _refusal(key)
        m = _PAIR.match(key)
        if why or not m:
            bad.append(f"{key} ({why or 'not a <path>.lora_A.weight / <path>.lora_B.weight key'})")
            continue
        found.setdefault(m["path"], {})[m["ab"]] = key
    problems = [f"{len(bad)} key(s) not in the official LoRA layout: " + "; ".join(bad[:6])] if bad else []
    lonely = [f"{p} has only lora_{next(iter(d))}" for p, d in found.items() if len(d) != 2]
    if lonely:
        problems.append("unpaired: " + ", ".join(lonely[:8]))
    pairs, ranks, shapes = {}, {}, []
    for p, d in found.items():
        if len(d) != 2:
            continue
        a, b = specs[d["A"]].shape, specs[d["B"]].shape
        if len(a) != 2 or len(b) != 2 or a[0] != b[1]:
            shapes.append(f"{p}: lora_A {a}, lora_B {b} (expected A [r, in], B [out, r])")
            continue
        if specs[d["A"]].dtype != specs[d["B"]].dtype:
            shapes.append(f"{p}: lora_A is {specs[d['A']].dtype}, lora_B {specs[d['B']].dtype}")
            continue
        pairs[p], ranks[p] = (d["A"], d["B"]), a[0]
    if shapes:
        problems.append("bad shapes: " + "; ".join(shapes[:8]))
    if not pairs and not problems:
        problems.append("no lora_A / lora_B pairs at all")
    if problems:
        raise LoraError(f"{name}: not a usable LoRA file: " + " | ".join(problems))
    return LoraFile(Path(name), source, pairs, ranks)


def check_targets(lora: LoraFile, base: Mapping[str, TensorSpec], base_name: str) -> None:
    """Every pair must hit a 2-D transformer weight `[out, in]` of `base` with `A [r, in]`, `B [out, r]`.

    Raises:
        LoraError: pairs that match no weight (with the reason when it is a known case) or mismatch in shape.
    """
    unmatched, wrong = [], []
    for p in lora.pairs:
        key = lora.target(p)
        (r, fan_in), (fan_out, _) = lora.shapes(p)
        # Connector weights share the DiT's file prefix, but ltx-core's connectors never get LoRAs.
        spec = None if "embeddings_connector" in p else base.get(key)
        if spec is None:
            hint = ""
            if "embeddings_connector" in p:
                hint = " (a text-connector layer: ltx-core builds the connectors without LoRAs)"
            elif p.startswith(("model.", TRANSFORMER_PREFIX)):
                hint = " (the checkpoint prefix; LoRA keys are diffusion_model.<path>)"
            unmatched.append(f"{p}{hint}")
        elif len(spec.shape) != 2 or spec.shape != (fan_out, fan_in):
            wrong.append(f"{p}: weight {spec.shape}, LoRA B@A {(fan_out, fan_in)} (rank {r})")
    parts = []
    if unmatched:
        parts.append(f"{len(unmatched)} pair(s) match no transformer weight of {base_name}: "
                     + ", ".join(unmatched[:8]) + (" ..." if len(unmatched) > 8 else ""))
    if wrong:
        parts.append(f"{len(wrong)} shape mismatch(es): " + "; ".join(wrong[:8]))
    if parts:
        raise LoraError(f"{lora.name}: " + " | ".join(parts))


def lora_product(a: np.ndarray, b: np.ndarray, strength: float) -> np.ndarray:
    """`torch.matmul(B * strength, A)` as ltx-core computes it, in the LoRA dtype: `[out, r] x [r, in]`."""
    dtype = a.dtype
    bs = (b.astype(np.float32) * np.float32(strength)).astype(dtype)  # torch: scalar op in f32, rounded
    return (bs.astype(np.float64) @ a.astype(np.float64)).astype(np.float32).astype(dtype)


def delta_dtype(target: np.dtype) -> np.dtype:
    return BF16 if np.dtype(target) in FP8_DTYPES else np.dtype(target)


def sum_deltas(products: Sequence[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """Each product cast to the delta dtype, then `torch.stack(...).sum(0)` (f32 accumulation)."""
    parts = [p.astype(dtype) for p in products]
    if len(parts) == 1:
        return parts[0]
    acc = parts[0].astype(np.float32)
    for p in parts[1:]:
        acc = acc + p.astype(np.float32)
    return acc.astype(dtype)


def fuse(weight: np.ndarray, delta: np.ndarray, target: np.dtype) -> np.ndarray:
    """Unscaled bases (bf16, f16, f32, fp8-cast): `T(D(delta + D(W)))`, one rounding per step as in torch."""
    d = delta.dtype
    return (delta.astype(np.float32) + weight.astype(d).astype(np.float32)).astype(d).astype(target)


def requantize_fp8(weight_f32: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ltx-core `quantize_weight_to_fp8_per_tensor`, in the file's `[out, in]` layout (no transpose)."""
    amax = np.abs(weight_f32).max().astype(np.float32)
    inv = (np.float32(np.float32(1.0) / amax) * _FP8_MAX).astype(np.float32)  # torch: 448 / t = t.reciprocal() * 448
    q = np.clip(weight_f32 * inv, -_FP8_MAX, _FP8_MAX).astype(ml_dtypes.float8_e4m3fn)
    return q, (np.float32(1.0) / inv).astype(np.float32).reshape(())


class LoraMerged(Source):
    """`base` with LoRAs merged into the transformer weights they target, on every read (whole or region).

    Args:
        base: the base checkpoint (official keys).
        loras: (LoRA file or path, strength) pairs, applied in this order.
        dtype: the target ("ledger") dtype T of merged weights, a callable key -> T, or None for each
            weight's own dtype.
    """

    def __init__(self, base: Source, loras: Sequence[tuple[LoraFile | str | os.PathLike, float]],
                 dtype: np.dtype | Callable[[str], np.dtype | None] | None = None):
        self.base, self.name, self.metadata = base, base.name, base.metadata
        self.loras = [(lf if isinstance(lf, LoraFile) else load_lora(lf), float(s)) for lf, s in loras]
        self._dtype = dtype if callable(dtype) else (lambda key, d=dtype: d)
        specs = base.specs()
        for lf, _ in self.loras:
            check_targets(lf, specs, base.name)
        active = [(lf, s) for lf, s in self.loras if s != 0.0]  # ltx-core skips all-zero strength sets
        self.targets: dict[str, list[tuple[LoraFile, str, float]]] = {}
        for lf, s in active:
            for p in lf.pairs:
                self.targets.setdefault(lf.target(p), []).append((lf, p, s))
        self._specs = dict(specs)
        for key in self.targets:
            if not self._scaled(key):
                self._specs[key] = TensorSpec(specs[key].shape, self.target_dtype(key))
        self._fp8_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def specs(self) -> Mapping[str, TensorSpec]:
        return self._specs

    def files(self) -> list[Path]:
        return self.base.files()

    def target_dtype(self, key: str) -> np.dtype:
        d = self._dtype(key)
        return np.dtype(d) if d is not None else self.base.specs()[key].dtype

    def _scale_key(self, key: str) -> str:
        return key[: -len(".weight")] + ".weight_scale"

    def _scaled(self, key: str) -> bool:
        return self.base.specs()[key].dtype in FP8_DTYPES and self._scale_key(key) in self.base.specs()

    def _delta(self, key: str, index: Index) -> np.ndarray:
        rows, cols = index
        products = []
        for lf, p, s in self.targets[key]:
            a_key, b_key = lf.pairs[p]
            a = lf.source.read(a_key, (slice(None), cols))
            b = lf.source.read(b_key, (rows, slice(None)))
            products.append(lora_product(a, b, s))
        return sum_deltas(products, delta_dtype(self.target_dtype(key)))

    def _merged_fp8(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if key not in self._fp8_cache:
                full = normalize_index(None, self.base.specs()[key].shape)
                w = self.base.read(key).astype(np.float32) * self.base.read(self._scale_key(key)).astype(np.float32)
                self._fp8_cache = {key: requantize_fp8(w + self._delta(key, full).astype(np.float32))}
            return self._fp8_cache[key]

    def read(self, key: str, index: Index | None = None) -> np.ndarray:
        if key.endswith(".weight_scale") and key[: -len("_scale")] in self.targets:
            return self._merged_fp8(key[: -len("_scale")])[1].copy()
        if key not in self.targets:
            return self.base.read(key, index)
        index = normalize_index(index, self.base.specs()[key].shape)
        if self._scaled(key):
            return np.array(self._merged_fp8(key)[0][index])
        return fuse(self.base.read(key, index), self._delta(key, index), self.target_dtype(key))

    def record(self) -> list[dict]:
        """What was merged, for the manifest."""
        return [{"file": lf.name, "strength": s, "pairs": len(lf.pairs),
                 "ranks": sorted(set(lf.ranks.values()))} for lf, s in self.loras]

    def close(self) -> None:
        for lf, _ in self.loras:
            lf.source.close()
        self.base.close()


def parse_lora_arg(text: str) -> tuple[str, float]:
    """`PATH` or `PATH:STRENGTH` (CLI form; strength defaults to 1.0)."""
    path, sep, strength = text.rpartition(":")
    if sep and path and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", strength):
        return path, float(strength)
    return text, 1.0
