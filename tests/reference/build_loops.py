"""Builds one loop fixture directory (docs/reference-fixtures-loops.md) from ltx-core / ltx-pipelines 1.0.0 on CPU.

Run with the reference interpreter (never imports ltx_jax):

    .venv-ref/bin/python tests/reference/build_loops.py --config ltx23-tiny --seed 0 --out DIR
    .venv-ref/bin/python tests/reference/build_loops.py --root ROOT [--configs ltx2-tiny,ltx23-tiny] [--seeds 0]

The second form builds ROOT/<config>_seed<seed>_loops for every pair in one process. Each directory is built
under a temporary name next to its final path and renamed into place at the end; any failure removes it and
exits non-zero with a one-line message.
"""

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # the official loops wrap their steps in tqdm

import torch  # noqa: E402

# Tiny tensors: one thread is fastest (no OpenMP spinning on a shared machine) and makes the output independent
# of the machine's core count.
torch.set_num_threads(1)

from build import load_preset  # noqa: E402
from ltxref.atomic import Laps, build_atomically  # noqa: E402
from ltxref import loops_cases as lc  # noqa: E402
from ltxref import loops_stage2 as S2  # noqa: E402
from ltxref.components import CHECKPOINT_FILE, UPSAMPLER_KINDS, checkpoint_config
from ltxref.official import package_versions
from ltxref.record import Recorder
from ltxref.weights import file_header, generate_state_dicts, load_components, round_trip, write_checkpoints
from ltx_pipelines.utils.constants import (
    DEFAULT_NEGATIVE_PROMPT,
    DISTILLED_SIGMA_VALUES,
    LTX_2_3_HQ_PARAMS,
    LTX_2_3_PARAMS,
    LTX_2_PARAMS,
    STAGE_2_DISTILLED_SIGMA_VALUES,
    detect_params,
)

FUNCTIONS_USED = {
    "weights": ["ModelLedger (via ltxref.weights.load_components)"],
    "sched": ["ltx_core.components.schedulers.LTX2Scheduler.execute",
              "ltx_pipelines.utils.constants.DISTILLED_SIGMA_VALUES",
              "ltx_pipelines.utils.constants.STAGE_2_DISTILLED_SIGMA_VALUES"],
    "ctx": ["EmbeddingsProcessor.process_hidden_states"],
    "guided": ["ltx_pipelines.utils.constants.detect_params", "LTX2Scheduler.execute", "GaussianNoiser",
               "EulerDiffusionStep", "create_multimodal_guider_factory", "MultiModalGuiderFactory",
               "MultiModalGuider", "multi_modal_guider_factory_denoising_func", "euler_denoising_loop",
               "post_process_latent", "denoise_audio_video", "VideoLatentPatchifier", "AudioPatchifier",
               "PipelineComponents", "X0Model"],
    "i2v": ["VideoEncoder", "VideoConditionByLatentIndex", "DISTILLED_SIGMA_VALUES", "GaussianNoiser",
            "EulerDiffusionStep", "simple_denoising_func", "euler_denoising_loop", "post_process_latent",
            "denoise_audio_video", "X0Model"],
    "keyframe": ["VideoEncoder", "VideoConditionByKeyframeIndex", "DISTILLED_SIGMA_VALUES", "GaussianNoiser",
                 "EulerDiffusionStep", "simple_denoising_func", "euler_denoising_loop", "post_process_latent",
                 "denoise_audio_video", "VideoLatentTools.clear_conditioning", "X0Model"],
    "keyframe.attn": ["VideoLatentTools.create_initial_state", "ConditioningItemAttentionStrengthWrapper",
                      "VideoConditionByKeyframeIndex", "VideoLatentTools.clear_conditioning"],
    "dev2": ["upsample_video", "STAGE_2_DISTILLED_SIGMA_VALUES", "GaussianNoiser", "EulerDiffusionStep",
             "simple_denoising_func", "euler_denoising_loop", "denoise_audio_video", "VideoDecoder", "X0Model"],
    "hq2": ["upsample_video", "STAGE_2_DISTILLED_SIGMA_VALUES", "GaussianNoiser", "Res2sDiffusionStep",
            "simple_denoising_func", "res2s_audio_video_denoising_loop", "_get_new_noise", "denoise_audio_video",
            "VideoDecoder", "X0Model"],
    "res2s": ["LTX2Scheduler.execute", "LTX_2_3_HQ_PARAMS", "GaussianNoiser", "Res2sDiffusionStep",
              "MultiModalGuider", "multi_modal_guider_denoising_func", "res2s_audio_video_denoising_loop",
              "_get_new_noise", "get_res2s_coefficients", "post_process_latent", "denoise_audio_video", "X0Model"],
}


