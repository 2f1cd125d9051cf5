"""Stage 2 of the embedded default (issue 17): the tiny LTX-2.3 DiT trained on the world with flow matching.

No ltx_core counterpart (ltx-core ships no training); the loop is `ltx_jax.training` (`ltx-jax train`, full
fine-tuning), fed by the same preprocessing a user's dataset goes through. `prepare` builds, under `out/`:
  gemma/            the world's word-level tokenizer + a tiny random Gemma-3 (frozen, as the real encoder is)
  base.safetensors  the official single-file layout: the stage-1 video VAE (trained), a randomly initialized
                    DiT, connectors, audio VAE and vocoder, the config in the metadata
  world/            `clips` world clips (mp4, captions.jsonl) of the training seed
  cache/            their latents and caption contexts (`training.preprocess`, Gemma + the checkpoint's connectors)
  empty.npz         the empty prompt's contexts, for caption dropout
and `train_dit` runs `training.run.train` on it (mode "full", float32), writing `out/train/model.safetensors`.

What is trained: the transformer only, on both streams (video and audio latents, as the official trainer's
audio-video strategy). The connectors keep their initialization (random, with zero registers: see
`write_base_checkpoint`), a frozen map of the frozen Gemma's states applied once at preprocessing. The audio
VAE and vocoder are still the seeded random ones (not yet trained), so the audio latents are a fixed random
encoding of the soundtrack and the generated sound is not yet a tone. The audio latent statistics, though, are
fitted to the world's soundtracks before the cache is written (`fit_audio_statistics`), as stage 1 fits the
video latent statistics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ltx_jax.configs import LTXConfig
from ltx_jax.configs.presets import LTX_2_3_TINY_AV
from ltx_jax.world.tokenizer import TINY_GEMMA

__all__ = ["DiTTrainConfig", "world_config", "write_base_checkpoint", "fit_audio_statistics", "prepare",
           "train_dit"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiTTrainConfig:
    clips: int = 768            # training clips (world seed `seed`)
    layers: int = 4             # DiT blocks
    heads: int = 4              # video attention heads of 16 channels (the video stream is 16 * heads wide)
    steps: int = 4000
    batch: int = 16
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    caption_dropout_p: float = 0.1
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 10

    def __post_init__(self):
        for name in ("clips", "layers", "heads", "steps", "batch", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"world DiT training: {name}={getattr(self, name)} must be >= 1")
        if not self.learning_rate > 0 or not 0 <= self.warmup_steps <= self.steps:
            raise ValueError(f"world DiT training: need lr > 0 and 0 <= warmup_steps <= steps (lr="
                             f"{self.learning_rate}, warmup_steps={self.warmup_steps}, steps={self.steps})")
        if not 0 <= self.caption_dropout_p < 1:
            raise ValueError(f"world DiT training: caption_dropout_p={self.caption_dropout_p} must be in [0, 1)")


# The audio VAE's width. Its latent statistics are sized by `ch` (as ltx-core builds them), so a valid file has
# z_channels x latent mel bins (64 / 4) == ch: 32 gives z_channels 2, an eighth of the released layout's tiny size
# (128), and audio tokens of 32 channels. The DiT's audio stream is as wide as its video stream (`world_config`),
# so twice as wide as its tokens: at 64-channel tokens (ch 64) and a 32-wide stream (the tiny layout's
# 4 heads x 8), the flow target eps - x0 has more dimensions than the stream, and the audio loss of a trained
# DiT stayed at 0.7 at every sigma, 0.85 even at sigma 0.2 (the video loss: 0.2 to 0.4).
AUDIO_CH = 32


def world_config(vae, *, layers: int, heads: int) -> LTXConfig:
    """The tiny LTX-2.3 layout of the default: `vae` (a `VideoVAEConfig`, stage 1's), a DiT of `layers` blocks
    whose video and audio streams both have `heads` heads of 16 channels (the connectors as wide, as the 2.3
    layout needs), the text side sized for the world's tiny Gemma (its width, its layers + the embeddings), and an
    audio VAE of width `AUDIO_CH` (the DiT's audio channels follow it)."""
    c = LTX_2_3_TINY_AV
    width, states = TINY_GEMMA["hidden_size"], TINY_GEMMA["num_hidden_layers"] + 1
    head_dim = c.transformer.attention_head_dim
    audio_vae = dataclasses.replace(c.audio_vae, ch=AUDIO_CH, z_channels=AUDIO_CH // (c.audio_vae.mel_bins // 4))
    return dataclasses.replace(
        c, vae=vae, audio_vae=audio_vae,
        transformer=dataclasses.replace(c.transformer, in_channels=vae.latent_channels, num_layers=layers,
                                        num_attention_heads=heads, cross_attention_dim=heads * head_dim,
                                        out_channels=vae.latent_channels, caption_channels=width,
                                        audio_num_attention_heads=heads, audio_attention_head_dim=head_dim,
                                        audio_cross_attention_dim=heads * head_dim,
                                        audio_in_channels=AUDIO_CH, audio_out_channels=AUDIO_CH),
        connector=dataclasses.replace(c.connector, text_hidden_size=width, text_num_hidden_states=states,
                                      connector_num_attention_heads=heads, connector_attention_head_dim=head_dim,
                                      audio_connector_num_attention_heads=heads,
                                      audio_connector_attention_head_dim=head_dim),
        model_version="2.3.0-world")


def _vae_tensors(vae_npz: str | Path) -> dict[str, np.ndarray]:
    """Stage 1's `video_vae.npz` (our module paths) as official file keys (`vae.*`; one statistics copy)."""
    out = {}
    with np.load(vae_npz) as z:
        for key in z.files:
            name = key
            if ".per_channel_statistics." in key:
                if not key.startswith("encoder."):
                    continue  # the decoder holds the same statistics
                name = "per_channel_statistics." + key.rsplit(".", 1)[1].replace("_of_", "-of-")
            out["vae." + name] = z[key]
    return out


def write_base_checkpoint(config: LTXConfig, vae_npz: str | Path, path: str | Path, seed: int = 0) -> Path:
    """The official single file: stage 1's VAE, the connectors' learnable registers at zero, every other tensor
    seeded random (`checkpoint.synthetic`).

    Why zero registers: a world caption is about 14 tokens, and the connectors fill the other 1010 of the 1024
    context positions with the registers. With random registers those positions hold 128 distinct random
    vectors, and the DiT's cross-attention, uniform at the start, sees the caption as 1.4% of its input; in a
    probe (64 training clips, loss with shuffled minus true captions at sigma 0.9) that gap was
    0.0003 after 750 steps. Zero registers make the connectors' output at those positions one repeated vector
    (its spread across positions is 2e-5 of its norm), which the attention learns to look past: the gap was
    0.16 at 1000 steps and kept growing. The registers are ordinary weights of the official layout, so this
    is an initialization, not a change of architecture."""
    from ltx_jax.audio_vae import audio_schema
    from ltx_jax.checkpoint import schema as S
    from ltx_jax.checkpoint.synthetic import _tensor
    from ltx_jax.checkpoint.safetensors_file import save_file

    schema = {k: s for part in S.checkpoint_schema(config).values() for k, s in part.items()}
    schema.update(audio_schema(config))
    trained = _vae_tensors(vae_npz)
    vae_keys = {k for k in schema if k.startswith("vae.")}
    if set(trained) != vae_keys:
        missing, extra = sorted(vae_keys - set(trained)), sorted(set(trained) - vae_keys)
        raise ValueError(f"{vae_npz}: not this config's video VAE (missing {missing[:3]}, extra {extra[:3]})")
    for key, value in trained.items():
        if tuple(value.shape) != tuple(schema[key]):
            raise ValueError(f"{vae_npz}: {key} has shape {value.shape}, the config needs {schema[key]}")
    writers, shapes = {}, {}
    for key, shape in sorted(schema.items()):
        if key in trained:
            writers[key] = lambda key=key: trained[key].astype(np.float32)
        elif key.endswith(".learnable_registers"):
            writers[key] = lambda shape=shape: np.zeros(shape, np.float32)
        else:
            writers[key] = lambda key=key, shape=shape: _tensor(key, shape, seed, np.float32, config)
        shapes[key] = (tuple(shape), np.dtype(np.float32))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(writers, path, config.to_metadata(), shapes=shapes)
    return path


AUDIO_STATISTICS = ("audio_vae.per_channel_statistics.mean-of-means",
                    "audio_vae.per_channel_statistics.std-of-means")


def fit_audio_statistics(base: str | Path, world: str | Path, dst: str | Path, *, clips: int = 128) -> dict:
    """Write to `dst` the file `base` with its audio latent statistics (`AUDIO_STATISTICS`) fitted to the world's
    soundtracks: per channel, the mean and deviation over every token of the first `clips` clips of the dataset
    `world` (their mp4 audio, read and encoded as `training.preprocess` does), as `train_vae.finish` does for the
    video latents. The DiT then sees normalized audio latents of zero mean and unit deviation per channel.

    Why: the audio encoder stays seeded random, and so did its statistics, which left the part of the latent that
    tells the six pitch / sound classes apart with a deviation of 0.16 against the flow's unit noise (measured
    on the 768 stage-2 clips); fitted, 0.53. Returns {"clips", "tokens", "std_min", "std_max"}.
    """
    import json

    from ltx_jax.audio_vae import load_audio_encoder
    from ltx_jax.checkpoint.safetensors_file import SafetensorsFile, save_file
    from ltx_jax.configs import Runtime
    from ltx_jax.training.encoders import clip_audio_encoder

    world = Path(world)
    meta = json.loads((world / "world.json").read_text())
    rows = [json.loads(line) for line in (world / "captions.jsonl").read_text().splitlines()][:clips]
    encode = clip_audio_encoder(load_audio_encoder(base, Runtime(param_dtype="float32", compute_dtype="float32")))
    with SafetensorsFile(base) as f:
        mean, std = (np.asarray(f[k], np.float64) for k in AUDIO_STATISTICS)
    raw = []
    for row in rows:
        tokens = encode(world / row["video"], int(meta["frames"]), float(meta["fps"]))
        if tokens is None:
            raise ValueError(f"{world / row['video']}: no audio stream; the world's clips all carry sound")
        raw.append(np.asarray(tokens, np.float64) * std + mean)  # the encoder normalized with the old statistics
    raw = np.concatenate(raw)
    fitted = {AUDIO_STATISTICS[0]: raw.mean(0), AUDIO_STATISTICS[1]: raw.std(0) + 1e-6}
    with SafetensorsFile(base) as f:
        shapes = {k: (tuple(f.info(k).shape), f.info(k).numpy_dtype) for k in f}
        writers = {k: (lambda k=k: np.asarray(f[k])) for k in f}
        for key, value in fitted.items():
            writers[key] = lambda v=value, d=shapes[key][1]: v.astype(d)
        save_file(writers, dst, f.metadata, shapes=shapes)
    s = fitted[AUDIO_STATISTICS[1]]
    return {"clips": len(rows), "tokens": len(raw), "std_min": float(s.min()), "std_max": float(s.max())}


def prepare(out: str | Path, vae_npz: str | Path, vae, cfg: DiTTrainConfig, *, frames: int, height: int, width: int,
            log: Callable[[str], None] = print) -> dict[str, Path]:
    """Build (or complete) everything training needs under `out` (see the module docstring); idempotent."""
    from flax import nnx  # noqa: F401  (jax / flax imported only when building)

    from ltx_jax.audio_vae import load_audio_encoder
    from ltx_jax.checkpoint import restore
    from ltx_jax.configs import Runtime
    from ltx_jax.text_encoder.prompts import write_prompt_file
    from ltx_jax.training.encoders import clip_audio_encoder, gemma_captions
    from ltx_jax.training.preprocess import preprocess
    from ltx_jax.world.dataset import WorldSpec, write_dataset
    from ltx_jax.world.tokenizer import write_tiny_gemma

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"gemma": out / "gemma", "base": out / "base.safetensors", "world": out / "world",
             "cache": out / "cache", "empty": out / "empty.npz"}
    if not paths["gemma"].exists():
        write_tiny_gemma(paths["gemma"], seed=cfg.seed)
    if not (paths["world"] / "captions.jsonl").exists():
        write_dataset(paths["world"], WorldSpec(seed=cfg.seed, clips=cfg.clips, frames=frames, height=height,
                                                width=width))
        log(f"world: {cfg.clips} clips of {frames}x{height}x{width}")
    rt = Runtime(param_dtype="float32", compute_dtype="float32")
    if not paths["base"].exists():
        tmp = out / ".base.tmp.safetensors"
        write_base_checkpoint(world_config(vae, layers=cfg.layers, heads=cfg.heads), vae_npz, tmp, seed=cfg.seed)
        fit = fit_audio_statistics(tmp, paths["world"], paths["base"])
        tmp.unlink()
        log(f"audio latent statistics fitted on {fit['clips']} clips ({fit['tokens']} tokens): per-channel std "
            f"{fit['std_min']:.3g} .. {fit['std_max']:.3g}")
    captions = gemma_captions(paths["gemma"], paths["base"], rt)
    if not (paths["cache"] / "index.jsonl").exists():
        audio = clip_audio_encoder(load_audio_encoder(paths["base"], rt))
        counts = preprocess(paths["world"], paths["cache"], encoder=restore(paths["base"], "vae_encoder", runtime=rt),
                            encode_captions=captions, encode_audio=audio, log=lambda _: None)
        log(f"cache: {counts}")
    if not paths["empty"].exists():
        (v, a), = captions([""])
        write_prompt_file(paths["empty"], (v[None], a[None], np.ones((1, v.shape[0]), np.float32)))
    return paths


def train_config(out: str | Path, cfg: DiTTrainConfig):
    """The `ltx-jax train` configuration of stage 2 (full training of the transformer in float32)."""
    from ltx_jax.training.config import TrainConfig

    out = Path(out)
    return TrainConfig.from_dict({
        "model": {"checkpoint": str(out / "base.safetensors"), "mode": "full", "base_dtype": "float32",
                  "compute_dtype": "float32"},
        "data": {"cache": str(out / "cache"), "batch_size": cfg.batch, "seed": cfg.seed,
                 "empty_prompt": str(out / "empty.npz"), "with_audio": True},
        "objective": {"caption_dropout_p": cfg.caption_dropout_p, "first_frame_p": 0.0},
        "optim": {"learning_rate": cfg.learning_rate, "warmup_steps": cfg.warmup_steps, "steps": cfg.steps,
                  "min_lr_ratio": 0.01, "weight_decay": 0.0},
        "output": {"dir": str(out / "train"), "checkpoint_every": cfg.checkpoint_every, "keep": 2,
                   "async_save": False, "log_every": cfg.log_every, "progress": False, "export_dtype": "float32"},
    })


def train_dit(out: str | Path, vae_npz: str | Path, vae, cfg: DiTTrainConfig, *, frames: int = 9, height: int = 64,
              width: int = 64, stop_after: int | None = None, log: Callable[[str], None] = print) -> dict:
    """Prepare (idempotent) and train (or resume) stage 2; returns `training.run.train`'s summary."""
    from ltx_jax.training.run import train

    prepare(out, vae_npz, vae, cfg, frames=frames, height=height, width=width, log=log)
    summary = train(train_config(out, cfg), stop_after=stop_after, log=log)
    summary.pop("state", None)
    return summary
