"""`ltx-jax inspect`: what a safetensors file is, from its header alone.

Reads only the JSON header (a 46 GB checkpoint takes milliseconds): file kind (full LTX-2 / LTX-2.3
checkpoint, transformer-only, latent upsampler, LoRA, TAE, unknown), dev / distilled when the
metadata says, bf16 / FP8 (scaled or cast), the components with parameter counts and dtypes, and a
config summary. Missing or unexpected keys against the config's official layout are reported.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ltx_jax.checkpoint import schema as S
from ltx_jax.checkpoint.layout import file_group, mismatch
from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
from ltx_jax.configs import ConfigError, LTXConfig, from_metadata, upsampler_from_metadata

__all__ = ["FileReport", "inspect_file", "format_report", "checkpoint_component"]

checkpoint_component = file_group  # the component a single-file checkpoint key belongs to (layout.FILE_GROUPS)

_UPSAMPLER_KEYS = {"initial_conv.weight", "final_conv.weight"}
_FP8 = {"F8_E4M3", "F8_E5M2"}


@dataclass
class Component:
    name: str
    num_tensors: int = 0
    num_parameters: int = 0
    dtypes: Counter = field(default_factory=Counter)  # dtype -> parameter count

    def to_json(self) -> dict[str, Any]:
        return {"tensors": self.num_tensors, "parameters": self.num_parameters, "dtypes": dict(self.dtypes)}


@dataclass
class FileReport:
    path: str
    size_bytes: int
    kind: str  # ltx_checkpoint | ltx_transformer | upsampler | lora | tae | unknown
    description: str
    num_tensors: int
    num_parameters: int
    dtypes: dict[str, int]
    components: dict[str, Component]
    details: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size_bytes": self.size_bytes, "kind": self.kind, "description": self.description,
                "tensors": self.num_tensors, "parameters": self.num_parameters, "dtypes": self.dtypes,
                "components": {k: c.to_json() for k, c in self.components.items()}, "details": self.details,
                "config": self.config, "warnings": self.warnings}


def _components(f: SafetensorsFile, classify) -> dict[str, Component]:
    out: dict[str, Component] = {}
    for info in f.infos.values():
        name = classify(info.name)
        c = out.setdefault(name, Component(name))
        c.num_tensors += 1
        c.num_parameters += info.size
        c.dtypes[info.dtype] += info.size
    return out


def _precision(f: SafetensorsFile) -> dict[str, Any]:
    fp8 = [i for i in f.infos.values() if i.dtype in _FP8]
    if not fp8:
        dominant = Counter()
        for i in f.infos.values():
            dominant[i.dtype] += i.size
        return {"precision": dominant.most_common(1)[0][0].lower() if dominant else "empty"}
    scales = [k for k in f.infos if k.endswith(".weight_scale")]
    blocks = sorted({int(m.group(1)) for i in fp8 if (m := re.search(r"transformer_blocks\.(\d+)\.", i.name))})
    return {"precision": "fp8-scaled" if scales else "fp8-cast", "fp8_tensors": len(fp8),
            "fp8_weight_scales": len(scales), "fp8_input_scales": sum(k.endswith(".input_scale") for k in f.infos),
            "fp8_blocks": blocks}


def _variant(metadata: dict[str, str], path: str) -> str:
    """dev / distilled, only where the metadata (or failing that, the file name) says so."""
    text = " ".join(v for k, v in metadata.items() if k != "config").lower()
    for source, where in ((text, "metadata"), (path.rsplit("/", 1)[-1].lower(), "file name")):
        if "distill" in source:
            return f"distilled ({where})"
        if re.search(r"\bdev\b|-dev\b|_dev\b", source):
            return f"dev ({where})"
    return "variant unknown"


def _config_summary(cfg: LTXConfig) -> dict[str, Any]:
    t, c = cfg.transformer, cfg.connector
    summary = {
        "model_version": cfg.model_version,
        "family": "LTX-2.3" if cfg.is_ltx_2_3 else "LTX-2",
        "layers": t.num_layers,
        "video": f"{t.num_attention_heads} heads x {t.attention_head_dim} = {t.inner_dim}",
        "audio": f"{t.audio_num_attention_heads} heads x {t.audio_attention_head_dim} = {t.audio_inner_dim}",
        "rope": f"{t.rope_type}, {'float64' if t.double_precision_rope else 'float32'} frequency grid",
        "gated_attention": t.apply_gated_attention, "prompt_adaln": t.cross_attention_adaln,
        "feature_extractor": c.feature_extractor,
        "connectors": f"{c.connector_num_layers} layers video {c.video_inner_dim} / audio {c.audio_inner_dim}",
        "av_ca_timestep_scale_multiplier": t.av_ca_timestep_scale_multiplier,
    }
    if cfg.vae is not None:
        summary["vae"] = {"latent_channels": cfg.vae.latent_channels, "encoder_blocks": len(cfg.vae.encoder_blocks),
                          "decoder_blocks": len(cfg.vae.decoder_blocks),
                          "timestep_conditioning": cfg.vae.timestep_conditioning,
                          "padding": f"{cfg.vae.encoder_padding_mode}/{cfg.vae.decoder_padding_mode}"}
    return summary


def _layout_check(f: SafetensorsFile, cfg: LTXConfig, present: set[str]) -> list[str]:
    """Keys the config says should be there but are not, and shapes that differ."""
    problems = []
    for component, expected in S.checkpoint_schema(cfg).items():
        if component not in present:
            continue
        missing, _, wrong = mismatch(expected, {k: i.shape for k, i in f.infos.items()})
        if missing:
            problems.append(f"{component}: {len(missing)} key(s) missing, e.g. {missing[:3]}")
        if wrong:
            k = wrong[0]
            problems.append(f"{component}: {len(wrong)} shape(s) differ from the config, e.g. {k} "
                            f"{f.infos[k].shape} != {expected[k]}")
    return problems


def _lora_details(f: SafetensorsFile) -> dict[str, Any]:
    ranks = Counter(i.shape[0] for k, i in f.infos.items() if k.endswith("lora_A.weight") and i.shape)
    targets = {k.rsplit(".lora_", 1)[0] for k in f.infos if ".lora_" in k}
    prefixes = Counter(k.split(".", 1)[0] for k in targets)
    return {"rank": max(ranks) if ranks else None, "ranks": dict(ranks), "target_layers": len(targets),
            "key_prefix": prefixes.most_common(1)[0][0] if prefixes else None}


def inspect_file(path: str) -> FileReport:
    """Classify and summarise a safetensors file; raises `SafetensorsError` for malformed files."""
    with SafetensorsFile(path) as f:
        keys = set(f.infos)
        dtypes = Counter()
        for i in f.infos.values():
            dtypes[i.dtype] += i.size
        report = FileReport(str(f.path), f.path.stat().st_size, "unknown", "unknown safetensors file", len(keys),
                            f.num_parameters, dict(dtypes), {})
        report.details.update(_precision(f))
        if any(k.startswith(S.TRANSFORMER_PREFIX + "transformer_blocks.") for k in keys):
            report.components = _components(f, checkpoint_component)
            full = "vae_decoder" in report.components
            report.kind = "ltx_checkpoint" if full else "ltx_transformer"
            report.details["variant"] = _variant(f.metadata, report.path)
            try:
                cfg = from_metadata(f.metadata, strict=False,
                                    tensor_shapes={k: i.shape for k, i in f.infos.items()})
            except ConfigError as e:
                cfg = None
                report.warnings.append(f"config: {e}")
            family = "LTX-2" if cfg is None else ("LTX-2.3" if cfg.is_ltx_2_3 else "LTX-2")
            if cfg is None:  # fall back to the keys: prompt AdaLN exists only in 2.3
                family = "LTX-2.3 (from keys)" if any("prompt_adaln_single" in k for k in keys) else "LTX-2 (from keys)"
            else:
                report.config = _config_summary(cfg)
                report.warnings += _layout_check(f, cfg, set(report.components))
            what = "full checkpoint" if full else "transformer-only file"
            report.description = (f"{family} {what}, {report.details['variant']}, "
                                  f"{report.details['precision']}")
        elif _UPSAMPLER_KEYS <= keys:
            report.kind = "upsampler"
            report.components = _components(f, lambda k: "upsampler")
            try:
                cfg = upsampler_from_metadata(f.metadata, strict=False)
                report.details["upsampler_kind"] = cfg.kind
                report.config = {k: v for k, v in cfg.to_dict().items()}
                expected = S.upsampler_schema(cfg)
                if set(expected) != keys:
                    report.warnings.append(f"keys differ from the config's layout: missing "
                                           f"{sorted(set(expected) - keys)[:3]}, unexpected {sorted(keys - set(expected))[:3]}")
            except ConfigError as e:
                report.warnings.append(f"config: {e}")
                report.details["upsampler_kind"] = _upsampler_kind_from_shapes(f)
            report.description = f"latent upsampler ({report.details['upsampler_kind']})"
        elif any(".lora_A." in k or ".lora_B." in k for k in keys):
            report.kind = "lora"
            report.components = _components(f, lambda k: "lora")
            report.details.update(_lora_details(f))
            report.description = f"LoRA, rank {report.details['rank']}, {report.details['target_layers']} layers"
        elif ("decoder.1.weight" in keys and "decoder.22.bias" in keys) or "encoder.17.weight" in keys:
            report.kind = "tae"
            report.components = _components(f, lambda k: k.split(".", 1)[0])
            width = f.infos["decoder.1.weight"].shape[0] if "decoder.1.weight" in keys else None
            variant = "taeltx2_3_wide" if width == 1024 else "taeltx_2 / taeltx2_3 (same layout)"
            report.details.update({"tae_variant": variant, "decoder_width": width})
            report.description = f"tiny autoencoder (TAEHV), {variant}"
        else:
            report.components = _components(f, lambda k: k.split(".", 1)[0])
    return report


def _upsampler_kind_from_shapes(f: SafetensorsFile) -> str:
    mid = f.infos["initial_conv.weight"].shape[0]
    if "upsampler.conv.weight" in f.infos:
        ratio = f.infos["upsampler.conv.weight"].shape[0] // mid
        return {4: "spatial_x2_rational", 9: "spatial_x1_5_rational (or x0.75)", 16: "spatial_x4_rational"}.get(
            ratio, "rational (unknown scale)")
    w = f.infos.get("upsampler.0.weight")
    if w is None:
        return "unknown"
    ratio = w.shape[0] // mid
    return {4: "spatial_x2", 2: "temporal_x2", 8: "spatiotemporal_x2"}.get(ratio, "unknown")


def _human(n: float, unit: str = "") -> str:
    for suffix in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.4g}{suffix}{unit}"
        n /= 1000
    return f"{n:.4g}P{unit}"


def format_report(report: FileReport) -> str:
    lines = [f"{report.path}", f"  kind:        {report.kind}", f"  what:        {report.description}",
             f"  size:        {_human(report.size_bytes, 'B')} in {report.num_tensors} tensors, "
             f"{_human(report.num_parameters)} parameters",
             f"  dtypes:      " + ", ".join(f"{d} {_human(n)}" for d, n in sorted(report.dtypes.items()))]
    for key, value in report.details.items():
        if key != "variant" and value not in (None, [], {}):
            lines.append(f"  {key + ':':<14}{value}")
    if report.components:
        lines.append("  components:")
        width = max(len(n) for n in report.components)
        for name, c in report.components.items():
            dts = ", ".join(f"{d}" for d in sorted(c.dtypes))
            lines.append(f"    {name:<{width}}  {c.num_tensors:>6} tensors  {_human(c.num_parameters):>8} params  {dts}")
    if report.config:
        lines.append("  config:")
        for key, value in report.config.items():
            lines.append(f"    {key}: {json.dumps(value) if isinstance(value, dict) else value}")
    for w in report.warnings:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)
