"""Builds the "tiny run is the official run" fixture: the official distilled pipeline from a prompt string, bf16.

Run with the reference interpreter (never imports ltx_jax):

    .venv-ref/bin/python tests/reference/build_generate.py --main MAIN_FIXTURE_DIR --out DIR [--seed 0]

MAIN_FIXTURE_DIR is a main fixture directory of an LTX-2.3 preset (tests/reference/build.py, e.g. `ltx23-tiny`):
its checkpoint and x2 upsampler are copied and its preset (manifest `config`) sizes the Gemma folder. Next to them the builder writes a tiny Hugging Face Gemma-3 folder whose
width and depth are the preset's `text_encoder` (hidden 48, 2 layers; tests/reference/ltxref/gemma_folder.py,
the gemma builder's writer), then runs `DistilledPipeline.__call__` of ltx-pipelines 1.0.0 as its source reads,
with the official functions and the ModelLedger in bf16: `encode_prompts([PROMPT], ledger)` (tokenizer, Gemma,
feature extractor and connectors: the official Gemma path), stage 1 at half size (8 distilled Euler steps),
`upsample_video`, stage 2 (3 steps), the untiled decode with the pipeline's generator. Departures, all forced by
CPU-only tiny files: `torch.cuda.synchronize` is a no-op (CPU torch has no CUDA); the pipeline's built-in 12B
Gemma config and the feature extractor's width are the tiny folder's while the ledger builds them
(`tiny_ledger_config`, `gemma_width`); the video latent channels are the preset's 16. The main checkpoint has no
audio VAE, so the builder adds the audio builder's tiny LTX-2.3 audio VAE and vocoder (`ltx23-audio-tiny`,
calibrated as there) to the copied checkpoint; `decode_audio` then runs as in the pipeline. Every draw of the generator is recorded (noiser calls, decoder noise) so another
implementation can replay the run.

Writes DIR/ (built under a temporary name, renamed at the end): gemma/, ltx_checkpoint.safetensors,
upsampler_spatial_x2_rational.safetensors, fixtures.npz (`ctx.video_encoding`, `ctx.audio_encoding`,
`loop.{stage1,stage2}.{video,audio}.noise` token layout, `loop.decode.noise` [B, C, F, H, W],
`loop.decode.out.video` float [B, 3, F, H, W], `loop.decode.out.frames` uint8 [F, H, W, 3] as `decode_video`
maps them, `loop.audio.out.waveform` [channels, samples], `loop.audio.sample_rate`), manifest.json (prompt, pixel shape, seed, versions).
"""

import argparse
import json
import os
import shutil
import sys
import traceback
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

sys.path.insert(0, str(Path(__file__).resolve().parent / "stubs"))  # this checkout's torchaudio stub first

import safetensors.torch  # noqa: E402

from ltxref.atomic import Laps, build_atomically  # noqa: E402
from ltxref.audio import calibrate, checkpoint_config as audio_config, generate_state_dict  # noqa: E402
from ltxref.gemma_folder import write_folder  # noqa: E402
from ltxref.gemma_runs import tiny_ledger_config  # noqa: E402
from ltxref.loop import RecordingNoiser  # noqa: E402
from ltxref.official import gemma_width, package_versions  # noqa: E402
from ltxref.record import Recorder  # noqa: E402
from ltxref.vae_cases import decode  # noqa: E402
from ltx_core.components.diffusion_steps import EulerDiffusionStep  # noqa: E402
from ltx_core.model.audio_vae import decode_audio  # noqa: E402
from ltx_core.model.upsampler import upsample_video  # noqa: E402
from ltx_core.types import VideoPixelShape  # noqa: E402
from ltx_pipelines.utils.constants import DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES  # noqa: E402
from ltx_pipelines.utils.helpers import (assert_resolution, denoise_audio_video, encode_prompts,  # noqa: E402
                                         simple_denoising_func)
from ltx_pipelines.utils.model_ledger import ModelLedger  # noqa: E402
from ltx_pipelines.utils.samplers import euler_denoising_loop  # noqa: E402
from ltx_pipelines.utils.types import PipelineComponents  # noqa: E402

