"""Builds a TAE fixture directory (the shared/fixtures/taeltx2_3 format) for the *wide* TAELTX-2.3 decoder from the
upstream code itself: madebyollin/taehv `taehv.py` at 32ac014 (tests/reference/upstream/taehv_wide.py, MIT).

    .venv-ref/bin/python tests/reference/build_tae_wide.py --out DIR [--seed 0]

Seeded random weights in the wide layout (upstream's own module tree for a `taeltx2_3_wide` checkpoint) are saved as
`taeltx2_3_wide.safetensors` (float16, as the released files), loaded back by upstream's constructor (strict
`load_state_dict`), and decoded with `decode_video(parallel=True)` and `decode_video(parallel=False)` (its
sequential work-queue walk). Never imports ltx_jax. Takes a few seconds.
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "upstream"))
sys.path.insert(0, str(HERE))

from ltxref.atomic import build_atomically  # noqa: E402  (also checks the pinned environment)
import taehv_wide as upstream  # noqa: E402

WEIGHTS = "taeltx2_3_wide.safetensors"
CASES = (("dec_t2_2x2", 1, 2, (2, 2)), ("dec_b2_t3_2x3", 2, 3, (2, 3)))  # name, batch, latent frames, latent h, w


def _random_tree(seed: int) -> torch.nn.Module:
    """Upstream's wide module tree (selected by the file name, as upstream does) with seeded random weights."""
    load, torch_load = upstream.TAEHV.load_state_dict, upstream.torch.load
    upstream.TAEHV.load_state_dict = lambda self, sd, *a, **k: None  # build the tree only; weights come next
    upstream.torch.load = lambda *a, **k: None
    patch = upstream.TAEHV.patch_tgrow_layers
    upstream.TAEHV.patch_tgrow_layers = lambda self, sd: sd
    try:
        model = upstream.TAEHV(checkpoint_path=WEIGHTS)
    finally:
        upstream.TAEHV.load_state_dict, upstream.torch.load, upstream.TAEHV.patch_tgrow_layers = load, torch_load, patch
    torch.manual_seed(seed)
    last = max(i for i, m in enumerate(model.decoder) if isinstance(m, torch.nn.Conv2d))
    for name, p in model.named_parameters():
        if name.endswith("weight"):
            fan_in = p.shape[1] * p.shape[2] * p.shape[3]
            gain = 0.5 if ".conv.6." in name or ".conv.4." in name else (0.125 if name == f"decoder.{last}.weight"
                                                                         else math.sqrt(2))
            p.data = torch.randn(p.shape) * gain / math.sqrt(fan_in)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.data = 0.5 + 0.05 * torch.randn(p.shape) if name == f"decoder.{last}.bias" else 0.1 * torch.randn(p.shape)
    return model


def build(out: Path, seed: int) -> dict:
    tree = _random_tree(seed)
    sd = {k: v.to(torch.float16).contiguous() for k, v in tree.state_dict().items()}
    save_file(sd, str(out / WEIGHTS))
    torch_load = upstream.torch.load
    upstream.torch.load = lambda path, **k: load_file(path)  # upstream reads .pth; the released wide file is here too
    try:
        model = upstream.TAEHV(checkpoint_path=str(out / WEIGHTS)).float().eval()  # strict load_state_dict
    finally:
        upstream.torch.load = torch_load
    if not any(isinstance(m, upstream.WideMemBlock) for m in model.decoder):
        raise AssertionError("upstream did not build the wide decoder")
    gen = torch.Generator().manual_seed(seed + 1)
    arrays, cases = {}, []
    for name, b, t, (h, w) in CASES:
        z = torch.randn((b, t, 128, h, w), generator=gen)
        par = model.decode_video(z, parallel=True, show_progress_bar=False)
        seq = model.decode_video(z, parallel=False, show_progress_bar=False)
        arrays.update({f"{name}.latent": z, f"{name}.out_parallel": par, f"{name}.out_sequential": seq})
        cases.append({"name": name, "kind": "decode", "B": b, "T_lat": t, "latent_hw": [h, w], "latent_std": 1.0,
                      "arrays": {"input": f"{name}.latent", "parallel": f"{name}.out_parallel",
                                 "sequential": f"{name}.out_sequential"},
                      "checks": {"maxabs_parallel_vs_sequential": float((par - seq).abs().max())}})
        if float(par.std()) < 1e-3:
            raise AssertionError(f"{name}: constant output")
    np.savez(out / "fixtures.npz", **{k: v.numpy().astype(np.float32) for k, v in arrays.items()})
    return {
        "description": "Reference outputs of the upstream TAEHV wide decoder (taeltx2_3_wide) with seeded random "
                       "weights; the encoder is the base one (checked by shared/fixtures/taeltx2_3).",
        "seed": seed,
        "upstream": {"repository": "github.com/madebyollin/taehv", "branch": "2026_03_11_taeltx23_wide",
                     "commit": "32ac0146b11007cda5a57b60a3b35653361fb8a4", "file": "taehv.py", "license": "MIT",
                     "copyright": "Copyright (c) 2025 Ollin Boer Bohan"},
        "environment": {"torch": torch.__version__, "compute_dtype": "float32"},
        "weights": {"file": WEIGHTS, "dtype": "float16", "num_tensors": len(sd),
                    "keys": {k: list(v.shape) for k, v in sd.items()}},
        "conventions": {"layout": "N,T,C,H,W float32", "modes": {"parallel": "decode_video(parallel=True)",
                                                                 "sequential": "decode_video(parallel=False)"}},
        "cases": cases,
        "arrays": {k: {"shape": list(v.shape)} for k, v in arrays.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    build_atomically(Path(args.out), lambda tmp: build(tmp, args.seed))
    print(f"build_tae_wide.py: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
