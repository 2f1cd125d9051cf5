"""`ltx-jax generate` end to end: plan and memory check, compilation cache, loads, text encoding, the pipeline,
audio, previews, the mp4 and its JSON sidecar.

Counterpart: the `main()` of each ltx_pipelines pipeline module (`distilled.py`, `ti2vid_two_stages.py`,
`ti2vid_one_stage.py`, `ti2vid_two_stages_hq.py`): load the models (`ModelLedger`), encode the prompt, run the
pipeline, `encode_video` with the audio track.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["run", "EXIT_BAD_INPUT", "EXIT_MEMORY", "EXIT_INTERRUPTED"]

EXIT_BAD_INPUT, EXIT_MEMORY, EXIT_INTERRUPTED = 2, 3, 130


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM raises KeyboardInterrupt (as Ctrl-C does), so temporary outputs are cleaned up on the way out."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _rules(plan):
    import math

    if math.prod(plan.mesh.values()) == 1:
        return None
    from ltx_jax.pipelines import capabilities as cap
    from ltx_jax.sharding import inference_rules, make_mesh

    mesh = make_mesh(**plan.mesh)
    if "fsdp" not in cap.weight_presets():
        return inference_rules(mesh)
    strategy = plan.attention if plan.attention not in ("xla", "cudnn") else "auto"
    return inference_rules(mesh, weights=plan.weights, attention=strategy)


def _runtime(plan):
    import dataclasses

    from ltx_jax.configs import Runtime

    fields = {f.name for f in dataclasses.fields(Runtime)}
    kw = {"param_dtype": plan.dtype, "compute_dtype": plan.dtype}
    if plan.attention != "auto":
        kw["attention"] = plan.attention
    if plan.fp8 != "off" and "fp8" in fields:
        kw["fp8"] = plan.fp8
    return Runtime(**kw)


def _encode_prompt(plan, models, runtime, rules, cache_dir: Path):
    """The positive and (when the guidance needs it) negative contexts: from `--prompt-file`, or Gemma."""
    import jax.numpy as jnp

    from ltx_jax.pipelines.stages import load_prompt
    from ltx_jax.sampling import default_negative_prompt
    from ltx_jax.sampling.samplers import Prompt, TextContext

    if plan.prompt_file is not None:
        return load_prompt(plan.prompt_file, models.text), None
    from ltx_jax.text_encoder import encode_prompts, load_gemma, load_text_embeddings_for

    negative = plan.negative_prompt if plan.negative_prompt is not None else default_negative_prompt()
    prompts = [plan.prompt] + ([negative] if not plan.pipeline.startswith("distilled") else [])
    gemma = load_gemma(plan.gemma, runtime=runtime)
    text = load_text_embeddings_for(gemma, plan.checkpoint, runtime)  # connectors sized for this Gemma
    encoded = encode_prompts(gemma, text, prompts, cache_dir=cache_dir / "prompts")
    gemma.free()  # as the official pipelines, free the encoder before denoising
    contexts = [TextContext(jnp.asarray(v), jnp.asarray(a)) for v, a, *_ in encoded]
    return Prompt(contexts[0], contexts[1] if len(contexts) > 1 else None), prompts


class _PreviewSink:
    """TAE previews every few evaluations of each stage, written as small GIFs next to the output."""

    def __init__(self, plan, reporter, directory: Path):
        from ltx_jax.tiny_vae import Preview, load_tae

        self.preview = Preview(load_tae(plan.preview, latent_channels=plan.config.transformer.in_channels))
        self.plan, self.reporter, self.dir, self.written = plan, reporter, directory, []

    def __call__(self, step: int, x0: np.ndarray) -> None:
        from ltx_jax.pipelines.outputs import write_gif_or_mp4
        from ltx_jax.tiny_vae import to_uint8

        name = self.reporter._stack[-1][0] if self.reporter._stack else "stage"
        stage = next((s for s in self.plan.stages if s.name == name), None)
        if stage is None or (step % self.plan.preview_every and step != stage.evaluations - 1):
            return
        frames = to_uint8(self.preview(x0, stage.grid))[0]
        path = self.dir / f"{name}_step{step + 1:03d}.gif"
        write_gif_or_mp4(path, frames, self.plan.request.fps / 8)
        self.written.append(str(path))


def _audio(plan, out):
    """(waveform float32 [channels, samples] or None, sample rate, note): the pipeline decodes the audio when the
    checkpoint has the audio VAE decoder and vocoder (`load_models(audio=True)`)."""
    if getattr(out, "sample_rate", None) is not None and out.audio is not None:
        source = "the input audio (--audio)" if plan.pipeline == "a2vid" else "audio VAE + vocoder"
        return np.asarray(out.audio, np.float32)[0], int(out.sample_rate), source
    if not plan.component_params.get("audio_vae_decoder") or not plan.component_params.get("vocoder"):
        return None, None, "the checkpoint has no audio VAE decoder / vocoder: the mp4 has no sound track"
    return None, None, "this build's pipelines return no waveform: the mp4 has no sound track"


def run(args: argparse.Namespace) -> int:
    """The `generate` command. Exit codes: 0 ok, 2 bad input, 3 would not fit in memory, 130 interrupted."""
    from ltx_jax.pipelines.memory import MemoryError_, check
    from ltx_jax.pipelines.media import MediaError
    from ltx_jax.pipelines.plan import PlanError, build_plan
    from ltx_jax.pipelines.progress import Reporter
    from ltx_jax.types import VideoShapeError

    t0 = time.perf_counter()
    try:
        plan = build_plan(args)
    except (PlanError, VideoShapeError, MediaError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        memory = check(plan, limit_gib=args.memory_limit) if not args.no_memory_check else None
    except MemoryError_ as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_MEMORY
    with Reporter(quiet=args.quiet) as reporter, _sigterm_interrupts():
        reporter.mark_start()
        try:
            summary = _generate(args, plan, memory, reporter, t0)
        except KeyboardInterrupt as e:
            reporter.line(f"interrupted ({e or 'Ctrl-C'}); no output written")
            return EXIT_INTERRUPTED
        except (ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
    print(json.dumps(summary))
    return 0


def _generate(args, plan, memory, reporter, t0: float) -> dict:
    from ltx_jax.pipelines.generation import PIPELINES
    from ltx_jax.pipelines.memory import estimate
    from ltx_jax.pipelines.outputs import (ExecutableIndex, cache_root, enable_compilation_cache, file_hash,
                                           peak_memory, sidecar_path, versions, write_frames_dir, write_json,
                                           write_video)
    from ltx_jax.pipelines.phases import listening, phase
    from ltx_jax.pipelines.progress import format_plan
    from ltx_jax.pipelines.stages import load_models, load_noise
    from ltx_jax.sampling.loops import Callbacks

    cache = cache_root(args.cache_dir)
    xla_cache = None if args.no_compilation_cache else cache / "xla"
    cache_state = enable_compilation_cache(xla_cache)
    index = ExecutableIndex(xla_cache)
    predicted = "cached executables (same shapes ran before)" if index.seen(plan) else "will compile"
    note = f"compilation: {predicted}; cache {cache_state}"
    reporter.console.print(format_plan(plan, memory or estimate(plan), note))
    runtime, rules = _runtime(plan), _rules(plan)
    files = [{"role": f.role, "kind": f.kind, **file_hash(f.path, cache)} for f in plan.files]
    if plan.prompt_file:
        files.append({"role": "prompt_file", "kind": "contexts", **file_hash(plan.prompt_file, cache)})
    text = plan.prompt is None and not _has_contexts(plan.prompt_file)  # hidden states need the connectors
    with listening(reporter):
        with phase("load"):
            models = load_models(plan.checkpoint, upsampler=plan.upsampler, temporal_upsampler=plan.temporal_upsampler,
                                 loras=plan.stage1_loras, stage2_loras=plan.stage2_loras or (), runtime=runtime,
                                 rules=rules, text=text, audio_encoder=plan.pipeline == "a2vid")
        with phase("text_encode"):
            prompt, prompts = _encode_prompt(plan, models, runtime, rules, cache)
        noise, decode_noise = load_noise(args.noise) if args.noise else (None, None)
        tiling = None
        if plan.tiling:
            from ltx_jax.video_vae import TilingConfig
            tiling = TilingConfig.default()
        preview = None
        if plan.preview:
            preview = _PreviewSink(plan, reporter, _preview_dir(plan))
        kwargs = {}
        if not plan.pipeline.endswith("one-stage"):
            kwargs["upscale"] = plan.upscale
        if not plan.pipeline.startswith("distilled"):
            kwargs.update(steps=plan.steps, video=plan.guidance["video"])
            if plan.pipeline != "a2vid":  # a2vid: the audio is frozen, its guider neutral
                kwargs["audio"] = plan.guidance["audio"]
        out = PIPELINES[plan.pipeline](models, prompt, plan.request, noise=noise, decode_noise=decode_noise,
                                       temporal_upscale=plan.temporal_upsampler is not None, tiling=tiling,
                                       callbacks=Callbacks(progress=reporter.progress, preview=preview),
                                       rules=rules, **kwargs)
        frames = out.frames_uint8()
        wave, rate, audio_note = _audio(plan, out)
        fps = plan.request.fps * (2 if plan.temporal_upsampler else 1)
        sidecar = sidecar_path(plan.out) if not plan.out_is_dir else plan.out / "generate.json"
        outputs = {"frames": int(frames.shape[0]), "height": int(frames.shape[1]), "width": int(frames.shape[2]),
                   "fps": fps, "audio": None if wave is None else {"sample_rate": rate, "channels": int(wave.shape[0]),
                                                                   "samples": int(wave.shape[1]),
                                                                   "duration_s": wave.shape[1] / rate},
                   "audio_note": audio_note, "previews": preview.written if preview else []}
        with (contextlib.nullcontext((None, None)) if plan.out_is_dir else _both(plan.out, sidecar)) as (tmp_v, tmp_j):
            with phase("mux"):
                if plan.out_is_dir:
                    outputs["files"] = [str(p) for p in write_frames_dir(plan.out, frames, fps, plan.formats, wave,
                                                                         rate, out)]
                else:
                    outputs["files"] = [str(plan.out)]
                    write_video(tmp_v, frames, fps, wave, rate, atomic=False)
            compile_s = sum(t["compile_s"] for t in reporter.timings.values())
            data = {"command": ["ltx-jax", "generate", *sys.argv[2:]] if sys.argv[1:2] == ["generate"] else None,
                    "arguments": {k: v for k, v in vars(args).items() if k != "func"},
                    "resolved": _resolved(plan, prompts), "seed": plan.request.seed, "mesh": plan.mesh,
                    "devices": plan.devices, "files": files, "versions": versions(),
                    "timings": {**reporter.timings, "total_s": round(time.perf_counter() - t0, 3),
                                "compile_s": round(compile_s, 3)},
                    "compilation": {"cache_dir": cache_state, "predicted": predicted, **reporter.cache},
                    "memory": {"estimate": (memory or estimate(plan)).to_json(), "measured": peak_memory()},
                    "outputs": outputs}
            if plan.out_is_dir:
                write_json(sidecar, data)
            else:
                tmp_j.write_text(json.dumps(data, indent=1, default=str) + "\n")
    index.add(plan, compile_s)
    return {"pipeline": plan.pipeline, "out": str(plan.out), "sidecar": str(sidecar), "frames": list(frames.shape),
            "fps": fps, "audio": outputs["audio"], "total_s": data["timings"]["total_s"],
            "compile_s": data["timings"]["compile_s"], "cache_hits": reporter.cache["hits"]}


@contextlib.contextmanager
def _both(video: Path, sidecar: Path):
    """Temporary names for the mp4 and its sidecar; both renamed only when both are complete (sidecar first)."""
    import os

    video.parent.mkdir(parents=True, exist_ok=True)
    tmp_v = video.with_name(f".{video.name}.partial-{os.getpid()}")
    tmp_j = sidecar.with_name(f".{sidecar.name}.partial-{os.getpid()}")
    try:
        yield tmp_v, tmp_j
        os.replace(tmp_j, sidecar)
        os.replace(tmp_v, video)
    finally:
        tmp_v.unlink(missing_ok=True)
        tmp_j.unlink(missing_ok=True)


def _preview_dir(plan) -> Path:
    return plan.out / "previews" if plan.out_is_dir else plan.out.with_name(plan.out.stem + ".previews")


def _resolved(plan, prompts) -> dict:
    import dataclasses

    r = plan.request
    return {"pipeline": plan.pipeline, "frames": r.frames, "height": r.height, "width": r.width, "fps": r.fps,
            "steps": plan.steps, "upscale": plan.upscale, "dtype": plan.dtype, "fp8": plan.fp8,
            "attention": plan.attention, "weights": plan.weights, "tiling": plan.tiling,
            "prompts": prompts, "prompt_file": plan.prompt_file,
            "guidance": {k: dataclasses.asdict(v) for k, v in plan.guidance.items() if k in ("video", "audio")}
            if not plan.pipeline.startswith("distilled") else None,
            "loras": {"stage1": plan.stage1_loras, "stage2": plan.stage2_loras},
            "images": [{"frame": i.frame_idx, "strength": i.strength, "crf": i.crf, "shape": list(i.image.shape)}
                       for i in r.images],
            "audio_input": None if r.audio is None else {"sample_rate": r.audio.sample_rate, "seconds": r.audio.seconds,
                                                         "channels": int(r.audio.waveform.shape[0])},
            "stages": [dataclasses.asdict(s) for s in plan.stages], "model_version": plan.config.model_version}


def _has_contexts(path: str | None) -> bool:
    """Whether a prompt file holds connector outputs (else Gemma hidden states, which need the connectors)."""
    if path is None:
        return False
    from ltx_jax.pipelines.stages import _read_arrays
    return "video_context" in _read_arrays(Path(path))
