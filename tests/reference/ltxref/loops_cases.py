"""The loop fixture's runs (docs/reference-fixtures-loops.md): schedules, contexts, guided, i2v, keyframe, res_2s.

Each run reproduces a pipeline's call sequence from its source (`TI2VidOneStagePipeline`, `DistilledPipeline`,
`TI2VidTwoStagesHQPipeline` stage 1) with the official functions, at tiny size, and records every input, random
draw and intermediate through the wrappers of `loops_record`. Functions used per run are returned for the
manifest (`functions_used`).
"""

from dataclasses import asdict, dataclass, replace

import torch

from ltxref.loop import RecordingNoiser
from ltxref.loops_record import PASS_ORDER, EvalRecorder, LoopCapture, PassRecorder, SdeNoiseRecorder, StepRecorder
from ltxref.record import Recorder
from ltx_core.components.diffusion_steps import EulerDiffusionStep, Res2sDiffusionStep
from ltx_core.components.guiders import MultiModalGuider, MultiModalGuiderParams, create_multimodal_guider_factory
from ltx_core.components.schedulers import LTX2Scheduler
from ltx_core.conditioning import (
    ConditioningItemAttentionStrengthWrapper,
    VideoConditionByKeyframeIndex,
    VideoConditionByLatentIndex,
)
from ltx_core.components.patchifiers import VideoLatentPatchifier
from ltx_core.tools import VideoLatentTools
from ltx_core.types import VideoLatentShape, VideoPixelShape
from ltx_pipelines.utils.constants import DISTILLED_SIGMA_VALUES, LTX_2_3_HQ_PARAMS, STAGE_2_DISTILLED_SIGMA_VALUES
from ltx_pipelines.utils.helpers import (
    assert_resolution,
    denoise_audio_video,
    multi_modal_guider_denoising_func,
    multi_modal_guider_factory_denoising_func,
    simple_denoising_func,
)
from ltx_pipelines.utils.res2s import get_res2s_coefficients
from ltx_pipelines.utils.samplers import euler_denoising_loop, res2s_audio_video_denoising_loop
from ltx_pipelines.utils.types import PipelineComponents

CPU = torch.device("cpu")
F32 = torch.float32
PIXELS = VideoPixelShape(batch=1, frames=17, height=128, width=128, fps=24.0)  # latent 3x4x4, 18 audio tokens
SCHED_STEPS = (4, 8, 15, 30, 40)
SCHED_EXTRA_STEPS = (1, 2, 3)  # beyond the format doc: the one-step quirks (0.1 or NaN) and tiny step counts
SCHED_LATENTS = {"default": None, "1536": (1, 128, 6, 16, 16), "6144": (1, 128, 6, 32, 32)}
CTX_SEQ_LEN = 128
CTX_VALID = {"pos": 20, "neg": 12}  # left padding
GUIDED_STEPS = 4
RES2S_STEPS = 3
I2V_STRENGTHS = {"s100": 1.0, "s050": 0.5}
KEYFRAME_PIXEL_IDX = 16  # the last pixel frame
RES2S_FINAL_SIGMA = 0.0011  # what res2s_audio_video_denoising_loop puts before a final 0


@dataclass
class Setup:
    transformer: torch.nn.Module  # X0Model
    encoder: torch.nn.Module
    ctx: dict[str, tuple[torch.Tensor, torch.Tensor]]  # {"pos"|"neg": (video, audio)}
    channels: int
    num_layers: int
    last: tuple | None = None  # (generator, (video_state, audio_state)) of the latest run, for a stage 2 to continue

    def components(self) -> PipelineComponents:
        c = PipelineComponents(dtype=F32, device=CPU)
        c.video_latent_channels = self.channels  # the pipeline constant is 128
        return c


def params_dict(p: MultiModalGuiderParams) -> dict:
    return asdict(p)


