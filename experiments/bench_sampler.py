"""Wall time per denoising step: our jitted loop vs the official `euler_denoising_loop` (eager PyTorch, CPU).

Run:  .venv/bin/python experiments/bench_sampler.py [--mode guided|distilled] [--steps 4] [--layers 4 --heads 4
          --head-dim 128 --frames 3 --height 16 --width 16 --text 128 --repeats 3 --dtype float32]

Both sides get the same random LTX-2.3-block weights (one official-layout file), contexts and noised states.
Official: `euler_denoising_loop` + `EulerDiffusionStep` with `simple_denoising_func` (distilled) or
`multi_modal_guider_denoising_func` with the LTX-2.3 dev guidance (cfg 3 / stg 1 on the last block / rescale
0.7 / modality 3: four transformer calls per step), in .venv-ref in a subprocess. Ours: `sampling.loops.sample`
(one jit around a scan over the steps; the four passes as one batched forward). The whole loops run
interleaved (official, ours, ...; pair 0 is warm-up) because the shared machine's load varies by several times
within a minute. Prints one JSON object: {"setup", "official": {per_step_median_s, ...}, "ours": {compile_s,
per_step_median_s, ...}, "ours_over_official" (median of per-pair ratios), "max_rel_err" (final latents)}.
Measured on the 2-core dev box (shared with other jobs), 4 layers, video 512 / audio 256 wide, 768 video + 18 audio
+ 128 text tokens, float32, per step (median of 5):
  quiet machine:  guided (4 passes, 4 steps)  official 0.621 s, ours 0.595 s (compile 1.8 s), ratio 0.96;
                  distilled (1 pass, 8 steps) official 0.163 s, ours 0.156 s (compile 1.7 s), ratio 0.96;
  load ~3-4:      guided official 0.6-5.6 s, ours 0.6-2.0 s (ratio 0.44-1.05); distilled ratio 0.22.
  Final latents: max relative difference 4.2e-6 (guided), 6.9e-7 (distilled). On a CPU the batched passes are
  no faster than four calls (compute bound); they are there for accelerators and the `data` mesh axis.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ltx_jax.configs import LTX_2_3, LTXConfig, Runtime  # noqa: E402
from ltx_jax.checkpoint.schema import transformer_schema  # noqa: E402
from ltx_jax.checkpoint.synthetic import write_schema_file  # noqa: E402
from ltx_jax.sampling import (GuiderParams, LatentState, audio_positions, audio_token_count, dev_sigmas,  # noqa: E402
                              distilled_sigmas, video_positions)
from ltx_jax.sampling.loops import Sampler, lower, sample  # noqa: E402
from ltx_jax.sampling.samplers import Guidance, Prompt, TextContext  # noqa: E402
from ltx_jax.transformer import load_transformer  # noqa: E402

OFFICIAL = r"""
import json, os, sys, time
os.environ["TQDM_DISABLE"] = "1"
import numpy as np, torch
from safetensors.torch import load_file
import ltx_core.loader  # noqa: F401  (import order: ltx_core 1.0.0 has a circular import otherwise)
from ltx_core.components.diffusion_steps import EulerDiffusionStep
from ltx_core.components.guiders import MultiModalGuider, MultiModalGuiderParams
from ltx_core.model.transformer.model import X0Model
from ltx_core.model.transformer.model_configurator import LTXModelConfigurator
from ltx_core.types import LatentState
from ltx_pipelines.utils.helpers import multi_modal_guider_denoising_func, simple_denoising_func
from ltx_pipelines.utils.samplers import euler_denoising_loop
weights, inputs, out_path, dtype, config_path, mode, guidance = sys.argv[1:8]
dtype = getattr(torch, dtype)
z = np.load(inputs)
with torch.device("meta"):
    model = LTXModelConfigurator.from_config(json.loads(open(config_path).read()))
sd = {k[len("model.diffusion_model."):]: v.to(dtype) for k, v in load_file(weights).items()}
model.load_state_dict(sd, strict=True, assign=True)
model = X0Model(model.to(dtype)).eval()
t = lambda k, d=None: torch.from_numpy(z[k]).to(d or torch.float32)
sigmas = t("sigmas")
def state(s):
    lat = t(f"{s}.latent", dtype)
    return LatentState(latent=lat, denoise_mask=torch.ones(*lat.shape[:2], 1), positions=t(f"{s}.positions"),
                       clean_latent=torch.zeros_like(lat))
