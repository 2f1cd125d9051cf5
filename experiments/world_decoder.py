"""Add the decoder stage (stage 1b, `world.train_decoder`) to a finished run of the embedded default (issue 17).

    python experiments/world_decoder.py --run runs/retrain --out runs/decoder [--install]   # JSON summary on stdout

No ltx_core counterpart. Why: the decoder stage is newer than the shipped default. It keeps stage 1's encoder and
latent statistics bit for bit, and every later stage (DiT, audio stage, student) only ever encodes, so those of
the finished run `--run` are what `world-default` would train again; they are reused (hard links) rather than
retrained: `--out` gets `--run`'s stages, a `recipe.json` with the decoder stage added (and the provenance saying
this), then `recipe.reproduce` runs the decoder stage, packages and measures adherence. Stage 1's loss curve and
seconds in the manifest are taken from `--run`'s package when its stage 1 was itself restored
(`experiments/world_retrain.py` leaves an empty curve).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished `world-default` / world_retrain.py run folder")
    p.add_argument("--out", required=True)
    p.add_argument("--install", action="store_true")
    args = p.parse_args(argv)
    from ltx_jax.world.package import DEFAULT_DIR, MANIFEST, code_fingerprint
    from ltx_jax.world.recipe import Recipe, install_default, reproduce

    run, out = Path(args.run), Path(args.out)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    pinned = json.loads((run / "recipe.json").read_text())
    if "decoder" in pinned["recipe"]:
        raise SystemExit(f"{run}: already has a decoder stage; run `ltx-jax world-default --out {run}` instead")
    previous = json.loads((run / "default" / MANIFEST).read_text())
    recipe = Recipe.from_json(pinned["recipe"])  # the decoder stage at its defaults
    out.mkdir(parents=True, exist_ok=True)
    for stage in ("vae", "dit", "audio", "distill"):
        if not (out / stage).exists():
            shutil.copytree(run / stage, out / stage, copy_function=os.link)
    if not (out / "recipe.json").exists():
        stages = json.loads((run / "stages.json").read_text())  # packaging and adherence are measured again
        (out / "stages.json").write_text(json.dumps({k: v for k, v in stages.items()
                                                     if k not in ("package", "adherence")}, indent=1) + "\n")
        provenance = (
            f"The decoder stage (stage 1b) was added by `experiments/world_decoder.py` to a finished run whose "
            f"stages 1, 2, 2b and 3 are reused as they were: the decoder stage keeps stage 1's encoder bit for bit, "
            f"so they are what this recipe trains. That run's provenance: " + (pinned.get("provenance") or "none"))
        (out / "recipe.json").write_text(json.dumps({"recipe": recipe.to_json(), "code": code_fingerprint(),
                                                     "provenance": provenance}, indent=1) + "\n")
    summary = reproduce(out, recipe, log=log)
    default = out / "default"
    manifest = json.loads((default / MANIFEST).read_text())
    if not (run / "vae" / "loss.jsonl").read_text().strip():  # stage 1 restored in `run`: keep its record
        manifest["loss_curves"]["video_vae"] = previous["loss_curves"]["video_vae"]
        manifest["stages"]["vae"] = previous["stages"]["vae"]
    manifest["code"]["at_decoder_stage_start"] = manifest["code"]["at_training_start"]
    manifest["code"]["at_training_start"] = pinned.get("code")  # when `run`'s stages 2-3 started
    (default / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    if args.install:
        install_default(default, DEFAULT_DIR, log)
    print(json.dumps({"finished": summary["finished"], "total_bytes": manifest["total_bytes"],
                      "video_vae_decoder": manifest["video_vae_decoder"], "adherence": manifest["adherence"]},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
