"""Builds one official reference fixture directory (docs/reference-fixtures.md) from ltx-core 1.0.0 on CPU.

Run with the reference interpreter (never imports ltx_jax):

    .venv-ref/bin/python tests/reference/build.py --config ltx23-tiny --seed 0 --out DIR [--no-loop] [--no-fp8]

--config is a preset name from tests/reference/configs/ or a path to such a JSON file. The directory is built
under a temporary name next to DIR and renamed into place at the end, so an interrupted build leaves nothing that
looks complete. Exits non-zero with a message on any failure (including a failed load-back round trip).
"""

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # the official denoising loop wraps its steps in tqdm

import torch  # noqa: E402

from ltxref.atomic import Laps, build_atomically  # noqa: E402
from ltxref import cases, loop, vae_cases  # noqa: E402
from ltxref.components import CHECKPOINT_FILE, FP8_FILE, UPSAMPLER_KINDS, checkpoint_config
from ltxref.fp8 import run_fp8
from ltxref.official import gemma_width, package_versions
from ltxref.record import Recorder
from ltxref.weights import file_header, generate_state_dicts, ledger, load_components, round_trip, write_checkpoints

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
LOOP_UPSAMPLER = "spatial_x2_rational"


def load_preset(name_or_path: str) -> tuple[str, dict]:
    p = Path(name_or_path)
    if not p.suffix:
        p = CONFIG_DIR / f"{name_or_path}.json"
    return p.stem, json.loads(p.read_text())


def seeds_for(seed: int) -> dict[str, int]:
    return {"weights": seed, "inputs": 1000 + seed, "vae_decode": 2000 + seed, "loop": 10 + seed}


