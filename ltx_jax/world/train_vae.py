"""Stage 1 of the embedded default (issue 17): the video VAE trained as an autoencoder of the synthetic world.

No ltx_core counterpart (ltx-core ships no VAE training). The model is the LTX-2.3 video VAE layout (the
released encoder / decoder block lists, one layer per res block, `latent_channels` and `decoder_base_channels`
chosen small), so the result loads wherever an official VAE does.

Recipe: batches of fresh clips (clip `step * batch + i` of the world seed; no clip is seen twice), the
encoder's latent means straight into the decoder (the official layout's encoder also emits one log-variance
channel, left untrained, as in a deterministic autoencoder), loss = L1 + MSE in [-1, 1] pixels, each pixel
weighted 1 + `object_weight` on the object's saturated pixels (`pixel_weights`), + a small L2 on the latent so
its scale stays bounded; optionally (`scene_weight` > 0, on in the recipe) + a read-out loss: a linear head
from the flattened latent to the clip's scene parameters (`scene_targets`: shape, colour, background, texture
phase, object centres and size), trained with the autoencoder and then dropped, which makes the encoder keep what
the decoder does not yet draw (in the spirit of VA-VAE's latent alignment, with the generator's ground truth in
place of a vision foundation model's features). AdamW with warm-up and cosine decay, gradient clipping. On CPU the
convolutions are written as im2col + dot (`size_invariant`), whose gradients are dots: measured faster than
XLA:CPU's convolution backward. After training, the latent statistics (`mean-of-means`, `std-of-means`) are
measured on training clips, so normalized latents have zero mean and unit deviation per channel, as the DiT
expects.

Resumable: the whole state (params, Adam moments, step) is saved with Orbax every `save_every` steps; the data
order is a function of (seed, step), so a resumed run continues the same curve.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ltx_jax.configs import LTX_2_3, Runtime, VideoVAEConfig
from ltx_jax.configs.presets import _tiny_blocks
from ltx_jax.nn.conv import size_invariant
from ltx_jax.training.step import OptimConfig, TrainState, make_optimizer
from ltx_jax.video_vae import VideoDecoder, VideoEncoder
from ltx_jax.world.dataset import WorldSpec, make_clip, scene_of
from ltx_jax.world.grammar import grammar
from ltx_jax.world.loop import initial_state, run_steps

__all__ = ["VAETrainConfig", "video_vae_config", "train_video_vae", "load_trained", "load_autoencoder", "held_out",
           "save_weights", "psnr", "pixel_loss", "world_clips", "scene_targets"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class VAETrainConfig:
    latent_channels: int = 16
    decoder_base_channels: int = 16
    frames: int = 9
    height: int = 64
    width: int = 64
    batch: int = 8
    steps: int = 3200             # 1600: 23.6 dB held out after stage 1, 3200: 25.9 (README)
    learning_rate: float = 3e-4  # 1e-3 collapsed the encoder (latent spread 0.01, see finish())
    warmup_steps: int = 50
    latent_l2: float = 1e-4
    object_weight: float = 3.0    # extra loss weight on the object's (saturated) pixels; 0 ignores objects, see
    #                               README "Training the default's video VAE"
    scene_weight: float = 1.0     # weight of the scene read-out loss (`scene_targets`); 0 trains without the head
    seed: int = 0                 # world seed of the training clips
    held_out_seed: int = 1000     # world seed of the evaluation clips (never trained on)
    held_out_clips: int = 32
    save_every: int = 200

    def __post_init__(self):
        for name in ("latent_channels", "decoder_base_channels", "batch", "steps", "save_every", "held_out_clips"):
            if getattr(self, name) < 1:
                raise ValueError(f"world VAE training: {name}={getattr(self, name)} must be >= 1")
        for name in ("object_weight", "scene_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"world VAE training: {name}={getattr(self, name)} must be >= 0")
        if not self.learning_rate > 0 or not 0 <= self.warmup_steps <= self.steps:
            raise ValueError(f"world VAE training: need lr > 0 and 0 <= warmup_steps <= steps (lr="
                             f"{self.learning_rate}, warmup_steps={self.warmup_steps}, steps={self.steps})")
        WorldSpec(seed=self.seed, clips=1, frames=self.frames, height=self.height, width=self.width)  # size rules

    def world(self, seed: int) -> WorldSpec:
        return WorldSpec(seed=seed, clips=1, frames=self.frames, height=self.height, width=self.width)


def video_vae_config(cfg: VAETrainConfig) -> VideoVAEConfig:
    """The LTX-2.3 video VAE layout at the trained size (no timestep conditioning, as released)."""
    return dataclasses.replace(LTX_2_3.vae, latent_channels=cfg.latent_channels,
                               decoder_base_channels=cfg.decoder_base_channels,
                               encoder_blocks=_tiny_blocks(LTX_2_3.vae.encoder_blocks),
                               decoder_blocks=_tiny_blocks(LTX_2_3.vae.decoder_blocks))


class _AutoEncoder(nnx.Module):
    def __init__(self, encoder: VideoEncoder, decoder: VideoDecoder):
        self.encoder, self.decoder = encoder, decoder

    def __call__(self, video: jax.Array) -> tuple[jax.Array, jax.Array]:
        with size_invariant(jax.default_backend() == "cpu"):
            z = self.encoder(video)
            return self.decoder(z), z


def world_clips(spec: WorldSpec, start: int, count: int) -> np.ndarray:
    """Clips `start .. start + count` as float32 [-1, 1] `[count, F, H, W, 3]`."""
    return np.stack([make_clip(spec, i)[1] for i in range(start, start + count)]).astype(np.float32) / 127.5 - 1.0


def scene_targets(spec: WorldSpec, start: int, count: int) -> np.ndarray:
    """float32 `[count, K]`: what the scene read-out head learns from the latents of clips `start .. start + count`
    (`scene_weight`): one-hot shape, colour and background; the texture's phase (a, b) = 2 pi (x, y) offset /
    period as the coefficients of the texture in the cos / sin basis: stripes cos a, sin a, 0, 0; checks
    cos a cos b, cos a sin b, sin a cos b, sin a sin b (shifting both offsets by half a period draws the same checks,
    so a and b alone are not a function of the clip); plain 0; then start and end centre and size, over the frame
    size, scaled to [-1, 1]."""
    g = grammar()
    rows = []
    for i in range(start, start + count):
        sc = scene_of(spec, i, g)
        bg = g.backgrounds[sc.background]
        a, b = (2 * np.pi * p / float(bg.get("period", 8)) for p in sc.phase)
        phase = {"plain": [0.0] * 4, "stripes": [np.cos(a), np.sin(a), 0.0, 0.0],
                 "checks": [np.cos(a) * np.cos(b), np.cos(a) * np.sin(b), np.sin(a) * np.cos(b), np.sin(a) * np.sin(b)]
                 }[bg["kind"]]
        size = (spec.width, spec.height)
        geometry = [2 * c / size[k % 2] - 1 for k, c in enumerate(sc.start + sc.end)] + [4 * sc.size / min(size) - 1]
        rows.append([float(sc.shape == n) for n in g.shapes] + [float(sc.colour == n) for n in g.colours]
                    + [float(sc.background == n) for n in g.backgrounds] + phase + geometry)
    return np.asarray(rows, np.float32)


def psnr(reconstruction: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB of [-1, 1] videos, measured on the [0, 1] scale after clipping (peak 1)."""
    mse = np.mean(((np.clip(reconstruction, -1, 1) - target) / 2.0) ** 2)
    return float(10.0 * np.log10(1.0 / max(mse, 1e-12)))


