"""LTX-2.3's vocoder with bandwidth extension (16 kHz generator, then a second generator up to 48 kHz).

Counterpart: ltx_core `model/audio_vae/vocoder.py` (`VocoderWithBWE`, `MelSTFT`, `_STFTFn`) and
`model_configurator.py` (`VocoderConfigurator`: a `vocoder` section with a `bwe` key builds this).

Forward (`[B, 2, T, 64]` log-mel -> `[B, L, 2]` waveform at `output_sampling_rate`):
1. stage 1 (`vocoder.*`, final clamp) -> x `[B, L1, 2]`; the result keeps `L1 * out_rate // in_rate` samples;
2. x zero-padded on the right to a multiple of the hop;
3. causal log-mel of x (`mel_stft.*`, buffers from the file): left zero-pad n_fft - hop, DFT rows (real rows,
   then imaginary rows) at stride hop, magnitude without epsilon, mel matrix, log(clamp(., 1e-5));
4. BWE generator (`bwe_generator.*`, no final activation) on that log-mel -> residual;
5. skip: x3 Hann-sinc resample of the padded x (non-persistent filter, computed here);
6. clamp(residual + skip, -1, 1), cropped to the length of step 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.audio_vae.resample import hann_sinc_filter, upsample_1d
from ltx_jax.audio_vae.vocoder import Vocoder
from ltx_jax.configs import ConfigError, VocoderConfig
from ltx_jax.video_vae.ops import Buffer

__all__ = ["VocoderWithBWE", "MelSTFT"]


class _STFTFn(nnx.Module):
    def __init__(self, n_fft: int, param_dtype):
        freqs = n_fft // 2 + 1
        self.forward_basis = Buffer(jnp.zeros((2 * freqs, 1, n_fft), param_dtype))
        self.inverse_basis = Buffer(jnp.zeros((2 * freqs, 1, n_fft), param_dtype))  # unused, but in the file


class MelSTFT(nnx.Module):
    """Causal log-mel from the checkpoint's bf16 DFT bases and mel matrix (never recomputed)."""

    def __init__(self, n_fft: int, hop: int, n_mels: int, *, param_dtype):
        self.n_fft, self.hop = n_fft, hop
        self.stft_fn = _STFTFn(n_fft, param_dtype)
        self.mel_basis = Buffer(jnp.zeros((n_mels, n_fft // 2 + 1), param_dtype))

    def __call__(self, y: jax.Array) -> jax.Array:
        """`[N, L]` waveforms (L a multiple of hop) -> log-mel `[N, L / hop, n_mels]`."""
        y = jnp.pad(y, ((0, 0), (max(0, self.n_fft - self.hop), 0)))[..., None]  # win_length = n_fft
        basis = self.stft_fn.forward_basis[...].astype(y.dtype)
        spec = jax.lax.conv_general_dilated(y, basis, (self.hop,), [(0, 0)],
                                            dimension_numbers=("NWC", "OIW", "NWC"))
        freqs = spec.shape[-1] // 2
        magnitude = jnp.sqrt(jnp.square(spec[..., :freqs]) + jnp.square(spec[..., freqs:]))
        mel = jnp.einsum("ntf,mf->ntm", magnitude, self.mel_basis[...].astype(magnitude.dtype))
        return jnp.log(jnp.maximum(mel, 1e-5))


class VocoderWithBWE(nnx.Module):
    """`vocoder.*` (stage 1), `bwe_generator.*`, `mel_stft.*` under the file prefix `vocoder.`."""

    def __init__(self, config: VocoderConfig, *, param_dtype=jnp.float32, dtype=jnp.float32, rngs: nnx.Rngs):
        bwe = config.bwe
        if bwe is None:
            raise ConfigError("VocoderWithBWE needs a vocoder config with a 'bwe' section")
        self.config = config
        self.dtype = dtype
        self.input_sampling_rate = bwe.input_sampling_rate
        self.output_sampling_rate = bwe.output_sampling_rate
        if self.output_sampling_rate % self.input_sampling_rate:
            raise ConfigError(f"vocoder.bwe: output rate {self.output_sampling_rate} is not a multiple of the input "
                              f"rate {self.input_sampling_rate}")
        self.ratio = self.output_sampling_rate // self.input_sampling_rate
        self.hop_length = bwe.hop_length
        self.vocoder = Vocoder(config, apply_final_activation=True, param_dtype=param_dtype, dtype=dtype, rngs=rngs)
        self.bwe_generator = Vocoder(bwe, apply_final_activation=False, param_dtype=param_dtype, dtype=dtype,
                                     rngs=rngs)
        if self.bwe_generator.hop != self.ratio * self.hop_length:
            raise ConfigError(f"vocoder.bwe: upsample_rates multiply to {self.bwe_generator.hop}, but the residual "
                              f"must match the skip: {self.ratio} x hop_length {self.hop_length}")
        if bwe.num_mels * 2 != 128:
            raise ConfigError(f"vocoder.bwe.num_mels={bwe.num_mels}: the BWE conv_pre takes 2 x 64 mel channels")
        self.mel_stft = MelSTFT(bwe.n_fft, bwe.hop_length, bwe.num_mels, param_dtype=param_dtype)

    @property
    def hop(self) -> int:
        """Output samples per input mel frame."""
        return self.vocoder.hop * self.ratio

    def stages(self, mel: jax.Array) -> dict[str, jax.Array]:
        """Every intermediate of the forward pass (channels-last waveforms `[B, L, 2]`)."""
        pre = self.vocoder.conv_post_out(mel)
        x = self.vocoder.final_activation(pre)
        b, length, ch = x.shape
        out_len = length * self.output_sampling_rate // self.input_sampling_rate
        rem = length % self.hop_length
        padded = jnp.pad(x, ((0, 0), (0, self.hop_length - rem), (0, 0))) if rem else x
        flat = padded.transpose(0, 2, 1).reshape(b * ch, -1)  # [B * 2, P]
        log_mel = self.mel_stft(flat)  # [B * 2, P / hop, mels]
        gen_in = log_mel.reshape(b, ch, *log_mel.shape[1:])  # [B, 2, frames, mels]
        residual = self.bwe_generator(gen_in)
        taps = jnp.asarray(hann_sinc_filter(self.ratio))
        pad = (taps.shape[0] - 1) // (2 * self.ratio)  # ceil(6 / 0.99) = 7 input samples each side
        skip = upsample_1d(padded, taps, self.ratio, pad, (2 * pad * self.ratio, taps.shape[0] - self.ratio))
        out = jnp.clip(residual + skip, -1.0, 1.0)[:, :out_len]
        return {"conv_post_out": pre, "waveform_16k": x, "waveform_16k_padded": padded, "bwe_generator_in": gen_in,
                "bwe_residual": residual, "bwe_skip": skip, "waveform": out}

    def __call__(self, mel: jax.Array) -> jax.Array:
        """`[B, 2, T, 64]` -> `[B, T * hop, 2]` in [-1, 1]."""
        return self.stages(mel)["waveform"]
