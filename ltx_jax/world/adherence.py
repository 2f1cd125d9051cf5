"""Prompt adherence of a model of the world (issue 17): generate held-out prompts, read them back with the analyzer.

No ltx_core counterpart. Prompts are the captions of world clips of a seed never trained on (default 1000);
each generated clip is judged by `analyze_clip`, and an attribute counts as followed when the analyzer's word
equals the prompt's. The count of transformer evaluations (forward passes of the DiT, CFG's unconditional
pass included) is reported with the scores, so a teacher and a student can be compared at equal footing.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import numpy as np

from ltx_jax.world.analyze import analyze_clip
from ltx_jax.world.dataset import WorldSpec, make_clip
from ltx_jax.world.grammar import Scene

__all__ = ["AdherenceRun", "held_out_scenes", "generate_world", "score"]

ATTRIBUTES = ("colour", "shape", "direction", "pitch")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdherenceRun:
    pipeline: str = "dev"      # "dev": guided dev Euler at full size (dev-one-stage); "distilled": the 8
    #                            official distilled sigmas at full size, CFG = 1 (distilled-one-stage)
    steps: int = 30            # dev only
    cfg: float = 3.0           # video CFG scale (dev only; CFG = 1 means no unconditional pass)
    audio_cfg: float = 7.0     # audio CFG scale (dev only; from the same unconditional pass), the official default
    frames: int = 9
    height: int = 64
    width: int = 64
    fps: float = 24.0
    seed: int = 0              # generation seed of prompt i is seed + i

    def __post_init__(self):
        if self.pipeline not in ("dev", "distilled"):
            raise ValueError(f"adherence pipeline {self.pipeline!r}; expected 'dev' or 'distilled'")
        if self.steps < 1:
            raise ValueError(f"adherence steps={self.steps} must be >= 1")


def held_out_scenes(count: int, *, seed: int = 1000, frames: int = 9, height: int = 64, width: int = 64) -> list[Scene]:
    spec = WorldSpec(seed=seed, clips=count, frames=frames, height=height, width=width)
    return [make_clip(spec, i)[0] for i in range(count)]


def generate_world(checkpoint: str | os.PathLike, gemma: str | os.PathLike, captions: Sequence[str],
                   run: AdherenceRun, log: Callable[[str], None] | None = None,
                   loras: Sequence[tuple[str | os.PathLike, float]] = ()) -> tuple[list[dict], int]:
    """Generate one clip per caption (`loras` merged into the transformer, e.g. the default's distilled LoRA);
    returns ([{"frames": uint8 [F, H, W, 3], "audio": [2, N] | None, "sample_rate"}], transformer evaluations
    per clip)."""
    from ltx_jax.configs import Runtime
    from ltx_jax.pipelines.generation import Request, dev_one_stage, distilled_one_stage
    from ltx_jax.pipelines.stages import load_models
    from ltx_jax.sampling.guidance import GuiderParams
    from ltx_jax.sampling.schedules import DISTILLED_STAGE1_SIGMAS
    from ltx_jax.sampling.samplers import Prompt, TextContext
    from ltx_jax.training.encoders import gemma_captions
    import jax.numpy as jnp

    rt = Runtime(param_dtype="float32", compute_dtype="float32")
    encode = gemma_captions(gemma, checkpoint, rt)
    contexts = encode(list(captions) + [""])
    models = load_models(checkpoint, runtime=rt, loras=list(loras))
    empty = TextContext(video=jnp.asarray(contexts[-1][0][None]), audio=jnp.asarray(contexts[-1][1][None]))
    cfg = run.cfg if run.pipeline == "dev" else 1.0
    video = GuiderParams(cfg_scale=cfg)
    audio = GuiderParams(cfg_scale=run.audio_cfg if run.pipeline == "dev" else 1.0)
    guided = cfg != 1.0 or audio.cfg_scale != 1.0  # one unconditional pass serves both streams
    steps = run.steps if run.pipeline == "dev" else len(DISTILLED_STAGE1_SIGMAS) - 1
    evals = steps * (2 if guided else 1)
    out = []
    for i, (v, a) in enumerate(contexts[:-1]):
        prompt = Prompt(positive=TextContext(video=jnp.asarray(v[None]), audio=jnp.asarray(a[None])),
                        negative=empty if guided else None)
        request = Request(frames=run.frames, height=run.height, width=run.width, fps=run.fps, seed=run.seed + i)
        if run.pipeline == "dev":
            gen = dev_one_stage(models, prompt, request, steps=run.steps, video=video, audio=audio)
        else:
            gen = distilled_one_stage(models, prompt, request)
        out.append({"frames": gen.frames_uint8(),
                    "audio": None if gen.audio is None else np.asarray(gen.audio[0]), "sample_rate": gen.sample_rate})
        if log is not None:
            log(f"{i + 1}/{len(captions)}: {captions[i]}")
    return out, evals


def score(scenes: Sequence[Scene], clips: Sequence[dict], *, with_audio: bool) -> dict:
    """{attribute: % of clips whose analyzer verdict equals the prompt's word} (+ per-clip verdicts)."""
    verdicts = []
    for clip in clips:
        audio = (clip["audio"], clip["sample_rate"]) if with_audio and clip["audio"] is not None else (None, None)
        verdicts.append(analyze_clip(clip["frames"], *audio))
    attrs = [a for a in ATTRIBUTES if a != "pitch" or with_audio]
    table = {a: 100.0 * float(np.mean([v.get(a) == getattr(s, a) for s, v in zip(scenes, verdicts)]))
             for a in attrs}
    return {"scores": table, "verdicts": verdicts}
