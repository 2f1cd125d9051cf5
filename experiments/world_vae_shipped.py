"""Held-out PSNR of the video VAE exactly as a packaged default ships it (issue 17's 28 dB).

No ltx_core counterpart. Why: the decoder stage reports its PSNR in float32 before packaging; the packaged
`model.safetensors` holds every float tensor in bf16 (as the official files ship). This loads the file's `vae.*`
tensors (bf16, widened to float32 for compute, as generation does) into the world autoencoder and runs the same
held-out measurement (`train_vae.held_out`: 32 clips of world seed 1000, never trained on).

    python experiments/world_vae_shipped.py [DEFAULT_DIR ...] > experiments/results/world_vae_shipped.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open

from ltx_jax.world.package import DEFAULT_DIR, MANIFEST
from ltx_jax.world.train_vae import VAETrainConfig, _build, held_out


def shipped_psnr(default: Path) -> dict:
    manifest = json.loads((default / MANIFEST).read_text())
    cfg = VAETrainConfig(**manifest["video_vae_decoder"]["config"])
    graphdef, params = nnx.split(_build(cfg))
    flat = nnx.to_flat_state(params)
    with safe_open(str(default / "model.safetensors"), "np") as f:
        dtypes = set()
        for path, v in flat:
            key = ".".join(map(str, path))
            name = key if ".per_channel_statistics." not in key else \
                "per_channel_statistics." + key.rsplit(".", 1)[1].replace("_of_", "-of-")  # one shared copy
            t = f.get_tensor("vae." + name)
            dtypes.add(str(t.dtype))
            if t.shape != v.get_value().shape:
                raise ValueError(f"{default}: vae.{name} has shape {t.shape}, the config needs {v.get_value().shape}")
            v.set_value(jnp.asarray(np.asarray(t, np.float32)))
    metrics = held_out(cfg, graphdef, nnx.from_flat_state(flat))
    return {"default": str(default), "stored_dtypes": sorted(dtypes), "held_out_clips": cfg.held_out_clips,
            "held_out_seed": cfg.held_out_seed, "shipped_held_out_psnr": round(metrics["held_out_psnr"], 3),
            "shipped_held_out_agreement": metrics["held_out_agreement"],
            "float32_held_out_psnr_before_packaging": round(manifest["video_vae_decoder"]["held_out_psnr"], 3)}


if __name__ == "__main__":
    folders = [Path(a) for a in sys.argv[1:]] or [DEFAULT_DIR]
    print(json.dumps([shipped_psnr(d) for d in folders], indent=1))
