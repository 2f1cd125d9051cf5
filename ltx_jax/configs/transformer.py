"""Configs of the DiT and of the text side stored in the same checkpoint.

Counterparts: ltx_core `model/transformer/model_configurator.py` (`LTXModelConfigurator`),
`text_encoders/gemma/embeddings_connector.py` and `encoders/encoder_configurator.py`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ltx_jax.configs.base import ConfigError, _freeze, _JsonConfig, _thaw

# ---------------------------------------------------------------------------------------------
# Transformer (DiT) and text connectors: both read the checkpoint's "transformer" section.
# ---------------------------------------------------------------------------------------------

# Keys checked by ltx-core's LTXModelConfigurator (`check_config_value`): the only value it builds.
_TRANSFORMER_FIXED = {
    "dropout": 0.0, "attention_bias": True, "num_vector_embeds": None,
    "activation_fn": "gelu-approximate", "num_embeds_ada_norm": 1000, "use_linear_projection": False,
    "only_cross_attention": False, "cross_attention_norm": True, "double_self_attention": False,
    "upcast_attention": False, "standardization_norm": "rms_norm", "norm_elementwise_affine": False,
    "qk_norm": "rms_norm", "positional_embedding_type": "rope", "use_audio_video_cross_attention": True,
    "share_ff": False, "av_cross_ada_norm": True,
}
# Connector / feature-extractor keys live in the same section; the DiT ignores them and vice versa.
_CONNECTOR_KEYS = frozenset({
    "connector_num_attention_heads", "connector_attention_head_dim", "connector_num_layers",
    "connector_positional_embedding_max_pos", "connector_apply_gated_attention",
    "connector_num_learnable_registers", "audio_connector_num_attention_heads",
    "audio_connector_attention_head_dim", "audio_connector_num_layers",
    "caption_proj_before_connector", "caption_projection_first_linear", "caption_proj_input_norm",
    "caption_projection_second_linear",
})
# Keys the official training configs carry that ltx-core 1.0.0 never reads.
_TRANSFORMER_IGNORED = frozenset({
    "_class_name", "_diffusers_version", "attention_type", "norm_num_groups", "patch_size",
    "patch_size_t", "project_to_2d_pos", "use_tpu_flash_attention", "causal_temporal_positioning",
    "connector_positional_embedding_theta",
})


@dataclass(frozen=True, kw_only=True)
class TransformerConfig(_JsonConfig):
    """The audio-video DiT (`LTXModel`, AudioVideo type)."""

    _SECTION = "transformer"
    _FIXED = _TRANSFORMER_FIXED
    _IGNORED = _TRANSFORMER_IGNORED | _CONNECTOR_KEYS
    _CHOICES = {"rope_type": ("interleaved", "split"), "frequencies_precision": (False, "float32", "float64"),
                "use_middle_indices_grid": (True,)}

    num_attention_heads: int = 32
    attention_head_dim: int = 128
    in_channels: int = 128
    out_channels: int = 128
    num_layers: int = 48
    cross_attention_dim: int = 4096
    caption_channels: int = 3840  # Gemma width; used by the LTX-2 caption projection only
    norm_eps: float = 1e-6
    positional_embedding_theta: float = 10000.0
    positional_embedding_max_pos: tuple[int, ...] = (20, 2048, 2048)
    timestep_scale_multiplier: int = 1000
    use_middle_indices_grid: bool = True
    audio_num_attention_heads: int = 32
    audio_attention_head_dim: int = 64
    audio_in_channels: int = 128
    audio_out_channels: int = 128
    audio_cross_attention_dim: int = 2048
    audio_positional_embedding_max_pos: tuple[int, ...] = (20,)
    # ltx-core's default is 1; every released config uses 1000.
    av_ca_timestep_scale_multiplier: int = 1
    rope_type: str = "interleaved"
    frequencies_precision: str | bool = False
    apply_gated_attention: bool = False
    cross_attention_adaln: bool = False
    # True (LTX-2.3): the text projection lives in the feature extractor, not in the DiT.
    caption_proj_before_connector: bool = False

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def audio_inner_dim(self) -> int:
        return self.audio_num_attention_heads * self.audio_attention_head_dim

    @property
    def double_precision_rope(self) -> bool:
        return self.frequencies_precision == "float64"

    @property
    def adaln_coefficients(self) -> int:
        """Rows of the per-block modulation table: 6, or 9 with prompt AdaLN (LTX-2.3)."""
        return 9 if self.cross_attention_adaln else 6

    @property
    def has_caption_projection(self) -> bool:
        return not self.caption_proj_before_connector

    @classmethod
    def from_dict(cls, d, *, strict=True):
        # caption_proj_before_connector belongs to both views; keep it here too.
        config = super().from_dict({k: v for k, v in d.items() if k != "caption_proj_before_connector"},
                                   strict=strict)
        return dataclasses.replace(config, caption_proj_before_connector=bool(d.get("caption_proj_before_connector", False)))

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        del out["caption_proj_before_connector"]  # written by ConnectorConfig with the rest of the V2 set
        return out


# FeatureExtractorV2 is selected by exactly these values (ltx-core `_V2_EXPECTED_CONFIG`).
_V2_KEYS = {
    "caption_proj_before_connector": True, "caption_projection_first_linear": False,
    "caption_proj_input_norm": False, "caption_projection_second_linear": False,
}


@dataclass(frozen=True, kw_only=True)
class ConnectorConfig(_JsonConfig):
    """Text side stored in the checkpoint: feature extractor (V1/V2) and the two 1D connectors."""

    _SECTION = "transformer"

    connector_num_attention_heads: int = 30
    connector_attention_head_dim: int = 128
    connector_num_layers: int = 2
    connector_positional_embedding_max_pos: tuple[int, ...] = (1,)
    connector_apply_gated_attention: bool = False
    audio_connector_num_attention_heads: int | None = None  # None: same as the video connector
    audio_connector_attention_head_dim: int | None = None
    audio_connector_num_layers: int | None = None
    feature_extractor: str = "v1"  # "v1" (LTX-2) or "v2" (LTX-2.3), from the caption_proj* keys
    rope_type: str = "interleaved"
    frequencies_precision: str | bool = False
    positional_embedding_theta: float = 10000.0
    # ltx-core 1.0.0 fixes this at 128 and ignores `connector_num_learnable_registers`.
    num_learnable_registers: int = 128
    # Text encoder (Gemma-3) hidden width, read from the JSON key `caption_channels`, and its number
    # of hidden states (embeddings + layers). ltx-core hard-codes Gemma-3-12B (3840 x 49); the count
    # is not in the JSON, so `from_metadata` infers it from the text projection's shape when given
    # the file's tensor shapes.
    text_hidden_size: int = 3840
    text_num_hidden_states: int = 49

    @property
    def video_inner_dim(self) -> int:
        return self.connector_num_attention_heads * self.connector_attention_head_dim

    @property
    def audio_heads(self) -> int:
        return self.audio_connector_num_attention_heads or self.connector_num_attention_heads

    @property
    def audio_head_dim(self) -> int:
        return self.audio_connector_attention_head_dim or self.connector_attention_head_dim

    @property
    def audio_num_layers(self) -> int:
        return self.audio_connector_num_layers or self.connector_num_layers

    @property
    def audio_inner_dim(self) -> int:
        return self.audio_heads * self.audio_head_dim

    @property
    def double_precision_rope(self) -> bool:
        return self.frequencies_precision == "float64"

    @classmethod
    def from_dict(cls, d, *, strict=True):
        present = d.keys() & _V2_KEYS.keys()
        if not present:
            extractor = "v1"
        elif present != _V2_KEYS.keys():
            missing = ", ".join(sorted(_V2_KEYS.keys() - present))
            raise ConfigError(f"transformer config has a partial feature-extractor V2 set; missing: {missing}")
        else:
            bad = [k for k in present if d[k] != _V2_KEYS[k]]
            if bad:
                raise ConfigError("unsupported feature-extractor config: "
                                  + ", ".join(f"transformer.{k}={d[k]!r} (expected {_V2_KEYS[k]!r})" for k in bad))
            extractor = "v2"
        registers = d.get("connector_num_learnable_registers", 128)
        if registers != 128:
            raise ConfigError(f"transformer.connector_num_learnable_registers={registers!r} is not supported "
                              "(ltx-core 1.0.0 always uses 128)")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: _freeze(v) for k, v in d.items() if k in names}
        if "caption_channels" in d:
            kwargs["text_hidden_size"] = d["caption_channels"]
        config = cls(feature_extractor=extractor, **kwargs)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        out = {k: _thaw(getattr(self, k)) for k in (
            "connector_num_attention_heads", "connector_attention_head_dim", "connector_num_layers",
            "connector_positional_embedding_max_pos", "connector_apply_gated_attention")}
        for k in ("audio_connector_num_attention_heads", "audio_connector_attention_head_dim",
                  "audio_connector_num_layers"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        if self.feature_extractor == "v2":
            out.update(_V2_KEYS)
        return out

    _CHOICES = {"feature_extractor": ("v1", "v2"), "rope_type": ("interleaved", "split")}