def _build(cfg: VAETrainConfig, seed: int = 0) -> _AutoEncoder:
    vae = video_vae_config(cfg)
    runtime = Runtime(param_dtype="float32", compute_dtype="float32")
    return _AutoEncoder(VideoEncoder(vae, runtime, rngs=nnx.Rngs(seed)),
                        VideoDecoder(vae, runtime, rngs=nnx.Rngs(seed + 1)))


def _optim(cfg: VAETrainConfig) -> OptimConfig:
    return OptimConfig(learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps, steps=cfg.steps,
                       min_lr_ratio=0.01, weight_decay=0.0, max_grad_norm=1.0, b2=0.99)


def pixel_weights(video: jax.Array, object_weight: float) -> jax.Array:
    """`1 + object_weight * s` per pixel `[..., 1]`, s = the target's saturation (max - min over RGB, on the [0, 1]
    scale) x 4 clipped to 1: the world's objects are its saturated pixels (>= 0.75 before the x4), backgrounds
    grey (0). Without it the objects, ~5% of the pixels, are the last thing an autoencoder learns."""
    s = (jnp.max(video, axis=-1, keepdims=True) - jnp.min(video, axis=-1, keepdims=True)) / 2.0
    return 1.0 + object_weight * jnp.clip(4.0 * s, 0.0, 1.0)


def pixel_loss(reconstruction: jax.Array, video: jax.Array, object_weight: float) -> jax.Array:
    """L1 + MSE in [-1, 1] pixels, each pixel weighted by `pixel_weights` (both VAE stages train on this)."""
    w, err = pixel_weights(video, object_weight), reconstruction - video
    return jnp.mean(w * jnp.abs(err)) + jnp.mean(w * jnp.square(err))


