"""A deterministic analyzer of world clips: the object's colour, shape and motion direction, and the sound's
dominant pitch and kind, each as a grammar word (plus the raw measurements).

No ltx_core counterpart (issue 17: judges generated clips). Pure numpy; works on decoded mp4 frames.
- The object is the saturated part of the frame (backgrounds are achromatic): per pixel s = max(RGB) - min(RGB).
- object pixels: s > max(60, half the 99.5th percentile of s) (so a noisy background stays out).
- colour: the named colour nearest (RGB distance) to the median RGB of the object pixels over all frames.
- coverage a = clip((s - median s) / (s_colour - median s), 0, 1) per frame, zero outside the object pixels' box
  (2 px margin); centroid = a-weighted mean position; bounding box of a > 0.5.
- shape (median over frames): the triangle's centroid sits 1/6 of the box height below the box centre, circle's
  and square's at it; the fill sum(a) / (max column sum * max row sum), blur-robust, is pi/4 for a circle, 1 for a
  square (1/2 for the triangle).
- direction: the centroid's displacement (least-squares slope over frames), matched to the nearest direction.
- pitch: the peak of the Hann-windowed spectrum in 80-4000 Hz, the nearest pitch word in octaves; kind: "buzz"
  when the 3rd harmonic has > 2% of the fundamental's power (a square wave has 11%), else "beep".
"""

from __future__ import annotations

import numpy as np

from ltx_jax.world.grammar import Grammar, grammar

__all__ = ["analyze_frames", "analyze_audio", "analyze_clip", "SATURATION_THRESHOLD"]

SATURATION_THRESHOLD = 60.0


def _saturation(frames: np.ndarray) -> np.ndarray:
    f = frames.astype(np.float32)
    return f.max(axis=-1) - f.min(axis=-1)


def analyze_frames(frames: np.ndarray, g: Grammar | None = None) -> dict:
    """Verdicts for uint8 frames [F, H, W, 3]: colour, shape, direction (None where there is no object)."""
    g = g or grammar()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [F, H, W, 3]; got {frames.shape}")
    sat = _saturation(frames)
    threshold = max(SATURATION_THRESHOLD, 0.5 * float(np.percentile(sat, 99.5)))  # above a noisy background
    mask = sat > threshold
    out: dict = {"colour": None, "shape": None, "direction": None, "object_pixels": int(mask.sum())}
    if not mask.any():
        return out
    rgb = np.median(frames[mask].astype(np.float32), axis=0)
    names = list(g.colours)
    table = np.asarray([g.colours[n] for n in names], np.float32)
    out["colour"] = names[int(np.argmin(((table - rgb) ** 2).sum(-1)))]
    out["rgb"] = [float(v) for v in rgb]
    full = float(np.ptp(table[names.index(out["colour"])]))
    h, w = frames.shape[1:3]
    ys, xs = np.arange(h, dtype=np.float64) + 0.5, np.arange(w, dtype=np.float64) + 0.5
    centroids, fills, offsets = [], [], []
    for s, m in zip(sat, mask):
        if m.sum() < 4:
            continue
        floor = float(np.median(s))  # the background's saturation (noise), most of the frame
        a = np.clip((s - floor) / max(full - floor, 1.0), 0.0, 1.0)
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))  # the object's box, 2 px margin
        keep = np.zeros_like(a)
        keep[max(rows[0] - 2, 0):rows[-1] + 3, max(cols[0] - 2, 0):cols[-1] + 3] = 1
        a = a * keep
        total = float(a.sum())
        inside = a > 0.5
        if total < 4 or not inside.any():
            continue
        cy = float((a.sum(1) * ys).sum() / total)
        cx = float((a.sum(0) * xs).sum() / total)
        rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
        top, bottom = rows[0], rows[-1] + 1
        centroids.append((cx, cy))
        fills.append(total / (float(a.sum(0).max()) * float(a.sum(1).max())))
        offsets.append((cy - (top + bottom) / 2) / (bottom - top))
    if not centroids:
        return out
    fill, offset = float(np.median(fills)), float(np.median(offsets))
    out["fill"], out["centroid_offset"] = fill, offset
    if offset > 0.08:
        shape = "triangle"
    else:
        shape = "square" if fill > (np.pi / 4 + 1) / 2 else "circle"
    out["shape"] = shape if shape in g.shapes else None
    track = np.asarray(centroids)
    if len(track) >= 2:
        t = np.arange(len(track), dtype=np.float64)
        t -= t.mean()
        slope = (t[:, None] * (track - track.mean(0))).sum(0) / (t * t).sum()
        out["velocity"] = [float(v) for v in slope]
        dirs = list(g.directions)
        vecs = np.asarray([g.directions[d] for d in dirs], np.float64)
        out["direction"] = dirs[int(np.argmax(vecs @ slope))] if np.abs(slope).max() > 0.05 else None
    return out


def _peak_power(spectrum: np.ndarray, freqs: np.ndarray, f: float, rel: float = 0.03) -> float:
    band = (freqs >= f * (1 - rel)) & (freqs <= f * (1 + rel))
    return float(spectrum[band].max()) if band.any() else 0.0


def analyze_audio(audio: np.ndarray, sample_rate: int, g: Grammar | None = None) -> dict:
    """Verdicts for a waveform [C, N] or [N]: pitch word, sound word, and the measured frequency (Hz)."""
    g = g or grammar()
    x = np.asarray(audio, np.float64)
    x = x.mean(axis=0) if x.ndim == 2 else x
    out: dict = {"pitch": None, "sound": None, "frequency": None}
    if x.size < 64 or not np.any(x):
        return out
    x = x - x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1.0 / sample_rate)
    band = (freqs >= 80) & (freqs <= 4000)
    if not band.any() or spectrum[band].max() <= 0:
        return out
    i = np.flatnonzero(band)[int(np.argmax(spectrum[band]))]
    if 0 < i < len(spectrum) - 1:  # parabolic interpolation of the log peak
        a, b, c = np.log(spectrum[i - 1:i + 2] + 1e-30)
        shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
    else:
        shift = 0.0
    f0 = float((i + shift) * sample_rate / x.size)
    out["frequency"] = f0
    names = list(g.pitches)
    out["pitch"] = names[int(np.argmin([abs(np.log2(f0 / g.pitches[n])) for n in names]))]
    ratio = _peak_power(spectrum, freqs, 3 * f0) / max(_peak_power(spectrum, freqs, f0), 1e-30)
    out["harmonic_ratio"] = ratio
    sound = "buzz" if ratio > 0.02 else "beep"
    out["sound"] = sound if sound in g.sounds else None
    return out


def analyze_clip(frames: np.ndarray, audio: np.ndarray | None = None, sample_rate: int | None = None,
                 g: Grammar | None = None) -> dict:
    """`analyze_frames` and (when audio is given) `analyze_audio` verdicts in one dict."""
    out = analyze_frames(frames, g)
    if audio is not None:
        if sample_rate is None:
            raise ValueError("analyze_clip: audio needs its sample_rate")
        out.update(analyze_audio(audio, sample_rate, g))
    return out
