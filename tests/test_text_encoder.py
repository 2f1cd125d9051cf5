"""Gemma text encoder: full-size shapes without allocating, folder layouts, clear errors, encode/cache/free.

Folders come from the official-side Gemma fixture (tests/reference/build_gemma.py), copied and altered per
test; hidden states are compared on a short window (the last 32 tokens) to keep compiles small.
"""

import json
import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import build_gemma_reference
from flax import nnx

from ltx_jax.configs import ConfigError, Runtime
from ltx_jax.convert.loading import LoadError
from ltx_jax.convert.safetensors_file import SafetensorsFile, save_file
from ltx_jax.text_encoder import (GEMMA3_12B, Gemma3TextModel, GemmaFolderError, TokenizerError, encode_prompts,
                                  load_gemma, load_text_embeddings_for, negative_prompt, write_prompt_file)
from ltx_jax.text_encoder.model import Embedding

F32 = Runtime(param_dtype="float32", compute_dtype="float32")


@pytest.fixture(scope="module")
def fixture_dir():
    return build_gemma_reference("gemma-tiny")


@pytest.fixture()
def folder(fixture_dir, tmp_path):
    out = tmp_path / "gemma"
    shutil.copytree(fixture_dir / "gemma", out)
    return out


def _window(fixture_dir, name="long", n=32):
    fx = np.load(fixture_dir / "fixtures.npz")
    return fx[f"tok.{name}.input_ids"][:, -n:], fx[f"tok.{name}.attention_mask"][:, -n:]


def _edit_config(folder, **text):
    cfg = json.loads((folder / "config.json").read_text())
    cfg["text_config"].update(text)
    (folder / "config.json").write_text(json.dumps(cfg))


def test_12b_parameter_count_without_allocating():
    """The released 12B text decoder: 10,759M non-embedding parameters (Gemma 3 technical report, table 1) plus
    the 262,208 x 3,840 embedding of the released config; bf16 bytes as the README states."""
    state = nnx.state(nnx.eval_shape(lambda: Gemma3TextModel(GEMMA3_12B, Runtime(), rngs=nnx.Rngs(0))))
    sizes = {".".join(map(str, p)): math.prod(v.shape) for p, v in nnx.to_flat_state(state)}
    total = sum(sizes.values())
    embedding = sizes["embed_tokens.weight"]
    assert embedding == 262_208 * 3840
    assert round((total - embedding) / 1e6) == 10_759
    assert total == 11_766_034_176
    assert all(v.dtype == jnp.bfloat16 for _, v in nnx.to_flat_state(state))


def test_embedding_scale_in_the_weight_dtype():
    """sqrt(3840) = 61.97 becomes 62.0 in bf16 before the multiply (transformers casts the scale first)."""
    emb = nnx.eval_shape(lambda: Embedding(2, 3840, jnp.bfloat16, nnx.Rngs(0)))
    graphdef, state = nnx.split(emb)
    state = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), state)
    out = nnx.merge(graphdef, state)(jnp.zeros((1,), jnp.int32))
    assert out.dtype == jnp.bfloat16 and float(out[0, 0]) == 62.0


def test_layouts_load_the_same(fixture_dir, folder, tmp_path):
    """Sharded + index (released), one model.safetensors, and text-only `model.*` keys give identical states."""
    ids, mask = _window(fixture_dir)
    ref = load_gemma(folder, F32)
    assert sorted(ref.other_components) == ["multi_modal_projector", "vision_tower"]
    assert all(k.startswith(("vision_tower.vision_model.", "multi_modal_projector."))
               for keys in ref.other_components.values() for k in keys)
    expected = np.asarray(ref.hidden_states(ids, mask))
    tensors = {}
    for shard in sorted(folder.glob("model-*.safetensors")):
        with SafetensorsFile(shard) as f:
            tensors.update({k: np.array(f[k]) for k in f})
    single = tmp_path / "single"
    shutil.copytree(folder, single, ignore=shutil.ignore_patterns("model*.safetensors*"))
    save_file(tensors, single / "model.safetensors", metadata={"format": "pt"})
    text_only = tmp_path / "text_only"
    shutil.copytree(single, text_only, ignore=shutil.ignore_patterns("model*.safetensors*"))
    save_file({"model." + k[len("language_model.model."):]: v for k, v in tensors.items()
               if k.startswith("language_model.model.")}, text_only / "model.safetensors")
    for path in (single, text_only):
        got = np.asarray(load_gemma(path, F32).hidden_states(ids, mask))
        np.testing.assert_array_equal(got, expected)


def test_missing_and_unexpected_keys_are_named(folder):
    shard = folder / "model-00001-of-00002.safetensors"
    with SafetensorsFile(shard) as f:
        tensors = {k: np.array(f[k]) for k in f}
    gone = "language_model.model.layers.3.mlp.up_proj.weight"
    extra = "language_model.model.layers.0.self_attn.rotary.inv_freq"
    tensors.pop(gone)
    tensors[extra] = np.zeros(8, np.float32)
    save_file(tensors, shard, metadata={"format": "pt"})
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"].pop(gone)
    index["weight_map"][extra] = shard.name
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(LoadError, match=r"missing: .*layers\.3\.mlp\.up_proj.*unexpected: .*rotary\.inv_freq"):
        load_gemma(folder, F32)


def test_index_naming_a_missing_shard(folder):
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(GemmaFolderError, match="model-00002-of-00002.safetensors"):
        load_gemma(folder, F32)


