"""Trainable LoRA adapters on the DiT, chosen by regex over official module names, saved in the official layout.

Counterpart: ltx-trainer's PEFT set-up (`LoraConfig(r, lora_alpha, target_modules, init_lora_weights=True)`,
`get_peft_model`) and `LtxvTrainer._save_checkpoint` (PEFT state dict, `base_model.model.` stripped,
`diffusion_model.` added, cast to bf16, `safetensors.save_file`); see shared/docs/reference-fixtures-lora.md.

Defaults are the official trainer's (`LoraConfig` in ltx-trainer's `config.py`: rank 64, alpha 64, dropout 0,
`target_modules = ["to_k", "to_q", "to_v", "to_out.0"]`). PEFT matches those names by suffix: every attention
of every block (video, audio, cross-modal; the text connectors are not part of the trained model). Here
the targets are one regex searched in the official module path of each `Linear`
(`transformer_blocks.7.attn1.to_q`, `transformer_blocks.7.ff.net.0.proj`, `proj_out`, ...), evaluated per
block, so a regex may pick some blocks only.

Init as PEFT: `A ~ U(-1/sqrt(in), 1/sqrt(in))` (kaiming-uniform with a = sqrt(5)), `B = 0`, output
`W x + b + (alpha / r) * B (A x)`. Factors are float32 master weights; the product runs in the compute
dtype. ltx-core merges `B @ A` without any alpha/r factor, so the saved file carries `B * alpha / r`
(exact for alpha = r, the official default).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from ltx_jax.checkpoint.safetensors_file import save_file
from ltx_jax.nn.linear import Linear

__all__ = ["LoraConfig", "LoraParam", "TrainableLora", "DEFAULT_TARGETS", "add_lora", "lora_linears",
           "lora_state_dict", "save_lora"]

STACKED = "transformer_blocks"
FILE_PREFIX = "diffusion_model."
# The official trainer's target_modules ["to_k", "to_q", "to_v", "to_out.0"], as a suffix regex.
DEFAULT_TARGETS = r"\.(to_q|to_k|to_v|to_out\.0)$"


@dataclass(frozen=True, kw_only=True)
class LoraConfig:
    rank: int = 64
    alpha: float | None = None      # None: alpha = rank (scale 1, the official default)
    targets: str = DEFAULT_TARGETS  # regex searched in official module paths
    save_dtype: str = "bfloat16"    # official checkpoints.precision default; or "float32"

    def __post_init__(self):
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"lora.rank must be a positive integer; got {self.rank!r}")
        if self.save_dtype not in ("bfloat16", "float32"):
            raise ValueError(f"lora.save_dtype={self.save_dtype!r}; expected bfloat16 or float32")
        try:
            re.compile(self.targets)
        except re.error as e:
            raise ValueError(f"lora.targets is not a valid regex: {e}") from e

    @property
    def scale(self) -> float:
        return (self.rank if self.alpha is None else float(self.alpha)) / self.rank


class LoraParam(nnx.Param):
    """A trainable LoRA factor (a `Param` subclass, so filters can pick LoRA factors alone)."""


class LoraMask(nnx.Variable):
    """Per-layer 0/1 switch of a stacked adapter (1 where the regex matched that block); not trained."""


class TrainableLora(nnx.Module):
    """`base(x) + scale * ((x @ A^T) * layer_mask) @ B^T`; A `[R, in]`, B `[out, R]` (stacked: leading layer axis)."""

    def __init__(self, base: Linear, a: jax.Array, b: jax.Array, mask: jax.Array, scale: float, path: str,
                 offset: int = 0):
        self.base = base
        self.lora_A = LoraParam(a)
        self.lora_B = LoraParam(b)
        self.layer_mask = LoraMask(mask)
        self.scale = float(scale)
        self.path = path  # official module path, "{i}" standing for the block index of stacked adapters
        self.offset = int(offset)  # file index of the stack's first block (segments of an FP8 model)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.base(x)
        a, b = self.lora_A[...].astype(x.dtype), self.lora_B[...].astype(x.dtype)
        h = jax.lax.dot_general(x, a, (((x.ndim - 1,), (1,)), ((), ())))
        h = h * (self.layer_mask[...] * self.scale).astype(x.dtype)
        return y + jax.lax.dot_general(h, b, (((h.ndim - 1,), (1,)), ((), ())))


def _linears(module: nnx.Module, prefix: tuple = ()):
    """(attribute path, parent, attribute name or index, Linear) for every Linear under `module`."""
    for name, child in list(vars(module).items()):
        if isinstance(child, Linear):
            yield prefix + (name,), module, name, child
        elif isinstance(child, nnx.List):
            for i, item in enumerate(child):
                if isinstance(item, Linear):
                    yield prefix + (name, str(i)), child, i, item
                elif isinstance(item, nnx.Module):
                    yield from _linears(item, prefix + (name, str(i)))
        elif isinstance(child, nnx.Module) and not isinstance(child, TrainableLora):
            yield from _linears(child, prefix + (name,))


def _segment_starts(model: nnx.Module) -> list[int] | None:
    """File index of the first block of each segment when `transformer_blocks` is an `nnx.List` of stacked
    segments (an FP8 file whose blocks are not all alike, `checkpoint.fp8_restore`); None for one stack."""
    blocks = getattr(model, STACKED, None)
    if not isinstance(blocks, nnx.List):
        return None
    starts, n = [], 0
    for seg in blocks:
        starts.append(n)
        n += int(jax.tree.leaves(nnx.state(seg))[0].shape[0])
    return starts


def add_lora(model: nnx.Module, config: LoraConfig, *, seed: int = 0) -> list[str]:
    """Wrap every targeted Linear of an `LTXModel` in a `TrainableLora`; returns the official paths targeted.
    The base Linear may hold a bf16 / f32 weight or an `FP8Weight` (a frozen FP8 base).

    Raises:
        ValueError: the regex matches no Linear (names the first few available paths).
    """
    key = jax.random.key(seed)
    pattern = re.compile(config.targets)
    matched, available = [], []
    starts = _segment_starts(model)
    for parts, parent, attr, lin in list(_linears(model)):
        dotted = ".".join(parts)
        stacked = parts[0] == STACKED
        offset, rest = 0, parts[1:]
        if stacked and starts is not None:  # ("transformer_blocks", segment, ...): file index = start + i
            offset, rest = starts[int(parts[1])], parts[2:]
        layers = lin.weight.shape[0] if stacked else 1
        names = [f"{STACKED}.{offset + i}.{'.'.join(rest)}" for i in range(layers)] if stacked else [dotted]
        available.append(names[0])
        hits = np.array([bool(pattern.search(n)) for n in names])
        if not hits.any():
            continue
        matched += [n for n, h in zip(names, hits) if h]
        fan_out, fan_in = lin.weight.shape[-2:]
        key, sub = jax.random.split(key)
        bound = 1.0 / np.sqrt(fan_in)
        shape_a = (layers, config.rank, fan_in) if stacked else (config.rank, fan_in)
        a = jax.random.uniform(sub, shape_a, jnp.float32, -bound, bound)
        b = jnp.zeros(shape_a[:-2] + (fan_out, config.rank), jnp.float32)
        mask = jnp.asarray(hits.astype(np.float32)[:, None] if stacked else np.float32(1.0))
        path = f"{STACKED}.{{i}}.{'.'.join(rest)}" if stacked else dotted
        wrapped = TrainableLora(lin, a, b, mask, config.scale, path, offset)
        if isinstance(attr, int):
            parent[attr] = wrapped
        else:
            setattr(parent, attr, wrapped)
    if not matched:
        raise ValueError(f"lora.targets {config.targets!r} matches no Linear of the model; module paths look like "
                         f"{available[:4]}")
    return matched


def lora_linears(model: nnx.Module) -> list[TrainableLora]:
    return [node for _, node in nnx.iter_graph(model) if isinstance(node, TrainableLora)]


def lora_state_dict(model: nnx.Module, dtype: str = "bfloat16") -> dict[str, np.ndarray]:
    """The official LoRA file content: `diffusion_model.<path>.lora_A.weight` `[r, in]` and `.lora_B.weight`
    `[out, r]` (B carries alpha / r), for the blocks each adapter targets."""
    np_dtype = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    out = {}
    for node in lora_linears(model):
        a = np.asarray(jax.device_get(node.lora_A[...]), np.float32)
        b = np.asarray(jax.device_get(node.lora_B[...]), np.float32) * np.float32(node.scale)
        mask = np.asarray(jax.device_get(node.layer_mask[...]))
        if "{i}" in node.path:
            for i in np.flatnonzero(mask.reshape(-1)):
                p = node.path.format(i=node.offset + int(i))
                out[f"{FILE_PREFIX}{p}.lora_A.weight"] = a[i].astype(np_dtype)
                out[f"{FILE_PREFIX}{p}.lora_B.weight"] = b[i].astype(np_dtype)
        else:
            out[f"{FILE_PREFIX}{node.path}.lora_A.weight"] = a.astype(np_dtype)
            out[f"{FILE_PREFIX}{node.path}.lora_B.weight"] = b.astype(np_dtype)
    return out


def save_lora(model: nnx.Module, path: str | os.PathLike, dtype: str = "bfloat16") -> Path:
    """Write the adapters as an official LoRA `.safetensors` (atomic, `save_file`). No metadata, as the official
    trainer writes for text-to-video."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(lora_state_dict(model, dtype), path, {})
    return path
