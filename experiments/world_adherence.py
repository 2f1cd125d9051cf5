"""Prompt adherence of the world's dev model and its distilled student (issue 17): the README's table.

Run (CPU):
    .venv/bin/python experiments/world_adherence.py --dit runs/dit [--student runs/student/student.safetensors]
        [--prompts 64] [--steps 30] [--cfg 3.0] [--out experiments/results/world_adherence.json]
    .venv/bin/python experiments/world_adherence.py --default ltx_jax/data/world_default --steps 32  # shipped files

Prompts: the captions of the first `--prompts` clips of world seed 1000 (training uses seed 0). Each prompt is
generated once per model (seed = prompt index) at the training size (9 x 64 x 64): the dev model with guided
dev Euler at `--steps` (video CFG `--cfg`, audio CFG `--audio-cfg`, against the empty prompt), the student with
the 8 official distilled sigmas at CFG = 1. Each clip is judged by `ltx_jax.world.analyze_clip`: an attribute
counts when the analyzer's word is the prompt's. Reported per model: the % agreement per attribute (pitch with
`--with-audio`), the transformer evaluations per clip, the seconds, and each clip's verdicts (next to
the prompts under "captions", for confusion tables). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ltx_jax.world.adherence import AdherenceRun, generate_world, held_out_scenes, score


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dit", help="a finished `ltx-jax world-dit --out` folder")
    p.add_argument("--student", help="the distilled student's file (world-distill's student.safetensors)")
    p.add_argument("--default", help="instead of --dit / --student: a packaged default folder (model.safetensors, "
                                     "distilled-lora.safetensors, gemma/), e.g. ltx_jax/data/world_default")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--cfg", type=float, default=3.0)
    p.add_argument("--audio-cfg", type=float, default=7.0, help="the dev model's audio CFG (official default 7)")
    p.add_argument("--with-audio", action="store_true")
    p.add_argument("--out")
    args = p.parse_args()
    if (args.dit is None) == (args.default is None):
        p.error("give --dit (and --student) or --default")
    scenes = held_out_scenes(args.prompts)
    captions = [s.caption for s in scenes]
    dev_run = AdherenceRun(steps=args.steps, cfg=args.cfg, audio_cfg=args.audio_cfg)
    student_run = AdherenceRun(pipeline="distilled")
    if args.default:
        d = Path(args.default)
        gemma, models = d / "gemma", [("dev", d / "model.safetensors", dev_run, ()),
                                      ("student", d / "model.safetensors", student_run,
                                       ((d / "distilled-lora.safetensors", 1.0),))]
    else:
        gemma, models = Path(args.dit) / "gemma", [("dev", Path(args.dit) / "train" / "model.safetensors", dev_run, ())]
        if args.student:
            models.append(("student", Path(args.student), student_run, ()))
    report = {"prompts": args.prompts, "world_seed": 1000, "captions": captions}
    for name, path, run, loras in models:
        t0 = time.perf_counter()
        clips, evals = generate_world(path, gemma, captions, run, loras=loras)
        result = score(scenes, clips, with_audio=args.with_audio)
        report[name] = {"file": str(path), "loras": [str(x) for x, _ in loras], "pipeline": run.pipeline,
                        "steps": run.steps if name == "dev" else 8,
                        "cfg": run.cfg if name == "dev" else 1.0, "transformer_evaluations": evals,
                        "scores": result["scores"], "seconds": round(time.perf_counter() - t0, 1),
                        "verdicts": [{k: (v if isinstance(v, (str, int, float)) or v is None else str(v))
                                      for k, v in verdict.items()} for verdict in result["verdicts"]]}
    if "student" in report:
        report["evaluation_ratio"] = report["dev"]["transformer_evaluations"] / report["student"][
            "transformer_evaluations"]
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
