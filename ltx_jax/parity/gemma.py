"""Parity of the Gemma-3 text path against a Gemma fixture directory (docs/reference-fixtures-gemma.md).

Reads `gemma/` (hub folder), `ltx_text_checkpoint.safetensors`, the prompt texts from `manifest.json` and
compares:

- `tok.<p>.input_ids` / `.attention_mask`: our tokenizer on the prompt text (exact, bound 0), for every prompt
  (including tokenizer-only ones);
- `gemma.<p>.hidden_states` / `.last_layer_prenorm`: our decoder, float32, on the fixture's own tokens, all
  prompts as one batch (different lengths), on valid positions (pad rows are implementation-defined: SDPA and
  eager differ there by ~8, so our values at pads are replaced by the reference's before comparing);
- `ltx.<p>.*`: the whole path from the prompt text (tokenizer -> decoder -> feature extractor -> connectors),
  float32; `ltx_bf16.<p>.*`: the same in bfloat16, loose bounds (bf16 rounding of two different stacks).

Configs come from the folder's config.json and the checkpoint's metadata; nothing here assumes the tiny dims.
Under a mesh (`Fixture.mesh`) the decoder runs its sharded path (restored straight into `gemma_rules(mesh, "fsdp")`,
tokens batch on `data`); the connectors have none and run replicated; the tokenizer is host code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import lru_cache

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.configs import Runtime
from ltx_jax.parity import Check, Fixture
from ltx_jax.parity.mesh import HOST
from ltx_jax.transformer import encode_text

__all__ = ["CHECKS", "NOT_CHECKED", "prompts", "BOUND_F32", "BOUND_PATH", "BOUND_BF16"]

F32 = Runtime(param_dtype="float32", compute_dtype="float32")
BF16 = Runtime(param_dtype="bfloat16", compute_dtype="bfloat16")
BOUND_F32 = 2e-5  # hidden states, float32
BOUND_PATH = 1e-4  # prompt -> connector outputs, float32
BOUND_BF16 = 5e-2  # bf16 vs bf16, max-abs relative: the two stacks round differently (measured <= 2e-2)
CHECKPOINT = "ltx_text_checkpoint.safetensors"


def _is_gemma(fx: Fixture) -> bool:
    return (fx.path / "gemma" / "config.json").is_file() and bool(fx.names(r"^(tok|gemma|ltx|ltx_bf16)\."))


def prompts(fx: Fixture) -> dict[str, str]:
    """{prompt name: text} for every name with `tok.<p>.*` arrays (texts from the manifest)."""
    names = sorted({n.split(".")[1] for n in fx.names(r"^tok\.[^.]+\.input_ids$")})
    table = fx.manifest.get("prompts", {})
    out = {}
    for n in names:
        entry = table.get(n)
        text = entry.get("text") if isinstance(entry, dict) else entry
        if not isinstance(text, str):
            raise ValueError(f"manifest.json has no text for prompt {n!r} (prompts.{n}.text)")
        out[n] = text
    return out


@lru_cache(maxsize=2)
def _encoder(path: str, runtime: Runtime, mesh=None):
    from ltx_jax.text_encoder import gemma_rules, load_gemma, load_text_embeddings_for

    gemma = load_gemma(f"{path}/gemma", runtime, shardings=None if mesh is None else gemma_rules(mesh.mesh, "fsdp"))
    checkpoint = f"{path}/{CHECKPOINT}"
    text = load_text_embeddings_for(gemma, checkpoint, runtime) if os.path.isfile(checkpoint) else None
    if mesh is not None and text is not None:
        text = (text[0], mesh.replicate(text[1]))
    return gemma, text


def _note_hidden(fx: Fixture, gemma, hidden, arrays: str | None = None) -> None:
    if fx.mesh is not None:
        from ltx_jax.parity.mesh import where
        q = gemma.state["layers"]["self_attn"]["q_proj"]["weight"][...]
        fx.mesh.note(f"sharded Gemma decoder (FSDP weights, q_proj {where(q)}; tokens batch on data); "
                     f"hidden states {where(hidden)}", arrays)


_RUNS: dict = {}


def _hidden_and_prenorm(gemma, ids: np.ndarray, mask: np.ndarray, mesh=None):
    """Both from one jitted function, memoized per (encoder, tokens): the hidden-state and whole-path checks
    share one compilation, and one run when our tokens equal the fixture's."""
    from ltx_jax.text_encoder.encoder import with_prenorm_fn

    key = (id(gemma), np.asarray(ids).tobytes(), np.asarray(mask).tobytes())
    if key not in _RUNS:
        _RUNS.clear()
        ids, mask = jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32)
        if mesh is not None:
            ids, mask = mesh.batch(ids), mesh.batch(mask)
        _RUNS[key] = with_prenorm_fn(gemma.graphdef, gemma.state, ids, mask)
    return _RUNS[key]


def _valid_only(ours: np.ndarray, ref: np.ndarray, mask: np.ndarray, axis: int) -> np.ndarray:
    """`ours` with the reference's values at pad positions (sequence axis `axis`, mask `[T]`)."""
    shape = [1] * ref.ndim
    shape[axis] = mask.shape[0]
    return np.where(mask.astype(bool).reshape(shape), ours, ref)


