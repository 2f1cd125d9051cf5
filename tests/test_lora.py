"""LoRA against the official fusion (docs/reference-fixtures-lora.md): merged weights bit-identical for bf16,
float32, fp8-cast and scaled-FP8 bases; the merged tiny transformer's outputs; LoRAs at run time; the keys the
official loader silently ignores, which we refuse."""

from __future__ import annotations

import json
import re

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from ltx_jax.cli import main
from ltx_jax.configs import Runtime
from ltx_jax.checkpoint.lora import LoraError, LoraMerged, load_lora
from ltx_jax.transformer.lora import apply_lora_runtime, set_lora_strengths
from ltx_jax.checkpoint.loader import restore
from ltx_jax.checkpoint.safetensors_file import SafetensorsFile, save_file
from ltx_jax.checkpoint.source import SafetensorsSource, Source, TensorSpec
from ltx_jax.parity import Fixture
from ltx_jax.parity.transformer import _modality
from ltx_jax.transformer import Perturbations, forward

pytestmark = pytest.mark.reference
F32 = Runtime(param_dtype="float32", compute_dtype="float32")
BF16 = Runtime(param_dtype="bfloat16", compute_dtype="bfloat16")
A, B = "lora_a_attn_r4.safetensors", "lora_b_ff_r2.safetensors"
PREFIX = "model.diffusion_model."
CASES = {"a": ([(A, 1.0)], ml_dtypes.bfloat16), "ab": ([(A, 0.7), (B, 0.5)], ml_dtypes.bfloat16),
         "a_f32": ([(A, 1.0)], np.float32), "ab_f32": ([(A, 0.7), (B, 0.5)], np.float32)}
# ltx-core's fp8-cast load map (TRANSFORMER_LINEAR_DOWNCAST_MAP): these block Linears, weight and bias, to e4m3.
FP8_CAST = re.compile(r"transformer_blocks\.\d+\..*(to_q|to_k|to_v|to_out\.0|ff\.net\.0\.proj|ff\.net\.2)"
                      r"\.(weight|bias)$")


class _FP8Cast(Source):
    """The bf16 checkpoint as ltx-core's fp8-cast policy loads it (no scales)."""

    def __init__(self, base: Source):
        self.base, self.name, self.metadata = base, base.name, base.metadata
        self._specs = {k: TensorSpec(s.shape, np.dtype(ml_dtypes.float8_e4m3fn)) if FP8_CAST.search(k) else s
                       for k, s in base.specs().items()}

    def specs(self):
        return self._specs

    def read(self, key, index=None):
        return self.base.read(key, index).astype(self._specs[key].dtype)


def _loras(fixture, pairs):
    return [(fixture / f, s) for f, s in pairs]


def _max_rel(ours, ref) -> float:
    return float(np.abs(np.asarray(ours, np.float64) - ref).max() / np.abs(ref).max())


