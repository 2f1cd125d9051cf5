"""Parity checks of the tiny autoencoder against a TAEHV fixture directory (shared/fixtures/taeltx2_3 format).

Counterpart: the fixture's producer ran madebyollin/taehv `taehv.py` (`decode_video`, `encode_video`,
`StreamingTAEHV`, `apply_model_with_memblocks`) with seeded random weights. The cases come from
`manifest.json`; arrays there are N,T,C,H,W and ours N,T,H,W,C, so each side is one moveaxis apart.

Which of our modes answers which reference mode:
  parallel              -> `decode_video` / `encode_video`, mode="parallel"
  sequential, streaming -> mode="streaming" (a scan over single latent frames, carrying the memory)
  raw_parallel, taps    -> `decode_raw` / `encode_raw` on the whole clip, with per-layer taps
  encoder_model_input   -> `TinyAutoencoder.preprocess` (end padding + pixel unshuffle)
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.parity import Check, Fixture, FixtureError

__all__ = ["CHECKS", "BOUND"]

BOUND = 1e-5  # max |ours - ref| / max |ref|, float32 on both sides


def _nthwc(a: np.ndarray) -> jnp.ndarray:
    return jnp.asarray(np.moveaxis(a, 2, -1))


def _ntchw(a: jax.Array) -> np.ndarray:
    return np.moveaxis(np.asarray(a, np.float32), -1, 2)


@functools.partial(jax.jit, static_argnames=("graphdef", "which"))
def _with_taps(graphdef, params, x, which):
    tae = nnx.merge(graphdef, params)
    taps: dict[int, jax.Array] = {}
    if which == "decoder":
        out, _ = tae.decode_raw(x, taps=taps)
    else:
        x = tae.preprocess(x)
        tae.encode_raw(x, taps=taps)
        out = x
    return out, taps


def _applies(fixture: Fixture) -> bool:
    return fixture.kind == "tae" and "cases" in fixture.manifest


def _run(fixture: Fixture) -> Iterator[tuple[str, np.ndarray, float]]:
    from ltx_jax.tiny_vae import decode_video, encode_video, load_tae  # lazy: the runner imports every check

    tae = load_tae(fixture.path / fixture.manifest["weights"]["file"], param_dtype=jnp.float32)
    mesh = fixture.mesh  # no sharded path: under a mesh, weights and inputs replicated on it (batch on data)
    if mesh is not None:
        tae = mesh.module(tae)
    graphdef, params = nnx.split(tae)
    for case in fixture.manifest["cases"]:
        arrays = case["arrays"]
        x = _nthwc(fixture[arrays["input"]])
        if mesh is not None:
            x = mesh.batch(x)
        if case["kind"] == "decode":
            run, which = decode_video, "decoder"
        elif case["kind"] == "encode":
            run, which = encode_video, "encoder"
        else:
            raise FixtureError(f"case {case['name']}: unknown kind {case['kind']!r}")
        out = run(tae, x, mode="parallel")
        if mesh is not None:
            mesh.note(mesh.replicated("the tiny autoencoder", out))
        yield arrays["parallel"], _ntchw(out), BOUND
        if "sequential" in arrays or "streaming" in arrays:
            ours = _ntchw(run(tae, x, mode="streaming"))
            for mode in ("sequential", "streaming"):
                if mode in arrays:
                    yield arrays[mode], ours, BOUND
        if any(k in arrays for k in ("raw_parallel", "encoder_model_input", "taps")):
            out, taps = _with_taps(graphdef, params, x, which)
            for key in ("raw_parallel", "encoder_model_input"):
                if key in arrays:
                    yield arrays[key], _ntchw(out), BOUND
            for index, name in arrays.get("taps", {}).items():
                yield name, _ntchw(taps[int(index)]), BOUND


CHECKS = [Check("tae", _applies, _run, covers=r"^(dec|enc)_.*\.(out_|raw_|latent_|tap\.|encoder_model_input)",
                inputs=((r"^(dec|enc)_[^.]*\.(latent|video)$", "the case's input (manifest cases[*].arrays.input)"),))]
