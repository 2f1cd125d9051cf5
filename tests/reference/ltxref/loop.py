"""The two-stage distilled loop of `ltx_pipelines.distilled.DistilledPipeline`, with every draw recorded.

`run_distilled_loop` reproduces `DistilledPipeline.__call__` from its source with the official functions
(`denoise_audio_video`, `euler_denoising_loop`, `simple_denoising_func`, `upsample_video`, the decoder), minus
the text encoder (the contexts come from the fixture's connector run), image conditioning and tiling.
`RecordingNoiser` and `RecordingX0` are thin wrappers reusable by later loop fixtures.
"""

import torch

from ltxref.record import Recorder
from ltxref.vae_cases import decode
from ltx_core.components.diffusion_steps import EulerDiffusionStep
from ltx_core.components.noisers import GaussianNoiser
from ltx_core.model.upsampler import upsample_video
from ltx_core.types import LatentState, VideoPixelShape
from ltx_pipelines.utils.constants import DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES
from ltx_pipelines.utils.helpers import assert_resolution, denoise_audio_video, simple_denoising_func
from ltx_pipelines.utils.samplers import euler_denoising_loop
from ltx_pipelines.utils.types import PipelineComponents

CPU = torch.device("cpu")
LOOP_PIXELS = VideoPixelShape(batch=1, frames=17, height=256, width=256, fps=24.0)  # stage 1 latent 3x4x4


class RecordingNoiser:
    """`GaussianNoiser` that also keeps each call's input, noise and output (noise replayed from the generator)."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator
        self.noiser = GaussianNoiser(generator=generator)
        self.calls: list[dict] = []

    def __call__(self, latent_state: LatentState, noise_scale: float | torch.Tensor = 1.0) -> LatentState:
        before = self.generator.get_state()
        lat = latent_state.latent
        noise = torch.randn(*lat.shape, device=lat.device, dtype=lat.dtype, generator=self.generator)
        after = self.generator.get_state()
        self.generator.set_state(before)
        out = self.noiser(latent_state, noise_scale)
        if not torch.equal(after, self.generator.get_state()):
            raise AssertionError("GaussianNoiser drew something other than the replayed noise")
        self.calls.append({
            "pre_noise_latent": lat.clone(), "noise": noise, "noised_latent": out.latent.clone(),
            "noise_scale": torch.as_tensor(noise_scale, dtype=torch.float32).reshape(1),
            "positions": latent_state.positions.clone(), "denoise_mask": latent_state.denoise_mask.clone(),
            "clean_latent": latent_state.clean_latent.clone(),
        })
        return out


class RecordingX0:
    """Calls an `X0Model` and keeps each call's (video_x0, audio_x0)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, video, audio, perturbations):  # noqa: ANN001, ANN204
        out = self.model(video=video, audio=audio, perturbations=perturbations)
        self.calls.append(tuple(x.clone() for x in out))
        return out