def test_merged_weights_equal_official(lora_reference):
    """Every recorded weight of every case, bit for bit (bf16 / f32 ledgers, fp8-cast, scaled FP8)."""
    fx = Fixture(lora_reference)
    params = json.loads((lora_reference / "manifest.json").read_text())["recorded_params"]
    ckpt = SafetensorsSource(lora_reference / "ltx_checkpoint.safetensors")
    for case, (pairs, dtype) in CASES.items():
        merged = LoraMerged(ckpt, _loras(lora_reference, pairs), dtype=np.dtype(dtype))
        for p in params:
            ours = merged.read(PREFIX + p).astype(np.float32)
            assert np.array_equal(ours, fx[f"lora.{case}.weight.{p}"]), (case, p)
    cast = LoraMerged(_FP8Cast(ckpt), _loras(lora_reference, CASES["ab"][0]))
    for p in params:
        assert cast.specs()[PREFIX + p].dtype == (np.dtype(ml_dtypes.float8_e4m3fn) if FP8_CAST.search(p)
                                                  else np.dtype(ml_dtypes.bfloat16))
        assert np.array_equal(cast.read(PREFIX + p).astype(np.float32), fx[f"lora.fp8cast_ab.weight.{p}"]), p
    # Scaled FP8 (the official pre-quantized layout): dequantize, add, requantize; new weight and scale.
    fp8 = SafetensorsSource(lora_reference.parent / lora_reference.name.replace("_lora", "") /
                            "ltx_transformer_fp8.safetensors")
    scaled = LoraMerged(fp8, _loras(lora_reference, CASES["ab"][0]), dtype=np.dtype(ml_dtypes.bfloat16))
    checked = 0
    for p in params:
        key = PREFIX + p
        if f"lora.fp8scaled_ab.weight_scale.{p}" in fx:
            assert scaled.specs()[key].dtype == np.dtype(ml_dtypes.float8_e4m3fn)
            assert np.array_equal(scaled.read(key).astype(np.float32), fx[f"lora.fp8scaled_ab.weight.{p}"]), p
            scale = scaled.read(key[: -len("weight")] + "weight_scale")
            assert scale.reshape(1)[0] == fx[f"lora.fp8scaled_ab.weight_scale.{p}"][0], p
            assert not np.array_equal(scale, fp8.read(key[: -len("weight")] + "weight_scale"))
            checked += 1
        elif key in scaled.targets:  # bf16 layers of the FP8 file (block 0) merge like a bf16 base
            assert np.array_equal(scaled.read(key).astype(np.float32), fx[f"lora.fp8scaled_ab.weight.{p}"]), p
    assert checked >= 2


def _forward(fx: Fixture, model, dtype, layers: int):
    graphdef, state = nnx.split(model)
    return forward(graphdef, state, _modality(fx, "video", dtype), _modality(fx, "audio", dtype),
                   Perturbations.none(layers, 1))


def test_merged_transformer_matches_official_fusion(lora_reference, tmp_path):
    """The tiny transformer restored with LoRAs merged (and from a checkpoint converted with --lora) against
    ltx-core's LoRA-fused LTXModel: float32 <= 2e-5, bfloat16 by cosine and relative error."""
    fx = Fixture(lora_reference)
    layers = json.loads((lora_reference / "manifest.json").read_text())["config"]["transformer"]["num_layers"]
    ckpt = lora_reference / "ltx_checkpoint.safetensors"
    for case in ("a_f32", "ab_f32"):
        model = restore(ckpt, "transformer", runtime=F32, loras=_loras(lora_reference, CASES[case][0]))
        for ours, m in zip(_forward(fx, model, jnp.float32, layers), ("video", "audio")):
            err = _max_rel(ours, fx[f"lora.{case}.out.{m}_velocity"])
            assert err <= 2e-5, (case, m, err)
    argv = ["convert", str(ckpt), str(tmp_path / "ab"), "--quiet", "--components", "transformer"]
    argv += [x for f, s in CASES["ab"][0] for x in ("--lora", f"{lora_reference / f}:{s}")]
    assert main(argv) == 0
    assert [r["strength"] for r in json.loads((tmp_path / "ab" / "manifest.json").read_text())["loras"]] == [0.7, 0.5]
    for case, src, loras in (("a", ckpt, _loras(lora_reference, CASES["a"][0])), ("ab", tmp_path / "ab", [])):
        model = restore(src, "transformer", runtime=BF16, loras=loras)
        for ours, m in zip(_forward(fx, model, jnp.bfloat16, layers), ("video", "audio")):
            o, r = np.asarray(ours, np.float64).ravel(), fx[f"lora.{case}.out.{m}_velocity"].astype(np.float64).ravel()
            cos, rel = o @ r / np.linalg.norm(o) / np.linalg.norm(r), np.linalg.norm(o - r) / np.linalg.norm(r)
            assert cos >= 0.999 and rel <= 2e-2, (case, m, cos, rel)


