"""A Hugging Face Gemma-3 folder as a `Source`: config, weight files (single or sharded), every key owned.

Counterparts: ltx_core `text_encoders/gemma/encoders/encoder_configurator.py` (`GEMMA_LLM_KEY_OPS`, loaded with
strict=False) and ltx_pipelines `utils/model_ledger.py` (every `*.safetensors` of the weights folder). Unlike
ltx-core, the folder's own `config.json` is read (ltx-core builds its built-in 12B config), and nothing is
ignored silently: every file key is a text-decoder key (the `gemma_text` layout entry, matched strictly by
`loader.restore`) or belongs to a listed other component (the vision tower, the multimodal projector, a tied
`lm_head`); any other key is an error at open time.

Key layouts: the released `Gemma3ForConditionalGeneration` files (`language_model.model.*`), transformers 4.5x
state dicts (`model.language_model.*`) and text-only `Gemma3ForCausalLM` files (`model.*`). The source presents
the language model under the released spelling, `language_model.model.*`, whatever the file used.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
from ltx_jax.checkpoint.source import Index, SafetensorsSource, Source, TensorSpec
from ltx_jax.configs.base import ConfigError
from ltx_jax.configs.gemma import GemmaConfig

__all__ = ["GemmaFolder", "GemmaFolderError", "LANGUAGE_PREFIX", "LANGUAGE_PREFIXES", "OTHER_COMPONENTS"]

LANGUAGE_PREFIX = "language_model.model."  # the released spelling; the `gemma_text` layout entry's prefix
LANGUAGE_PREFIXES = ("language_model.model.", "model.language_model.", "model.")
# File-key prefixes of the parts of a Gemma-3 checkpoint that text encoding does not use.
OTHER_COMPONENTS = {"vision_tower": ("vision_tower.", "model.vision_tower."),
                    "multi_modal_projector": ("multi_modal_projector.", "model.multi_modal_projector."),
                    "lm_head (tied to embed_tokens)": ("lm_head.", "language_model.lm_head.")}


class GemmaFolderError(ValueError):
    """Not a Gemma-3 hub folder this port can read (the message names the file and the problem)."""


class GemmaFolder(Source):
    """A hub folder: `config` (GemmaConfig), its weight files, and `other` ({other component: keys}). Opening
    reads the JSON files and the safetensors headers only."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.is_dir():
            raise GemmaFolderError(f"{self.path}: not a folder (expected a Hugging Face Gemma-3 folder)")
        cfg_path = self.path / "config.json"
        if not cfg_path.is_file():
            raise GemmaFolderError(f"{self.path}: no config.json; expected a Hugging Face Gemma-3 folder")
        try:
            self.config = GemmaConfig.from_hf(json.loads(cfg_path.read_text()))
        except ConfigError as e:
            raise ConfigError(f"{cfg_path}: {e}") from None
        self.metadata = {}
        self._shards = [SafetensorsSource(SafetensorsFile(p)) for p in self.weight_files()]
        owner: dict[str, SafetensorsSource] = {}
        for shard in self._shards:
            for key in shard.specs():
                if key in owner:
                    raise GemmaFolderError(f"{self.path}: key {key!r} is in both {owner[key].file.path.name} and "
                                           f"{shard.file.path.name}")
                owner[key] = shard
        self._check_index(owner)
        self.other = {name: sorted(k for k in owner if k.startswith(prefixes))
                      for name, prefixes in OTHER_COMPONENTS.items()}
        self.other = {k: v for k, v in self.other.items() if v}
        owned = {k for keys in self.other.values() for k in keys}
        prefix = next((p for p in LANGUAGE_PREFIXES if any(k.startswith(p + "embed_tokens.") for k in owner)), None)
        if prefix is None:
            raise GemmaFolderError(f"{self.path}: no embed_tokens weight under any of {LANGUAGE_PREFIXES}; not a "
                                   "Gemma-3 checkpoint")
        stray = sorted(k for k in owner if k not in owned and not k.startswith(prefix))
        if stray:
            raise GemmaFolderError(f"{self.path}: {len(stray)} keys belong to no Gemma-3 component: {stray[:8]}")
        # file key -> (presented key); the language model under the released spelling.
        self._keys = {(LANGUAGE_PREFIX + k[len(prefix):] if k not in owned else k): (k, owner[k]) for k in owner}
        self._specs = {key: shard.specs()[k] for key, (k, shard) in self._keys.items()}

    def weight_files(self) -> list[Path]:
        """The safetensors files: from `model.safetensors.index.json` when present, else `model*.safetensors`."""
        index = self.path / "model.safetensors.index.json"
        if index.is_file():
            names = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
            missing = [n for n in names if not (self.path / n).is_file()]
            if not names or missing:
                raise GemmaFolderError(f"{index}: " + (f"shards {missing} are missing" if missing else "empty weight_map"))
            return [self.path / n for n in names]
        found = sorted(self.path.glob("model*.safetensors"))
        if not found:
            pickles = sorted(p.name for p in self.path.glob("*.bin"))
            raise GemmaFolderError(f"{self.path}: no model*.safetensors" + (f" (pickled {pickles} are not read)"
                                                                             if pickles else ""))
        return found

    def _check_index(self, owner: Mapping[str, SafetensorsSource]) -> None:
        index = self.path / "model.safetensors.index.json"
        if not index.is_file():
            return
        weight_map = json.loads(index.read_text())["weight_map"]
        wrong = sorted(k for k, name in weight_map.items() if k not in owner or owner[k].file.path.name != name)
        extra = sorted(set(owner) - set(weight_map))
        if wrong or extra:
            raise GemmaFolderError(f"{index}: does not match the shards (index keys absent or elsewhere: {wrong[:5]}; "
                                   f"shard keys not indexed: {extra[:5]})")

    def specs(self) -> Mapping[str, TensorSpec]:
        return self._specs

    def read(self, key: str, index: Index | None = None) -> np.ndarray:
        k, shard = self._keys[key]
        return shard.read(k, index)

    def files(self) -> list[Path]:
        return [s.file.path for s in self._shards]

    def fingerprint(self) -> str:
        """sha256 over config/tokenizer files (content) and each weight file (header, size, mtime): a cache key that
        changes when any file is replaced, without reading gigabytes."""
        h = hashlib.sha256()
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                     "model.safetensors.index.json"):
            p = self.path / name
            h.update(name.encode() + (p.read_bytes() if p.is_file() else b"<absent>"))
        for f in sorted(self.files()):
            st = f.stat()
            with open(f, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                h.update(f.name.encode() + fh.read(n) + f"{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()

    def close(self) -> None:
        for shard in self._shards:
            shard.close()
