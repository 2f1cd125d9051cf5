"""Restore the transformer from a scaled-FP8 file with its e4m3 weights kept as `FP8Weight`s (Runtime.fp8 on).

Which Linears are FP8 is read per file from the header: a `<layer>.weight` stored float8_e4m3fn next to a
`<layer>.weight_scale` (and `<layer>.input_scale`) is FP8, everything else keeps the parameter dtype. No
block list is assumed. Stacked blocks must share one structure inside a scan, so when the file's blocks are
not all of one kind (the official files keep the first and last few in bf16) `transformer_blocks` becomes an
`nnx.List` of segments: maximal runs of consecutive blocks with the same set of FP8 Linears, each stacked
and scanned on its own (`LTXModel.__call__`). Module paths are then `transformer_blocks.<segment>.<rest>`
(segment `k` holds file blocks `start_k ...`); a file whose blocks are all alike keeps the usual paths.

Every array is created in its sharding with `jax.make_array_from_callback`, as in `restore`: e4m3 bytes go
from the file region to the device unchanged (never through a wider dtype). Scales are validated on the
host (finite, > 0) and e4m3 regions are checked for NaN as they are read; failures name the tensor.

Counterpart: ltx_core `quantization/fp8_scaled_mm.py` (`FP8Linear` replacing `nn.Linear`) as fixed in
Lightricks/LTX-2 HEAD for `[out, in]` files (per-file detection instead of `EXCLUDED_LAYER_SUBSTRINGS`).
"""

from __future__ import annotations

import re

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec, Sharding

from ltx_jax.configs import Runtime
from ltx_jax.convert.loading import LoadError
from ltx_jax.convert.source import FP8_DTYPES, Source, normalize_index
from ltx_jax.nn.fp8 import E4M3, FP8Weight, check_fp8
from ltx_jax.nn.linear import Linear

__all__ = ["fp8_layers", "block_plan", "restore_fp8_state"]

_BLOCKS = "transformer_blocks"


def fp8_layers(source: Source, prefix: str = "") -> dict[str, bool]:
    """{file key without `.weight`: scaled?} of the Linears whose weight is stored FP8 under `prefix`
    (scaled: with a `.weight_scale`, the official FP8 layout; else fp8-cast, no scales)."""
    specs = source.specs()
    return {k[: -len(".weight")]: k[: -len("weight")] + "weight_scale" in specs for k, s in specs.items()
            if k.startswith(prefix) and k.endswith(".weight") and s.dtype in FP8_DTYPES}


def block_plan(layers: set[str], prefix: str, num_layers: int) -> tuple[list[tuple[int, int]], list[frozenset]]:
    """Segments `[(start, stop)]` of consecutive blocks with the same FP8 Linear set, and those sets
    (Linear paths relative to the block, e.g. `attn1.to_q`)."""
    per_block: list[set[str]] = [set() for _ in range(num_layers)]
    pattern = re.compile(re.escape(prefix + _BLOCKS) + r"\.(\d+)\.(.+)$")
    for layer in layers:
        if m := pattern.match(layer):
            i = int(m.group(1))
            if i < num_layers:
                per_block[i].add(m.group(2))
    bounds, sets = [], []
    for i, s in enumerate(per_block):
        if sets and sets[-1] == frozenset(s):
            bounds[-1] = (bounds[-1][0], i + 1)
        else:
            bounds.append((i, i + 1))
            sets.append(frozenset(s))
    return bounds, sets


def _abstract_fp8(linear: Linear, lead: tuple[int, ...], mode: str) -> None:
    shape = linear.weight.get_value().shape
    scale = jax.ShapeDtypeStruct(lead, np.float32)
    linear.weight.set_value(FP8Weight(jax.ShapeDtypeStruct(shape, E4M3), scale, scale, mode=mode))


def _make_fp8(module: nnx.Module, names: frozenset | set, lead: tuple[int, ...], mode: str) -> None:
    """Turn the Linears of `module` at the relative paths `names` into abstract FP8 weights."""
    for path, node in nnx.iter_modules(module):
        dotted = ".".join(str(p) for p in path)
        if dotted in names and isinstance(node, Linear):
            _abstract_fp8(node, lead, mode)


