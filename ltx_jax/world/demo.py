"""`ltx-jax demo`: the README's main job. A prompt -> an mp4 with sound and a contact sheet, made by the embedded
default (the tiny LTX-2.3 trained on the synthetic world, `ltx_jax/data/world_default`), then read back by the
world's analyzer so the output says whether the clip shows what was asked.

No ltx_core counterpart. It runs `ltx-jax generate` on the packaged files: by default the distilled student (the
dev model + `distilled-lora.safetensors`, the 8 distilled sigmas at CFG 1, `distilled-one-stage`); with
`--pipeline dev` the teacher (`dev-one-stage`, 32 steps, video CFG 3 against the empty prompt it was trained
with, no STG: the sampler its adherence was measured with). Float32 compute, 9 frames of 64 x 64 at 24 fps.
Writes OUT/<pipeline>.mp4 (+ its .json sidecar), OUT/<pipeline>.png (every frame side by side, x3) and
OUT/<pipeline>.analysis.json (the prompt's words and the analyzer's verdicts).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

__all__ = ["run_demo", "contact_sheet", "asked"]

DEFAULT_PROMPT = "a red circle moves left on a dark background, high beep"
DEV_STEPS, DEV_CFG, DEV_AUDIO_CFG = 32, 2.0, 7.0  # the recipe's adherence sampler (video CFG 2: its best; audio 7)


def asked(prompt: str) -> dict[str, str | None]:
    """The grammar words a prompt names: {colour, shape, direction, background, pitch, sound} (None if absent)."""
    from ltx_jax.world.grammar import grammar

    g = grammar()
    words = re.findall(r"[a-z]+", prompt.lower())
    out = {}
    for attr, vocab in (("colour", g.colours), ("shape", g.shapes), ("direction", g.directions),
                        ("background", g.backgrounds), ("pitch", g.pitches), ("sound", g.sounds)):
        out[attr] = next((w for w in words if w in vocab), None)
    return out


def contact_sheet(frames: np.ndarray, scale: int = 3, gap: int = 2) -> np.ndarray:
    """uint8 [F, H, W, 3] -> one row of the frames, each enlarged `scale` x (nearest), `gap` white pixels apart."""
    f, h, w, _ = frames.shape
    big = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    sheet = np.full((h * scale, f * w * scale + (f - 1) * gap, 3), 255, np.uint8)
    for i in range(f):
        x = i * (w * scale + gap)
        sheet[:, x:x + w * scale] = big[i]
    return sheet


def _generate_argv(prompt: str, default: Path, pipeline: str, out: Path, seed: int) -> list[str]:
    from ltx_jax.world.package import GEMMA, LORA, MODEL

    argv = ["generate", prompt, "--checkpoint", str(default / MODEL), "--gemma", str(default / GEMMA),
            "--frames", "9", "--height", "64", "--width", "64", "--fps", "24", "--seed", str(seed),
            "--dtype", "float32", "--out", str(out), "--quiet"]
    if pipeline == "distilled":
        return argv + ["--pipeline", "distilled-one-stage", "--lora", f"{default / LORA}:1.0"]
    neutral = ["--video-stg-guidance-scale", "0", "--video-rescale-scale", "0", "--a2v-guidance-scale", "1",
               "--audio-cfg-guidance-scale", str(DEV_AUDIO_CFG), "--audio-stg-guidance-scale", "0",
               "--audio-rescale-scale", "0",
               "--v2a-guidance-scale", "1"]
    return argv + ["--pipeline", "dev-one-stage", "--steps", str(DEV_STEPS), "--video-cfg-guidance-scale",
                   str(DEV_CFG), "--negative-prompt", "", *neutral]


def _generate(argv: list[str]) -> int:
    """`ltx-jax generate ARGV` through the generate command's own parser and runner (not `ltx_jax.cli`, a layer up)."""
    import argparse

    from ltx_jax.pipelines.command import add_parser

    parser = argparse.ArgumentParser(prog="ltx-jax")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def run_demo(prompt: str = DEFAULT_PROMPT, *, pipeline: str = "distilled", out: str | Path = "outputs/demo",
             seed: int = 0, default: str | Path | None = None, quiet: bool = False) -> dict:
    """Generate `prompt` with the embedded default and judge it; returns {"files", "asked", "verdicts", "agree"}.

    Raises:
        FileNotFoundError: the default's files are missing (a partial checkout).
        ValueError: an unknown pipeline, or a prompt with none of the default's words.
    """
    from ltx_jax.pipelines.media import write_png
    from ltx_jax.world.analyze import analyze_clip
    from ltx_jax.world.media import read_clip_mp4
    from ltx_jax.world.package import DEFAULT_DIR, MANIFEST

    default = Path(default) if default is not None else DEFAULT_DIR
    if pipeline not in ("distilled", "dev"):
        raise ValueError(f"demo pipeline {pipeline!r}; choose distilled (the 8-step student) or dev (the teacher)")
    if not (default / MANIFEST).is_file():
        raise FileNotFoundError(f"{default}: the embedded default is missing (no {MANIFEST}); restore it from git, "
                                "or rebuild it with `ltx-jax world-default --out runs/default --install`")
    words = asked(prompt)
    if not any(words.values()):
        raise ValueError(f"{prompt!r}: names nothing the embedded default knows; it knows the world grammar "
                         "(README 'Synthetic world'), e.g. " + repr(DEFAULT_PROMPT))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    video = out / f"{pipeline}.mp4"
    if _generate(_generate_argv(prompt, default, pipeline, video, seed)) != 0:
        raise RuntimeError(f"generate failed for {prompt!r}")
    frames, _, audio, rate = read_clip_mp4(video)
    sheet = out / f"{pipeline}.png"
    write_png(sheet, contact_sheet(frames))
    verdicts = analyze_clip(frames, audio, rate) if audio is not None else analyze_clip(frames)
    judged = {a: verdicts.get(a) for a in ("colour", "shape", "direction", "pitch", "sound")}
    agree = {a: judged[a] == words[a] for a in judged if words.get(a) is not None}
    result = {"prompt": prompt, "pipeline": pipeline, "seed": seed,
              "files": {"video": str(video), "contact_sheet": str(sheet)}, "asked": words, "verdicts": judged,
              "agree": agree}
    path = out / f"{pipeline}.analysis.json"
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    if not quiet:
        print(f"{video}  {sheet}", file=sys.stderr)
        for a in agree:
            mark = "ok" if agree[a] else "MISSED"
            print(f"  {a:9s} asked {words[a]:9s} analyzer {judged[a]!s:9s} {mark}", file=sys.stderr)
    return result
