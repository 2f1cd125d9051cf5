"""Parity of the loop-fixture runs (docs/reference-fixtures-loops.md): `guided`, `i2v.s100`, `i2v.s050`,
`keyframe`, `res2s`, chained from what the format gives as inputs.

What is computed by us and compared (nothing of it is taken from the fixture):
  * the text contexts `ctx.{pos,neg}.{video,audio}` (our connector on `ctx.in.*`), used by the loops;
  * `i2v.in.image_latent`, `keyframe.in.image_latent` (our VAE encoder on the image);
  * per run the conditioned state before noising (`pre_noise_latent`, `clean_latent`, `denoise_mask`, `positions`)
    from the format's recipe (i2v strength from the run name, keyframe at `keyframe.in.frame_idx`), and
    `noised_latent` (our noising of it with the recorded `noise`): the loop starts from these;
  * the schedule (`ltx_jax.parity.schedules.run_schedule`), the per-evaluation `sigma` and timesteps;
  * the res_2s SDE noise (our normalization of the recorded raw draws, when recorded), then every evaluation's
    `latent_in`, x0 per pass, guided and blended x0, and the final tokens and latents.
Recorded random draws (`noise`, `sde_noise_raw`) and the image are inputs. Counterparts: ltx_pipelines
`utils/helpers.py` (`denoise_audio_video`, the denoising functions), `utils/samplers.py`, ltx_core conditioning.
Under a mesh (`Fixture.mesh`) the connector and the VAE encoder (no sharded path) run replicated, the conditioned
states are placed by the sampler's rules and noised there, and every loop runs sharded (`sample(..., rules=)`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

import jax.numpy as jnp
import numpy as np

from ltx_jax.parity import Check, Fixture
from ltx_jax.parity.mesh import where

__all__ = ["CHECKS", "BOUND", "LOOP_RUNS", "run_loop_fixture", "our_states", "our_contexts", "recorded_guidance"]

# float32, max |ours - ref| / max |ref|. Measured <= 6.4e-6 (every run and evaluation, chained from our contexts).
BOUND = 4e-5
BOUND_INPUTS = 1e-5  # connector contexts, image latents, noised latents, SDE noise: measured <= 5.9e-7
LOOP_RUNS = ("guided", "i2v.s100", "i2v.s050", "keyframe", "res2s")
_I2V_STRENGTH = {"i2v.s100": 1.0, "i2v.s050": 0.5}
_DEFAULT_FPS = 24.0  # the format's default pixel shape: 17 frames, 128x128, 24 fps


def _fps(fx: Fixture) -> float:
    return float((fx.manifest.get("pixels") or {}).get("fps", _DEFAULT_FPS))


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


@functools.lru_cache(maxsize=2)
def _contexts(path: str, mesh=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from ltx_jax.parity.transformer import F32, _models
    from ltx_jax.transformer import encode_text

    fx = Fixture(path, mesh)
    out = {}
    for k in ("pos", "neg"):
        names = sorted(fx.names(rf"^ctx\.in\.{k}\.hidden_states\.\d+$"), key=lambda n: int(n.rsplit(".", 1)[1]))
        if not names:
            continue
        hidden = [jnp.asarray(fx[n]) for n in names]
        _, _, text = _models(path, F32, hidden[0].shape[-1], len(hidden))
        mask = jnp.asarray(fx[f"ctx.in.{k}.attention_mask"])
        if mesh is not None:
            text, hidden, mask = (text[0], mesh.replicate(text[1])), mesh.batch(hidden), mesh.batch(mask)
        v, a = encode_text(*text, hidden, mask)
        if mesh is not None:
            mesh.note(mesh.replicated("the text connector", v), r"^ctx\.")
        out[k] = (np.asarray(v, np.float32), np.asarray(a, np.float32))
    return out


def our_contexts(fx: Fixture):
    """{"pos", "neg"} -> `TextContext` from our connector on `ctx.in.*`."""
    from ltx_jax.sampling.samplers import TextContext

    return {k: TextContext(jnp.asarray(v), jnp.asarray(a)) for k, (v, a) in _contexts(str(fx.path), fx.mesh).items()}


@functools.lru_cache(maxsize=2)
def _image_latents(path: str, mesh=None) -> dict[str, np.ndarray]:
    """`<run>.in.image_latent` ([B, C, 1, H', W']) from our encoder on `<run>.in.image`."""
    from ltx_jax.parity.loop import loop_models
    from ltx_jax.video_vae import encode

    fx = Fixture(path)
    _, _, encoder, _ = loop_models(path)
    if mesh is not None:
        encoder = mesh.module(encoder)
    out = {}
    for run in ("i2v", "keyframe"):
        if f"{run}.in.image" in fx:
            image = np.moveaxis(fx[f"{run}.in.image"], 1, -1)
            latent = encode(encoder, image if mesh is None else mesh.batch(image))
            if mesh is not None:
                mesh.note(mesh.replicated("the video encoder", latent), rf"^{run}\.in\.image_latent$")
            out[run] = np.moveaxis(np.asarray(latent), -1, 1)
    return out


def our_states(fx: Fixture, run: str):
    """(video, audio) `LatentState` before noising, built as the official pipeline does for the run."""
    from ltx_jax.sampling import (audio_positions, condition_by_keyframe, condition_by_latent_index, initial_state,
                                  video_positions)
    from ltx_jax.types import VideoLatentShape

    out = fx[f"{run}.out.video_latent"]  # [B, C, F', H', W']
    b, c, f, h, w = out.shape
    shape = VideoLatentShape(b, f, h, w, c)
    fps = _fps(fx)
    video = initial_state(video_positions(f, h, w, fps=fps, batch=b), channels=c)
    images = _image_latents(str(fx.path), fx.mesh)
    if run in _I2V_STRENGTH:
        video = condition_by_latent_index(video, jnp.asarray(np.moveaxis(images["i2v"], 1, -1)), shape=shape,
                                          latent_idx=0, strength=_I2V_STRENGTH[run])
    elif run == "keyframe":
        video = condition_by_keyframe(video, jnp.asarray(np.moveaxis(images["keyframe"], 1, -1)), shape=shape,
                                      frame_idx=int(fx["keyframe.in.frame_idx"][0]), strength=1.0, fps=fps)
    ab, _, at, _ = fx[f"{run}.out.audio_latent"].shape  # [B, C_a, T_a, mel]
    audio = initial_state(audio_positions(at, batch=ab), channels=fx[f"{run}.in.audio.noise"].shape[-1])
    return video, audio


def _sde_noise(fx: Fixture, run: str, steps: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(video, audio) `[N, 2, B, T, C]` SDE noise: ours normalized from the raw draws when recorded, else the
    recorded normalized draws (then an input); and the normalized arrays to compare."""
    from ltx_jax.sampling import normalize_sde_noise

    compared: dict[str, np.ndarray] = {}

    def one(i: int, kind: str, s: str) -> np.ndarray:
        raw = f"{run}.sde_noise_raw.{i:02d}.{kind}.{s}"
        if raw in fx:
            x = jnp.asarray(fx[raw], jnp.float32)
            ours = normalize_sde_noise(x if fx.mesh is None else fx.mesh.state(x, x, s)[0])
            if fx.mesh is not None:
                fx.mesh.note(f"SDE noise normalized on the mesh: {where(ours)}", r"\.sde_noise\.")
            ours = np.asarray(ours)
            compared[f"{run}.sde_noise.{i:02d}.{kind}.{s}"] = ours
            return ours
        return fx[f"{run}.sde_noise.{i:02d}.{kind}.{s}"]

    def noise(s: str) -> np.ndarray:
        return np.stack([np.stack([one(i, k, s) for k in ("substep", "step")]) for i in range(steps)])

    return noise("video"), noise("audio"), compared


