"""Parity checks of the video VAE against a fixture directory: `vae_encode.*` and `vae_decode.*`.

Counterpart of what the fixture recorded: ltx_core `VideoEncoder.forward` and the untiled
`VideoDecoder.forward` (with the stored noise and timestep when timestep-conditioned). The config
comes from the fixture's own checkpoint metadata, so any small dims work. Under a mesh (`Fixture.mesh`) the decode
runs its sharded path (`video_vae.sharded.decode_sharded`: latent rows over the mesh); the encoder has none and runs
replicated.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ltx_jax.parity import Check, Fixture

BOUND = 1e-5  # float32, max |ours - ref| / max |ref|: measured <= 1.4e-6 (encode, decode; 2 configs x 3 seeds)
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
    mesh = fx.mesh
    if "vae_encode.out.latent" in fx:
        encoder = load_video_encoder(ckpt, runtime)
        video = channels_last(fx["vae_encode.in.video"])
        if mesh is not None:
            encoder, video = mesh.module(encoder), mesh.batch(video)
        out = encode(encoder, video)
        if mesh is not None:
            mesh.note(mesh.replicated("the video encoder", out), r"^vae_encode\.")
        yield "vae_encode.out.latent", channels_first(out), BOUND
    if "vae_decode.out.video" in fx:
        decoder = load_video_decoder(ckpt, runtime)
        kwargs = {}
        if decoder.timestep_conditioning:
            kwargs = dict(noise=channels_last(fx["vae_decode.in.noise"]), timestep=fx["vae_decode.in.timestep"])
        latent = channels_last(fx["vae_decode.in.latent"])
        if mesh is None:
            out = decode(decoder, latent, **kwargs)
        else:
            from ltx_jax.parity.mesh import where
            from ltx_jax.video_vae.sharded import decode_sharded
            out = decode_sharded(decoder, latent, mesh.rules, **kwargs)
            mesh.note(f"sharded decode (decode_sharded): latent rows over the mesh; output {where(out)}",
                      r"^vae_decode\.")
        yield "vae_decode.out.video", channels_first(out), BOUND


CHECKS = [Check("vae", _applies, _run, covers=r"^vae_(encode|decode)\.out\.",
                inputs=((r"^vae_(encode|decode)\.in\.", "encoder / decoder input (decoder noise and timestep)"),))]