def run_schedules(rec: Recorder) -> dict:
    """`sched.*`; the extra step counts 1-3 as well. Non-finite official schedules are listed, not stored."""
    nonfinite = []
    for steps in SCHED_EXTRA_STEPS + SCHED_STEPS:
        for tag, shape in SCHED_LATENTS.items():
            latent = None if shape is None else torch.empty(shape)
            sigmas = LTX2Scheduler().execute(steps=steps, latent=latent)
            name = f"sched.dev.steps{steps:02d}.tokens_{tag}"
            if not torch.isfinite(sigmas).all():
                nonfinite.append({"name": name, "values": [str(v) for v in sigmas.tolist()]})
                continue
            rec.add(name, sigmas, note=f"LTX2Scheduler().execute(steps={steps}, "
                                       f"latent={'None' if shape is None else f'torch.empty({list(shape)})'})")
    rec.add("sched.distilled.stage1", torch.Tensor(DISTILLED_SIGMA_VALUES), note="DISTILLED_SIGMA_VALUES")
    rec.add("sched.distilled.stage2", torch.Tensor(STAGE_2_DISTILLED_SIGMA_VALUES),
            note="STAGE_2_DISTILLED_SIGMA_VALUES")
    return {"steps": list(SCHED_STEPS), "extra_steps": list(SCHED_EXTRA_STEPS),
            "latents": {k: v for k, v in SCHED_LATENTS.items()}, "nonfinite_not_stored": nonfinite}


def run_contexts(rec: Recorder, ep: torch.nn.Module, preset: dict, g: torch.Generator) -> dict:
    """Random Gemma-like hidden states -> `EmbeddingsProcessor.process_hidden_states` for pos and neg."""
    te = preset["text_encoder"]
    out = {}
    for tag, valid in CTX_VALID.items():
        hidden = []
        for i in range(te["num_hidden_layers"] + 1):
            h = torch.randn(1, CTX_SEQ_LEN, te["hidden_size"], generator=g) * (1.0 + i) + 0.1 * i
            hidden.append(rec.add(f"ctx.in.{tag}.hidden_states.{i}", h))
        mask = torch.zeros(1, CTX_SEQ_LEN, dtype=torch.int64)
        mask[:, -valid:] = 1
        rec.add(f"ctx.in.{tag}.attention_mask", mask, note=f"binary, left padding, {valid} valid tokens")
        enc = ep.process_hidden_states(tuple(hidden), mask)
        out[tag] = (rec.add(f"ctx.{tag}.video", enc.video_encoding), rec.add(f"ctx.{tag}.audio", enc.audio_encoding))
    return out


def _mask_is_ones(mask: torch.Tensor) -> bool:
    return bool(torch.all(mask == 1.0))


def record_run(rec: Recorder, run: str, sigmas: torch.Tensor, noiser: RecordingNoiser, ev: EvalRecorder,
               cap: LoopCapture, out: tuple, *, guided: bool, prefix: str = "step") -> dict:
    """Records a run in the common layout; returns {pass_order, evals} for the manifest."""
    rec.add(f"{run}.sigmas", sigmas, note="the schedule given to the loop")
    if len(noiser.calls) != 2:
        raise AssertionError(f"{run}: expected 2 noiser calls (video, audio), got {len(noiser.calls)}")
    for label, call in zip(("video", "audio"), noiser.calls, strict=True):
        for f in ("pre_noise_latent", "noise", "noise_scale", "noised_latent", "denoise_mask", "clean_latent",
                  "positions"):
            rec.add(f"{run}.in.{label}.{f}", call[f])
    orders = []
    for i, e in enumerate(ev.evals):
        p = f"{run}.{prefix}{i:02d}"
        rec.add(f"{p}.sigma", e.sigma.reshape(1), keep_float64=True, note="Modality.sigma (0-d in torch)")
        kinds = [q.kind for q in e.passes]
        orders.append(kinds)
        cond = e.passes[0]
        if kinds[0] != "cond" or kinds != [k for k in PASS_ORDER if k in kinds]:
            raise AssertionError(f"{p}: pass order {kinds}")
        for j, (m, st, mod) in enumerate((("video", e.video_state, cond.video), ("audio", e.audio_state, cond.audio))):
            rec.add(f"{p}.{m}_latent_in", mod.latent)
            rec.add(f"{p}.{m}_timesteps", mod.timesteps, note="denoise_mask * sigma")
            rec.add(f"{p}.{m}_x0", e.x0[j], note="guided x0" if guided else "X0Model output")
            if guided:
                for q in e.passes:
                    rec.add(f"{p}.{m}_x0.{q.kind}", q.x0[j])
            if not _mask_is_ones(st.denoise_mask):
                rec.add(f"{p}.{m}_x0_blended", e.blended[j], note="post_process_latent(x0, mask, clean)")
    final_v, final_a = cap.final
    rec.add(f"{run}.out.video_tokens", final_v.latent, note="final loop state, patchified, before clear_conditioning")
    rec.add(f"{run}.out.audio_tokens", final_a.latent, note="final loop state, patchified")
    rec.add(f"{run}.out.video_latent", out[0].latent, note="clear_conditioning + unpatchify [B, C, F, H, W]")
    rec.add(f"{run}.out.audio_latent", out[1].latent, note="clear_conditioning + unpatchify [B, 8, T, 16]")
    return {"evals": len(ev.evals), "passes_per_eval": orders[0], "pass_order_checked_every_eval": True}


