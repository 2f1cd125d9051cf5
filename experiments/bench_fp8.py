"""FP8 memory and quality: bytes of transformer weights (bf16 vs FP8), peak host memory while restoring an FP8
file, and per-step error of a distilled loop in both FP8 modes. Prints one JSON object.

    .venv/bin/python experiments/bench_fp8.py FIXTURE_DIR [--sections memory,rss,quality] [--rss-layers 2]

* `memory.tiny`: the fixture's checkpoint restored bf16 (`Runtime(fp8="off")`) against FP8 copies of it
  written by our quantizer (`ltx_jax.pipelines.quantize`): the official layer set (block 0 and 43-47 stay
  bf16: on a 2-block model only block 1 is FP8) and every block. Bytes summed over the restored state's
  arrays, i.e. what sits on the device.
* `memory.ltx23_eval_shape`: the same sums from `eval_shape` of the LTX-2.3 preset (48 blocks, nothing
  allocated), bf16 against FP8 on the official layer set (every Linear of blocks 1-42) and on all blocks.
* `restore_rss` (child process): a synthetic transformer-only FP8 file at full LTX-2.3 width with
  `--rss-layers` blocks (random e4m3 block Linears with scales, everything else bf16, written tensor by
  tensor), restored with `Runtime(fp8="weights")`. On CPU the restored arrays are host memory, so the
  figure that matters is the transient: peak RSS (VmHWM) - baseline (VmRSS after imports) - bytes of the
  restored arrays, against the file's largest tensor.
* `quality`: the fixture's stage-1 distilled loop (8 steps, its recorded noised latents and connector
  outputs) with bf16 weights and compute, and with each FP8 file in modes "weights" and "scaled" (bf16
  compute): per step, cosine and relative L2 of the video and audio x0 against the bf16 run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from ltx_jax.configs import LTX_2_3, Runtime  # noqa: E402
from ltx_jax.checkpoint.fp8_restore import abstract_fp8_model  # noqa: E402
from ltx_jax.checkpoint.loader import restore  # noqa: E402
from ltx_jax.transformer.model import LTXModel  # noqa: E402
from ltx_jax.checkpoint.layout import TRANSFORMER_PREFIX  # noqa: E402
from ltx_jax.nn.fp8 import state_nbytes  # noqa: E402
from ltx_jax.pipelines.quantize import QuantizeSpec, quantize_checkpoint, select_layers  # noqa: E402

BF16 = Runtime(param_dtype="bfloat16", compute_dtype="bfloat16")
GB = 1e9

CHILD = r"""
import json, sys
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
import jax
from ltx_jax.configs import Runtime
from ltx_jax.checkpoint.loader import restore
from ltx_jax.nn.fp8 import state_nbytes
from flax import nnx
base = status("VmRSS")
m = restore(sys.argv[1], "transformer", runtime=Runtime(fp8="weights"))
state = nnx.state(m)
jax.block_until_ready(jax.tree.leaves(state))
print(json.dumps({"rss_baseline": base, "rss_peak": status("VmHWM"), "restored_bytes": state_nbytes(state)}))
"""


def _bytes(module) -> int:
    return state_nbytes(nnx.state(module))


def memory_tiny(fx: Path, out: Path) -> tuple[dict, dict[str, Path]]:
    src = fx / "ltx_checkpoint.safetensors"
    files = {"official_set": out / "tiny_fp8_official.safetensors", "all_blocks": out / "tiny_fp8_all.safetensors"}
    small = dict(sigmas=(1.0, 0.725), frames=9, height=128, width=128)
    quantize_checkpoint(src, files["official_set"], QuantizeSpec(**small), overwrite=True)
    quantize_checkpoint(src, files["all_blocks"], QuantizeSpec(exclude_blocks=(), **small), overwrite=True)
    bf16 = _bytes(restore(src, "transformer", runtime=BF16))
    res = {"bf16_bytes": bf16}
    for name, path in files.items():
        n = _bytes(restore(path, "transformer", runtime=Runtime(fp8="weights")))
        res[f"fp8_{name}_bytes"] = n
        res[f"fp8_{name}_over_bf16"] = round(n / bf16, 4)
    return res, files


def memory_ltx23() -> dict:
    c = LTX_2_3.transformer
    build = lambda config, runtime: LTXModel(config, runtime, rngs=nnx.Rngs(0))  # noqa: E731
    bf16 = state_nbytes(nnx.state(nnx.eval_shape(lambda: build(c, BF16))))
    res = {"bf16_GB": round(bf16 / GB, 3)}
    for name, spec in (("official_set", QuantizeSpec()), ("all_blocks", QuantizeSpec(exclude_blocks=()))):
        layers = set(select_layers(c, spec))
        model, bounds = abstract_fp8_model(build, c, Runtime(fp8="weights"), layers, TRANSFORMER_PREFIX)
        n = state_nbytes(nnx.state(model))
        res[f"fp8_{name}_GB"] = round(n / GB, 3)
        res[f"fp8_{name}_over_bf16"] = round(n / bf16, 4)
        res[f"fp8_{name}_segments"] = bounds
        res[f"fp8_{name}_linears"] = len(layers)
    return res


def restore_rss(out: Path, layers: int) -> dict:
    import dataclasses

    import ml_dtypes

    from ltx_jax.checkpoint.safetensors_file import save_file
    from ltx_jax.checkpoint.schema import transformer_schema

    c = dataclasses.replace(LTX_2_3.transformer, num_layers=layers)
    config = dataclasses.replace(LTX_2_3, transformer=c)
    schema = transformer_schema(c)
    fp8 = set(select_layers(c, QuantizeSpec(exclude_blocks=())))
    tensors, shapes = [], {}
    rng = np.random.default_rng(0)
    for key in sorted(schema):
        shape = schema[key]
        if key.endswith(".weight") and key[: -len(".weight")] in fp8:
            layer = key[: -len(".weight")]
            tensors += [(key, lambda s=shape: rng.integers(0, 0x7E, s, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn)),
                        (layer + ".weight_scale", lambda: np.float32(1e-3).reshape(())),
                        (layer + ".input_scale", lambda: np.float32(1e-2).reshape(()))]
            shapes.update({key: (shape, ml_dtypes.float8_e4m3fn), layer + ".weight_scale": ((), np.float32),
                           layer + ".input_scale": ((), np.float32)})
        else:
            tensors.append((key, lambda s=shape: (rng.standard_normal(s, np.float32) * 0.02).astype(ml_dtypes.bfloat16)))
            shapes[key] = (shape, ml_dtypes.bfloat16)
    path = out / f"rss_fp8_{layers}blocks.safetensors"
    save_file(tensors, path, config.to_metadata(), shapes=shapes)
    largest = max(int(np.prod(s)) * np.dtype(d).itemsize for s, d in shapes.values())
    r = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    got = json.loads(r.stdout.strip().splitlines()[-1])
    transient = got["rss_peak"] - got["rss_baseline"] - got["restored_bytes"]
    path.unlink()
    return {"file_GB": round(sum(int(np.prod(s)) * np.dtype(d).itemsize for s, d in shapes.values()) / GB, 3),
            "largest_tensor_MB": round(largest / 1e6, 1), "rss_baseline_MB": round(got["rss_baseline"] / 1e6, 1),
            "rss_peak_MB": round(got["rss_peak"] / 1e6, 1), "restored_MB": round(got["restored_bytes"] / 1e6, 1),
            "transient_above_baseline_and_result_MB": round(transient / 1e6, 1),
            "transient_over_largest_tensor": round(transient / largest, 3)}


def quality(fx_dir: Path, files: dict[str, Path]) -> dict:
    from ltx_jax.parity import Fixture
    from ltx_jax.parity.loop import recorded_state
    from ltx_jax.sampling.loops import distilled_sampler, sample
    from ltx_jax.sampling.samplers import Prompt, TextContext

    fx = Fixture(fx_dir)
    sampler = distilled_sampler(1)
    if "loop.stage1.sigmas" in fx and not np.array_equal(sampler.sigmas, fx["loop.stage1.sigmas"]):
        sampler = type(sampler)(fx["loop.stage1.sigmas"])
    cast = lambda st: st.replace(latent=st.latent.astype(jnp.bfloat16))  # noqa: E731
    prompt = Prompt(TextContext(jnp.asarray(fx["connector.out.video_encoding"], jnp.bfloat16),
                                jnp.asarray(fx["connector.out.audio_encoding"], jnp.bfloat16)))

    def run(path, runtime):
        dit = nnx.split(restore(path, "transformer", runtime=runtime))
        video, audio = cast(recorded_state(fx, "loop.stage1.video")), cast(recorded_state(fx, "loop.stage1.audio"))
        rec = sample(dit, sampler, video, audio, prompt, record=True).record  # (latents are donated: fresh ones)
        return {s: np.asarray(rec[f"{s}_x0"], np.float64) for s in ("video", "audio")}

    ref = run(fx_dir / "ltx_checkpoint.safetensors", BF16)
    out = {"steps": int(sampler.steps), "reference": "bf16 weights and compute, same inputs"}
    for name, path in files.items():
        for mode in ("weights", "scaled"):
            ours = run(path, Runtime(param_dtype="bfloat16", compute_dtype="bfloat16", fp8=mode))
            per = {}
            for s in ("video", "audio"):
                a, b = ours[s].reshape(ours[s].shape[0], -1), ref[s].reshape(ref[s].shape[0], -1)
                cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
                rel = np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)
                per[s] = {"cosine": [round(float(x), 6) for x in cos], "rel_l2": [round(float(x), 5) for x in rel]}
            out[f"{name}.{mode}"] = per
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("fixture", type=Path, help="a main fixture directory (ltx_checkpoint.safetensors, loop.* arrays)")
    p.add_argument("--out-dir", type=Path, default=Path("/tmp/bench_fp8"))
    p.add_argument("--sections", default="memory,rss,quality", help="comma-separated subset of memory, rss, quality")
    p.add_argument("--rss-layers", type=int, default=2)
    args = p.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    sections = set(args.sections.split(","))
    result = {"backend": jax.default_backend()}
    try:
        if "rss" in sections:
            result["restore_rss"] = restore_rss(args.out_dir, args.rss_layers)
        if sections & {"memory", "quality"}:
            tiny, files = memory_tiny(args.fixture, args.out_dir)
            result["memory"] = {"tiny": tiny, "ltx23_eval_shape": memory_ltx23()}
        if "quality" in sections:
            result["quality"] = quality(args.fixture, files)
    finally:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
