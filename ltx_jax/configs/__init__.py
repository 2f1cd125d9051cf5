"""Architecture configs: one frozen dataclass per component, presets, and `from_metadata()`.

Counterparts in ltx_core: the `*Configurator.from_config` classmethods
(`model/transformer/model_configurator.py`, `model/video_vae/model_configurator.py`,
`model/upsampler/model_configurator.py`, `model/audio_vae/model_configurator.py`,
`text_encoders/gemma/encoders/encoder_configurator.py`).

Field names equal the keys of the JSON config that official checkpoints carry in their safetensors
metadata (`__metadata__["config"]`), so reading and writing it is a loop. Every key of that JSON
must be either a field, a key whose one supported value is pinned in `_FIXED`, or listed in
`_IGNORED` (keys that ltx-core itself never reads). Anything else is refused with an error that
names the key; values we do not implement are refused the same way.
"""


from ltx_jax.configs.audio import AudioVAEConfig, VocoderConfig
from ltx_jax.configs.base import ConfigError
from ltx_jax.configs.checkpoint import LTXConfig, Runtime, from_metadata, upsampler_from_metadata
from ltx_jax.configs.presets import (LTX_2, LTX_2_3, LTX_2_3_TINY, LTX_2_3_TINY_AV, LTX_2_TINY, SPATIAL_X2_2,
                                     SPATIAL_X2_2_3, TINY_UPSAMPLERS)
from ltx_jax.configs.transformer import ConnectorConfig, TransformerConfig
from ltx_jax.configs.vae import TAEConfig, UpsamplerConfig, VideoVAEConfig

__all__ = [
    "ConfigError", "TransformerConfig", "ConnectorConfig", "VideoVAEConfig", "AudioVAEConfig", "VocoderConfig",
    "UpsamplerConfig", "TAEConfig", "LTXConfig", "Runtime", "from_metadata", "upsampler_from_metadata",
    "LTX_2", "LTX_2_3", "LTX_2_TINY", "LTX_2_3_TINY", "LTX_2_3_TINY_AV", "SPATIAL_X2_2", "SPATIAL_X2_2_3", "TINY_UPSAMPLERS",
]
