"""LoRA fixture content (docs/reference-fixtures-lora.md): bf16 checkpoint, two LoRA files in the official
layout, malformed probes, and the official fusion through `ModelLedger` (and `apply_loras` on the scaled-FP8
file) for each case.

LoRA files follow what `ltx-trainer` writes: `diffusion_model.<path>.lora_A.weight` [r, in] and
`.lora_B.weight` [out, r], bfloat16, no alpha, no metadata. Values are seeded per key like the checkpoint.
"""

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors
import safetensors.torch
import torch

from ltxref.components import CHECKPOINT_FILE, FP8_FILE
from ltxref.official import gemma_width  # noqa: F401  (import order: ltx_core.loader first)
from ltxref.record import Recorder
from ltx_core.guidance.perturbations import BatchedPerturbationConfig
from ltx_core.loader import LTXV_LORA_COMFY_RENAMING_MAP
from ltx_core.loader.fuse_loras import apply_loras
from ltx_core.loader.primitives import LoraPathStrengthAndSDOps, LoraStateDictWithStrength
from ltx_core.loader.registry import StateDictRegistry
from ltx_core.loader.sd_ops import SDOps
from ltx_core.loader.sft_loader import SafetensorsModelStateDictLoader
from ltx_core.model.transformer import LTXV_MODEL_COMFY_RENAMING_MAP, Modality
from ltx_core.quantization import QuantizationPolicy
from ltx_core.quantization.fp8_scaled_mm import FP8_TRANSPOSE_SD_OPS
from ltx_pipelines.utils.model_ledger import ModelLedger

CPU = torch.device("cpu")
BF16 = torch.bfloat16
PREFIX = "model.diffusion_model."
LORA_PREFIX = "diffusion_model."
ATTENTIONS = ("attn1", "attn2", "audio_attn1", "audio_attn2", "audio_to_video_attn", "video_to_audio_attn")
PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")
FEED_FORWARD = ("ff.net.0.proj", "ff.net.2", "audio_ff.net.0.proj", "audio_ff.net.2")
LORA_A, LORA_B = "lora_a_attn_r4.safetensors", "lora_b_ff_r2.safetensors"
B_SCALE = 0.12  # std of lora_B entries: relative output changes of ~0.1-0.3 (manifest: relative_output_change)


def _generator(seed: int, key: str) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % (2**63))


def lora_targets(num_layers: int) -> dict[str, list[str]]:
    """{file: [module paths]}: A on every attention projection of every block, B on the FFNs of even blocks."""
    a = [f"transformer_blocks.{i}.{att}.{p}" for i in range(num_layers) for att in ATTENTIONS for p in PROJECTIONS]
    b = [f"transformer_blocks.{i}.{ff}" for i in range(0, num_layers, 2) for ff in FEED_FORWARD]
    return {LORA_A: a, LORA_B: b}


def make_lora(paths: list[str], rank: int, shapes: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """A ~ N(0, 1/in), B ~ N(0, B_SCALE^2), stored in bfloat16 like the trainer's default precision."""
    out = {}
    for p in paths:
        fan_out, fan_in = shapes[f"{PREFIX}{p}.weight"]
        a = torch.randn((rank, fan_in), generator=_generator(seed, p + ".A")) / fan_in**0.5
        b = B_SCALE * torch.randn((fan_out, rank), generator=_generator(seed, p + ".B"))
        out[f"{LORA_PREFIX}{p}.lora_A.weight"] = a.to(BF16).contiguous()
        out[f"{LORA_PREFIX}{p}.lora_B.weight"] = b.to(BF16).contiguous()
    return out


def write_bf16_checkpoint(main: Path, out: Path) -> dict[str, list[int]]:
    """The main fixture's float32 checkpoint rounded to bfloat16 (same keys and metadata). Returns shapes."""
    with safetensors.safe_open(str(main / CHECKPOINT_FILE), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k).to(BF16).contiguous() for k in f.keys()}
    safetensors.torch.save_file(tensors, str(out / CHECKPOINT_FILE), metadata=meta)
    return {k: list(v.shape) for k, v in tensors.items()}


