"""The encoders `train-preprocess` runs once per clip: Gemma + connectors for captions, the audio VAE for sound.

Counterpart: ltx-trainer `process_captions.py` (the text encoder and the checkpoint's connectors on each caption;
the connector outputs are what training reads) and `process_videos.py` with audio (the clip's sound track
resampled to the audio VAE's rate, cut to the clip's duration, the log-mel front end and the audio VAE encoder,
then patchified to the DiT's audio tokens).

Audio rules, written once here:
  * the first audio stream of the clip is decoded with PyAV and converted to float stereo at the encoder's
    sampling rate (libswresample; mono is duplicated to both channels);
  * the waveform is cut (or zero-padded) to `round(frames / fps * rate)` samples, the duration of the video
    frames kept by the shape rules;
  * the normalized latent `[8, T', 16]` becomes tokens `[T', 8 * 16]` (`c t f -> t (c f)`, the DiT's audio
    patchifier), and the first `audio_token_count(frames, fps)` tokens are kept (the count a generation of
    that length denoises). A track too short for that count is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ltx_jax.configs import Runtime
from ltx_jax.training.data import DataError

__all__ = ["gemma_captions", "read_audio", "audio_tokens", "clip_audio_encoder"]


def gemma_captions(gemma_folder: str | os.PathLike, checkpoint: str | os.PathLike, runtime: Runtime = Runtime(),
                   batch: int = 8) -> Callable[[Sequence[str]], list[tuple[np.ndarray, np.ndarray]]]:
    """A caption encoder: Gemma (loaded once) + the checkpoint's feature extractor and connectors, as
    `text_encoder.encode_prompts` runs them for a generation. Returns `[(video_context [T, Dv], audio_context
    [T, Da])]` in float32, T = the tokenizer's padded length (1024)."""
    from ltx_jax.text_encoder import load_gemma
    from ltx_jax.text_encoder.prompts import encode_prompts, load_text_embeddings_for

    encoder = load_gemma(gemma_folder, runtime)
    text = load_text_embeddings_for(encoder, checkpoint, runtime)

    def encode(captions: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        captions = list(captions)
        for i in range(0, len(captions), batch):
            for v, a, _ in encode_prompts(encoder, text, captions[i:i + batch]):
                out.append((np.asarray(v[0], np.float32), np.asarray(a[0], np.float32)))
        return out

    return encode


def read_audio(path: str | os.PathLike, rate: int) -> np.ndarray | None:
    """The clip's first audio stream as float32 stereo `[2, samples]` at `rate` Hz, or None without sound."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=int(rate))
        chunks = []
        for frame in container.decode(container.streams.audio[0]):
            frame.pts = None
            chunks += [f.to_ndarray() for f in resampler.resample(frame)]
        chunks += [f.to_ndarray() for f in resampler.resample(None)]
    if not chunks:
        return None
    return np.concatenate(chunks, axis=-1).astype(np.float32)


def audio_tokens(encoder, waveform: np.ndarray, frames: int, fps: float) -> np.ndarray:
    """Tokens `[Ta, C * F]` of a stereo waveform at the encoder's rate for a clip of `frames` at `fps` (rules above)."""
    from ltx_jax.audio_vae import encode_audio, latent_to_tokens
    from ltx_jax.sampling.positions import audio_token_count

    c = encoder.config
    samples = round(frames / fps * c.sampling_rate)
    wave = np.zeros((2, samples), np.float32)
    wave[:, :min(samples, waveform.shape[-1])] = waveform[:, :samples]
    latent = np.asarray(encode_audio(encoder, wave[None], c.sampling_rate), np.float32)  # [1, C, T', F]
    tokens = latent_to_tokens(latent)[0]
    n = audio_token_count(frames, fps, sample_rate=c.sampling_rate, hop_length=c.mel_hop_length)
    if tokens.shape[0] < n:
        raise DataError(f"audio gives {tokens.shape[0]} latent frames; the clip's {frames} frames at {fps} fps "
                        f"need {n}")
    return tokens[:n]


def clip_audio_encoder(encoder) -> Callable[[Path, int, float], np.ndarray | None]:
    """`encode_audio(clip path, frames kept, fps) -> tokens or None` (no audio stream) for `preprocess`."""

    def encode(path: Path, frames: int, fps: float) -> np.ndarray | None:
        wave = read_audio(path, encoder.config.sampling_rate)
        return None if wave is None else audio_tokens(encoder, wave, frames, fps)

    return encode