def test_lora_at_run_time(lora_reference):
    """Unmerged LoRAs (wrapped Linears): close to the official fusion, strength 0 is exactly the base model,
    and changing strengths reuses the compiled forward."""
    fx = Fixture(lora_reference)
    layers = json.loads((lora_reference / "manifest.json").read_text())["config"]["transformer"]["num_layers"]
    ckpt = lora_reference / "ltx_checkpoint.safetensors"
    base_out = _forward(fx, restore(ckpt, "transformer", runtime=F32), jnp.float32, layers)
    model = apply_lora_runtime(restore(ckpt, "transformer", runtime=F32), _loras(lora_reference, CASES["ab"][0]))
    out = _forward(fx, model, jnp.float32, layers)
    compiled = forward._cache_size()
    for ours, m in zip(out, ("video", "audio")):
        # The official fusion rounds B*s@A to bf16 before adding it; the run-time path never forms it.
        assert _max_rel(ours, fx[f"lora.ab_f32.out.{m}_velocity"]) <= 2e-3, m
    set_lora_strengths(model, {str(lora_reference / A): 0.0, str(lora_reference / B): 0.0})
    for ours, ref in zip(_forward(fx, model, jnp.float32, layers), base_out):
        assert np.array_equal(np.asarray(ours), np.asarray(ref))
    set_lora_strengths(model, {str(lora_reference / A): 0.7, str(lora_reference / B): 0.5})
    for ours, ref in zip(_forward(fx, model, jnp.float32, layers), out):
        assert np.array_equal(np.asarray(ours), np.asarray(ref))
    assert forward._cache_size() == compiled


def test_keys_the_official_loader_ignores_are_refused(lora_reference, tmp_path):
    facts = json.loads((lora_reference / "manifest.json").read_text())["facts"]
    ckpt = SafetensorsSource(lora_reference / "ltx_checkpoint.safetensors")
    probe = lora_reference / "probe_unmatched.safetensors"
    assert facts["unmatched_keys"]["raised"] is None and facts["unmatched_keys"]["changed_tensors"] == []
    with pytest.raises(LoraError) as e:
        load_lora(probe)
    assert str(probe) in str(e.value)
    assert "Kohya-style" in str(e.value) and "attn1.to_k has only lora_A" in str(e.value)
    # The well-formed pairs of that probe, each of which ltx-core drops without a word.
    f = SafetensorsFile(probe)
    pairs = tmp_path / "pairs.safetensors"
    save_file({k: np.array(f[k]) for k in f if ".lora_A." in k or ".lora_B." in k if "to_k." not in k}, pairs)
    with pytest.raises(LoraError) as e:
        LoraMerged(ckpt, [(pairs, 1.0)])
    msg = str(e.value)
    layers = json.loads((lora_reference / "manifest.json").read_text())["config"]["transformer"]["num_layers"]
    for needle in (f"transformer_blocks.{layers}.attn1.to_q", "attn1.to_q_typo", "text-connector",
                   "the checkpoint prefix"):
        assert needle in msg, (needle, msg)
    # No prefix: ltx-core applies it (its map strips `diffusion_model.` only where present); so do we.
    assert facts["key_without_prefix"]["changed_tensors"] == ["transformer_blocks.0.attn1.to_q.weight"]
    merged = LoraMerged(ckpt, [(lora_reference / "probe_no_prefix.safetensors", 1.0)])
    assert list(merged.targets) == [PREFIX + "transformer_blocks.0.attn1.to_q.weight"]
    assert not np.array_equal(merged.read(PREFIX + "transformer_blocks.0.attn1.to_q.weight"),
                              ckpt.read(PREFIX + "transformer_blocks.0.attn1.to_q.weight"))
    # Wrong shape: ltx-core fails deep inside the fusion with a bare size error; we name file, layer and shapes.
    assert "must match the size" in facts["shape_mismatch"]["raised"]
    probe = lora_reference / "probe_shape_mismatch.safetensors"
    with pytest.raises(LoraError, match=re.escape(str(probe)) + ".*shape mismatch.*attn1.to_q: weight"):
        LoraMerged(ckpt, [(probe, 1.0)])