@dataclass(frozen=True)
class Case:
    loras: tuple[tuple[str, float], ...]
    dtype: torch.dtype | None
    registry: str  # "default" (DummyRegistry, as the pipelines) or "state_dict"
    fp8_cast: bool = False


CASES = {
    "base": Case((), BF16, "default"),
    "a": Case(((LORA_A, 1.0),), BF16, "default"),
    "ab": Case(((LORA_A, 0.7), (LORA_B, 0.5)), BF16, "default"),
    "base_f32": Case((), torch.float32, "state_dict"),
    "a_f32": Case(((LORA_A, 1.0),), torch.float32, "state_dict"),
    "ab_f32": Case(((LORA_A, 0.7), (LORA_B, 0.5)), torch.float32, "state_dict"),
    "fp8cast_base": Case((), None, "default", fp8_cast=True),
    "fp8cast_ab": Case(((LORA_A, 0.7), (LORA_B, 0.5)), None, "default", fp8_cast=True),
}
REFERENCE_CASE = {"a": "base", "ab": "base", "a_f32": "base_f32", "ab_f32": "base_f32", "fp8cast_ab": "fp8cast_base",
                  "fp8cast_base": "base"}


def recorded_params(num_layers: int) -> list[str]:
    last = num_layers - 1
    return ["transformer_blocks.0.attn1.to_q.weight", "transformer_blocks.0.attn2.to_k.weight",
            "transformer_blocks.0.audio_attn2.to_v.weight",
            f"transformer_blocks.{last}.audio_to_video_attn.to_q.weight",
            f"transformer_blocks.{last}.video_to_audio_attn.to_out.0.weight",
            "transformer_blocks.0.ff.net.0.proj.weight",
            "transformer_blocks.0.audio_ff.net.2.weight", "transformer_blocks.1.ff.net.2.weight",
            "transformer_blocks.0.attn1.to_q.bias"]


def build_model(out: Path, case: Case, lora_dir: Path | None = None):
    d = lora_dir or out
    loras = tuple(LoraPathStrengthAndSDOps(str(d / f), s, LTXV_LORA_COMFY_RENAMING_MAP) for f, s in case.loras)
    registry = StateDictRegistry() if case.registry == "state_dict" else None
    quant = QuantizationPolicy.fp8_cast() if case.fp8_cast else None
    ledger = ModelLedger(dtype=case.dtype or BF16, device=CPU, checkpoint_path=str(out / CHECKPOINT_FILE),
                         loras=loras, registry=registry, quantization=quant)
    return ledger.transformer().velocity_model


# Deviation from docs/reference-fixtures-lora.md, which casts timesteps to bf16 too: the pipelines (and the main
# fixture's bf16 run) keep them float32, and bf16-rounded timesteps alone move ltx-core's bf16 output by ~20%.
INPUTS_NOTE = ("transformer.in.* of the main fixture; in the bf16 and fp8 cases latent and context are cast to "
               "bfloat16, timesteps, positions and sigma stay float32 (as in the pipelines)")


def modalities(inputs: dict[str, np.ndarray], dtype: torch.dtype) -> tuple[Modality, Modality]:
    """The main fixture's transformer inputs; latent and context cast to `dtype` (bf16 / fp8 cases)."""
    sigma = torch.tensor(float(inputs["transformer.in.sigma"][0]), dtype=torch.float32)

    def m(s: str) -> Modality:
        t = lambda k: torch.from_numpy(inputs[f"transformer.in.{s}.{k}"])  # noqa: E731
        return Modality(latent=t("latent").to(dtype), sigma=sigma, timesteps=t("timesteps"),
                        positions=t("positions"), context=t("context").to(dtype), enabled=True)
    return m("video"), m("audio")


