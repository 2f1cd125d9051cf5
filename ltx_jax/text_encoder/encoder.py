"""The Gemma text encoder as a whole: folder -> tokenizer + sharded decoder, hidden states, freeing, sharding rules.

Counterparts: ltx_core `text_encoders/gemma/encoders/base_encoder.py` (`GemmaTextEncoder.encode`: tokenize, then
`model.model(ids, mask, output_hidden_states=True)`) and the ledger's `text_encoder()` in ltx_pipelines.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, PartitionSpec

from ltx_jax.configs import Runtime
from ltx_jax.configs.gemma import GemmaConfig
from ltx_jax.sharding import ShardingRules
from ltx_jax.text_encoder.loading import GemmaFolder, restore_gemma
from ltx_jax.text_encoder.model import Gemma3TextModel
from ltx_jax.text_encoder.tokenizer import MAX_LENGTH, GemmaTokenizer

__all__ = ["GemmaEncoder", "load_gemma", "gemma_rules", "per_device_bytes", "hidden_states_fn", "with_prenorm_fn"]

P = PartitionSpec
_ALL = ("data", "context", "tensor")


def gemma_rules(mesh: Mesh, weights: str = "fsdp") -> ShardingRules:
    """Parameter sharding of the decoder (stacked layer parameters have the layer axis first).

    - `fsdp`: every matrix split along its output rows over all mesh axes (each device holds 1/N of the weights;
      XLA gathers one layer's weights at a time inside the scan).
    - `tensor`: Megatron-style on the `tensor` axis: q/k/v/gate/up by output rows (heads), o/down by input
      columns, the embedding by its hidden columns.
    - `replicated`: every device holds everything.
    An axis that does not divide a dimension is dropped for that tensor (`ShardingRules` fitting).
    """
    if weights == "replicated":
        return ShardingRules(mesh, ())
    if weights == "fsdp":
        axes = tuple(a for a in _ALL if a in mesh.axis_names)
        return ShardingRules(mesh, ((r"^layers\..*_proj\.weight$", P(None, axes)), (r"^embed_tokens\.weight$", P(axes))))
    if weights == "tensor":
        return ShardingRules(mesh, ((r"^layers\..*\.(q_proj|k_proj|v_proj|gate_proj|up_proj)\.weight$", P(None, "tensor")),
                                    (r"^layers\..*\.(o_proj|down_proj)\.weight$", P(None, None, "tensor")),
                                    (r"^embed_tokens\.weight$", P(None, "tensor"))))
    raise ValueError(f"weights={weights!r}; choose fsdp, tensor or replicated")


def per_device_bytes(config: GemmaConfig, runtime: Runtime, rules: ShardingRules | None) -> int:
    """Largest per-device parameter bytes of the decoder under `rules` (from shapes; nothing allocated)."""
    state = nnx.state(nnx.eval_shape(lambda: Gemma3TextModel(config, runtime, rngs=nnx.Rngs(0))))
    per_device: dict = {}
    for path, var in nnx.to_flat_state(state):
        shape, itemsize = tuple(var.shape), np.dtype(var.dtype).itemsize
        if rules is None:
            per_device[None] = per_device.get(None, 0) + math.prod(shape) * itemsize
            continue
        sharding = rules(".".join(str(p) for p in path), shape)
        for device, index in sharding.devices_indices_map(shape).items():
            n = math.prod(len(range(*s.indices(d))) for s, d in zip(index, shape))
            per_device[device] = per_device.get(device, 0) + n * itemsize
    return max(per_device.values())


@functools.partial(jax.jit, static_argnames=("graphdef",))
def hidden_states_fn(graphdef: nnx.GraphDef, state: nnx.State, input_ids: jax.Array, attention_mask: jax.Array):
    """`[L+1, B, T, hidden]` hidden states of `Gemma3TextModel` (state passed explicitly: one trace per shape)."""
    return nnx.merge(graphdef, state)(input_ids, attention_mask)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def with_prenorm_fn(graphdef: nnx.GraphDef, state: nnx.State, input_ids: jax.Array, attention_mask: jax.Array):
    """(hidden states `[L+1, B, T, hidden]`, the last layer's output before the final norm `[B, T, hidden]`)."""
    return nnx.merge(graphdef, state).with_prenorm(input_ids, attention_mask)


class GemmaEncoder:
    """Tokenizer + decoder of one hub folder. `free()` releases the decoder's device memory."""

    def __init__(self, folder: GemmaFolder, tokenizer: GemmaTokenizer, graphdef: nnx.GraphDef, state: nnx.State,
                 runtime: Runtime):
        self.folder_path, self.config, self.runtime = folder.path, folder.config, runtime
        self.tokenizer, self.graphdef, self.state = tokenizer, graphdef, state
        self.other_components = dict(folder.other)  # listed, not loaded: {"vision_tower": [keys], ...}
        self.fingerprint = folder.fingerprint()

    @property
    def num_hidden_states(self) -> int:
        return self.config.num_hidden_layers + 1

    def tokenize(self, prompts: str | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids `[B, 1024]` int32, mask `[B, 1024]` int32): the official rules (strip, `<bos>`, truncate, left pad)."""
        return self.tokenizer(prompts)

    def hidden_states(self, input_ids, attention_mask) -> jax.Array:
        """`[L+1, B, T, hidden]` in the compute dtype, stacked as the official code stacks them (see the model)."""
        if self.state is None:
            raise RuntimeError("this GemmaEncoder was freed; load it again with load_gemma")
        return hidden_states_fn(self.graphdef, self.state, jnp.asarray(input_ids, jnp.int32),
                                jnp.asarray(attention_mask, jnp.int32))

    def free(self) -> None:
        """Delete the decoder's parameter buffers now (the official pipelines `del` the encoder before denoising).

        The tokenizer stays usable; `hidden_states` raises afterwards.
        """
        if self.state is None:
            return
        for leaf in jax.tree.leaves(self.state):
            if isinstance(leaf, jax.Array) and not leaf.is_deleted():
                leaf.delete()
        self.state = None
        hidden_states_fn.clear_cache()


def load_gemma(folder: str | os.PathLike, runtime: Runtime = Runtime(), shardings=None) -> GemmaEncoder:
    """Open a Hugging Face Gemma-3 folder (config.json, tokenizer.json, model*.safetensors [+ index]).

    Args:
        folder: e.g. a download of `google/gemma-3-12b-it-qat-q4_0-unquantized`.
        runtime: dtypes (default bf16 parameters and compute, as the official pipelines run Gemma).
        shardings: None (first device), a `ShardingRules` (`gemma_rules(mesh, "fsdp")`), or a callable
            (dotted module path, shape) -> Sharding; each device reads only its own region of the files.

    Raises:
        GemmaFolderError / TokenizerError / ConfigError / LoadError: a missing file, another model's folder, a config
            value not implemented, or keys that do not match (each named).
    """
    opened = GemmaFolder(folder)
    try:
        tokenizer = GemmaTokenizer(opened.path, MAX_LENGTH)
        graphdef, state = restore_gemma(opened, runtime, shardings)
        return GemmaEncoder(opened, tokenizer, graphdef, state, runtime)
    finally:
        opened.close()
