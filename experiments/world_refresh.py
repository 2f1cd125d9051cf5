"""Refresh the shipped embedded default with the stages added after it was trained (issue 17), without
retraining its VAE and DiT: the audio stage (`world.train_audio`, decoder + vocoder) and the re-distilled student
(`world.distill` with audio CFG in the teacher's targets).

    python experiments/world_refresh.py --out runs/refresh [--install]   # JSON on stdout

No ltx_core counterpart. Steps (each skipped when its result exists, so a re-run resumes):
  1. `audio/`: `train_audio` on the shipped model file (its audio encoder is the one the DiT learned);
  2. `dit/`: a stage-2 folder rebuilt around the shipped files: `train/model.safetensors` and `base.safetensors`
     = the shipped model in float32 (bf16 -> float32 is exact), `gemma/` copied; `world.train_dit.prepare` then
     writes the world dataset (seed 0, 768 clips), its latent cache and the empty prompt, as stage 2 did;
  3. `distill/`: `distill` of that teacher with the recipe's `DistillConfig`;
  4. `default/`: the shipped folder with the audio stage swapped in (`package.with_audio`), the distilled LoRA
     rebuilt from the new student (`package.lora_from_student`), the manifest's distill entries updated, the
     adherence measured again (`recipe.measure_default`, dev model with audio CFG 7) and, with
     `--install`, installed.
The full reproduce command (`ltx-jax world-default`) runs the same stages from scratch in one go; this script
exists because the shipped VAE and DiT were trained before the audio stage existed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--install", action="store_true")
    args = p.parse_args(argv)
    from ltx_jax.world.distill import distill
    from ltx_jax.world.package import (DEFAULT_DIR, GEMMA, LORA, MANIFEST, MODEL, cast_copy, curve, file_table,
                                       lora_from_student, with_audio)
    from ltx_jax.world.recipe import Recipe, install_default, measure_default, record_stage
    from ltx_jax.world.train_audio import train_audio
    from ltx_jax.world.train_dit import DiTTrainConfig, prepare

    out = Path(args.out)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    shipped = json.loads((DEFAULT_DIR / MANIFEST).read_text())
    fresh = Recipe().to_json()
    recipe = Recipe.from_json({**shipped["recipe"], **{k: fresh[k] for k in ("audio", "distill", "dev_audio_cfg")}})
    out.mkdir(parents=True, exist_ok=True)
    v = recipe.vae
    if not (out / "audio" / "audio.json").exists():
        r = train_audio(out / "audio", DEFAULT_DIR / MODEL, recipe.audio, frames=v.frames, height=v.height,
                        width=v.width, log=log)
        record_stage(out, "audio", r["seconds"])
    dit = out / "dit"
    if not (dit / "train" / "model.safetensors").exists():
        (dit / "train").mkdir(parents=True, exist_ok=True)
        cast_copy(DEFAULT_DIR / MODEL, dit / "base.safetensors", np.float32)
        shutil.copytree(DEFAULT_DIR / GEMMA, dit / "gemma", dirs_exist_ok=True)
        shutil.copy2(dit / "base.safetensors", dit / "train" / "model.safetensors")
    prepare(dit, None, None, DiTTrainConfig(**shipped["recipe"]["dit"]), frames=v.frames, height=v.height,
            width=v.width, log=log)
    if not (out / "distill" / "student.safetensors").exists():
        r = distill(dit, out / "distill", recipe.distill, log=log)
        record_stage(out, "distill", r["seconds"])
    default = out / "default"
    if not (default / MANIFEST).exists():
        staged = out / ".default.swapped"
        shutil.rmtree(staged, ignore_errors=True)
        manifest = with_audio(DEFAULT_DIR, out / "audio", staged, provenance=(
            "The audio stage and a second distillation (audio CFG 7 in the teacher's targets) ran later on the "
            "packaged files (`experiments/world_refresh.py`); the VAE and the DiT are unchanged."))
        manifest["distilled_lora"] = lora_from_student(dit / "train" / "model.safetensors",
                                                       out / "distill" / "student.safetensors", staged / LORA)
        manifest["recipe"]["distill"] = recipe.to_json()["distill"]
        manifest["loss_curves"]["distill (step, loss, video, audio)"] = curve(out / "distill" / "loss.jsonl", 50,
                                                                             ("loss", "video", "audio"))
        manifest["recipe"]["dev_audio_cfg"] = recipe.dev_audio_cfg
        manifest["files"] = file_table(staged)
        manifest["total_bytes"] = sum(f["bytes"] for f in manifest["files"].values())
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        staged.rename(default)
    manifest = json.loads((default / MANIFEST).read_text())
    if manifest.get("adherence") is None:
        manifest = measure_default(default, recipe, out, log)
    if args.install:
        install_default(default, DEFAULT_DIR, log)
    print(json.dumps({"total_bytes": manifest["total_bytes"], "adherence": manifest["adherence"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
