"""The synthetic world's grammar: words, their meanings, captions and scene sampling.

No ltx_core counterpart (issue 17's training world). The grammar is data, `ltx_jax/data/world_grammar.json`:
colours (sRGB), shapes, directions (unit vectors, image axes: +x right, +y down), backgrounds, pitches (Hz),
the shape -> pitch rule, and sound kinds. A caption is the template filled with one word of each kind:
"a red circle moves left on a dark background, high beep".
"""

from __future__ import annotations

import dataclasses
import json
import re
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = ["Grammar", "Scene", "CaptionError", "grammar", "sample_scene", "caption", "parse_caption", "vocabulary"]


class CaptionError(ValueError):
    """A caption that the grammar does not generate (the message names the word)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Grammar:
    template: str
    colours: dict[str, tuple[int, int, int]]
    shapes: tuple[str, ...]
    directions: dict[str, tuple[int, int]]
    backgrounds: dict[str, dict]
    pitches: dict[str, float]
    pitch_by_shape: dict[str, str]
    sounds: dict[str, str]

    @classmethod
    def from_json(cls, data: dict) -> Grammar:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"_doc"})
        if unknown:
            raise ValueError(f"world grammar: unknown keys {unknown}")
        g = cls(template=data["template"], colours={k: tuple(v) for k, v in data["colours"].items()},
                shapes=tuple(data["shapes"]), directions={k: tuple(v) for k, v in data["directions"].items()},
                backgrounds=dict(data["backgrounds"]), pitches={k: float(v) for k, v in data["pitches"].items()},
                pitch_by_shape=dict(data["pitch_by_shape"]), sounds=dict(data["sounds"]))
        if set(g.pitch_by_shape) != set(g.shapes) or not set(g.pitch_by_shape.values()) <= set(g.pitches):
            raise ValueError("world grammar: pitch_by_shape must map every shape to a pitch word")
        for name, bg in g.backgrounds.items():
            if bg.get("kind") not in ("plain", "stripes", "checks"):
                raise ValueError(f"world grammar: background {name!r} has unknown kind {bg.get('kind')!r}")
        return g


@lru_cache(maxsize=1)
def grammar() -> Grammar:
    """The package's grammar (ltx_jax/data/world_grammar.json)."""
    text = resources.files("ltx_jax").joinpath("data/world_grammar.json").read_text()
    return Grammar.from_json(json.loads(text))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scene:
    """One clip's content; geometry in pixels, times in frames / seconds."""

    colour: str
    shape: str
    direction: str
    background: str
    pitch: str
    sound: str
    size: float  # circle radius; the other shapes have the same bounding-box half-width
    start: tuple[float, float]  # centre (x, y) at the first frame
    end: tuple[float, float]  # centre (x, y) at the last frame
    phase: tuple[int, int]  # texture offset (x, y) of the background, pixels

    @property
    def caption(self) -> str:
        return caption(self)

    def attributes(self) -> dict[str, str]:
        return {"colour": self.colour, "shape": self.shape, "direction": self.direction,
                "background": self.background, "pitch": self.pitch, "sound": self.sound}


def sample_scene(rng: np.random.Generator, height: int, width: int, g: Grammar | None = None) -> Scene:
    """A random scene that keeps the whole object inside the frame for the whole clip."""
    g = g or grammar()
    colour = str(rng.choice(list(g.colours)))
    shape = str(rng.choice(list(g.shapes)))
    direction = str(rng.choice(list(g.directions)))
    background = str(rng.choice(list(g.backgrounds)))
    sound = str(rng.choice(list(g.sounds)))
    size = float(rng.uniform(0.13, 0.18) * min(height, width))
    margin = size + 1.5
    dx, dy = g.directions[direction]
    centre = []
    for axis, (extent, d) in enumerate(((width, dx), (height, dy))):
        lo, hi = margin, extent - margin
        if d == 0:
            c = float(rng.uniform(lo, hi))
            centre.append((c, c))
        else:  # travel 55-80% of the free span, in the direction
            travel = float(rng.uniform(0.55, 0.8)) * (hi - lo)
            a = float(rng.uniform(lo, hi - travel))
            centre.append((a, a + travel) if d > 0 else (a + travel, a))
    (x0, x1), (y0, y1) = centre
    phase = (int(rng.integers(0, 64)), int(rng.integers(0, 64)))
    return Scene(colour=colour, shape=shape, direction=direction, background=background,
                 pitch=g.pitch_by_shape[shape], sound=sound, size=size, start=(x0, y0), end=(x1, y1), phase=phase)


def caption(scene: Scene, g: Grammar | None = None) -> str:
    g = g or grammar()
    return g.template.format(**scene.attributes())


def parse_caption(text: str, g: Grammar | None = None) -> dict[str, str]:
    """The attribute words of a caption the template generates; CaptionError names what does not fit."""
    g = g or grammar()
    kinds = {"colour": g.colours, "shape": g.shapes, "direction": g.directions, "background": g.backgrounds,
             "pitch": g.pitches, "sound": g.sounds}
    pattern = re.escape(g.template.strip())
    for kind in kinds:
        pattern = pattern.replace(re.escape("{" + kind + "}"), f"(?P<{kind}>\\w+)")
    m = re.fullmatch(pattern, " ".join(text.strip().lower().split()))
    if m is None:
        raise CaptionError(f"caption {text!r} does not follow the template {g.template!r}")
    out = m.groupdict()
    for kind, words in kinds.items():
        if out[kind] not in words:
            raise CaptionError(f"caption {text!r}: {out[kind]!r} is not a {kind} word ({sorted(words)})")
    return out


def vocabulary(g: Grammar | None = None) -> list[str]:
    """Every word a caption can contain (template words, attribute words, punctuation), in a fixed order."""
    g = g or grammar()
    template = re.sub(r"\{\w+\}", " ", g.template)
    words = re.findall(r"\w+|[^\w\s]", template)
    for group in (g.colours, g.shapes, g.directions, g.backgrounds, g.pitches, g.sounds):
        words += list(group)
    seen: dict[str, None] = {}
    for w in words:
        seen.setdefault(w, None)
    return list(seen)
