"""DiT and text-side structure without running them at size: module state = official file layout, full-size
parameter counts = the official modules', abstract full-size lowering, depth-independent program size, the
RoPE grids and positions against the official code, attention dispatch, and the errors bad inputs and
checkpoints give."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ltx_jax.configs import LTX_2, LTX_2_3, LTX_2_3_TINY, LTX_2_TINY, Runtime
from ltx_jax.checkpoint.layout import LAYOUT, expected_keys
from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
from ltx_jax.checkpoint.schema import TRANSFORMER_PREFIX, connector_schema, num_parameters, transformer_schema
from ltx_jax.nn.attention import select_implementation
from ltx_jax.nn.rope import frequency_grid
from ltx_jax.parity import Fixture
from ltx_jax.sampling.positions import audio_positions, keyframe_positions, video_positions
from ltx_jax.transformer import (EmbeddingsProcessor, LoadError, LTXModel, Modality, Perturbations, forward, load_text_embeddings, load_transformer)
from conftest import REF_PYTHON, ROOT, build_reference, reference_unavailable, run_ref_python

F32 = Runtime(param_dtype="float32", compute_dtype="float32")
PRESETS = [("LTX-2", LTX_2), ("LTX-2.3", LTX_2_3), ("ltx2-tiny", LTX_2_TINY), ("ltx23-tiny", LTX_2_3_TINY)]


def _file_layout(component: str, module) -> dict[str, tuple[int, ...]]:
    return expected_keys(LAYOUT[component], nnx.state(module))


@pytest.mark.parametrize("name, config", PRESETS, ids=[p[0] for p in PRESETS])
def test_module_state_is_the_official_layout(name, config):
    dit = nnx.eval_shape(lambda: LTXModel(config.transformer, rngs=nnx.Rngs(0)))
    assert _file_layout("transformer", dit) == transformer_schema(config.transformer)
    text = nnx.eval_shape(lambda: EmbeddingsProcessor(config.connector, rngs=nnx.Rngs(0)))
    assert _file_layout("text_embeddings", text) == connector_schema(config.connector)


@pytest.mark.reference
@pytest.mark.parametrize("name, config", PRESETS[:2], ids=["LTX-2", "LTX-2.3"])
def test_full_size_parameter_counts_equal_the_official_modules(name, config):
    if not REF_PYTHON.exists():
        reference_unavailable(f"{REF_PYTHON} does not exist")
    payload = json.loads(config.to_metadata()["config"])
    result = subprocess.run([str(REF_PYTHON), str(ROOT / "tests/reference/official_shapes.py"), "-", "--counts"],
                            input=json.dumps(payload), capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    official = json.loads(result.stdout)
    count = lambda m: int(sum(np.prod(v.shape) for _, v in nnx.to_flat_state(nnx.state(m))))  # noqa: E731
    dit = count(nnx.eval_shape(lambda: LTXModel(config.transformer, rngs=nnx.Rngs(0))))
    text = count(nnx.eval_shape(lambda: EmbeddingsProcessor(config.connector, rngs=nnx.Rngs(0))))
    assert dit == num_parameters(transformer_schema(config.transformer)) == official["transformer"]
    assert text == num_parameters(connector_schema(config.connector)) == official["connectors"]
    expected = {"LTX-2": (18_876_174_592, 1_431_475_200), "LTX-2.3": (18_988_838_144, 3_172_227_584)}[name]
    assert (dit, text) == expected


def _abstract_step(config, layers: int, video_tokens: int = 6144, audio_tokens: int = 126):
    c = dataclasses.replace(config.transformer, num_layers=layers)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: LTXModel(c, rngs=nnx.Rngs(0))))
    sd, bf = jax.ShapeDtypeStruct, jnp.bfloat16

    def stream(t, ch, axes, ctx):
        return Modality(latent=sd((1, t, ch), bf), sigma=sd((1,), jnp.float32), timesteps=sd((1, t), jnp.float32),
                        positions=sd((1, axes, t, 2), jnp.float32), context=sd((1, 1024, ctx), bf))

    pert = jax.tree.map(lambda a: sd(a.shape, a.dtype), Perturbations.none(layers, 1))
    ctx_v, ctx_a = (c.caption_channels,) * 2 if c.has_caption_projection else (c.cross_attention_dim,
                                                                                c.audio_cross_attention_dim)
    return forward.lower(graphdef, state, stream(video_tokens, c.in_channels, 3, ctx_v),
                         stream(audio_tokens, c.audio_in_channels, 1, ctx_a), pert, x0=True)


def test_full_size_step_lowers_abstractly():
    """121 frames at 512x768: 16x16x24 = 6144 video tokens, round(121/24*25) = 126 audio tokens."""
    for config in (LTX_2, LTX_2_3):
        lowered = _abstract_step(config, 48)
        # XLA counts each loop body once (one block, one query block of each attention): > 1.2e12 FLOPs of
        # projections and feed-forwards alone at 6144 tokens
        assert lowered.cost_analysis()["flops"] > 1.2e12
    assert video_positions(16, 16, 24, fps=24.0).shape == (1, 3, 6144, 2)


def test_program_size_does_not_grow_with_depth():
    small = _abstract_step(LTX_2_TINY, 2, 48, 18).as_text()
    deep = _abstract_step(LTX_2_TINY, 12, 48, 18).as_text()
    assert abs(len(deep) - len(small)) < 0.02 * len(small)


# ---------------------------------------------------------------------------------------------
# RoPE grid, positions, attention dispatch
# ---------------------------------------------------------------------------------------------

GRIDS = r"""
import sys, numpy as np
from ltx_core.model.transformer.rope import generate_freq_grid_np, generate_freq_grid_pytorch
out = {}
for n in (1, 3):
    for dim in (8, 32, 48, 64, 96, 2048, 4096):
        out[f"1_{n}_{dim}"] = generate_freq_grid_np(10000.0, n, dim).numpy()
        out[f"0_{n}_{dim}"] = generate_freq_grid_pytorch(10000.0, n, dim).numpy()
