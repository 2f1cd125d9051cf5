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

__all__ = ["slaney_mel_filterbank", "waveform_to_mel"]

_F_SP = 200.0 / 3.0  # slaney scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _F_SP
_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: float) -> float:
    return _BREAK_MEL + np.log(hz / _BREAK_HZ) / _LOG_STEP if hz >= _BREAK_HZ else hz / _F_SP


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return np.where(mel >= _BREAK_MEL, _BREAK_HZ * np.exp(_LOG_STEP * (mel - _BREAK_MEL)), _F_SP * mel)


@functools.lru_cache(maxsize=8)
def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                          f_max: float | None = None) -> np.ndarray:
    """`[n_fft // 2 + 1, n_mels]` float32: triangles between consecutive slaney-mel points, each scaled by
    2 / (its bandwidth in Hz) (slaney area normalisation). Bins at 0 .. sample_rate // 2 Hz."""
    f_max = sample_rate / 2.0 if f_max is None else f_max
    bins = np.linspace(0.0, sample_rate // 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lo[None]) / (mid - lo)[None]
    falling = (hi[None] - bins[:, None]) / (hi - mid)[None]
    weights = np.clip(np.minimum(rising, falling), 0.0, None) * (2.0 / (hi - lo))[None]
    return weights.astype(np.float32)


@functools.partial(jax.jit, static_argnames=("sample_rate", "n_fft", "hop", "n_mels"))
def waveform_to_mel(waveform: jax.Array, *, sample_rate: int, n_fft: int, hop: int, n_mels: int) -> jax.Array:
    """`[B, C, samples]` float -> log-mel `[B, C, 1 + samples // hop, n_mels]` float32."""
    x = jnp.asarray(waveform, jnp.float32)
    if x.shape[-1] <= n_fft // 2:
        raise ValueError(f"waveform of {x.shape[-1]} samples is too short for n_fft={n_fft} reflect padding")
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)], mode="reflect")
    frames = 1 + (x.shape[-1] - n_fft) // hop
    index = hop * np.arange(frames)[:, None] + np.arange(n_fft)[None, :]  # [frames, n_fft]
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic Hann
    spectrum = jnp.fft.rfft(x[..., index] * window, axis=-1)  # [B, C, frames, n_fft // 2 + 1]
    mel = jnp.abs(spectrum) @ slaney_mel_filterbank(sample_rate, n_fft, n_mels)
    return jnp.log(jnp.maximum(mel, 1e-5))