@partial(jax.jit, static_argnames=("graphdef", "optim", "latent_l2", "object_weight", "scene_weight"),
         donate_argnums=0)
def _train_step(state: TrainState, video: jax.Array, targets: jax.Array | None, *, graphdef, optim: OptimConfig,
                latent_l2: float, object_weight: float, scene_weight: float) -> tuple[TrainState, jax.Array]:
    """One step; with `scene_weight` the params are {"autoencoder", "scene_head"} and `targets` the clips'
    `scene_targets`."""
    tx = make_optimizer(optim)

    def loss_fn(params):
        autoencoder = params["autoencoder"] if scene_weight else params
        recon, z = nnx.merge(graphdef, autoencoder)(video)
        loss = pixel_loss(recon, video, object_weight) + latent_l2 * jnp.mean(jnp.square(z))
        if scene_weight:
            head = params["scene_head"]
            read = z.reshape(z.shape[0], -1) @ head["w"] + head["b"]
            loss = loss + scene_weight * jnp.mean(jnp.square(read - targets))
        return loss

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state, ema=None, key=state.key), loss


def _with_scene_head(cfg: VAETrainConfig, params, graphdef) -> dict:
    """{"autoencoder": params, "scene_head": a linear map from the flattened latent to `scene_targets`}."""
    spec = cfg.world(cfg.seed)
    video = jax.ShapeDtypeStruct((1, cfg.frames, cfg.height, cfg.width, 3), jnp.float32)
    z = jax.eval_shape(lambda v: nnx.merge(graphdef, params)(v)[1], video)
    n, k = int(np.prod(z.shape[1:])), scene_targets(spec, 0, 1).shape[1]
    w = jax.random.normal(jax.random.key(cfg.seed), (n, k), jnp.float32) / np.sqrt(n)
    return {"autoencoder": params, "scene_head": {"w": w, "b": jnp.zeros((k,), jnp.float32)}}


@partial(jax.jit, static_argnames=("graphdef",))
def _run(params, video: jax.Array, *, graphdef) -> tuple[jax.Array, jax.Array]:
    """(reconstruction, latent)."""
    return nnx.merge(graphdef, params)(video)


