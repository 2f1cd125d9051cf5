"""Build the audio VAE decoder / encoder and the vocoder from an official file, through the one restore path.

Counterpart: ltx_pipelines `utils/model_ledger.py` (`audio_decoder()`, `audio_encoder()`, `vocoder()`) with
ltx_core's `AUDIO_VAE_DECODER_COMFY_KEYS_FILTER`, `AUDIO_VAE_ENCODER_COMFY_KEYS_FILTER` and
`VOCODER_COMFY_KEYS_FILTER`: keys `audio_vae.decoder.*` / `audio_vae.encoder.*` plus the shared
`audio_vae.per_channel_statistics.{std,mean}-of-means`, and `vocoder.*` with one `vocoder.` stripped. Unlike
ltx-core's non-strict load, every module variable must come from the file and every key of the component must
be used (`LoadError` otherwise).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from flax import nnx

from ltx_jax.configs import AudioVAEConfig, ConfigError, Runtime, VocoderConfig

__all__ = ["audio_config_from_metadata", "vocoder_config_from_metadata", "build_audio_decoder",
           "build_audio_encoder", "build_vocoder", "load_audio_decoder", "load_audio_encoder", "load_vocoder",
           "AUDIO_STATISTICS_PREFIX"]

AUDIO_STATISTICS_PREFIX = "audio_vae.per_channel_statistics."
USED_STATISTICS = ("mean-of-means", "std-of-means")


def _section(metadata: Mapping[str, str], name: str, strict: bool) -> dict:
    if "config" not in metadata:
        raise ConfigError("no 'config' entry in the safetensors metadata: not an official LTX-2 file")
    try:
        config = json.loads(metadata["config"])
    except json.JSONDecodeError as e:
        raise ConfigError(f"metadata 'config' is not valid JSON: {e}") from None
    if name not in config:
        raise ConfigError(f"checkpoint config has no '{name}' section (no {name} in this file)")
    return config[name]


def audio_config_from_metadata(metadata: Mapping[str, str], *, strict: bool = True) -> AudioVAEConfig:
    """The `audio_vae` section of the file's `config` JSON (ConfigError on what the port does not build)."""
    return AudioVAEConfig.from_dict(_section(metadata, "audio_vae", strict), strict=strict)


def vocoder_config_from_metadata(metadata: Mapping[str, str], *, strict: bool = True) -> VocoderConfig:
    """The `vocoder` section (flat: LTX-2 `Vocoder`; nested `{vocoder, bwe}`: LTX-2.3 `VocoderWithBWE`)."""
    return VocoderConfig.from_dict(_section(metadata, "vocoder", strict), strict=strict)


def build_audio_decoder(config: AudioVAEConfig, runtime: Runtime = Runtime()):
    from ltx_jax.audio_vae.model import AudioDecoder
    return AudioDecoder(config, runtime, rngs=nnx.Rngs(0))


def build_audio_encoder(config: AudioVAEConfig, runtime: Runtime = Runtime()):
    from ltx_jax.audio_vae.model import AudioEncoder
    return AudioEncoder(config, runtime, rngs=nnx.Rngs(0))


def build_vocoder(config: VocoderConfig, runtime: Runtime = Runtime()):
    import jax.numpy as jnp

    from ltx_jax.audio_vae.bwe import VocoderWithBWE
    from ltx_jax.audio_vae.vocoder import Vocoder
    kw = dict(param_dtype=jnp.dtype(runtime.param_dtype), dtype=jnp.dtype(runtime.compute_dtype), rngs=nnx.Rngs(0))
    return VocoderWithBWE(config, **kw) if config.bwe is not None else Vocoder(config, **kw)


def _restore(src, component: str, runtime: Runtime | None, shardings=None):
    from ltx_jax.convert.restore import restore
    return restore(src, component, runtime=runtime or Runtime(), shardings=shardings)


def load_audio_decoder(src: str | os.PathLike, runtime: Runtime | None = None, *, shardings=None):
    """`AudioDecoder` from an official file (config from its metadata)."""
    return _restore(src, "audio_vae_decoder", runtime, shardings)


def load_audio_encoder(src: str | os.PathLike, runtime: Runtime | None = None, *, shardings=None):
    """`AudioEncoder` from an official file (config from its metadata)."""
    return _restore(src, "audio_vae_encoder", runtime, shardings)


def load_vocoder(src: str | os.PathLike, runtime: Runtime | None = None, *, shardings=None):
    """`Vocoder` (LTX-2) or `VocoderWithBWE` (LTX-2.3) from an official file (config from its metadata)."""
    return _restore(src, "vocoder", runtime, shardings)
