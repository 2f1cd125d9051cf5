"""The Gemma-3 text decoder restored from a Hugging Face folder through the one restore path.

Counterpart: the ledger's `text_encoder()` in ltx_pipelines (`Builder` with `GEMMA_LLM_KEY_OPS`). The folder is a
`ltx_jax.checkpoint.GemmaFolder` source; its `gemma_text` layout entry is bound to `Gemma3TextModel` here.
"""

from __future__ import annotations

from flax import nnx

from ltx_jax.checkpoint.gemma_folder import GemmaFolder
from ltx_jax.checkpoint.loader import ShardingsArg, bind, restore_state
from ltx_jax.configs import Runtime
from ltx_jax.text_encoder.model import Gemma3TextModel

__all__ = ["restore_gemma"]

bind("gemma_text", lambda config, runtime: Gemma3TextModel(config, runtime, rngs=nnx.Rngs(0)))


def restore_gemma(folder: GemmaFolder, runtime: Runtime = Runtime(),
                  shardings: ShardingsArg = None) -> tuple[nnx.GraphDef, nnx.State]:
    """`nnx.split` of the text decoder, each parameter created in its sharding from its own region of the files.

    Args:
        folder: an open `GemmaFolder`.
        runtime: parameter / compute dtypes (file values are cast to the parameter dtype).
        shardings: None (first device), a `ShardingRules` (`gemma_rules(mesh, ...)`) or any form `restore` takes;
            stacked layer parameters have the layer axis first.

    Raises:
        LoadError: decoder keys missing from the files, language-model keys the decoder lacks, wrong shapes.
    """
    return restore_state(folder, "gemma_text", runtime=runtime, shardings=shardings, config=folder.config)
