"""The config of a whole official checkpoint (`from_metadata`) and runtime choices."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ltx_jax.configs.audio import AudioVAEConfig, VocoderConfig
from ltx_jax.configs.base import ConfigError
from ltx_jax.configs.transformer import ConnectorConfig, TransformerConfig
from ltx_jax.configs.vae import UpsamplerConfig, VideoVAEConfig

# ---------------------------------------------------------------------------------------------
# The whole checkpoint and runtime choices
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LTXConfig:
    """Everything one official single-file checkpoint describes."""

    transformer: TransformerConfig
    connector: ConnectorConfig
    vae: VideoVAEConfig | None = None
    audio_vae: AudioVAEConfig | None = None
    vocoder: VocoderConfig | None = None
    model_version: str | None = None

    @property
    def is_ltx_2_3(self) -> bool:
        """LTX-2.3 layout (prompt AdaLN, gated attention, feature extractor V2)."""
        return self.transformer.cross_attention_adaln

    def to_metadata(self) -> dict[str, str]:
        """The safetensors `__metadata__` an official file would carry."""
        config: dict[str, Any] = {"transformer": self.transformer.to_dict() | self.connector.to_dict()}
        for name in ("vae", "audio_vae", "vocoder"):
            part = getattr(self, name)
            if part is not None:
                config[name] = part.to_dict()
        meta = {"config": json.dumps(config)}
        if self.model_version is not None:
            meta["model_version"] = self.model_version
        return meta


def from_metadata(metadata: Mapping[str, str], *, strict: bool = True,
                  tensor_shapes: Mapping[str, tuple[int, ...]] | None = None) -> LTXConfig:
    """Parse the official checkpoint metadata (`config` JSON, `model_version`) into an `LTXConfig`.

    Args:
        metadata: the safetensors `__metadata__`.
        strict: refuse unknown keys (unsupported values are always refused).
        tensor_shapes: the file's {key: shape}; used for what the JSON does not say (the number of
            text-encoder hidden states, from the text projection's input width).

    Raises:
        ConfigError: no `config`, bad JSON, an unknown key (strict) or an unsupported value; the
            message names the key.
    """
    if "config" not in metadata:
        raise ConfigError("no 'config' entry in the safetensors metadata: not an official LTX-2 checkpoint")
    try:
        config = json.loads(metadata["config"])
    except json.JSONDecodeError as e:
        raise ConfigError(f"metadata 'config' is not valid JSON: {e}") from None
    if not isinstance(config, dict) or "transformer" not in config:
        raise ConfigError("metadata 'config' has no 'transformer' section")
    unknown = config.keys() - {"transformer", "vae", "audio_vae", "vocoder"}
    if unknown and strict:
        raise ConfigError(f"unknown config section(s): {sorted(unknown)}; pass strict=False to ignore them")
    t = config["transformer"]
    connector = ConnectorConfig.from_dict(t, strict=strict)
    if tensor_shapes is not None:
        connector = _with_text_depth(connector, tensor_shapes)
    return LTXConfig(
        transformer=TransformerConfig.from_dict(t, strict=strict),
        connector=connector,
        vae=VideoVAEConfig.from_dict(config["vae"], strict=strict) if "vae" in config else None,
        audio_vae=AudioVAEConfig.from_dict(config["audio_vae"], strict=strict) if "audio_vae" in config else None,
        vocoder=VocoderConfig.from_dict(config["vocoder"], strict=strict) if "vocoder" in config else None,
        model_version=metadata.get("model_version"),
    )


def _with_text_depth(c: ConnectorConfig, shapes: Mapping[str, tuple[int, ...]]) -> ConnectorConfig:
    name = "aggregate_embed" if c.feature_extractor == "v1" else "video_aggregate_embed"
    shape = shapes.get(f"text_embedding_projection.{name}.weight")
    if shape is None or len(shape) != 2:
        return c
    depth, rest = divmod(shape[1], c.text_hidden_size)
    if rest:
        raise ConfigError(f"text_embedding_projection.{name}.weight has input width {shape[1]}, not a multiple of the "
                          f"text encoder width caption_channels={c.text_hidden_size}")
    return dataclasses.replace(c, text_num_hidden_states=depth)


def upsampler_from_metadata(metadata: Mapping[str, str], *, strict: bool = True) -> UpsamplerConfig:
    if "config" not in metadata:
        raise ConfigError("no 'config' entry in the upsampler file's metadata")
    try:
        config = json.loads(metadata["config"])
    except json.JSONDecodeError as e:
        raise ConfigError(f"upsampler metadata 'config' is not valid JSON: {e}") from None
    return UpsamplerConfig.from_dict(config, strict=strict)


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

    _ATTENTION = ("auto", "xla", "cudnn", "gspmd", "ulysses", "ring", "hybrid")
    _FP8 = ("off", "weights", "scaled")

    @property
    def kernel(self) -> str:
        """The local attention kernel request ("auto", "xla" or "cudnn")."""
        return self.attention if self.attention in ("xla", "cudnn") else "auto"

    def __post_init__(self):
        if self.attention not in self._ATTENTION:
            raise ConfigError(f"Runtime.attention={self.attention!r}; supported: {self._ATTENTION}")
        if self.fp8 not in self._FP8:
            raise ConfigError(f"Runtime.fp8={self.fp8!r}; supported: {self._FP8}")