def check_euler_consistency(run: str, ev: EvalRecorder, stepper: StepRecorder, cap: LoopCapture) -> None:
    """The stepper got the blended x0 of each eval, and its output is the next eval's input."""
    if len(stepper.calls) != 2 * len(ev.evals):
        raise AssertionError(f"{run}: {len(stepper.calls)} stepper calls for {len(ev.evals)} evals")
    for i, e in enumerate(ev.evals):
        for j, state in enumerate((e.video_state, e.audio_state)):
            sample, denoised, out = stepper.calls[2 * i + j]
            if not (torch.equal(sample, state.latent) and torch.equal(denoised, e.blended[j])):
                raise AssertionError(f"{run} step {i}: stepper inputs differ from the recorded state / blended x0")
            nxt = (ev.evals[i + 1].video_state, ev.evals[i + 1].audio_state)[j].latent if i + 1 < len(ev.evals) \
                else cap.final[j].latent
            if not torch.equal(out, nxt):
                raise AssertionError(f"{run} step {i}: stepper output is not the next state")


def _euler(s: Setup, run: str, rec: Recorder, sigmas: torch.Tensor, conditionings: list, seed: int,
           denoise_fn_for, guided: bool) -> dict:  # noqa: ANN001
    generator = torch.Generator(device=CPU).manual_seed(seed)
    noiser = RecordingNoiser(generator)
    passes = PassRecorder(s.transformer, s.ctx["neg"][0])
    ev = EvalRecorder(denoise_fn_for(passes), passes)
    stepper = StepRecorder(EulerDiffusionStep())
    cap = LoopCapture(lambda sig, vs, as_, st: euler_denoising_loop(sigmas=sig, video_state=vs, audio_state=as_,
                                                                      stepper=st, denoise_fn=ev))
    out = denoise_audio_video(output_shape=PIXELS, conditionings=conditionings, noiser=noiser, sigmas=sigmas,
                              stepper=stepper, denoising_loop_fn=cap, components=s.components(), dtype=F32,
                              device=CPU)
    check_euler_consistency(run, ev, stepper, cap)
    s.last = (generator, out)
    info = record_run(rec, run, sigmas, noiser, ev, cap, out, guided=guided)
    return info | {"noise_seed": seed}


def run_guided(rec: Recorder, s: Setup, detected, seed: int) -> dict:  # noqa: ANN001
    """`TI2VidOneStagePipeline` stage: 4 guided Euler steps, the version's default guider params."""
    assert_resolution(height=PIXELS.height, width=PIXELS.width, is_two_stage=False)
    last = s.num_layers - 1
    vp = replace(detected.video_guider_params, stg_blocks=[last])
    ap = replace(detected.audio_guider_params, stg_blocks=[last])
    sigmas = LTX2Scheduler().execute(steps=GUIDED_STEPS).to(dtype=F32)
    (pv, pa), (nv, na) = s.ctx["pos"], s.ctx["neg"]
    vf = create_multimodal_guider_factory(params=vp, negative_context=nv)
    af = create_multimodal_guider_factory(params=ap, negative_context=na)
    info = _euler(s, "guided", rec, sigmas, [], seed, lambda tr: multi_modal_guider_factory_denoising_func(
        video_guider_factory=vf, audio_guider_factory=af, v_context=pv, a_context=pa, transformer=tr), guided=True)
    return info | {
        "pipeline": "TI2VidOneStagePipeline (first stage), 17x128x128 @ 24 fps, no image conditioning",
        "schedule": f"LTX2Scheduler().execute(steps={GUIDED_STEPS}) (latent=None: 4096 tokens)",
        "video_guider_params": params_dict(vp), "audio_guider_params": params_dict(ap),
        "official_stg_blocks": {"video": detected.video_guider_params.stg_blocks,
                                "audio": detected.audio_guider_params.stg_blocks},
        "stg_blocks_note": "changed to the tiny model's last block index",
    }