def _segments(stack: nnx.Module, bounds: list[tuple[int, int]]) -> nnx.List:
    graphdef, state = nnx.split(stack)
    out = []
    for start, stop in bounds:
        sub = jax.tree.map(lambda a, n=stop - start: jax.ShapeDtypeStruct((n,) + tuple(a.shape[1:]), a.dtype), state)
        out.append(nnx.merge(graphdef, sub))
    return nnx.List(out)


def _scale_sharding(sharding: Sharding) -> Sharding:
    """Scales are tiny: replicated over the devices of the weight's sharding."""
    if isinstance(sharding, NamedSharding):
        return NamedSharding(sharding.mesh, PartitionSpec())
    return sharding


def _file_keys(path: tuple, prefix: str, bounds, segmented: bool) -> tuple[list[str], bool]:
    """(file keys, one per layer when stacked; stacked?) for a module variable path."""
    parts = [str(p) for p in path]
    if parts[0] != _BLOCKS:
        return [prefix + ".".join(parts)], False
    if segmented:
        start, stop = bounds[int(parts[1])]
        rest = parts[2:]
    else:
        start, stop = 0, bounds[-1][1]
        rest = parts[1:]
    return [f"{prefix}{_BLOCKS}.{i}." + ".".join(rest) for i in range(start, stop)], True


def restore_fp8_state(spec, source: Source, runtime: Runtime, resolve, config, prefix: str):
    """(graphdef, state) of the transformer with FP8 weights; `spec` and `resolve` as in `convert.restore`."""
    from ltx_jax.convert.restore import _reader  # noqa: PLC0415 (sibling module; restore imports this one lazily)

    specs = source.specs()
    kinds = fp8_layers(source, prefix)
    layers = set(kinds)
    if not layers:
        raise LoadError(f"{source.name}: Runtime.fp8={runtime.fp8!r} needs FP8 weights (e4m3 `.weight`, with "
                        "`.weight_scale` and `.input_scale` for the scaled matmul), and this file has none; use "
                        "fp8='off', or quantize the file first (`ltx-jax quantize`)")
    for layer in sorted(layers):
        if specs[layer + ".weight"].dtype != E4M3:
            raise LoadError(f"{source.name}: {layer}.weight is {specs[layer + '.weight'].dtype}; only float8_e4m3fn "
                            "weights are supported")
        if kinds[layer] and layer + ".input_scale" not in specs and runtime.fp8 == "scaled":
            raise LoadError(f"{source.name}: {layer}.input_scale is missing; the scaled FP8 matmul needs one "
                            "(Runtime.fp8='weights' does not)")
        if not kinds[layer] and runtime.fp8 == "scaled":
            raise LoadError(f"{source.name}: {layer}.weight is FP8 without weight_scale / input_scale (fp8-cast "
                            "layout); the scaled FP8 matmul needs both; use Runtime.fp8='weights'")

    abstract = nnx.eval_shape(lambda: spec.build(config, runtime))
    bounds, sets = block_plan(layers, prefix, config.num_layers)
    segmented = len(bounds) > 1
    if segmented:
        abstract.transformer_blocks = _segments(abstract.transformer_blocks, bounds)
        for (start, stop), names, seg in zip(bounds, sets, abstract.transformer_blocks):
            _make_fp8(seg, names, (stop - start,), runtime.fp8)
    else:
        _make_fp8(abstract.transformer_blocks, sets[0], (config.num_layers,), runtime.fp8)
    top = {layer[len(prefix):] for layer in layers if not layer.startswith(prefix + _BLOCKS + ".")}
    for path, node in nnx.iter_modules(abstract):
        dotted = ".".join(str(p) for p in path)
        if dotted in top and isinstance(node, Linear):
            _abstract_fp8(node, (), runtime.fp8)

    graphdef, state = nnx.split(abstract)
    available = {k for k in specs if spec.owns(k)}
    consumed, missing, wrong = set(), [], []
    flat = dict(nnx.to_flat_state(state))
    plans = {}
    for path, var in flat.items():
        value = var.get_value()
        keys, stacked = _file_keys(path, prefix, bounds, segmented)
        if isinstance(value, FP8Weight):
            bases = [k[: -len(".weight")] for k in keys]
            names = [(b + ".weight", *(b + s if b + s in specs else None for s in (".weight_scale", ".input_scale")))
                     for b in bases]
            flat_names = [n for t in names for n in t if n is not None]
            want = tuple(value.value.shape[1:] if stacked else value.value.shape)
            for w, _, _ in names:
                if w in specs and specs[w].shape != want:
                    wrong.append(f"{w}: file {specs[w].shape}, model {want}")
            for n in flat_names:
                if n.endswith("_scale") and specs[n].shape not in ((), (1,)):
                    wrong.append(f"{n}: file {specs[n].shape}, expected a scalar")
        else:
            flat_names = keys
            want = tuple(value.shape[1:] if stacked else value.shape)
            wrong += [f"{n}: file {specs[n].shape}, model {want}" for n in flat_names
                      if n in available and specs[n].shape != want]
            names = flat_names
        missing += [n for n in flat_names if n not in available]
        consumed.update(n for n in flat_names if n in available)
        plans[path] = (names, stacked)
    unexpected = sorted(available - consumed)
    if missing or unexpected or wrong:
        parts = [f"{len(i)} {w}: " + ", ".join(i[:8]) + (" ..." if len(i) > 8 else "")
                 for w, i in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if i]
        raise LoadError(f"{source.name}: keys do not match the {spec.name} model (FP8 restore); " + "; ".join(parts))

    for path, (names, stacked) in plans.items():
        var = flat[path]
        value = var.get_value()
        dotted = ".".join(str(p) for p in path)
        if isinstance(value, FP8Weight):
            flat[path] = var.replace(_fp8_array(source, names, stacked, value, dotted, resolve))
        else:
            shape = tuple(value.shape)
            read = _reader(source, names if stacked else names[:1], stacked, np.dtype(value.dtype))
            flat[path] = var.replace(jax.make_array_from_callback(
                shape, resolve(dotted, shape), lambda index, read=read, shape=shape: read(normalize_index(index, shape))))
    return graphdef, nnx.from_flat_state(list(flat.items()))


