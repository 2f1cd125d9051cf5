"""Imports of the official code, in the order ltx-core 1.0.0 needs, and the Gemma-width patch.

`ltx_core.loader` must be imported before `ltx_core.quantization` (circular import in 1.0.0).
"""

import contextlib
from collections.abc import Iterator

import ltx_core.loader  # noqa: F401  (must precede ltx_core.quantization)
import ltx_core.quantization  # noqa: F401
from ltx_core.text_encoders.gemma.config import GEMMA3_CONFIG_FOR_LTX

# The real Gemma-3-12B text width and hidden-state count hard-coded in ltx-core's feature extractor.
REAL_GEMMA_HIDDEN_SIZE = GEMMA3_CONFIG_FOR_LTX.text_config.hidden_size  # 3840
REAL_GEMMA_NUM_HIDDEN_LAYERS = GEMMA3_CONFIG_FOR_LTX.text_config.num_hidden_layers  # 48 (+1 embedding = 49 states)


@contextlib.contextmanager
def gemma_width(hidden_size: int | None, num_hidden_layers: int | None) -> Iterator[None]:
    """Temporarily shrink the module-level Gemma config that sizes the feature extractor.

    `_create_feature_extractor` reads `GEMMA3_CONFIG_FOR_LTX.text_config.{hidden_size,num_hidden_layers}`
    when the embeddings processor is built (the aggregate_embed input width is hidden_size * (layers + 1)).
    The object is mutated in place and restored on exit, so nothing outside the `with` sees the change.
    `None` keeps the real value.
    """
    tc = GEMMA3_CONFIG_FOR_LTX.text_config
    saved = (tc.hidden_size, tc.num_hidden_layers)
    try:
        if hidden_size is not None:
            tc.hidden_size = int(hidden_size)
        if num_hidden_layers is not None:
            tc.num_hidden_layers = int(num_hidden_layers)
        yield
    finally:
        tc.hidden_size, tc.num_hidden_layers = saved


def package_versions() -> dict[str, str]:
    import importlib.metadata as md
    import platform

    import torch

    out = {"python": platform.python_version(), "torch_cuda": str(torch.version.cuda)}
    for name in ("torch", "ltx-core", "ltx-pipelines", "transformers", "safetensors", "numpy", "einops"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out