PROMPT = "A red fox trots through fresh snow at dawn, its breath steaming; birds call from the pines."
PIXELS = {"frames": 17, "height": 128, "width": 128, "fps": 24.0}
CHECKPOINT, UPSAMPLER = "ltx_checkpoint.safetensors", "upsampler_spatial_x2_rational.safetensors"
CPU = torch.device("cpu")


def gemma_config(preset: dict) -> dict:
    """A tiny Gemma-3 text config with the preset's width and depth (the checkpoint's feature extractor input)."""
    te = preset["text_encoder"]
    return {"hidden_size": te["hidden_size"], "intermediate_size": 96, "num_hidden_layers": te["num_hidden_layers"],
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "query_pre_attn_scalar": 16,
            "sliding_window": 8, "sliding_window_pattern": 2, "rope_theta": 1_000_000.0,
            "rope_local_base_freq": 10_000.0, "rope_scaling": {"rope_type": "linear", "factor": 8.0}}


def build(out: Path, main: Path, seed: int) -> dict:
    lap = Laps()
    preset = json.loads((main / "manifest.json").read_text())["config"]  # the main fixture's own preset
    if "text_encoder" not in preset or not str(preset.get("model_version", "")).startswith("2.3"):
        raise ValueError(f"{main}: expected an LTX-2.3 main fixture whose preset names its text_encoder width")
    shutil.copyfile(main / UPSAMPLER, out / UPSAMPLER)
    # The main tiny checkpoint plus the tiny LTX-2.3 audio VAE and vocoder (BigVGAN-v2 + BWE to 48 kHz) of the
    # audio builder's `ltx23-audio-tiny` preset, weights calibrated as that builder does: one official file.
    audio_preset = json.loads((Path(__file__).resolve().parent / "configs" / "ltx23-audio-tiny.json").read_text())
    audio, modules = generate_state_dict(audio_preset, seed)
    calibrate(audio, modules, audio_preset, seed)
    tensors = safetensors.torch.load_file(str(main / CHECKPOINT))
    with safetensors.safe_open(str(main / CHECKPOINT), framework="pt") as f:
        meta = dict(f.metadata())
    config = {**json.loads(meta["config"]), **audio_config(audio_preset)}
    safetensors.torch.save_file({**tensors, **{k: v.contiguous() for k, v in audio.items()}}, str(out / CHECKPOINT),
                                metadata={**meta, "config": json.dumps(config)})
    text = gemma_config(preset)
    info = write_folder(out / "gemma", text, seed)
    lap("files")

    torch.cuda.synchronize = lambda *a, **k: None  # CPU-only torch; the pipeline calls it between phases
    rec = Recorder()
    pixels = VideoPixelShape(batch=1, **PIXELS)
    assert_resolution(height=pixels.height, width=pixels.width, is_two_stage=True)
    with tiny_ledger_config(info["config"]), gemma_width(text["hidden_size"], text["num_hidden_layers"]):
        ledger = ModelLedger(dtype=torch.bfloat16, device=CPU, checkpoint_path=str(out / CHECKPOINT),
                             spatial_upsampler_path=str(out / UPSAMPLER), gemma_root_path=str(out / "gemma"))
        (ctx,) = encode_prompts([PROMPT], ledger)
    lap("text")
    rec.add("ctx.video_encoding", ctx.video_encoding.float(), note="official encode_prompts, bf16")
    rec.add("ctx.audio_encoding", ctx.audio_encoding.float(), note="official encode_prompts, bf16")

    # DistilledPipeline.__call__ (ltx-pipelines 1.0.0), images=[], tiling_config=None, enhance_prompt=False.
    dtype = torch.bfloat16
    generator = torch.Generator(device=CPU).manual_seed(seed)
    noiser = RecordingNoiser(generator)
    stepper = EulerDiffusionStep()
    components = PipelineComponents(dtype=dtype, device=CPU)
    components.video_latent_channels = preset["vae"]["latent_channels"]  # the pipeline constant is 128
    video_encoder, transformer = ledger.video_encoder(), ledger.transformer()

    def denoising_loop(sigmas, video_state, audio_state, stepper):  # noqa: ANN001, ANN202
        return euler_denoising_loop(sigmas=sigmas, video_state=video_state, audio_state=audio_state, stepper=stepper,
                                    denoise_fn=simple_denoising_func(video_context=ctx.video_encoding,
                                                                     audio_context=ctx.audio_encoding,
                                                                     transformer=transformer))

    stage_1 = VideoPixelShape(batch=1, frames=pixels.frames, width=pixels.width // 2, height=pixels.height // 2,
                              fps=pixels.fps)
    video_state, audio_state = denoise_audio_video(
        output_shape=stage_1, conditionings=[], noiser=noiser, sigmas=torch.Tensor(DISTILLED_SIGMA_VALUES),
        stepper=stepper, denoising_loop_fn=denoising_loop, components=components, dtype=dtype, device=CPU)
    upscaled = upsample_video(latent=video_state.latent[:1], video_encoder=video_encoder,
                              upsampler=ledger.spatial_upsampler())
    stage_2_sigmas = torch.Tensor(STAGE_2_DISTILLED_SIGMA_VALUES)
    video_state, audio_state = denoise_audio_video(
        output_shape=pixels, conditionings=[], noiser=noiser, sigmas=stage_2_sigmas, stepper=stepper,
        denoising_loop_fn=denoising_loop, components=components, dtype=dtype, device=CPU,
        noise_scale=stage_2_sigmas[0], initial_video_latent=upscaled, initial_audio_latent=audio_state.latent)
    lap("loop")
    video, decode_noise = decode(ledger.video_decoder(), video_state.latent, generator)
    lap("decode")
    audio_out = decode_audio(audio_state.latent, ledger.audio_decoder(), ledger.vocoder())
    lap("audio")

    labels = ("stage1.video", "stage1.audio", "stage2.video", "stage2.audio")
    if len(noiser.calls) != len(labels):
        raise AssertionError(f"expected 4 noiser calls, got {len(noiser.calls)}")
    for label, call in zip(labels, noiser.calls, strict=True):
        rec.add(f"loop.{label}.noise", call["noise"].float(), note="token layout [B, T, C], bf16 draw")
    rec.add("loop.stage2.out.video_latent", video_state.latent.float(), note="unpatchified [B, C, F, H, W]")
    rec.add("loop.stage2.out.audio_latent", audio_state.latent.float(), note="unpatchified [B, 8, T, 16]")
    rec.add("loop.audio.out.waveform", audio_out.waveform.float(), note="decode_audio (audio VAE + vocoder + BWE)")
    rec.add("loop.audio.sample_rate", torch.tensor([audio_out.sampling_rate]), note="Hz")
    if decode_noise is not None:
        rec.add("loop.decode.noise", decode_noise.float(), note="drawn from the pipeline generator after stage 2")
    rec.add("loop.decode.out.video", video.float(), note="bf16 decoder output before the uint8 mapping")
    frames = (((video.float() + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0).to(torch.uint8)[0].permute(1, 2, 3, 0)
    rec.add("loop.decode.out.frames", frames, note="decode_video's uint8 mapping, [F, H, W, 3]")
    if float(video.float().std()) < 1e-3:
        raise AssertionError("decode is constant")
    rec.save(str(out / "fixtures.npz"))
    lap("save")
    return {"builder": "tests/reference/build_generate.py", "prompt": PROMPT, "pixels": PIXELS, "seed": seed,
            "main_fixture": str(main), "gemma_config": info["config"], "dtype": "bfloat16",
            "pipeline": "ltx_pipelines.distilled.DistilledPipeline.__call__ (from its source)",
            "timings": lap.timings, "arrays": rec.meta, "versions": package_versions()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--main", required=True, help="an ltx23-tiny main fixture directory")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        build_atomically(Path(args.out), lambda tmp: build(tmp, Path(args.main), args.seed))
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
