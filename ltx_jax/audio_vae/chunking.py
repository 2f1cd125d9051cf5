"""Decoding long audio in fixed-size windows whose seams are exact.

No ltx_core counterpart (ltx-core decodes the whole latent at once); the result equals `decode_audio`'s
within float32 rounding.

**Audio VAE decoder** (causal in time). A decoded mel row depends only on latent rows at or before it, at most
`R` rows back, where `R` is bounded by counting every causal 3-tap convolution as 2 latent rows (convolutions
at the upsampled rates see fewer) plus one row per nearest-neighbour upsampling and one for the `4a - 3` seam.
A window of latent rows `[s, s + W)` gives mel rows `4s .. 4(s + W) - 4` (the decoder's 4T - 3, shifted by
4s); of these, the window for latent chunk `[a, b)` keeps the rows `4a - 3 .. 4b - 4` (0 .. 4b - 4 for the first
chunk), which need latent rows `a - 1 - R .. b - 1`, all inside the window when `s <= a - R - 1`.

**Vocoder** (non-causal, bounded support). An output sample depends on mel frames within `rho` frames on
either side; `vocoder_context` bounds `rho` from the layer list (kernel radii and dilations, anti-aliasing
filters, the BWE's STFT window, its generator and its resampler). Each window carries that context on both
sides, so replicate/zero padding at a window edge never reaches the kept samples. For the BWE the window start
must keep the STFT frame grid: a multiple of `hop / gcd(hop, stage-1 samples per mel frame)` mel frames. The
last window is moved back to end at the true end, where the pad-to-hop and the final crop act as in one pass.

All windows have one shape, so each stage compiles once for any length.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["decoder_context", "vocoder_context", "decode_mel_chunked", "vocode_chunked"]


def decoder_context(decoder) -> int:
    """Latent rows of causal context that make a decoder window exact (a bound, see the module docstring)."""
    c = decoder.config
    convs = 1 + 4 + len(c.ch_mult) * (c.num_res_blocks + 1) * 2 + (len(c.ch_mult) - 1) + 1
    return 2 * convs + (len(c.ch_mult) - 1) + 1


def _generator_radius(gen) -> float:
    """Bound on a generator's one-sided support, in its input frames."""
    c = gen.config
    frames, rate = 3.0, 1  # conv_pre k=7
    act = 8.0 if gen.is_amp else 0.0  # one anti-aliased activation: 12-tap filters at 2x, both ways
    for r, k in zip(c.upsample_rates, c.upsample_kernel_sizes):
        frames += math.ceil(k / r) / rate
        rate *= r
        block = max(sum((kk - 1) // 2 * d + (kk - 1) // 2 + 2 * act for d in dil)
                    for kk, dil in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes))
        frames += block / rate
    return frames + (3 + act) / rate


def vocoder_context(vocoder) -> tuple[int, int]:
    """(context mel frames on each side, window alignment in mel frames)."""
    from ltx_jax.audio_vae.bwe import VocoderWithBWE
    if not isinstance(vocoder, VocoderWithBWE):
        return math.ceil(_generator_radius(vocoder)) + 1, 1
    stage1 = vocoder.vocoder.hop
    bwe = vocoder.config.bwe
    skip_radius = 8  # the x3 Hann-sinc skip: 43 taps over 3x, 7 input samples each side
    samples = bwe.n_fft + _generator_radius(vocoder.bwe_generator) * bwe.hop_length + skip_radius + bwe.hop_length
    rho = _generator_radius(vocoder.vocoder) + samples / stage1
    return math.ceil(rho) + 1, bwe.hop_length // math.gcd(bwe.hop_length, stage1)


def decode_mel_chunked(decoder, latent, chunk: int, run) -> np.ndarray:
    """Latent `[B, z, T, F]` -> mel `[B, 2, 4T - 3, mels]` (host float32) in windows of `chunk` + context rows."""
    from ltx_jax.audio_vae.model import mel_frames_for_latents
    latent = np.asarray(latent)
    t = latent.shape[2]
    c = decoder.config
    context = decoder_context(decoder)
    window = chunk + context + 1
    if c.causality_axis != "height" or len(c.ch_mult) != 3 or t <= window:
        return np.asarray(run(decoder, latent), np.float32)  # whole (the exact-seam rule needs 4x causal time)
    mel = None  # [B, 2, 4T - 3, mels], allocated once on the host from the first window's shape
    for a in range(0, t, chunk):
        b = min(a + chunk, t)
        start = min(max(0, a - context - 1), t - window)
        out = np.asarray(run(decoder, latent[:, :, start: start + window]), np.float32)
        if mel is None:
            mel = np.empty((out.shape[0], out.shape[1], mel_frames_for_latents(t), out.shape[3]), np.float32)
        lo, hi = max(0, 4 * a - 3), 4 * b - 3  # global mel rows kept
        mel[:, :, lo:hi] = out[:, :, lo - 4 * start: hi - 4 * start]
        del out
    return mel


def vocode_chunked(vocoder, mel, chunk: int, run) -> np.ndarray:
    """Mel `[B, 2, M, 64]` -> waveform float32 `[B, 2, M * hop]` (host), in windows of `chunk` + 2 x context frames."""
    mel = np.asarray(mel)
    m = mel.shape[2]
    context, align = vocoder_context(vocoder)
    chunk = max(align, chunk - chunk % align)
    context += (-context) % align
    window = chunk + 2 * context + align
    window += (m - window) % align  # so the last window, ending at m, starts on the grid
    if m <= window:
        return np.moveaxis(np.asarray(run(vocoder, mel), np.float32), -1, 1)
    hop = vocoder.hop
    wave = None  # [B, 2, M * hop], allocated once on the host; each window's kept samples are copied in
    for a in range(0, m, chunk):
        b = min(a + chunk, m)
        start = max(0, a - context)
        start = min(start - start % align, m - window)
        out = np.asarray(run(vocoder, mel[:, :, start: start + window]), np.float32)  # [B, window * hop, 2]
        if wave is None:
            wave = np.empty((out.shape[0], out.shape[2], m * hop), np.float32)
        wave[:, :, a * hop: b * hop] = np.moveaxis(out[:, (a - start) * hop: (b - start) * hop], -1, 1)
        del out
    return wave
