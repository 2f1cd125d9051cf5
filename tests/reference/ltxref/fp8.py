"""The FP8 transformer file (official pre-quantized layout) and the three runs recorded from it.

Layout: each quantized Linear stores `.weight` float8_e4m3fn [out, in], `.weight_scale` (f32 scalar, w = q*scale)
and `.input_scale` (f32 scalar, static activation scale = amax(|x|)/448 calibrated on the fixture's own forward
pass); everything else is bf16. Quantized = every `nn.Linear` of `LTXModel` whose name matches none of ltx-core's
`EXCLUDED_LAYER_SUBSTRINGS` (the `fp8_scaled_mm` module rule), quantized with `quantize_weight_to_fp8_per_tensor`.
"""

import json
from dataclasses import replace
from pathlib import Path

import safetensors.torch
import torch
from torch import nn

from ltxref.cases import BF16, TransformerInputs
from ltxref.components import FP8_FILE, TRANSFORMER, checkpoint_config
from ltxref.record import Recorder
from ltxref.weights import ledger
from ltx_core.model.transformer import X0Model
from ltx_core.quantization import QuantizationPolicy
from ltx_core.quantization.fp8_scaled_mm import (
    EXCLUDED_LAYER_SUBSTRINGS,
    _should_skip_layer,
    quantize_weight_to_fp8_per_tensor,
)

FP8_MAX = torch.finfo(torch.float8_e4m3fn).max  # 448
PREFIX = "model.diffusion_model."


def quantized_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and not _should_skip_layer(n, EXCLUDED_LAYER_SUBSTRINGS)]


def calibrate_input_amax(model: nn.Module, layers: list[str], inp: TransformerInputs) -> dict[str, torch.Tensor]:
    """amax(|x|) of each layer's input on the main case's float32 forward pass."""
    amax: dict[str, torch.Tensor] = {}
    hooks = []
    for name in layers:
        def hook(_mod, args, _out, name=name):  # noqa: ANN001, ANN202
            a = args[0].detach().abs().max().to(torch.float32)
            amax[name] = torch.maximum(amax[name], a) if name in amax else a
        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        vm, am = inp.modalities()
        model(video=vm, audio=am, perturbations=None)
    finally:
        for h in hooks:
            h.remove()
    missing = sorted(set(layers) - set(amax))
    if missing:
        raise AssertionError(f"FP8 calibration: layers never called: {missing}")
    return amax


def write_fp8_file(out_dir: Path, preset: dict, model: nn.Module, inp: TransformerInputs) -> list[str]:
    layers = quantized_layers(model)
    amax = calibrate_input_amax(model, layers, inp)
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        layer, _, leaf = k.rpartition(".")
        if layer in amax and leaf == "weight":
            q_in_out, weight_scale = quantize_weight_to_fp8_per_tensor(v)  # q is returned as [in, out]
            tensors[PREFIX + k] = q_in_out.t().contiguous()  # stored [out, in], as the official files
            tensors[PREFIX + layer + ".weight_scale"] = weight_scale.to(torch.float32).reshape(())
            tensors[PREFIX + layer + ".input_scale"] = (amax[layer] / FP8_MAX).reshape(())
        else:
            tensors[PREFIX + k] = v.to(BF16).contiguous()
    meta = {"config": json.dumps(checkpoint_config(preset)), "model_version": preset["model_version"]}
    safetensors.torch.save_file(tensors, str(out_dir / FP8_FILE), metadata=meta)
    return layers


class EmulatedScaledMMLinear(nn.Module):
    """Emulates FP8Linear's static per-tensor scaled matmul in float32 (not official code).

    x_q = e4m3(clamp(x / input_scale, -448, 448)); y = (x_q @ q^T) * (input_scale * weight_scale) + bias.
    """

    def __init__(self, q: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor,
                 bias: torch.Tensor | None) -> None:
        super().__init__()
        self.q, self.weight_scale, self.input_scale, self.bias = q, weight_scale, input_scale, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq = (x / self.input_scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).to(torch.float32)
        y = torch.nn.functional.linear(xq, self.q.to(torch.float32)) * (self.input_scale * self.weight_scale)
        return y if self.bias is None else y + self.bias.to(torch.float32)


