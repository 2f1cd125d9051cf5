"""The model files of a `generate` run, checked from their headers before anything heavy: existence, kind
(`inspect`: a LoRA passed as the checkpoint is named as a LoRA), the checkpoint's config and parameter counts, the
Gemma folder.

Counterpart: none in ltx_core (its `ModelLedger` finds a wrong file only when a load fails).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PlanError", "ModelFile", "exists", "classify", "checkpoint_info", "gemma_folder"]


class PlanError(ValueError):
    """A bad argument or file, found before any weights are read."""


@dataclass(frozen=True)
class ModelFile:
    role: str  # checkpoint | upsampler | temporal_upsampler | lora | distilled_lora | gemma | preview
    path: str
    kind: str  # inspect's kind (ltx_checkpoint, upsampler, lora, tae), "ltx_jax_checkpoint", "gemma_folder"
    description: str = ""
    size_bytes: int = 0


def exists(role: str, path: str | None, flag: str) -> Path:
    if path is None:
        raise PlanError(f"{flag} is required")
    p = Path(path)
    if not p.exists():
        raise PlanError(f"{flag} {path}: no such file or folder")
    return p


_PASS_FOR_KIND = {"lora": "--lora", "upsampler": "--upsampler", "tae": "--preview",
                  "ltx_checkpoint": "--checkpoint", "ltx_transformer": "--checkpoint"}


def classify(role: str, path: str, flag: str, expect: tuple[str, ...]) -> ModelFile:
    """Inspect a safetensors file's header and refuse it unless its kind is one of `expect`."""
    from ltx_jax.checkpoint.inspect import inspect_file
    from ltx_jax.checkpoint.safetensors_file import SafetensorsError

    p = exists(role, path, flag)
    if p.is_dir():
        raise PlanError(f"{flag} {path}: a folder; expected a .safetensors file")
    try:
        report = inspect_file(str(p))
    except SafetensorsError as e:
        raise PlanError(f"{flag} {path}: {e}") from None
    if report.kind not in expect:
        hint = _PASS_FOR_KIND.get(report.kind)
        where = f"; pass it with {hint}" if hint and hint != flag else ""
        raise PlanError(f"{flag} {path}: this is a {report.description} (kind {report.kind}), not "
                        f"{' / '.join(expect)}{where}")
    return ModelFile(role, str(p), report.kind, report.description, report.size_bytes)


def checkpoint_info(path: str | None) -> tuple[ModelFile, Any, dict[str, int], bool]:
    """(file entry, LTXConfig, parameters per component, has FP8 weights) of the checkpoint, headers only."""
    from ltx_jax.configs import ConfigError, from_metadata
    from ltx_jax.checkpoint.inspect import checkpoint_component
    from ltx_jax.checkpoint.open import open_source

    p = exists("checkpoint", path, "--checkpoint")
    if p.is_file():
        entry = classify("checkpoint", str(p), "--checkpoint", ("ltx_checkpoint",))
    else:
        entry = ModelFile("checkpoint", str(p), "folder", "ltx-jax or diffusers checkpoint folder",
                          sum(f.stat().st_size for f in p.rglob("*") if f.is_file()))
    try:
        source = open_source(p)
    except Exception as e:  # noqa: BLE001 - each source kind has its own error type; all mean "not a checkpoint"
        raise PlanError(f"--checkpoint {path}: {e}") from None
    with source:
        specs = dict(source.specs())
        try:
            config = from_metadata(source.metadata, strict=False, tensor_shapes={k: s.shape for k, s in specs.items()})
        except ConfigError as e:
            raise PlanError(f"--checkpoint {path}: its config cannot be used: {e}") from None
    params: dict[str, int] = {}
    for key, spec in specs.items():
        if key.endswith(("weight_scale", "input_scale")):
            continue
        name = checkpoint_component(key)
        params[name] = params.get(name, 0) + math.prod(spec.shape)
        if str(spec.dtype).startswith("float8"):  # counted again under "<component>:fp8" (1 byte each)
            params[name + ":fp8"] = params.get(name + ":fp8", 0) + math.prod(spec.shape)
    for needed in ("transformer", "vae_decoder"):
        if not params.get(needed):
            raise PlanError(f"--checkpoint {path}: has no {needed} weights; a generation needs a full checkpoint "
                            "(transformer + video VAE)")
    fp8 = any(str(s.dtype).startswith("float8") for s in specs.values())
    return entry, config, params, fp8


def gemma_folder(path: str) -> ModelFile:
    """The Gemma-3 folder, checked from its config.json, tokenizer file and weight headers (no weights read)."""
    p = exists("gemma", path, "--gemma")
    if not p.is_dir():
        raise PlanError(f"--gemma {path}: expected the Gemma-3 folder (Hugging Face layout), got a file")
    if not ((p / "tokenizer.json").is_file() or (p / "tokenizer.model").is_file()):
        raise PlanError(f"--gemma {path}: no tokenizer.json or tokenizer.model")
    from ltx_jax.pipelines import capabilities as cap
    if cap.has_text_encoder():
        from ltx_jax.configs import ConfigError
        from ltx_jax.checkpoint.safetensors_file import SafetensorsError
        from ltx_jax.text_encoder import GemmaFolder, GemmaFolderError
        try:
            GemmaFolder(p).close()
        except (GemmaFolderError, ConfigError, SafetensorsError) as e:
            raise PlanError(f"--gemma {path}: {e}") from None
    elif not (p / "config.json").is_file():
        raise PlanError(f"--gemma {path}: no config.json; expected a Hugging Face Gemma-3 folder")
    size = sum(f.stat().st_size for f in p.glob("*.safetensors"))
    if not size:
        raise PlanError(f"--gemma {path}: no .safetensors weights")
    return ModelFile("gemma", str(p), "gemma_folder", "Gemma-3 text encoder folder", size)