def loop_model_version(name: str, preset: dict) -> str:
    """`2.3-tiny:<config>` or `2.0-tiny:<config>`, so `detect_params()` picks the version's defaults."""
    return f"{'2.3' if preset['model_version'].startswith('2.3') else '2.0'}-tiny:{name}"


def seeds_for(seed: int) -> dict[str, int]:
    return {"weights": seed, "inputs": 3000 + seed, "noise.guided": 4000 + seed, "noise.i2v.s100": 4100 + seed,
            "noise.i2v.s050": 4200 + seed, "noise.keyframe": 4300 + seed, "noise.res2s": 4400 + seed}


def _pipeline_params(p) -> dict:  # noqa: ANN001
    return {"seed": p.seed, "stage_1_height": p.stage_1_height, "stage_1_width": p.stage_1_width,
            "num_frames": p.num_frames, "frame_rate": p.frame_rate, "num_inference_steps": p.num_inference_steps,
            "video_guider_params": lc.params_dict(p.video_guider_params),
            "audio_guider_params": lc.params_dict(p.audio_guider_params)}


def build(out_dir: Path, name: str, preset: dict, seed: int) -> dict:
    lap = Laps()
    timings = lap.timings

    seeds = seeds_for(seed)
    version = loop_model_version(name, preset)
    files = generate_state_dicts(preset, seeds["weights"])
    write_checkpoints(out_dir, preset | {"model_version": version}, files)
    loaded = load_components(out_dir, preset, torch.float32)
    rt = round_trip(loaded, files)
    if not rt["ok"]:
        raise RuntimeError("round trip through the official loader failed:\n" + json.dumps(rt, indent=1)[:4000])
    detected = detect_params(str(out_dir / CHECKPOINT_FILE))
    lap("weights_and_load")

    rec = Recorder()
    sched = lc.run_schedules(rec)
    g = torch.Generator().manual_seed(seeds["inputs"])
    ctx = lc.run_contexts(rec, loaded["embeddings_processor"], preset, g)
    setup = lc.Setup(transformer=loaded["transformer"], encoder=loaded["vae_encoder"], ctx=ctx,
                     channels=preset["transformer"]["in_channels"], num_layers=preset["transformer"]["num_layers"])
    lap("sched_ctx")
    stage2 = dict(upsampler=loaded[f"upsampler.{S2.UPSAMPLER}"], decoder=loaded["vae_decoder"], pixels=lc.PIXELS)
    runs = {"guided": lc.run_guided(rec, setup, detected, seeds["noise.guided"])}
    runs["dev2"] = S2.run_stage2(rec, setup, "dev2", *setup.last, **stage2)
    lap("guided")
    runs["i2v"] = lc.run_i2v(rec, setup, g, {t: seeds[f"noise.i2v.{t}"] for t in lc.I2V_STRENGTHS})
    lap("i2v")
    runs["keyframe"] = lc.run_keyframe(rec, setup, g, seeds["noise.keyframe"])
    runs["keyframe.attn"] = lc.run_attention_strength(rec, setup, g)
    lap("keyframe")
    runs["res2s"] = lc.run_res2s(rec, setup, seeds["noise.res2s"])
    runs["hq2"] = S2.run_stage2(rec, setup, "hq2", *setup.last, **stage2)
    lap("res2s")

    rec.save(str(out_dir / "fixtures.npz"))
    written = [CHECKPOINT_FILE, *[f"upsampler_{k}.safetensors" for k in UPSAMPLER_KINDS]]
    shapes = {f: file_header(out_dir / f) for f in written}
    lap("save")
    return {
        "format": "docs/reference-fixtures-loops.md; builder notes in tests/reference/LOOPS.md",
        "builder": "tests/reference/build_loops.py",
        "config_name": name,
        "model_version": version,
        "config": preset,
        "checkpoint_config": checkpoint_config(preset),
        "seeds": seeds,
        "pixels": lc.PIXELS._asdict(),
        "detected_params": {"model_version": version, "params": _pipeline_params(detected)},
        "official_defaults": {
            "LTX_2_PARAMS": _pipeline_params(LTX_2_PARAMS), "LTX_2_3_PARAMS": _pipeline_params(LTX_2_3_PARAMS),
            "LTX_2_3_HQ_PARAMS": _pipeline_params(LTX_2_3_HQ_PARAMS),
            "DISTILLED_SIGMA_VALUES": DISTILLED_SIGMA_VALUES,
            "STAGE_2_DISTILLED_SIGMA_VALUES": STAGE_2_DISTILLED_SIGMA_VALUES,
            "DEFAULT_NEGATIVE_PROMPT": DEFAULT_NEGATIVE_PROMPT,
        },
        "pass_kinds": {"cond": "positive context, no perturbation", "uncond": "negative context",
                       "perturbed": "SKIP_VIDEO_SELF_ATTN / SKIP_AUDIO_SELF_ATTN in stg_blocks",
                       "isolated": "SKIP_A2V_CROSS_ATTN + SKIP_V2A_CROSS_ATTN in all blocks"},
        "pass_order": list(lc.PASS_ORDER),
        "sched": sched,
        "runs": runs,
        "functions_used": FUNCTIONS_USED,
        "round_trip": rt,
        "checkpoint_shapes": shapes,
        "arrays": rec.meta,
        "timings_s": timings,
        "torch_threads": torch.get_num_threads(),
        "versions": package_versions(),
    }


