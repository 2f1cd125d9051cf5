"""Seeded random weights in the official file layout, and the load-back round trip.

Every tensor gets its own `torch.Generator`, seeded from (--seed, crc32(file key)), so a value depends only on
the seed and its key. Init rules (`init_tensor`) keep activations O(1) and make every modulation path matter:
AdaLN / scale-shift tables, gates, registers, norm weights, per-channel statistics and the VAE decoder's
timestep multiplier are all random and non-zero.
"""

import json
import math
import zlib
from pathlib import Path

import safetensors.torch
import torch

from ltxref.components import (
    CHECKPOINT_FILE,
    MAIN_COMPONENTS,
    UPSAMPLER_KINDS,
    Component,
    check_key_maps,
    checkpoint_config,
    upsampler_component,
)
from ltxref.official import gemma_width
from ltx_core.model.upsampler.blur_downsample import BlurDownsample
from ltx_pipelines.utils.model_ledger import ModelLedger

CPU = torch.device("cpu")


def _generator(seed: int, key: str) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % (2**63))


def init_tensor(key: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A float32 tensor for file key `key`; raises on a parameter kind it does not know."""
    g = _generator(seed, key)
    parts = key.split(".")
    leaf, parent = parts[-1], (parts[-2] if len(parts) > 1 else "")

    def randn() -> torch.Tensor:
        return torch.randn(shape, generator=g, dtype=torch.float32)

    def rand() -> torch.Tensor:
        return torch.rand(shape, generator=g, dtype=torch.float32)

    if key.endswith("blur_down.kernel"):
        # A fixed binomial buffer the official file carries; it is not a learned weight.
        return BlurDownsample(dims=2, stride=2, kernel_size=shape[-1]).kernel.clone()
    if leaf == "std-of-means":
        return 0.5 + rand()  # positive per-channel std, in [0.5, 1.5)
    if leaf == "mean-of-means":
        return 0.3 * randn()
    if leaf == "timestep_scale_multiplier":
        return 1000.0 * (0.75 + 0.5 * rand())  # decoder's learned scalar (code init 1000)
    if leaf == "learnable_registers":
        return 2.0 * rand() - 1.0  # as the code's own init, U(-1, 1)
    if "scale_shift_table" in leaf:
        return 0.25 * randn()  # every AdaLN / prompt / AV-CA / decoder scale-shift table
    if "norm" in parent:  # q_norm, k_norm (RMSNorm), GroupNorm norm1/norm2/initial_norm
        if leaf == "weight":
            return 1.0 + 0.2 * randn()
        if leaf == "bias":
            return 0.1 * randn()
    if leaf == "weight" and len(shape) >= 2:
        fan_in = math.prod(shape[1:])  # Linear [out, in], Conv [out, in, *k]
        return randn() / math.sqrt(fan_in)
    if leaf == "bias" and len(shape) == 1:
        return 0.1 * randn()
    raise ValueError(f"no init rule for {key!r} with shape {shape}")


def main_meta_modules(preset: dict) -> dict[str, torch.nn.Module]:
    """The main-checkpoint components built on the meta device from the preset (Gemma width patched)."""
    cfg = checkpoint_config(preset)
    te = preset.get("text_encoder", {})
    with gemma_width(te.get("hidden_size"), te.get("num_hidden_layers")):
        return {c.name: c.meta_module(cfg) for c in MAIN_COMPONENTS}


def generate_state_dicts(preset: dict, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """{file name: {file key: float32 tensor}} for the main checkpoint and each upsampler file."""
    files: dict[str, dict[str, torch.Tensor]] = {CHECKPOINT_FILE: {}}
    modules = main_meta_modules(preset)
    pairs: list[tuple[Component, torch.nn.Module]] = [(c, modules[c.name]) for c in MAIN_COMPONENTS]
    for kind in UPSAMPLER_KINDS:
        comp = upsampler_component(kind)
        files[comp.file] = {}
        pairs.append((comp, comp.meta_module(preset["upsamplers"][kind])))
    for comp, module in pairs:
        sd = module.state_dict()
        check_key_maps(comp, list(sd))
        for k, v in sd.items():
            fk = comp.to_file_key(k)
            if fk not in files[comp.file]:  # vae.per_channel_statistics.* is shared by encoder and decoder
                files[comp.file][fk] = init_tensor(fk, tuple(v.shape), seed).contiguous()
    return files


def write_checkpoints(out_dir: Path, preset: dict, files: dict[str, dict[str, torch.Tensor]]) -> None:
    """Writes each file in the official layout with its metadata."""
    for name, tensors in files.items():
        if name == CHECKPOINT_FILE:
            meta = {"config": json.dumps(checkpoint_config(preset)), "model_version": preset["model_version"]}
        else:
            kind = name[len("upsampler_") : -len(".safetensors")]
            meta = {"config": json.dumps(preset["upsamplers"][kind])}
        safetensors.torch.save_file(tensors, str(out_dir / name), metadata=meta)


def file_header(path: Path) -> dict[str, dict]:
    """{key: {"shape": [...], "dtype": "F32"}} read back from a safetensors file."""
    out = {}
    with safetensors.safe_open(str(path), framework="pt") as f:
        for k in sorted(f.keys()):
            sl = f.get_slice(k)
            out[k] = {"shape": list(sl.get_shape()), "dtype": sl.get_dtype()}
    return out


def ledger(out_dir: Path, dtype: torch.dtype, upsampler_kind: str | None = None, checkpoint: str = CHECKPOINT_FILE,
           quantization=None) -> ModelLedger:  # noqa: ANN001
    up = str(out_dir / f"upsampler_{upsampler_kind}.safetensors") if upsampler_kind else None
    return ModelLedger(dtype=dtype, device=CPU, checkpoint_path=str(out_dir / checkpoint),
                       spatial_upsampler_path=up, quantization=quantization)


def load_components(out_dir: Path, preset: dict, dtype: torch.dtype) -> dict[str, torch.nn.Module]:
    """Loads every component back through the official ModelLedger (SingleGPUModelBuilder + SDOps)."""
    te = preset.get("text_encoder", {})
    main = ledger(out_dir, dtype)
    loaded: dict[str, torch.nn.Module] = {"transformer": main.transformer()}  # X0Model(LTXModel)
    with gemma_width(te.get("hidden_size"), te.get("num_hidden_layers")):
        loaded["embeddings_processor"] = main.gemma_embeddings_processor()
    loaded["vae_encoder"] = main.video_encoder()
    loaded["vae_decoder"] = main.video_decoder()
    for kind in UPSAMPLER_KINDS:
        loaded[f"upsampler.{kind}"] = ledger(out_dir, dtype, kind).spatial_upsampler()
    return loaded


def round_trip(loaded: dict[str, torch.nn.Module], files: dict[str, dict[str, torch.Tensor]]) -> dict:
    """Checks each loaded tensor equals the written one, nothing is on meta, and every file key is used."""
    comps = {c.name: c for c in MAIN_COMPONENTS} | {f"upsampler.{k}": upsampler_component(k) for k in UPSAMPLER_KINDS}
    report: dict = {"components": {}, "ok": True}
    used: dict[str, set[str]] = {name: set() for name in files}
    for name, module in loaded.items():
        comp = comps[name]
        if name == "transformer":
            module = module.velocity_model
        meta = [k for k, v in module.state_dict().items() if v.device.type == "meta"]
        mismatched, missing = [], []
        sd = module.state_dict()
        for k, v in sd.items():
            fk = comp.to_file_key(k)
            used[comp.file].add(fk)
            ref = files[comp.file].get(fk)
            if ref is None:
                missing.append(fk)
            elif v.device.type == "meta" or v.dtype != ref.dtype or not torch.equal(v, ref):
                mismatched.append(fk)
        ok = not (meta or mismatched or missing)
        report["components"][name] = {
            "file": comp.file, "sd_ops": comp.sd_ops.name if comp.sd_ops else None, "tensors": len(sd),
            "parameters": sum(v.numel() for v in sd.values()), "meta_left": meta, "mismatched": mismatched,
            "missing_in_file": missing, "ok": ok,
        }
        report["ok"] &= ok
    unused = {f: sorted(set(files[f]) - used[f]) for f in files}
    report["unused_file_keys"] = {f: v for f, v in unused.items() if v}
    report["ok"] &= not report["unused_file_keys"]
    report["check"] = ("torch.equal of every state_dict tensor of each module loaded by ModelLedger(dtype=float32) "
                       "against the tensor written under its file key; no tensor left on meta; every file key "
                       "consumed by some component (the transformer builder also reads the connector keys and "
                       "ignores them, strict=False)")
    return report
