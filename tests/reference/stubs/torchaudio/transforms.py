"""Torch-only `MelSpectrogram` for the torchaudio stub (see the package docstring). Not torchaudio's code."""

import math

import torch


def _hz_to_mel(f: float, scale: str) -> float:
    if scale == "htk":
        return 2595.0 * math.log10(1.0 + f / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return min_log_mel + math.log(f / min_log_hz) / logstep if f >= min_log_hz else f / f_sp


def _mel_to_hz(m: torch.Tensor, scale: str) -> torch.Tensor:
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(m >= min_log_mel, min_log_hz * torch.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int, norm: str | None,
                   mel_scale: str) -> torch.Tensor:
    """[n_freqs, n_mels] triangular filters (float64 -> float32)."""
    freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    m = torch.linspace(_hz_to_mel(f_min, mel_scale), _hz_to_mel(f_max, mel_scale), n_mels + 2, dtype=torch.float64)
    pts = _mel_to_hz(m, mel_scale)
    diff = pts[1:] - pts[:-1]
    slopes = pts[None, :] - freqs[:, None]
    fb = torch.clamp(torch.minimum(-slopes[:, :-2] / diff[:-1], slopes[:, 2:] / diff[1:]), min=0.0)
    if norm == "slaney":
        fb = fb * (2.0 / (pts[2:n_mels + 2] - pts[:n_mels]))[None, :]
    elif norm is not None:
        raise ValueError(f"norm={norm!r} not implemented in the stub")
    return fb.to(torch.float32)


class MelSpectrogram(torch.nn.Module):
    def __init__(self, sample_rate=16000, n_fft=400, win_length=None, hop_length=None, f_min=0.0, f_max=None,
                 pad=0, n_mels=128, window_fn=torch.hann_window, power=2.0, normalized=False, wkwargs=None,
                 center=True, pad_mode="reflect", onesided=None, norm=None, mel_scale="htk"):
        super().__init__()
        if pad or normalized or wkwargs or onesided is False:
            raise NotImplementedError("torchaudio stub: pad/normalized/wkwargs/onesided=False are not implemented")
        self.n_fft = n_fft
        self.win_length = win_length or n_fft
        self.hop_length = hop_length or self.win_length // 2
        self.power, self.center, self.pad_mode = power, center, pad_mode
        self.register_buffer("window", window_fn(self.win_length))
        f_max = f_max if f_max is not None else float(sample_rate // 2)
        self.register_buffer("fb", mel_filterbank(n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate, norm, mel_scale))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        shape = waveform.shape
        x = waveform.reshape(-1, shape[-1])
        spec = torch.stft(x, self.n_fft, self.hop_length, self.win_length, self.window, center=self.center,
                          pad_mode=self.pad_mode, normalized=False, onesided=True, return_complex=True)
        spec = spec.abs().pow(self.power)
        mel = torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)
        return mel.reshape(*shape[:-1], *mel.shape[-2:])