def build_loops_dir(config: str, seed: int, out: Path) -> dict:
    """Builds into a temporary sibling of `out` and renames it into place; returns the manifest."""
    name, preset = load_preset(config)
    return build_atomically(out, lambda tmp: build(tmp, name, preset, seed))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="preset name (tests/reference/configs/<name>.json) or path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="fixture directory to create (replaced if it exists)")
    ap.add_argument("--root", help="build ROOT/<config>_seed<seed>_loops for --configs x --seeds")
    ap.add_argument("--configs", default="ltx2-tiny,ltx23-tiny")
    ap.add_argument("--seeds", default="0")
    args = ap.parse_args(argv)
    if (args.root is None) == (args.out is None) or (args.out is not None and args.config is None):
        ap.error("give either --config C [--seed S] --out DIR, or --root ROOT [--configs ...] [--seeds ...]")
    if args.out is not None:
        jobs = [(args.config, args.seed, Path(args.out))]
    else:
        jobs = [(c, int(s), Path(args.root) / f"{Path(c).stem}_seed{int(s)}_loops")
                for c in args.configs.split(",") for s in args.seeds.split(",")]
    for config, seed, out in jobs:
        try:
            m = build_loops_dir(config, seed, out)
        except Exception as e:  # noqa: BLE001  (one clear message, non-zero exit)
            traceback.print_exc()
            print(f"build_loops.py: FAILED building {config} seed {seed}: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        print(f"build_loops.py: {m['config_name']} seed {seed} -> {out.resolve()} "
              f"({len(m['arrays'])} arrays, {m['timings_s']['total']:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
