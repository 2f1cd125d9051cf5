"""Numpy STFT / mel helpers for the audio fixtures (test support, float64).

`slaney_mel_filterbank` follows the published definition of the slaney mel scale with slaney area
normalisation (as librosa's `filters.mel(htk=False, norm="slaney")` and torchaudio's
`melscale_fbanks(norm="slaney", mel_scale="slaney")` define it). `dft_bases` builds tacotron-style STFT
conv bases: rows 0..n/2 the real part, rows n/2+1.. the imaginary part, times a periodic Hann window.
"""

import numpy as np

_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(f):
    f = np.asarray(f, np.float64)
    return np.where(f >= _MIN_LOG_HZ, _MIN_LOG_MEL + np.log(np.maximum(f, 1e-10) / _MIN_LOG_HZ) / _LOGSTEP, f / _F_SP)


def mel_to_hz(m):
    m = np.asarray(m, np.float64)
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), _F_SP * m)


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangular filters on the slaney mel scale, slaney-normalised."""
    freqs = np.linspace(0.0, sample_rate // 2, n_fft // 2 + 1)
    pts = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    diff = np.diff(pts)
    slopes = pts[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    fb *= (2.0 / (pts[2:n_mels + 2] - pts[:n_mels]))[None, :]
    return fb.T


def periodic_hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def dft_bases(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """(forward [2 (n/2+1), 1, n], inverse [2 (n/2+1), 1, n]) STFT conv bases with a periodic Hann window."""
    cut = n_fft // 2 + 1
    fourier = np.fft.fft(np.eye(n_fft))
    basis = np.vstack([np.real(fourier[:cut]), np.imag(fourier[:cut])])
    window = periodic_hann(n_fft)
    forward = basis * window[None, :]
    inverse = np.linalg.pinv(n_fft * basis).T * window[None, :]
    return forward[:, None, :], inverse[:, None, :]
