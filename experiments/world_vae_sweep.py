"""Stage-1 variants of the embedded default's video VAE, each followed by the decoder stage (issue 17's 28 dB).

    python experiments/world_vae_sweep.py --out runs/sweep --variant ow3 '{"vae": {"object_weight": 3}}' \
        [--variant NAME JSON ...]                          # JSON summary on stdout, also out/summary.json

No ltx_core counterpart. Why: after stage 1b the shipped VAE reaches 24.6 dB and the decoder stage's gain
cannot grow much further, because stage 1's encoder dropped what the decoder would need: on the held-out clips
the checkered backgrounds come back flat grey and every shape as a blob (analyzer shape agreement 37.5%,
chance 33%). Only a new stage 1 can put that information in the latent, and a new stage 1 means a new DiT and
student (about 1.5 h), so variants are compared here first, at the recipe's step counts.

Per variant (`{"vae": VAETrainConfig overrides, "decoder": DecoderTrainConfig overrides}`): stage 1 in
`out/NAME/vae`, the decoder stage in `out/NAME/decoder` (both resumable: a re-run continues), then for both
stages the held-out PSNR, the analyzer's agreement on the reconstructions, PSNR per background kind and per shape,
and how much of the scene a linear read-out of the latent recovers (ridge regression on the standardized
latents of 1024 clips, scored on 256 others): shape and background accuracy, R^2 of the checkered and striped
textures' phase (as `train_vae.scene_targets` codes it), R^2 of the object's start and end centre.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np


def _ridge(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, lam: float = 0.01) -> np.ndarray:
    """Ridge regression on standardized features (penalty `lam` per training sample), predictions on `test`."""
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    a, b = (x[train] - mean) / std, (x[test] - mean) / std
    y0 = y[train].mean(0)
    w = np.linalg.solve(a.T @ a + lam * len(train) * np.eye(a.shape[1]), a.T @ (y[train] - y0))
    return b @ w + y0


def _r2(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(1.0 - ((pred - y) ** 2).mean(0) / np.maximum(y.var(0), 1e-12)))


def latent_readout(folder: Path, clips: int = 1280, train: int = 1024) -> dict:
    """Linear read-out of the scene from stage 1's latents (see the module docstring)."""
    import jax.numpy as jnp
    from flax import nnx

    from ltx_jax.world.dataset import scene_of
    from ltx_jax.world.grammar import grammar
    from ltx_jax.world.train_decoder import _encode
    from ltx_jax.world.train_vae import load_autoencoder, scene_targets, world_clips

    cfg, graphdef, params = load_autoencoder(folder)
    encoder = nnx.split(nnx.merge(graphdef, params).encoder)
    spec = cfg.world(cfg.held_out_seed + 1)  # neither training nor held-out clips
    z = np.concatenate([np.asarray(_encode(encoder[1], jnp.asarray(world_clips(spec, i, 16)), graphdef=encoder[0]))
                        for i in range(0, clips, 16)])
    x = z.reshape(clips, -1)
    scenes = [scene_of(spec, i) for i in range(clips)]
    tr, te = np.arange(train), np.arange(train, clips)
    out = {}
    for attr in ("shape", "background"):
        names = sorted({getattr(s, attr) for s in scenes})
        y = np.array([[getattr(s, attr) == n for n in names] for s in scenes], np.float64)
        out[f"{attr}_accuracy"] = float(np.mean(_ridge(x, y, tr, te).argmax(1) == y[te].argmax(1)))
    g = grammar()
    first = len(g.shapes) + len(g.colours) + len(g.backgrounds)  # the phase columns of scene_targets
    phase = scene_targets(spec, 0, clips)[:, first:first + 4].astype(np.float64)
    for name, columns in (("checkered", 4), ("striped", 2)):  # stripes: the last two columns are 0
        idx = np.array([i for i, s in enumerate(scenes) if s.background == name])
        k = int(0.8 * len(idx))
        y = phase[idx, :columns]
        out[f"{name}_phase_r2"] = _r2(_ridge(x[idx], y, np.arange(k), np.arange(k, len(idx))), y[k:])
    centres = np.array([s.start + s.end for s in scenes], np.float64)
    out["centre_r2"] = _r2(_ridge(x, centres, tr, te), centres[te])
    return out


def breakdown(folder: Path) -> dict:
    """Held-out PSNR per background kind and per shape of the autoencoder in `folder`."""
    import jax.numpy as jnp

    from ltx_jax.world.dataset import scene_of
    from ltx_jax.world.train_vae import _run, load_autoencoder, world_clips

    cfg, graphdef, params = load_autoencoder(folder)
    spec = cfg.world(cfg.held_out_seed)
    held = world_clips(spec, 0, cfg.held_out_clips)
    rec = np.concatenate([np.asarray(_run(params, jnp.asarray(held[i:i + 8]), graphdef=graphdef)[0])
                          for i in range(0, len(held), 8)])
    mse = (((np.clip(rec, -1, 1) - held) / 2) ** 2).reshape(len(held), -1).mean(1)
    groups: dict[str, list[float]] = {}
    for i in range(len(held)):
        scene = scene_of(spec, i)
        for key in (f"background.{scene.background}", f"shape.{scene.shape}"):
            groups.setdefault(key, []).append(float(mse[i]))
    return {k: round(10 * np.log10(1 / np.mean(v)), 2) for k, v in sorted(groups.items())}


def run_variant(out: Path, name: str, overrides: dict, log) -> dict:
    from ltx_jax.world.train_decoder import DecoderTrainConfig, train_decoder
    from ltx_jax.world.train_vae import VAETrainConfig, train_video_vae

    unknown = set(overrides) - {"vae", "decoder"}
    if unknown:
        raise SystemExit(f"variant {name}: unknown keys {sorted(unknown)} (expected 'vae' and/or 'decoder')")
    vae_cfg = dataclasses.replace(VAETrainConfig(), **overrides.get("vae", {}))
    dec_cfg = dataclasses.replace(DecoderTrainConfig(), **overrides.get("decoder", {}))
    row: dict = {"overrides": overrides}
    for stage, train in (("vae", lambda: train_video_vae(out / name / "vae", vae_cfg, log=log)),
                         ("decoder", lambda: train_decoder(out / name / "decoder", out / name / "vae", dec_cfg,
                                                           log=log))):
        t0 = time.perf_counter()
        result = train()
        meta = json.loads((out / name / stage / "video_vae.json").read_text())
        row[stage] = {"seconds_this_call": round(time.perf_counter() - t0, 1),
                      "held_out_psnr": round(meta["held_out_psnr"], 3),
                      "held_out_agreement": meta["held_out_agreement"],
                      "psnr_by_group": breakdown(out / name / stage)}
        if stage == "vae":
            row[stage]["latent_readout"] = latent_readout(out / name / stage)
            row[stage]["latent_spread"] = meta.get("latent_spread")
        log(f"{name} {stage}: {json.dumps(row[stage])} ({result.get('seconds', 0):.0f} s of training)")
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"), required=True)
    args = p.parse_args(argv)
    out = Path(args.out)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    variants = {}
    for name, text in args.variant:
        try:
            variants[name] = json.loads(text)
        except json.JSONDecodeError as e:
            raise SystemExit(f"variant {name}: not JSON ({e})") from None
    summary = {name: run_variant(out, name, overrides, log) for name, overrides in variants.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
