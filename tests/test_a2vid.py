"""Audio-to-video (`a2vid_two_stage`, ltx_pipelines `A2VidPipelineTwoStage`): the input audio read as
`decode_audio_from_file` reads it, resampled as torchaudio's `resample` defines it, encoded, and held clean while
the video is denoised; the whole two-stage run replayed against the official functions."""

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from ltx_jax.audio_vae.waveform_resample import resample_waveform
from ltx_jax.configs import Runtime
from ltx_jax.parity.audio import BOUND as AUDIO_BOUND
from conftest import build_audio_reference, build_loops_reference, run_ref_python

F32 = Runtime(param_dtype="float32", compute_dtype="float32")
FRAMES, FPS, SIZE, STEPS = 17, 24.0, 256, 2  # stage 1 at 128 px: the loop fixture's size


def _sinc_sum(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    """torchaudio's documented resampling, evaluated directly in float64 (no polyphase, no convolution):
    y[j] = sum_i x[i] (c / o) sinc(c (i / o - j / n)) cos(pi t / 12)^2, t = clip(c (i / o - j / n), -6, 6),
    rates reduced by their gcd, c = 0.99 min(o, n), only |t| < 6 contributing."""
    g = math.gcd(orig, new)
    o, n = orig // g, new // g
    c = 0.99 * min(o, n)
    i = np.arange(x.shape[-1])
    out = np.zeros(x.shape[:-1] + (math.ceil(n * x.shape[-1] / o),))
    for j in range(out.shape[-1]):
        t = c * (i / o - j / n)
        near = np.abs(t) < 6
        tt = t[near]
        out[..., j] = x[..., near].astype(np.float64) @ ((c / o) * np.sinc(tt) * np.cos(np.pi * tt / 12) ** 2)
    return out


@pytest.mark.parametrize("orig, new", [(44100, 16000), (48000, 16000), (22050, 16000), (8000, 16000)])
def test_resampling_equals_the_documented_sinc_interpolation(orig, new):
    x = np.random.default_rng(orig).standard_normal((2, 3, orig // 40)).astype(np.float32)  # 25 ms, [B, C, S]
    ours = resample_waveform(x, orig, new)
    ref = _sinc_sum(x, orig, new)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    # torchaudio (and so ours) builds the kernel in the waveform's float32: its phase grid c (i / o - j / n) is
    # rounded in float32 (~2e-5 at |t| ~ 6 for c ~ 160): measured 1.2e-7 (x2 up) to 1.3e-5 (22.05 kHz) relative
    # against the float64 sum; a float64 kernel would give ~1e-7 everywhere
    assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-4
    assert resample_waveform(x, new, new) is not None and np.array_equal(resample_waveform(x, new, new), x)


def test_resampling_keeps_a_tone_and_refuses_bad_rates():
    t = np.arange(44100) / 44100
    y = resample_waveform(np.sin(2 * np.pi * 440 * t).astype(np.float32), 44100, 16000)
    want = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert y.shape == (16000,) and np.abs(y - want)[200:-200].max() < 1e-3  # band-limited: exact but for the ends
    with pytest.raises(ValueError, match="positive integers"):
        resample_waveform(y, 44100.5, 16000)


def _write_audio(path: Path, wave: np.ndarray, rate: int, codec: str) -> Path:
    import av
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.codec_context.layout = "stereo"
        if codec == "pcm_s16le":
            frame = av.AudioFrame.from_ndarray((wave.T.reshape(1, -1) * 32767).astype(np.int16), format="s16",
                                               layout="stereo")
        else:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, 0
        for p in [*s.encode(frame), *s.encode(None)]:
            c.mux(p)
    return path


def _tones(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t + 1)]).astype(np.float32)


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> dict:
    """One reference process for both tests below: `decode_audio_from_file` on four (file, start, duration)
    reads, then the a2vid run on a 16 kHz stereo file. Returns the paths, the read specs and the arrays."""
    d = tmp_path_factory.mktemp("a2vid")
    loops, audio = build_loops_reference("ltx23-tiny", 0), build_audio_reference("ltx23-audio-tiny", 0)
    wav = _write_audio(d / "a.wav", _tones(44100, 1.0), 44100, "pcm_s16le")
    m4a = _write_audio(d / "a.m4a", _tones(48000, 1.5), 48000, "aac")
    wav16 = _write_audio(d / "in.wav", _tones(16000, 1.0), 16000, "pcm_s16le")
    specs = [(wav, 0.0, None), (wav, 0.25, 0.5), (m4a, 0.0, 0.7), (m4a, 0.31, 0.6)]  # mid-frame starts and ends
    t0 = time.perf_counter()
    run_ref_python(A2VID, str(loops), str(audio), str(wav16), str(d / "r.npz"), str(FRAMES), str(FPS), str(SIZE),
                   str(STEPS), *[f"{p},{s},{t}" for p, s, t in specs])
    return {"loops": loops, "audio": audio, "wav": wav16, "specs": specs, "ref": dict(np.load(d / "r.npz")),
            "reference_s": round(time.perf_counter() - t0, 1)}


@pytest.mark.reference
def test_read_audio_equals_decode_audio_from_file(official):
    from ltx_jax.pipelines.audio_input import read_audio
    ref = official["ref"]
    for i, (path, start, dur) in enumerate(official["specs"]):
        ours = read_audio(path, start, dur)
        assert ours.sample_rate == int(ref[f"read.{i}.rate"])
        np.testing.assert_array_equal(ours.waveform, ref[f"read.{i}.wave"][0], err_msg=str(official["specs"][i]))


A2VID = """
import json, os, sys
from pathlib import Path
os.environ["TQDM_DISABLE"] = "1"
sys.path[:0] = ["tests/reference/stubs", "tests/reference"]
import numpy as np, torch
from ltxref.audio import AUDIO_FILE
from ltxref.loop import RecordingNoiser
from ltxref.loops_cases import Setup
from ltxref.vae_cases import decode
from ltxref.weights import ledger, load_components
from ltx_core.components.diffusion_steps import EulerDiffusionStep
from ltx_core.components.guiders import MultiModalGuider, MultiModalGuiderParams
from ltx_core.components.schedulers import LTX2Scheduler
from ltx_core.model.audio_vae import encode_audio
from ltx_core.model.upsampler import upsample_video
from ltx_core.types import AudioLatentShape, VideoPixelShape
from ltx_pipelines.utils.constants import STAGE_2_DISTILLED_SIGMA_VALUES
from ltx_pipelines.utils.helpers import denoise_video_only, multi_modal_guider_denoising_func, simple_denoising_func
from ltx_pipelines.utils.media_io import decode_audio_from_file
from ltx_pipelines.utils.samplers import euler_denoising_loop

loops, audio_dir, wav, out = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
frames, fps, size, steps = int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
F32, CPU = torch.float32, torch.device("cpu")
rec = {}
for i, spec in enumerate(sys.argv[9:]):
    path, start, dur = spec.split(",")
    a = decode_audio_from_file(path, CPU, float(start), None if dur == "None" else float(dur))
    rec[f"read.{i}.wave"], rec[f"read.{i}.rate"] = a.waveform, torch.tensor(a.sampling_rate)
manifest = json.loads((loops / "manifest.json").read_text())
preset, fx = manifest["config"], np.load(loops / "fixtures.npz")
# A2VidPipelineTwoStage.__call__ from its source: audio in, encoded, cut to the video's length
decoded = decode_audio_from_file(wav, CPU, 0.0, frames / fps)
latent = encode_audio(decoded, ledger(audio_dir, F32, checkpoint=AUDIO_FILE).audio_encoder())
latent = latent[:, :, :AudioLatentShape.from_duration(batch=1, duration=frames / fps, channels=8, mel_bins=16).frames]
rec["wave"], rec["audio_latent"] = decoded.waveform, latent
loaded = load_components(loops, preset, F32)
ctx = {k: (torch.from_numpy(fx[f"ctx.{k}.video"]), torch.from_numpy(fx[f"ctx.{k}.audio"])) for k in ("pos", "neg")}
s = Setup(transformer=loaded["transformer"], encoder=loaded["vae_encoder"], ctx=ctx,
          channels=preset["transformer"]["in_channels"], num_layers=preset["transformer"]["num_layers"])
(pv, pa), (nv, _) = ctx["pos"], ctx["neg"]
vp = MultiModalGuiderParams(**manifest["runs"]["guided"]["video_guider_params"])
noiser = RecordingNoiser(torch.Generator().manual_seed(7))
loop1 = lambda sig, vs, as_, st: euler_denoising_loop(sigmas=sig, video_state=vs, audio_state=as_, stepper=st,
    denoise_fn=multi_modal_guider_denoising_func(video_guider=MultiModalGuider(params=vp, negative_context=nv),
        audio_guider=MultiModalGuider(params=MultiModalGuiderParams()), v_context=pv, a_context=pa,
        transformer=s.transformer))
v1 = denoise_video_only(output_shape=VideoPixelShape(batch=1, frames=frames, width=size // 2, height=size // 2, fps=fps),
    conditionings=[], noiser=noiser, sigmas=LTX2Scheduler().execute(steps=steps).to(F32), stepper=EulerDiffusionStep(),
    denoising_loop_fn=loop1, components=s.components(), dtype=F32, device=CPU, initial_audio_latent=latent)
rec["stage1.video"] = v1.latent
up = upsample_video(latent=v1.latent[:1], video_encoder=s.encoder, upsampler=loaded["upsampler.spatial_x2"])
sig2 = torch.Tensor(STAGE_2_DISTILLED_SIGMA_VALUES)
loop2 = lambda sig, vs, as_, st: euler_denoising_loop(sigmas=sig, video_state=vs, audio_state=as_, stepper=st,
    denoise_fn=simple_denoising_func(video_context=pv, audio_context=pa, transformer=s.transformer))
v2 = denoise_video_only(output_shape=VideoPixelShape(batch=1, frames=frames, width=size, height=size, fps=fps),
    conditionings=[], noiser=noiser, sigmas=sig2, stepper=EulerDiffusionStep(), denoising_loop_fn=loop2,
    components=s.components(), dtype=F32, device=CPU, noise_scale=sig2[0], initial_video_latent=up,
    initial_audio_latent=latent)
rec["stage2.video"] = v2.latent
rec["video"], rec["decode_noise"] = decode(loaded["vae_decoder"], v2.latent, noiser.generator)
for i, call in enumerate(noiser.calls):  # stage 1 video, audio (scale 0); stage 2 video, audio (scale 0)
    rec[f"noise.{i}"], rec[f"noise_scale.{i}"] = call["noise"], call["noise_scale"]
np.savez(out, **{k: v.detach().numpy() for k, v in rec.items()})
"""


@pytest.mark.reference
def test_a2vid_replays_the_official_pipeline(official):
    """Our a2vid_two_stage against `A2VidPipelineTwoStage`'s call sequence with the official functions (float32,
    tiny ltx23 weights of the loop fixture, the audio encoder of the ltx23-audio-tiny fixture, a 16 kHz stereo
    file so that ltx-core needs no torchaudio resampling; stage 2 on the base weights, as ltx-core cannot fuse
    the distilled LoRA into float32): input waveform, audio latent, both stages' video latents and the decode."""
    import jax.numpy as jnp

    from ltx_jax.audio_vae import load_audio_encoder
    from ltx_jax.parity import Fixture, relative_error
    from ltx_jax.parity.loop import BOUND
    from ltx_jax.parity.loop_runs import recorded_guidance
    from ltx_jax.pipelines import Request, StageNoise, load_models
    from ltx_jax.pipelines.audio_input import read_audio
    from ltx_jax.pipelines.generation import a2vid_two_stage
    from ltx_jax.sampling.samplers import Prompt, TextContext

    loops, audio, wav, ref = official["loops"], official["audio"], official["wav"], official["ref"]
    assert [float(ref[f"noise_scale.{i}"][0]) for i in (1, 3)] == [0.0, 0.0]  # the audio is never noised
    t0 = time.perf_counter()
    fx = Fixture(loops)
    models = load_models(loops / "ltx_checkpoint.safetensors", runtime=F32,
                         upsampler=loops / "upsampler_spatial_x2.safetensors")
    models.dit_stage2 = models.dit  # base weights in stage 2, as the reference
    models.audio_encoder = load_audio_encoder(audio / "audio_checkpoint.safetensors", F32)
    ctx = {k: TextContext(jnp.asarray(fx[f"ctx.{k}.video"]), jnp.asarray(fx[f"ctx.{k}.audio"])) for k in ("pos", "neg")}
    request = Request(frames=FRAMES, height=SIZE, width=SIZE, fps=FPS, audio=read_audio(wav, 0.0, FRAMES / FPS))
    np.testing.assert_array_equal(request.audio.waveform, ref["wave"][0])
    noise = {"stage1": StageNoise(ref["noise.0"], ref["noise.1"]), "stage2": StageNoise(ref["noise.2"], ref["noise.3"])}
    out = a2vid_two_stage(models, Prompt(ctx["pos"], ctx["neg"]), request, steps=STEPS,
                          video=recorded_guidance(fx, "guided").video, noise=noise,
                          decode_noise=np.moveaxis(ref["decode_noise"], 1, -1))
    latent = ref["audio_latent"]  # [1, 8, T, 16] -> tokens [1, T, 128]
    tokens = latent.transpose(0, 2, 1, 3).reshape(1, latent.shape[2], -1)
    # our encoder's tokens (the audio parity bound; measured 4.9e-5: the log-mel of quiet bins), kept clean
    assert relative_error(np.asarray(out.stages[0].audio), tokens) <= AUDIO_BOUND
    for stage in out.stages:
        np.testing.assert_array_equal(np.asarray(stage.audio), np.asarray(out.stages[0].audio))
    layout = lambda x: np.moveaxis(np.asarray(x), -1, 1)  # noqa: E731  (channels last -> the official [B, C, ...])
    errors = {"stage1": relative_error(layout(out.stages[0].video), ref["stage1.video"]),
              "stage2": relative_error(layout(out.latent), ref["stage2.video"]),
              "video": relative_error(layout(out.video), ref["video"])}
    print(json.dumps(errors | {"reference_s": official["reference_s"], "ours_s": round(time.perf_counter() - t0, 1)}))
    assert max(errors.values()) <= BOUND, errors
    assert out.sample_rate == 16000 and np.array_equal(out.audio[0], request.audio.waveform)  # the input audio back


def test_bad_audio_inputs_are_named(tmp_path):
    from types import SimpleNamespace

    from ltx_jax.audio_vae.loading import build_audio_encoder
    from ltx_jax.configs import LTX_2_3_TINY_AV
    from ltx_jax.pipelines import MediaError, Request, validate
    from ltx_jax.pipelines.audio_input import AudioInput, audio_tokens, read_audio

    with pytest.raises(ValueError, match="a2vid pipeline needs Request.audio"):
        validate("a2vid", Request(frames=17, height=256, width=256))
    stereo = AudioInput(_tones(16000, 0.5), 16000)
    with pytest.raises(ValueError, match="the dev pipeline takes no input audio"):
        validate("dev", Request(frames=17, height=256, width=256, audio=stereo))
    with pytest.raises(MediaError, match="no such file"):
        read_audio(tmp_path / "missing.wav")
    np.save(tmp_path / "x.npy", np.zeros(4))
    with pytest.raises(MediaError, match="cannot be opened|no audio stream"):
        read_audio(tmp_path / "x.npy")
    with pytest.raises(MediaError, match="must be >= 0"):
        read_audio(_write_audio(tmp_path / "a.wav", _tones(16000, 0.5), 16000, "pcm_s16le"), -1.0)
    mono = AudioInput(_tones(16000, 0.5)[:1], 16000)
    with pytest.raises(ValueError, match=r"audio of shape \(1, 8000\).*takes 2 channels"):
        audio_tokens(SimpleNamespace(config=SimpleNamespace(in_channels=2)), mono, 9, 24.0)
    encoder = build_audio_encoder(LTX_2_3_TINY_AV.audio_vae, F32)
    with pytest.raises(ValueError, match=r"audio of 0.500 s encodes to 13 latent frames; .* needs 26"):
        audio_tokens(encoder, stereo, 25, 24.0)  # 25 frames at 24 fps: 1.04 s
    assert audio_tokens(encoder, stereo, 9, 24.0).shape == (1, 9, 128)  # 9 / 24 s -> round(9.375) latents
