"""Restore into shardings: equal to the single-device loaders, from the official file and from our checkpoint;
the scaled-FP8 file restored dequantized against the official dequantized forward; and on 8 simulated devices,
sharded restore equals single-device and every read is exactly one device's region (stacked layers included),
and each weight preset (replicated, fsdp, tensor) restores straight into its rules' shardings."""

from __future__ import annotations

import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ltx_jax.configs import Runtime
from ltx_jax.checkpoint.converter import convert
from ltx_jax.checkpoint.layout import LoadError
from ltx_jax.checkpoint.loader import restore
from ltx_jax.parity import Fixture
from ltx_jax.parity.transformer import _modality
from ltx_jax.transformer import Perturbations, forward, load_text_embeddings, load_transformer
from ltx_jax.upsampler import load_upsampler
from ltx_jax.video_vae.loading import load_video_decoder, load_video_encoder
from conftest import ROOT, build_lora_reference

pytestmark = pytest.mark.reference
F32 = Runtime(param_dtype="float32", compute_dtype="float32")
BF16 = Runtime(param_dtype="bfloat16", compute_dtype="bfloat16")


def _flat(module) -> dict:
    return {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(module))}


def _assert_same(a, b) -> None:
    fa, fb = _flat(a), _flat(b)
    assert fa.keys() == fb.keys()
    bad = [p for p in fa if fa[p].dtype != fb[p].dtype or not np.array_equal(fa[p], fb[p])]
    assert not bad, bad[:5]


def test_restore_equals_loaders(reference, tmp_path):
    """Every component, from the official file and from our checkpoint, in f32 and bf16."""
    f = reference / "ltx_checkpoint.safetensors"
    ours = convert(f, tmp_path / "ck")
    loaders = {"transformer": load_transformer, "text_embeddings": load_text_embeddings,
               "vae_encoder": load_video_encoder, "vae_decoder": load_video_decoder}
    for rt in (F32, BF16):
        for component, load in loaders.items():
            expected = load(f, rt)
            for src in (f, ours):
                _assert_same(restore(src, component, runtime=rt), expected)
    up = reference / "upsampler_spatial_x1_5_rational.safetensors"
    _assert_same(restore(convert(up, tmp_path / "up"), "upsampler", runtime=F32), load_upsampler(up, F32))


def test_fp8_file_restores_dequantized(reference):
    """The scaled-FP8 file restored as w = q * weight_scale: the forward matches the official dequantized one."""
    fx = Fixture(reference)
    graphdef, state = nnx.split(restore(reference / "ltx_transformer_fp8.safetensors", "transformer", runtime=F32))
    layers = json.loads((reference / "manifest.json").read_text())["config"]["transformer"]["num_layers"]
    v, a = forward(graphdef, state, _modality(fx, "video", jnp.float32), _modality(fx, "audio", jnp.float32),
                   Perturbations.none(layers, 1))
    for ours, name in ((v, "video"), (a, "audio")):
        ref = fx[f"fp8.out.dequant_{name}_velocity_f32"]
        err = float(np.abs(np.asarray(ours) - ref).max() / np.abs(ref).max())
        assert err <= 2e-5, (name, err)
    with pytest.raises(LoadError, match="holds no text embeddings"):  # a transformer-only file has none
        restore(reference / "ltx_transformer_fp8.safetensors", "text_embeddings")


