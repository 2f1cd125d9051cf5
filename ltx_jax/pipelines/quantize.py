"""Quantize a bf16 / f32 checkpoint to FP8 ourselves, written in the official FP8 file layout.

Counterparts: ltx_core `quantization/fp8_scaled_mm.py` (`quantize_weight_to_fp8_per_tensor`, the layer rule
`EXCLUDED_LAYER_SUBSTRINGS`) and `quantization/fp8_cast.py` (`TRANSFORMER_LINEAR_DOWNCAST_MAP`).

Two modes:

* `scaled` (the `ltx-2.3-22b-*-fp8.safetensors` layout): every selected Linear gets `.weight` float8_e4m3fn
  `[out, in]` = e4m3(clamp(w / weight_scale, +-448)) with `weight_scale = amax(|w|) / 448` (f32 scalar, as
  ltx-core's function), and `.input_scale` = amax(|x|) / 448 over the Linear's inputs in a short calibration
  run (f32 scalar). Loads here with `Runtime.fp8="weights"|"scaled"`, and in ltx-core's FP8 loaders.
* `cast` (weight-only, ltx-core's fp8-cast layout): `.weight` = e4m3(clamp(w, +-448)), no scales. ltx-core
  loads it with `QuantizationPolicy.fp8_cast()`; here with `Runtime.fp8="weights"` (weight_scale 1).

Layer set (as the official files): the Linears inside `transformer_blocks.<i>.` (attention q/k/v/out,
gate logits, feed-forward) of every block not in `exclude_blocks`; by default ltx-core 1.0.0's list,
block 0 and blocks 43-47 (written for 48 blocks); `include` narrows it with a regex over the Linear's path
inside the block. Patchify, AdaLN, caption projection and proj_out are never quantized. Every other
tensor of the file is copied (or cast to bf16 with `other_dtype="bf16"`, as the official files store it).

Calibration run (scaled mode): the transformer restored in `calibration_dtype`, run block by block (each
Linear reports amax(|x|) of its input) on one sample: video latent grid from `frames x height x width` at 24
fps and the matching audio length, latent `x = (1 - sigma) * a + sigma * b` with `a`, `b` seeded N(0, 1),
at each of `sigmas` (default: the distilled stage-1 sigmas 1.0, 0.909375, 0.725, 0.421875), text contexts
from `prompt` (connector outputs, `video_context` / `audio_context`, as `generate --prompt`) or, without
one, seeded N(0, 1) contexts of 128 tokens. input_scale = max over the run of amax(|x|) / 448.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.configs import Runtime
from ltx_jax.checkpoint.layout import LAYOUT, TRANSFORMER_PREFIX
from ltx_jax.checkpoint.loader import restore
from ltx_jax.checkpoint.safetensors_file import save_file
from ltx_jax.checkpoint.open import open_source
from ltx_jax.checkpoint.source import FP8_DTYPES
from ltx_jax.nn import fp8 as fp8_mod
from ltx_jax.nn.fp8 import E4M3, FP8_MAX, quantize_per_tensor
from ltx_jax.nn.linear import Linear
from ltx_jax.transformer.model import LTXModel  # also binds the transformer to the restore path

__all__ = ["QuantizeSpec", "quantized_transformer", "DEFAULT_EXCLUDED_BLOCKS", "CALIBRATION_SIGMAS", "select_layers", "calibrate",
           "quantize_checkpoint", "quantize_blocks_in_memory"]

DEFAULT_EXCLUDED_BLOCKS = (0, 43, 44, 45, 46, 47)  # ltx-core 1.0.0 EXCLUDED_LAYER_SUBSTRINGS, block part
CALIBRATION_SIGMAS = (1.0, 0.909375, 0.725, 0.421875)
_BF16 = np.dtype(jnp.bfloat16)


@dataclass(frozen=True, kw_only=True)
class QuantizeSpec:
    mode: str = "scaled"  # "scaled" | "cast"
    exclude_blocks: tuple[int, ...] = DEFAULT_EXCLUDED_BLOCKS
    include: str = r".*"  # regex (re.search) over the Linear path inside a block, e.g. "attn1\.to_q"
    other_dtype: str = "keep"  # "keep" | "bf16": tensors that are not quantized
    # calibration (scaled mode)
    frames: int = 9
    height: int = 256
    width: int = 256
    sigmas: tuple[float, ...] = CALIBRATION_SIGMAS
    seed: int = 0
    prompt: str | None = None
    calibration_dtype: str = "float32"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in ("scaled", "cast"):
            raise ValueError(f"quantize mode {self.mode!r}; expected 'scaled' or 'cast'")
        if self.other_dtype not in ("keep", "bf16"):
            raise ValueError(f"other_dtype {self.other_dtype!r}; expected 'keep' or 'bf16'")


def _block_linears(config) -> list[str]:
    """Linear paths inside one transformer block (`attn1.to_q`, `ff.net.0.proj`, ...)."""
    model = nnx.eval_shape(lambda: LTXModel(config, Runtime(), rngs=nnx.Rngs(0)))
    return sorted(".".join(str(p) for p in path) for path, node in nnx.iter_modules(model.transformer_blocks)
                  if isinstance(node, Linear))


def select_layers(config, spec: QuantizeSpec) -> list[str]:
    """File keys (without `.weight`) of the Linears to quantize."""
    inner = [p for p in _block_linears(config) if re.search(spec.include, p)]
    return [f"{TRANSFORMER_PREFIX}transformer_blocks.{i}.{p}" for i in range(config.num_layers)
            if i not in spec.exclude_blocks for p in inner]


def _calibration_inputs(config, spec: QuantizeSpec, dtype):
    from ltx_jax.sampling.positions import audio_positions, video_positions
    from ltx_jax.transformer import Modality

    f, h, w = (spec.frames - 1) // 8 + 1, spec.height // 32, spec.width // 32
    n_audio = max(1, round(spec.frames / 24.0 * 25))
    rng = np.random.default_rng(spec.seed)
    v_ctx_dim = config.caption_channels if config.has_caption_projection else config.cross_attention_dim
    a_ctx_dim = config.caption_channels if config.has_caption_projection else config.audio_cross_attention_dim
    if spec.prompt:
        with np.load(spec.prompt) as z:
            v_ctx, a_ctx = z["video_context"][:1], z["audio_context"][:1]
    else:
        v_ctx = rng.standard_normal((1, 128, v_ctx_dim), np.float32)
        a_ctx = rng.standard_normal((1, 128, a_ctx_dim), np.float32)
    shapes = {"video": (1, f * h * w, config.in_channels), "audio": (1, n_audio, config.audio_in_channels)}
    pairs = {k: (rng.standard_normal(s, np.float32), rng.standard_normal(s, np.float32)) for k, s in shapes.items()}
    vpos = video_positions(f, h, w, fps=24.0)
    apos = audio_positions(n_audio)
    for sigma in spec.sigmas:
        def mod(k, pos, ctx):
            a, b = pairs[k]
            lat = (1 - sigma) * a + sigma * b
            return Modality(latent=jnp.asarray(lat, dtype), sigma=jnp.full((1,), sigma, jnp.float32),
                            timesteps=jnp.full(lat.shape[:2], sigma, jnp.float32),
                            positions=jnp.asarray(pos, jnp.float32), context=jnp.asarray(ctx, dtype))
        yield mod("video", vpos, v_ctx), mod("audio", apos, a_ctx)


def calibrate(model, spec: QuantizeSpec, layers: list[str]) -> dict[str, float]:
    """{layer file key: amax(|x|)} of each selected Linear's inputs over the calibration run.

    Blocks run one at a time under one `jit` (same graph for every block); each Linear reports the amax of
    its input through `jax.debug.callback` with its path inside the block and the (traced) block index.
    """
    from ltx_jax.transformer import Perturbations

    config, dtype = model.config, model.compute_dtype
    wanted = set(layers)
    amax: dict[str, float] = {}
    graphdef, state = nnx.split(model.transformer_blocks)
    keep_all = Perturbations.none(config.num_layers, 1).keep()

    def record(name, i, value):
        key = f"{TRANSFORMER_PREFIX}transformer_blocks.{int(i)}.{name}"
        if key in wanted:
            amax[key] = max(amax.get(key, 0.0), float(value))

    @jax.jit
    def run_block(stack, keep, i, vx, ax, vargs, aargs):
        block = nnx.merge(graphdef, jax.tree.map(lambda a: a[i], stack))
        keep_i = jax.tree.map(lambda k: k[i], keep)
        names = {id(n): ".".join(map(str, p)) for p, n in nnx.iter_modules(block) if isinstance(n, Linear)}

        def observe(linear, x):
            if id(linear) in names:
                jax.debug.callback(record, names[id(linear)], i, jnp.max(jnp.abs(x.astype(jnp.float32))))

        previous, fp8_mod.OBSERVER = fp8_mod.OBSERVER, observe
        try:
            return block(vx, ax, vargs, aargs, keep_i)
        finally:
            fp8_mod.OBSERVER = previous

    @nnx.jit
    def prepare(m, video, audio):
        return m._prepare(video, audio, False), m._prepare(audio, video, True)

    for video, audio in _calibration_inputs(config, spec, dtype):
        (vx, vargs), (ax, aargs) = prepare(model, video, audio)
        for i in range(config.num_layers):
            vx, ax = run_block(state, keep_all, jnp.int32(i), vx, ax, vargs, aargs)
    jax.effects_barrier()
    never = sorted(wanted - set(amax))
    if never:
        raise RuntimeError(f"FP8 calibration: {len(never)} layers never called: {never[:4]}")
    return amax


def quantize_checkpoint(src: str | os.PathLike, out: str | os.PathLike, spec: QuantizeSpec = QuantizeSpec(),
                        *, overwrite: bool = False) -> dict:
    """Write `out` (.safetensors, official FP8 layout) from `src`; returns a report (layers, scales, spec)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists (pass overwrite=True)")
    source = open_source(src)
    try:
        specs = source.specs()
        if any(s.dtype in FP8_DTYPES for s in specs.values()):
            raise ValueError(f"{source.name}: already holds FP8 tensors; quantize a bf16 / f32 checkpoint")
        config = LAYOUT["transformer"].config(source)
        layers = select_layers(config, spec)
        absent = [k for k in layers if k + ".weight" not in specs]
        if absent:
            raise ValueError(f"{source.name}: selected Linears missing from the file: {absent[:4]}")
        input_amax = {}
        if spec.mode == "scaled":
            rt = Runtime(param_dtype=spec.calibration_dtype, compute_dtype=spec.calibration_dtype)
            model = restore(source, "transformer", runtime=rt, config=config)
            input_amax = calibrate(model, spec, layers)
            del model
        chosen = set(layers)
        tensors, shapes = [], {}
        for key, s in specs.items():
            layer = key[: -len(".weight")] if key.endswith(".weight") else None
            if layer in chosen:
                if spec.mode == "scaled":
                    cache = {}

                    def q(key=key, cache=cache):
                        cache["q"], cache["s"] = quantize_per_tensor(source.read(key))
                        return cache.pop("q")
                    tensors += [(key, q), (layer + ".weight_scale", lambda c=cache: np.asarray(c.pop("s"), np.float32)),
                                (layer + ".input_scale",
                                 lambda a=input_amax[layer]: np.asarray(np.float32(a) / np.float32(FP8_MAX)))]
                    shapes.update({key: (s.shape, E4M3), layer + ".weight_scale": ((), np.float32),
                                   layer + ".input_scale": ((), np.float32)})
                else:
                    tensors.append((key, lambda key=key: np.clip(source.read(key).astype(np.float32), -FP8_MAX,
                                                                 FP8_MAX).astype(E4M3)))
                    shapes[key] = (s.shape, E4M3)
                continue
            floating = s.dtype == _BF16 or np.issubdtype(s.dtype, np.floating)
            dtype = _BF16 if spec.other_dtype == "bf16" and floating else s.dtype
            tensors.append((key, lambda key=key, dtype=dtype: source.read(key).astype(dtype)))
            shapes[key] = (s.shape, dtype)
        report = {"mode": spec.mode, "quantized_layers": len(layers),
                  "blocks": sorted({int(k.split("transformer_blocks.")[1].split(".")[0]) for k in layers}),
                  "spec": {k: v for k, v in asdict(spec).items() if k != "extra"}}
        metadata = dict(source.metadata)
        metadata["ltx_jax_fp8"] = json.dumps(report)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, out, metadata, shapes=shapes)
        report["input_amax"] = input_amax
        return report
    finally:
        source.close()


