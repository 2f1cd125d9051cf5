"""Retrain the embedded default from stage 2 on (issue 17) with the current recipe code, on the shipped video VAE.

    python experiments/world_retrain.py --out runs/retrain [--install]        # JSON summary on stdout

No ltx_core counterpart. Why: stage 2 changed (the DiT's audio stream is now as wide as its video stream, the
audio VAE 32 wide, its latent statistics fitted: `world.train_dit`), which needs a new DiT, audio stage and
student, but stage 1 (the video VAE, 25 min) did not, so it is restored rather than re-run:
  1. `vae/`: the shipped model's `vae.*` tensors (bf16 -> float32, exact) as `video_vae.npz` in our module paths,
     and `video_vae.json` = the shipped config and held-out metrics;
  2. `recipe.reproduce(beside=True)` for the rest: the decoder stage (on the restored stage 1) and the audio stage
     (on the DiT's base file) in processes beside the DiT, then distillation, packaging, adherence; the manifest's
     stage-1 entries (loss curve, seconds) are then the shipped ones and its provenance says what was restored.
     `--install` copies the result over the package's default.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def restore_vae(model: Path, vae: Path, manifest: dict) -> None:
    """Stage 1's outputs from a packaged model file (see the module docstring)."""
    from ltx_jax.checkpoint.safetensors_file import SafetensorsFile

    tensors = {}
    with SafetensorsFile(model) as f:
        for key in f:
            if not key.startswith("vae."):
                continue
            name = key[len("vae."):]
            value = np.asarray(f[key]).astype(np.float32)
            if name.startswith("per_channel_statistics."):
                stat = name.rsplit(".", 1)[1].replace("-of-", "_of_")
                for part in ("encoder", "decoder"):  # our modules hold one copy each
                    tensors[f"{part}.per_channel_statistics.{stat}"] = value
            else:
                tensors[name] = value
    vae.mkdir(parents=True, exist_ok=True)
    tmp = vae / ".video_vae.tmp.npz"
    np.savez(tmp, **tensors)
    tmp.replace(vae / "video_vae.npz")
    (vae / "loss.jsonl").write_text("")  # the shipped curve is put back into the manifest at the end
    (vae / "video_vae.json").write_text(json.dumps(manifest["video_vae"], indent=1) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--install", action="store_true")
    args = p.parse_args(argv)
    from ltx_jax.world.package import DEFAULT_DIR, MANIFEST, MODEL, code_fingerprint
    from ltx_jax.world.recipe import Recipe, install_default, reproduce

    out = Path(args.out)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    shipped = json.loads((DEFAULT_DIR / MANIFEST).read_text())
    recipe = Recipe.from_json(shipped["recipe"])
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "vae" / "video_vae.json").exists():
        restore_vae(DEFAULT_DIR / MODEL, out / "vae", shipped)
    if not (out / "recipe.json").exists():
        provenance = (
            "Stage 1 (the video VAE) is the previous default's, restored from its bf16 file by "
            "`experiments/world_retrain.py`, which ran the rest of this recipe with its code (the decoder and audio "
            "stages beside stage 2). The previous default's provenance: " + shipped["provenance"])
        (out / "recipe.json").write_text(json.dumps({"recipe": recipe.to_json(), "code": code_fingerprint(),
                                                     "provenance": provenance}, indent=1) + "\n")
    summary = reproduce(out, recipe, beside=True, log=log)
    default = out / "default"
    manifest = json.loads((default / MANIFEST).read_text())
    manifest["loss_curves"]["video_vae"] = shipped["loss_curves"]["video_vae"]
    manifest["stages"]["vae"] = shipped["stages"]["vae"]
    (default / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    if args.install:
        install_default(default, DEFAULT_DIR, log)
    print(json.dumps({"finished": summary["finished"], "total_bytes": manifest["total_bytes"],
                      "adherence": manifest["adherence"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
