"""Parity checks of the latent upsamplers against a fixture directory: `upsampler.out.*`.

Counterpart of what the fixture recorded: ltx_core `LatentUpsampler.forward` on `upsampler.in.latent`
for each `upsampler_<kind>.safetensors` (config from that file's metadata), and `upsample_video`
with the checkpoint's VAE statistics. The upsamplers have no sharded path: under a mesh (`Fixture.mesh`) they run
replicated on it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np

from ltx_jax.parity import Check, Fixture
from ltx_jax.parity.vae import CHECKPOINT, channels_first, channels_last

BOUND = 2e-5  # float32, max |ours - ref| / max |ref|: measured <= 2.3e-6 (every kind; 2 configs x 3 seeds)


def _kinds(fx: Fixture) -> list[str]:
    return sorted(p.name[len("upsampler_"):-len(".safetensors")] for p in fx.path.glob("upsampler_*.safetensors"))


def _applies(fx: Fixture) -> bool:
    return "upsampler.in.latent" in fx and bool(_kinds(fx))


@functools.cache
def _jitted():
    """Jitted forward and `upsample_video`, made once so that fixtures with equal configs share compilations."""
    from flax import nnx

    from ltx_jax.upsampler import upsample_video
    return nnx.jit(lambda up, x: up(x)), nnx.jit(lambda up, stats, x: upsample_video(x, stats, up))


def _run(fx: Fixture) -> Iterator[tuple[str, np.ndarray, float]]:
    import jax
    import jax.numpy as jnp

    from ltx_jax.configs import Runtime
    from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
    from ltx_jax.upsampler import load_upsampler
    from ltx_jax.video_vae.loading import STATISTICS_PREFIX
    from ltx_jax.video_vae.ops import PerChannelStatistics

    runtime = Runtime(param_dtype="float32", compute_dtype="float32")
    latent = jnp.asarray(channels_last(fx["upsampler.in.latent"]))
    stats = None
    if (fx.path / CHECKPOINT).is_file():
        ckpt = SafetensorsFile(fx.path / CHECKPOINT)
        stats = PerChannelStatistics(latent.shape[-1])
        stats.mean_of_means[...] = jnp.asarray(ckpt[STATISTICS_PREFIX + "mean-of-means"])
        stats.std_of_means[...] = jnp.asarray(ckpt[STATISTICS_PREFIX + "std-of-means"])
    mesh = fx.mesh
    if mesh is not None:
        latent, stats = mesh.batch(latent), None if stats is None else mesh.module(stats)
    for kind in _kinds(fx):
        up = load_upsampler(fx.path / f"upsampler_{kind}.safetensors", runtime)
        up = up if mesh is None else mesh.module(up)
        if f"upsampler.out.{kind}" in fx:
            out = _jitted()[0](up, latent)
            if mesh is not None:
                mesh.note(mesh.replicated("the latent upsampler", out))
            yield f"upsampler.out.{kind}", channels_first(jax.device_get(out)), BOUND
        name = f"upsampler.out.upsample_video_{kind}"
        if name in fx and stats is not None:
            out = _jitted()[1](up, stats, latent)
            if mesh is not None:
                mesh.note(mesh.replicated("the latent upsampler", out))
            yield name, channels_first(jax.device_get(out)), BOUND


CHECKS = [Check("upsampler", _applies, _run, covers=r"^upsampler\.out\.",
                inputs=((r"^upsampler\.in\.latent$", "the latent every upsampler is run on"),))]