def run_loop_fixture(fx: Fixture, run: str) -> dict[str, np.ndarray]:
    """Our arrays for one loop-fixture run (see the module docstring)."""
    from ltx_jax.parity.loop import _video_official, audio_tokens_to_official, loop_models
    from ltx_jax.parity.schedules import run_schedule
    from ltx_jax.sampling import clear_conditioning, noise_latent, post_process_latent
    from ltx_jax.sampling.loops import Sampler, _res2s_evals, sample
    from ltx_jax.sampling.steps import res2s_plan
    from ltx_jax.sampling.samplers import Prompt

    _, dit, _, _ = loop_models(str(fx.path))
    out: dict[str, np.ndarray] = {}
    res2s = run == "res2s"
    guidance = recorded_guidance(fx, run)
    sampler = Sampler(run_schedule(fx, run), method="res2s" if res2s else "euler", guidance=guidance)
    ctx = our_contexts(fx)
    prompt = Prompt(ctx["pos"], ctx["neg"] if "uncond" in guidance.passes else None)
    states = {}
    mesh = fx.mesh
    if mesh is not None:
        mesh.dit_attention(dit)  # a strategy that cannot split the heads fails here, with the reason
    for s, st in zip(("video", "audio"), our_states(fx, run), strict=True):
        p = f"{run}.in.{s}"
        noise = jnp.asarray(fx[f"{p}.noise"])
        if mesh is not None:
            st, noise = mesh.latent_state(st, s), mesh.state(noise, noise, s)[0]
        out[f"{p}.pre_noise_latent"], out[f"{p}.clean_latent"] = np.asarray(st.latent), np.asarray(st.clean_latent)
        out[f"{p}.denoise_mask"], out[f"{p}.positions"] = np.asarray(st.denoise_mask), np.asarray(st.positions)
        noised = noise_latent(st.latent, noise, st.denoise_mask, float(fx[f"{p}.noise_scale"][0]))
        out[f"{p}.noised_latent"] = np.asarray(noised)
        if mesh is not None:
            mesh.note(f"conditioned state (conditioning on the default device), placed by the state rules and "
                      f"noised on the mesh: {where(noised)}", rf"^{re.escape(p)}\.|^keyframe\.in\.appended")
        states[s] = st.replace(latent=noised)
    if run == "keyframe" and "keyframe.in.appended_positions" in fx:
        grid = int(np.prod(fx["keyframe.out.video_latent"].shape[2:]))
        out["keyframe.in.appended_positions"] = out["keyframe.in.video.positions"][:, :, grid:]
    kw = {}
    if res2s:
        v, a, compared = _sde_noise(fx, run, sampler.steps)
        out.update(compared)
        kw["sde_noise"] = (v, a)
        evals, _ = _res2s_evals(sampler)
        sub = res2s_plan(sampler.sigmas).column("sub_sigma")  # float64 sqrt(sigma_i * sigma_i+1), as the official
        sigmas = [sub[s] if ph == 1 else evals["sigma_t"][i] for i, (ph, s) in enumerate(zip(evals["phase"],
                                                                                          evals["step"]))]
    else:
        sigmas = sampler.sigmas[:-1]
    res = sample(dit, sampler, states["video"], states["audio"], prompt, record=True, **kw,
                 rules=None if mesh is None else mesh.rules)
    if mesh is not None:
        mesh.loop(dit, res, rf"^{re.escape(run)}\.(step|eval|out)")
        mesh.note("host: the evaluation's sigma (numpy)", rf"^{re.escape(run)}\.(step|eval)\d+\.sigma$")
    label = "eval" if res2s else "step"
    for e in range(res.record["video_x0"].shape[0]):
        p = f"{run}.{label}{e:02d}"
        # the sub-step sigma is a float64 0-d tensor in the official loop; stored in the fixture's own dtype
        out[f"{p}.sigma"] = np.asarray([sigmas[e]], fx[f"{p}.sigma"].dtype if f"{p}.sigma" in fx else np.float32)
        for s in ("video", "audio"):
            st = states[s]
            out[f"{p}.{s}_timesteps"] = np.asarray(st.denoise_mask * jnp.float32(sigmas[e]))
            out[f"{p}.{s}_latent_in"] = np.asarray(res.record[f"{s}_latent_in"][e])
            x0 = res.record[f"{s}_x0"][e]
            out[f"{p}.{s}_x0"] = np.asarray(x0)
            if len(guidance.passes) > 1:
                for k, kind in enumerate(guidance.passes):
                    out[f"{p}.{s}_x0.{kind}"] = np.asarray(res.record[f"{s}_x0_passes"][e, k])
            out[f"{p}.{s}_x0_blended"] = np.asarray(post_process_latent(x0, st.denoise_mask, st.clean_latent))
    grid = tuple(fx[f"{run}.out.video_latent"].shape[2:])
    out[f"{run}.out.video_tokens"], out[f"{run}.out.audio_tokens"] = np.asarray(res.video.latent), np.asarray(
        res.audio.latent)
    cleared = clear_conditioning(res.video, int(np.prod(grid)))
    out[f"{run}.out.video_latent"] = _video_official(np.asarray(cleared.latent), grid)
    out[f"{run}.out.audio_latent"] = audio_tokens_to_official(np.asarray(res.audio.latent),
                                                              fx[f"{run}.out.audio_latent"].shape[-1])
    return out


