"""Prompts -> DiT contexts in one batch: tokenizer, Gemma, feature extractor and connectors, with a disk cache.

Counterpart: ltx_pipelines `utils/helpers.py` (`encode_prompts`: the text encoder on each prompt, the encoder
freed, then `EmbeddingsProcessor.process_hidden_states` per prompt). Here every uncached prompt (e.g. the prompt
and the negative prompt) goes through Gemma and the connectors as one batch, with the tokenizer's padding mask
carried into the feature extractor and connectors.

Cache: one `.npz` per prompt under `cache_dir`, named by sha256 of (Gemma folder fingerprint, a digest of the
connector weights, the prompt, the dtypes, the text length). A repeated run loads the contexts and never runs
Gemma. Files are written atomically (temporary name, then rename).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.configs import Runtime, from_metadata
from ltx_jax.convert.loading import LoadError
from ltx_jax.convert.safetensors_file import SafetensorsFile
from ltx_jax.text_encoder.encoder import GemmaEncoder
from ltx_jax.transformer import encode_text, load_text_embeddings

__all__ = ["encode_prompts", "write_prompt_file", "text_digest", "negative_prompt", "load_text_embeddings_for"]


def load_text_embeddings_for(gemma: GemmaEncoder, checkpoint: str | os.PathLike,
                             runtime: Runtime = Runtime()) -> tuple[nnx.GraphDef, nnx.State]:
    """The checkpoint's feature extractor + connectors sized for this Gemma (width x number of hidden states).

    Raises:
        LoadError: the checkpoint's text projection does not take this Gemma's `hidden x (L+1)` features.
    """
    f = SafetensorsFile(checkpoint)
    try:
        connector = from_metadata(f.metadata).connector
        connector = dataclasses.replace(connector, text_hidden_size=gemma.config.hidden_size,
                                        text_num_hidden_states=gemma.num_hidden_states)
        name = "aggregate_embed" if connector.feature_extractor == "v1" else "video_aggregate_embed"
        key = f"text_embedding_projection.{name}.weight"
        width = gemma.config.hidden_size * gemma.num_hidden_states
        if key in f and f.info(key).shape[1] != width:
            raise LoadError(f"{checkpoint}: {key} takes {f.info(key).shape[1]} features; this Gemma gives "
                            f"{gemma.config.hidden_size} x {gemma.num_hidden_states} = {width} (another text encoder?)")
        return nnx.split(load_text_embeddings(f, runtime, config=connector))
    finally:
        f.close()


def negative_prompt() -> str:
    """The official default negative prompt (ltx_pipelines' DEFAULT_NEGATIVE_PROMPT), kept as package data."""
    return (Path(__file__).resolve().parents[1] / "data" / "negative_prompt.txt").read_text().strip()


def _split(text_embeddings) -> tuple[nnx.GraphDef, nnx.State]:
    return tuple(text_embeddings) if isinstance(text_embeddings, tuple) else nnx.split(text_embeddings)


@jax.jit
def _moments(arrays: list[jax.Array]) -> list[tuple[jax.Array, jax.Array]]:
    return [(jnp.sum(x.astype(jnp.float32)), jnp.sum(jnp.abs(x.astype(jnp.float32)))) for x in arrays]


def text_digest(text_embeddings) -> str:
    """A digest of the connector weights (shapes, dtypes, sums and absolute sums per array) for cache keys."""
    _, state = _split(text_embeddings)
    flat = list(nnx.to_flat_state(state))
    h = hashlib.sha256()
    for (path, var), (s, a) in zip(flat, _moments([v.get_value() for _, v in flat]), strict=True):
        h.update(f"{path}{tuple(var.shape)}{var.dtype}{float(s)!r}{float(a)!r}".encode())
    return h.hexdigest()


def _key(gemma: GemmaEncoder, digest: str, prompt: str) -> str:
    h = hashlib.sha256()
    for part in (gemma.fingerprint, digest, gemma.runtime.param_dtype, gemma.runtime.compute_dtype,
                 str(gemma.tokenizer.max_length), prompt):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def _save_atomic(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _store(path: Path, entry: tuple[jax.Array, jax.Array, jax.Array]) -> None:
    """One cache entry; floats as float32 (npz has no bfloat16; bf16 values are exact in float32) + their dtype."""
    video, audio, mask = entry
    _save_atomic(path, video_context=np.asarray(jnp.asarray(video, jnp.float32)),
                 audio_context=np.asarray(jnp.asarray(audio, jnp.float32)), mask=np.asarray(mask),
                 dtype=np.asarray(str(jnp.dtype(video.dtype))))


def _load(path: Path) -> tuple[jax.Array, jax.Array, jax.Array]:
    with np.load(path) as z:
        dtype = jnp.dtype(str(z["dtype"]))
        return (jnp.asarray(z["video_context"], dtype), jnp.asarray(z["audio_context"], dtype),
                jnp.asarray(z["mask"]))


def encode_prompts(gemma: GemmaEncoder, text_embeddings, prompts: Sequence[str], *,
                   cache_dir: str | os.PathLike | None = None) -> list[tuple[jax.Array, jax.Array, jax.Array]]:
    """Contexts for each prompt: `[(video_context [1, T, Dv], audio_context [1, T, Da], mask [1, T])]`.

    Args:
        gemma: from `load_gemma` (not needed when every prompt is cached; it may have been freed then).
        text_embeddings: the checkpoint's `EmbeddingsProcessor` (module or `nnx.split` pair), e.g.
            `load_text_embeddings(ckpt, runtime)`.
        prompts: strings; all uncached ones run as one batch (T = 1024).
        cache_dir: where to keep / find per-prompt results (None: no cache).

    Returns:
        One tuple per prompt, in order. `mask` is the connectors' output mask: all ones, since the registers
        replace the padding (ltx-core's `binary_mask`).
    """
    prompts = list(prompts)
    graphdef, state = _split(text_embeddings)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    paths = [None] * len(prompts)
    if cache is not None:
        digest = text_digest((graphdef, state))
        paths = [cache / f"{_key(gemma, digest, p)}.npz" for p in prompts]
    results: list = [(_load(p) if p is not None and p.is_file() else None) for p in paths]
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        ids, mask = gemma.tokenize([prompts[i] for i in todo])
        hidden = gemma.hidden_states(ids, mask)  # [L+1, B, T, H]
        stacked = jnp.moveaxis(hidden, 0, -1)  # [B, T, H, L+1], the connectors' layout
        video, audio = encode_text(graphdef, state, stacked, jnp.asarray(mask))
        ones = jnp.ones(mask.shape, jnp.int32)
        for j, i in enumerate(todo):
            results[i] = (video[j:j + 1], audio[j:j + 1], ones[j:j + 1])
            if paths[i] is not None:
                _store(paths[i], results[i])
    return results


def write_prompt_file(path: str | os.PathLike, positive: tuple[jax.Array, jax.Array, jax.Array],
                      negative: tuple[jax.Array, jax.Array, jax.Array] | None = None) -> Path:
    """A prompt `.npz` that `ltx-jax generate --prompt FILE` / `pipelines.load_prompt` reads:
    `video_context`, `audio_context` (+ `negative_video_context`, `negative_audio_context`). Written atomically.

    bf16 contexts are stored as float32 (npz has no bfloat16); the pipelines cast them back to the model dtype.
    """
    arrays = {"video_context": positive[0], "audio_context": positive[1]}
    if negative is not None:
        arrays.update(negative_video_context=negative[0], negative_audio_context=negative[1])
    path = Path(path)
    _save_atomic(path, **{k: np.asarray(jnp.asarray(v, jnp.float32)) for k, v in arrays.items()})
    return path