def quantize_blocks_in_memory(model, input_amax: dict[str, float], mode: str = "scaled", include: str = r".*"):
    """Every block Linear of `model` (an `LTXModel` with one uniform stack) matching `include` becomes an
    `FP8Weight` in place, quantized per layer like `quantize_checkpoint` with input_scale from `input_amax`
    (file keys, as `calibrate` returns). For experiments (e.g. the GPU check); files go through
    `quantize_checkpoint`. Returns the model."""
    from ltx_jax.nn.fp8 import FP8Weight

    for path, node in nnx.iter_modules(model.transformer_blocks):
        rel = ".".join(map(str, path))
        if not isinstance(node, Linear) or not re.search(include, rel):
            continue
        w = np.asarray(node.weight.get_value().astype(jnp.float32))
        parts = [quantize_per_tensor(w[i]) for i in range(w.shape[0])]
        amax = [input_amax[f"{TRANSFORMER_PREFIX}transformer_blocks.{i}.{rel}"] for i in range(w.shape[0])]
        sharding = node.weight.get_value().sharding
        node.weight.set_value(FP8Weight(
            jax.device_put(np.stack([q for q, _ in parts]), sharding),
            jnp.asarray(np.array([s for _, s in parts], np.float32)),
            jnp.asarray(np.array(amax, np.float32) / np.float32(FP8_MAX)), mode=mode))
    return model


def quantized_transformer(weights: str | os.PathLike, runtime, spec: QuantizeSpec | None = None):
    """The transformer of a bf16 / f32 file in `runtime.fp8` mode: quantized into `fp8_<name>` beside the file
    (every block by default: benchmarks compare FP8 against bf16 block for block), then restored from it."""
    weights = Path(weights)
    fp8_file = weights.with_name("fp8_" + weights.name)
    spec = spec or QuantizeSpec(exclude_blocks=(), sigmas=(1.0,), frames=9, height=128, width=128)
    quantize_checkpoint(weights, fp8_file, spec, overwrite=True)
    return restore(fp8_file, "transformer", runtime=runtime)
