"""The composed pipelines and `ltx-jax generate` against the official runs, replayed from the recorded noise:
distilled two-stage end to end (main fixtures), dev one-stage and the first stages of dev two-stage and HQ
(loop fixtures `guided` / `res2s`), image and keyframe conditioning through `run_stage`; the official image
preprocessing; early input errors."""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltx_jax.configs import Runtime
from ltx_jax.parity import Fixture, relative_error
from ltx_jax.parity.loop import BOUND
from ltx_jax.parity.loop_runs import recorded_guidance
from ltx_jax.pipelines import (ImageCondition, MediaError, Request, RunOptions, Stage, StageNoise, dev_one_stage,
                               dev_two_stage, distilled_one_stage, distilled_two_stage, hq_two_stage, load_models, load_noise,
                               preprocess_image, run_stage, validate)
from ltx_jax.sampling.loops import distilled_sampler
from ltx_jax.sampling.samplers import Prompt, TextContext
from ltx_jax.types import VideoShapeError

pytestmark = pytest.mark.reference
F32 = Runtime(param_dtype="float32", compute_dtype="float32")


def _official(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(np.asarray(x), -1, 1)  # [B, F, H, W, C] -> [B, C, F, H, W]


def _loops_prompt(fx: Fixture) -> Prompt:
    ctx = {k: TextContext(jnp.asarray(fx[f"ctx.{k}.video"]), jnp.asarray(fx[f"ctx.{k}.audio"])) for k in ("pos", "neg")}
    return Prompt(ctx["pos"], ctx["neg"])


def _noise(fx: Fixture, run: str, sde: bool = False) -> StageNoise:
    extra = None
    if sde:
        steps = len(fx[f"{run}.sigmas"]) - 1
        extra = tuple(np.stack([np.stack([fx[f"{run}.sde_noise.{i:02d}.{k}.{s}"] for k in ("substep", "step")])
                                for i in range(steps)]) for s in ("video", "audio"))
    return StageNoise(fx[f"{run}.in.video.noise"], fx[f"{run}.in.audio.noise"], extra)


def test_distilled_two_stage_pipeline_replays_the_official_run(reference):
    fx = Fixture(reference)
    models = load_models(reference / "ltx_checkpoint.safetensors",
                         upsampler=reference / "upsampler_spatial_x2_rational.safetensors", runtime=F32)
    prompt = Prompt(TextContext(jnp.asarray(fx["connector.out.video_encoding"]),
                                jnp.asarray(fx["connector.out.audio_encoding"])))
    noise, decode_noise = load_noise(reference / "fixtures.npz")
    out = distilled_two_stage(models, prompt, Request(frames=17, height=256, width=256, fps=24.0), noise=noise,
                              decode_noise=decode_noise, record=True)
    assert relative_error(_official(out.stages[0].video), fx["loop.stage1.out.video_latent"]) <= BOUND
    assert relative_error(_official(out.latent), fx["loop.stage2.out.video_latent"]) <= BOUND
    # the one-stage form at the stage-1 size is the official run's stage 1 (8 distilled sigmas, one pass)
    one = distilled_one_stage(models, prompt, Request(frames=17, height=128, width=128, fps=24.0),
                              noise={"stage1": noise["stage1"]}, decode=False)
    assert relative_error(_official(one.latent), fx["loop.stage1.out.video_latent"]) <= BOUND
    with pytest.raises(ValueError, match="fixed steps"):
        distilled_one_stage(models, prompt, Request(frames=17, height=128, width=128), steps=4)
    assert relative_error(_official(out.video), fx["loop.decode.out.video"]) <= BOUND
    ref = (np.clip((fx["loop.decode.out.video"][0] + 1) / 2, 0, 1) * 255).astype(np.uint8)
    assert np.abs(out.frames_uint8().astype(int) - np.moveaxis(ref, 0, -1)).max() <= 1  # rounding at .0 boundaries


@pytest.fixture(scope="module")
def loops_models(loops_reference):
    from conftest import build_lora_reference

    config = loops_reference.name.split("_seed")[0]
    lora = build_lora_reference(config, 0) / "lora_a_attn_r4.safetensors"
    main = loops_reference.parent / f"{config}_seed0"  # same weights as the loop fixture's checkpoint
    fx = Fixture(loops_reference)
    kind = fx.manifest["runs"]["dev2"]["upsampler"]  # the upsampler of the official stage 2 (dev2 / hq2)
    models = load_models(loops_reference / "ltx_checkpoint.safetensors", stage2_loras=[(lora, 1.0)], runtime=F32,
                         upsampler=loops_reference / f"upsampler_{kind}.safetensors")
    del main
    return fx, models


def _stage2_noise(fx: Fixture, name: str, sde: bool = False) -> tuple[StageNoise, np.ndarray | None]:
    """The official stage-2 draws of `dev2` / `hq2` (res_2s: our normalization of the raw SDE draws) and the
    decoder noise (channels last)."""
    from ltx_jax.sampling import normalize_sde_noise

    p, extra = f"{name}.stage2", None
    if sde:
        extra = tuple(np.stack([np.stack([np.asarray(normalize_sde_noise(jnp.asarray(
            fx[f"{p}.sde_noise_raw.{i:02d}.{k}.{s}"], jnp.float32))) for k in ("substep", "step")]) for i in range(3)])
            for s in ("video", "audio"))
    dec = np.moveaxis(fx[f"{name}.decode.noise"], 1, -1) if f"{name}.decode.noise" in fx else None
    return StageNoise(fx[f"{p}.video.noise"], fx[f"{p}.audio.noise"], extra), dec


def _check_stage2(fx: Fixture, name: str, out) -> None:  # noqa: ANN001
    """Stage 2 (chained from our stage 1) and the decode against the official pipeline's."""
    assert relative_error(_official(out.latent), fx[f"{name}.stage2.out.video_latent"]) <= BOUND
    assert relative_error(_official(out.video), fx[f"{name}.decode.out.video"]) <= BOUND
    assert relative_error(np.asarray(out.audio_latent), fx[f"{name}.stage2.out.audio_latent"].transpose(
        0, 2, 1, 3).reshape(np.asarray(out.audio_latent).shape)) <= BOUND


def test_dev_pipelines_replay_the_guided_run(loops_models):
    """dev one-stage at 128 px and dev two-stage's stage 1 (256 px target) both equal the official guided run
    (CFG + STG + modality + rescale, 4 steps); stage 2 and the decode, on the base weights, equal the official
    dev two-stage run's (`dev2`), and with the LoRA-merged stage-2 copy they differ."""
    fx, models = loops_models
    g = recorded_guidance(fx, "guided")
    prompt, noise = _loops_prompt(fx), {"stage1": _noise(fx, "guided")}
    one = dev_one_stage(models, prompt, Request(frames=17, height=128, width=128), steps=4, video=g.video,
                        audio=g.audio, noise=noise, record=True, decode=False)
    assert relative_error(_official(one.latent), fx["guided.out.video_latent"]) <= BOUND
    assert relative_error(np.asarray(one.audio_latent), fx["guided.out.audio_tokens"]) <= BOUND
    noise["stage2"], decode_noise = _stage2_noise(fx, "dev2")
    two = dev_two_stage(models, prompt, Request(frames=17, height=256, width=256, seed=1), steps=4, video=g.video,
                        audio=g.audio, noise=noise, record=True, decode=False)
    assert relative_error(_official(two.stages[0].video), fx["guided.out.video_latent"]) <= BOUND
    assert two.latent.shape == (1, 3, 8, 8, 16) and np.isfinite(np.asarray(two.latent)).all()
    base = models.dit  # stage 2 on the base weights: the official dev2 run (ltx-core cannot fuse into float32)
    models.dit_stage2, keep = models.dit, models.dit_stage2
    try:
        plain = dev_two_stage(models, prompt, Request(frames=17, height=256, width=256, seed=1), steps=4,
                              video=g.video, audio=g.audio, noise=noise, decode_noise=decode_noise, record=True)
    finally:
        models.dit_stage2 = keep
    _check_stage2(fx, "dev2", plain)
    # the same noise with the LoRA-merged stage-2 copy differs: `two` used it
    assert base is models.dit and relative_error(np.asarray(plain.latent), np.asarray(two.latent)) > 1e-3


def test_hq_pipeline_replays_the_res2s_run(loops_models):
    fx, models = loops_models
    g = recorded_guidance(fx, "res2s")
    stage2, decode_noise = _stage2_noise(fx, "hq2", sde=True)
    models.dit_stage2, keep = None, models.dit_stage2  # the official hq2 run's stage 2 is the base model
    try:
        out = hq_two_stage(models, _loops_prompt(fx), Request(frames=17, height=256, width=256), steps=3,
                           video=g.video, audio=g.audio, noise={"stage1": _noise(fx, "res2s", sde=True),
                                                                "stage2": stage2},
                           decode_noise=decode_noise, record=True)
    finally:
        models.dit_stage2 = keep
    assert relative_error(_official(out.stages[0].video), fx["res2s.out.video_latent"]) <= BOUND
    assert len(out.stages[1].record["video_x0"]) == 7  # stage 2: 3 res_2s steps (2 evals each) + the final eval
    _check_stage2(fx, "hq2", out)


@pytest.mark.parametrize("run, frame_idx, strength", [("i2v.s100", 0, 1.0), ("i2v.s050", 0, 0.5),
                                                      ("keyframe", 16, 1.0)])
def test_image_conditioned_stage(loops_models, run, frame_idx, strength):
    """`run_stage` builds the conditioned state (latent replacement or appended keyframe tokens, masks,
    positions), noises it and denoises it as the official loop did."""
    fx, models = loops_models
    key = "keyframe" if run == "keyframe" else "i2v"
    latent = jnp.asarray(np.moveaxis(fx[f"{key}.in.image_latent"], 1, -1))
    cond = ImageCondition(np.zeros((8, 8, 3), np.uint8), frame_idx=frame_idx, strength=strength)
    stage = Stage(frames=17, height=128, width=128, fps=24.0, channels=16, audio_channels=128, images=[cond],
                  encoded=[latent], noise=_noise(fx, run))
    out = run_stage(models.dit, distilled_sampler(1), Prompt(_loops_prompt(fx).positive), stage, RunOptions(record=True))
    assert relative_error(_official(out.video), fx[f"{run}.out.video_latent"]) <= BOUND
    assert relative_error(np.asarray(out.audio), fx[f"{run}.out.audio_tokens"]) <= BOUND
    if strength == 1.0 and frame_idx == 0:  # the conditioned frame comes out as the image latent
        np.testing.assert_allclose(np.asarray(out.video[:, :1]), np.asarray(latent), rtol=0, atol=1e-6)


@pytest.mark.reference
def test_image_preprocessing_equals_official(tmp_path):
    from conftest import run_ref_python

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    np.save(tmp_path / "img.npy", image)
    code = (
        "import sys, numpy as np, torch\n"
        "from ltx_pipelines.utils.media_io import resize_and_center_crop, normalize_latent, preprocess\n"
        "img = np.load(sys.argv[1])\n"
        "for crf, out in ((0, sys.argv[2]), (33, sys.argv[3])):\n"
        "    t = resize_and_center_crop(torch.tensor(preprocess(img, crf), dtype=torch.float32), 64, 96)\n"
        "    np.save(out, normalize_latent(t, 'cpu', torch.float32).numpy())\n")
    run_ref_python(code, str(tmp_path / "img.npy"), str(tmp_path / "crf0.npy"), str(tmp_path / "crf33.npy"))
    ours = preprocess_image(ImageCondition(image, crf=0), 64, 96)  # [1, 1, H, W, 3]
    ref = np.load(tmp_path / "crf0.npy")  # [1, 3, 1, H, W]
    assert ours.shape == (1, 1, 64, 96, 3)
    np.testing.assert_allclose(ours, np.moveaxis(ref, 1, -1), rtol=0, atol=2e-6)
    # The H.264 CRF-33 round trip through the same PyAV build (pinned in both environments) is exact.
    ours33 = preprocess_image(ImageCondition(image), 64, 96)
    np.testing.assert_allclose(ours33, np.moveaxis(np.load(tmp_path / "crf33.npy"), 1, -1), rtol=0, atol=1e-6)


def _png_pixels(path) -> np.ndarray:
    data = path.read_bytes()
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    raw = zlib.decompress(data[data.index(b"IDAT") + 4:data.index(b"IEND") - 8])
    return np.frombuffer(raw, np.uint8).reshape(h, 1 + 3 * w)[:, 1:].reshape(h, w, 3)


def test_generate_cli_replays_the_official_run(tmp_path):
    from conftest import build_reference

    from ltx_jax.cli import main

    ref = build_reference("ltx23-tiny", 0)
    fx = Fixture(ref)
    np.savez(tmp_path / "prompt.npz", video_context=fx["connector.out.video_encoding"],
             audio_context=fx["connector.out.audio_encoding"])
    out = tmp_path / "out"
    rc = main(["generate", str(ref / "ltx_checkpoint.safetensors"), "--prompt", str(tmp_path / "prompt.npz"),
               "--upsampler", str(ref / "upsampler_spatial_x2_rational.safetensors"), "--frames", "17", "--height",
               "256", "--width", "256", "--noise", str(ref / "fixtures.npz"), "--dtype", "float32", "--out", str(out),
               "--format", "npz,png", "--quiet"])
    assert rc == 0
    frames = np.load(out / "video.npz")["frames"]
    official = (np.clip((fx["loop.decode.out.video"][0] + 1) / 2, 0, 1) * 255).astype(np.uint8)
    assert frames.shape == (17, 256, 256, 3)
    assert np.abs(frames.astype(int) - np.moveaxis(official, 0, -1)).max() <= 1
    assert len(list(out.glob("frame_*.png"))) == 17
    np.testing.assert_array_equal(_png_pixels(out / "frame_0016.png"), frames[16])


@pytest.mark.parametrize("argv, message", [
    (["--frames", "18"], "1 \\+ 8k"),
    (["--height", "96"], "multiple of 64"),
    (["--height", "192", "--upscale", "1.5"], "multiple of 96"),
    (["--image", "IMG", "17", "1.0"], "keyframe index 17 is outside"),
    (["--pipeline", "dev-one-stage", "--steps", "0"], "steps must be"),
])
def test_generate_cli_fails_early(tmp_path, capsys, argv, message):
    """Refused before any model is loaded (the checkpoint path does not even exist)."""
    from ltx_jax.cli import main

    np.save(tmp_path / "img.npy", np.zeros((8, 8, 3), np.uint8))
    argv = [a.replace("IMG", str(tmp_path / "img.npy")) for a in argv]
    rc = main(["generate", str(tmp_path / "missing.safetensors"), "--prompt", str(tmp_path / "none.npz"), "--frames",
               "17", "--height", "256", "--width", "256", *argv])
    assert rc == 2
    assert __import__("re").search(message, capsys.readouterr().err)


@pytest.mark.parametrize("make, error", [
    (lambda: validate("distilled", Request(frames=16, height=256, width=256)), VideoShapeError),
    (lambda: validate("dev-one-stage", Request(frames=17, height=100, width=256)), VideoShapeError),
    (lambda: validate("distilled", Request(frames=17, height=256, width=256, fps=0)), ValueError),
    (lambda: validate("nope", Request()), ValueError),
    (lambda: ImageCondition(np.zeros((8, 8), np.uint8)), MediaError),
    (lambda: ImageCondition(np.zeros((8, 8, 3), np.float32)), MediaError),
    (lambda: ImageCondition(np.zeros((8, 8, 3), np.uint8), strength=1.5), MediaError),
])
def test_bad_requests_fail_early(make, error):
    with pytest.raises(error):
        make()


def test_conditioning_latent_of_the_wrong_size_is_named(loops_models):
    fx, models = loops_models
    cond = ImageCondition(np.zeros((8, 8, 3), np.uint8), frame_idx=16)
    with pytest.raises(ValueError, match="does not match the video"):
        run_stage(models.dit, distilled_sampler(1), Prompt(_loops_prompt(fx).positive),
                  Stage(frames=17, height=128, width=128, fps=24.0, channels=16, audio_channels=128, images=[cond],
                        encoded=[jnp.zeros((1, 1, 8, 8, 16))], key=__import__("jax").random.key(0)))


def test_prompt_files(tmp_path):
    """Gemma hidden states + mask go through the checkpoint's connectors (= the official connector outputs);
    connector outputs load as they are, from npz or safetensors, with the negative prompt."""
    from conftest import build_reference

    from ltx_jax.checkpoint.safetensors_file import save_file
    from ltx_jax.pipelines import load_prompt

    ref = build_reference("ltx23-tiny", 0)
    fx = Fixture(ref)
    models = load_models(ref / "ltx_checkpoint.safetensors", runtime=F32, text=True)
    hidden = np.stack([fx[n] for n in sorted(fx.names(r"^connector\.in\.hidden_states\.\d+$"),
                                             key=lambda n: int(n.rsplit(".", 1)[1]))])
    np.savez(tmp_path / "gemma.npz", hidden_states=hidden, attention_mask=fx["connector.in.attention_mask"],
             negative_hidden_states=hidden[:, :, ::-1], negative_attention_mask=fx["connector.in.attention_mask"])
    p = load_prompt(tmp_path / "gemma.npz", models.text)
    assert relative_error(np.asarray(p.positive.video), fx["connector.out.video_encoding"]) <= 2e-5
    assert relative_error(np.asarray(p.positive.audio), fx["connector.out.audio_encoding"]) <= 2e-5
    assert relative_error(np.asarray(p.negative.video), fx["connector.out.video_encoding"]) > 1e-2
    with pytest.raises(ValueError, match="text connectors"):
        load_prompt(tmp_path / "gemma.npz")
    ctx = {"video_context": fx["connector.out.video_encoding"], "audio_context": fx["connector.out.audio_encoding"]}
    save_file(ctx, tmp_path / "ctx.safetensors")
    q = load_prompt(tmp_path / "ctx.safetensors")
    np.testing.assert_array_equal(np.asarray(q.positive.audio), ctx["audio_context"])
    assert q.negative is None
    np.savez(tmp_path / "empty.npz", other=np.zeros(3))
    with pytest.raises(ValueError, match="no prompt found"):
        load_prompt(tmp_path / "empty.npz")


@pytest.mark.parametrize("float32_positions, expected", [(False, jnp.bfloat16), (True, jnp.float32)])
def test_video_positions_take_the_model_dtype_as_ltx_core_1_0(monkeypatch, float32_positions, expected):
    """ltx-core 1.0.0's VideoLatentTools casts video positions to the model dtype; opting out keeps float32."""
    import ltx_jax.pipelines.stages as stages

    seen = {}

    def capture(positions, *args, **kwargs):
        seen.setdefault("dtype", positions.dtype)
        raise RuntimeError("captured")

    monkeypatch.setattr(stages, "initial_state", capture)
    with pytest.raises(RuntimeError, match="captured"):
        stages.run_stage(None, None, None, Stage(frames=9, height=64, width=64, fps=24.0, channels=16,
                                                 audio_channels=128, key=jax.random.key(0), dtype=jnp.bfloat16,
                                                 float32_positions=float32_positions))
    assert seen["dtype"] == expected
