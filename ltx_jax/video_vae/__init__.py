"""The LTX-2 / LTX-2.3 video VAE: encoder, decoder, latent statistics, tiled and streaming decode.

Counterpart: ltx_core `model/video_vae/`. Arrays are channels-last: pixels `[B, F, H, W, 3]` in [-1, 1],
latents `[B, F', H', W', C]` (normalized with the per-channel statistics, the DiT's space).
"""

from ltx_jax.video_vae.codec import decode, decode_noise, decode_stream, encode, to_uint8
from ltx_jax.video_vae.decoder import DECODE_NOISE_SCALE, DECODE_TIMESTEP, VideoDecoder
from ltx_jax.video_vae.encoder import VideoEncoder
from ltx_jax.video_vae.loading import load_video_decoder, load_video_encoder, vae_config_from_metadata
from ltx_jax.video_vae.tiling import SpatialTilingConfig, TemporalTilingConfig, TilingConfig

__all__ = ["VideoEncoder", "VideoDecoder", "DECODE_NOISE_SCALE", "DECODE_TIMESTEP", "load_video_encoder",
           "load_video_decoder", "vae_config_from_metadata", "encode", "decode", "decode_stream", "decode_noise",
           "to_uint8", "TilingConfig", "SpatialTilingConfig", "TemporalTilingConfig"]