def _fp8_array(source: Source, names, stacked: bool, abstract: FP8Weight, dotted: str, resolve) -> FP8Weight:
    scales = {}
    for which, col in (("weight_scale", 1), ("input_scale", 2)):
        # Absent scales: fp8-cast weights have weight_scale 1; a missing input_scale is NaN, which
        # `set_fp8_mode(..., "scaled")` refuses (restore already refused it in scaled mode).
        vals = [np.float32(1.0 if col == 1 else np.nan) if t[col] is None
                else np.asarray(source.read(t[col]), np.float32).reshape(()) for t in names]
        for t, v in zip(names, vals):
            if t[col] is not None:
                check_fp8(t[col], **{which: v})
        scales[which] = np.stack(vals) if stacked else vals[0]
    weights = [t[0] for t in names]

    def read(index):
        if not stacked:
            out = source.read(weights[0], index)
            check_fp8(weights[0], value=out)
            return out
        layer, rest = index[0], index[1:]
        parts = []
        for i in range(layer.start, layer.stop):
            part = source.read(weights[i], rest)
            check_fp8(weights[i], value=part)
            parts.append(part)
        return np.stack(parts)

    shape = tuple(abstract.value.shape)
    sharding = resolve(dotted, shape)
    value = jax.make_array_from_callback(shape, sharding, lambda index: read(normalize_index(index, shape)))
    scale_sharding = _scale_sharding(sharding)
    ws, ins = (jax.make_array_from_callback(s.shape, scale_sharding, lambda index, s=s: s[index])
               for s in (scales["weight_scale"], scales["input_scale"]))
    return FP8Weight(value, ws, ins, mode=abstract.mode)