np.savez(sys.argv[1], **out)
"""


@pytest.mark.reference
def test_frequency_grids_equal_official(tmp_path):
    run_ref_python(GRIDS, str(tmp_path / "g.npz"))
    ref = np.load(tmp_path / "g.npz")
    for key in ref.files:
        double, n, dim = (int(p) for p in key.split("_"))
        ours, theirs = frequency_grid(10000.0, n, dim, bool(double)), ref[key]
        if double or len(theirs) < 32:  # torch's float32 pow is exact outside its vectorised chunks
            np.testing.assert_array_equal(ours, theirs, err_msg=key)
        else:
            np.testing.assert_array_max_ulp(ours, theirs, maxulp=2)  # SLEEF powf, then * pi/2


@pytest.mark.reference
def test_positions_equal_the_pipeline(reference):
    fx = Fixture(reference)
    px = fx.manifest["inputs"]["transformer_pixels"]
    frames, h, w, fps = (px["frames"] - 1) // 8 + 1, px["height"] // 32, px["width"] // 32, px["fps"]
    video = fx["transformer.in.video.positions"]
    np.testing.assert_array_equal(video_positions(frames, h, w, fps=fps), video)
    # the bf16 pipeline casts video positions to bf16 (VideoLatentTools in ltx-core 1.0.0)
    np.testing.assert_array_equal(np.asarray(jnp.asarray(video_positions(frames, h, w, fps=fps), jnp.bfloat16), np.float32),
                                  fx["transformer.in_bf16.video.positions"])
    key = fx["transformer.in.keyframe.video.positions"]
    offset = int(fx["transformer.in.keyframe.frame_idx"][0])
    np.testing.assert_array_equal(keyframe_positions(offset, h, w, fps=fps), key[:, :, video.shape[2]:])
    audio = fx["transformer.in.audio.positions"]
    np.testing.assert_array_equal(np.asarray(audio_positions(audio.shape[2])), audio)


def test_attention_dispatch_follows_the_backend():
    assert select_implementation("auto", backend="cpu", dtype=jnp.bfloat16, head_dim=128) == "xla"
    assert select_implementation("auto", backend="gpu", dtype=jnp.bfloat16, head_dim=128) == "cudnn"
    assert select_implementation("auto", backend="gpu", dtype=jnp.float32, head_dim=128) == "xla"
    assert select_implementation("auto", backend="gpu", dtype=jnp.bfloat16, head_dim=12) == "xla"
    assert select_implementation("xla", backend="gpu", dtype=jnp.bfloat16, head_dim=64) == "xla"
    with pytest.raises(ValueError, match="cuDNN attention needs a GPU"):
        select_implementation("cudnn", backend="cpu", dtype=jnp.bfloat16, head_dim=64)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny23():
    """Abstract (graphdef, state): the input checks run while tracing, so `forward.lower` reaches them."""
    return nnx.split(nnx.eval_shape(lambda: LTXModel(LTX_2_3_TINY.transformer, F32, rngs=nnx.Rngs(0))))


def _inputs(video_tokens=48, channels=16, ctx=64, positions=None):
    v = Modality(latent=jnp.zeros((1, video_tokens, channels)), sigma=jnp.ones((1,)),
                 timesteps=jnp.ones((1, video_tokens)),
                 positions=jnp.asarray(video_positions(3, 4, 4, fps=24.0)) if positions is None else positions,
                 context=jnp.zeros((1, 8, ctx)))
    a = Modality(latent=jnp.zeros((1, 18, 128)), sigma=jnp.ones((1,)), timesteps=jnp.ones((1, 18)),
                 positions=audio_positions(18), context=jnp.zeros((1, 8, 32)))
    return v, a


@pytest.mark.parametrize("kwargs, message", [
    (dict(channels=17), r"video latent has shape \(1, 48, 17\); expected \[B, T, 16\]"),
    (dict(positions=jnp.zeros((1, 2, 48, 2))), r"video positions have shape \(1, 2, 48, 2\); expected \[1, 3, 48, 2\]"),
    (dict(ctx=48), r"video context has shape \(1, 8, 48\); expected \[1, S, 64\]"),
])
def test_bad_inputs_are_named(tiny23, kwargs, message):
    with pytest.raises(ValueError, match=message):
        forward.lower(*tiny23, *_inputs(**kwargs))


def test_good_inputs_lower(tiny23):
    assert forward.lower(*tiny23, *_inputs(), x0=True) is not None


def test_bad_text_input_is_named():
    from ltx_jax.transformer import encode_text
    text = nnx.split(nnx.eval_shape(lambda: EmbeddingsProcessor(LTX_2_3_TINY.connector, F32, rngs=nnx.Rngs(0))))
    hidden = [jnp.zeros((1, 128, 48))] * 3
    assert encode_text.lower(*text, hidden, jnp.ones((1, 128), jnp.int32)) is not None
    with pytest.raises(ValueError, match=r"text hidden states stack to \(1, 128, 40, 3\); expected \[B, T, 48, 3\]"):
        encode_text.lower(*text, [jnp.zeros((1, 128, 40))] * 3, jnp.ones((1, 128), jnp.int32))
    with pytest.raises(ValueError, match=r"text hidden states stack to \(1, 128, 48, 2\); expected \[B, T, 48, 3\]"):
        encode_text.lower(*text, hidden[:2], jnp.ones((1, 128), jnp.int32))


def test_bad_perturbation_shape_is_named(tiny23):
    with pytest.raises(ValueError, match=r"perturbations.video_self_attn has shape \(3, 1\); expected \(2, 1\)"):
        forward.lower(*tiny23, *_inputs(), Perturbations.none(3, 1))
    with pytest.raises(ValueError, match="names block 5; the model has 2"):
        Perturbations.build(2, [[("video_self_attn", [5])]])


@pytest.mark.reference
def test_checkpoint_errors_are_named():
    files = {c: SafetensorsFile(build_reference(c, 0) / "ltx_checkpoint.safetensors") for c in ("ltx2-tiny", "ltx23-tiny")}
    with pytest.raises(LoadError, match=r"checkpoint is an LTX-2 layout .* but the config is LTX-2.3 .*wrong variant"):
        load_transformer(files["ltx2-tiny"], F32, config=LTX_2_3_TINY.transformer)
    with pytest.raises(LoadError, match=r"feature extractor v2 \(LTX-2.3\) but the config wants v1"):
        load_text_embeddings(files["ltx23-tiny"], F32, config=LTX_2_TINY.connector)
    tensors = dict(files["ltx23-tiny"])
    config = LTX_2_3_TINY.transformer
    missing = f"{TRANSFORMER_PREFIX}transformer_blocks.1.attn2.to_k.bias"
    with pytest.raises(LoadError, match=r"1 missing: " + missing.replace(".", r"\.")):
        load_transformer({k: v for k, v in tensors.items() if k != missing}, F32, config=config)
    with pytest.raises(LoadError, match=r"keys belong to no known component: foo\.weight"):
        load_transformer({**tensors, "foo.weight": np.zeros(1)}, F32, config=config)
    key = f"{TRANSFORMER_PREFIX}proj_out.weight"
    with pytest.raises(LoadError, match=r"wrong shape: .*proj_out\.weight: file \(16, 63\), model \(16, 64\)"):
        load_transformer({**tensors, key: np.zeros((16, 63), np.float32)}, F32, config=config)
    with pytest.raises(LoadError, match=r"unexpected: model\.diffusion_model\.transformer_blocks\.0\.attn1\.extra"):
        load_transformer({**tensors, f"{TRANSFORMER_PREFIX}transformer_blocks.0.attn1.extra": np.zeros(1)}, F32,
                         config=config)


@pytest.mark.reference
def test_bf16_file_loads_into_either_dtype():
    import ml_dtypes
    f = SafetensorsFile(build_reference("ltx23-tiny", 0) / "ltx_checkpoint.safetensors")
    bf16 = {k: np.asarray(v).astype(ml_dtypes.bfloat16) for k, v in f.items()}
    config = LTX_2_3_TINY.transformer
    for runtime in (F32, Runtime()):
        model = load_transformer(bf16, runtime, config=config)
        w = model.transformer_blocks.attn1.to_q.weight[...]
        assert w.dtype == jnp.dtype(runtime.param_dtype)
        np.testing.assert_array_equal(np.asarray(w[0], np.float32),
                                      bf16[f"{TRANSFORMER_PREFIX}transformer_blocks.0.attn1.to_q.weight"].astype(np.float32))
