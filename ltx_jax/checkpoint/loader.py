"""The one restore path: a component straight into its sharding, from an ltx-jax checkpoint, an official file,
a diffusers folder or a {key: array} mapping. Every model loader (`load_transformer`, `load_video_decoder`, ...)
is a call of `restore`.

Every parameter is created with `jax.make_array_from_callback`: the callback for a device receives that
device's index into the parameter and reads only that region from the `Source` (a memory-mapped slice of
the official file, or the overlapping zarr3 chunks of our Orbax checkpoint). For a stacked parameter
(`transformer_blocks.*`, leading layer axis) only the layers in the device's slice are read, each from its
own file key `transformer_blocks.{i}.*`. Only addressable devices get callbacks, so in a multi-host run
each host reads the bytes of its own devices' shards. Nothing is ever materialized whole on one device.

The module graph comes from `nnx.eval_shape` of the constructor the model side bound to the component
(`bind`; no allocation); file keys map to module paths by the component's `layout.Component` entry, and the
match is strict both ways (`layout.match`: missing, unexpected, mis-shaped keys raise `LoadError`).

Counterparts: ltx_core `loader/single_gpu_model_builder.py` (`SingleGPUModelBuilder.build`: meta model,
state dict through SDOps, LoRA fusion, `load_state_dict`) and the key maps of
`ltx_pipelines/utils/model_ledger.py`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Sharding, SingleDeviceSharding

from ltx_jax.checkpoint.errors import LoadError
from ltx_jax.checkpoint.layout import LAYOUT, Component, file_keys, match
from ltx_jax.checkpoint.lora import LoraFile, LoraMerged
from ltx_jax.checkpoint.open import SourceArg, open_source
from ltx_jax.checkpoint.source import FP8_DTYPES, Dequantized, Source, normalize_index
from ltx_jax.configs import Runtime

__all__ = ["bind", "restore", "restore_state", "ShardingsArg", "Builder"]

Builder = Callable[[Any, Runtime], nnx.Module]  # (component config, runtime) -> module, run under eval_shape
ShardingsArg = None | Sharding | Mapping[str, Sharding] | Callable[[str, tuple[int, ...]], Sharding]

_BUILDERS: dict[str, Builder] = {}


def bind(component: str, build: Builder) -> None:
    """Bind a module constructor to a layout entry (called by each model package when it is imported)."""
    if component not in LAYOUT:
        raise KeyError(f"no layout entry {component!r} in ltx_jax.checkpoint.layout.LAYOUT")
    _BUILDERS[component] = build


def _resolver(shardings: ShardingsArg) -> Callable[[str, tuple[int, ...]], Sharding]:
    if shardings is None:
        device = SingleDeviceSharding(jax.devices()[0])
        return lambda path, shape: device
    if isinstance(shardings, Sharding):
        return lambda path, shape: shardings
    if isinstance(shardings, Mapping):
        def lookup(path, shape):
            if path not in shardings:
                raise KeyError(f"no sharding given for parameter {path!r}")
            return shardings[path]
        return lookup
    return shardings  # a ShardingRules (ltx_jax.sharding) or any (path, shape) -> Sharding


def _plan(component: Component, build: Builder, source: Source, config, runtime: Runtime):
    """(graphdef, abstract state, {state path: (file keys, stacked)}) after the strict match."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: build(config, runtime)))
    plan = file_keys(component, state)
    expected = {k: shape for keys, shape, _ in plan.values() for k in keys}
    available = {k: s.shape for k, s in source.specs().items() if component.owns_key(k)}
    match(source.name, f"the {component.name} model", expected, available)
    return graphdef, state, {path: (keys, stacked) for path, (keys, _, stacked) in plan.items()}


def _reader(source: Source, keys: list[str], stacked: bool, dtype: np.dtype):
    def read(index) -> np.ndarray:
        if not stacked:
            return np.asarray(source.read(keys[0], index)).astype(dtype, copy=False)
        layers, rest = index[0], index[1:]
        return np.stack([source.read(keys[i], rest).astype(dtype, copy=False)
                         for i in range(layers.start, layers.stop)])
    return read


