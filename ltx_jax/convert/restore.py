"""Restore a component straight into a sharding, from an ltx-jax checkpoint or the official file itself.

Every parameter is created with `jax.make_array_from_callback`: the callback for a device receives that
device's index into the parameter and reads only that region from the `Source` (a memory-mapped slice of
the official file, or the overlapping zarr3 chunks of our Orbax checkpoint). For a stacked parameter
(`transformer_blocks.*`, leading layer axis) only the layers in the device's slice are read, each from its
own file key `transformer_blocks.{i}.*`. Only addressable devices get callbacks, so in a multi-host run
each host reads the bytes of its own devices' shards. Nothing is ever materialized whole on one device.

The module graph comes from `nnx.eval_shape` of the component's constructor (no allocation); file keys map
to module paths by the one rule of `convert.loading` (stacking, hyphens) plus each component's prefix,
and the match is strict both ways (missing, unexpected, mis-shaped keys raise `LoadError`).

Counterparts: ltx_core `loader/single_gpu_model_builder.py` (`SingleGPUModelBuilder.build`: meta model,
state dict through SDOps, LoRA fusion, `load_state_dict`) and the key maps of
`ltx_pipelines/utils/model_ledger.py`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec, Sharding, SingleDeviceSharding

from ltx_jax.configs import Runtime, from_metadata, upsampler_from_metadata
from ltx_jax.convert.loading import LoadError, module_keys
from ltx_jax.convert.lora import LoraFile, LoraMerged
from ltx_jax.convert.schema import CONNECTOR_PREFIXES, TEXT_PROJECTION_PREFIX, TRANSFORMER_PREFIX
from ltx_jax.convert.source import FP8_DTYPES, Dequantized, Index, Source, normalize_index, open_source

__all__ = ["ComponentSpec", "COMPONENTS", "ShardingRules", "restore", "restore_state", "expected_file_keys"]

_STATS = "vae.per_channel_statistics."
_USED_STATS = ("mean-of-means", "std-of-means")


@dataclass(frozen=True)
class ComponentSpec:
    """How one component sits in the official file: its config, module, stacked prefixes and key prefix."""

    name: str
    config: Callable[[Source], Any]  # the component config, from the source's metadata / shapes
    build: Callable[[Any, Runtime], nnx.Module]  # constructor, run under nnx.eval_shape
    to_file: Callable[[str], str]  # module-view key (no `{i}`) -> file key
    owns: Callable[[str], bool]  # file keys that belong to this component (strictness)
    stacked: tuple[str, ...] = ()


def _ltx_config(source: Source):
    return from_metadata(source.metadata, tensor_shapes={k: s.shape for k, s in source.specs().items()})


def _transformer_build(config, runtime):
    from ltx_jax.transformer.model import LTXModel
    return LTXModel(config, runtime, rngs=nnx.Rngs(0))


def _text_build(config, runtime):
    from ltx_jax.transformer.text_embeddings import EmbeddingsProcessor
    return EmbeddingsProcessor(config, runtime, rngs=nnx.Rngs(0))


def _vae_build(part):
    def build(config, runtime):
        from ltx_jax.video_vae.decoder import VideoDecoder
        from ltx_jax.video_vae.encoder import VideoEncoder
        return (VideoEncoder if part == "encoder" else VideoDecoder)(config, runtime, rngs=nnx.Rngs(0))
    return build


def _upsampler_build(config, runtime):
    from ltx_jax.upsampler import LatentUpsampler
    return LatentUpsampler(config, runtime, rngs=nnx.Rngs(0))


def _tae_config(source: Source):
    from ltx_jax.tiny_vae.loading import config_from_shapes
    return config_from_shapes({k: s.shape for k, s in source.specs().items()})


def _tae_build(config, runtime):
    from ltx_jax.tiny_vae.model import TinyAutoencoder
    return TinyAutoencoder(config, param_dtype=runtime.param_dtype, compute_dtype=runtime.compute_dtype,
                           rngs=nnx.Rngs(0))


_TEXT_RENAMES = (("feature_extractor.", TEXT_PROJECTION_PREFIX),
                 ("video_connector.", CONNECTOR_PREFIXES["video"]), ("audio_connector.", CONNECTOR_PREFIXES["audio"]))


def _rename(key: str, renames) -> str:
    for old, new in renames:
        if key.startswith(old):
            return new + key[len(old):]
    raise KeyError(key)


def _vae_file(part: str) -> Callable[[str], str]:
    def to_file(key: str) -> str:
        # Encoder and decoder each hold the statistics the file stores once, under vae.per_channel_statistics.
        if key.startswith("per_channel_statistics."):
            return _STATS + key[len("per_channel_statistics."):]
        return f"vae.{part}.{key}"
    return to_file


def _vae_owns(part: str) -> Callable[[str], bool]:
    return lambda k: k.startswith(f"vae.{part}.") or k in {_STATS + s for s in _USED_STATS}


def _audio_components() -> dict[str, ComponentSpec]:
    """audio_vae_decoder / audio_vae_encoder (prefix `audio_vae.`, shared statistics) and vocoder (`vocoder.`)."""
    from ltx_jax.audio_vae import loading as A
    stats = {A.AUDIO_STATISTICS_PREFIX + s for s in A.USED_STATISTICS}

    def part(name: str) -> ComponentSpec:
        def to_file(key: str) -> str:
            if key.startswith("per_channel_statistics."):
                return A.AUDIO_STATISTICS_PREFIX + key[len("per_channel_statistics."):]
            return f"audio_vae.{name}.{key}"
        build = A.build_audio_decoder if name == "decoder" else A.build_audio_encoder
        return ComponentSpec(f"audio_vae_{name}", lambda s: A.audio_config_from_metadata(s.metadata), build, to_file,
                             lambda k: k.startswith(f"audio_vae.{name}.") or k in stats)

    return {"audio_vae_decoder": part("decoder"), "audio_vae_encoder": part("encoder"),
            "vocoder": ComponentSpec("vocoder", lambda s: A.vocoder_config_from_metadata(s.metadata), A.build_vocoder,
                                     lambda k: "vocoder." + k, lambda k: k.startswith("vocoder."))}


COMPONENTS: dict[str, ComponentSpec] = {
    "transformer": ComponentSpec(
        "transformer", lambda s: _ltx_config(s).transformer, _transformer_build,
        lambda k: TRANSFORMER_PREFIX + k,
        lambda k: k.startswith(TRANSFORMER_PREFIX) and not k.startswith(tuple(CONNECTOR_PREFIXES.values())),
        ("transformer_blocks",)),
    "text_embeddings": ComponentSpec(
        "text_embeddings", lambda s: _ltx_config(s).connector, _text_build, lambda k: _rename(k, _TEXT_RENAMES),
        lambda k: k.startswith((TEXT_PROJECTION_PREFIX, *CONNECTOR_PREFIXES.values())),
        ("video_connector.transformer_1d_blocks", "audio_connector.transformer_1d_blocks")),
    "vae_encoder": ComponentSpec("vae_encoder", lambda s: _ltx_config(s).vae, _vae_build("encoder"),
                                 _vae_file("encoder"), _vae_owns("encoder")),
    "vae_decoder": ComponentSpec("vae_decoder", lambda s: _ltx_config(s).vae, _vae_build("decoder"),
                                 _vae_file("decoder"), _vae_owns("decoder")),
    "upsampler": ComponentSpec("upsampler", lambda s: upsampler_from_metadata(s.metadata), _upsampler_build,
                               lambda k: k, lambda k: True),
    "tae": ComponentSpec("tae", _tae_config, _tae_build, lambda k: k, lambda k: True),
    **_audio_components(),
}


@dataclass(frozen=True)
class ShardingRules:
    """`[(regex, PartitionSpec), ...]` over dotted module paths (`transformer_blocks.attn1.to_q.weight`);
    the first `re.search` match wins, unmatched parameters are replicated. Stacked parameters have the
    layer axis first, so their specs name it first (e.g. `P(None, "model")`)."""

    mesh: Mesh
    rules: Sequence[tuple[str, PartitionSpec]] = ()

    def __call__(self, path: str, shape: tuple[int, ...]) -> NamedSharding:
        """The first matching rule's spec, fitted to `shape`: cut to its rank, and a mesh axis that does not
        divide its dimension dropped (that dimension replicated), so one rule can cover weights and biases."""
        for pattern, spec in self.rules:
            if re.search(pattern, path):
                entries = list(spec)[: len(shape)]
                fitted = []
                for size, entry in zip(shape, entries):
                    axes = (entry,) if isinstance(entry, str) else tuple(entry or ())
                    n = int(np.prod([self.mesh.shape[a] for a in axes])) if axes else 1
                    fitted.append(entry if axes and size % n == 0 else None)
                return NamedSharding(self.mesh, PartitionSpec(*fitted))
        return NamedSharding(self.mesh, PartitionSpec())


ShardingsArg = (None | Sharding | Mapping[str, Sharding] | ShardingRules
                | Callable[[str, tuple[int, ...]], Sharding])


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
    return shardings


def _plan(spec: ComponentSpec, source: Source, config, runtime: Runtime):
    """(graphdef, abstract state, {module path: (file keys or None, stacked file keys, shape)}) with the
    strict key check of `convert.loading.load_state`."""
    abstract = nnx.eval_shape(lambda: spec.build(config, runtime))
    graphdef, state = nnx.split(abstract)
    specs = source.specs()
    available = {k for k in specs if spec.owns(k)}
    consumed, missing, wrong, plan = set(), [], [], {}
    for view_key, (path, shape, layers) in module_keys(state, spec.stacked).items():
        if layers is None:
            keys, want = [spec.to_file(view_key)], tuple(shape)
        else:
            keys, want = [spec.to_file(view_key.format(i=i)) for i in range(layers)], tuple(shape[1:])
        absent = [k for k in keys if k not in available]
        missing += absent
        consumed.update(k for k in keys if k in available)
        wrong += [f"{k}: file {specs[k].shape}, model {want}" for k in keys
                  if k in available and specs[k].shape != want]
        plan[path] = (keys, layers is not None, tuple(shape))
    unexpected = sorted(available - consumed)
    if missing or unexpected or wrong:
        parts = [f"{len(i)} {w}: " + ", ".join(i[:8]) + (" ..." if len(i) > 8 else "")
                 for w, i in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if i]
        raise LoadError(f"{source.name}: keys do not match the {spec.name} model; " + "; ".join(parts))
    return graphdef, state, plan


def expected_file_keys(component: str, config, runtime: Runtime = Runtime()) -> dict[str, tuple[int, ...]]:
    """{file key: shape} the component's module expects (one entry per layer for stacked parameters)."""
    spec = COMPONENTS[component]
    state = nnx.state(nnx.eval_shape(lambda: spec.build(config, runtime)))
    out = {}
    for view_key, (_, shape, layers) in module_keys(state, spec.stacked).items():
        if layers is None:
            out[spec.to_file(view_key)] = tuple(shape)
        else:
            out.update({spec.to_file(view_key.format(i=i)): tuple(shape[1:]) for i in range(layers)})
    return out


