"""Audio conditioning input of the audio-to-video pipeline: read a file's audio track, encode it to tokens.

Counterparts: ltx_pipelines `utils/media_io.py` (`decode_audio_from_file`) and the audio part of
`a2vid_two_stage.py` (`A2VidPipelineTwoStage.__call__`: `encode_audio` with the audio VAE encoder, which
resamples to the encoder's 16 kHz, then the latent cut to `AudioLatentShape.from_duration(frames / fps)` frames).

`read_audio` follows `decode_audio_from_file`: seek to `start_time`, decode frames from the first one that ends
at or after it until the first that starts after `start_time + max_duration` (or the stream's end), samples as
float32 `[channels, samples]` in [-1, 1] (integer formats divided by 2^(bits - 1), interleaved ones
de-interleaved), then drop the `round((start_time - first frame time) * rate)` leading samples and keep at most
`round(max_duration * rate)`. The sample rate is the file's own (no resampling here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["AudioInput", "read_audio", "audio_tokens"]

_INT_SCALE = {"s16": 2.0 ** 15, "s16p": 2.0 ** 15, "s32": 2.0 ** 31, "s32p": 2.0 ** 31}


@dataclass(frozen=True, eq=False)
class AudioInput:
    """An input waveform: float32 `[channels, samples]` in [-1, 1] at `sample_rate` Hz."""

    waveform: np.ndarray
    sample_rate: int

    @property
    def seconds(self) -> float:
        return self.waveform.shape[-1] / self.sample_rate


def _frame_to_float(frame) -> np.ndarray:
    """One decoded PyAV frame -> float32 `[channels, samples]`."""
    fmt = frame.format.name
    arr = frame.to_ndarray().astype(np.float32)
    if fmt in _INT_SCALE:
        arr = arr / np.float32(_INT_SCALE[fmt])
    if not frame.format.is_planar:  # interleaved: [1, samples * channels]
        arr = arr.reshape(-1, len(frame.layout.channels)).T
    return arr


def read_audio(path: str | Path, start_time: float = 0.0, max_duration: float | None = None) -> AudioInput:
    """The audio track of `path` from `start_time` for at most `max_duration` seconds (None: to the end).

    Raises:
        MediaError: no such file, unreadable, no audio stream, or nothing decoded in the window.
    """
    import av

    from ltx_jax.pipelines.media import MediaError
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"audio {path}: no such file")
    if start_time < 0 or (max_duration is not None and not max_duration > 0):
        raise MediaError(f"audio {path}: start time {start_time} must be >= 0 and max duration {max_duration} > 0")
    try:
        container = av.open(str(path))
    except Exception as e:  # noqa: BLE001 - any demuxer failure means the same to the user
        raise MediaError(f"audio {path}: cannot be opened ({type(e).__name__}: {e})") from None
    try:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise MediaError(f"audio {path}: the file has no audio stream")
        rate, base = stream.rate, stream.time_base
        if max_duration:
            end_time = start_time + max_duration
        elif stream.duration is not None:
            end_time = float(stream.duration * base)
        else:
            end_time = float("inf")
        container.seek(int(start_time / base), stream=stream)
        pieces, first = [], None
        for frame in container.decode(audio=0):
            if frame.pts is None:
                continue
            t = float(frame.pts * base)
            if t + frame.samples / frame.sample_rate < start_time:
                continue
            if t > end_time:
                break
            first = t if first is None else first
            pieces.append(_frame_to_float(frame))
    finally:
        container.close()
    if not pieces:
        raise MediaError(f"audio {path}: no audio decoded from {start_time} s (stream shorter than the start?)")
    wave = np.concatenate(pieces, axis=-1)
    skip = round((start_time - first) * rate)
    if skip > 0:
        wave = wave[..., skip:]
    if max_duration is not None:
        wave = wave[..., :round(max_duration * rate)]
    return AudioInput(np.ascontiguousarray(wave, np.float32), int(rate))


def audio_tokens(encoder, audio: AudioInput, frames: int, fps: float) -> np.ndarray:
    """Encode `audio` (resampled to the encoder's rate) and cut it to the video's audio length: tokens
    `[1, T, C * F]` (`b c t f -> b t (c f)`), T = round(frames / fps * 25).

    Raises:
        ValueError: the audio does not have the encoder's channel count, or is shorter than the video.
    """
    from ltx_jax.audio_vae import encode_audio, latent_to_tokens
    from ltx_jax.sampling import audio_token_count
    channels = encoder.config.in_channels
    if audio.waveform.ndim != 2 or audio.waveform.shape[0] != channels:
        raise ValueError(f"audio of shape {audio.waveform.shape} [channels, samples]: the audio encoder takes "
                         f"{channels} channels (as ltx-core's; convert it, e.g. ffmpeg -ac {channels})")
    tokens = audio_token_count(frames, fps)
    latent = np.asarray(encode_audio(encoder, audio.waveform[None], audio.sample_rate), np.float32)  # [1, C, T', F]
    if latent.shape[2] < tokens:
        raise ValueError(f"audio of {audio.seconds:.3f} s encodes to {latent.shape[2]} latent frames; the video "
                         f"({frames} frames at {fps} fps) needs {tokens}: give a longer audio or fewer frames")
    return latent_to_tokens(latent[:, :, :tokens])
