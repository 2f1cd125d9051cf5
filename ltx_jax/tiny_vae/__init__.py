"""TAEHV tiny autoencoder for LTX latents (`taeltx_2`, `taeltx2_3`, `taeltx2_3_wide`): fast decodes and previews.

Counterpart: madebyollin/taehv `taehv.py` (MIT, (c) 2025 Ollin Boer Bohan); written from
docs/tae.md, not from its code. Layout: video `[B, F, H, W, 3]` in [0, 1], latents
`[B, T, H/32, W/32, 128]` (the transformer's normalized latents); T latent frames decode to 8T - 7
frames and F frames encode to ceil(F / 8) latent frames.

    tae = load_tae("taeltx2_3.safetensors")                 # variant read from tensor shapes
    video = decode_video(tae, latent)                       # parallel; mode="streaming" scans frames
    for frames in iter_decode(tae, latent, chunk=2): ...    # chunk by chunk
    latent = encode_video(tae, video)
    preview = Preview(tae)                                  # one frame per latent frame, bfloat16
    frames = preview(x0)                                    # from a sampler callback
"""

from ltx_jax.configs.vae import TAELTX2_3, TAELTX2_3_WIDE, TAELTX_2, TAEConfig
from ltx_jax.tiny_vae.api import Preview, PreviewHook, decode_video, encode_video, iter_decode, to_uint8
from ltx_jax.tiny_vae.loading import TAECheckpointError, config_from_shapes, load_tae, state_dict, with_decoder_options
from ltx_jax.tiny_vae.model import TAEInputError, TinyAutoencoder

__all__ = [
    "TAEConfig", "TAELTX_2", "TAELTX2_3", "TAELTX2_3_WIDE", "TinyAutoencoder", "TAEInputError", "TAECheckpointError",
    "load_tae", "config_from_shapes", "state_dict", "with_decoder_options", "decode_video", "encode_video",
    "iter_decode", "Preview", "PreviewHook", "to_uint8",
]
