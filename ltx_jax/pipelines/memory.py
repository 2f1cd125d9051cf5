"""`generate`'s memory check: per-device bytes of each phase estimated from headers and sizes, before any load.

No ltx_core counterpart (the official pipelines find out by running out of memory). The estimate is a model,
not a measurement: weights are exact (parameter counts from the file headers x the run's dtype, divided as
the weight preset shards them); activations use a few live `[tokens, width]` buffers per DiT block plus one
blocked attention-logit tile, and the VAE decode a few full-resolution feature maps of the decoder's last
level (bounded by the tile with `--tiling`). `check` refuses a run whose peak exceeds the capacity and names
the options that would bring it under.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

__all__ = ["MemoryEstimate", "MemoryError_", "estimate", "check", "device_capacity", "GiB"]

GiB = 1024**3
_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
_ACT_BUFFERS = 14  # live [tokens, inner_dim] buffers per block: x, norms, q/k/v, attention out, FF hidden (4x)
_VAE_BUFFERS = 4  # live decoder feature maps at the last (full-resolution) level


class MemoryError_(RuntimeError):  # noqa: N801 - MemoryError is a builtin
    """The run would not fit; the message names the options that would make it fit."""


@dataclass
class MemoryEstimate:
    phases: dict[str, dict[str, int]]  # phase -> {part: bytes per device}
    capacity: int | None
    capacity_source: str
    options: dict[str, object] = field(default_factory=dict)  # what this estimate assumed

    def total(self, phase: str) -> int:
        return sum(self.phases[phase].values())

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=self.total)

    @property
    def peak(self) -> int:
        return self.total(self.peak_phase)

    @property
    def fits(self) -> bool:
        return self.capacity is None or self.peak <= self.capacity

    def to_json(self) -> dict:
        return {"peak_bytes_per_device": self.peak, "peak_phase": self.peak_phase, "capacity_bytes": self.capacity,
                "capacity_source": self.capacity_source, "phases": self.phases, "assumed": self.options}


def device_capacity(override_gib: float | None = None) -> tuple[int | None, str]:
    """Bytes one device can hold: `--memory-limit`, else the device's own limit, else host memory / devices."""
    if override_gib is not None:
        return int(override_gib * GiB), "--memory-limit"
    import jax
    dev = jax.devices()[0]
    stats = None
    try:
        stats = dev.memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory stats
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{dev.platform} bytes_limit"
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None, "unknown"
    return avail // max(1, jax.device_count()), f"available host memory / {jax.device_count()} devices"


