"""Parity of LoRA merging against a LoRA fixture directory (docs/reference-fixtures-lora.md).

For every case of the manifest's `cases` (`{"loras": [[file, strength], ...], "ledger_dtype": "torch.float32" |
"torch.bfloat16" | null, "quantization": null | "fp8_cast", "fp8_cast": bool, ...}`; configs and cases are read from
the files, never assumed) merges the LoRAs into the checkpoint's weights as ltx-core's loader fuses them and
compares the recorded weights `lora.<case>.weight.*` bit for bit, including the fp8-cast cases (the bf16 file cast
to e4m3 without scales, as ltx-core's `fp8_cast` policy loads it). The fused transformer's velocities
`lora.<case>.out.*` are compared for float32 and bfloat16 ledgers. Our builder's extra case `fp8scaled_ab` (the
official pre-quantized FP8 file of the main fixture, `manifest.scaled_fp8`) is compared bit for bit when that file
is found. Counterpart: ltx_core `loader/fuse_loras.py` via `SingleGPUModelBuilder` with `loras=`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from ltx_jax.checkpoint.loader import restore
from ltx_jax.checkpoint.lora import LoraMerged
from ltx_jax.checkpoint.schema import TRANSFORMER_PREFIX
from ltx_jax.checkpoint.source import SafetensorsSource, Source, TensorSpec
from ltx_jax.parity import Check, Fixture, FixtureError
from ltx_jax.parity.transformer import (BF16, BOUND_BF16, BOUND_F32, F32, TRANSFORMER_INPUTS, _modality,
                                       velocity_and_x0)
from ltx_jax.transformer import Perturbations

_DTYPES = {"torch.float32": np.dtype(np.float32), "torch.bfloat16": np.dtype(ml_dtypes.bfloat16)}
_RUNTIMES = {"torch.float32": (F32, jnp.float32, BOUND_F32), "torch.bfloat16": (BF16, jnp.bfloat16, BOUND_BF16)}
# ltx-core's fp8-cast load map (TRANSFORMER_LINEAR_DOWNCAST_MAP): these block Linears, weight and bias, to e4m3.
FP8_CAST = re.compile(r"transformer_blocks\.\d+\..*(to_q|to_k|to_v|to_out\.0|ff\.net\.0\.proj|ff\.net\.2)\.(weight|bias)$")
FP8_FILE = "ltx_transformer_fp8.safetensors"


class FP8Cast(Source):
    """A bf16 checkpoint as ltx-core's fp8-cast policy loads it: the block Linears cast to e4m3, no scales."""

    def __init__(self, base: Source):
        self.base, self.name, self.metadata = base, base.name, base.metadata
        e4m3 = np.dtype(ml_dtypes.float8_e4m3fn)
        self._specs = {k: TensorSpec(s.shape, e4m3) if FP8_CAST.search(k) else s for k, s in base.specs().items()}

    def specs(self):
        return self._specs

    def read(self, key, index=None):
        return self.base.read(key, index).astype(self._specs[key].dtype)


def _fp8_cast(case: dict) -> bool:
    return case.get("quantization") == "fp8_cast" or bool(case.get("fp8_cast"))


def _cases(fx: Fixture) -> dict[str, dict]:
    """The manifest's LoRA cases (a TAE fixture's `cases` is a list, and is not ours)."""
    cases = fx.manifest.get("cases")
    if fx.kind != "ltx" or not isinstance(cases, dict):
        return {}
    return {n: c for n, c in cases.items() if isinstance(c, dict) and "loras" in c}


def _ledger(case: dict) -> str | None:
    dtype = case.get("ledger_dtype")
    return None if dtype in (None, "None") else dtype


def _merged(fx: Fixture, base: Source, case: dict) -> LoraMerged:
    loras = [(fx.path / f, float(s)) for f, s in case["loras"]]
    dtype = _ledger(case)
    if dtype is not None and dtype not in _DTYPES:
        raise FixtureError(f"ledger dtype {dtype!r} is not one of {sorted(_DTYPES)} (or null)")
    if _fp8_cast(case):  # the quantized path builds without a dtype: each tensor keeps (or gets) its own
        return LoraMerged(FP8Cast(base), loras)
    return LoraMerged(base, loras, dtype=None if dtype is None else _DTYPES[dtype])