g = json.loads(guidance)
if mode == "guided":
    guider = lambda k: MultiModalGuider(params=MultiModalGuiderParams(**g[k]), negative_context=t(f"neg.{k}", dtype))
    fn = multi_modal_guider_denoising_func(guider("video"), guider("audio"), t("pos.video", dtype),
                                           t("pos.audio", dtype), model)
else:
    fn = simple_denoising_func(t("pos.video", dtype), t("pos.audio", dtype), model)
print(json.dumps({"ready": True, "torch_threads": torch.get_num_threads()}), flush=True)
for line in sys.stdin:
    if line.strip() != "run":
        break
    with torch.inference_mode():
        t0 = time.perf_counter()
        v, a = euler_denoising_loop(sigmas, state("video"), state("audio"), EulerDiffusionStep(), fn)
        print(json.dumps({"s": time.perf_counter() - t0}), flush=True)
np.savez(out_path, video=v.latent.float().numpy(), audio=a.latent.float().numpy())
"""


def _config(args) -> LTXConfig:
    t = dataclasses.replace(
        LTX_2_3.transformer, num_layers=args.layers, num_attention_heads=args.heads, attention_head_dim=args.head_dim,
        cross_attention_dim=args.heads * args.head_dim, audio_num_attention_heads=args.audio_heads,
        audio_attention_head_dim=args.audio_head_dim, audio_cross_attention_dim=args.audio_heads * args.audio_head_dim)
    return LTXConfig(transformer=t, connector=LTX_2_3.connector)


def _guidance(args, layers: int) -> Guidance:
    if args.mode == "distilled":
        return Guidance()
    common = dict(stg_scale=1.0, stg_blocks=(layers - 1,), rescale_scale=0.7, modality_scale=3.0)
    return Guidance(GuiderParams(cfg_scale=3.0, **common), GuiderParams(cfg_scale=7.0, **common))


def _inputs(args, c, sigmas) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    fps = 24.0
    tv = args.frames * args.height * args.width
    ta = audio_token_count((args.frames - 1) * 8 + 1, fps)
    out = {"sigmas": sigmas,
           "video.latent": rng.standard_normal((1, tv, c.in_channels), np.float32),
           "video.positions": video_positions(args.frames, args.height, args.width, fps=fps),
           "audio.latent": rng.standard_normal((1, ta, c.audio_in_channels), np.float32),
           "audio.positions": audio_positions(ta)}
    for k in ("pos", "neg"):
        out[f"{k}.video"] = rng.standard_normal((1, args.text, c.cross_attention_dim), np.float32)
        out[f"{k}.audio"] = rng.standard_normal((1, args.text, c.audio_cross_attention_dim), np.float32)
    return out


def bench(args) -> dict:
    config = _config(args)
    c = config.transformer
    dtype = jnp.dtype(args.dtype)
    guidance = _guidance(args, c.num_layers)
    sigmas = distilled_sigmas(1)[-(args.steps + 1):] if args.mode == "distilled" else dev_sigmas(args.steps)
    sampler = Sampler(sigmas, guidance=guidance)
    g_json = json.dumps({k: {f.name: list(v) if isinstance(v := getattr(p, f.name), tuple) else v
                             for f in dataclasses.fields(p)} for k, p in (("video", guidance.video),
                                                                          ("audio", guidance.audio))})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = write_schema_file(transformer_schema(c), tmp / "dit.safetensors", config.to_metadata())
        inputs = _inputs(args, c, sigmas)
        np.savez(tmp / "in.npz", **inputs)
        (tmp / "config.json").write_text(config.to_metadata()["config"])
        official = subprocess.Popen([str(ROOT / ".venv-ref/bin/python"), "-c", OFFICIAL, str(weights),
                                     str(tmp / "in.npz"), str(tmp / "out.npz"), args.dtype, str(tmp / "config.json"),
                                     args.mode, g_json], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, cwd=ROOT)
        hello = official.stdout.readline()
        if not hello:
            raise SystemExit(f"official run failed:\n{official.stderr.read()[-4000:]}")
        threads = json.loads(hello)["torch_threads"]

        dit = nnx.split(load_ours(weights, args))
        prompt = Prompt(*(TextContext(*(jnp.asarray(inputs[f"{k}.{s}"], dtype) for s in ("video", "audio")))
                          for k in ("pos", "neg")))

        def states():
            def st(s):
                lat = jnp.asarray(inputs[f"{s}.latent"], dtype)
                return LatentState(latent=lat, denoise_mask=jnp.ones((*lat.shape[:2], 1), jnp.float32),
                                   positions=jnp.asarray(inputs[f"{s}.positions"]), clean_latent=jnp.zeros_like(lat))
            return st("video"), st("audio")

        t0 = time.perf_counter()
        lower(dit, sampler, *states(), prompt).compile()
        compile_s = time.perf_counter() - t0
        sample(dit, sampler, *states(), prompt)  # fills jit's own cache (the AOT compile above is separate)
        theirs, ours = [], []
        for _ in range(args.repeats + 1):
            official.stdin.write("run\n")
            official.stdin.flush()
            theirs.append(json.loads(official.stdout.readline())["s"])
            s = states()
            t0 = time.perf_counter()
            res = sample(dit, sampler, *s, prompt)
            jax.block_until_ready((res.video.latent, res.audio.latent))
            ours.append(time.perf_counter() - t0)
        official.communicate("stop\n")
        ref = np.load(tmp / "out.npz")
    err = max(float(np.abs(np.asarray(o, np.float32) - r).max() / np.abs(r).max())
              for o, r in ((res.video.latent, ref["video"]), (res.audio.latent, ref["audio"])))
    n = sampler.steps
    ratios = [o / t for o, t in zip(ours[1:], theirs[1:], strict=True)]
    per_step = lambda xs: [x / n for x in xs]  # noqa: E731
    return {
        "setup": {"mode": args.mode, "passes": list(guidance.passes), "steps": n, "layers": c.num_layers,
                  "video_width": c.inner_dim, "audio_width": c.audio_inner_dim,
                  "video_tokens": int(inputs["video.latent"].shape[1]),
                  "audio_tokens": int(inputs["audio.latent"].shape[1]), "text_tokens": args.text, "dtype": args.dtype, "fp8": args.fp8,
                  "backend": jax.default_backend(), "device": str(jax.devices()[0]), "repeats": args.repeats},
        "official": {"per_step_s": per_step(theirs[1:]), "per_step_median_s": statistics.median(per_step(theirs[1:])),
                     "first_loop_s": theirs[0], "torch_threads": threads},
        "ours": {"compile_s": compile_s, "per_step_s": per_step(ours[1:]),
                 "per_step_median_s": statistics.median(per_step(ours[1:])), "first_loop_s": ours[0]},
        "ours_over_official": statistics.median(ratios), "max_rel_err": err,
    }


def load_ours(weights: Path, args) -> nnx.Module:
    """Our transformer from the benchmark's weights file; with `--fp8`, from an FP8 copy of it."""
    rt = Runtime(param_dtype=args.dtype, compute_dtype=args.dtype, fp8=args.fp8)
    if args.fp8 == "off":
        return load_transformer(weights, rt)
    from ltx_jax.pipelines.quantize import quantized_transformer
    return quantized_transformer(weights, rt)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", default="guided", choices=("guided", "distilled"))
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--audio-heads", type=int, default=4)
    p.add_argument("--audio-head-dim", type=int, default=64)
    p.add_argument("--frames", type=int, default=3, help="latent frames")
    p.add_argument("--height", type=int, default=16, help="latent rows")
    p.add_argument("--width", type=int, default=16, help="latent columns")
    p.add_argument("--text", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--fp8", default="off", choices=("off", "weights", "scaled"),
                   help="ours runs an FP8 copy of the weights (ltx_jax.pipelines.quantize, every block, 1-sigma "
                        "calibration) in this FP8 mode; the official side keeps the unquantized weights")
    args = p.parse_args()
    if args.steps < 1:
        p.error("--steps must be >= 1")
    print(json.dumps(bench(args), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