def run_cases(rec: Recorder, out: Path, inputs: dict[str, np.ndarray], num_layers: int) -> dict:
    report = {}
    params = recorded_params(num_layers)
    outs = {}
    for name, case in CASES.items():
        model = build_model(out, case)
        act = case.dtype or BF16
        vm, am = modalities(inputs, act)
        with torch.no_grad():
            v, a = model(video=vm, audio=am, perturbations=BatchedPerturbationConfig.empty(1))
        outs[name] = (v.float(), a.float())
        rec.add(f"lora.{name}.out.video_velocity", v)
        rec.add(f"lora.{name}.out.audio_velocity", a)
        sd = model.state_dict()
        for p in params:
            rec.add(f"lora.{name}.weight.{p}", sd[p], torch_dtype=str(sd[p].dtype).removeprefix("torch."))
        report[name] = {"loras": [list(x) for x in case.loras],
                        "ledger_dtype": None if case.dtype is None else str(case.dtype),
                        "quantization": "fp8_cast" if case.fp8_cast else None,
                        "registry": case.registry, "fp8_cast": case.fp8_cast,
                        "param_dtypes": sorted({str(t.dtype).removeprefix("torch.") for t in sd.values()})}
    change = {}
    for name, ref in REFERENCE_CASE.items():
        change[name] = {s: float((outs[name][i] - outs[ref][i]).norm() / outs[ref][i].norm())
                        for i, s in enumerate(("video", "audio"))}
    return {"cases": report, "relative_output_change": change}


def scaled_fp8_fusion(rec: Recorder, main: Path, out: Path, num_layers: int) -> dict:
    """`apply_loras` on the FP8 file as the scaled-mm loader reads it (weights transposed to [in, out]).

    The scaled-mm policy needs TensorRT-LLM to build a model, but the fusion itself is plain torch; it runs here
    on the state dict that policy's SDOps produce. Recorded back in the file layout [out, in].
    """
    ops = SDOps(name="model+fp8_transpose", mapping=(*LTXV_MODEL_COMFY_RENAMING_MAP.mapping,
                                                     *FP8_TRANSPOSE_SD_OPS.mapping))
    loader = SafetensorsModelStateDictLoader()
    model_sd = loader.load([str(main / FP8_FILE)], sd_ops=ops, device=CPU)
    loras = [LoraStateDictWithStrength(loader.load([str(out / f)], sd_ops=LTXV_LORA_COMFY_RENAMING_MAP, device=CPU), s)
             for f, s in ((LORA_A, 0.7), (LORA_B, 0.5))]
    fused = apply_loras(model_sd, loras, dtype=BF16).sd
    recorded = []
    for p in recorded_params(num_layers):
        if not p.endswith(".weight"):
            continue
        w = fused[p]
        scale_key = p[: -len("weight")] + "weight_scale"
        if w.dtype == torch.float8_e4m3fn:  # [in, out] in the fused state dict: back to the file layout
            rec.add(f"lora.fp8scaled_ab.weight.{p}", w.t(), torch_dtype="float8_e4m3fn")
            if scale_key in fused:
                rec.add(f"lora.fp8scaled_ab.weight_scale.{p}", fused[scale_key].reshape(1))
        else:
            rec.add(f"lora.fp8scaled_ab.weight.{p}", w, torch_dtype=str(w.dtype).removeprefix("torch."))
        recorded.append(p)
    return {"function": "ltx_core.loader.fuse_loras.apply_loras(dtype=bfloat16)", "sd_ops": ops.name,
            "loras": [[LORA_A, 0.7], [LORA_B, 0.5]], "recorded": recorded,
            "note": "weights recorded in the file layout [out, in] (the fused state dict holds FP8 weights [in, out])"}


