"""Stage 2 and the decode of the dev two-stage and HQ pipelines, continuing the loop fixture's `guided` and `res2s`
runs (which are those pipelines' stage 1 at a 256x256 target) with the same generator, as the pipelines do.

`TI2VidTwoStagesPipeline.__call__` / `TI2VidTwoStagesHQPipeline.__call__` after stage 1, reproduced from their source
with the official functions: `upsample_video` (the spatial x2 upsampler), `denoise_audio_video` at full size with
`noise_scale = STAGE_2_DISTILLED_SIGMA_VALUES[0]` from the upsampled latent and the stage-1 audio,
`simple_denoising_func` with the positive context, `euler_denoising_loop` (dev) or `res2s_audio_video_denoising_loop`
(HQ, default SDE noise seeds), then the untiled decode continuing the generator. Two differences from the pipelines:
the stage-2 transformer is the base model (the pipelines fuse the distilled LoRA into it, which ltx-core 1.0.0
cannot do on float32 weights; LoRA fusion has its own fixture), and the dtype is float32 (the pipelines use bf16).

Recorded as `<name>.*` with <name> = `dev2` (from `guided`) or `hq2` (from `res2s`); see tests/reference/LOOPS.md.
"""

import torch

from ltxref.loop import RecordingNoiser
from ltxref.loops_record import EvalRecorder, LoopCapture, PassRecorder, SdeNoiseRecorder
from ltxref.record import Recorder
from ltxref.vae_cases import decode
from ltx_core.components.diffusion_steps import EulerDiffusionStep, Res2sDiffusionStep
from ltx_core.model.upsampler import upsample_video
from ltx_core.types import VideoPixelShape
from ltx_pipelines.utils.constants import STAGE_2_DISTILLED_SIGMA_VALUES
from ltx_pipelines.utils.helpers import denoise_audio_video, simple_denoising_func
from ltx_pipelines.utils.samplers import euler_denoising_loop, res2s_audio_video_denoising_loop

F32 = torch.float32
UPSAMPLER = "spatial_x2"
SOURCES = {"dev2": "guided", "hq2": "res2s"}


def run_stage2(rec: Recorder, s, name: str, generator: torch.Generator, stage1: tuple, upsampler: torch.nn.Module,
               decoder: torch.nn.Module, pixels: VideoPixelShape) -> dict:  # noqa: ANN001
    """Stage 2 + decode after the stage-1 run `SOURCES[name]`, whose generator and output states are given."""
    res2s = name == "hq2"
    video_state, audio_state = stage1
    upscaled = upsample_video(latent=video_state.latent[:1], video_encoder=s.encoder, upsampler=upsampler)
    shape = VideoPixelShape(batch=1, frames=pixels.frames, width=pixels.width * 2, height=pixels.height * 2,
                            fps=pixels.fps)
    sigmas = torch.Tensor(STAGE_2_DISTILLED_SIGMA_VALUES)
    noiser = RecordingNoiser(generator)
    passes = PassRecorder(s.transformer, s.ctx["neg"][0])
    (pv, pa) = s.ctx["pos"]
    ev = EvalRecorder(simple_denoising_func(video_context=pv, audio_context=pa, transformer=passes), passes)
    sde = SdeNoiseRecorder()
    if res2s:
        cap = LoopCapture(lambda sig, vs, as_, st: res2s_audio_video_denoising_loop(
            sigmas=sig, video_state=vs, audio_state=as_, stepper=st, denoise_fn=ev, new_noise_fn=sde, model_dtype=F32))
    else:
        cap = LoopCapture(lambda sig, vs, as_, st: euler_denoising_loop(
            sigmas=sig, video_state=vs, audio_state=as_, stepper=st, denoise_fn=ev))
    out = denoise_audio_video(output_shape=shape, conditionings=[], noiser=noiser, sigmas=sigmas,
                              stepper=Res2sDiffusionStep() if res2s else EulerDiffusionStep(), denoising_loop_fn=cap,
                              components=s.components(), dtype=F32, device=torch.device("cpu"),
                              noise_scale=sigmas[0], initial_video_latent=upscaled,
                              initial_audio_latent=audio_state.latent)
    video, decode_noise = decode(decoder, out[0].latent, generator)

    p = f"{name}.stage2"
    rec.add(f"{name}.upsample.out.video_latent", upscaled, note=f"upsample_video({SOURCES[name]}.out.video_latent)")
    rec.add(f"{p}.sigmas", sigmas, note="STAGE_2_DISTILLED_SIGMA_VALUES")
    if len(noiser.calls) != 2:
        raise AssertionError(f"{name}: expected 2 noiser calls, got {len(noiser.calls)}")
    for label, call in zip(("video", "audio"), noiser.calls, strict=True):
        for f in ("pre_noise_latent", "noise", "noise_scale", "noised_latent", "denoise_mask", "positions"):
            rec.add(f"{p}.{label}.{f}", call[f])
    label = "eval" if res2s else "step"
    for i, e in enumerate(ev.evals):
        rec.add(f"{p}.{label}{i:02d}.video_x0", e.x0[0], note="X0Model output (one pass)")
        rec.add(f"{p}.{label}{i:02d}.audio_x0", e.x0[1], note="X0Model output (one pass)")
    if res2s:
        labels = [f"{i:02d}.{kind}.{m}" for i in range(len(sigmas) - 1) for kind in ("substep", "step")
                  for m in ("video", "audio")]
        if len(sde.draws) != len(labels):
            raise AssertionError(f"{name}: expected {len(labels)} SDE draws, got {len(sde.draws)}")
        for lab, d in zip(labels, sde.draws, strict=True):
            rec.add(f"{p}.sde_noise_raw.{lab}", d["raw"], keep_float64=True, note="the raw float64 N(0,1) draw")
    rec.add(f"{p}.out.video_latent", out[0].latent, note="unpatchified [B, C, F, H, W]")
    rec.add(f"{p}.out.audio_latent", out[1].latent, note="unpatchified [B, 8, T, 16]")
    if decode_noise is not None:
        rec.add(f"{name}.decode.noise", decode_noise, note="drawn from the same generator after stage 2")
    rec.add(f"{name}.decode.out.video", video, note="untiled float decode")
    if float(video.std()) < 1e-3:
        raise AssertionError(f"{name}: decode is constant")
    return {"from": SOURCES[name], "upsampler": UPSAMPLER, "evals": len(ev.evals),
            "pipeline": ("TI2VidTwoStagesHQPipeline" if res2s else "TI2VidTwoStagesPipeline")
            + " stage 2 + decode at 17x256x256 (stage 1 = the run named in 'from'), float32",
            "stage2_transformer": "the base model: the pipelines fuse the distilled LoRA here, which ltx-core 1.0.0 "
                                  "cannot do on float32 weights (LoRA fusion has its own fixture)",
            "loop": "res2s_audio_video_denoising_loop (default SDE seeds) + simple_denoising_func" if res2s
            else "euler_denoising_loop + simple_denoising_func",
            "generator": "the stage-1 run's generator, continued (stage-2 noise, then the decoder noise)"}
