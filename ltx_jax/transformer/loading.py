"""Load the DiT and the text embeddings processor from the official single-file checkpoint.

Counterparts: ltx_pipelines `utils/model_ledger.py` and ltx_core `loader/` (SDOps key maps
`LTXV_MODEL_COMFY_RENAMING_MAP`, `EMBEDDINGS_PROCESSOR_KEY_OPS`). Unlike the official loader
(`strict=False`), loading here is strict both ways: every module parameter is filled and shape-checked,
and every file key is consumed or belongs to a named other component.

Key map (file -> module), the only renames there are:
  * `model.diffusion_model.<k>` -> `LTXModel.<k>`, except the two connector prefixes below;
    `transformer_blocks.{i}.<k>` -> `transformer_blocks.<k>[i]` (stacked; `convert.loading` rule 1).
  * `text_embedding_projection.<k>` -> `EmbeddingsProcessor.feature_extractor.<k>`.
  * `model.diffusion_model.{video,audio}_embeddings_connector.<k>` -> `{video,audio}_connector.<k>`
    (`transformer_1d_blocks.{i}` stacked the same way).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

import numpy as np
from flax import nnx

from ltx_jax.configs import ConnectorConfig, LTXConfig, Runtime, TransformerConfig, from_metadata
from ltx_jax.convert.loading import LoadError, load_module
from ltx_jax.convert.safetensors_file import SafetensorsFile
from ltx_jax.convert.schema import CONNECTOR_PREFIXES, TEXT_PROJECTION_PREFIX, TRANSFORMER_PREFIX
from ltx_jax.transformer.model import LTXModel
from ltx_jax.transformer.text_embeddings import EmbeddingsProcessor

__all__ = ["LoadError", "read_config", "load_transformer", "load_text_embeddings", "OTHER_COMPONENT_PREFIXES"]

# Keys of the single file that belong to components loaded elsewhere (VAEs, vocoder).
OTHER_COMPONENT_PREFIXES = ("vae.", "audio_vae.", "vocoder.")
_TEXT_PREFIXES = (TEXT_PROJECTION_PREFIX, *CONNECTOR_PREFIXES.values())

Source = str | os.PathLike | Mapping[str, np.ndarray]


def _open(source: Source) -> tuple[Mapping[str, np.ndarray], str]:
    if isinstance(source, Mapping):
        return source, getattr(source, "path", "<tensors>").__str__()
    return SafetensorsFile(source), str(source)


def read_config(source: Source) -> LTXConfig:
    """The checkpoint's own config (metadata `config` JSON; text depth from the projection's shape)."""
    tensors, name = _open(source)
    metadata = getattr(tensors, "metadata", None)
    if metadata is None:
        raise LoadError(f"{name}: no safetensors metadata to read the config from; pass a config")
    shapes = {k: tuple(tensors.info(k).shape) if hasattr(tensors, "info") else tuple(tensors[k].shape)
              for k in tensors if k.startswith(TEXT_PROJECTION_PREFIX)}
    return from_metadata(metadata, tensor_shapes=shapes)


def _layout(present: set[str]) -> str:
    return "LTX-2.3" if "prompt_adaln_single" in present else "LTX-2" if "caption_projection" in present else "unknown"


def _check_variant(config: TransformerConfig, keys: set[str], name: str) -> None:
    """Compare the variant-defining modules the config asks for with those the file has."""
    blocks0 = f"{TRANSFORMER_PREFIX}transformer_blocks.0."
    features = {  # name: (in the file, wanted by the config)
        "caption_projection": (f"{TRANSFORMER_PREFIX}caption_projection.linear_1.weight" in keys,
                               config.has_caption_projection),
        "prompt_adaln_single": (f"{TRANSFORMER_PREFIX}prompt_adaln_single.linear.weight" in keys,
                                config.cross_attention_adaln),
        "to_gate_logits": (f"{blocks0}attn1.to_gate_logits.weight" in keys, config.apply_gated_attention),
    }
    if not any(k.startswith(TRANSFORMER_PREFIX + "transformer_blocks.") for k in keys):
        raise LoadError(f"{name}: no transformer keys ({TRANSFORMER_PREFIX}transformer_blocks.*): not an LTX-2 "
                        "DiT checkpoint")
    wrong = {k: v for k, v in features.items() if v[0] != v[1]}
    if wrong:
        present = {k for k, (has, _) in features.items() if has}
        wanted = {k for k, (_, want) in features.items() if want}
        raise LoadError(
            f"{name}: checkpoint is an {_layout(present)} layout (has {sorted(present) or 'none'} of caption_projection/"
            f"prompt_adaln_single/to_gate_logits) but the config is {_layout(wanted)} (wants {sorted(wanted) or 'none'});"
            " wrong variant for this config")


def _check_rest(keys: set[str], name: str) -> None:
    known = (TRANSFORMER_PREFIX, TEXT_PROJECTION_PREFIX, *OTHER_COMPONENT_PREFIXES)
    stray = sorted(k for k in keys if not k.startswith(known))
    if stray:
        raise LoadError(f"{name}: {len(stray)} keys belong to no known component: {', '.join(stray[:8])}"
                        + (" ..." if len(stray) > 8 else ""))


def load_transformer(source: Source, runtime: Runtime = Runtime(), *,
                     config: TransformerConfig | None = None) -> LTXModel:
    """The DiT from an official single-file checkpoint (any float dtype in the file; cast to runtime.param_dtype).

    Args:
        source: a file path, or a {file key: array} mapping (then `config` is required unless it is
            a `SafetensorsFile`).
        runtime: dtypes and attention kernel.
        config: expected architecture; default: the file's own metadata. A file of the other variant
            is refused with an error naming both.

    Raises:
        LoadError: wrong variant, missing / unexpected / wrongly shaped keys, stray keys.
    """
    tensors, name = _open(source)
    if config is None:
        config = read_config(tensors).transformer
    keys = set(tensors)
    _check_variant(config, keys, name)
    _check_rest(keys, name)
    return load_module(lambda: LTXModel(config, runtime, rngs=nnx.Rngs(0)), tensors, prefix=TRANSFORMER_PREFIX,
                       stacked=("transformer_blocks",), ignore=lambda k: k.startswith(_TEXT_PREFIXES), source=name)


class _TextView(Mapping):
    """The file's text-side tensors under `EmbeddingsProcessor` module paths (see the module docstring)."""

    _RENAMES = ((TEXT_PROJECTION_PREFIX, "feature_extractor."),
                (CONNECTOR_PREFIXES["video"], "video_connector."), (CONNECTOR_PREFIXES["audio"], "audio_connector."))

    def __init__(self, tensors: Mapping[str, np.ndarray]):
        self.tensors, self.names = tensors, {}
        for key in tensors:
            for old, new in self._RENAMES:
                if key.startswith(old):
                    self.names[new + key[len(old):]] = key

    def __getitem__(self, key: str) -> np.ndarray:
        return self.tensors[self.names[key]]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def load_text_embeddings(source: Source, runtime: Runtime = Runtime(), *,
                         config: ConnectorConfig | None = None) -> EmbeddingsProcessor:
    """Feature extractor + video/audio connectors from the same single file.

    Args:
        source: file path or {file key: array} mapping.
        config: default: the file's metadata, with the text depth read from the projection's shape.

    Raises:
        LoadError: the feature extractor of the other variant, missing / unexpected / misshapen keys.
    """
    tensors, name = _open(source)
    if config is None:
        config = read_config(tensors).connector
    v1 = f"{TEXT_PROJECTION_PREFIX}aggregate_embed.weight" in tensors
    v2 = f"{TEXT_PROJECTION_PREFIX}video_aggregate_embed.weight" in tensors
    have = "v1 (LTX-2)" if v1 else "v2 (LTX-2.3)" if v2 else None
    want = "v1 (LTX-2)" if config.feature_extractor == "v1" else "v2 (LTX-2.3)"
    if have is None:
        raise LoadError(f"{name}: no text projection ({TEXT_PROJECTION_PREFIX}*aggregate_embed): the file holds no "
                        "text embeddings processor")
    if have != want:
        raise LoadError(f"{name}: checkpoint has feature extractor {have} but the config wants {want}; "
                        "wrong variant for this config")
    return load_module(lambda: EmbeddingsProcessor(config, runtime, rngs=nnx.Rngs(0)), _TextView(tensors),
                       stacked=("video_connector.transformer_1d_blocks", "audio_connector.transformer_1d_blocks"),
                       source=name)

