"""Audio VAE (log-mel <-> latent), the LTX-2 / LTX-2.3 vocoders and the waveform API.

Counterpart: ltx_core `model/audio_vae/` (`AudioDecoder`, `AudioEncoder`, `Vocoder`, `VocoderWithBWE`,
`decode_audio`, `encode_audio`).
"""

from ltx_jax.audio_vae.api import (decode_audio, decode_audio_chunked, decode_mel, encode_audio, encode_mel,
                                   latent_to_tokens, output_samples, sample_rate, tokens_to_latent,
                                   vocode)
from ltx_jax.audio_vae.loading import audio_schema, load_audio_decoder, load_audio_encoder, load_vocoder

__all__ = ["audio_schema", "load_audio_decoder", "load_audio_encoder", "load_vocoder", "decode_audio", "decode_audio_chunked",
           "decode_mel", "vocode", "encode_audio", "encode_mel", "sample_rate", "output_samples", "tokens_to_latent",
           "latent_to_tokens"]