def _dequantized_model(preset: dict, fp8_sd: dict[str, torch.Tensor], layers: list[str]) -> nn.Module:
    sd = {}
    for fk, v in fp8_sd.items():
        k = fk[len(PREFIX):]
        layer, _, leaf = k.rpartition(".")
        if leaf in ("weight_scale", "input_scale"):
            continue
        if layer in layers and leaf == "weight":
            sd[k] = v.to(torch.float32) * fp8_sd[PREFIX + layer + ".weight_scale"]
        else:
            sd[k] = v.to(torch.float32)
    model = TRANSFORMER.meta_module(checkpoint_config(preset))
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval()


def _rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.float() - ref.float()).norm() / ref.float().norm())


def run_fp8(rec: Recorder, out_dir: Path, preset: dict, x0_f32: nn.Module, inp: TransformerInputs,
            ref_velocity: tuple[torch.Tensor, torch.Tensor]) -> dict:
    layers = write_fp8_file(out_dir, preset, x0_f32.velocity_model, inp)
    fp8_sd = safetensors.torch.load_file(str(out_dir / FP8_FILE))
    vm, am = inp.modalities()
    errors: dict[str, dict[str, float]] = {}

    def record(tag: str, out: tuple[torch.Tensor, torch.Tensor]) -> None:
        rec.add(f"fp8.out.{tag.format(m='video')}", out[0])
        rec.add(f"fp8.out.{tag.format(m='audio')}", out[1])
        errors[tag.format(m="*")] = {m: _rel_err(o, r) for m, o, r in zip(("video", "audio"), out, ref_velocity)}

    # 1. ltx-core's fp8_cast policy on this file, as ModelLedger(dtype=bf16, quantization=fp8_cast()) runs it.
    cast = ledger(out_dir, BF16, checkpoint=FP8_FILE, quantization=QuantizationPolicy.fp8_cast()).transformer()
    vb = replace(vm, latent=vm.latent.to(BF16), positions=vm.positions.to(BF16), context=vm.context.to(BF16))
    ab = replace(am, latent=am.latent.to(BF16), context=am.context.to(BF16))
    record("fp8_cast_{m}_velocity_bf16", cast.velocity_model(video=vb, audio=ab, perturbations=None))

    # 2. Correct dequantization (w = q * weight_scale, every other tensor bf16 -> f32), float32 activations.
    dq = _dequantized_model(preset, fp8_sd, layers)
    record("dequant_{m}_velocity_f32", dq(video=vm, audio=am, perturbations=None))

    # 3. Emulated static per-tensor scaled matmul (activations quantized with input_scale).
    em = _dequantized_model(preset, fp8_sd, layers)
    for name in layers:
        parent, attr = name.rsplit(".", 1)
        lin = em.get_submodule(name)
        setattr(em.get_submodule(parent), attr, EmulatedScaledMMLinear(
            fp8_sd[PREFIX + name + ".weight"], fp8_sd[PREFIX + name + ".weight_scale"],
            fp8_sd[PREFIX + name + ".input_scale"], lin.bias))
    record("emulated_scaled_mm_{m}_velocity_f32", X0Model(em).velocity_model(video=vm, audio=am, perturbations=None))

    return {
        "file": FP8_FILE,
        "quantized_layers": layers,
        "excluded_layer_substrings": list(EXCLUDED_LAYER_SUBSTRINGS),
        "rule": "every nn.Linear of LTXModel not matching EXCLUDED_LAYER_SUBSTRINGS (fp8_scaled_mm module rule); "
                "weight float8_e4m3fn [out, in] from quantize_weight_to_fp8_per_tensor (transposed back), "
                "weight_scale = amax(|w|)/448, input_scale = amax(|x|)/448 on the main case's f32 forward pass; "
                "every other tensor bf16",
        "runs": {
            "fp8_cast_*_velocity_bf16": "ModelLedger(dtype=bf16, quantization=QuantizationPolicy.fp8_cast()) on the "
                                        "FP8 file: scales ignored (strict=False), fp8 weights upcast without scale; "
                                        "inputs as in the bf16 section",
            "dequant_*_velocity_f32": "LTXModel in float32 with w = q.float()*weight_scale and all bf16 tensors "
                                      "upcast; main case's float32 inputs",
            "emulated_scaled_mm_*_velocity_f32": "as dequant, but each quantized Linear computes "
                                                 "(e4m3(clamp(x/input_scale, +-448)) @ q^T) * input_scale*weight_scale "
                                                 "+ bias in float32 (emulation, not official code)",
        },
        "relative_error_vs_f32_velocity": errors,
    }
