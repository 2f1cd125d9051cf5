"""Jitted entry points of the tiny autoencoder: whole-clip decode/encode, chunk iterator, sampler previews.

Counterpart: madebyollin/taehv `taehv.py` (`TAEHV.decode_video` / `encode_video` and the
`StreamingTAEHV` wrapper). The module is split at the jit boundary (`nnx.split`): jitted functions
take the parameters as an explicit pytree and the graph definition as a static argument, so weights
are never baked into the compiled program as constants.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.tiny_vae.loading import with_decoder_options
from ltx_jax.tiny_vae.model import TinyAutoencoder

__all__ = ["decode_video", "encode_video", "iter_decode", "Preview", "PreviewHook", "to_uint8"]


@functools.partial(jax.jit, static_argnames=("graphdef", "mode", "chunk"))
def _decode(graphdef, params, latent, mode, chunk):
    return nnx.merge(graphdef, params).decode(latent, mode=mode, chunk=chunk)


@functools.partial(jax.jit, static_argnames=("graphdef", "mode", "chunk"))
def _encode(graphdef, params, video, mode, chunk):
    return nnx.merge(graphdef, params).encode(video, mode=mode, chunk=chunk)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _decode_chunk(graphdef, params, latent, state):
    tae = nnx.merge(graphdef, params)
    raw, state = tae.decode_raw(latent, state)
    return tae.postprocess(raw), state


def decode_video(tae: TinyAutoencoder, latent: jax.Array, *, mode: str = "parallel", chunk: int = 1) -> jax.Array:
    """Jitted `TinyAutoencoder.decode`: latents `[B, T, h, w, 128]` -> video `[B, 8T - 7, 32h, 32w, 3]`."""
    tae.check_latent(latent)  # fail here, with our message, rather than inside tracing
    graphdef, params = nnx.split(tae)
    return _decode(graphdef, params, latent, mode=mode, chunk=chunk)


def encode_video(tae: TinyAutoencoder, video: jax.Array, *, mode: str = "parallel", chunk: int = 1) -> jax.Array:
    """Jitted `TinyAutoencoder.encode`: video `[B, F, H, W, 3]` in [0, 1] -> `[B, ceil(F/8), H/32, W/32, 128]`."""
    tae.check_video(video)
    graphdef, params = nnx.split(tae)
    return _encode(graphdef, params, video, mode=mode, chunk=chunk)


def iter_decode(tae: TinyAutoencoder, latent: jax.Array, *, chunk: int = 1) -> Iterator[jax.Array]:
    """Decode chunk by chunk, yielding frames as soon as each chunk of latent frames is done.

    Args:
        latent: `[B, T, h, w, 128]`.
        chunk: latent frames per step (one compiled step; a shorter last chunk compiles once more).

    Yields:
        `[B, n, 32h, 32w, 3]` in [0, 1]: first 8 * chunk - 7 frames (the startup frames are dropped),
        then 8 * chunk per step; concatenated they equal `decode_video(tae, latent)`.
    """
    tae.check_latent(latent)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    graphdef, params = nnx.split(tae)
    state = tae.init_decoder_state(latent[:, :chunk])
    trim = tae.config.frames_to_trim
    for start in range(0, latent.shape[1], chunk):
        frames, state = _decode_chunk(graphdef, params, latent[:, start:start + chunk], state)
        if start == 0 and trim:
            frames = frames[:, trim:]
        if frames.shape[1]:
            yield frames


class Preview:
    """Cheap x0 previews for samplers: latents -> frames with a (by default reduced) TAE decoder.

    The default skips the three temporal upscales (one frame per latent frame, about 8x less work and
    no startup frames) and keeps full resolution; `time_upscale=True` decodes every frame.

    Use from a host-side sampler callback as `preview(x0)` (jitted, params passed as arguments), or
    inside a jitted sampler as `Preview.apply(preview.graphdef, preview.params, x0)`, a pure function.

    Args:
        tae: a full `TinyAutoencoder` (from `load_tae`).
        time_upscale, space_upscale: decoder switches, per stage or one bool for all three.
        dtype: parameter and compute dtype of the preview decoder (bfloat16: half the memory traffic).
    """

    def __init__(self, tae: TinyAutoencoder, *, time_upscale: bool | tuple[bool, ...] = False,
                 space_upscale: bool | tuple[bool, ...] = True, dtype=jnp.bfloat16):
        model = with_decoder_options(tae, time_upscale=time_upscale, space_upscale=space_upscale, param_dtype=dtype)
        # Only the decoder is needed: keep the encoder's parameters out of the jitted arguments.
        model.encoder = nnx.List([])
        self.config = model.config
        self.graphdef, self.params = nnx.split(model)

    @staticmethod
    def apply(graphdef, params, latent: jax.Array, grid: tuple[int, int, int] | None = None) -> jax.Array:
        """Pure preview decode (traceable).

        Args:
            latent: `[B, T, h, w, 128]`, or the transformer's tokens `[B, T*h*w, 128]` with `grid=(T, h, w)`.

        Returns:
            float32 frames `[B, u*T - (u - 1), s*h, s*w, 3]` in [0, 1] (u, s: the preview's time and space
            upscale; u = 1 by default, s = 32).
        """
        if latent.ndim == 3:
            if grid is None:
                raise ValueError("token-layout latents [B, N, C] need grid=(T, h, w)")
            # tokens in (t, h, w) order, the transformer's patch size being 1
            latent = latent.reshape(latent.shape[0], *grid, latent.shape[-1])
        return nnx.merge(graphdef, params).decode(latent).astype(jnp.float32)

    def __call__(self, latent: jax.Array, grid: tuple[int, int, int] | None = None) -> jax.Array:
        return _preview(self.graphdef, self.params, latent, grid)


_preview = jax.jit(Preview.apply, static_argnames=("graphdef", "grid"))


def to_uint8(frames: jax.Array) -> np.ndarray:
    """Frames in [0, 1] -> uint8 numpy (host), rounding to nearest."""
    return np.asarray(jnp.round(jnp.clip(frames, 0, 1) * 255).astype(jnp.uint8))


class PreviewHook:
    """A sampler callback: every `every` steps, decode x0 with `preview` and hand the frames to `sink`.

    `hook(step, x0)` with `x0` `[B, T, h, w, 128]` (or tokens with `grid`); `sink(step, frames_uint8)`
    gets `[B, F, H, W, 3]` uint8 numpy. The last step is always previewed when `num_steps` is given.
    """

    def __init__(self, preview: Preview, sink: Callable[[int, np.ndarray], None], *, every: int = 4,
                 num_steps: int | None = None, grid: tuple[int, int, int] | None = None):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.preview, self.sink, self.every, self.num_steps, self.grid = preview, sink, every, num_steps, grid

    def due(self, step: int) -> bool:
        return step % self.every == 0 or (self.num_steps is not None and step == self.num_steps - 1)

    def __call__(self, step: int, x0: jax.Array) -> None:
        if self.due(step):
            self.sink(step, to_uint8(self.preview(x0, self.grid)))
