"""The video decode spread over a mesh: the latent split by rows over every device, convolutions partitioned
by XLA with halo exchanges at the row boundaries (exact: the same arithmetic as one device).

Counterpart: ltx_core `model/video_vae/video_vae.py` (`VideoDecoder.decode`, untiled); ltx-pipelines decodes on
one GPU. This runs the whole decode under the sampler's mesh, so the pipeline never funnels through one device.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from ltx_jax.sharding import ShardingRules
from ltx_jax.video_vae.decoder import VideoDecoder

__all__ = ["decode_sharded", "row_axes"]


def row_axes(rules: ShardingRules, rows: int) -> tuple[str, ...]:
    """The mesh axes (largest product first) whose product divides the latent rows `H'`."""
    names = [a for a in rules.mesh.axis_names if rules.mesh.shape[a] > 1]
    best: tuple[str, ...] = ()
    for mask in range(1 << len(names)):
        axes = tuple(a for i, a in enumerate(names) if mask >> i & 1)
        n = int(np.prod([rules.mesh.shape[a] for a in axes])) if axes else 1
        best_n = int(np.prod([rules.mesh.shape[a] for a in best])) if best else 1
        if rows % n == 0 and n > best_n:
            best = axes
    return best


@partial(jax.jit, static_argnames=("graphdef", "spec", "mesh"))
def _decode(graphdef, state, latent, timestep, noise, *, spec, mesh):
    rows = NamedSharding(mesh, spec)
    latent = jax.lax.with_sharding_constraint(latent, rows)
    noise = None if noise is None else jax.lax.with_sharding_constraint(noise, rows)
    out = nnx.merge(graphdef, state)(latent, timestep=timestep, noise=noise)
    return jax.lax.with_sharding_constraint(out, rows)


def decode_sharded(decoder: VideoDecoder, latent: jax.Array, rules: ShardingRules, *,
                   timestep: jax.Array | float | None = None, noise: jax.Array | None = None) -> jax.Array:
    """Untiled decode of `[B, F', H', W', C]` with the latent rows (and the output rows) split over the mesh.

    Args:
        decoder: a `VideoDecoder` (its weights are replicated onto the mesh).
        latent: normalized latent.
        rules: the run's sharding rules (only the mesh is used).
        timestep, noise: as `ltx_jax.video_vae.decode` (noise: one array of the latent's shape).

    Returns:
        pixels `[B, 8(F'-1)+1, 32 H', 32 W', 3]`, row-sharded over the mesh.
    """
    latent = jnp.asarray(latent)
    if latent.ndim != 5:
        raise ValueError(f"latent must be [B, F', H', W', C]; got shape {latent.shape}")
    axes = row_axes(rules, latent.shape[2])
    spec = P(None, None, axes or None, None, None)
    graphdef, state = nnx.split(decoder)
    replicated = NamedSharding(rules.mesh, P())
    state = jax.device_put(state, replicated)
    rows = NamedSharding(rules.mesh, spec)
    latent = jax.device_put(latent, rows)
    noise = None if noise is None else jax.device_put(jnp.asarray(noise), rows)
    t = None if timestep is None else jax.device_put(jnp.asarray(timestep, latent.dtype), replicated)
    return _decode(graphdef, state, latent, t, noise, spec=spec, mesh=rules.mesh)
