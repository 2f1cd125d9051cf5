"""Build the video VAE encoder / decoder: thin calls of the one restore path, and their constructors bound to
the `vae_encoder` / `vae_decoder` layout entries.

Counterpart: ltx_pipelines `utils/model_ledger.py` with ltx_core's `VAE_ENCODER_COMFY_KEYS_FILTER` /
`VAE_DECODER_COMFY_KEYS_FILTER`: keys `vae.encoder.*` / `vae.decoder.*`, plus the shared
`vae.per_channel_statistics.*` that both modules hold as `per_channel_statistics.*` (the key view is in
`ltx_jax.checkpoint.layout`). Extra statistics buffers some files carry (`channel`, `mean-of-stds`, ...)
are ignored, as ltx_core ignores them; everything else must match strictly.
"""

from __future__ import annotations

from flax import nnx

from ltx_jax.checkpoint.layout import VAE_STATISTICS_PREFIX
from ltx_jax.checkpoint.open import SourceArg
from ltx_jax.checkpoint.loader import bind, restore
from ltx_jax.configs import Runtime, VideoVAEConfig, vae_config_from_metadata
from ltx_jax.video_vae.decoder import VideoDecoder
from ltx_jax.video_vae.encoder import VideoEncoder

__all__ = ["vae_config_from_metadata", "load_video_encoder", "load_video_decoder", "STATISTICS_PREFIX"]

STATISTICS_PREFIX = VAE_STATISTICS_PREFIX

bind("vae_encoder", lambda config, runtime: VideoEncoder(config, runtime, rngs=nnx.Rngs(0)))
bind("vae_decoder", lambda config, runtime: VideoDecoder(config, runtime, rngs=nnx.Rngs(0)))


def load_video_encoder(source: SourceArg, runtime: Runtime | None = None, *,
                       config: VideoVAEConfig | None = None) -> VideoEncoder:
    """`VideoEncoder` filled from an official checkpoint (path, folder or {key: array}); config from its metadata.

    Raises:
        LoadError: a key missing, left over or of the wrong shape (all named).
        ConfigError: a config the port does not implement, or no config to read (pass config=).
    """
    return restore(source, "vae_encoder", runtime=runtime or Runtime(), config=config)


def load_video_decoder(source: SourceArg, runtime: Runtime | None = None, *,
                       config: VideoVAEConfig | None = None) -> VideoDecoder:
    """`VideoDecoder` filled from an official checkpoint (path, folder or {key: array}); config from its metadata."""
    return restore(source, "vae_decoder", runtime=runtime or Runtime(), config=config)
