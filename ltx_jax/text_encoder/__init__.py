"""Gemma-3 text encoder: prompt -> tokens -> every hidden state -> (with the checkpoint's connectors) contexts.

Counterparts: ltx_core `text_encoders/gemma/` (tokenizer, `GemmaTextEncoder`) over transformers' Gemma-3, and
ltx_pipelines `utils/helpers.py` (`encode_prompts`). No torch, no transformers: the decoder is ours (NNX), the
tokenizer is the `tokenizers` library on the folder's tokenizer.json.

    from ltx_jax.text_encoder import load_gemma, encode_prompts
    from ltx_jax.transformer import load_text_embeddings
    gemma = load_gemma("gemma-3-12b-it-qat-q4_0-unquantized")          # bf16, first device
    text = load_text_embeddings("ltx-2.3-22b-dev.safetensors", rt)      # feature extractor + connectors
    (v, a, m), (nv, na, nm) = encode_prompts(gemma, text, [prompt, negative], cache_dir="~/.cache/ltx-jax")
    gemma.free()                                                        # before loading / running the DiT
"""

from ltx_jax.configs.gemma import GEMMA3_12B, GemmaConfig
from ltx_jax.text_encoder.encoder import GemmaEncoder, gemma_rules, load_gemma, per_device_bytes
from ltx_jax.text_encoder.loading import GemmaFolder, GemmaFolderError
from ltx_jax.text_encoder.model import Gemma3TextModel
from ltx_jax.text_encoder.prompts import (encode_prompts, load_text_embeddings_for, negative_prompt, text_digest,
                                          write_prompt_file)
from ltx_jax.text_encoder.tokenizer import MAX_LENGTH, GemmaTokenizer, TokenizerError

__all__ = ["GemmaConfig", "GEMMA3_12B", "GemmaEncoder", "load_gemma", "gemma_rules", "per_device_bytes",
           "GemmaFolder", "GemmaFolderError", "Gemma3TextModel", "GemmaTokenizer", "TokenizerError", "MAX_LENGTH",
           "encode_prompts", "load_text_embeddings_for", "write_prompt_file", "negative_prompt", "text_digest"]
