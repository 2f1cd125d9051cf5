"""Parity of the jitted sampling loops against a fixture directory (the shared formats).

Two kinds of arrays, both replayed from the recorded noise (no torch RNG):
  * `loop.*` of a main fixture (docs/reference-fixtures.md): `DistilledPipeline`'s two-stage loop. Stage 1
    starts from `loop.stage1.*.noised_latent`; the upsampler, the stage-2 noising (recorded noise, our
    upsampled latent and our stage-1 audio) and the decode (recorded decoder noise) run on our own
    results, so errors accumulate through the whole chain as in a real run.
  * the loop-fixture runs (docs/reference-fixtures-loops.md): `guided`, `i2v.s100`, `i2v.s050`, `keyframe`,
    `res2s`, each from its recorded noised state, guidance from the manifest, res_2s SDE noise recorded.
Config, grids and the token counts come from the checkpoint metadata and the array shapes, so any small
dims work. Counterparts: ltx_pipelines `distilled.py`, `utils/samplers.py`, `utils/helpers.py`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.parity import Check, Fixture

__all__ = ["CHECKS", "BOUND", "LOOP_RUNS", "run_two_stage", "run_loop_fixture", "audio_tokens_to_official",
           "loop_models", "recorded_state", "recorded_guidance"]

BOUND = 1e-4  # float32: max |ours - ref| / max |ref|
CHECKPOINT = "ltx_checkpoint.safetensors"
LOOP_RUNS = ("guided", "i2v.s100", "i2v.s050", "keyframe", "res2s")
_PASS_KINDS = ("cond", "uncond", "perturbed", "isolated")


def audio_tokens_to_official(tokens: np.ndarray, mel_bins: int) -> np.ndarray:
    """`[B, T, C*mel]` patchified audio tokens -> the official `[B, C, T, mel]` (`b t (c f) -> b c t f`)."""
    b, t, cf = tokens.shape
    return np.asarray(tokens).reshape(b, t, cf // mel_bins, mel_bins).transpose(0, 2, 1, 3)


def _video_official(tokens: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """`[B, F*H*W, C]` -> official `[B, C, F, H, W]`."""
    b, _, c = tokens.shape
    return np.moveaxis(np.asarray(tokens).reshape(b, *grid, c), -1, 1)


@functools.lru_cache(maxsize=4)
def loop_models(path: str):
    """(float32 runtime, split DiT, VAE encoder, VAE decoder) of a fixture directory, cached per directory."""
    from ltx_jax.configs import Runtime
    from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
    from ltx_jax.transformer import load_transformer
    from ltx_jax.video_vae import load_video_decoder, load_video_encoder

    rt = Runtime(param_dtype="float32", compute_dtype="float32")
    ckpt = SafetensorsFile(Path(path) / CHECKPOINT)
    return rt, nnx.split(load_transformer(ckpt, rt)), load_video_encoder(ckpt, rt), load_video_decoder(ckpt, rt)


def recorded_state(fx: Fixture, prefix: str):
    """A `LatentState` from `<prefix>.{noised_latent, denoise_mask, clean_latent (or pre_noise_latent), positions}`."""
    from ltx_jax.sampling import LatentState

    lat = jnp.asarray(fx[f"{prefix}.noised_latent"])
    mask = fx[f"{prefix}.denoise_mask"] if f"{prefix}.denoise_mask" in fx else np.ones((*lat.shape[:2], 1), np.float32)
    clean = fx[f"{prefix}.clean_latent"] if f"{prefix}.clean_latent" in fx else fx[f"{prefix}.pre_noise_latent"]
    return LatentState(latent=lat, denoise_mask=jnp.asarray(mask), positions=jnp.asarray(fx[f"{prefix}.positions"]),
                       clean_latent=jnp.asarray(clean))


def _upsampler_names(fx: Fixture) -> list[str]:
    named = (fx.manifest.get("inputs") or {}).get("loop_upsampler")
    if named:
        return [named]
    # The format does not name it: every spatial x2 file is tried and the closest to the record is kept.
    return sorted(p.name[len("upsampler_"):-len(".safetensors")] for p in fx.path.glob("upsampler_spatial_x2*"))


def run_two_stage(fx: Fixture) -> dict[str, np.ndarray]:
    """Our arrays for every `loop.*` output of a main fixture (and the stage-2 noised latents)."""
    from ltx_jax.parity import relative_error
    from ltx_jax.sampling import noise_latent
    from ltx_jax.sampling.loops import distilled_sampler, sample
    from ltx_jax.sampling.samplers import Prompt, TextContext
    from ltx_jax.upsampler import load_upsampler, upsample_video
    from ltx_jax.video_vae import decode

    rt, dit, encoder, decoder = loop_models(str(fx.path))
    prompt = Prompt(TextContext(jnp.asarray(fx["connector.out.video_encoding"]),
                                jnp.asarray(fx["connector.out.audio_encoding"])))
    mel = fx["loop.stage1.out.audio_latent"].shape[-1]
    grids = {s: tuple(fx[f"loop.{s}.out.video_latent"].shape[2:]) for s in ("stage1", "stage2")}
    out: dict[str, np.ndarray] = {}
    step = 0
    video_in = audio_in = None
    for stage in ("stage1", "stage2"):
        sampler = distilled_sampler(1 if stage == "stage1" else 2)
        if not np.array_equal(sampler.sigmas, fx[f"loop.{stage}.sigmas"]):
            sampler = type(sampler)(fx[f"loop.{stage}.sigmas"])
        video, audio = recorded_state(fx, f"loop.{stage}.video"), recorded_state(fx, f"loop.{stage}.audio")
        if stage == "stage2":  # re-noise our upsampled latent and our stage-1 audio with the recorded noise
            for name, pre, st in (("video", video_in, video), ("audio", audio_in, audio)):
                p = f"loop.stage2.{name}"
                noised = noise_latent(pre, jnp.asarray(fx[f"{p}.noise"]), st.denoise_mask,
                                      float(fx[f"{p}.noise_scale"][0]))
                out[f"{p}.noised_latent"] = np.asarray(noised)
            video = video.replace(latent=jnp.asarray(out["loop.stage2.video.noised_latent"]))
            audio = audio.replace(latent=jnp.asarray(out["loop.stage2.audio.noised_latent"]))
        res = sample(dit, sampler, video, audio, prompt, record=True)
        for i in range(sampler.steps):
            for s in ("video", "audio"):
                out[f"loop.step{step + i:02d}.{s}_x0"] = np.asarray(res.record[f"{s}_x0"][i])
        step += sampler.steps
        vtok, atok = np.asarray(res.video.latent), np.asarray(res.audio.latent)
        out[f"loop.{stage}.out.video_latent"] = _video_official(vtok, grids[stage])
        out[f"loop.{stage}.out.audio_latent"] = audio_tokens_to_official(atok, mel)
        if stage == "stage1":
            latent = jnp.asarray(vtok.reshape(vtok.shape[0], *grids["stage1"], vtok.shape[-1]))
            best = None
            for kind in _upsampler_names(fx):
                up = load_upsampler(fx.path / f"upsampler_{kind}.safetensors", rt)
                cand = np.asarray(upsample_video(latent, encoder, up))
                err = relative_error(np.moveaxis(cand, -1, 1), fx["loop.upsample.out.video_latent"])
                if best is None or err < best[0]:
                    best = (err, cand)
            out["loop.upsample.out.video_latent"] = np.moveaxis(best[1], -1, 1)
            video_in = jnp.asarray(best[1].reshape(best[1].shape[0], -1, best[1].shape[-1]))
            audio_in = jnp.asarray(atok)
    latent = jnp.asarray(np.moveaxis(out["loop.stage2.out.video_latent"], 1, -1))
    noise = np.moveaxis(fx["loop.decode.noise"], 1, -1) if decoder.timestep_conditioning else None
    out["loop.decode.out.video"] = np.moveaxis(np.asarray(decode(decoder, latent, noise=noise)), -1, 1)
    return out


def _run_params(fx: Fixture, run: str) -> dict:
    runs = fx.manifest.get("runs", {})
    if run in runs:
        return runs[run]
    node = runs  # "i2v.s100" is stored as runs["i2v"]["s100"]
    for part in run.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def recorded_guidance(fx: Fixture, run: str):
    """The run's `Guidance` from the manifest's `{video,audio}_guider_params` (neutral when absent)."""
    from ltx_jax.sampling import GuiderParams
    from ltx_jax.sampling.samplers import Guidance

    meta = _run_params(fx, run)
    fields = ("cfg_scale", "stg_scale", "stg_blocks", "rescale_scale", "modality_scale", "skip_step")
    params = [GuiderParams(**{k: v for k, v in (meta.get(f"{s}_guider_params") or {}).items() if k in fields})
              for s in ("video", "audio")]
    return Guidance(*params)


def run_loop_fixture(fx: Fixture, run: str) -> dict[str, np.ndarray]:
    """Our arrays for one loop-fixture run: per evaluation `latent_in`, `x0`, `x0.<pass>`, `x0_blended`, and
    the final tokens and latents."""
    from ltx_jax.sampling import clear_conditioning, post_process_latent
    from ltx_jax.sampling.loops import Sampler, sample
    from ltx_jax.sampling.samplers import Prompt, TextContext

    _, dit, _, _ = loop_models(str(fx.path))
    res2s = f"{run}.eval00.video_x0" in fx
    guidance = recorded_guidance(fx, run)
    sampler = Sampler(fx[f"{run}.sigmas"], method="res2s" if res2s else "euler", guidance=guidance)
    ctx = {k: TextContext(jnp.asarray(fx[f"ctx.{k}.video"]), jnp.asarray(fx[f"ctx.{k}.audio"])) for k in ("pos", "neg")}
    prompt = Prompt(ctx["pos"], ctx["neg"] if "uncond" in guidance.passes else None)
    video, audio = recorded_state(fx, f"{run}.in.video"), recorded_state(fx, f"{run}.in.audio")
    states = {"video": video, "audio": audio}
    kw = {}
    if res2s:
        def noise(s):
            return np.stack([np.stack([fx[f"{run}.sde_noise.{i:02d}.{k}.{s}"] for k in ("substep", "step")])
                             for i in range(sampler.steps)])
        kw["sde_noise"] = (noise("video"), noise("audio"))
    res = sample(dit, sampler, video, audio, prompt, record=True, **kw)
    out: dict[str, np.ndarray] = {}
    label = "eval" if res2s else "step"
    n = res.record["video_x0"].shape[0]
    for e in range(n):
        p = f"{run}.{label}{e:02d}"
        for s in ("video", "audio"):
            out[f"{p}.{s}_latent_in"] = np.asarray(res.record[f"{s}_latent_in"][e])
            x0 = res.record[f"{s}_x0"][e]
            out[f"{p}.{s}_x0"] = np.asarray(x0)
            for k, kind in enumerate(guidance.passes):
                if len(guidance.passes) > 1:
                    out[f"{p}.{s}_x0.{kind}"] = np.asarray(res.record[f"{s}_x0_passes"][e, k])
            st = states[s]
            out[f"{p}.{s}_x0_blended"] = np.asarray(post_process_latent(x0, st.denoise_mask, st.clean_latent))
    shape = fx[f"{run}.out.video_latent"].shape  # [B, C, F, H, W]
    grid = tuple(shape[2:])
    for s, st in (("video", res.video), ("audio", res.audio)):
        out[f"{run}.out.{s}_tokens"] = np.asarray(st.latent)
    cleared = clear_conditioning(res.video, int(np.prod(grid)))
    out[f"{run}.out.video_latent"] = _video_official(np.asarray(cleared.latent), grid)
    out[f"{run}.out.audio_latent"] = audio_tokens_to_official(np.asarray(res.audio.latent),
                                                              fx[f"{run}.out.audio_latent"].shape[-1])
    return out


def _two_stage_checks(fx: Fixture) -> Iterator[tuple[str, np.ndarray, float]]:
    for name, ours in run_two_stage(fx).items():
        if name in fx:
            yield name, ours, BOUND


def _loop_runs(fx: Fixture) -> list[str]:
    return [r for r in LOOP_RUNS if f"{r}.sigmas" in fx and f"{r}.in.video.noised_latent" in fx]


def _loop_fixture_checks(fx: Fixture) -> Iterator[tuple[str, np.ndarray, float]]:
    for run in _loop_runs(fx):
        for name, ours in run_loop_fixture(fx, run).items():
            if name in fx:
                yield name, ours, BOUND


def _has_two_stage(fx: Fixture) -> bool:
    return fx.kind == "ltx" and "loop.stage1.video.noised_latent" in fx and "connector.out.video_encoding" in fx


CHECKS = [
    Check("loop", _has_two_stage, _two_stage_checks,
          covers=r"^loop\.(step\d+\.|stage\d\.out\.|upsample\.out|decode\.out)"),
    Check("loops", lambda fx: fx.kind == "ltx" and bool(_loop_runs(fx)), _loop_fixture_checks,
          covers=r"^(guided|i2v\.s\d+|keyframe|res2s)\.(step|eval)\d+\.|^(guided|i2v\.s\d+|keyframe|res2s)\.out\."),
]