def run_distilled_loop(rec: Recorder, x0_model: torch.nn.Module, encoder: torch.nn.Module,
                       decoder: torch.nn.Module, upsampler: torch.nn.Module, video_context: torch.Tensor,
                       audio_context: torch.Tensor, latent_channels: int, seed: int, dtype: torch.dtype = torch.float32,
                       prefix: str = "loop") -> None:
    """The distilled two-stage loop recorded under `<prefix>.*` (`loop` in float32 as the format doc says; our
    builder also records `loop_bf16` with bf16 models and dtype, as `DistilledPipeline` runs by default)."""
    pixels = LOOP_PIXELS
    assert_resolution(height=pixels.height, width=pixels.width, is_two_stage=True)
    generator = torch.Generator(device=CPU).manual_seed(seed)
    noiser = RecordingNoiser(generator)
    stepper = EulerDiffusionStep()
    transformer = RecordingX0(x0_model)
    components = PipelineComponents(dtype=dtype, device=CPU)
    components.video_latent_channels = latent_channels  # the pipeline constant is 128

    def denoising_loop(sigmas, video_state, audio_state, stepper):  # noqa: ANN001, ANN202
        return euler_denoising_loop(
            sigmas=sigmas, video_state=video_state, audio_state=audio_state, stepper=stepper,
            denoise_fn=simple_denoising_func(video_context=video_context, audio_context=audio_context,
                                             transformer=transformer),
        )

    stage_1_sigmas = torch.Tensor(DISTILLED_SIGMA_VALUES).to(CPU)
    stage_1_shape = VideoPixelShape(batch=1, frames=pixels.frames, width=pixels.width // 2,
                                    height=pixels.height // 2, fps=pixels.fps)
    video_state, audio_state = denoise_audio_video(
        output_shape=stage_1_shape, conditionings=[], noiser=noiser, sigmas=stage_1_sigmas, stepper=stepper,
        denoising_loop_fn=denoising_loop, components=components, dtype=dtype, device=CPU,
    )
    stage_1 = (video_state.latent, audio_state.latent)
    upscaled = upsample_video(latent=video_state.latent[:1], video_encoder=encoder, upsampler=upsampler)

    stage_2_sigmas = torch.Tensor(STAGE_2_DISTILLED_SIGMA_VALUES).to(CPU)
    stage_2_shape = VideoPixelShape(batch=1, frames=pixels.frames, width=pixels.width, height=pixels.height,
                                    fps=pixels.fps)
    video_state, audio_state = denoise_audio_video(
        output_shape=stage_2_shape, conditionings=[], noiser=noiser, sigmas=stage_2_sigmas, stepper=stepper,
        denoising_loop_fn=denoising_loop, components=components, dtype=dtype, device=CPU,
        noise_scale=stage_2_sigmas[0], initial_video_latent=upscaled, initial_audio_latent=audio_state.latent,
    )
    video, decode_noise = decode(decoder, video_state.latent, generator)

    rec.add(f"{prefix}.seed", torch.tensor([seed], dtype=torch.int64), note="torch.Generator seed of the pipeline")
    rec.add(f"{prefix}.stage1.sigmas", stage_1_sigmas, note="DISTILLED_SIGMA_VALUES")
    rec.add(f"{prefix}.stage2.sigmas", stage_2_sigmas, note="STAGE_2_DISTILLED_SIGMA_VALUES")
    if prefix == "loop":
        rec.add("loop.sigmas.stage1", stage_1_sigmas, note="older name of loop.stage1.sigmas (format doc)")
        rec.add("loop.sigmas.stage2", stage_2_sigmas, note="older name of loop.stage2.sigmas (format doc)")
    labels = ("stage1.video", "stage1.audio", "stage2.video", "stage2.audio")
    if len(noiser.calls) != len(labels):
        raise AssertionError(f"expected 4 noiser calls, got {len(noiser.calls)}")
    for label, call in zip(labels, noiser.calls, strict=True):
        for field in ("pre_noise_latent", "noise", "noised_latent", "noise_scale", "positions", "denoise_mask"):
            note = "token layout [B, T, C]" if field in ("pre_noise_latent", "noise", "noised_latent") else None
            rec.add(f"{prefix}.{label}.{field}", call[field], note=note)
    n_steps = (len(stage_1_sigmas) - 1) + (len(stage_2_sigmas) - 1)
    if len(transformer.calls) != n_steps:
        raise AssertionError(f"expected {n_steps} transformer calls, got {len(transformer.calls)}")
    for i, (vx0, ax0) in enumerate(transformer.calls):
        rec.add(f"{prefix}.step{i:02d}.video_x0", vx0, note="X0Model output, token layout")
        rec.add(f"{prefix}.step{i:02d}.audio_x0", ax0, note="X0Model output, token layout")
    rec.add(f"{prefix}.stage1.out.video_latent", stage_1[0], note="unpatchified [B, C, F, H, W]")
    rec.add(f"{prefix}.stage1.out.audio_latent", stage_1[1], note="unpatchified [B, 8, T, 16]")
    rec.add(f"{prefix}.upsample.out.video_latent", upscaled, note="upsample_video(stage-1 latent), spatial_x2_rational")
    if prefix == "loop":
        rec.add("loop.stage2.in.upsampled_latent", upscaled, note="older name of loop.upsample.out.video_latent")
        for label, call in zip(labels, noiser.calls, strict=True):  # older names of the positions (format doc)
            if label.endswith("video"):
                rec.add(f"loop.{label.split('.')[0]}.video_positions", call["positions"], note="older name")
            elif label == "stage1.audio":
                rec.add("loop.audio_positions", call["positions"], note="older name")
    rec.add(f"{prefix}.stage2.out.video_latent", video_state.latent, note="unpatchified")
    rec.add(f"{prefix}.stage2.out.audio_latent", audio_state.latent, note="unpatchified")
    if decode_noise is not None:
        rec.add(f"{prefix}.decode.noise", decode_noise, note="drawn from the same generator after stage 2")
    rec.add(f"{prefix}.decode.out.video", video, note="untiled float decode, before the uint8 mapping")
    if float(video.std()) < 1e-3:
        raise AssertionError("loop decode is constant")
