"""Resampling an input waveform to the audio encoder's rate (e.g. 44.1 or 48 kHz -> 16 kHz).

Counterpart: ltx_core `model/audio_vae/ops.py` `AudioProcessor.resample_audio`, which calls
`torchaudio.functional.resample(waveform, orig, new)` with its defaults: Hann-windowed sinc interpolation,
6 zero crossings, rolloff 0.99.

The math (torchaudio's documented definition): with `o = orig / g`, `n = new / g` (g = gcd), cutoff
`c = min(o, n) * 0.99` and `w = ceil(6 o / c)`, output sample `j` of phase `p = j mod n` is
`sum_k x[(j // n) o - w + k] * h_p[k]`, `k < 2w + o`, where `h_p[k] = (c / o) sinc(t) cos(pi t / 12)^2`,
`t = clip(c ((k - w) / o - p / n), -6, 6)` (zero samples outside the signal). The output has
`ceil(n * samples / o)` samples. torchaudio builds `h` in the waveform's dtype (float32 here) and applies it as a
strided `conv1d`; so do we (a strided convolution per phase in float32, on the host).
"""

from __future__ import annotations

import math

import numpy as np

from ltx_jax.nn.dsp import HANN_ROLLOFF, HANN_ZERO_CROSSINGS

__all__ = ["resample_waveform", "resample_kernel"]


def resample_kernel(orig: int, new: int) -> tuple[np.ndarray, int]:
    """(`h` `[n, 2w + o]` float32, `w`) for the reduced rates `orig = o`, `new = n` (see the module docstring)."""
    zc = float(HANN_ZERO_CROSSINGS)
    cutoff = min(orig, new) * HANN_ROLLOFF
    width = math.ceil(zc * orig / cutoff)
    # float32 throughout, as torchaudio does for a float32 waveform
    t = (np.arange(-width, width + orig, dtype=np.float32)[None, :] / np.float32(orig)
         + np.arange(0, -new, -1, dtype=np.float32)[:, None] / np.float32(new))
    t = np.clip(t * np.float32(cutoff), -zc, zc).astype(np.float32)
    window = np.cos(t * np.float32(math.pi / zc / 2)) ** 2
    t = t * np.float32(math.pi)
    with np.errstate(invalid="ignore", divide="ignore"):
        h = np.where(t == 0, np.float32(1.0), np.sin(t) / t).astype(np.float32)
    return (h * (window * np.float32(cutoff / orig))).astype(np.float32), width


def resample_waveform(waveform: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """`[..., samples]` float32 at `orig_rate` -> `[..., ceil(samples * new / orig)]` float32 at `new_rate`."""
    if int(orig_rate) != orig_rate or int(new_rate) != new_rate or orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive integers; got {orig_rate} -> {new_rate}")
    x = np.asarray(waveform, np.float32)
    if orig_rate == new_rate:
        return x
    g = math.gcd(int(orig_rate), int(new_rate))
    o, n = int(orig_rate) // g, int(new_rate) // g
    h, width = resample_kernel(o, n)
    lead, length = x.shape[:-1], x.shape[-1]
    flat = np.pad(x.reshape(-1, length), ((0, 0), (width, width + o)))  # [N, w + samples + w + o]
    blocks = (flat.shape[1] - h.shape[1]) // o + 1
    # frames [N, blocks, 2w + o]: block b reads flat[b o : b o + 2w + o]
    frames = np.lib.stride_tricks.sliding_window_view(flat, h.shape[1], axis=1)[:, ::o][:, :blocks]
    out = np.einsum("nbk,pk->nbp", frames, h, dtype=np.float32, optimize=True)  # [N, blocks, n]: phase p of block b
    target = math.ceil(n * length / o)
    return out.reshape(out.shape[0], -1)[:, :target].reshape(*lead, target).astype(np.float32)
