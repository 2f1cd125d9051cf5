"""A word-level tokenizer over the world grammar's vocabulary, saved as a Hugging Face `tokenizer.json`, and a tiny
random Gemma-3 Hugging Face folder that uses it (the frozen text encoder of issue 17's embedded default).

No ltx_core counterpart. Special tokens keep the Gemma ids (`<pad>` 0, `<eos>` 1, `<bos>` 2, `<unk>` 3); words
follow in `grammar.vocabulary()` order. Text is lower-cased and split on whitespace and punctuation (so
"left," is "left" ","); a word outside the grammar is `<unk>`. `tokenizer_config.json` asks for `<bos>` and no
`<eos>`, as Gemma's does, so `ltx_jax.text_encoder.GemmaTokenizer` reads the folder with the official rules.
The weights are float32 normal(0, 0.02) (norm weights 0: Gemma norms scale by 1 + w), text-only key spelling
(`model.*`, `Gemma3ForCausalLM`), one `model.safetensors`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ltx_jax.world.grammar import Grammar, grammar, vocabulary

__all__ = ["SPECIAL_TOKENS", "build_tokenizer", "write_tokenizer", "write_tiny_gemma", "TINY_GEMMA"]

SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>")
TINY_GEMMA = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 8,
              "layer_types": ["sliding_attention", "full_attention"]}


def build_tokenizer(g: Grammar | None = None):
    """A `tokenizers.Tokenizer` (WordLevel) over the specials + the grammar's vocabulary."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers

    words = list(SPECIAL_TOKENS) + vocabulary(g or grammar())
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tok


def write_tokenizer(folder: str | os.PathLike, g: Grammar | None = None) -> int:
    """Write tokenizer.json + tokenizer_config.json + special_tokens_map.json; returns the vocabulary size."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(g)
    tok.save(str(folder / "tokenizer.json"))
    specials = {"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>"}
    config = {"tokenizer_class": "GemmaTokenizerFast", "add_bos_token": True, "add_eos_token": False,
              "model_max_length": 1024, "padding_side": "left", "truncation_side": "right", **specials,
              "added_tokens_decoder": {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                                "single_word": False, "special": True}
                                       for i, t in enumerate(SPECIAL_TOKENS)}}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=1) + "\n")
    return tok.get_vocab_size(with_added_tokens=True)


def _hf_config(vocab_size: int, shape: dict) -> dict:
    return {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": vocab_size,
            **shape, "rms_norm_eps": 1e-6, "rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0,
            "rope_scaling": None, "hidden_activation": "gelu_pytorch_tanh", "attention_bias": False,
            "attn_logit_softcapping": None, "final_logit_softcapping": None, "max_position_embeddings": 1024,
            "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2, "tie_word_embeddings": True,
            "torch_dtype": "float32"}


def write_tiny_gemma(folder: str | os.PathLike, *, seed: int = 0, shape: dict | None = None,
                     g: Grammar | None = None) -> Path:
    """A Hugging Face Gemma-3 text folder (config.json, model.safetensors, tokenizer files) with random weights.

    Written into a temporary sibling folder and renamed, so a failure leaves nothing behind; an existing
    `folder` is refused.
    """
    from ltx_jax.checkpoint.safetensors_file import save_file

    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder}: already exists; choose another folder for the tiny Gemma")
    shape = {**TINY_GEMMA, **(shape or {})}
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        vocab = write_tokenizer(tmp, g)
        config = _hf_config(vocab, shape)
        (tmp / "config.json").write_text(json.dumps(config, indent=1) + "\n")
        rng = np.random.default_rng(seed)
        h, inter, hd = shape["hidden_size"], shape["intermediate_size"], shape["head_dim"]
        heads, kv = shape["num_attention_heads"], shape["num_key_value_heads"]

        def normal(*dims: int) -> np.ndarray:
            return (0.02 * rng.standard_normal(dims)).astype(np.float32)

        tensors = {"model.embed_tokens.weight": normal(vocab, h), "model.norm.weight": np.zeros(h, np.float32)}
        for i in range(shape["num_hidden_layers"]):
            p = f"model.layers.{i}."
            tensors.update({
                p + "self_attn.q_proj.weight": normal(heads * hd, h), p + "self_attn.k_proj.weight": normal(kv * hd, h),
                p + "self_attn.v_proj.weight": normal(kv * hd, h), p + "self_attn.o_proj.weight": normal(h, heads * hd),
                p + "self_attn.q_norm.weight": np.zeros(hd, np.float32),
                p + "self_attn.k_norm.weight": np.zeros(hd, np.float32),
                p + "mlp.gate_proj.weight": normal(inter, h), p + "mlp.up_proj.weight": normal(inter, h),
                p + "mlp.down_proj.weight": normal(h, inter),
                **{p + n + ".weight": np.zeros(h, np.float32) for n in (
                    "input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                    "post_feedforward_layernorm")}})
        save_file(tensors, tmp / "model.safetensors", {"format": "pt"})
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
