"""Gemma tokenization with the official rules, from a hub folder's `tokenizer.json` (the `tokenizers` library).

Counterparts: ltx_core `text_encoders/gemma/tokenizer.py` (`LTXVGemmaTokenizer`, built with max_length 1024 by
`module_ops_from_gemma_root`) over transformers' `GemmaTokenizerFast`. The rules reproduced here:

1. `text.strip()`;
2. the backend of `tokenizer.json`, with the post-processor rebuilt from `tokenizer_config.json`'s
   `add_bos_token` (default true) / `add_eos_token` (default false), as `GemmaTokenizerFast.__init__` does
   (so `<bos>` is prepended and no `<eos>` appended, whatever tokenizer.json's own post-processor says);
3. truncation to 1024 tokens on the right (`truncation_side`, default right), keeping `<bos>`;
4. padding to exactly 1024 on the left with the pad token (the eos token when there is none), mask 0 there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["GemmaTokenizer", "TokenizerError", "MAX_LENGTH"]

MAX_LENGTH = 1024  # not configurable in ltx-core (module_ops_from_gemma_root); the connectors need a multiple of 128
_GEMMA_CLASSES = ("GemmaTokenizer", "GemmaTokenizerFast")


class TokenizerError(ValueError):
    """A tokenizer folder this port cannot read the way the official code does (named in the message)."""


def _token(value) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


class GemmaTokenizer:
    """`tokenizer(prompts) -> (ids [B, 1024] int32, mask [B, 1024] int32)`, left padded, as ltx-core tokenizes."""

    def __init__(self, folder: str | os.PathLike, max_length: int = MAX_LENGTH):
        try:
            from tokenizers import Tokenizer, processors
        except ImportError as e:  # a declared dependency; say so rather than fail obscurely
            raise TokenizerError("the `tokenizers` package is required for Gemma tokenization") from e
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            other = " (a tokenizer.model is there, but this port reads tokenizer.json, as transformers does)" \
                if (folder / "tokenizer.model").is_file() else ""
            raise TokenizerError(f"{folder}: no tokenizer.json{other}; expected a Hugging Face Gemma-3 folder")
        config = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):  # tokenizer_config wins, as in HF
            if (folder / name).is_file():
                config.update(json.loads((folder / name).read_text()))
        cls = config.get("tokenizer_class")
        if cls is not None and cls not in _GEMMA_CLASSES:
            raise TokenizerError(f"{folder}: tokenizer_class={cls!r} is not a Gemma tokenizer ({_GEMMA_CLASSES})")
        self.tokenizer = Tokenizer.from_file(str(path))
        self.max_length = int(max_length)
        self.bos, self.eos = _token(config.get("bos_token", "<bos>")), _token(config.get("eos_token", "<eos>"))
        self.pad = _token(config.get("pad_token")) or self.eos
        ids = {}
        for role, token in (("bos", self.bos), ("eos", self.eos), ("pad", self.pad)):
            ids[role] = self.tokenizer.token_to_id(token) if token is not None else None
            if token is not None and ids[role] is None:
                raise TokenizerError(f"{path}: {role} token {token!r} is not in the vocabulary")
        self.bos_id, self.eos_id, self.pad_id = ids["bos"], ids["eos"], ids["pad"]
        add_bos, add_eos = bool(config.get("add_bos_token", True)), bool(config.get("add_eos_token", False))
        single = " ".join([f"{self.bos}:0"] * add_bos + ["$A:0"] + [f"{self.eos}:0"] * add_eos)
        pair = single + " " + " ".join([f"{self.bos}:1"] * add_bos + ["$B:1"] + [f"{self.eos}:1"] * add_eos)
        specials = [(t, i) for t, i, used in ((self.bos, self.bos_id, add_bos), (self.eos, self.eos_id, add_eos)) if used]
        self.tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)
        side = config.get("truncation_side", "right")
        if side not in ("left", "right"):
            raise TokenizerError(f"{folder}: truncation_side={side!r}")
        self.tokenizer.enable_truncation(self.max_length, stride=0, strategy="longest_first", direction=side)
        self.tokenizer.enable_padding(direction="left", pad_id=self.pad_id, pad_type_id=0, pad_token=self.pad,
                                      length=self.max_length)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def __call__(self, prompts: str | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask `[B, max_length]` int32 (left padding; an overlong prompt loses its tail)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not all(isinstance(p, str) for p in prompts):
            raise TypeError("prompts must be strings")
        encodings = self.tokenizer.encode_batch([p.strip() for p in prompts])
        ids = np.asarray([e.ids for e in encodings], np.int32).reshape(len(prompts), self.max_length)
        mask = np.asarray([e.attention_mask for e in encodings], np.int32).reshape(len(prompts), self.max_length)
        return ids, mask