def train_video_vae(out: str | Path, cfg: VAETrainConfig, *, stop_after: int | None = None,
                    log: Callable[[str], None] = print) -> dict:
    """Train (or resume) the world's video VAE in `out/` (`checkpoints/`, `loss.jsonl`, `video_vae.npz` and
    `video_vae.json`: the config and the metrics).

    Args:
        stop_after: stop after this many steps of this call (the schedule still spans `cfg.steps`), for tests
            of resumption.

    Returns:
        {"step", "seconds", and, only when the last step is done, "held_out_psnr", "latent_spread",
        "held_out_agreement" (the analyzer's % agreement on the held-out reconstructions)}.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = _build(cfg)
    graphdef, params = nnx.split(model)
    optim = _optim(cfg)
    state = initial_state(_with_scene_head(cfg, params, graphdef) if cfg.scene_weight else params, optim, cfg.seed)
    record = {"what": "world video VAE", "config": dataclasses.asdict(cfg)}
    spec = cfg.world(cfg.seed)

    def step(state: TrainState, s: int):
        video = jnp.asarray(world_clips(spec, s * cfg.batch, cfg.batch))
        targets = jnp.asarray(scene_targets(spec, s * cfg.batch, cfg.batch)) if cfg.scene_weight else None
        state, loss = _train_step(state, video, targets, graphdef=graphdef, optim=optim, latent_l2=cfg.latent_l2,
                                  object_weight=cfg.object_weight, scene_weight=cfg.scene_weight)
        return state, {"loss": loss}

    state, _, seconds = run_steps(out, state, record, step, total=cfg.steps, save_every=cfg.save_every,
                                  stop_after=stop_after, log=log)
    result = {"step": int(state.step), "seconds": seconds}
    if int(state.step) == cfg.steps:
        params = state.params["autoencoder"] if cfg.scene_weight else state.params  # the head is not kept
        result.update(finish(out, cfg, graphdef, params, log))
    return result


def _agreement(cfg: VAETrainConfig, reconstructions: np.ndarray) -> dict[str, float]:
    """% of held-out reconstructions whose analyzer verdicts (colour, shape, direction) match the scene: PSNR
    alone hides a VAE that draws the background and drops the object."""
    from ltx_jax.world.analyze import analyze_frames

    spec = cfg.world(cfg.held_out_seed)
    scenes = [make_clip(spec, i)[0] for i in range(len(reconstructions))]
    pixels = np.clip(np.rint((np.clip(reconstructions, -1, 1) + 1) * 127.5), 0, 255).astype(np.uint8)
    verdicts = [analyze_frames(x) for x in pixels]
    attrs = ("colour", "shape") + (("direction",) if cfg.frames > 1 else ())
    return {a: round(100.0 * float(np.mean([v[a] == getattr(sc, a) for sc, v in zip(scenes, verdicts)])), 1)
            for a in attrs}


def held_out(cfg: VAETrainConfig, graphdef, params) -> dict:
    """{"held_out_psnr", "held_out_agreement"} of the autoencoder `(graphdef, params)` on the held-out clips."""
    held = world_clips(cfg.world(cfg.held_out_seed), 0, cfg.held_out_clips)
    rec = np.concatenate([np.asarray(_run(params, jnp.asarray(held[i:i + 8]), graphdef=graphdef)[0])
                          for i in range(0, len(held), 8)])
    return {"held_out_psnr": psnr(rec, held), "held_out_agreement": _agreement(cfg, rec)}


def save_weights(out: Path, cfg: VAETrainConfig, params, metrics: dict) -> None:
    """`out/video_vae.npz` (our module paths, float32; written whole or not at all) and `out/video_vae.json`."""
    flat = {".".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(params)}
    tmp = out / ".video_vae.tmp.npz"  # renamed when complete: never a half-written video_vae.npz
    np.savez(tmp, **flat)
    tmp.replace(out / "video_vae.npz")
    (out / "video_vae.json").write_text(json.dumps({"config": dataclasses.asdict(cfg), **metrics}, indent=1) + "\n")


def finish(out: Path, cfg: VAETrainConfig, graphdef, params, log) -> dict:
    """Latent statistics from training clips, held-out PSNR, and the trained weights as `video_vae.npz`."""
    model = nnx.merge(graphdef, params)
    spec = cfg.world(cfg.seed)
    zs = np.concatenate([np.asarray(_run(params, jnp.asarray(world_clips(spec, i, 8)), graphdef=graphdef)[1])
                         for i in range(0, 128, 8)])
    # Latent spread: across-clip deviation over overall deviation, per latent element. Near 0 means the encoder
    # collapsed (every clip maps to one latent); a healthy autoencoder keeps it well above 0.
    spread = float(np.mean(zs.std(0)) / max(float(zs.std()), 1e-12))
    zs = zs.reshape(-1, zs.shape[-1])
    mean, std = jnp.asarray(zs.mean(0)), jnp.asarray(zs.std(0) + 1e-6)
    for stats in (model.encoder.per_channel_statistics, model.decoder.per_channel_statistics):
        stats.mean_of_means[...], stats.std_of_means[...] = mean, std
    _, params = nnx.split(model)
    metrics = held_out(cfg, graphdef, params)
    log(f"held-out PSNR {metrics['held_out_psnr']:.2f} dB over {cfg.held_out_clips} clips, latent spread "
        f"{spread:.3f}, analyzer agreement on the reconstructions {metrics['held_out_agreement']}")
    metrics = {"held_out_psnr": metrics["held_out_psnr"], "latent_spread": spread,
               "held_out_agreement": metrics["held_out_agreement"]}
    save_weights(out, cfg, params, metrics)
    return metrics


def load_trained(folder: str | Path) -> tuple[VAETrainConfig, Path]:
    """(the config, the `video_vae.npz` path) of a finished `train_video_vae` run folder."""
    folder = Path(folder)
    meta, weights = folder / "video_vae.json", folder / "video_vae.npz"
    if not (meta.is_file() and weights.is_file()):
        raise FileNotFoundError(f"{folder}: no finished world VAE (video_vae.json + video_vae.npz); run "
                                "`ltx-jax world-vae --out` to its last step first")
    return VAETrainConfig(**json.loads(meta.read_text())["config"]), weights


def load_autoencoder(folder: str | Path) -> tuple[VAETrainConfig, nnx.GraphDef, nnx.State]:
    """(config, graphdef, float32 params) of a finished `train_video_vae` run folder (or one written like it)."""
    cfg, weights = load_trained(folder)
    graphdef, params = nnx.split(_build(cfg))
    flat = nnx.to_flat_state(params)
    with np.load(weights) as z:
        names = {".".join(map(str, p)) for p, _ in flat}
        if names != set(z.files):
            raise ValueError(f"{weights}: not this config's autoencoder ({len(names ^ set(z.files))} tensor names "
                             f"differ, e.g. {sorted(names ^ set(z.files))[:3]})")
        for p, v in flat:
            key = ".".join(map(str, p))
            if z[key].shape != v.get_value().shape:
                raise ValueError(f"{weights}: {key} has shape {z[key].shape}, the config needs {v.get_value().shape}")
            v.set_value(jnp.asarray(z[key], jnp.float32))
    return cfg, graphdef, nnx.from_flat_state(flat)
