"""LoRA training on a frozen FP8 base (e4m3 weights + per-tensor scales kept on device, LoRA factors float32).

The FP8 file is written here with NumPy from a synthetic tiny checkpoint (block 1's Linears quantized per
tensor: `scale = amax / 448`, `q = e4m3(w / scale)`; block 0 stays f32, so the restored blocks are two
segments, as in the official FP8 files). The independent side is a plain bf16 base holding the NumPy
dequantization `w = f32(q) * scale`. With bf16 compute, the FP8 base's matmuls dequantize to
`bf16(f32(q) * scale)`, the very weights the plain base holds, so loss and LoRA gradients must agree to
float32 rounding (bound 1e-6 relative; measured: equal).
"""

import re
import zlib

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from ltx_jax.checkpoint.layout import TRANSFORMER_PREFIX
from ltx_jax.checkpoint.lora import load_lora
from ltx_jax.checkpoint.safetensors_file import SafetensorsFile, save_file
from ltx_jax.checkpoint.synthetic import write_checkpoint
from ltx_jax.configs import LTX_2_3_TINY
from ltx_jax.nn.fp8 import FP8Weight
from ltx_jax.training.config import ConfigError, TrainConfig
from ltx_jax.training.data import write_clip, write_index
from ltx_jax.training.lora import LoraParam, lora_linears
from ltx_jax.training.run import build, train
from ltx_jax.training.step import forward_loss, step_key

E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)
GRID = (2, 2, 3)
ATTNS = ("attn1", "attn2")  # video-only clips: the video self- and cross-attention (a cheaper graph)
TARGETS = r"\.attn[12]\.(to_q|to_k|to_v|to_out\.0)$"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fp8train")
    src = write_checkpoint(LTX_2_3_TINY, root / "f32.safetensors", seed=3)
    f = SafetensorsFile(src)
    fp8, deq = {}, {}
    block1 = re.compile(re.escape(TRANSFORMER_PREFIX) + r"transformer_blocks\.1\..+\.weight$")
    for k in f.infos:
        w = np.array(f[k], np.float32)
        if block1.match(k) and w.ndim == 2:
            scale = np.float32(np.abs(w).max() / np.float32(448.0))
            q = np.clip(w / scale, -448, 448).astype(E4M3)
            fp8[k], fp8[k[:-len("weight")] + "weight_scale"] = q, np.asarray(scale)
            fp8[k[:-len("weight")] + "input_scale"] = np.asarray(np.float32(1.0))
            deq[k] = q.astype(np.float32) * scale
        else:
            fp8[k] = deq[k] = w
    save_file(fp8, root / "fp8.safetensors", dict(f.metadata))
    save_file(deq, root / "dequantized.safetensors", dict(f.metadata))
    rng = np.random.default_rng(0)
    pattern = np.broadcast_to(1.5 * np.sign(rng.standard_normal(16)), (*GRID, 16)).astype(np.float32)
    v_ctx, a_ctx = rng.standard_normal((8, 64)).astype(np.float32), rng.standard_normal((8, 32)).astype(np.float32)
    for i in range(4):
        write_clip(root / "cache", f"clip{i}", video_latent=pattern + 0.1 * rng.standard_normal(pattern.shape),
                   video_context=v_ctx, audio_context=a_ctx, fps=24.0, caption="the pattern")
    write_index(root / "cache")
    np.savez(root / "prompt.npz", video_context=v_ctx[None], audio_context=a_ctx[None],
             negative_video_context=0 * v_ctx[None], negative_audio_context=0 * a_ctx[None])
    return root


def _named(model, fill=None):
    """{official name: value} of every LoRA factor (one entry per block); `fill(name, shape)` sets them first."""
    out = {}
    for node in lora_linears(model):
        for which in ("lora_A", "lora_B"):
            var = getattr(node, which)
            arr = np.array(var[...], np.float32)
            for j in range(arr.shape[0]):
                name = f"{node.path.format(i=node.offset + j)}.{which}"
                if fill is not None:
                    arr[j] = fill(name, arr[j].shape)
                out[name] = arr[j]
            if fill is not None:
                var.set_value(jnp.asarray(arr))
    return out


def _config(root, checkpoint, base_dtype, out="out", steps=4, sample=None):
    return TrainConfig.from_dict({
        **({"sample": sample} if sample else {}),
        "model": {"checkpoint": str(root / checkpoint), "base_dtype": base_dtype},
        "data": {"cache": str(root / "cache"), "batch_size": 2, "seed": 1},
        "output": {"dir": str(root / out), "checkpoint_every": 100, "progress": False},
        "lora": {"rank": 4, "targets": TARGETS},
        "optim": {"steps": steps, "learning_rate": 3e-2}})