def _reader(source: Source, keys: list[str], stacked: bool, dtype: np.dtype):
    def read(index: Index) -> np.ndarray:
        if not stacked:
            return np.asarray(source.read(keys[0], index)).astype(dtype, copy=False)
        layers, rest = index[0], index[1:]
        return np.stack([source.read(keys[i], rest).astype(dtype, copy=False)
                         for i in range(layers.start, layers.stop)])
    return read


def restore_state(src: str | os.PathLike | Source, component: str, *, runtime: Runtime = Runtime(),
                  shardings: ShardingsArg = None, loras: Sequence[tuple[str | os.PathLike | LoraFile, float]] = (),
                  config=None) -> tuple[nnx.GraphDef, nnx.State]:
    """`nnx.split` of the restored component (see `restore`)."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; choose one of {sorted(COMPONENTS)}")
    spec = COMPONENTS[component]
    source = open_source(src)
    try:
        return _restore(spec, source, runtime, shardings, loras, config)
    finally:
        if not isinstance(src, Source):  # every array holds its own copy of what was read
            source.close()


def _restore(spec: ComponentSpec, source: Source, runtime: Runtime, shardings: ShardingsArg, loras, config):
    component = spec.name
    if loras:
        if component != "transformer":
            raise ValueError("LoRAs apply to the transformer only (ltx-core builds the other components without them)")
        # The target dtype of merged weights is the model's parameter dtype: ltx-core's ledger dtype.
        merged = LoraMerged(source, loras, dtype=np.dtype(runtime.param_dtype))
        try:
            return _restore(spec, merged, runtime, shardings, (), config)
        finally:
            for (given, _), (lf, _) in zip(loras, merged.loras):
                if not isinstance(given, LoraFile):  # opened here
                    lf.source.close()
    if runtime.fp8 != "off" and component == "transformer":  # FP8 weights kept e4m3 (ltx_jax.nn.fp8)
        from ltx_jax.convert.fp8_restore import restore_fp8_state  # noqa: PLC0415
        config = config if config is not None else spec.config(source)
        return restore_fp8_state(spec, source, runtime, _resolver(shardings), config, TRANSFORMER_PREFIX)
    if any(s.dtype in FP8_DTYPES and k[: -len("weight")] + "weight_scale" in source.specs()
           for k, s in source.specs().items() if k.endswith(".weight")):
        source = Dequantized(source)
    config = config if config is not None else spec.config(source)
    graphdef, state, plan = _plan(spec, source, config, runtime)
    resolve = _resolver(shardings)
    flat = dict(nnx.to_flat_state(state))
    for path, (keys, stacked, shape) in plan.items():
        var = flat[path]
        dotted = ".".join(str(p) for p in path)
        read = _reader(source, keys, stacked, np.dtype(var.dtype))
        array = jax.make_array_from_callback(shape, resolve(dotted, shape),
                                             lambda index, read=read, shape=shape: read(normalize_index(index, shape)))
        flat[path] = var.replace(array)
    return graphdef, nnx.from_flat_state(list(flat.items()))


def restore(src: str | os.PathLike | Source, component: str, *, runtime: Runtime = Runtime(),
            shardings: ShardingsArg = None, loras: Sequence[tuple[str | os.PathLike | LoraFile, float]] = (),
            config=None) -> nnx.Module:
    """A component with every parameter created directly in its sharding.

    Args:
        src: an ltx-jax checkpoint folder, an official `.safetensors` file (memory-mapped, no conversion
            step), a diffusers folder, or any `Source`.
        component: `transformer`, `text_embeddings`, `vae_encoder`, `vae_decoder`, `upsampler` or `tae`.
        runtime: parameter / compute dtypes of the module.
        shardings: None (first device), one `Sharding` for every parameter, {dotted module path: Sharding},
            a `ShardingRules`, or a callable (dotted path, shape) -> Sharding.
        loras: (LoRA file, strength) pairs merged into the transformer weights as ltx-core does, with the
            parameter dtype as the target dtype; merged per device region, on the fly.
        config: the component config; default: the source's own metadata (or shapes, for the TAE).

    FP8 files with scales (`weight_scale`, `input_scale`): with `runtime.fp8="off"` restored dequantized,
    `w = q * weight_scale` in the parameter dtype; with "weights" or "scaled" the transformer keeps them as
    e4m3 `FP8Weight`s in that matmul mode (`convert.fp8_restore`; other components have no FP8 Linears).

    Raises:
        LoadError: keys missing, unexpected or mis-shaped for the component (all named).
        LoraError: LoRA keys that match no weight or have the wrong shape.
    """
    return nnx.merge(*restore_state(src, component, runtime=runtime, shardings=shardings, loras=loras,
                                    config=config))
