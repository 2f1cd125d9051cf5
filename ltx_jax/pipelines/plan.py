"""`generate`'s plan: every argument checked and every file classified before anything heavy starts.

Counterpart: the argument checks of ltx_pipelines `utils/args.py` and the pipelines' `assert_resolution`
(frames 1 + 8k, sizes multiples of 32 / 64), extended with what the official code finds out only when a load
fails: a file of the wrong kind (a LoRA passed as the checkpoint, ...), an unreadable image, a keyframe index
outside the video, a mesh that does not match the devices.

`build_plan(args)` reads file headers only (no weights), loads conditioning images (small) and returns a
`Plan`: resolved defaults, each stage's size and token counts, the files with their kinds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ltx_jax.pipelines.plan_files import ModelFile, PlanError, checkpoint_info, classify, exists, gemma_folder

__all__ = ["PlanError", "Plan", "StagePlan", "ModelFile", "build_plan", "parse_mesh", "parse_image_spec",
           "default_size"]

# Official default pixel sizes (ltx_pipelines PipelineParams): two-stage = 2 x stage 1; HQ: 1088 x 1920.
_DEFAULT_SIZE = {"distilled": (1024, 1536), "distilled-one-stage": (512, 768), "dev": (1024, 1536),
                 "dev-one-stage": (512, 768), "hq": (1088, 1920),
                 "a2vid": (1024, 1536)}
# Official distilled-LoRA strengths per pipeline: (stage 1, stage 2); None = not used in that stage.
LORA_STRENGTHS = {"dev": (None, 1.0), "hq": (0.25, 0.5), "a2vid": (None, 1.0)}
TEXT_TOKENS = 1024  # Gemma prompts are left-padded to 1024 tokens (official tokenizer rule)
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass(frozen=True)
class StagePlan:
    name: str
    frames: int
    height: int
    width: int
    grid: tuple[int, int, int]  # latent (F', H', W')
    video_tokens: int  # grid tokens + keyframe tokens
    audio_tokens: int
    passes: int  # guidance passes batched in one forward
    evaluations: int  # model evaluations (res_2s: 2 per step + 1)


@dataclass
class Plan:
    pipeline: str
    request: Any  # pipelines.generation.Request
    prompt: str | None
    negative_prompt: str | None
    prompt_file: str | None
    checkpoint: str
    config: Any  # LTXConfig
    component_params: dict[str, int]  # parameters per checkpoint component (from the header)
    fp8_file: bool
    files: list[ModelFile]
    loras: list[tuple[str, float]]
    stage1_loras: list[tuple[str, float]]
    stage2_loras: list[tuple[str, float]] | None
    steps: int | None
    upscale: float
    stages: list[StagePlan]
    mesh: dict[str, int]
    devices: int
    out: Path
    out_is_dir: bool
    formats: tuple[str, ...]
    dtype: str
    fp8: str = "off"
    attention: str = "auto"
    weights: str = "replicated"
    tiling: bool = False
    guidance: dict[str, Any] = field(default_factory=dict)  # {"video": GuiderParams, "audio": GuiderParams}
    gemma: str | None = None
    upsampler: str | None = None
    temporal_upsampler: str | None = None
    preview: str | None = None
    preview_every: int = 2
    notes: list[str] = field(default_factory=list)

    @property
    def text_tokens(self) -> int:
        return TEXT_TOKENS


def default_size(pipeline: str) -> tuple[int, int]:
    return _DEFAULT_SIZE[pipeline]


def parse_mesh(text: str | None, devices: int) -> dict[str, int]:
    """`data=2,context=4[,tensor=1]` -> {"data", "context", "tensor"}; None: every device on `context`."""
    if text is None:
        return {"data": 1, "context": devices, "tensor": 1}
    mesh = {"data": 1, "context": 1, "tensor": 1}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name not in mesh or not value.isdigit() or int(value) < 1:
            raise PlanError(f"--mesh {text!r}: expected comma-separated AXIS=N with AXIS in data, context, tensor "
                            f"and N >= 1 (e.g. data=2,context=4)")
        mesh[name] = int(value)
    n = math.prod(mesh.values())
    if n != devices:
        raise PlanError(f"--mesh {text!r} needs {n} devices; {devices} visible (JAX sees {devices}: set "
                        f"CUDA_VISIBLE_DEVICES / XLA_FLAGS, or change the mesh so the product is {devices})")
    return mesh


def parse_image_spec(parts: list[str]) -> tuple[str, int, float, int | None]:
    """`PATH[:FRAME[:STRENGTH]]` (one argument) or the official `PATH FRAME STRENGTH [CRF]` -> (path, frame,
    strength, crf or None)."""
    if len(parts) == 1:
        pieces = parts[0].split(":")
        nums: list[str] = []
        while len(pieces) > 1 and len(nums) < 2 and _NUMBER.fullmatch(pieces[-1]):
            nums.insert(0, pieces.pop())
        path, rest = ":".join(pieces), nums
        crf = None
    elif len(parts) in (3, 4):
        path, rest, crf = parts[0], parts[1:3], (parts[3] if len(parts) == 4 else None)
    else:
        raise PlanError(f"--image {' '.join(parts)}: expected PATH[:FRAME[:STRENGTH]] or PATH FRAME STRENGTH [CRF]")
    try:
        frame = int(rest[0]) if rest else 0
        strength = float(rest[1]) if len(rest) > 1 else 1.0
        crf_value = int(crf) if crf is not None else None
    except ValueError:
        raise PlanError(f"--image {' '.join(parts)}: FRAME must be an integer and STRENGTH a number") from None
    if not 0.0 <= strength <= 1.0:
        raise PlanError(f"--image {' '.join(parts)}: strength {strength} is outside [0, 1]")
    return path, frame, strength, crf_value


def _stage(name, frames, height, width, fps, images, passes, evaluations) -> StagePlan:
    from ltx_jax.sampling import audio_token_count, latent_grid

    grid = latent_grid(frames, height, width)
    keyframes = sum(1 for img in images if img.frame_idx != 0)
    tokens = math.prod(grid) + keyframes * grid[1] * grid[2]
    return StagePlan(name, frames, height, width, grid, tokens, audio_token_count(frames, fps), passes, evaluations)


def _guidance(args, model_version: str, pipeline: str) -> dict[str, Any]:
    from ltx_jax.sampling import LTX_2_3_HQ_DEFAULTS, defaults_for_version

    d = LTX_2_3_HQ_DEFAULTS if pipeline == "hq" else defaults_for_version(model_version)
    out = {}
    for stream, base in (("video", d.video), ("audio", d.audio)):
        changes = {}
        for field_name, flag in (("cfg_scale", "cfg_guidance_scale"), ("stg_scale", "stg_guidance_scale"),
                                 ("rescale_scale", "rescale_scale"), ("skip_step", "skip_step"),
                                 ("stg_blocks", "stg_blocks")):
            value = getattr(args, f"{stream}_{flag}", None)
            if value is not None:
                changes[field_name] = tuple(value) if field_name == "stg_blocks" else value
        modality = getattr(args, "a2v_guidance_scale" if stream == "video" else "v2a_guidance_scale", None)
        if modality is not None:
            changes["modality_scale"] = modality
        out[stream] = replace(base, **changes)
    out["steps"] = d.num_inference_steps
    if pipeline == "a2vid":  # the audio stream is frozen: the official audio guider is neutral
        from ltx_jax.sampling import GuiderParams
        given = [f for f in ("cfg_guidance_scale", "stg_guidance_scale", "rescale_scale", "skip_step", "stg_blocks")
                 if getattr(args, f"audio_{f}", None) is not None] + (
            ["v2a_guidance_scale"] if getattr(args, "v2a_guidance_scale", None) is not None else [])
        if given:
            raise PlanError(f"--{given[0].replace('_', '-')}: the a2vid pipeline keeps the audio frozen; audio "
                            "guidance does not apply")
        out["audio"] = GuiderParams()
    return out


def build_plan(args, *, devices: int | None = None) -> Plan:
    """Check every argument of `generate` and resolve its defaults; raises `PlanError` (or `VideoShapeError`,
    `MediaError`) naming the bad value. Reads file headers and conditioning images only."""
    from ltx_jax.pipelines.generation import Request, validate
    from ltx_jax.pipelines.media import ImageCondition, MediaError, load_image, output_formats

    pipeline = args.pipeline
    out_is_dir = Path(args.out).suffix.lower() != ".mp4"
    try:  # first: an unknown format is refused before any file is read
        formats = output_formats(args.format) if out_is_dir else ("mp4",)
    except MediaError as e:
        raise PlanError(f"--format: {e}") from None
    if args.prompt is not None and args.prompt_file is not None:
        raise PlanError("give the prompt as text or as --prompt-file, not both")
    if args.prompt is None and args.prompt_file is None:
        raise PlanError("no prompt: pass the prompt text (ltx-jax generate \"a prompt\" ...) or --prompt-file")
    if args.prompt is not None and not args.prompt.strip():
        raise PlanError("the prompt is empty")
    default_h, default_w = default_size(pipeline)
    height, width = args.height or default_h, args.width or default_w
    distilled = pipeline.startswith("distilled")
    if args.steps is not None and distilled:
        raise PlanError(f"--steps: the {pipeline} pipeline's schedules are fixed (8 + 3 steps; one-stage: 8)")
    images = []
    for spec in args.image:
        path, frame, strength, crf = parse_image_spec(spec)
        if not Path(path).is_file():
            raise PlanError(f"--image {path}: no such file")
        try:
            pixels = load_image(path)
        except MediaError:
            raise
        except Exception as e:  # noqa: BLE001 - any decoder failure means the same to the user
            raise MediaError(f"--image {path}: cannot be read as an image ({type(e).__name__}: {e})") from None
        images.append(ImageCondition(pixels, frame_idx=frame, strength=strength,
                                     crf=args.crf if crf is None else crf))
    for img, spec in zip(images, args.image):
        if img.frame_idx >= args.frames:
            raise PlanError(f"--image {' '.join(spec)}: keyframe index {img.frame_idx} is outside the video's "
                            f"{args.frames} frames (valid: 0..{args.frames - 1})")
    audio = _read_audio(args, pipeline)
    request = Request(frames=args.frames, height=height, width=width, fps=args.fps, seed=args.seed,
                      images=tuple(images), float32_positions=args.float32_positions, audio=audio)
    validate(pipeline, request, upscale=args.upscale, steps=args.steps)

    import jax
    n_devices = jax.device_count() if devices is None else devices
    mesh = parse_mesh(args.mesh, n_devices)

    if args.prompt_file is not None:
        exists("prompt", args.prompt_file, "--prompt-file")
    files = []
    entry, config, component_params, fp8_file = checkpoint_info(args.checkpoint)
    files.append(entry)
    if pipeline == "a2vid" and not component_params.get("audio_vae_encoder"):
        raise PlanError(f"--checkpoint {args.checkpoint}: has no audio VAE encoder (audio_vae.encoder.*); the a2vid "
                        "pipeline encodes --audio with it")
    two_stage = not pipeline.endswith("one-stage")
    upsampler = None
    if two_stage:
        if args.upsampler is None:
            raise PlanError(f"the {pipeline} pipeline needs --upsampler (the spatial x2 latent upsampler file)")
        up = classify("upsampler", args.upsampler, "--upsampler", ("upsampler",))
        kind = up.description
        want = "spatial_x2" if args.upscale == 2.0 else "spatial_x1_5"
        if want not in kind:
            raise PlanError(f"--upsampler {args.upsampler}: is a {kind}; upscale {args.upscale} needs {want}")
        files.append(up)
        upsampler = up.path
    if args.temporal_upscale:
        t = classify("temporal_upsampler", args.temporal_upsampler, "--temporal-upsampler", ("upsampler",))
        if "temporal" not in t.description:
            raise PlanError(f"--temporal-upsampler {args.temporal_upsampler}: is a {t.description}, not temporal")
        files.append(t)
    from ltx_jax.checkpoint.lora import parse_lora_arg
    loras = []
    for spec in args.lora:
        path, strength = parse_lora_arg(spec)
        files.append(classify("lora", path, "--lora", ("lora",)))
        loras.append((path, strength))
    stage1, stage2 = list(loras), None
    if pipeline in LORA_STRENGTHS:
        if not args.distilled_lora:
            raise PlanError(f"the {pipeline} pipeline needs --distilled-lora (the official distilled LoRA; stage "
                            f"strengths {LORA_STRENGTHS[pipeline]})")
        files.append(classify("distilled_lora", args.distilled_lora, "--distilled-lora", ("lora",)))
        s1, s2 = LORA_STRENGTHS[pipeline]
        stage1 = loras + ([(args.distilled_lora, s1)] if s1 else [])
        stage2 = loras + [(args.distilled_lora, s2)]
    elif args.distilled_lora:
        raise PlanError(f"--distilled-lora: the {pipeline} pipeline does not use it")
    gemma = None
    if args.prompt is not None:
        if args.gemma is None:
            raise PlanError("a text prompt needs --gemma (the Gemma-3 folder); or pass --prompt-file with "
                            "precomputed contexts")
        files.append(gemma_folder(args.gemma))
        gemma = args.gemma
    if args.preview:
        files.append(classify("preview", args.preview, "--preview", ("tae",)))
        from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
        from ltx_jax.tiny_vae import TAECheckpointError, config_from_shapes
        with SafetensorsFile(args.preview) as f:
            try:
                config_from_shapes({k: i.shape for k, i in f.infos.items()},
                                   latent_channels=config.transformer.in_channels)
            except TAECheckpointError as e:
                raise PlanError(f"--preview {args.preview}: {e}") from None
    if args.preview_every < 1:
        raise PlanError(f"--preview-every must be >= 1; got {args.preview_every}")

    out = Path(args.out)
    parent = out if out_is_dir else out.parent
    if parent.exists() and not parent.is_dir():
        raise PlanError(f"--out {out}: {parent} is not a folder")

    guidance = _guidance(args, config.model_version, pipeline)
    layers = config.transformer.num_layers
    for stream in ("video", "audio"):
        g = guidance[stream]
        if not distilled and g.needs_perturbed and any(not 0 <= b < layers for b in g.stg_blocks):
            raise PlanError(f"{stream} STG blocks {list(g.stg_blocks)} (the official default for this model version) "
                            f"are outside this model's blocks 0..{layers - 1}; pass --{stream}-stg-blocks N ... "
                            f"or --{stream}-stg-guidance-scale 0")
    steps = args.steps if args.steps is not None else guidance["steps"]
    stages = []
    fps = args.fps
    if pipeline == "distilled-one-stage":
        stages = [_stage("stage1", args.frames, height, width, fps, images, 1, 8)]
    elif pipeline == "distilled":
        h1, w1 = int(height / args.upscale), int(width / args.upscale)
        stages = [_stage("stage1", args.frames, h1, w1, fps, images, 1, 8),
                  _stage("stage2", args.frames, height, width, fps, images, 1, 3)]
    else:
        from ltx_jax.sampling.loops import dev_sampler
        passes = len(dev_sampler(2, guidance["video"], guidance["audio"]).guidance.passes)
        evals = 2 * steps + 1 if pipeline == "hq" else steps
        if two_stage:
            h1, w1 = int(height / args.upscale), int(width / args.upscale)
            stages = [_stage("stage1", args.frames, h1, w1, fps, images, passes, evals),
                      _stage("stage2", args.frames, height, width, fps, images, 1, 7 if pipeline == "hq" else 3)]
        else:
            stages = [_stage("stage1", args.frames, height, width, fps, images, passes, evals)]
    plan = Plan(pipeline=pipeline, request=request, prompt=args.prompt, negative_prompt=args.negative_prompt,
                prompt_file=args.prompt_file, checkpoint=entry.path, config=config,
                component_params=component_params, fp8_file=fp8_file, files=files, loras=loras,
                stage1_loras=stage1, stage2_loras=stage2, steps=None if distilled else steps,
                upscale=args.upscale, stages=stages, mesh=mesh, devices=n_devices, out=out, out_is_dir=out_is_dir,
                formats=formats, dtype=args.dtype, fp8=args.fp8, attention=args.attention, weights=args.weights,
                tiling=args.tiling, guidance=guidance, gemma=gemma, upsampler=upsampler,
                temporal_upsampler=args.temporal_upsampler if args.temporal_upscale else None,
                preview=args.preview, preview_every=args.preview_every)
    _check_runtime_options(plan)
    ctx = mesh["context"]
    if ctx > 1 and args.attention != "gspmd" and "gspmd" in _attention_choices():
        for st in stages:
            if st.video_tokens % ctx:
                raise PlanError(f"{st.name} has {st.video_tokens} video tokens (latent grid {'x'.join(map(str, st.grid))}"
                                f"), not divisible by context={ctx}: sequence-parallel attention needs equal shards. "
                                f"Use --attention gspmd, another --mesh, or a size whose token count divides")
    return plan


def _read_audio(args, pipeline: str):
    """a2vid: the `--audio` file's track (`read_audio`; default length: the video's), long enough for the video."""
    audio_path = getattr(args, "audio", None)
    if pipeline != "a2vid":
        if audio_path is not None:
            raise PlanError(f"--audio: the {pipeline} pipeline takes no input audio (use --pipeline a2vid)")
        return None
    if audio_path is None:
        raise PlanError("the a2vid pipeline needs --audio FILE (the conditioning audio)")
    from ltx_jax.pipelines.audio_input import read_audio
    seconds = args.frames / args.fps
    duration = args.audio_max_duration if args.audio_max_duration is not None else seconds
    audio = read_audio(audio_path, args.audio_start_time, duration)  # MediaError names the file and the problem
    if audio.waveform.shape[0] != 2:
        raise PlanError(f"--audio {audio_path}: has {audio.waveform.shape[0]} channel(s); the audio encoder takes "
                        "stereo (convert it, e.g. ffmpeg -ac 2)")
    if audio.seconds < seconds:
        raise PlanError(f"--audio {audio_path}: {audio.seconds:.3f} s from {args.audio_start_time} s; the video "
                        f"({args.frames} frames at {args.fps} fps) needs {seconds:.3f} s")
    return audio


def _attention_choices() -> tuple[str, ...]:
    from ltx_jax.pipelines import capabilities as cap
    return cap.attention_choices()


def _check_runtime_options(plan: Plan) -> None:
    """Options whose support depends on what this build has (FP8 matmuls, attention strategies, weight presets)."""
    from ltx_jax.pipelines import capabilities as cap

    if plan.fp8 != "off":
        if not cap.has_fp8():
            raise PlanError(f"--fp8 {plan.fp8}: this build has no FP8 matmuls (ltx_jax.nn.fp8); use --fp8 off "
                            "(an FP8 file then loads dequantized)")
        if not plan.fp8_file and not cap.can_quantize():
            raise PlanError(f"--fp8 {plan.fp8}: {plan.checkpoint} holds no FP8 weights; pass an FP8 checkpoint (an "
                            "official one, or one written by ltx_jax.pipelines.quantize.quantize_checkpoint)")
    if plan.attention not in cap.attention_choices():
        raise PlanError(f"--attention {plan.attention}: choose from {', '.join(cap.attention_choices())}")
    if plan.weights != "replicated" and plan.weights not in cap.weight_presets():
        raise PlanError(f"--weights {plan.weights}: this build supports {', '.join(cap.weight_presets())}")
    if plan.prompt is not None and not cap.has_text_encoder():
        raise PlanError("a text prompt needs the Gemma text encoder (ltx_jax.text_encoder), which this build lacks; "
                        "pass --prompt-file with precomputed contexts")
