"""Reading a Hugging Face Gemma-3 folder: config, weight files (single or sharded), strict key coverage, and
a restore of the text decoder straight into its sharding.

Counterparts: ltx_core `text_encoders/gemma/encoders/encoder_configurator.py` (`GEMMA_LLM_KEY_OPS`, loaded with
strict=False) and ltx_pipelines `utils/model_ledger.py` (every `*.safetensors` of the weights folder). Unlike
ltx-core, the folder's own `config.json` is read (ltx-core builds its built-in 12B config), and the match is
strict both ways: every decoder parameter must be in the files, and every file key must be a decoder key or
belong to a listed other component (the vision tower, the multimodal projector, a tied `lm_head`).

Key layouts: the released `Gemma3ForConditionalGeneration` files (`language_model.model.*`), transformers 4.5x
state dicts (`model.language_model.*`) and text-only `Gemma3ForCausalLM` files (`model.*`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from jax.sharding import SingleDeviceSharding

from ltx_jax.configs import Runtime
from ltx_jax.configs.base import ConfigError
from ltx_jax.configs.gemma import GemmaConfig
from ltx_jax.convert.loading import LoadError, module_keys
from ltx_jax.convert.safetensors_file import SafetensorsFile
from ltx_jax.text_encoder.model import Gemma3TextModel

__all__ = ["GemmaFolder", "GemmaFolderError", "restore_gemma", "LANGUAGE_PREFIXES", "OTHER_COMPONENTS"]

LANGUAGE_PREFIXES = ("language_model.model.", "model.language_model.", "model.")
# File-key prefixes of the parts of a Gemma-3 checkpoint that text encoding does not use.
OTHER_COMPONENTS = {"vision_tower": ("vision_tower.", "model.vision_tower."),
                    "multi_modal_projector": ("multi_modal_projector.", "model.multi_modal_projector."),
                    "lm_head (tied to embed_tokens)": ("lm_head.", "language_model.lm_head.")}
_STACKED = ("layers",)


class GemmaFolderError(ValueError):
    """Not a Gemma-3 hub folder this port can read (the message names the file and the problem)."""


@dataclass
class GemmaFolder:
    """A hub folder: its config, weight files and the owner of every file key. Opening reads headers only."""

    path: Path
    config: GemmaConfig = field(init=False)
    files: dict[str, SafetensorsFile] = field(init=False)  # file key -> the open file holding it
    prefix: str = field(init=False)  # the language model's key prefix
    other: dict[str, list[str]] = field(init=False)  # other component -> its keys

    def __post_init__(self):
        self.path = Path(self.path)
        if not self.path.is_dir():
            raise GemmaFolderError(f"{self.path}: not a folder (expected a Hugging Face Gemma-3 folder)")
        cfg_path = self.path / "config.json"
        if not cfg_path.is_file():
            raise GemmaFolderError(f"{self.path}: no config.json; expected a Hugging Face Gemma-3 folder")
        try:
            self.config = GemmaConfig.from_hf(json.loads(cfg_path.read_text()))
        except ConfigError as e:
            raise ConfigError(f"{cfg_path}: {e}") from None
        self.files = {}
        for weights in self.weight_files():
            f = SafetensorsFile(weights)
            for key in f:
                if key in self.files:
                    raise GemmaFolderError(f"{self.path}: key {key!r} is in both {self.files[key].path.name} and "
                                           f"{weights.name}")
                self.files[key] = f
        self._check_index()
        self.prefix = next((p for p in LANGUAGE_PREFIXES if any(k.startswith(p + "embed_tokens.") for k in self.files)),
                           None)
        if self.prefix is None:
            raise GemmaFolderError(f"{self.path}: no embed_tokens weight under any of {LANGUAGE_PREFIXES}; not a Gemma-3 "
                                   "checkpoint")
        self.other = {name: sorted(k for k in self.files if k.startswith(prefixes)) for name, prefixes
                      in OTHER_COMPONENTS.items()}
        self.other = {k: v for k, v in self.other.items() if v}

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

    def _check_index(self) -> None:
        index = self.path / "model.safetensors.index.json"
        if not index.is_file():
            return
        weight_map = json.loads(index.read_text())["weight_map"]
        wrong = sorted(k for k, name in weight_map.items() if k not in self.files or self.files[k].path.name != name)
        extra = sorted(set(self.files) - set(weight_map))
        if wrong or extra:
            raise GemmaFolderError(f"{index}: does not match the shards (index keys absent or elsewhere: {wrong[:5]}; "
                                   f"shard keys not indexed: {extra[:5]})")

    def read(self, key: str, index: tuple[slice, ...] | None = None) -> np.ndarray:
        f = self.files[key]
        return f.read_slice(key, index) if index is not None else np.array(f[key])

    def fingerprint(self) -> str:
        """sha256 over config/tokenizer files (content) and each weight file (header, size, mtime): a cache key that
        changes when any file is replaced, without reading gigabytes."""
        h = hashlib.sha256()
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                     "model.safetensors.index.json"):
            p = self.path / name
            h.update(name.encode() + (p.read_bytes() if p.is_file() else b"<absent>"))
        for f in sorted({f.path for f in self.files.values()}):
            st = f.stat()
            with open(f, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                h.update(f.name.encode() + fh.read(n) + f"{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()

    def close(self) -> None:
        for f in {id(f): f for f in self.files.values()}.values():
            f.close()

    def plan(self, state: nnx.State) -> dict[tuple, tuple[list[str], bool, tuple[int, ...]]]:
        """{module path: (file keys, stacked, shape)}, strict both ways.

        Raises:
            LoadError: decoder keys missing from the files, file keys no component owns, or shapes that differ.
        """
        owned = {k for keys in self.other.values() for k in keys}
        available = {k for k in self.files if k.startswith(self.prefix) and k not in owned}
        consumed, missing, wrong, plan = set(), [], [], {}
        for view, (path, shape, layers) in module_keys(state, _STACKED).items():
            keys = [self.prefix + view.format(i=i) for i in range(layers)] if layers else [self.prefix + view]
            want = tuple(shape[1:]) if layers else tuple(shape)
            missing += [k for k in keys if k not in available]
            consumed.update(k for k in keys if k in available)
            wrong += [f"{k}: file {self.files[k].info(k).shape}, model {want}" for k in keys
                      if k in available and tuple(self.files[k].info(k).shape) != want]
            plan[path] = (keys, layers is not None, tuple(shape))
        unexpected = sorted(set(self.files) - consumed - owned)
        if missing or unexpected or wrong:
            parts = [f"{len(i)} {w}: " + ", ".join(i[:8]) + (" ..." if len(i) > 8 else "")
                     for w, i in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if i]
            raise LoadError(f"{self.path}: keys do not match the Gemma-3 text decoder "
                            f"(config.json: {self.config.num_hidden_layers} layers, hidden {self.config.hidden_size}); "
                            + "; ".join(parts))
        return plan


def restore_gemma(folder: GemmaFolder, runtime: Runtime = Runtime(),
                  shardings: Callable[[str, tuple[int, ...]], jax.sharding.Sharding] | None = None
                  ) -> tuple[nnx.GraphDef, nnx.State]:
    """`nnx.split` of the text decoder, each parameter created in its sharding from its own region of the files.

    Args:
        folder: an opened `GemmaFolder`.
        runtime: parameter / compute dtypes (file values are cast to the parameter dtype).
        shardings: (dotted module path, shape) -> Sharding, e.g. a `ShardingRules` from `gemma_rules`; None: the
            first device. Stacked layer parameters have the layer axis first.
    """
    abstract = nnx.eval_shape(lambda: Gemma3TextModel(folder.config, runtime, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    plan = folder.plan(state)
    device = SingleDeviceSharding(jax.devices()[0])
    flat = dict(nnx.to_flat_state(state))
    for path, (keys, stacked, shape) in plan.items():
        var = flat[path]
        dtype = np.dtype(var.dtype)
        dotted = ".".join(str(p) for p in path)

        def read(index, keys=keys, stacked=stacked, shape=shape, dtype=dtype):
            index = tuple(slice(*s.indices(n)[:2]) for s, n in zip(tuple(index) + (slice(None),) * len(shape), shape))
            if not stacked:
                return folder.read(keys[0], index).astype(dtype, copy=False)
            return np.stack([folder.read(keys[i], index[1:]).astype(dtype, copy=False)
                             for i in range(index[0].start, index[0].stop)])

        sharding = shardings(dotted, shape) if shardings is not None else device
        flat[path] = var.replace(jax.make_array_from_callback(shape, sharding, read))
    return graphdef, nnx.from_flat_state(list(flat.items()))