def encode_image(rec: Recorder, prefix: str, encoder: torch.nn.Module, g: torch.Generator) -> torch.Tensor:
    image = rec.add(f"{prefix}.in.image", torch.rand(1, 3, 1, PIXELS.height, PIXELS.width, generator=g) * 2.0 - 1.0,
                    note="random image in [-1, 1], fed straight to the VAE encoder (no load_image_conditioning)")
    return rec.add(f"{prefix}.in.image_latent", encoder(image), note="video_encoder(image), normalized")


def _simple(s: Setup):  # noqa: ANN202
    pv, pa = s.ctx["pos"]
    return lambda tr: simple_denoising_func(video_context=pv, audio_context=pa, transformer=tr)


def run_i2v(rec: Recorder, s: Setup, g: torch.Generator, seeds: dict[str, int]) -> dict:
    latent = encode_image(rec, "i2v", s.encoder, g)
    out = {}
    for tag, strength in I2V_STRENGTHS.items():
        cond = [VideoConditionByLatentIndex(latent=latent, strength=strength, latent_idx=0)]
        sigmas = torch.Tensor(DISTILLED_SIGMA_VALUES).to(CPU)
        info = _euler(s, f"i2v.{tag}", rec, sigmas, cond, seeds[tag], _simple(s), guided=False)
        out[tag] = info | {"conditioning": f"VideoConditionByLatentIndex(latent=i2v.in.image_latent, "
                                           f"strength={strength}, latent_idx=0)",
                           "schedule": "DISTILLED_SIGMA_VALUES", "denoising_func": "simple_denoising_func"}
    return out


def run_keyframe(rec: Recorder, s: Setup, g: torch.Generator, seed: int) -> dict:
    latent = encode_image(rec, "keyframe", s.encoder, g)
    rec.add("keyframe.in.frame_idx", torch.tensor([KEYFRAME_PIXEL_IDX], dtype=torch.int64), note="pixel frame index")
    cond = [VideoConditionByKeyframeIndex(keyframes=latent, frame_idx=KEYFRAME_PIXEL_IDX, strength=1.0)]
    sigmas = torch.Tensor(DISTILLED_SIGMA_VALUES).to(CPU)
    info = _euler(s, "keyframe", rec, sigmas, cond, seed, _simple(s), guided=False)
    pos = rec.arrays["keyframe.in.video.positions"]
    n = VideoLatentShape.from_pixel_shape(PIXELS, latent_channels=s.channels).token_count()
    rec.add("keyframe.in.appended_positions", torch.from_numpy(pos[:, :, n:].copy()),
            note="positions of the appended keyframe tokens (last entries of keyframe.in.video.positions)")
    return info | {"conditioning": f"VideoConditionByKeyframeIndex(keyframes=keyframe.in.image_latent, "
                                   f"frame_idx={KEYFRAME_PIXEL_IDX}, strength=1.0)",
                   "schedule": "DISTILLED_SIGMA_VALUES", "denoising_func": "simple_denoising_func"}