def restore_state(src: SourceArg, component: str | Component, *, runtime: Runtime = Runtime(),
                  shardings: ShardingsArg = None, loras: Sequence[tuple[str | os.PathLike | LoraFile, float]] = (),
                  config=None, build: Builder | None = None) -> tuple[nnx.GraphDef, nnx.State]:
    """`nnx.split` of the restored component (see `restore`)."""
    entry = component if isinstance(component, Component) else LAYOUT.get(component)
    if entry is None:
        raise ValueError(f"unknown component {component!r}; choose one of {sorted(LAYOUT)}")
    build = build or _BUILDERS.get(entry.name)
    if build is None:
        raise LookupError(f"no module bound to component {entry.name!r}: import its model package (e.g. "
                          "ltx_jax.transformer, ltx_jax.video_vae), which binds it, or pass build=")
    source = open_source(src)
    try:
        return _restore(entry, build, source, runtime, shardings, loras, config)
    finally:
        if isinstance(src, str | os.PathLike):  # opened here; every array holds its own copy of what was read
            source.close()


def _restore(entry: Component, build: Builder, source: Source, runtime: Runtime, shardings: ShardingsArg, loras,
             config):
    if loras:
        if entry.name != "transformer":
            raise ValueError("LoRAs apply to the transformer only (ltx-core builds the other components without them)")
        # The target dtype of merged weights is the model's parameter dtype: ltx-core's ledger dtype.
        merged = LoraMerged(source, loras, dtype=np.dtype(runtime.param_dtype))
        try:
            return _restore(entry, build, merged, runtime, shardings, (), config)
        finally:
            for (given, _), (lf, _) in zip(loras, merged.loras):
                if not isinstance(given, LoraFile):  # opened here
                    lf.source.close()
    specs = source.specs()
    if any(s.dtype in FP8_DTYPES and k[: -len("weight")] + "weight_scale" in specs
           for k, s in specs.items() if k.endswith(".weight")):
        source = Dequantized(source)
    if config is None:
        if entry.config is None:
            raise LoadError(f"{source.name}: component {entry.name!r} has no config reader; pass config=")
        config = entry.config(source)
    for check in entry.checks:
        check(config, source)
    graphdef, state, plan = _plan(entry, build, source, config, runtime)
    resolve = _resolver(shardings)
    flat = dict(nnx.to_flat_state(state))
    for path, (keys, stacked) in plan.items():
        var = flat[path]
        shape = tuple(var.shape)
        read = _reader(source, keys, stacked, np.dtype(var.dtype))
        array = jax.make_array_from_callback(shape, resolve(".".join(str(p) for p in path), shape),
                                             lambda index, read=read, shape=shape: read(normalize_index(index, shape)))
        flat[path] = var.replace(array)
    return graphdef, nnx.from_flat_state(list(flat.items()))


def restore(src: SourceArg, component: str | Component, *, runtime: Runtime = Runtime(),
            shardings: ShardingsArg = None, loras: Sequence[tuple[str | os.PathLike | LoraFile, float]] = (),
            config=None, build: Builder | None = None) -> nnx.Module:
    """A component with every parameter created directly in its sharding.

    Args:
        src: an ltx-jax checkpoint folder, an official `.safetensors` file (memory-mapped, no conversion
            step), a diffusers folder, a {file key: array} mapping, or any `Source`.
        component: a `LAYOUT` name (`transformer`, `text_embeddings`, `vae_encoder`, `vae_decoder`, `upsampler`,
            `tae`, ...) or a `layout.Component`.
        runtime: parameter / compute dtypes of the module.
        shardings: None (first device), one `Sharding` for every parameter, {dotted module path: Sharding},
            a `ltx_jax.sharding.ShardingRules`, or a callable (dotted path, shape) -> Sharding.
        loras: (LoRA file, strength) pairs merged into the transformer weights as ltx-core does, with the
            parameter dtype as the target dtype; merged per device region, on the fly.
        config: the component config; default: the source's own metadata (or shapes, for the TAE).
        build: the module constructor; default: the one its model package bound (`bind`).

    FP8 files with scales (`weight_scale`, `input_scale`) are restored dequantized, `w = q * weight_scale`
    (the official FP8Linear's weight); `input_scale` is unused until an FP8 matmul exists here.

    Raises:
        LoadError: keys missing, unexpected or mis-shaped for the component (all named), or the file is of
            another variant than the config.
        LoraError: LoRA keys that match no weight or have the wrong shape.
    """
    return nnx.merge(*restore_state(src, component, runtime=runtime, shardings=shardings, loras=loras,
                                    config=config, build=build))
