"""Stand-in for torchaudio in the reference environment.

PyPI's torchaudio is a CUDA build that fails to load beside CPU torch. ltx-core 1.0.0 imports it at
module level but only uses it for audio *encoding* (mel spectrograms), which the fixtures never run.
Any attribute access raises, so an accidental use is loud.
"""


def __getattr__(name):
    raise ImportError(f"torchaudio is stubbed in the reference environment (asked for torchaudio.{name})")
