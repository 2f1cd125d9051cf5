"""Mel-to-waveform generators: LTX-2's HiFi-GAN style (`resblock "1"`) and LTX-2.3's BigVGAN-v2 style (`AMP1`).

Counterpart: ltx_core `model/audio_vae/vocoder.py` (`Vocoder`, `AMPBlock1`) and `resnet.py` (`ResBlock1`).

Input is the official `[B, 2, T, mels]` log-mel; it becomes `[B, T, 2 * mels]` with channel = stereo * mels + mel
(conv_pre has 128 inputs: 2 channels x 64 mels). Output is channels-last `[B, L, 2]`, L = T * prod(rates).
Each stage: (leaky ReLU 0.1 for HiFi-GAN) -> transposed conv (x rate) -> the mean of the stage's resblocks.
Then `act_post` (LeakyReLU with torch's default slope 0.01, or an anti-aliased SnakeBeta), `conv_post`, and
tanh or clamp(-1, 1) when the final activation is on.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.audio_vae.resample import Activation1d, Conv1d, ConvTranspose1d
from ltx_jax.configs import ConfigError, VocoderConfig

__all__ = ["Vocoder", "ResBlock1", "AMPBlock1", "STEREO", "check_generator_config"]

STEREO = 2
MEL_INPUT_CHANNELS = 128  # hard-coded in ltx-core's conv_pre: 2 stereo channels x 64 mel bins
LRELU_SLOPE = 0.1
ACT_POST_SLOPE = 0.01  # torch.nn.LeakyReLU() default


def check_generator_config(c: VocoderConfig, name: str = "vocoder") -> None:
    if len(c.upsample_rates) != len(c.upsample_kernel_sizes):
        raise ConfigError(f"{name}: {len(c.upsample_rates)} upsample_rates but {len(c.upsample_kernel_sizes)} kernels")
    if len(c.resblock_kernel_sizes) != len(c.resblock_dilation_sizes):
        raise ConfigError(f"{name}: resblock_kernel_sizes and resblock_dilation_sizes differ in length")
    if any(len(d) != 3 for d in c.resblock_dilation_sizes):
        raise ConfigError(f"{name}: every resblock needs exactly 3 dilations (got {c.resblock_dilation_sizes})")
    if any(k % 2 == 0 for k in c.resblock_kernel_sizes):
        raise ConfigError(f"{name}: even resblock kernel sizes {c.resblock_kernel_sizes} change the length")
    if c.upsample_initial_channel // 2 ** len(c.upsample_rates) < 1:
        raise ConfigError(f"{name}: upsample_initial_channel={c.upsample_initial_channel} halves to 0 channels over "
                          f"{len(c.upsample_rates)} stages")


def _same(kernel: int, dilation: int) -> tuple[int, int]:
    """torch `padding="same"`: total d (k - 1), the smaller half on the left."""
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2


class ResBlock1(nnx.Module):
    """Three (leaky 0.1 -> dilated conv -> leaky 0.1 -> conv) pairs, each with a residual ("same" padding)."""

    def __init__(self, channels: int, kernel: int, dilations, *, param_dtype, rngs):
        self.convs1 = nnx.List([Conv1d(channels, channels, kernel, dilation=d, padding=_same(kernel, d),
                                       param_dtype=param_dtype, rngs=rngs) for d in dilations])
        self.convs2 = nnx.List([Conv1d(channels, channels, kernel, padding=_same(kernel, 1), param_dtype=param_dtype,
                                       rngs=rngs) for _ in dilations])

    def __call__(self, x: jax.Array) -> jax.Array:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(jax.nn.leaky_relu(c1(jax.nn.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class AMPBlock1(nnx.Module):
    """Three (Activation1d -> dilated conv -> Activation1d -> conv) pairs, each with a residual."""

    def __init__(self, channels: int, kernel: int, dilations, *, param_dtype, rngs):
        pad = lambda d: ((kernel * d - d) // 2,) * 2  # noqa: E731  (ltx-core get_padding)
        self.convs1 = nnx.List([Conv1d(channels, channels, kernel, dilation=d, padding=pad(d), param_dtype=param_dtype,
                                       rngs=rngs) for d in dilations])
        self.convs2 = nnx.List([Conv1d(channels, channels, kernel, padding=pad(1), param_dtype=param_dtype, rngs=rngs)
                                for _ in dilations])
        self.acts1 = nnx.List([Activation1d(channels, param_dtype=param_dtype) for _ in dilations])
        self.acts2 = nnx.List([Activation1d(channels, param_dtype=param_dtype) for _ in dilations])

    def __call__(self, x: jax.Array) -> jax.Array:
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, self.acts1, self.acts2):
            x = x + c2(a2(c1(a1(x))))
        return x


class Vocoder(nnx.Module):
    """One generator (`Vocoder`): `[B, 2, T, mels]` log-mel -> `[B, T * prod(rates), 2]` waveform."""

    def __init__(self, config: VocoderConfig, *, apply_final_activation: bool = True, param_dtype=jnp.float32,
                 dtype=jnp.float32, rngs: nnx.Rngs):
        check_generator_config(config)
        self.config = config
        self.dtype = dtype
        self.is_amp = config.resblock == "AMP1"
        self.apply_final_activation = apply_final_activation
        self.rates = tuple(config.upsample_rates)
        ch0 = config.upsample_initial_channel
        self.conv_pre = Conv1d(MEL_INPUT_CHANNELS, ch0, 7, padding=(3, 3), param_dtype=param_dtype, rngs=rngs)
        self.ups = nnx.List([
            ConvTranspose1d(ch0 // 2**i, ch0 // 2 ** (i + 1), k, s, (k - s) // 2, param_dtype=param_dtype, rngs=rngs)
            for i, (s, k) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes))])
        block = AMPBlock1 if self.is_amp else ResBlock1
        self.num_kernels = len(config.resblock_kernel_sizes)
        self.resblocks = nnx.List([
            block(ch0 // 2 ** (i + 1), k, d, param_dtype=param_dtype, rngs=rngs)
            for i in range(len(config.upsample_rates))
            for k, d in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes)])
        final = ch0 // 2 ** len(config.upsample_rates)
        self.act_post = Activation1d(final, param_dtype=param_dtype) if self.is_amp else None
        self.conv_post = Conv1d(final, STEREO, 7, padding=(3, 3), bias=config.use_bias_at_final,
                                param_dtype=param_dtype, rngs=rngs)

    @property
    def hop(self) -> int:
        """Output samples per mel frame."""
        out = 1
        for r in self.rates:
            out *= r
        return out

    def conv_post_out(self, mel: jax.Array) -> jax.Array:
        """`[B, 2, T, mels]` -> conv_post output `[B, L, 2]` (before tanh / clamp)."""
        b, s, t, m = mel.shape
        if s * m != MEL_INPUT_CHANNELS:
            raise ValueError(f"vocoder input {mel.shape}: needs 2 stereo channels x 64 mel bins ([B, 2, T, 64])")
        x = mel.astype(self.dtype).transpose(0, 2, 1, 3).reshape(b, t, s * m)  # channel = stereo * mels + mel
        x = self.conv_pre(x)
        for i, up in enumerate(self.ups):
            if not self.is_amp:
                x = jax.nn.leaky_relu(x, LRELU_SLOPE)
            x = up(x)
            blocks = [self.resblocks[j] for j in range(i * self.num_kernels, (i + 1) * self.num_kernels)]
            x = sum(rb(x) for rb in blocks) / len(blocks)
        x = self.act_post(x) if self.is_amp else jax.nn.leaky_relu(x, ACT_POST_SLOPE)
        return self.conv_post(x)

    def final_activation(self, x: jax.Array) -> jax.Array:
        if self.apply_final_activation:
            x = jnp.tanh(x) if self.config.use_tanh_at_final else jnp.clip(x, -1.0, 1.0)
        return x

    def stages(self, mel: jax.Array) -> dict[str, jax.Array]:
        """{"conv_post_out", "waveform"} (channels-last `[B, L, 2]`)."""
        x = self.conv_post_out(mel)
        return {"conv_post_out": x, "waveform": self.final_activation(x)}

    def __call__(self, mel: jax.Array) -> jax.Array:
        """`[B, 2, T, mels]` -> `[B, T * hop, 2]`."""
        return self.final_activation(self.conv_post_out(mel))