def _loop_runs(fx: Fixture) -> list[str]:
    return [r for r in LOOP_RUNS if f"{r}.in.video.noise" in fx and f"{r}.out.video_latent" in fx]


def _run(fx: Fixture) -> Iterator[tuple[str, np.ndarray, float]]:
    for k, (v, a) in _contexts(str(fx.path), fx.mesh).items():
        yield f"ctx.{k}.video", v, BOUND_INPUTS
        yield f"ctx.{k}.audio", a, BOUND_INPUTS
    for run, lat in _image_latents(str(fx.path), fx.mesh).items():
        yield f"{run}.in.image_latent", lat, BOUND_INPUTS
    for run in _loop_runs(fx):
        for name, ours in run_loop_fixture(fx, run).items():
            if name in fx:
                exact = name.endswith((".sigma", "_timesteps", ".denoise_mask", ".positions", "appended_positions"))
                yield name, ours, 0.0 if exact else (BOUND_INPUTS if ".in." in name or "sde_noise" in name else BOUND)


_RUN = r"(guided|i2v\.s\d+|keyframe|res2s)"
COVERS = (rf"^{_RUN}\.(step|eval)\d+\.|^{_RUN}\.out\.|^{_RUN}\.in\.(video|audio)\.(pre_noise_latent|clean_latent|"
          rf"denoise_mask|positions|noised_latent)$|^(i2v|keyframe)\.in\.(image_latent|appended_positions)$"
          rf"|^ctx\.(pos|neg)\.(video|audio)$")

CHECKS = [Check("loops", lambda fx: fx.kind == "ltx" and bool(_loop_runs(fx)), _run, covers=COVERS, inputs=(
    (rf"^{_RUN}\.in\.(video|audio)\.(noise|noise_scale)$", "the recorded GaussianNoiser draw and scale (replayed)"),
    (r"^res2s\.sde_noise_raw\.", "the recorded raw res_2s SDE draws (normalized by us, then compared)"),
    (r"^res2s\.sde_noise\.", "the recorded normalized SDE draws, used only where no raw draw is recorded (else "
                               "compared with our normalization)"),
    (r"^(i2v|keyframe)\.in\.(image|frame_idx)$", "the conditioning image and keyframe index"),
    (r"^ctx\.in\.", "the random stand-ins for Gemma's hidden states and mask (our connector encodes them)"),
))]

NOT_CHECKED = [
    (r"^keyframe\.attn\.", "three keyframes with attention strength (an extra of our builder, outside the format "
                           "doc); compared bit for bit by tests/test_sampling_conditioning.py"),
]
