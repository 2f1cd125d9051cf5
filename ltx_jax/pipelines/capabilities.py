"""What this build of ltx-jax can do, for `generate`'s early checks: text encoder, audio, FP8, attention, presets.

No ltx_core counterpart. Parts of the pipeline land separately (Gemma text encoder, audio VAE + vocoder, FP8
matmuls, shard_map attention strategies); `generate` asks here instead of failing deep inside a run.
"""

from __future__ import annotations

import importlib
import inspect

__all__ = ["has_text_encoder", "has_audio", "has_fp8", "can_quantize", "attention_choices", "weight_presets"]


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def has_text_encoder() -> bool:
    m = _module("ltx_jax.text_encoder")
    return m is not None and all(hasattr(m, n) for n in ("load_gemma", "encode_prompts"))


def has_audio() -> bool:
    m = _module("ltx_jax.audio_vae")
    return m is not None and all(hasattr(m, n) for n in ("load_audio_decoder", "load_vocoder", "decode_audio"))


def has_fp8() -> bool:
    return _module("ltx_jax.nn.fp8") is not None and "fp8" in _runtime_fields()


def can_quantize() -> bool:
    """Whether a bf16 checkpoint can be quantized at load time (`--fp8` on a non-FP8 file)."""
    m = _module("ltx_jax.nn.fp8")
    return m is not None and hasattr(m, "quantize_on_load")


def _runtime_fields() -> set[str]:
    import dataclasses

    from ltx_jax.configs import Runtime
    return {f.name for f in dataclasses.fields(Runtime)}


def attention_choices() -> tuple[str, ...]:
    from ltx_jax.configs import Runtime
    return tuple(getattr(Runtime, "_ATTENTION", ("auto",)))


def weight_presets() -> tuple[str, ...]:
    from ltx_jax.sharding import inference_rules
    if "weights" in inspect.signature(inference_rules).parameters:
        return ("replicated", "fsdp", "tensor")
    return ("replicated",)
