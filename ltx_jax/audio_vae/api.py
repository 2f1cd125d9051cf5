"""Waveform API: latent -> log-mel -> waveform (whole or chunked at bounded memory), and waveform -> latent.

Counterparts: ltx_core `model/audio_vae/audio_vae.py` (`decode_audio`: `vocoder(decoder(latent)).squeeze(0)
.float()` with `vocoder.output_sampling_rate`; `encode_audio`) and `ops.py` (`AudioProcessor`).

Every forward runs under `jax.jit` with the module state as an argument, so one duration compiles once. The
chunked path (`decode_audio_chunked`) splits the decode into fixed-size windows, all of the same shape (the
last one is moved back to end at the true end), so it compiles once per (chunk, context) and its peak memory
does not grow with the length; see `ltx_jax.audio_vae.chunking` for why the seams are exact.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.audio_vae.tokens import latent_to_tokens, tokens_to_latent

__all__ = ["run_jitted", "sample_rate", "output_samples", "decode_mel", "vocode", "decode_audio", "decode_audio_chunked",
           "encode_audio", "encode_mel", "tokens_to_latent", "latent_to_tokens"]


def sample_rate(vocoder) -> int:
    """Output sampling rate: the BWE's `output_sampling_rate` (48 kHz for LTX-2.3), else the vocoder config's."""
    return int(getattr(vocoder, "output_sampling_rate", None) or vocoder.config.output_sampling_rate)


def output_samples(decoder, vocoder, latent_frames: int) -> int:
    """Waveform length for `latent_frames` latents: mel frames (4 T - 3) x samples per mel frame."""
    from ltx_jax.audio_vae.model import mel_frames_for_latents
    return mel_frames_for_latents(latent_frames, decoder.config.causality_axis) * vocoder.hop


@functools.partial(jax.jit, static_argnames=("graphdef", "method"))
def _apply(graphdef, state, x, method):
    module = nnx.merge(graphdef, state)
    return module(x) if method == "__call__" else getattr(module, method)(x)


def _run(module, x, method: str = "__call__"):
    """`module.method(x)` under jit, the module state an argument (compiled once per graph, method and shape)."""
    graphdef, state = nnx.split(module)
    return _apply(graphdef, state, jnp.asarray(x), method)


run_jitted = _run


def decode_mel(decoder, latent) -> jax.Array:
    """Normalized latent `[B, 8, T, 16]` -> log-mel `[B, 2, 4T - 3, 64]` (jitted per shape)."""
    return _run(decoder, latent)


def vocode(vocoder, mel) -> jax.Array:
    """Log-mel `[B, 2, T, 64]` -> waveform `[B, 2, samples]` float32 (jitted per shape)."""
    return jnp.moveaxis(_run(vocoder, mel), -1, 1).astype(jnp.float32)


def decode_audio(decoder, vocoder, latent) -> tuple[jax.Array, int]:
    """Latent `[B, 8, T, 16]` -> (waveform float32 `[B, 2, samples]`, sample rate). Whole-sequence decode."""
    return vocode(vocoder, decode_mel(decoder, latent)), sample_rate(vocoder)


def decode_audio_chunked(decoder, vocoder, latent, *, chunk_latents: int = 64,
                         chunk_mel: int | None = None) -> tuple[np.ndarray, int]:
    """`decode_audio` in fixed-size windows with exact seams; host float32 waveform `[B, 2, samples]`.

    Args:
        chunk_latents: latent frames decoded per window of the audio VAE (plus its causal left context).
        chunk_mel: mel frames vocoded per window (plus context on both sides); default 4 x chunk_latents.
    """
    from ltx_jax.audio_vae import chunking
    mel = chunking.decode_mel_chunked(decoder, latent, chunk_latents, _run)
    return chunking.vocode_chunked(vocoder, mel, chunk_mel or 4 * chunk_latents, _run), sample_rate(vocoder)


def encode_mel(encoder, mel) -> jax.Array:
    """Log-mel `[B, 2, T, 64]` -> normalized latent `[B, 8, (T + 3) / 4, 16]` (jitted per shape)."""
    return _run(encoder, mel)


def encode_audio(encoder, waveform, waveform_rate: int) -> jax.Array:
    """Waveform `[B, 2, samples]` at any integer rate -> normalized latent (ltx_core `encode_audio`: resampled to
    the encoder's rate as `torchaudio.functional.resample` does (`waveform_resample`), then the log-mel front end)."""
    from ltx_jax.audio_vae.mel import waveform_to_mel
    from ltx_jax.audio_vae.waveform_resample import resample_waveform
    c = encoder.config
    waveform = np.asarray(waveform, np.float32)
    if waveform.ndim != 3 or waveform.shape[1] != c.in_channels:
        raise ValueError(f"waveform of shape {waveform.shape}: the audio encoder takes [B, {c.in_channels}, samples]")
    waveform = resample_waveform(waveform, waveform_rate, c.sampling_rate)
    mel = waveform_to_mel(waveform, sample_rate=c.sampling_rate, n_fft=c.n_fft, hop=c.mel_hop_length,
                          n_mels=c.mel_bins)
    return encode_mel(encoder, mel)
