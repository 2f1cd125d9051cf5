"""Full fine-tuning exported to the official single file, loaded by our restore and by ltx-core.

Base: the LoRA reference fixture's bf16 checkpoint (ltx23-tiny). Two full fine-tuning steps (float32 masters,
AdamW) on a small synthetic cache write `model.safetensors` (transformer in bf16, as the official files; ltx-core
fuses LoRAs into bf16 weights only). Checked:
* the file holds the trained parameters rounded to bf16 under the official keys (our restore gives exactly
  those back), and every other tensor and the metadata of the base file unchanged;
* ltx-core's `ModelLedger` loads it (tests/reference/apply_lora.py with an all-zero LoRA, so the fused weights are
  the file's) and its velocities on the fixture's inputs equal ours from the same file within the transformer
  parity bound `BOUND_F32`, while the base's velocities are far from them (the training changed the model).
"""

import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REF_PYTHON, REFERENCE, build_lora_reference
from flax import nnx

from ltx_jax.checkpoint import restore
from ltx_jax.checkpoint.safetensors_file import SafetensorsFile, save_file
from ltx_jax.configs import Runtime
from ltx_jax.parity import Fixture, relative_error
from ltx_jax.parity.transformer import BOUND_F32, _modality, _velocity_and_x0
from ltx_jax.training.config import TrainConfig
from ltx_jax.training.data import write_clip, write_index
from ltx_jax.training.run import train
from ltx_jax.transformer import Perturbations

pytestmark = pytest.mark.reference
F32 = Runtime(param_dtype="float32", compute_dtype="float32")


def test_full_finetune_exports_an_official_file(tmp_path):
    fx = build_lora_reference("ltx23-tiny", 0)
    base = fx / "ltx_checkpoint.safetensors"
    rng = np.random.default_rng(0)
    for i in range(2):
        write_clip(tmp_path / "cache", f"c{i}", video_latent=rng.standard_normal((2, 2, 3, 16)),
                   video_context=rng.standard_normal((8, 64)), audio_context=rng.standard_normal((8, 32)), fps=24.0)
    write_index(tmp_path / "cache")
    config = TrainConfig.from_dict({
        "model": {"checkpoint": str(base), "mode": "full", "base_dtype": "float32", "compute_dtype": "float32"},
        "data": {"cache": str(tmp_path / "cache"), "batch_size": 2},
        "output": {"dir": str(tmp_path / "out"), "progress": False, "export_dtype": "bfloat16"},
        "optim": {"steps": 2, "learning_rate": 1e-2}})
    summary = train(config, log=lambda s: None)
    exported = summary["model"]

    # the trained parameters, bit for bit, through our restore of the file
    trained = jax.tree.leaves(summary["state"].params)
    _, state = nnx.split(restore(exported, "transformer", runtime=F32))
    restored = jax.tree.leaves(nnx.state(nnx.merge(nnx.graphdef(restore(base, "transformer", runtime=F32)), state),
                                         nnx.Param))
    assert len(trained) == len(restored)
    assert all(np.array_equal(np.asarray(a.astype(jnp.bfloat16).astype(jnp.float32)), np.asarray(b))
               for a, b in zip(trained, restored))
    out, src = SafetensorsFile(exported), SafetensorsFile(base)
    assert set(out.infos) == set(src.infos) and dict(out.metadata) == dict(src.metadata)
    others = [k for k in src.infos if not k.startswith("model.diffusion_model.")]
    assert others and all(np.array_equal(np.asarray(out[k]), np.asarray(src[k])) for k in others)
    assert out.infos["model.diffusion_model.proj_out.weight"].dtype == "BF16"

    # ltx-core's loader on the exported file (an all-zero LoRA on one Linear leaves the weights as they are)
    key = "diffusion_model.transformer_blocks.0.attn1.to_q"
    w = np.asarray(out["model." + key + ".weight"])
    save_file({key + ".lora_A.weight": np.ones((1, w.shape[1]), np.float32),
               key + ".lora_B.weight": np.zeros((w.shape[0], 1), np.float32)}, tmp_path / "zero_lora.safetensors")
    result = subprocess.run([str(REF_PYTHON), str(REFERENCE / "apply_lora.py"), "--checkpoint", str(exported),
                             "--lora", str(tmp_path / "zero_lora.safetensors"), "--inputs", str(fx / "fixtures.npz"),
                             "--out", str(tmp_path / "ref.npz")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    ref = np.load(tmp_path / "ref.npz")
    np.testing.assert_array_equal(ref["weight.transformer_blocks.0.attn1.to_q.weight"], w)
    fxt = Fixture(fx)
    inputs = (_modality(fxt, "video", jnp.float32), _modality(fxt, "audio", jnp.float32), Perturbations.none(2, 1))
    v, a, _, _ = _velocity_and_x0(*nnx.split(restore(exported, "transformer", runtime=F32)), *inputs)
    errors = {"video": relative_error(np.asarray(v), ref["out.video_velocity"]),
              "audio": relative_error(np.asarray(a), ref["out.audio_velocity"])}
    vb, _, _, _ = _velocity_and_x0(*nnx.split(restore(base, "transformer", runtime=F32)), *inputs)
    moved = relative_error(np.asarray(vb), ref["out.video_velocity"])
    print(f"exported full fine-tune, ours vs ltx-core: {errors}; base vs the trained model: {moved:.3e}")
    assert max(errors.values()) <= BOUND_F32
    assert moved > 100 * BOUND_F32
