"""Load the DiT and the text embeddings processor: thin calls of the one restore path, and their module
constructors bound to the `transformer` / `text_embeddings` layout entries.

Counterparts: ltx_pipelines `utils/model_ledger.py` and ltx_core `loader/` (SDOps key maps
`LTXV_MODEL_COMFY_RENAMING_MAP`, `EMBEDDINGS_PROCESSOR_KEY_OPS`). The key map lives in
`ltx_jax.checkpoint.layout`; loading is strict both ways (unlike the official `strict=False`).
"""

from __future__ import annotations

from collections.abc import Sequence

from flax import nnx

from ltx_jax.checkpoint.errors import LoadError
from ltx_jax.checkpoint.layout import read_ltx_config
from ltx_jax.checkpoint.open import SourceArg, open_source
from ltx_jax.checkpoint.loader import ShardingsArg, bind, restore
from ltx_jax.configs import ConnectorConfig, LTXConfig, Runtime, TransformerConfig
from ltx_jax.transformer.model import LTXModel
from ltx_jax.transformer.text_embeddings import EmbeddingsProcessor

__all__ = ["LoadError", "read_config", "load_transformer", "load_text_embeddings"]

bind("transformer", lambda config, runtime: LTXModel(config, runtime, rngs=nnx.Rngs(0)))
bind("text_embeddings", lambda config, runtime: EmbeddingsProcessor(config, runtime, rngs=nnx.Rngs(0)))


def read_config(source: SourceArg) -> LTXConfig:
    """The checkpoint's own config (metadata `config` JSON; text depth from the projection's shape)."""
    return read_ltx_config(open_source(source))


def load_transformer(source: SourceArg, runtime: Runtime = Runtime(), *, config: TransformerConfig | None = None,
                     shardings: ShardingsArg = None, loras: Sequence[tuple[str, float]] = ()) -> LTXModel:
    """The DiT from an official file, an ltx-jax checkpoint or a {key: array} mapping (any float dtype in the
    file; cast to runtime.param_dtype). `config` defaults to the file's own; a file of the other variant is
    refused with an error naming both. See `ltx_jax.checkpoint.restore` for `shardings` and `loras`.

    Raises:
        LoadError: wrong variant, missing / unexpected / wrongly shaped keys, stray keys.
    """
    return restore(source, "transformer", runtime=runtime, config=config, shardings=shardings, loras=loras)


def load_text_embeddings(source: SourceArg, runtime: Runtime = Runtime(), *, config: ConnectorConfig | None = None,
                         shardings: ShardingsArg = None) -> EmbeddingsProcessor:
    """Feature extractor + video/audio connectors from the same single file.

    Raises:
        LoadError: the feature extractor of the other variant, missing / unexpected / misshapen keys.
    """
    return restore(source, "text_embeddings", runtime=runtime, config=config, shardings=shardings)
