"""The TAEHV tiny autoencoder for LTX latents: encoder, decoder, parallel and streaming modes.

Counterpart: madebyollin/taehv `taehv.py` (`TAEHV`: `encoder` / `decoder` `nn.Sequential`s,
`encode_video`, `decode_video`, `StreamingTAEHV`), written from docs/tae.md sections 2-5.

Public layout is channels last: video `[B, F, H, W, 3]` in [0, 1] and the transformer's normalized
latents `[B, T, H/32, W/32, 128]` (no scale or shift: the TAE works on the normalized side). Upstream's
N,T,C,H,W is one transpose away (`jnp.moveaxis(x, 2, -1)`).

`encoder` and `decoder` are `nnx.List`s whose indices equal the checkpoint's (`decoder.7.conv.weight`),
parameter-free slots (Clamp, ReLU, Upsample) included, so loading is a strict join of paths.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.configs.vae import TAELTX2_3, TAEConfig
from ltx_jax.tiny_vae.layers import (MEMORY_BLOCKS, Clamp, Conv2d, MemBlock, ReLU, TGrow, TPool, Upsample,
                                     WideMemBlock, pixel_shuffle, pixel_unshuffle)

__all__ = ["TinyAutoencoder", "TAEInputError", "run_layers", "ENCODER_TIME_DOWNSCALE"]

ENCODER_TIME_DOWNSCALE = 8  # three TPools of stride 2 in every LTX TAE
_MODES = ("parallel", "streaming")

State = tuple[jax.Array, ...]  # last input frame `[B, H, W, C]` of each memory block, in layer order


class TAEInputError(ValueError):
    """Input of the wrong rank, channel count, frame count or size for this TAE."""


def _encoder_layers(cfg: TAEConfig, kw: dict) -> list[nnx.Module]:
    n = cfg.encoder_width
    layers = [Conv2d(cfg.image_channels, n, **kw), ReLU()]
    for _ in range(3):  # one TPool(2) + stride-2 conv + 3 MemBlocks per x2 of time and space
        layers += [TPool(n, 2, **kw), Conv2d(n, n, stride=2, bias=False, **kw)]
        layers += [MemBlock(n, **kw) for _ in range(3)]
    return layers + [Conv2d(n, cfg.latent_channels, **kw)]


def _decoder_layers(cfg: TAEConfig, kw: dict) -> list[nnx.Module]:
    n = cfg.decoder_widths
    layers = [Clamp(), Conv2d(cfg.latent_channels, n[0], **kw), ReLU()]
    for s in range(3):
        mem = (lambda: WideMemBlock(n[s], cfg.groups(n[s]), **kw)) if cfg.wide else (lambda: MemBlock(n[s], **kw))
        layers += [mem() for _ in range(3)]
        layers += [Upsample(2 if cfg.decoder_space_upscale[s] else 1),
                   TGrow(n[s], 2 if cfg.decoder_time_upscale[s] else 1, **kw),
                   Conv2d(n[s], n[s + 1], bias=False, **kw)]
    return layers + [ReLU(), Conv2d(n[3], cfg.image_channels, **kw)]


def run_layers(layers: nnx.List, x: jax.Array, state: State | None,
               taps: dict[int, jax.Array] | None = None) -> tuple[jax.Array, State]:
    """Run an encoder / decoder layer list over one chunk of consecutive frames.

    Args:
        layers: `TinyAutoencoder.encoder` or `.decoder`.
        x: `[B, t, H, W, C]`; for the encoder t must be a multiple of 8 (whole TPool groups).
        state: each memory block's last input frame before this chunk; None at the start of a video.
        taps: if given, filled with {layer index: output `[B, t', H', W', C']`} (for parity checks).

    Returns:
        (output, new state). Chunks run one after the other with the state carried give the same
        result as the whole clip in one chunk (exactly, up to float rounding of batched convs).
    """
    states = iter(state) if state is not None else None
    new_state, i = [], 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, MEMORY_BLOCKS):
            x, last = layer(x, next(states) if states is not None else None)
            new_state.append(last)
        elif isinstance(layer, Upsample) and i + 1 < len(layers) and isinstance(layers[i + 1], TGrow):
            # TGrow is a 1x1 conv and the upsampling is nearest, so they commute: growing first does the
            # TGrow at a quarter of the pixels. Only the pair's output (index i + 1) is tapped.
            x = layer(layers[i + 1](x))
            i += 1
        else:
            x = layer(x)
        if taps is not None:
            taps[i] = x
        i += 1
    return x, tuple(new_state)


class TinyAutoencoder(nnx.Module):
    """TAEHV for LTX latents (`taeltx_2`, `taeltx2_3`, `taeltx2_3_wide`); load with `load_tae`.

    Args:
        config: architecture (and decoder preview switches).
        param_dtype: dtype of the parameters.
        compute_dtype: dtype of activations and convs; default `param_dtype`.
    """

    def __init__(self, config: TAEConfig = TAELTX2_3, *, param_dtype=jnp.float32, compute_dtype=None,
                 rngs: nnx.Rngs):
        self.config = config
        self.compute_dtype = np.dtype(compute_dtype or param_dtype)
        kw = dict(param_dtype=param_dtype, rngs=rngs)
        self.encoder = nnx.List(_encoder_layers(config, kw))
        self.decoder = nnx.List(_decoder_layers(config, kw))

    # ----------------------------------------------------------------------------------------- decode

    def check_latent(self, latent: jax.Array) -> None:
        """Refuse anything that is not `[B, T, h, w, latent_channels]` with T >= 1."""
        c = self.config.latent_channels
        if latent.ndim != 5 or latent.shape[-1] != c or latent.shape[1] < 1:
            hint = (" (it looks like [B, T, C, H, W]: move the channel axis last)"
                    if latent.ndim == 5 and latent.shape[2] == c else "")
            raise TAEInputError(f"TAE decode expects a latent [B, T, h, w, {c}] with T >= 1, got shape "
                                f"{tuple(latent.shape)}{hint}")

    def decode_raw(self, latent: jax.Array, state: State | None = None,
                   taps: dict[int, jax.Array] | None = None) -> tuple[jax.Array, State]:
        """Decoder network on one chunk: latent `[B, t, h, w, C]` -> (`[B, 8t, 8h, 8w, 48]`, state).

        No pixel shuffle, clamp or trim (upstream's `apply_model_with_memblocks` output).
        """
        self.check_latent(latent)
        return run_layers(self.decoder, latent.astype(self.compute_dtype), state, taps)

    def postprocess(self, raw: jax.Array) -> jax.Array:
        """`[..., 8h, 8w, 48]` -> pixels `[..., 32h, 32w, 3]`, hard-clamped to [0, 1]."""
        return jnp.clip(pixel_shuffle(raw, self.config.patch_size), 0, 1)

    def init_decoder_state(self, latent_chunk: jax.Array) -> State:
        """Zero memory for a video whose latent chunks look like `latent_chunk` `[B, t, h, w, C]`."""
        shapes = jax.eval_shape(lambda z: self.decode_raw(z)[1], latent_chunk)
        return tuple(jnp.zeros(s.shape, s.dtype) for s in shapes)

    def decode(self, latent: jax.Array, *, mode: str = "parallel", chunk: int = 1) -> jax.Array:
        """Latents -> video (traceable; `ltx_jax.tiny_vae.decode_video` is the jitted form).

        Args:
            latent: normalized latents `[B, T, h, w, 128]`.
            mode: "parallel" (every frame at once, activation memory O(T)) or "streaming" (a
                `lax.scan` over chunks of `chunk` latent frames carrying the memory-block state,
                activation memory O(chunk)). Both give the same video.
            chunk: latent frames per scan step in streaming mode.

        Returns:
            `[B, 8T - 7, 32h, 32w, 3]` in [0, 1], in `compute_dtype` (with preview switches off:
            `[B, u*T - (u - 1), s*h, s*w, 3]`, u = `config.time_upscale`, s = `config.space_upscale`).
        """
        if mode not in _MODES:
            raise ValueError(f"decode mode {mode!r}; supported: {_MODES}")
        self.check_latent(latent)
        if mode == "parallel":
            raw, _ = self.decode_raw(latent)
        else:
            raw = self._scan_chunks(self.decode_raw, latent, chunk)
        return self.postprocess(raw[:, self.config.frames_to_trim:])

    # ----------------------------------------------------------------------------------------- encode

    def check_video(self, video: jax.Array) -> None:
        """Refuse anything that is not `[B, F, H, W, 3]` with F >= 1 and H, W multiples of the patch."""
        p = self.config.patch_size
        if video.ndim != 5 or video.shape[-1] != 3 or video.shape[1] < 1:
            hint = (" (it looks like [B, F, 3, H, W]: move the channel axis last)"
                    if video.ndim == 5 and video.shape[2] == 3 else "")
            raise TAEInputError(f"TAE encode expects RGB video [B, F, H, W, 3] in [0, 1], got shape "
                                f"{tuple(video.shape)}{hint}")
        if video.shape[2] % p or video.shape[3] % p:
            raise TAEInputError(f"TAE encode needs H and W divisible by the patch size {p} (multiples of 32 "
                                f"decode back to the same size), got {video.shape[2]}x{video.shape[3]}")

    def preprocess(self, video: jax.Array) -> jax.Array:
        """Video `[B, F, H, W, 3]` -> encoder input `[B, F8, H/4, W/4, 48]`, F8 = F rounded up to 8.

        The end is padded with copies of the last frame, as upstream does, so 1 + 8k frames give k + 1
        latents (the LTX frame rule); latent j then sees frames up to 8j + 7.
        """
        self.check_video(video)
        pad = -video.shape[1] % ENCODER_TIME_DOWNSCALE
        x = video.astype(self.compute_dtype)
        if pad:
            x = jnp.concatenate([x, jnp.repeat(x[:, -1:], pad, axis=1)], axis=1)
        return pixel_unshuffle(x, self.config.patch_size)

    def encode_raw(self, x: jax.Array, state: State | None = None,
                   taps: dict[int, jax.Array] | None = None) -> tuple[jax.Array, State]:
        """Encoder network on one chunk: `[B, 8t, H/4, W/4, 48]` -> (`[B, t, H/32, W/32, 128]`, state)."""
        if x.ndim != 5 or x.shape[1] % ENCODER_TIME_DOWNSCALE or x.shape[-1] != self.config.image_channels:
            raise TAEInputError(f"TAE encoder chunks are [B, 8t, h, w, {self.config.image_channels}], got "
                                f"{tuple(x.shape)}")
        return run_layers(self.encoder, x, state, taps)

    def encode(self, video: jax.Array, *, mode: str = "parallel", chunk: int = 1) -> jax.Array:
        """Video `[B, F, H, W, 3]` in [0, 1] -> normalized latents `[B, ceil(F/8), ceil(H/32), ceil(W/32), 128]`.

        `mode` and `chunk` (latent frames, i.e. 8 video frames each, per scan step) as in `decode`.
        """
        if mode not in _MODES:
            raise ValueError(f"encode mode {mode!r}; supported: {_MODES}")
        x = self.preprocess(video)
        if mode == "parallel":
            return self.encode_raw(x)[0]
        return self._scan_chunks(self.encode_raw, x, chunk * ENCODER_TIME_DOWNSCALE)

    # ------------------------------------------------------------------------------------------ shared

    @staticmethod
    def _scan_chunks(step, x: jax.Array, chunk: int) -> jax.Array:
        """`step(x_chunk, state) -> (y_chunk, state)` over time chunks of `x` `[B, T, ...]` by `lax.scan`."""
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        b, t = x.shape[:2]
        n, rest = divmod(t, chunk)
        shapes = jax.eval_shape(lambda c: step(c)[1], x[:, :min(chunk, t)])
        state = tuple(jnp.zeros(s.shape, s.dtype) for s in shapes)
        outs = []
        if n:
            # [B, n*chunk, ...] -> [n, B, chunk, ...]: scan steps over the leading axis
            xs = jnp.moveaxis(x[:, :n * chunk].reshape(b, n, chunk, *x.shape[2:]), 1, 0)

            def body(carry, xc):
                y, carry = step(xc, carry)
                return carry, y

            state, ys = jax.lax.scan(body, state, xs)
            # [n, B, chunk', ...] -> [B, n*chunk', ...]
            ys = jnp.moveaxis(ys, 0, 1)
            outs.append(ys.reshape(b, -1, *ys.shape[3:]))
        if rest:  # a last partial chunk, with the carried state
            outs.append(step(x[:, n * chunk:], state if n else None)[0])
        return jnp.concatenate(outs, axis=1) if len(outs) > 1 else outs[0]
