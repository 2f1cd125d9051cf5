"""Fixed signal-processing tables (numpy, no model state): resampling filters, the slaney mel filterbank, STFT
conv bases.

Counterparts: ltx_core `model/audio_vae/vocoder.py` (`kaiser_sinc_filter1d`, `UpSample1d(window_type="hann")`)
and the filterbank torchaudio's `MelSpectrogram(mel_scale="slaney", norm="slaney")` uses in `AudioProcessor`.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["kaiser_sinc_filter", "hann_sinc_filter", "slaney_mel_filterbank", "stft_bases", "HANN_ROLLOFF",
           "HANN_ZERO_CROSSINGS"]

HANN_ROLLOFF = 0.99
HANN_ZERO_CROSSINGS = 6


def kaiser_sinc_filter(cutoff: float, half_width: float, size: int) -> np.ndarray:
    """BigVGAN's kaiser-windowed sinc low-pass `[size]` (float32), normalised to sum 1. Only for writing synthetic
    files: a model always reads its filters from the checkpoint (the released ones are bf16-rounded)."""
    half = size // 2
    attenuation = 2.285 * (half - 1) * math.pi * 4 * half_width + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    t = np.arange(-half, half) + 0.5 if size % 2 == 0 else np.arange(size) - half
    taps = 2 * cutoff * np.kaiser(size, beta) * np.sinc(2 * cutoff * t)
    return (taps / taps.sum()).astype(np.float32)


def hann_sinc_filter(ratio: int) -> np.ndarray:
    """The BWE skip's Hann-windowed sinc (rolloff 0.99, 6 zero crossings), float32, as UpSample1d builds it."""
    width = math.ceil(HANN_ZERO_CROSSINGS / HANN_ROLLOFF)
    size = 2 * width * ratio + 1
    t = (np.arange(size, dtype=np.float64) / ratio - width) * HANN_ROLLOFF
    window = np.cos(np.clip(t, -HANN_ZERO_CROSSINGS, HANN_ZERO_CROSSINGS) * np.pi / HANN_ZERO_CROSSINGS / 2) ** 2
    return (np.sinc(t) * window * HANN_ROLLOFF / ratio).astype(np.float32)


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




def stft_bases(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """(forward, inverse) `[2 (n/2 + 1), 1, n]` STFT conv bases: real rows, then imaginary rows, times a periodic
    Hann window (the layout of the BWE's `mel_stft.stft_fn.*` buffers). Only for writing synthetic files."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    dft = np.fft.fft(np.eye(n_fft))[: n_fft // 2 + 1]
    basis = np.vstack([dft.real, dft.imag])
    return (basis * window)[:, None, :], (np.linalg.pinv(n_fft * basis).T * window)[:, None, :]
