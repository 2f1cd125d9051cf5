"""Stage 2b of the embedded default (issue 17): the world's audio VAE decoder and vocoder, trained after the DiT.

No ltx_core counterpart (ltx-core ships no audio VAE or vocoder training). The modules are the checkpoint's own
LTX-2.3 layouts: the decoder from `base` (the DiT stage's file), a fresh vocoder of the shape below; both are
written back under their official keys (`OUT/audio.safetensors`, float32, the config in its metadata), with
`OUT/audio.json` (held-out metrics) and `OUT/loss.jsonl`.

What it trains:
- The audio VAE *encoder* stays as it is in `base`: the DiT learned its latents, so the decoder and vocoder can
  be trained after the DiT without retraining it. Its latents are a fixed (random, deterministic) conv map of the
  log-mel, which the decoder learns to invert.
- The *decoder*: latent -> log-mel, L1 on the clip's log-mel, from the encoder's latent plus Gaussian noise of
  std `latent_noise` (generated latents are never exact).
- The vocoder's *16 kHz generator*: log-mel (+ noise of std `mel_noise`) -> waveform, against the clip's soundtrack
  with its pitch moved to the nearest vocoder line (below). Loss: `wave_weight` x waveform L1 (the line targets
  are phase-locked to the hop, so the waveform itself can be matched) + log-mel L1 (HiFi-GAN's reconstruction
  loss, smooth floor log(mel + 1e-4)) + a loudness term |log RMS - log RMS of the target| + spectral convergence
  at FFT sizes 512 and 1024. No adversarial terms. Without the waveform term no variant made tones (README
  "Training the embedded default": silence, or loud sound off the pitch).
- Its shape: upsample rates `vocoder_rates` (product 160, the hop), kernels `vocoder_kernels`, initial width
  `vocoder_width`, in the config the file carries. The released shape scaled down (six x2 stages narrowing to 1
  channel at 16 kHz) did not learn; two stages of x10, x16 from 128 channels learn in about 100 steps.
- The *bandwidth extension* is not trained: its generator's output conv is set to zero, so the 48 kHz output is
  the 16 kHz generator's x3 resample (the world's sounds have nothing above 4 kHz).

Vocoder lines: the vocoder is convolutional with a hop of 160 samples, so for a steady log-mel (a steady tone:
every frame the same) its output repeats every 160 samples; its spectrum can only hold multiples of 100 Hz. The
world's 220 / 440 / 880 Hz cannot come out; the nearest it can make are 200 / 400 / 900 Hz (`vocoder_lines`),
still the pitch words low / mid / high for the analyzer.

Data: clip `step * batch + i` of the world seed (its soundtrack only), rendered here; the vocoder sees windows of
`VOCODER_FRAMES` mel frames. Resumable (`world.loop.run_steps`). Evaluation on held-out clips (world seed 1000):
the decoder's log-mel L1, and the analyzer's pitch / sound agreement and the RMS of the 48 kHz output, both for
encode -> decode -> vocode and for the clip's own log-mel vocoded.
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

from ltx_jax.configs import Runtime
from ltx_jax.training.step import OptimConfig, TrainState, make_optimizer
from ltx_jax.world.loop import initial_state, run_steps

__all__ = ["AudioTrainConfig", "train_audio", "evaluate", "audio_config", "vocoder_lines", "AUDIO_FILE"]

AUDIO_FILE = "audio.safetensors"
HOP = 160               # 16 kHz samples per mel frame
VOCODER_FRAMES = 12     # the vocoder trains on windows of this many mel frames (the sounds are steady)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AudioTrainConfig:
    steps: int = 1600             # 800: held-out log-mel L1 0.16-0.29 across runs; 1600: 0.048 (README 2b)
    batch: int = 8
    learning_rate: float = 2e-3
    warmup_steps: int = 30
    latent_noise: float = 0.2     # std of the noise on the (normalized) latents the decoder sees
    mel_noise: float = 0.1        # std of the noise on the log-mel the vocoder sees
    wave_weight: float = 4.0      # weight of the waveform L1 (the line targets are phase-locked to the hop)
    vocoder_rates: tuple[int, ...] = (10, 16)
    vocoder_kernels: tuple[int, ...] = (20, 32)
    vocoder_width: int = 128
    seed: int = 0                 # world seed of the training clips
    held_out_seed: int = 1000
    held_out_clips: int = 32
    save_every: int = 100

    def __post_init__(self):
        for name in ("vocoder_rates", "vocoder_kernels"):  # lists when read back from JSON
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("steps", "batch", "held_out_clips", "save_every", "vocoder_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"world audio training: {name}={getattr(self, name)} must be >= 1")
        if int(np.prod(self.vocoder_rates)) != HOP:
            raise ValueError(f"world audio training: vocoder_rates {self.vocoder_rates} multiply to "
                             f"{int(np.prod(self.vocoder_rates))}, not the mel hop {HOP}")
        if not self.learning_rate > 0 or not 0 <= self.warmup_steps <= self.steps:
            raise ValueError(f"world audio training: need lr > 0 and 0 <= warmup_steps <= steps (lr="
                             f"{self.learning_rate}, warmup_steps={self.warmup_steps}, steps={self.steps})")
        if self.latent_noise < 0 or self.mel_noise < 0:
            raise ValueError("world audio training: latent_noise and mel_noise must be >= 0")


class _AudioPath(nnx.Module):
    def __init__(self, decoder, vocoder):
        self.decoder, self.vocoder = decoder, vocoder


def _frames(x: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """`[..., L]` -> magnitude spectra of the encoder front end's frames (`audio_vae.mel.stft`, no padding),
    differentiable at silence."""
    from ltx_jax.audio_vae.mel import stft
    spec = stft(x, n_fft, hop)
    return jnp.sqrt(jnp.square(spec.real) + jnp.square(spec.imag) + 1e-12)


def _window(batch: tuple, draw: int, frames: int) -> tuple:
    """(latent, mel, vocoder mel, 16 kHz target): the vocoder's input and target cut to `frames` mel frames from
    start `draw` mod the number of starts (mel frame i covers samples [i hop, (i + 1) hop), up to the centred
    STFT's half-hop shift, which magnitude losses ignore)."""
    latent, mel, wave16 = batch
    start = draw % (min(mel.shape[2], wave16.shape[-1] // HOP) - frames + 1)
    return latent, mel, mel[:, :, start:start + frames], wave16[..., start * HOP:(start + frames) * HOP]


def _mel_l1(y: jax.Array, target: jax.Array) -> jax.Array:
    """L1 of 16 kHz log-mels (n_fft 1024, hop 160, 64 Slaney bands as the encoder's front end, no padding), with a
    smooth floor: log(mel + 1e-4). (A clamped floor has no gradient below it: a generator pushed under it once
    stays silent.)"""
    from ltx_jax.audio_vae.mel import slaney_mel_filterbank
    bank = jnp.asarray(slaney_mel_filterbank(16000, 1024, 64))
    mel = lambda x: jnp.log(_frames(x, 1024, HOP) @ bank + 1e-4)  # noqa: E731
    return jnp.mean(jnp.abs(mel(y) - mel(target)))


def _convergence(y: jax.Array, target: jax.Array, sizes: tuple[int, ...]) -> jax.Array:
    """Spectral convergence ||S - T|| / ||T|| of linear magnitudes, averaged over FFT sizes (hop size / 4)."""
    total = 0.0
    for n in sizes:
        s, t = _frames(y, n, n // 4), _frames(target, n, n // 4)
        total += jnp.sqrt(jnp.sum(jnp.square(s - t))) / (jnp.sqrt(jnp.sum(jnp.square(t))) + 1e-8)
    return total / len(sizes)


def _decoder_l1(decoded: jax.Array, mel: jax.Array) -> jax.Array:
    """L1 of the decoded log-mel against the clip's, over the frames both have (the decoder makes 4 T - 3)."""
    t = min(decoded.shape[2], mel.shape[2])
    return jnp.mean(jnp.abs(decoded[:, :, :t] - mel[:, :, :t]))


def _losses(model: _AudioPath, latent, mel, vocoder_mel, wave16, wave_weight: float = 0.0):
    mel_l1 = _decoder_l1(model.decoder(latent), mel)
    y16 = jnp.moveaxis(model.vocoder.vocoder(vocoder_mel), -1, 1)  # the 16 kHz generator: [B, 2, L]
    n = min(y16.shape[-1], wave16.shape[-1])
    y16, wave16 = y16[..., :n], wave16[..., :n]
    # Log-mel L1 (HiFi-GAN's reconstruction loss): its bands are ~130 Hz wide below 1 kHz, so a tone near the
    # target's pitch scores better than one far off; spectral convergence puts the energy there.
    rms = lambda x: jnp.sqrt(jnp.mean(jnp.square(x), axis=-1) + 1e-8)  # noqa: E731
    level = jnp.mean(jnp.abs(jnp.log(rms(y16)) - jnp.log(rms(wave16))))  # the target's loudness: silence costs
    wave = wave_weight * jnp.mean(jnp.abs(y16 - wave16))
    return mel_l1, _mel_l1(y16, wave16) + level, _convergence(y16, wave16, (512, 1024)), wave


@partial(jax.jit, static_argnames=("graphdef", "optim", "latent_noise", "mel_noise", "wave_weight"),
         donate_argnums=0)
def _train_step(state: TrainState, rest, latent, mel, vocoder_mel, wave16, *, graphdef, optim: OptimConfig,
                latent_noise: float, mel_noise: float, wave_weight: float):
    tx = make_optimizer(optim)
    k1, k2 = jax.random.split(jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step))
    latent = latent + latent_noise * jax.random.normal(k1, latent.shape)
    vocoder_mel = vocoder_mel + mel_noise * jax.random.normal(k2, vocoder_mel.shape)

    def loss_fn(params):
        parts = _losses(nnx.merge(graphdef, params, rest), latent, mel, vocoder_mel, wave16, wave_weight)
        return sum(parts), parts

    (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state, ema=None, key=state.key), loss, parts


def vocoder_lines(spacing: float):
    """The world grammar with each pitch moved to the nearest multiple of `spacing` Hz (the vocoder's lines)."""
    from ltx_jax.world.grammar import grammar
    g = grammar()
    lines = {k: float(max(1, round(v / spacing)) * spacing) for k, v in g.pitches.items()}
    return dataclasses.replace(g, pitches=lines)


class _Soundtracks:
    """Soundtracks of world clips (16 kHz renders), their log-mels and encoder latents."""

    def __init__(self, encoder, frames: int, fps: float, height: int, width: int):
        from ltx_jax.audio_vae.api import encode_mel
        from ltx_jax.audio_vae.mel import waveform_to_mel

        c = encoder.config
        self.encoder, self.height, self.width = encoder, height, width
        self.n16 = int(round(frames / fps * c.sampling_rate))
        self.lines = vocoder_lines(c.sampling_rate // c.mel_hop_length)
        self._mel = lambda w: waveform_to_mel(w, sample_rate=c.sampling_rate, n_fft=c.n_fft,
                                              hop=c.mel_hop_length, n_mels=c.mel_bins)
        self._encode = lambda m: encode_mel(encoder, m)

    def scenes(self, seed: int, start: int, count: int):
        from ltx_jax.world.grammar import sample_scene
        return [sample_scene(np.random.default_rng([seed, i]), self.height, self.width)
                for i in range(start, start + count)]

    def batch(self, scenes) -> tuple[jax.Array, ...]:
        """(latent, log-mel, the vocoder's target): the soundtrack's latent and log-mel, and the soundtrack with
        each pitch moved to its nearest vocoder line (`vocoder_lines`)."""
        from ltx_jax.world.render import render_audio
        rate = self.encoder.config.sampling_rate
        wave16 = np.stack([render_audio(s, self.n16, rate) for s in scenes])
        target = np.stack([render_audio(s, self.n16, rate, self.lines) for s in scenes])
        mel = self._mel(jnp.asarray(wave16))
        return self._encode(mel), mel, jnp.asarray(target)


def audio_config(base: str | Path, cfg: AudioTrainConfig):
    """The `LTXConfig` of `base` with the 16 kHz generator of `cfg` (rates, kernels, initial width)."""
    from ltx_jax.transformer.loading import read_config
    config = read_config(base)
    vocoder = dataclasses.replace(config.vocoder, upsample_rates=tuple(cfg.vocoder_rates),
                                  upsample_kernel_sizes=tuple(cfg.vocoder_kernels),
                                  upsample_initial_channel=cfg.vocoder_width)
    return dataclasses.replace(config, vocoder=vocoder)


def _fresh_vocoder(out: Path, config) -> Path:
    """A file holding a fresh vocoder of `config`, seeded (N(0, 1/fan_in), as the synthetic checkpoints)."""
    from ltx_jax.audio_vae.loading import audio_schema
    from ltx_jax.checkpoint.synthetic import write_schema_file
    schema = {k: v for k, v in audio_schema(config).items() if k.startswith("vocoder.")}
    return write_schema_file(schema, out / "vocoder_init.safetensors", config.to_metadata(), config=config)


def _optim(cfg: AudioTrainConfig) -> OptimConfig:
    return OptimConfig(learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps, steps=cfg.steps,
                       min_lr_ratio=0.05, weight_decay=0.0, max_grad_norm=1.0, b2=0.99)


def train_audio(out: str | Path, base: str | Path, cfg: AudioTrainConfig, *, frames: int, fps: float = 24.0,
                height: int = 64, width: int = 64, stop_after: int | None = None,
                log: Callable[[str], None] = print) -> dict:
    """Train (or resume) the audio decoder and vocoder of the official file `base` in `out/` (module docstring).

    Args:
        frames, fps: the clip duration (the soundtrack's length); height, width: the world's frame size (scenes).
        stop_after: stop after this many steps of this call (the schedule still spans `cfg.steps`).

    Returns:
        {"step", "seconds", and, once the last step is done, the held-out metrics of `evaluate`}.
    """
    from ltx_jax.audio_vae import load_audio_decoder, load_audio_encoder, load_vocoder

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rt = Runtime(param_dtype="float32", compute_dtype="float32")
    tracks = _Soundtracks(load_audio_encoder(base, rt), frames, fps, height, width)
    config = audio_config(base, cfg)
    model = _AudioPath(load_audio_decoder(base, rt), load_vocoder(_fresh_vocoder(out, config), rt))
    if hasattr(model.vocoder, "bwe_generator"):  # the BWE residual starts at zero: output = the x3 resample
        conv = model.vocoder.bwe_generator.conv_post
        conv.weight.set_value(jnp.zeros_like(conv.weight.get_value()))
    trained = nnx.All(nnx.Param, nnx.Not(nnx.PathContains("bwe_generator")))
    graphdef, params, rest = nnx.split(model, trained, ...)
    optim = _optim(cfg)
    state = initial_state(params, optim, cfg.seed)
    config_json = json.loads(json.dumps(dataclasses.asdict(cfg)))  # tuples as lists, as a restored record has them
    record = {"what": "world audio decoder + vocoder", "config": config_json, "frames": frames,
              "fps": fps}

    def step(state: TrainState, s: int):
        batch = tracks.batch(tracks.scenes(cfg.seed, s * cfg.batch, cfg.batch))
        batch = _window(batch, int(np.random.default_rng([cfg.seed, s]).integers(0, 1 << 16)), VOCODER_FRAMES)
        state, loss, (mel_l1, v_mel, v_sc, v_wave) = _train_step(
            state, rest, *batch, graphdef=graphdef, optim=optim, latent_noise=cfg.latent_noise,
            mel_noise=cfg.mel_noise, wave_weight=cfg.wave_weight)
        return state, {"loss": loss, "mel_l1": mel_l1, "vocoder_mel_l1": v_mel, "vocoder_convergence": v_sc,
                       "vocoder_wave_l1": v_wave}

    state, _, seconds = run_steps(out, state, record, step, total=cfg.steps, save_every=cfg.save_every,
                                  stop_after=stop_after, log=log)
    result = {"step": int(state.step), "seconds": seconds}
    if int(state.step) == cfg.steps:
        trained = nnx.merge(graphdef, state.params, rest)
        metrics = evaluate(tracks, trained.decoder, trained.vocoder, cfg)
        _save(out, trained, config)
        result.update(metrics)
        tmp = out / ".audio.json.tmp"
        tmp.write_text(json.dumps({"config": dataclasses.asdict(cfg), "frames": frames, "fps": fps,
                                   "seconds_of_last_call": seconds, **metrics}, indent=1) + "\n")
        tmp.replace(out / "audio.json")
        log(f"audio held out: {metrics}")
    return result


def evaluate(tracks: _Soundtracks, decoder, vocoder, cfg: AudioTrainConfig) -> dict:
    """On `cfg.held_out_clips` clips of the held-out seed: the log-mel L1 of encode -> decode, and the analyzer's
    pitch and sound agreement (%) on the 48 kHz waveform of encode -> decode -> vocode and of the clip's own
    log-mel vocoded."""
    from ltx_jax.audio_vae.api import decode_mel, sample_rate, vocode
    from ltx_jax.world.analyze import analyze_audio

    scenes = tracks.scenes(cfg.held_out_seed, 0, cfg.held_out_clips)
    latent, mel, _ = tracks.batch(scenes)
    decoded = decode_mel(decoder, latent)
    rate = sample_rate(vocoder)
    out = {"held_out_mel_l1": float(_decoder_l1(decoded, mel))}
    for name, source in (("round_trip", decoded), ("vocoder", mel)):
        waves = np.asarray(vocode(vocoder, source))
        out[f"{name}_rms"] = float(np.sqrt(np.mean(np.square(waves))))  # the world's tones: 0.21
        verdicts = [analyze_audio(w, rate) for w in waves]
        for attr in ("pitch", "sound"):
            hits = [v[attr] == getattr(s, attr) for v, s in zip(verdicts, scenes)]
            out[f"{name}_{attr}"] = round(100.0 * float(np.mean(hits)), 1)
        out[f"{name}_frequencies"] = sorted({round(v["frequency"] or 0.0) for v in verdicts})
    return out


def _save(out: Path, model: _AudioPath, config) -> Path:
    """`audio.safetensors`: the decoder's and vocoder's tensors under their official file keys (float32), with
    `config` (the base's, with this vocoder) in the metadata."""
    from ltx_jax.checkpoint.layout import LAYOUT, file_keys
    from ltx_jax.checkpoint.safetensors_file import save_file

    tensors = {}
    for name, module in (("audio_vae_decoder", model.decoder), ("vocoder", model.vocoder)):
        state = nnx.state(module)
        flat = dict(nnx.to_flat_state(state))
        for path, (keys, _, _) in file_keys(LAYOUT[name], state).items():
            tensors[keys[0]] = np.asarray(jax.device_get(flat[path].get_value()), np.float32)
    tensors = {k: v for k, v in tensors.items() if ".per_channel_statistics." not in k}  # the encoder's, unchanged
    tmp = out / f".{AUDIO_FILE}.tmp"
    save_file({k: (lambda v=v: v) for k, v in tensors.items()}, tmp, config.to_metadata(),
              shapes={k: (v.shape, v.dtype) for k, v in tensors.items()})
    tmp.replace(out / AUDIO_FILE)
    return out / AUDIO_FILE


def main(argv=None) -> int:
    """`python -m ltx_jax.world.train_audio --out DIR --base FILE`: the stage on its own (JSON on stdout)."""
    import argparse
    import sys

    p = argparse.ArgumentParser(description="train the world's audio decoder + vocoder after the DiT (resumable)")
    p.add_argument("--out", required=True, help="run folder (resumed if it holds one)")
    p.add_argument("--base", required=True, help="official file whose audio encoder and decoder start the run (the "
                                                 "DiT stage's model.safetensors, or a packaged default's)")
    p.add_argument("--steps", type=int, default=AudioTrainConfig.steps)
    args = p.parse_args(argv)
    cfg = AudioTrainConfig(steps=args.steps, warmup_steps=min(AudioTrainConfig.warmup_steps, args.steps))
    result = train_audio(args.out, args.base, cfg, frames=9, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