def run_attention_strength(rec: Recorder, s: Setup, g: torch.Generator) -> dict:
    """Extra (not in the format doc): three keyframes appended to a fresh state, with attention-strength masks.

    1: per-token mask (U(0,1), frame 16, strength 1); 2: scalar 0.5 (frame 8, strength 0.75); 3: no wrapper
    (frame 0, so the causal fix applies; strength 0.5): the existing mask is extended with full attention.
    """
    shape = VideoLatentShape.from_pixel_shape(PIXELS, latent_channels=s.channels)
    tools = VideoLatentTools(VideoLatentPatchifier(patch_size=1), shape, PIXELS.fps)
    state = tools.create_initial_state(CPU, F32)
    frame = (1, s.channels, 1, shape.height, shape.width)
    n_new = shape.height * shape.width
    keyframes = [rec.add(f"keyframe.attn.latent.{i}", torch.randn(frame, generator=g)) for i in range(3)]
    cross = rec.add("keyframe.attn.cross_mask.0", torch.rand(n_new, generator=g), note="per-token attention weight")
    frame_idx, strength = [16, 8, 0], [1.0, 0.75, 0.5]
    items = [
        ConditioningItemAttentionStrengthWrapper(
            VideoConditionByKeyframeIndex(keyframes=keyframes[0], frame_idx=16, strength=1.0), attention_mask=cross),
        ConditioningItemAttentionStrengthWrapper(
            VideoConditionByKeyframeIndex(keyframes=keyframes[1], frame_idx=8, strength=0.75), attention_mask=0.5),
        VideoConditionByKeyframeIndex(keyframes=keyframes[2], frame_idx=0, strength=0.5),
    ]
    for item in items:
        state = item.apply_to(state, tools)
    rec.add("keyframe.attn.frame_idx", torch.tensor(frame_idx, dtype=torch.int64))
    rec.add("keyframe.attn.strength", torch.tensor(strength, dtype=F32))
    rec.add("keyframe.attn.attention_mask", state.attention_mask, note="[B, T, T] after the three items")
    rec.add("keyframe.attn.positions", state.positions)
    rec.add("keyframe.attn.denoise_mask", state.denoise_mask)
    rec.add("keyframe.attn.latent", state.latent)
    cleared = tools.clear_conditioning(state)
    if cleared.attention_mask is not None or cleared.latent.shape[1] != shape.token_count():
        raise AssertionError("clear_conditioning should drop the appended tokens and the attention mask")
    return {"items": ["ConditioningItemAttentionStrengthWrapper(VideoConditionByKeyframeIndex(latent.0, frame_idx=16, "
                      "strength=1.0), attention_mask=cross_mask.0)",
                      "ConditioningItemAttentionStrengthWrapper(VideoConditionByKeyframeIndex(latent.1, frame_idx=8, "
                      "strength=0.75), attention_mask=0.5)",
                      "VideoConditionByKeyframeIndex(latent.2, frame_idx=0, strength=0.5)"],
            "initial_state": "VideoLatentTools.create_initial_state (zeros), 17x128x128 @ 24 fps"}


