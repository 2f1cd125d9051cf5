"""Build the audio VAE decoder / encoder and the vocoder: thin calls of the one restore path, and their
constructors bound to the `audio_vae_decoder` / `audio_vae_encoder` / `vocoder` layout entries.

Counterpart: ltx_pipelines `utils/model_ledger.py` (`audio_decoder()`, `audio_encoder()`, `vocoder()`) with
ltx_core's `AUDIO_VAE_DECODER_COMFY_KEYS_FILTER`, `AUDIO_VAE_ENCODER_COMFY_KEYS_FILTER` and
`VOCODER_COMFY_KEYS_FILTER` (key views in `ltx_jax.checkpoint.layout`). Unlike ltx-core's non-strict load,
every module variable must come from the file and every key of the component must be used (`LoadError`).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from ltx_jax.audio_vae.bwe import VocoderWithBWE
from ltx_jax.audio_vae.model import AudioDecoder, AudioEncoder
from ltx_jax.audio_vae.vocoder import Vocoder
from ltx_jax.checkpoint.layout import LAYOUT, expected_keys
from ltx_jax.checkpoint.loader import bind, restore
from ltx_jax.checkpoint.open import SourceArg
from ltx_jax.configs import (AudioVAEConfig, LTXConfig, Runtime, VocoderConfig, audio_vae_config_from_metadata,
                             vocoder_config_from_metadata)

__all__ = ["audio_vae_config_from_metadata", "vocoder_config_from_metadata", "build_audio_decoder",
           "build_audio_encoder", "build_vocoder", "load_audio_decoder", "load_audio_encoder", "load_vocoder",
           "audio_schema"]


def build_audio_decoder(config: AudioVAEConfig, runtime: Runtime = Runtime()) -> AudioDecoder:
    return AudioDecoder(config, runtime, rngs=nnx.Rngs(0))


def build_audio_encoder(config: AudioVAEConfig, runtime: Runtime = Runtime()) -> AudioEncoder:
    return AudioEncoder(config, runtime, rngs=nnx.Rngs(0))


def build_vocoder(config: VocoderConfig, runtime: Runtime = Runtime()) -> Vocoder | VocoderWithBWE:
    kw = dict(param_dtype=jnp.dtype(runtime.param_dtype), dtype=jnp.dtype(runtime.compute_dtype), rngs=nnx.Rngs(0))
    return VocoderWithBWE(config, **kw) if config.bwe is not None else Vocoder(config, **kw)


bind("audio_vae_decoder", build_audio_decoder)
bind("audio_vae_encoder", build_audio_encoder)
bind("vocoder", build_vocoder)


def load_audio_decoder(src: SourceArg, runtime: Runtime | None = None, *, shardings=None) -> AudioDecoder:
    """`AudioDecoder` from an official file (config from its metadata)."""
    return restore(src, "audio_vae_decoder", runtime=runtime or Runtime(), shardings=shardings)


def load_audio_encoder(src: SourceArg, runtime: Runtime | None = None, *, shardings=None) -> AudioEncoder:
    """`AudioEncoder` from an official file (config from its metadata)."""
    return restore(src, "audio_vae_encoder", runtime=runtime or Runtime(), shardings=shardings)


def load_vocoder(src: SourceArg, runtime: Runtime | None = None, *, shardings=None) -> Vocoder | VocoderWithBWE:
    """`Vocoder` (LTX-2) or `VocoderWithBWE` (LTX-2.3) from an official file (config from its metadata)."""
    return restore(src, "vocoder", runtime=runtime or Runtime(), shardings=shardings)


def audio_schema(config: LTXConfig) -> dict[str, tuple[int, ...]]:
    """{file key: shape} of the audio VAE (decoder, encoder, shared statistics) and the vocoder of `config`, read
    from the modules (built abstractly) through the layout's key views."""
    out = {}
    parts = [("audio_vae_decoder", build_audio_decoder, config.audio_vae),
             ("audio_vae_encoder", build_audio_encoder, config.audio_vae), ("vocoder", build_vocoder, config.vocoder)]
    for name, build, part in parts:
        if part is not None:
            out.update(expected_keys(LAYOUT[name], nnx.state(nnx.eval_shape(lambda: build(part)))))
    return out