def test_fp8_base_loss_and_grads_equal_dequantized_base(files):
    results = {}
    for name, ckpt, dtype in (("fp8", "fp8.safetensors", "fp8"), ("deq", "dequantized.safetensors", "bfloat16")):
        trainer, data, _ = build(_config(files, ckpt, dtype))
        if name == "fp8":  # the e4m3 values and scales stay as they are in the file: 2 segments, block 1 FP8
            fp8 = [x for x in jax.tree.leaves(trainer.frozen, is_leaf=lambda x: isinstance(x, FP8Weight))
                   if isinstance(x, FP8Weight)]
            assert len(fp8) == 34 and all(w.value.dtype == E4M3 for w in fp8)
        state = trainer.init(0)
        # B = 0 at init would leave A's gradient zero: both sides get the same nonzero factors, by official name
        # (the FP8 side's stack is two segments, the plain one a single stack of two blocks)
        model = trainer.model(state)
        _named(model, fill=lambda name, shape: 0.05 * np.random.default_rng(zlib.crc32(name.encode()))
               .standard_normal(shape))
        params = nnx.split(model, LoraParam, ...)[1]
        batch = data.batch(0)
        (loss, _), grads = jax.jit(jax.value_and_grad(forward_loss, argnums=1, has_aux=True), static_argnums=0)(
            trainer.static, params, trainer.frozen, batch, step_key(state))
        results[name] = (float(loss), _named(nnx.merge(trainer.graphdef, grads, trainer.frozen)))
    (l8, g8), (ld, gd) = results["fp8"], results["deq"]
    assert abs(l8 - ld) <= 1e-6 * abs(ld), (l8, ld)
    assert g8.keys() == gd.keys() and len(gd) == 2 * 2 * 4 * 2  # blocks x attentions x projections x (A, B)
    assert all(np.abs(g).max() > 0 for g in gd.values())  # every adapter gets a gradient
    worst = max(float(np.abs(g8[k] - gd[k]).max() / np.abs(gd[k]).max()) for k in gd)
    print(f"fp8 vs dequantized base: loss {l8} vs {ld}, worst grad rel err {worst:.2e}")
    assert worst <= 1e-6


def test_fp8_base_trains_samples_and_saves_official_lora(files):
    """Also the sample videos: every K = 2 steps a dev one-stage generation (2 Euler steps, unguided) with the current
    LoRA through the pipelines, written as npz + mp4; read back with PyAV: 9 frames of 64 x 96 each."""
    import av

    sample = {"every": 2, "prompt": str(files / "prompt.npz"), "frames": 9, "height": 64, "width": 96, "steps": 2,
              "guidance": "none"}
    config = _config(files, "fp8.safetensors", "fp8", out="run", sample=sample)
    summary = train(config, log=lambda s: None)
    for step in (2, 4):
        folder = files / "run" / "samples" / f"step{step:06d}"
        with np.load(folder / "video.npz") as z:
            assert z["frames"].shape == (9, 64, 96, 3) and z["frames"].dtype == np.uint8
        with av.open(str(folder / "video.mp4")) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
        assert len(frames) == 9 and frames[0].shape == (64, 96, 3)
    assert sorted(p.name for p in (files / "run" / "samples").iterdir()) == [
        "lora_step000002.safetensors", "lora_step000004.safetensors", "step000002", "step000004"]
    # the loss on one fixed batch and key (step 0's draws) falls from the initial LoRA to the trained one
    trainer, data, _ = build(config)
    batch, start = data.batch(0), trainer.init(config.data.seed)
    # (the step's reported loss is computed before its update; the step compiled by `train` is reused)
    before = float(trainer.step(start, batch)[1]["loss"])
    after = float(trainer.step(summary["state"].replace(step=start.step), batch)[1]["loss"])
    print(f"fp8 base, fixed-batch loss before {before:.4f} after 4 steps {after:.4f}")
    assert after < 0.8 * before
    # the official LoRA layout: diffusion_model.<block path>.lora_A/B.weight, [r, in] / [out, r], bf16,
    # both blocks (block 0 f32->bf16, block 1 FP8 in the base), q, k, v, out of the targeted attentions
    f = SafetensorsFile(summary["lora"])
    expected = {f"diffusion_model.transformer_blocks.{i}.{a}.{p}.lora_{ab}.weight" for i in range(2) for a in ATTNS
                for p in ("to_q", "to_k", "to_v", "to_out.0") for ab in "AB"}
    assert set(f.infos) == expected
    for k, info in f.infos.items():
        assert info.dtype == "BF16"
        assert info.shape[0 if ".lora_A." in k else 1] == 4
    assert len(load_lora(summary["lora"]).pairs) == 2 * 2 * 4


def test_fp8_base_refuses_a_file_without_fp8_weights(files):
    with pytest.raises(ConfigError, match="holds no FP8 weights"):
        build(_config(files, "f32.safetensors", "fp8"))