def run_res2s(rec: Recorder, s: Setup, seed: int) -> dict:
    """`TI2VidTwoStagesHQPipeline` stage 1 at tiny size, without LoRA: res_2s with the HQ guider params."""
    assert_resolution(height=PIXELS.height * 2, width=PIXELS.width * 2, is_two_stage=True)
    empty = torch.empty(VideoLatentShape.from_pixel_shape(PIXELS).to_torch_shape())
    sigmas = LTX2Scheduler().execute(latent=empty, steps=RES2S_STEPS).to(dtype=F32)
    hq = LTX_2_3_HQ_PARAMS
    (pv, pa), (nv, na) = s.ctx["pos"], s.ctx["neg"]
    generator = torch.Generator(device=CPU).manual_seed(seed)
    noiser = RecordingNoiser(generator)
    passes = PassRecorder(s.transformer, nv)
    ev = EvalRecorder(multi_modal_guider_denoising_func(
        video_guider=MultiModalGuider(params=hq.video_guider_params, negative_context=nv),
        audio_guider=MultiModalGuider(params=hq.audio_guider_params, negative_context=na),
        v_context=pv, a_context=pa, transformer=passes), passes)
    sde = SdeNoiseRecorder()
    cap = LoopCapture(lambda sig, vs, as_, st: res2s_audio_video_denoising_loop(
        sigmas=sig, video_state=vs, audio_state=as_, stepper=st, denoise_fn=ev, new_noise_fn=sde, model_dtype=F32))
    out = denoise_audio_video(output_shape=PIXELS, conditionings=[], noiser=noiser, sigmas=sigmas,
                              stepper=Res2sDiffusionStep(), denoising_loop_fn=cap, components=s.components(),
                              dtype=F32, device=CPU)
    s.last = (generator, out)
    info = record_run(rec, "res2s", sigmas, noiser, ev, cap, out, guided=True, prefix="eval")

    loop_sigmas = torch.cat([sigmas[:-1], torch.tensor([RES2S_FINAL_SIGMA, 0.0])]) if sigmas[-1] == 0 else sigmas
    rec.add("res2s.loop_sigmas", loop_sigmas, note="the sigmas the loop uses (a final 0 -> [0.0011, 0])")
    hs = -torch.log(loop_sigmas[1:].double() / loop_sigmas[:-1].double())
    rows, bong = [], []
    for i in range(RES2S_STEPS):
        h = hs[i].item()
        a21, b1, b2 = get_res2s_coefficients(h, {}, 0.5)
        sub = torch.sqrt(loop_sigmas[i].double() * loop_sigmas[i + 1].double())
        if not torch.equal(ev.evals[2 * i + 1].sigma, sub):
            raise AssertionError(f"res2s step {i}: sub-step sigma differs from the loop's")
        if not torch.equal(ev.evals[2 * i].sigma, loop_sigmas[i]):
            raise AssertionError(f"res2s step {i}: eval sigma differs from loop_sigmas")
        rows.append([h, a21, b1, b2, sub.item()])
        bong.append(bool(h < 0.5 and loop_sigmas[i].double() > 0.03))
    rec.add("res2s.coeffs", torch.tensor(rows, dtype=torch.float64), keep_float64=True,
            note="per step: h = ln(s_i/s_i+1), a21, b1, b2 (get_res2s_coefficients(h, c2=0.5)), sub_sigma")

    labels = [f"{i:02d}.{kind}.{m}" for i in range(RES2S_STEPS) for kind in ("substep", "step")
              for m in ("video", "audio")]
    if len(sde.draws) != len(labels):
        raise AssertionError(f"expected {len(labels)} SDE noise draws, got {len(sde.draws)}")
    seeds = {"substep": torch.Generator().manual_seed(9999).initial_seed(),
             "step": torch.Generator().manual_seed(-1).initial_seed()}
    video_shape = tuple(rec.arrays["res2s.in.video.noised_latent"].shape)
    for label, d in zip(labels, sde.draws, strict=True):
        _, kind, m = label.split(".")
        if d["seed"] != seeds[kind] or (d["shape"] == video_shape) != (m == "video"):
            raise AssertionError(f"SDE draw {label} came from seed {d['seed']} with shape {d['shape']}")
        rec.add(f"res2s.sde_noise.{label}", d["noise"], keep_float64=True, note="_get_new_noise output (normalized)")
        rec.add(f"res2s.sde_noise_raw.{label}", d["raw"], keep_float64=True, note="the raw float64 N(0,1) draw")
    return info | {
        "pipeline": "TI2VidTwoStagesHQPipeline stage 1 at 17x128x128 (tokens 48), no LoRA",
        "schedule": f"LTX2Scheduler().execute(latent=torch.empty({list(empty.shape)}), steps={RES2S_STEPS})",
        "video_guider_params": params_dict(hq.video_guider_params),
        "audio_guider_params": params_dict(hq.audio_guider_params),
        "loop_args": {"noise_seed": -1, "noise_seed_substep": None, "substep_seed_used": 9999, "bongmath": True,
                      "bongmath_max_iter": 100, "legacy_mode": True, "model_dtype": "float32",
                      "new_noise_fn": "SdeNoiseRecorder: calls the default _get_new_noise and records it"},
        "noise_draw_order": ["substep.video", "substep.audio", "step.video", "step.audio"],
        "generator_seeds": {"substep": 9999, "step": -1},
        "bong_iteration_per_step": bong,
        "evals": "eval 2i at sigma_i, 2i+1 at sub_sigma of step i (sigma float64), last at 0.0011",
    }
