"""Stand-in for torchaudio in the reference environment.

PyPI's torchaudio is a CUDA build that fails to load beside CPU torch. ltx-core 1.0.0 imports it at
module level and uses it only for audio *encoding*: `AudioProcessor` builds a
`torchaudio.transforms.MelSpectrogram` and, for input at another rate, calls `torchaudio.functional.resample`.

`transforms.MelSpectrogram` here is a torch-only re-implementation, NOT torchaudio's code: `torch.stft`
(window `window_fn(win_length)`, `center`, `pad_mode`, onesided), `|X| ** power`, then a triangular mel
filterbank (slaney or htk scale, optional slaney norm; filterbank built as torchaudio's `melscale_fbanks`
documents it, in float64 and cast to float32). It implements the argument set ltx-core passes. Anything else
(e.g. `functional.resample`, any other attribute) raises, so an accidental use is loud.
"""

from torchaudio import transforms  # noqa: F401


def __getattr__(name):
    raise ImportError(f"torchaudio is stubbed in the reference environment (asked for torchaudio.{name})")
