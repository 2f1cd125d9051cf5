"""Gemma-3 text decoder config, read from a Hugging Face `config.json` (the text part of `Gemma3Config`).

Counterparts: transformers `Gemma3TextConfig` (4.5x spelling: `rope_scaling`, `rope_local_base_freq`,
`sliding_window_pattern`; 5.x spelling `rope_parameters` and `layer_types` is read too) and ltx_core
`text_encoders/gemma/config.py` (`GEMMA3_CONFIG_FOR_LTX`, the built-in 12B config ltx-core uses instead of
reading the folder's file). Defaults are transformers' `Gemma3TextConfig` defaults, so a sparse hub config
reads as transformers reads it. Values the port does not implement are refused by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ltx_jax.configs.base import ConfigError

__all__ = ["GemmaConfig", "GEMMA3_12B", "GEMMA_MODEL_TYPES"]

GEMMA_MODEL_TYPES = ("gemma3", "gemma3_text")

# Keys that do not change the text decoder's hidden states (generation, init, vision, bookkeeping).
_IGNORED = frozenset({
    "architectures", "attention_dropout", "bos_token_id", "cache_implementation", "eos_token_id",
    "final_logit_softcapping", "initializer_range", "max_position_embeddings", "model_type", "pad_token_id",
    "tie_word_embeddings", "torch_dtype", "dtype", "transformers_version", "use_cache", "_name_or_path",
    "boi_token_index", "eoi_token_index", "image_token_index", "mm_tokens_per_image", "vision_config",
    "text_config", "return_dict", "output_hidden_states", "output_attentions", "_sliding_window_pattern",
})
# Keys with one implemented value.
_FIXED = {"attention_bias": False, "attn_logit_softcapping": None, "use_bidirectional_attention": False,
          "hidden_activation": "gelu_pytorch_tanh", "hidden_act": "gelu_pytorch_tanh"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class GemmaConfig:
    """The Gemma-3 text decoder's shape and numerics (field names = `Gemma3TextConfig` keys)."""

    vocab_size: int = 262_208  # embedding rows (may exceed the tokenizer's size)
    hidden_size: int = 2304
    intermediate_size: int = 9216
    num_hidden_layers: int = 26
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    head_dim: int = 256
    query_pre_attn_scalar: float = 256
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0  # global layers
    rope_local_base_freq: float = 10_000.0  # sliding layers
    rope_scaling_factor: float = 1.0  # linear scaling of the global layers' positions (1 = none)
    sliding_window: int = 4096
    layer_types: tuple[str, ...] = ()  # "sliding_attention" / "full_attention" per layer

    def __post_init__(self):
        if len(self.layer_types) != self.num_hidden_layers:
            raise ConfigError(f"layer_types has {len(self.layer_types)} entries for {self.num_hidden_layers} layers")
        bad = sorted(set(self.layer_types) - {"sliding_attention", "full_attention"})
        if bad:
            raise ConfigError(f"layer_types {bad} are not implemented (sliding_attention, full_attention)")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                              f"num_key_value_heads={self.num_key_value_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim={self.head_dim} must be even (rotary pairs)")

    @property
    def sliding(self) -> tuple[bool, ...]:
        return tuple(t == "sliding_attention" for t in self.layer_types)

    @classmethod
    def from_hf(cls, config: Mapping[str, Any]) -> GemmaConfig:
        """From a hub `config.json` dict: `Gemma3ForConditionalGeneration` (`text_config` inside) or `Gemma3ForCausalLM`.

        Raises:
            ConfigError: another model type, a value this port does not implement, or an unknown key (named).
        """
        model_type = config.get("model_type")
        if model_type not in GEMMA_MODEL_TYPES:
            raise ConfigError(f"model_type={model_type!r}: not a Gemma-3 config (expected one of {GEMMA_MODEL_TYPES})")
        text = dict(config.get("text_config") or {}) if model_type == "gemma3" else dict(config)
        if model_type == "gemma3" and text.get("model_type", "gemma3_text") != "gemma3_text":
            raise ConfigError(f"text_config.model_type={text.get('model_type')!r}; expected 'gemma3_text'")
        return cls.from_text_config(text)

    @classmethod
    def from_text_config(cls, text: Mapping[str, Any]) -> GemmaConfig:
        text = dict(text)
        names = {f.name for f in dataclasses.fields(cls)} - {"rope_scaling_factor", "layer_types"}
        kwargs: dict[str, Any] = {}
        unknown = []
        for key, value in text.items():
            where = f"text_config.{key}"
            if key in names:
                kwargs[key] = value
            elif key in _FIXED:
                if value != _FIXED[key]:
                    raise ConfigError(f"{where}={value!r} is not implemented (only {_FIXED[key]!r})")
            elif key not in _IGNORED and key not in ("rope_scaling", "rope_parameters", "layer_types",
                                                     "sliding_window_pattern"):
                unknown.append(key)
        if unknown:
            raise ConfigError(f"unknown Gemma-3 config keys {sorted(unknown)}; not implemented")
        layers = int(kwargs.get("num_hidden_layers", 26))
        kwargs["rope_scaling_factor"] = _rope(text, kwargs)
        if text.get("layer_types") is not None:
            kwargs["layer_types"] = tuple(text["layer_types"])
        else:  # transformers 4.5x: layer i is global iff (i + 1) % pattern == 0
            pattern = int(text.get("sliding_window_pattern", 6))
            kwargs["layer_types"] = tuple("full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
                                          for i in range(layers))
        return cls(**kwargs)


def _rope(text: Mapping[str, Any], kwargs: dict[str, Any]) -> float:
    """The global layers' linear factor from `rope_scaling` (4.5x) or `rope_parameters` (5.x); fills the bases."""
    params = text.get("rope_parameters")
    if params is not None:  # transformers 5: {"full_attention": {...}, "sliding_attention": {...}}
        if "full_attention" not in params:
            params = {"full_attention": params, "sliding_attention": {"rope_type": "default"}}
        local = params.get("sliding_attention") or {"rope_type": "default"}
        if local.get("rope_type", "default") != "default":
            raise ConfigError(f"rope_parameters.sliding_attention.rope_type={local.get('rope_type')!r} is not "
                              "implemented (only 'default')")
        if "rope_theta" in local:
            kwargs["rope_local_base_freq"] = local["rope_theta"]
        scaling = params["full_attention"]
        if "rope_theta" in scaling:
            kwargs["rope_theta"] = scaling["rope_theta"]
        where = "rope_parameters.full_attention"
    else:
        scaling, where = text.get("rope_scaling"), "rope_scaling"
    if scaling is None:
        return 1.0
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return 1.0
    if kind != "linear":
        raise ConfigError(f"{where}.rope_type={kind!r} is not implemented (only 'linear' and 'default')")
    extra = sorted(set(scaling) - {"rope_type", "type", "factor", "rope_theta"})
    if extra:
        raise ConfigError(f"{where} keys {extra} are not implemented")
    return float(scaling["factor"])


# The released gemma-3-12b-it(-qat-q4_0-unquantized) text decoder; ltx_core's GEMMA3_CONFIG_FOR_LTX.text_config.
GEMMA3_12B = GemmaConfig(
    vocab_size=262_208, hidden_size=3840, intermediate_size=15360, num_hidden_layers=48, num_attention_heads=16,
    num_key_value_heads=8, head_dim=256, query_pre_attn_scalar=256, rms_norm_eps=1e-6, rope_theta=1_000_000.0,
    rope_local_base_freq=10_000.0, rope_scaling_factor=8.0, sliding_window=1024,
    layer_types=tuple("full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(48)))
