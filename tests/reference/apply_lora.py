"""Loads a checkpoint with a LoRA file through the official loader and records the fused model (reference side).

Run with the reference interpreter (never imports ltx_jax):

    .venv-ref/bin/python tests/reference/apply_lora.py --checkpoint CKPT --lora LORA --inputs FIXTURES.npz --out OUT.npz

`ModelLedger(dtype=float32, registry=StateDictRegistry(), loras=[(LORA, 1.0, LTXV_LORA_COMFY_RENAMING_MAP)])`
builds the transformer as the pipelines do (bf16 checkpoint, LoRA fused by `apply_loras`, float32 ledger);
OUT.npz holds `weight.<state-dict key>` for every weight the LoRA file names, and the velocities
`out.video_velocity` / `out.audio_velocity` on the fixture's `transformer.in.*` inputs.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import safetensors
import torch

from ltxref.official import gemma_width  # noqa: F401  (import order: ltx_core.loader first)
from ltx_core.guidance.perturbations import BatchedPerturbationConfig
from ltx_core.loader import LTXV_LORA_COMFY_RENAMING_MAP
from ltx_core.loader.primitives import LoraPathStrengthAndSDOps
from ltx_core.loader.registry import StateDictRegistry
from ltx_core.model.transformer import Modality
from ltx_pipelines.utils.model_ledger import ModelLedger


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("--checkpoint", "--lora", "--inputs", "--out"):
        ap.add_argument(name, required=True)
    args = ap.parse_args(argv)
    lora = LoraPathStrengthAndSDOps(args.lora, 1.0, LTXV_LORA_COMFY_RENAMING_MAP)
    ledger = ModelLedger(dtype=torch.float32, device=torch.device("cpu"), checkpoint_path=args.checkpoint,
                         loras=(lora,), registry=StateDictRegistry())
    model = ledger.transformer().velocity_model
    with safetensors.safe_open(args.lora, framework="pt") as f:
        targets = sorted({k.removeprefix("diffusion_model.").rsplit(".lora_", 1)[0] for k in f.keys()})
    sd = model.state_dict()
    out = {f"weight.{t}.weight": sd[f"{t}.weight"].float().numpy() for t in targets}
    data = np.load(args.inputs)
    sigma = torch.tensor(float(data["transformer.in.sigma"][0]), dtype=torch.float32)

    def modality(s: str) -> Modality:
        t = lambda k: torch.from_numpy(data[f"transformer.in.{s}.{k}"])  # noqa: E731
        return Modality(latent=t("latent"), sigma=sigma, timesteps=t("timesteps"), positions=t("positions"),
                        context=t("context"), enabled=True)

    with torch.no_grad():
        v, a = model(video=modality("video"), audio=modality("audio"), perturbations=BatchedPerturbationConfig.empty(1))
    out["out.video_velocity"], out["out.audio_velocity"] = v.float().numpy(), a.float().numpy()
    np.savez(args.out, **out)
    print(f"{len(targets)} LoRA targets fused; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