def write_probes(out: Path, shapes: dict[str, list[int]], seed: int) -> dict[str, list[str]]:
    """Malformed LoRA files for the facts (docs/reference-fixtures-lora.md)."""
    def pair(path: str, rank: int = 2, fan_in: int | None = None, fan_out: int | None = None, prefix=LORA_PREFIX):
        w = shapes.get(f"{PREFIX}{path}.weight", [8, 8])
        a = torch.randn((rank, fan_in or w[1]), generator=_generator(seed, path + "A")).to(BF16)
        b = (0.1 * torch.randn((fan_out or w[0], rank), generator=_generator(seed, path + "B"))).to(BF16)
        return {f"{prefix}{path}.lora_A.weight": a, f"{prefix}{path}.lora_B.weight": b}

    n = len({k.split(".")[3] for k in shapes if k.startswith(PREFIX + "transformer_blocks.")})
    q = "transformer_blocks.0.attn1.to_q"
    probes = {
        "probe_unmatched.safetensors": {
            **pair(f"transformer_blocks.{n}.attn1.to_q", fan_in=shapes[f"{PREFIX}{q}.weight"][1],
                   fan_out=shapes[f"{PREFIX}{q}.weight"][0]),
            f"{LORA_PREFIX}{q}.lora_down.weight": torch.zeros(2, shapes[f"{PREFIX}{q}.weight"][1], dtype=BF16),
            f"{LORA_PREFIX}{q}.lora_up.weight": torch.zeros(shapes[f"{PREFIX}{q}.weight"][0], 2, dtype=BF16),
            **{k: v for k, v in pair("transformer_blocks.0.attn1.to_k").items() if "lora_A" in k},
            **pair("transformer_blocks.0.attn1.to_v", prefix="model.diffusion_model."),
            **pair("transformer_blocks.0.attn1.to_q_typo", fan_in=shapes[f"{PREFIX}{q}.weight"][1],
                   fan_out=shapes[f"{PREFIX}{q}.weight"][0]),
            **pair("video_embeddings_connector.transformer_1d_blocks.0.attn1.to_q",
                   fan_in=shapes[f"{PREFIX}video_embeddings_connector.transformer_1d_blocks.0.attn1.to_q.weight"][1],
                   fan_out=shapes[f"{PREFIX}video_embeddings_connector.transformer_1d_blocks.0.attn1.to_q.weight"][0]),
        },
        "probe_no_prefix.safetensors": pair(q, prefix=""),
        "probe_shape_mismatch.safetensors": pair(q, fan_in=shapes[f"{PREFIX}{q}.weight"][1] + 1),
    }
    for name, tensors in probes.items():
        safetensors.torch.save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / name))
    return {name: sorted(t) for name, t in probes.items()}


def run_probes(out: Path, num_layers: int) -> dict:
    base = build_model(out, CASES["base"]).state_dict()
    facts = {}
    for name, fact in (("probe_unmatched.safetensors", "unmatched_keys"), ("probe_no_prefix.safetensors",
                                                                            "key_without_prefix"),
                       ("probe_shape_mismatch.safetensors", "shape_mismatch")):
        try:
            sd = build_model(out, Case(((name, 1.0),), BF16, "default")).state_dict()
            changed = sorted(k for k in base if not torch.equal(base[k], sd[k]))
            facts[fact] = {"probe": name, "raised": None, "changed_tensors": changed}
        except Exception as e:  # noqa: BLE001  (the fact is what the official loader does)
            facts[fact] = {"probe": name, "raised": f"{type(e).__name__}: {e}"[:300]}
    return facts


def load_inputs(main: Path) -> dict[str, np.ndarray]:
    data = np.load(main / "fixtures.npz")
    return {k: data[k] for k in data.files if k.startswith("transformer.in.") and ".keyframe." not in k}


def manifest_lora_keys(out: Path) -> dict:
    keys = {}
    for f in (LORA_A, LORA_B):
        with safetensors.safe_open(str(out / f), framework="pt") as h:
            keys[f] = {k: list(h.get_slice(k).get_shape()) for k in sorted(h.keys())}
    return keys


def dump(obj) -> str:
    return json.dumps(obj, indent=1)
