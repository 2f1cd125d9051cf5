"""Rendering a `Scene`: frames (uint8 RGB, anti-aliased shapes over a plain or smoothly textured background) and its
soundtrack (stereo float32 at a stated sample rate).

No ltx_core counterpart (issue 17's training world). Pure numpy. Clip shapes follow the VAE rules: F = 1 + 8k
frames, H and W multiples of 32 (refused otherwise). The object moves at constant speed from `scene.start` to
`scene.end`; the tone (pitch word -> Hz) plays for the whole clip with 10 ms fades.
"""

from __future__ import annotations

import numpy as np

from ltx_jax.world.grammar import Grammar, Scene, grammar

__all__ = ["check_clip_shape", "render_frames", "render_audio", "SAMPLE_RATE", "SUPERSAMPLE"]

SAMPLE_RATE = 16000  # the official audio VAE's input rate (ltx_core audio processing)
SUPERSAMPLE = 4  # coverage sub-samples per pixel axis (anti-aliasing)


def check_clip_shape(frames: int, height: int, width: int) -> None:
    if frames < 1 or (frames - 1) % 8:
        raise ValueError(f"frames={frames}: clips need 1 + 8k frames (1, 9, 17, 25, ...)")
    if height < 32 or width < 32 or height % 32 or width % 32:
        raise ValueError(f"{height}x{width}: height and width must be positive multiples of 32")


def _background(g: Grammar, name: str, height: int, width: int, phase: tuple[int, int]) -> np.ndarray:
    bg = g.backgrounds[name]
    levels, period = bg["levels"], int(bg.get("period", 8))
    y, x = np.mgrid[0:height, 0:width]
    x, y = x + phase[0], y + phase[1]
    if bg["kind"] == "plain":
        return np.full((height, width, 3), float(levels[0]), np.float32)
    # Smooth (raised-cosine) textures: low-frequency, so a 32x-compressing VAE can carry them.
    wave = np.cos(2 * np.pi * x / period)
    if bg["kind"] == "checks":
        wave = wave * np.cos(2 * np.pi * y / period)
    grey = (levels[0] + (levels[1] - levels[0]) * (0.5 - 0.5 * wave)).astype(np.float32)
    return np.repeat(grey[..., None], 3, axis=-1)


def _coverage(shape: str, cx: float, cy: float, r: float, height: int, width: int) -> np.ndarray:
    """Fraction of each pixel inside the shape [H, W] (pixel (i, j) covers [j, j+1) x [i, i+1))."""
    s = SUPERSAMPLE
    offsets = (np.arange(s) + 0.5) / s
    ys = (np.arange(height)[:, None] + offsets[None]).reshape(-1) - cy
    xs = (np.arange(width)[:, None] + offsets[None]).reshape(-1) - cx
    Y, X = ys[:, None], xs[None, :]
    if shape == "circle":
        inside = X * X + Y * Y <= r * r
    elif shape == "square":  # half-side r * 0.9
        inside = (np.abs(X) <= 0.9 * r) & (np.abs(Y) <= 0.9 * r)
    elif shape == "triangle":  # upright isosceles: apex at top, base 2r wide, height 2r
        t = (Y + r) / (2 * r)
        inside = (t >= 0) & (t <= 1) & (np.abs(X) <= r * t)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return inside.reshape(height, s, width, s).mean(axis=(1, 3), dtype=np.float32)


def render_frames(scene: Scene, frames: int, height: int, width: int, g: Grammar | None = None) -> np.ndarray:
    """uint8 [F, H, W, 3]."""
    g = g or grammar()
    check_clip_shape(frames, height, width)
    bg = _background(g, scene.background, height, width, scene.phase)
    colour = np.asarray(g.colours[scene.colour], np.float32)
    out = np.empty((frames, height, width, 3), np.uint8)
    for f in range(frames):
        t = f / (frames - 1) if frames > 1 else 0.0
        cx = scene.start[0] + t * (scene.end[0] - scene.start[0])
        cy = scene.start[1] + t * (scene.end[1] - scene.start[1])
        a = _coverage(scene.shape, cx, cy, scene.size, height, width)[..., None]
        out[f] = np.clip(np.rint(bg * (1 - a) + colour * a), 0, 255).astype(np.uint8)
    return out


def render_audio(scene: Scene, num_samples: int, sample_rate: int = SAMPLE_RATE, g: Grammar | None = None,
                 amplitude: float = 0.3) -> np.ndarray:
    """float32 [2, num_samples] (the same signal on both channels)."""
    g = g or grammar()
    freq = g.pitches[scene.pitch]
    t = np.arange(num_samples, dtype=np.float64) / sample_rate
    phase = 2 * np.pi * freq * t
    if scene.sound == "beep":
        wave = np.sin(phase)
    elif scene.sound == "buzz":  # band-limited square: odd harmonics below Nyquist / 2, amplitude 1/n
        wave = np.zeros_like(t)
        n = 1
        while n * freq < sample_rate / 4:
            wave += np.sin(n * phase) / n
            n += 2
        wave *= 4 / np.pi * 0.7
    else:
        raise ValueError(f"unknown sound {scene.sound!r}")
    fade = min(int(0.01 * sample_rate), num_samples // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        wave[:fade] *= ramp
        wave[num_samples - fade:] *= ramp[::-1]
    mono = (amplitude * wave).astype(np.float32)
    return np.stack([mono, mono])
