"""Parity of LoRA merging against a LoRA fixture directory (docs/reference-fixtures-lora.md).

For every case the manifest lists (LoRA files with strengths, the ledger dtype), merges the LoRAs into the
checkpoint's weights as ltx-core's loader fuses them and compares the recorded weights (`lora.<case>.weight.*`,
expected bit-identical) and, for float32 ledgers, the fused transformer's velocities (`lora.<case>.out.*`).
Counterpart: ltx_core `loader/fuse_loras.py` via `SingleGPUModelBuilder` with `loras=`.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.checkpoint.lora import LoraMerged
from ltx_jax.checkpoint.loader import restore
from ltx_jax.checkpoint.schema import TRANSFORMER_PREFIX
from ltx_jax.checkpoint.source import SafetensorsSource
from ltx_jax.parity import Check, Fixture
from ltx_jax.parity.transformer import BOUND_F32, F32, _modality, _velocity_and_x0
from ltx_jax.transformer import Perturbations

_DTYPES = {"torch.float32": np.float32, "torch.bfloat16": "bfloat16"}


def _cases(fx: Fixture) -> dict[str, dict]:
    """Cases with a plain ledger dtype (fp8-cast cases are ltx-core's own downcast policy, not checked here)."""
    cases = fx.manifest.get("cases")
    if fx.kind != "ltx" or not isinstance(cases, dict):  # e.g. a TAE fixture lists its cases differently
        return {}
    return {name: c for name, c in cases.items()
            if isinstance(c, dict) and "loras" in c and not c.get("fp8_cast") and c.get("ledger_dtype") in _DTYPES}


def _run(fx: Fixture) -> Iterator[tuple[str, np.ndarray, float]]:
    ckpt = fx.path / "ltx_checkpoint.safetensors"
    source = SafetensorsSource(ckpt)
    layers = fx.manifest["config"]["transformer"]["num_layers"]
    for name, case in _cases(fx).items():
        loras = [(fx.path / f, float(s)) for f, s in case["loras"]]
        merged = LoraMerged(source, loras, dtype=np.dtype(_DTYPES[case["ledger_dtype"]]))
        for array in fx.names(rf"^lora\.{name}\.weight\."):
            key = TRANSFORMER_PREFIX + array[len(f"lora.{name}.weight."):]
            yield array, merged.read(key).astype(np.float32), 0.0  # the fusion is reproduced bit for bit
        if case["ledger_dtype"] != "torch.float32" or not fx.names(rf"^lora\.{name}\.out\."):
            continue
        dit = nnx.split(restore(ckpt, "transformer", runtime=F32, loras=loras))
        video, audio = _modality(fx, "video", jnp.float32), _modality(fx, "audio", jnp.float32)
        v, a, _, _ = _velocity_and_x0(*dit, video, audio, Perturbations.none(layers, video.latent.shape[0]))
        yield f"lora.{name}.out.video_velocity", np.asarray(v, np.float32), BOUND_F32
        yield f"lora.{name}.out.audio_velocity", np.asarray(a, np.float32), BOUND_F32


CHECKS = [Check("lora", lambda fx: bool(_cases(fx)) and (fx.path / "ltx_checkpoint.safetensors").is_file(), _run,
                covers=r"^lora\.")]

NOT_CHECKED = [
    (r"^lora\.fp8cast_", "ltx-core's fp8_cast loading policy (weights cast to e4m3 without scales) is not a path of "
                         "ours; tests/test_lora.py checks its merged weights"),
    (r"^lora\.[a-z]+\.out\.", "bf16 ledger outputs are compared by cosine / relative L2 in tests/test_lora.py, not "
                              "by this runner's max-relative bound"),
]
