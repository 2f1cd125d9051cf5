"""Parity checks of the video VAE against a fixture directory: `vae_encode.*` and `vae_decode.*`.

Counterpart of what the fixture recorded: ltx_core `VideoEncoder.forward` and the untiled
`VideoDecoder.forward` (with the stored noise and timestep when timestep-conditioned). The config
comes from the fixture's own checkpoint metadata, so any small dims work.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ltx_jax.parity import Check, Fixture

BOUND = 2e-5  # float32: max |ours - ref| / max |ref|
CHECKPOINT = "ltx_checkpoint.safetensors"


def channels_last(a: np.ndarray) -> np.ndarray:
    """Fixture arrays are the official `[B, C, F, H, W]`; ltx-jax works in `[B, F, H, W, C]`."""
    return np.moveaxis(a, 1, -1)


def channels_first(a) -> np.ndarray:
    return np.moveaxis(np.asarray(a), -1, 1)


def _applies(fx: Fixture) -> bool:
    return (fx.path / CHECKPOINT).is_file() and ("vae_encode.out.latent" in fx or "vae_decode.out.video" in fx)


def _run(fx: Fixture) -> Iterator[tuple[str, np.ndarray, float]]:
    from ltx_jax.configs import Runtime
    from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
    from ltx_jax.video_vae import load_video_decoder, load_video_encoder
    from ltx_jax.video_vae.codec import decode, encode

    runtime = Runtime(param_dtype="float32", compute_dtype="float32")
    ckpt = SafetensorsFile(fx.path / CHECKPOINT)
    if "vae_encode.out.latent" in fx:
        encoder = load_video_encoder(ckpt, runtime)
        yield "vae_encode.out.latent", channels_first(encode(encoder, channels_last(fx["vae_encode.in.video"]))), BOUND
    if "vae_decode.out.video" in fx:
        decoder = load_video_decoder(ckpt, runtime)
        kwargs = {}
        if decoder.timestep_conditioning:
            kwargs = dict(noise=channels_last(fx["vae_decode.in.noise"]), timestep=fx["vae_decode.in.timestep"])
        out = decode(decoder, channels_last(fx["vae_decode.in.latent"]), **kwargs)
        yield "vae_decode.out.video", channels_first(out), BOUND


CHECKS = [Check("vae", _applies, _run, covers=r"^vae_(encode|decode)\.out\.")]