def _run_tokens(fx: Fixture) -> Iterator[tuple[str, np.ndarray, float]]:
    gemma, _ = _encoder(str(fx.path), F32, fx.mesh)
    if fx.mesh is not None:
        fx.mesh.note(HOST)
    texts = prompts(fx)
    ids, mask = gemma.tokenize(list(texts.values()))
    for i, name in enumerate(texts):
        yield f"tok.{name}.input_ids", ids[i:i + 1], 0.0
        yield f"tok.{name}.attention_mask", mask[i:i + 1], 0.0


def _run_hidden(fx: Fixture) -> Iterator[tuple[str, np.ndarray, float]]:
    gemma, _ = _encoder(str(fx.path), F32, fx.mesh)
    names = [n for n in prompts(fx) if f"gemma.{n}.hidden_states" in fx or f"gemma.{n}.last_layer_prenorm" in fx]
    ids = np.concatenate([fx[f"tok.{n}.input_ids"] for n in names])
    mask = np.concatenate([fx[f"tok.{n}.attention_mask"] for n in names])
    hidden, prenorm = _hidden_and_prenorm(gemma, ids, mask, fx.mesh)  # [L+1, B, T, H], all prompts in one batch
    _note_hidden(fx, gemma, hidden)
    hidden, prenorm = np.asarray(hidden), np.asarray(prenorm)
    for i, n in enumerate(names):
        if f"gemma.{n}.hidden_states" in fx:
            ref = fx[f"gemma.{n}.hidden_states"]
            yield f"gemma.{n}.hidden_states", _valid_only(hidden[:, i:i + 1], ref, mask[i], 2), BOUND_F32
        if f"gemma.{n}.last_layer_prenorm" in fx:
            ref = fx[f"gemma.{n}.last_layer_prenorm"]
            yield f"gemma.{n}.last_layer_prenorm", _valid_only(prenorm[i:i + 1], ref, mask[i], 1), BOUND_F32


def _run_path(fx: Fixture, runtime: Runtime, prefix: str, bound_hidden: float, bound_out: float):
    gemma, text = _encoder(str(fx.path), runtime, fx.mesh)
    if text is None:
        raise FileNotFoundError(f"{fx.path / CHECKPOINT} is missing")
    texts = {n: t for n, t in prompts(fx).items() if fx.names(rf"^{re.escape(prefix)}\.{re.escape(n)}\.")}
    ids, mask = gemma.tokenize(list(texts.values()))
    hidden = _hidden_and_prenorm(gemma, ids, mask, fx.mesh)[0]  # [L+1, B, T, H]
    _note_hidden(fx, gemma, hidden, r"\.hidden_states$")
    stacked = jnp.moveaxis(hidden, 0, -1)
    graphdef, state = text
    processor = nnx.merge(graphdef, state)
    features = processor.feature_extractor(stacked.astype(processor.compute_dtype), jnp.asarray(mask))
    video, audio = encode_text(graphdef, state, stacked, jnp.asarray(mask))
    if fx.mesh is not None:
        fx.mesh.note(fx.mesh.replicated("the text connector", video))
        fx.mesh.note(HOST, r"\.(binary|additive)_mask$")
    hidden = np.asarray(hidden.astype(jnp.float32))
    for i, n in enumerate(texts):
        got = {"hidden_states": (_valid_only(hidden[:, i:i + 1], fx[f"{prefix}.{n}.hidden_states"], mask[i], 2)
                                 if f"{prefix}.{n}.hidden_states" in fx else None, bound_hidden),
               "video_features": (features[0][i:i + 1], bound_hidden), "audio_features": (features[1][i:i + 1], bound_hidden),
               "video_encoding": (video[i:i + 1], bound_out), "audio_encoding": (audio[i:i + 1], bound_out),
               "binary_mask": (np.ones((1, mask.shape[1]), np.int64), 0.0),
               "additive_mask": ((mask[i:i + 1].astype(np.float32) - 1).reshape(1, 1, 1, -1)
                                 * np.finfo(np.float32).max, 0.0)}
        for key, (ours, bound) in got.items():
            if f"{prefix}.{n}.{key}" in fx and ours is not None:
                yield f"{prefix}.{n}.{key}", np.asarray(jnp.asarray(ours, jnp.float32)), bound


CHECKS = [
    Check("gemma_tokenizer", _is_gemma, _run_tokens, covers=r"^tok\."),
    Check("gemma_hidden_states", _is_gemma, _run_hidden, covers=r"^gemma\."),
    Check("gemma_text_path", lambda fx: _is_gemma(fx) and bool(fx.names(r"^ltx\.")),
          lambda fx: _run_path(fx, F32, "ltx", BOUND_F32, BOUND_PATH), covers=r"^ltx\."),
    Check("gemma_text_path_bf16", lambda fx: _is_gemma(fx) and bool(fx.names(r"^ltx_bf16\.")),
          lambda fx: _run_path(fx, BF16, "ltx_bf16", BOUND_BF16, BOUND_BF16), covers=r"^ltx_bf16\."),
]
NOT_CHECKED: list[tuple[str, str]] = []