def _fp8_file(fx: Fixture) -> Path | None:
    main = fx.manifest.get("main_fixture")
    for cand in ([fx.path / FP8_FILE] + ([fx.path.parent / main / FP8_FILE, Path(main) / FP8_FILE] if main else [])):
        if cand.is_file():
            return cand
    return None


def _scaled(fx: Fixture) -> Iterator[tuple[str, np.ndarray, float]]:
    meta, path = fx.manifest.get("scaled_fp8"), _fp8_file(fx)
    if not isinstance(meta, dict) or path is None:
        return
    merged = LoraMerged(SafetensorsSource(path), [(fx.path / f, float(s)) for f, s in meta["loras"]],
                        dtype=np.dtype(ml_dtypes.bfloat16))
    for array in fx.names(r"^lora\.fp8scaled_ab\.weight\."):
        key = TRANSFORMER_PREFIX + array[len("lora.fp8scaled_ab.weight."):]
        if key not in merged.targets and merged.specs()[key].dtype == np.dtype(ml_dtypes.float8_e4m3fn):
            yield array, None, ("no LoRA targets this scaled-FP8 weight: the builder called apply_loras outside a "
                                "loader, which casts it to bf16 without its scale (raw e4m3 values, [in, out]); a "
                                "loader keeps it with its scale, as we do, so that cast is not reproduced")
            continue
        yield array, merged.read(key).astype(np.float32), 0.0
        scale = f"lora.fp8scaled_ab.weight_scale.{key[len(TRANSFORMER_PREFIX):]}"
        if scale in fx:
            yield scale, merged.read(key[: -len("weight")] + "weight_scale").astype(np.float32).reshape(1), 0.0


def _run(fx: Fixture) -> Iterator[tuple[str, np.ndarray, float]]:
    ckpt = fx.path / "ltx_checkpoint.safetensors"
    source = SafetensorsSource(ckpt)
    layers = fx.manifest["config"]["transformer"]["num_layers"]
    if fx.mesh is not None:  # the fused weights are numpy; the fused DiT's velocities run sharded (velocity_and_x0)
        from ltx_jax.parity.mesh import HOST
        fx.mesh.note(HOST, r"^lora\.[^.]+\.weight(_scale)?\.")
    for name, case in _cases(fx).items():
        merged = _merged(fx, source, case)
        for array in fx.names(rf"^lora\.{re.escape(name)}\.weight\."):
            key = TRANSFORMER_PREFIX + array[len(f"lora.{name}.weight."):]
            yield array, merged.read(key).astype(np.float32), 0.0  # the fusion is reproduced bit for bit
        dtype = _ledger(case)
        if _fp8_cast(case) or dtype not in _RUNTIMES or not fx.names(rf"^lora\.{re.escape(name)}\.out\."):
            continue
        runtime, act, bound = _RUNTIMES[dtype]
        loras = [(fx.path / f, float(s)) for f, s in case["loras"]]
        dit = nnx.split(restore(ckpt, "transformer", runtime=runtime, loras=loras))
        video, audio = _modality(fx, "video", act), _modality(fx, "audio", act)
        v, a, _, _ = velocity_and_x0(fx, dit, video, audio, Perturbations.none(layers, video.latent.shape[0]))
        yield f"lora.{name}.out.video_velocity", np.asarray(v, np.float32), bound
        yield f"lora.{name}.out.audio_velocity", np.asarray(a, np.float32), bound
    yield from _scaled(fx)


def _covers(fx: Fixture) -> bool:
    return bool(_cases(fx)) and (fx.path / "ltx_checkpoint.safetensors").is_file()


CHECKS = [Check("lora", _covers, _run, covers=r"^lora\.", inputs=TRANSFORMER_INPUTS)]

NOT_CHECKED = [
    (r"^lora\.fp8cast_[a-z0-9]+\.out\.", "outputs of ltx-core's fp8_cast policy (e4m3 weights without scales, "
                                         "upcast per Linear) are not a path of ours; its merged weights are compared"),
    (r"^lora\.fp8scaled_ab\.", "needs the main fixture's FP8 file (manifest main_fixture), which is not found"),
]