def test_missing_tokenizer_file(folder):
    (folder / "tokenizer.json").unlink()
    with pytest.raises(TokenizerError, match=r"no tokenizer\.json.*tokenizer\.model is there"):
        load_gemma(folder, F32)


def test_folder_of_another_model(folder, tmp_path):
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "llama"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="model_type='llama'.*not a Gemma-3"):
        load_gemma(folder, F32)
    with pytest.raises(GemmaFolderError, match="no config.json"):
        load_gemma(tmp_path, F32)


def test_other_tokenizer_class(folder):
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["tokenizer_class"] = "LlamaTokenizer"
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(TokenizerError, match="LlamaTokenizer"):
        load_gemma(folder, F32)


@pytest.mark.parametrize("change, message", [
    ({"attn_logit_softcapping": 50.0}, "attn_logit_softcapping=50.0 is not implemented"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 8.0}}, "rope_scaling.rope_type='yarn' is not implemented"),
    ({"use_bidirectional_attention": True}, "use_bidirectional_attention=True is not implemented"),
    ({"hidden_activation": "silu"}, "hidden_activation='silu' is not implemented"),
    ({"some_new_option": 1}, r"unknown Gemma-3 config keys \['some_new_option'\]"),
])
def test_unimplemented_config_values_are_refused(folder, change, message):
    _edit_config(folder, **change)
    with pytest.raises(ConfigError, match=message):
        load_gemma(folder, F32)


def test_transformers5_config_spelling(folder):
    """`rope_parameters` + `layer_types` (transformers 5) read as the 4.5x spelling does."""
    old = load_gemma(folder, F32).config
    cfg = json.loads((folder / "config.json").read_text())
    text = cfg["text_config"]
    scaling = text.pop("rope_scaling")
    text["rope_parameters"] = {"full_attention": {**scaling, "rope_theta": text.pop("rope_theta")},
                               "sliding_attention": {"rope_type": "default",
                                                     "rope_theta": text.pop("rope_local_base_freq")}}
    text["layer_types"] = list(old.layer_types)
    text.pop("sliding_window_pattern")
    (folder / "config.json").write_text(json.dumps(cfg))
    assert load_gemma(folder, F32).config == old


def test_encode_prompts_cache_free_and_prompt_file(fixture_dir, tmp_path):
    """One batch (prompt + official negative prompt); a second call is served from the cache without Gemma (freed);
    the written .npz reads back through `pipelines.load_prompt`."""
    from ltx_jax.pipelines import load_prompt

    gemma = load_gemma(fixture_dir / "gemma", F32)
    text = load_text_embeddings_for(gemma, fixture_dir / "ltx_text_checkpoint.safetensors", F32)
    prompts = ["A red fox runs through fresh snow at dawn.", negative_prompt()]
    assert prompts[1].startswith("blurry, out of focus")
    first = encode_prompts(gemma, text, prompts, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    params = jax.tree.leaves(gemma.state)
    gemma.free()
    assert all(p.is_deleted() for p in params)
    with pytest.raises(RuntimeError, match="freed"):
        gemma.hidden_states(*gemma.tokenize("x"))
    again = encode_prompts(gemma, text, prompts, cache_dir=tmp_path / "cache")
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert first[0][0].shape[:2] == (1, 1024) and np.all(np.asarray(first[0][2]) == 1)
    path = write_prompt_file(tmp_path / "prompt.npz", first[0], first[1])
    loaded = load_prompt(path)
    np.testing.assert_array_equal(np.asarray(loaded.positive.video), np.asarray(first[0][0]))
    np.testing.assert_array_equal(np.asarray(loaded.negative.audio), np.asarray(first[1][1]))


def test_encode_command_writes_a_generate_prompt(fixture_dir, tmp_path, capsys):
    """`ltx-jax encode` -> .npz that `load_prompt` (generate --prompt) reads; bad folders exit 2 with the reason."""
    from ltx_jax.cli import main
    from ltx_jax.pipelines import load_prompt

    gemma, ckpt = str(fixture_dir / "gemma"), str(fixture_dir / "ltx_text_checkpoint.safetensors")
    out = tmp_path / "prompt.npz"
    assert main(["encode", gemma, ckpt, "--prompt", "A red fox runs through fresh snow at dawn.", "--out", str(out),
                 "--dtype", "float32"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["prompts"] == 2 and report["video_context"][:2] == [1, 1024]
    prompt = load_prompt(out)
    assert prompt.negative is not None and prompt.positive.video.shape[1] == 1024
    assert main(["encode", str(tmp_path), ckpt, "--prompt", "x", "--out", str(tmp_path / "bad.npz")]) == 2
    assert "no config.json" in capsys.readouterr().err and not (tmp_path / "bad.npz").exists()


def test_cache_entries_keep_bfloat16(tmp_path):
    """npz has no bfloat16: entries hold float32 (exact for bf16 values) and the dtype, and load back as bf16."""
    from ltx_jax.text_encoder.prompts import _load, _store

    rng = np.random.default_rng(0)
    entry = (jnp.asarray(rng.normal(size=(1, 8, 4)), jnp.bfloat16), jnp.asarray(rng.normal(size=(1, 8, 2)), jnp.bfloat16),
             jnp.ones((1, 8), jnp.int32))
    _store(tmp_path / "e.npz", entry)
    back = _load(tmp_path / "e.npz")
    for a, b in zip(entry, back):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
