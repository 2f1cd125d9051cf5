"""Recording wrappers for the loop fixtures: transformer passes, model evaluations, steppers and SDE noise.

Each wrapper calls the official object it wraps and keeps copies of what went in and out, so the fixture
holds exactly what the official loop computed (nothing is recomputed on the side). Used by `loops_cases`.
"""

from dataclasses import dataclass, field

import torch

from ltx_core.guidance.perturbations import BatchedPerturbationConfig, PerturbationType
from ltx_core.model.transformer import Modality
from ltx_core.types import LatentState
from ltx_pipelines.utils.helpers import post_process_latent
from ltx_pipelines.utils.samplers import _get_new_noise

PASS_ORDER = ("cond", "uncond", "perturbed", "isolated")
_STG = {PerturbationType.SKIP_VIDEO_SELF_ATTN, PerturbationType.SKIP_AUDIO_SELF_ATTN}
_ISOLATION = {PerturbationType.SKIP_A2V_CROSS_ATTN, PerturbationType.SKIP_V2A_CROSS_ATTN}


@dataclass
class Pass:
    kind: str
    video: Modality
    audio: Modality
    x0: tuple[torch.Tensor, torch.Tensor]
    perturbations: list[dict] = field(default_factory=list)


def _describe(perturbations: BatchedPerturbationConfig | None) -> list[dict]:
    if perturbations is None:
        return []
    if len(perturbations.perturbations) != 1:
        raise AssertionError("the guided loops batch one sample per pass")
    return [{"type": p.type.value, "blocks": p.blocks} for p in perturbations.perturbations[0].perturbations]


class PassRecorder:
    """Wraps the official `X0Model`; labels each call cond / uncond / perturbed / isolated.

    uncond is told apart by its context (the negative one, by identity); the other passes by their
    perturbation types (STG: skip video/audio self-attention; isolated: skip a2v + v2a cross-attention).
    """

    def __init__(self, model: torch.nn.Module, negative_video_context: torch.Tensor | None = None) -> None:
        self.model = model
        self.negative_video_context = negative_video_context
        self.calls: list[Pass] = []

    def _kind(self, video: Modality, perturbations: BatchedPerturbationConfig | None) -> str:
        if perturbations is None:
            neg = self.negative_video_context
            return "uncond" if neg is not None and video.context is neg else "cond"
        types = {p.type for p in perturbations.perturbations[0].perturbations}
        if types <= _STG:
            return "perturbed"
        if types == _ISOLATION:
            return "isolated"
        raise AssertionError(f"unexpected perturbations {types}")

    def __call__(self, video: Modality, audio: Modality, perturbations):  # noqa: ANN001, ANN204
        kind = self._kind(video, perturbations)
        out = self.model(video=video, audio=audio, perturbations=perturbations)
        self.calls.append(Pass(kind, video, audio, tuple(x.clone() for x in out), _describe(perturbations)))
        return out


@dataclass
class Eval:
    """One call of the denoising function (one Euler step, or one res_2s evaluation)."""

    sigma: torch.Tensor  # what the denoising function passes as Modality.sigma (0-d)
    video_state: LatentState
    audio_state: LatentState
    x0: tuple[torch.Tensor, torch.Tensor]
    blended: tuple[torch.Tensor, torch.Tensor]  # post_process_latent(x0, mask, clean)
    passes: list[Pass]


class EvalRecorder:
    """Wraps an official `DenoisingFunc`; keeps each evaluation's inputs, passes and returned x0."""

    def __init__(self, denoise_fn, passes: PassRecorder) -> None:  # noqa: ANN001
        self.fn = denoise_fn
        self.passes = passes
        self.evals: list[Eval] = []

    def __call__(self, video_state: LatentState, audio_state: LatentState, sigmas: torch.Tensor,
                 step_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = len(self.passes.calls)
        vx0, ax0 = self.fn(video_state, audio_state, sigmas, step_index)
        passes = self.passes.calls[start:]
        if not passes:
            raise AssertionError("a denoising call ran no transformer pass (skip_step is not recorded)")
        for p in passes:  # every pass sees the same latents, timesteps and sigma
            for m, s in ((p.video, video_state), (p.audio, audio_state)):
                if not torch.equal(m.latent, s.latent):
                    raise AssertionError(f"{p.kind} pass got a latent other than the state's")
        blended = (post_process_latent(vx0, video_state.denoise_mask, video_state.clean_latent),
                   post_process_latent(ax0, audio_state.denoise_mask, audio_state.clean_latent))
        self.evals.append(Eval(sigmas[step_index].clone(), video_state.clone(), audio_state.clone(),
                               (vx0.clone(), ax0.clone()), tuple(b.clone() for b in blended), passes))
        return vx0, ax0


class StepRecorder:
    """Wraps an official diffusion step; keeps (sample, denoised_sample, output) of each call."""

    def __init__(self, stepper) -> None:  # noqa: ANN001
        self.stepper = stepper
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def step(self, sample: torch.Tensor, denoised_sample: torch.Tensor, sigmas: torch.Tensor, step_index: int,
             **kwargs) -> torch.Tensor:  # noqa: ANN003
        out = self.stepper.step(sample, denoised_sample, sigmas, step_index, **kwargs)
        self.calls.append((sample.clone(), denoised_sample.clone(), out.clone()))
        return out


class SdeNoiseRecorder:
    """`new_noise_fn` for `res2s_audio_video_denoising_loop` that calls the default `_get_new_noise`.

    Keeps, per draw, the generator's initial seed, the raw float64 N(0, 1) draw (replayed from the generator
    and checked to be the only thing drawn) and the normalized noise the loop received.
    """

    def __init__(self) -> None:
        self.draws: list[dict] = []

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        before = generator.get_state()
        raw = torch.randn(x.shape, generator=generator, dtype=torch.float64, device=generator.device)
        after = generator.get_state()
        generator.set_state(before)
        noise = _get_new_noise(x, generator)
        if not torch.equal(after, generator.get_state()):
            raise AssertionError("_get_new_noise drew something other than the replayed float64 draw")
        self.draws.append({"seed": generator.initial_seed(), "shape": tuple(x.shape), "raw": raw,
                           "noise": noise.clone()})
        return noise


class LoopCapture:
    """Wraps a denoising-loop function to keep the final (patchified) states before `clear_conditioning`."""

    def __init__(self, loop_fn) -> None:  # noqa: ANN001
        self.loop_fn = loop_fn
        self.final: tuple[LatentState, LatentState] | None = None

    def __call__(self, sigmas, video_state, audio_state, stepper):  # noqa: ANN001, ANN204
        out = self.loop_fn(sigmas, video_state, audio_state, stepper)
        self.final = (out[0].clone(), out[1].clone())
        return out