def estimate(plan, *, capacity: int | None = None, capacity_source: str = "", **overrides) -> MemoryEstimate:
    """Per-device bytes of each phase. `overrides` replace plan fields (mesh, fp8, weights, tiling, stages)."""
    p = dataclasses.replace(plan, **overrides) if overrides else plan
    cfg = p.config.transformer
    b = _BYTES[p.dtype]
    n = math.prod(p.mesh.values())
    params = p.component_params
    dit = params.get("transformer", 0)
    fp8 = params.get("transformer:fp8", 0) if (p.fp8 != "off" and p.fp8_file) else 0
    dit_bytes = (dit - fp8) * b + fp8
    shard = {"replicated": 1, "fsdp": n, "tensor": p.mesh.get("tensor", 1)}[p.weights]
    copies = 2 if p.stage2_loras is not None else 1
    weights = {"transformer": copies * dit_bytes // shard}
    resident = {"vae_encoder": params.get("vae_encoder", 0) * b, "vae_decoder": params.get("vae_decoder", 0) * b}
    if p.upsampler:
        resident["upsampler"] = _file_params(p, "upsampler") * b
    phases: dict[str, dict[str, int]] = {}
    if p.gemma is not None:
        gemma = sum(f.size_bytes for f in p.files if f.role == "gemma") // 2 * b  # stored bf16
        phases["text"] = {"gemma": gemma // (n if p.weights != "replicated" else 1),
                          "connectors": params.get("connectors", 0) * b}
    inner, audio_inner = cfg.inner_dim, cfg.audio_inner_dim
    for st in p.stages:
        rows = st.passes // p.mesh["data"] if st.passes % p.mesh["data"] == 0 else st.passes
        ctx = p.mesh["context"]
        tok = math.ceil(st.video_tokens / ctx) if st.video_tokens % ctx == 0 else st.video_tokens
        act = rows * tok * inner * b * _ACT_BUFFERS
        kv = rows * 2 * st.video_tokens * inner * b if ctx > 1 else 0  # gathered keys / values
        logits = rows * cfg.num_attention_heads * min(128, tok) * st.video_tokens * 4
        audio = rows * st.audio_tokens * audio_inner * b * _ACT_BUFFERS
        text = rows * p.text_tokens * (inner + audio_inner) * b
        phases[st.name] = {**weights, **resident, "activations": act + kv + logits + audio + text}
    last = p.stages[-1]
    frames, height, width = last.frames, last.height, last.width
    if p.temporal_upsampler:
        frames = 2 * frames - 1
    if p.tiling:
        frames, height, width = min(frames, 64 + 24), min(height, 512 + 64), min(width, 512 + 64)
    vae = p.config.vae
    patch = 4
    feature = frames * (height // patch) * (width // patch) * vae.decoder_base_channels * 4 * _VAE_BUFFERS
    out_pixels = last.frames * last.height * last.width * 3 * 4 * 2  # float32 frames + blend buffer
    phases["decode"] = {**weights, "vae_decoder": resident["vae_decoder"], "activations": feature + out_pixels}
    opts = {"mesh": p.mesh, "fp8": p.fp8, "weights": p.weights, "tiling": p.tiling, "dtype": p.dtype,
            "transformer_copies": copies}
    return MemoryEstimate(phases, capacity, capacity_source, opts)


def _file_params(plan, role: str) -> int:
    return sum(f.size_bytes for f in plan.files if f.role == role) // 4  # upsampler files: float32 or less


def _fmt(n: int) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / 1024**2:.1f} MiB"


def _scaled_stages(plan, factor: float):
    """The plan's stages at `factor` of the size (height and width, multiples of 64)."""
    from ltx_jax.pipelines.plan import _stage
    h = max(64, int(plan.request.height * factor) // 64 * 64)
    w = max(64, int(plan.request.width * factor) // 64 * 64)
    stages = []
    for st in plan.stages:
        r = st.height / plan.request.height
        stages.append(_stage(st.name, st.frames, int(h * r) // 32 * 32 or 32, int(w * r) // 32 * 32 or 32,
                             plan.request.fps, plan.request.images, st.passes, st.evaluations))
    return stages, h, w


def suggestions(plan, est: MemoryEstimate) -> list[str]:
    """Each option that would bring the peak under the capacity, with its estimate."""
    from ltx_jax.pipelines import capabilities as cap
    cap_b, out = est.capacity, []

    def fits(**kw) -> MemoryEstimate | None:
        e = estimate(plan, capacity=cap_b, **kw)
        return e if e.fits else None

    if plan.fp8 == "off" and plan.fp8_file and cap.has_fp8() and (e := fits(fp8="weights")):
        out.append(f"--fp8 weights (keep the file's e4m3 weights): {_fmt(e.peak)} per device")
    elif plan.fp8 == "off" and not plan.fp8_file and plan.component_params.get("transformer"):
        lighter = dataclasses.replace(plan, fp8="weights", fp8_file=True,
                                      component_params={**plan.component_params,
                                                        "transformer:fp8": plan.component_params["transformer"]})
        e = estimate(lighter, capacity=cap_b)
        if e.fits:
            out.append(f"an FP8 checkpoint with --fp8 weights: about {_fmt(e.peak)} per device")
    for c in (2, 4, 8, 16, 32, 64):
        if c * plan.mesh["data"] * plan.mesh["tensor"] <= plan.devices and c <= plan.mesh["context"]:
            continue
        mesh = {**plan.mesh, "context": c}
        e = fits(mesh=mesh)
        if e:
            have = "" if math.prod(mesh.values()) <= plan.devices else f" (needs {math.prod(mesh.values())} devices)"
            out.append(f"more devices on context: --mesh data={mesh['data']},context={c}{have}: {_fmt(e.peak)}")
            break
    for n in (plan.devices, 8, 64):
        if n < 2:
            continue
        mesh = {"data": 1, "context": n, "tensor": 1}
        if "fsdp" in cap.weight_presets() and (e := fits(mesh=mesh, weights="fsdp")):
            have = "" if n <= plan.devices else f" (needs {n} devices)"
            out.append(f"FSDP weights: --weights fsdp --mesh context={n}{have}: {_fmt(e.peak)} per device")
            break
    if not plan.tiling and est.peak_phase == "decode" and (e := fits(tiling=True)):
        out.append(f"--tiling (tiled VAE decode): {_fmt(e.peak)} per device")
    for factor in (0.75, 0.5, 0.25):
        stages, h, w = _scaled_stages(plan, factor)
        if (e := fits(stages=stages)):
            out.append(f"a smaller size: --height {h} --width {w}: {_fmt(e.peak)} per device")
            break
    return out


def check(plan, *, limit_gib: float | None = None) -> MemoryEstimate:
    """The estimate; raises `MemoryError_` naming the options that would fit when the peak exceeds capacity."""
    capacity, source = device_capacity(limit_gib)
    est = estimate(plan, capacity=capacity, capacity_source=source)
    if est.fits:
        return est
    parts = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(est.phases[est.peak_phase].items(), key=lambda kv: -kv[1]))
    options = suggestions(plan, est)
    lines = [f"this run needs about {_fmt(est.peak)} per device (phase {est.peak_phase}: {parts}); a device holds "
             f"{_fmt(capacity)} ({source})."]
    lines.append("Options that would make it fit:" if options else "No single option makes it fit; combine FP8, "
                 "more devices on context, FSDP, --tiling and a smaller size.")
    lines += [f"  - {o}" for o in options]
    lines.append("(--no-memory-check runs it anyway)")
    raise MemoryError_("\n".join(lines))
