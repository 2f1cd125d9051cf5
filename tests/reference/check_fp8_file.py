"""Reference-env check that ltx-core 1.0.0 loads an FP8 file we wrote, and that our quantization is its own.

Usage: python check_fp8_file.py FP8_FILE SOURCE_FILE  -> prints one JSON object.

Loads FP8_FILE through ltx-core's ModelLedger with the `fp8_scaled_mm` policy's SDOps and module ops (built
directly: `QuantizationPolicy.fp8_scaled_mm()` only refuses because tensorrt_llm, needed for the forward, is
not installed here). Then, for every `FP8Linear` of the loaded transformer: the file's weight transposed,
weight_scale and input_scale are what it holds (bit for bit), and `quantize_weight_to_fp8_per_tensor` of the
SOURCE_FILE weight gives the same e4m3 bits and scale. Reports the FP8Linear names and anything left on meta.
"""

import json
import sys
from pathlib import Path

import safetensors.torch
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ltx_core.loader  # noqa: F401,E402  (must precede ltx_core.quantization)
from ltx_core.quantization.fp8_scaled_mm import (FP8_PREPARE_MODULE_OPS, FP8_TRANSPOSE_SD_OPS,  # noqa: E402
                                                 FP8Linear, quantize_weight_to_fp8_per_tensor)
from ltx_core.quantization.policy import QuantizationPolicy  # noqa: E402
from ltx_pipelines.utils.model_ledger import ModelLedger  # noqa: E402

PREFIX = "model.diffusion_model."


def main(fp8_file: str, source_file: str) -> dict:
    policy = QuantizationPolicy(sd_ops=FP8_TRANSPOSE_SD_OPS, module_ops=(FP8_PREPARE_MODULE_OPS,))
    model = ModelLedger(dtype=torch.bfloat16, device=torch.device("cpu"), checkpoint_path=fp8_file,
                        quantization=policy).transformer().velocity_model
    ours = safetensors.torch.load_file(fp8_file)
    src = safetensors.torch.load_file(source_file)
    bad, layers = [], []
    for name, m in model.named_modules():
        if not isinstance(m, FP8Linear):
            continue
        layers.append(name)
        k = PREFIX + name
        if not torch.equal(m.weight.view(torch.uint8), ours[k + ".weight"].t().contiguous().view(torch.uint8)):
            bad.append(f"{name}: loaded weight differs from the file's (transposed)")
        for s in ("weight_scale", "input_scale"):
            if not torch.equal(getattr(m, s).float().reshape(()), ours[k + "." + s].reshape(())):
                bad.append(f"{name}: loaded {s} differs")
        q, scale = quantize_weight_to_fp8_per_tensor(src[k + ".weight"])
        if not torch.equal(q.view(torch.uint8), ours[k + ".weight"].t().contiguous().view(torch.uint8)):
            bad.append(f"{name}: e4m3 bits differ from quantize_weight_to_fp8_per_tensor")
        if not torch.equal(scale.float().reshape(()), ours[k + ".weight_scale"].reshape(())):
            bad.append(f"{name}: weight_scale differs from quantize_weight_to_fp8_per_tensor")
    meta = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
    return {"fp8_layers": sorted(layers), "mismatches": bad, "on_meta": meta}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