def build(out_dir: Path, name: str, preset: dict, seed: int, with_loop: bool, with_fp8: bool) -> dict:
    lap = Laps()
    timings = lap.timings

    seeds = seeds_for(seed)
    files = generate_state_dicts(preset, seeds["weights"])
    write_checkpoints(out_dir, preset, files)
    lap("weights_and_files")

    loaded = load_components(out_dir, preset, torch.float32)
    rt = round_trip(loaded, files)
    if not rt["ok"]:
        raise RuntimeError("round trip through the official loader failed:\n" + json.dumps(rt, indent=1)[:4000])
    lap("load_and_round_trip")

    rec = Recorder()
    g = torch.Generator().manual_seed(seeds["inputs"])
    hidden, mask, vctx, actx = cases.run_connector(rec, loaded["embeddings_processor"], preset, g)
    inp, keyframe = cases.make_transformer_inputs(preset, g, vctx, actx)
    num_layers = preset["transformer"]["num_layers"]
    extra = cases.run_transformer(rec, loaded["transformer"], inp, keyframe, num_layers)
    lap("connector_transformer")

    lb = ledger(out_dir, torch.bfloat16)
    te = preset["text_encoder"]
    with gemma_width(te["hidden_size"], te["num_hidden_layers"]):
        ep_bf16 = lb.gemma_embeddings_processor()
    bf16 = cases.run_bf16(rec, lb.transformer(), ep_bf16, inp, hidden, mask)
    lap("bf16")

    channels = preset["vae"]["latent_channels"]
    vae_cases.run_vae(rec, loaded["vae_encoder"], loaded["vae_decoder"], g, seeds["vae_decode"])
    ups = {k: loaded[f"upsampler.{k}"] for k in UPSAMPLER_KINDS}
    vae_cases.run_upsamplers(rec, loaded["vae_encoder"], ups, g, channels)
    lap("vae_upsamplers")

    if with_loop:
        loop.run_distilled_loop(rec, loaded["transformer"], loaded["vae_encoder"], loaded["vae_decoder"],
                                ups[LOOP_UPSAMPLER], vctx, actx, channels, seeds["loop"])
        lap("loop")
        # The same pipeline as DistilledPipeline runs it by default: bf16 models, latents and noise (loop_bf16.*)
        bf = torch.bfloat16
        ctx16 = [torch.from_numpy(rec.arrays[f"connector.out_bf16.{m}_encoding"]).to(bf) for m in ("video", "audio")]
        loop.run_distilled_loop(rec, lb.transformer(), lb.video_encoder(), lb.video_decoder(),
                                ledger(out_dir, bf, LOOP_UPSAMPLER).spatial_upsampler(), *ctx16, channels,
                                seeds["loop"], dtype=bf, prefix="loop_bf16")
        lap("loop_bf16")

    fp8 = None
    if with_fp8:
        ref = (rec.arrays["transformer.out.video_velocity"], rec.arrays["transformer.out.audio_velocity"])
        fp8 = run_fp8(rec, out_dir, preset, loaded["transformer"], inp, tuple(torch.from_numpy(r) for r in ref))
        lap("fp8")

    rec.save(str(out_dir / "fixtures.npz"))
    written = [CHECKPOINT_FILE, *[f"upsampler_{k}.safetensors" for k in UPSAMPLER_KINDS]]
    if with_fp8:
        written.append(FP8_FILE)
    shapes = {f: file_header(out_dir / f) for f in written}
    outputs = {k: m["max_abs"] for k, m in rec.meta.items() if ".out" in k and "max_abs" in m}
    lap("save")

    return {
        "format": "docs/reference-fixtures.md; choices documented in tests/reference/README.md",
        "builder": "tests/reference/build.py",
        "config_name": name,
        "model_version": preset["model_version"],
        "config": preset,
        "checkpoint_config": checkpoint_config(preset),
        "seeds": seeds,
        "options": {"loop": with_loop, "fp8": with_fp8},
        "inputs": {
            "connector_seq_len": cases.CONNECTOR_SEQ_LEN, "connector_valid_tokens": cases.CONNECTOR_VALID_TOKENS,
            "transformer_pixels": cases.TRANSFORMER_PIXELS._asdict(), "transformer_sigma": cases.TRANSFORMER_SIGMA,
            "transformer_conditioning": "VideoConditionByLatentIndex(strength=1.0, latent_idx=0): the 16 tokens "
                                        "of latent frame 0 have denoise_mask 0, so t = 0",
            "keyframe": {"frame_idx": cases.KEYFRAME_PIXEL_IDX, "strength": 1.0,
                         "note": "VideoConditionByKeyframeIndex on a fresh noised state; audio, context and "
                                 "sigma are the main case's (transformer.in.audio.*, transformer.in.sigma)"},
            "vae_pixels": list(vae_cases.VAE_PIXELS),
            "loop_pixels": loop.LOOP_PIXELS._asdict() if with_loop else None,
            "loop_upsampler": LOOP_UPSAMPLER if with_loop else None,
        },
        "extra_transformer_cases": {
            c: ("keyframe tokens appended (inputs transformer.in.keyframe.*)" if c == "keyframe" else
                "SKIP_VIDEO_SELF_ATTN + SKIP_AUDIO_SELF_ATTN in this block (the STG pass)" if c.startswith("stg")
                else "SKIP_A2V_CROSS_ATTN + SKIP_V2A_CROSS_ATTN in all blocks (the modality-isolated pass)")
            for c in extra
        },
        "bf16": bf16,
        "fp8": fp8,
        "round_trip": rt,
        "checkpoint_keys": sorted(shapes[CHECKPOINT_FILE]),
        "checkpoint_shapes": shapes,
        "arrays": rec.meta,
        "output_max_abs": outputs,
        "timings_s": timings,
        "torch_threads": torch.get_num_threads(),
        "versions": package_versions(),
    }


def build_dir(config: str, seed: int, out: Path, with_loop: bool = True, with_fp8: bool = True) -> dict:
    """Builds into a temporary sibling of `out` and renames it into place; returns the manifest."""
    name, preset = load_preset(config)
    return build_atomically(out, lambda tmp: build(tmp, name, preset, seed, with_loop, with_fp8))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="preset name (tests/reference/configs/<name>.json) or path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="fixture directory to create (replaced if it exists)")
    ap.add_argument("--no-loop", action="store_true", help="skip the two-stage distilled loop (loop.*)")
    ap.add_argument("--no-fp8", action="store_true", help="skip the FP8 file and fp8.out.*")
    args = ap.parse_args(argv)
    try:
        manifest = build_dir(args.config, args.seed, Path(args.out), not args.no_loop, not args.no_fp8)
    except Exception as e:  # noqa: BLE001  (one clear message, non-zero exit)
        traceback.print_exc()
        print(f"build.py: FAILED building {args.config} seed {args.seed}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    t = manifest["timings_s"]["total"]
    print(f"build.py: {manifest['config_name']} seed {args.seed} -> {Path(args.out).resolve()} "
          f"({len(manifest['arrays'])} arrays, {t:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