SHARDED = r"""
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
import json, sys
import jax, numpy as np
from jax.sharding import AxisType, PartitionSpec as P
from flax import nnx
from ltx_jax.configs import Runtime
from ltx_jax.checkpoint.layout import module_keys
from ltx_jax.checkpoint.open import open_source
from ltx_jax.checkpoint.loader import restore_state
from ltx_jax.sharding import ShardingRules
import ltx_jax.transformer  # binds the transformer module to its layout entry
from ltx_jax.checkpoint.source import Logged, normalize_index

official, ours, lora_ckpt, lora = sys.argv[1:5]
assert len(jax.devices()) == 8
mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(AxisType.Auto, AxisType.Auto))
rt = Runtime(param_dtype="float32", compute_dtype="float32")
PREFIX = "model.diffusion_model."

# Stacked block parameters: layers over "data", output rows over "model"; others: rows over "model" (an axis
# that does not divide its dimension is dropped by ShardingRules).
sharding = ShardingRules(mesh, [(r"^transformer_blocks\.", P("data", "model")), (r".", P("model"))])

def expected_regions(state):
    out = set()
    for key, (path, shape, layers) in module_keys(state, ("transformer_blocks",)).items():
        dotted = ".".join(str(p) for p in path)
        for index in sharding(dotted, shape).devices_indices_map(shape).values():
            index = normalize_index(index, shape)
            if layers is None:
                out.add((PREFIX + key, index))
            else:
                out.update((PREFIX + key.format(i=i), index[1:]) for i in range(index[0].start, index[0].stop))
    return out

def run(src, loras=()):
    logged = Logged(open_source(src))
    _, sharded = restore_state(logged, "transformer", runtime=rt, shardings=sharding, loras=loras)
    _, single = restore_state(src, "transformer", runtime=rt, loras=loras)
    a, b = dict(nnx.to_flat_state(sharded)), dict(nnx.to_flat_state(single))
    unequal = [".".join(map(str, p)) for p in a if not np.array_equal(np.asarray(a[p][...]), np.asarray(b[p][...]))]
    sharded_leaves = sum(1 for p in a if len(a[p][...].sharding.device_set) == 8
                         and not a[p][...].sharding.is_fully_replicated)
    reads = {(k, i) for k, i, _ in logged.reads}
    want = expected_regions(sharded)
    return {"unequal": unequal, "leaves": len(a), "sharded_leaves": sharded_leaves,
            "reads_not_a_device_region": sorted(map(str, reads - want))[:5],
            "device_regions_never_read": sorted(map(str, want - reads))[:5], "reads": len(logged.reads)}

def presets(src):
    # each weight preset of the inference rules restored straight into its sharding: every array laid out by
    # its rule's spec and equal to the unsharded restore
    from jax.sharding import NamedSharding
    from ltx_jax.sharding import inference_rules, make_mesh
    _, single = restore_state(src, "transformer", runtime=rt)
    single = {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(single)}
    out = {}
    for preset, axes in (("replicated", dict(data=2, context=4)), ("fsdp", dict(data=2, context=4)),
                         ("tensor", dict(context=4, tensor=2))):
        rules = inference_rules(make_mesh(**axes), weights=preset)
        _, state = restore_state(src, "transformer", runtime=rt, shardings=rules)
        wrong, unequal, sharded, leaves = [], [], 0, 0
        for p, v in nnx.to_flat_state(state):
            arr, dotted = v[...], ".".join(map(str, p))
            want = NamedSharding(rules.mesh, rules.spec(dotted, arr.shape))
            if not arr.sharding.is_equivalent_to(want, arr.ndim):
                wrong.append([dotted, str(arr.sharding.spec), str(want.spec)])
            if not np.array_equal(np.asarray(arr), single[p]):
                unequal.append(dotted)
            leaves += 1
            sharded += not arr.sharding.is_fully_replicated
        out[preset] = {"wrong_sharding": wrong[:5], "unequal": unequal[:5], "leaves": leaves, "sharded": sharded,
                       "leaves_single": len(single)}
    return out

print(json.dumps({"official": run(official), "ours": run(ours), "lora": run(lora_ckpt, [(lora, 1.0)]),
                  "presets": presets(ours)}))
"""


@pytest.mark.sharding
def test_sharded_restore_reads_only_own_regions(tmp_path):
    """8 simulated devices (2 x 4 mesh): official file, our checkpoint, and with a LoRA merged on the fly."""
    fixture = build_lora_reference("ltx23-tiny", 0)
    main = fixture.parent / "ltx23-tiny_seed0"
    ours = convert(main / "ltx_checkpoint.safetensors", tmp_path / "ck")
    result = subprocess.run([sys.executable, "-c", SHARDED, str(main / "ltx_checkpoint.safetensors"), str(ours),
                             str(fixture / "ltx_checkpoint.safetensors"), str(fixture / "lora_a_attn_r4.safetensors")],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for preset, r in report.pop("presets").items():  # replicated, fsdp, tensor on 8 devices
        assert r["wrong_sharding"] == [] and r["unequal"] == [], (preset, r)
        assert r["leaves"] == r["leaves_single"], (preset, r)
        assert (r["sharded"] == 0) if preset == "replicated" else (r["sharded"] >= 10), (preset, r)
    for name, r in report.items():
        assert r["unequal"] == [], (name, r["unequal"][:5])
        assert r["sharded_leaves"] > r["leaves"] // 2, (name, r)
        assert r["reads_not_a_device_region"] == [] and r["device_regions_never_read"] == [], (name, r)
