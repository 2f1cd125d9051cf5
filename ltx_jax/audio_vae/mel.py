"""Waveform -> log-mel front end of the audio encoder.

Counterpart: ltx_core `model/audio_vae/ops.py` (`AudioProcessor.waveform_to_mel`), which runs torchaudio's
`MelSpectrogram(n_fft, win_length=n_fft, hop, f_min=0, f_max=sr/2, n_mels, window=periodic Hann, center=True,
pad_mode="reflect", power=1, mel_scale="slaney", norm="slaney")`, then `log(clamp(., 1e-5))` and a permute to
`[B, C, T, mels]`. Frames: 1 + samples // hop.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.nn.dsp import slaney_mel_filterbank

__all__ = ["slaney_mel_filterbank", "waveform_to_mel", "stft"]


def stft(x: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """`[..., L]` -> complex spectra `[..., 1 + (L - n_fft) // hop, n_fft // 2 + 1]` of periodic-Hann frames at
    stride `hop` (win_length = n_fft; no padding: the caller pads)."""
    frames = 1 + (x.shape[-1] - n_fft) // hop
    index = hop * np.arange(frames)[:, None] + np.arange(n_fft)[None, :]  # [frames, n_fft]
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic Hann
    return jnp.fft.rfft(x[..., index] * window, axis=-1)


@functools.partial(jax.jit, static_argnames=("sample_rate", "n_fft", "hop", "n_mels"))
def waveform_to_mel(waveform: jax.Array, *, sample_rate: int, n_fft: int, hop: int, n_mels: int) -> jax.Array:
    """`[B, C, samples]` float -> log-mel `[B, C, 1 + samples // hop, n_mels]` float32."""
    x = jnp.asarray(waveform, jnp.float32)
    if x.shape[-1] <= n_fft // 2:
        raise ValueError(f"waveform of {x.shape[-1]} samples is too short for n_fft={n_fft} reflect padding")
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)], mode="reflect")
    mel = jnp.abs(stft(x, n_fft, hop)) @ slaney_mel_filterbank(sample_rate, n_fft, n_mels)
    return jnp.log(jnp.maximum(mel, 1e-5))
