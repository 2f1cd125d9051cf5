"""The `ltx-jax train` configuration: one TOML file, one frozen dataclass per section, unknown keys refused.

Counterpart: ltx-trainer `config.py` (`LtxTrainerConfig`, YAML). Section and key names follow it where a
counterpart exists (`[lora] rank / alpha`, `[optim] learning_rate / max_grad_norm`, `first_frame_p` for
`first_frame_conditioning_p`).

    [model]      checkpoint, mode = "lora" | "full", base_dtype = "bfloat16" | "float32" | "fp8",
                 compute_dtype = "bfloat16", remat = false
    [lora]       rank, alpha, targets (regex), save_dtype
    [objective]  sigma_std, shift, first_frame_p, caption_dropout_p, video_weight, audio_weight
    [optim]      learning_rate, warmup_steps, steps, min_lr_ratio, weight_decay, b1, b2, eps, max_grad_norm, ema_decay
    [data]       cache, batch_size, seed, empty_prompt (prompt .npz for caption dropout), with_audio
    [mesh]       data, context, tensor, fsdp
    [output]     dir, checkpoint_every, keep, async_save, log_every, progress, export_dtype (full fine-tuning)
    [sample]     every, prompt, frames, height, width, steps, seed, fps, guidance (every = 0: off)
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ltx_jax.training.lora import LoraConfig
from ltx_jax.training.objective import ObjectiveConfig
from ltx_jax.training.step import OptimConfig

__all__ = ["TrainConfig", "ModelSection", "DataSection", "MeshSection", "OutputSection", "SampleSection",
           "load_config", "ConfigError"]


class ConfigError(ValueError):
    """A training configuration that cannot run (names the key)."""


@dataclass(frozen=True, kw_only=True)
class ModelSection:
    checkpoint: str
    mode: str = "lora"
    base_dtype: str = "bfloat16"
    compute_dtype: str = "bfloat16"
    remat: bool = False

    def __post_init__(self):
        if self.mode not in ("lora", "full"):
            raise ConfigError(f"model.mode={self.mode!r}; expected 'lora' or 'full'")
        if self.base_dtype not in ("bfloat16", "float32", "fp8"):
            raise ConfigError(f"model.base_dtype={self.base_dtype!r}; expected bfloat16, float32 or fp8")
        if self.mode == "full" and self.base_dtype != "float32":
            raise ConfigError("model.mode='full' trains float32 master weights: set model.base_dtype='float32' "
                              "(compute stays in model.compute_dtype)")


@dataclass(frozen=True, kw_only=True)
class DataSection:
    cache: str
    batch_size: int = 1
    seed: int = 0
    empty_prompt: str | None = None
    with_audio: bool | None = None


@dataclass(frozen=True, kw_only=True)
class MeshSection:
    data: int = 1
    context: int = 1
    tensor: int = 1
    fsdp: bool = False


@dataclass(frozen=True, kw_only=True)
class OutputSection:
    dir: str
    checkpoint_every: int = 500
    keep: int = 3
    async_save: bool = True
    log_every: int = 1
    progress: bool = True
    export_dtype: str = "bfloat16"   # full fine-tuning: dtype of the transformer in model.safetensors

    def __post_init__(self):
        if self.export_dtype not in ("bfloat16", "float32"):
            raise ConfigError(f"output.export_dtype={self.export_dtype!r}; expected 'bfloat16' or 'float32'")


@dataclass(frozen=True, kw_only=True)
class SampleSection:
    every: int = 0
    prompt: str | None = None
    frames: int = 25
    height: int = 256
    width: int = 256
    steps: int = 20
    seed: int = 0
    fps: float = 24.0
    guidance: str = "official"   # the checkpoint version's CFG/STG defaults, or "none" (one pass per step)

    def __post_init__(self):
        if self.guidance not in ("official", "none"):
            raise ConfigError(f"sample.guidance={self.guidance!r}; expected 'official' or 'none'")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    model: ModelSection
    data: DataSection
    output: OutputSection
    lora: LoraConfig = field(default_factory=LoraConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    mesh: MeshSection = field(default_factory=MeshSection)
    sample: SampleSection = field(default_factory=SampleSection)

    @classmethod
    def from_dict(cls, raw: dict, base: Path | None = None) -> TrainConfig:
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(sections))
        if unknown:
            raise ConfigError(f"unknown config section(s) {unknown}; expected {sorted(sections)}")
        kwargs = {}
        for name, f in sections.items():
            typ = {"model": ModelSection, "data": DataSection, "output": OutputSection, "lora": LoraConfig,
                   "objective": ObjectiveConfig, "optim": OptimConfig, "mesh": MeshSection,
                   "sample": SampleSection}[name]
            values = dict(raw.get(name, {}))
            keys = {x.name for x in dataclasses.fields(typ)}
            bad = sorted(set(values) - keys)
            if bad:
                raise ConfigError(f"[{name}] unknown key(s) {bad}; expected {sorted(keys)}")
            if base is not None:  # paths relative to the config file
                for key in ("checkpoint", "cache", "empty_prompt", "dir", "prompt"):
                    if isinstance(values.get(key), str) and not Path(values[key]).is_absolute():
                        values[key] = str(base / values[key])
            if name not in raw and name in ("model", "data", "output"):
                raise ConfigError(f"config section [{name}] is required")
            try:
                kwargs[name] = typ(**values)
            except TypeError as e:
                raise ConfigError(f"[{name}]: {e}") from e
            except ValueError as e:
                raise ConfigError(f"[{name}]: {e}") from e
        return cls(**kwargs)


def load_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    return TrainConfig.from_dict(raw, base=path.parent.absolute())
