"""The audio fixture's official components, weights and recorded runs (docs/reference-fixtures-audio.md).

Components are the three the official `ModelLedger` builds from one file: audio VAE decoder, audio VAE
encoder (both with the shared `audio_vae.per_channel_statistics.*`) and the vocoder (`vocoder.*`, one prefix
stripped). Weights are seeded per tensor; the anti-aliasing filters keep the value the module computes
(rounded to bf16, as the released bf16 files hold them); the BWE's `mel_stft` buffers are tacotron-style
DFT x periodic-Hann rows, a slaney mel filterbank and a pseudo-inverse, rounded to bf16.
"""

import math
import zlib

import numpy as np
import torch

from ltxref.components import Component, _prefix_map
from ltxref.stft_numpy import dft_bases, slaney_mel_filterbank
from ltx_core.model.audio_vae import (
    AUDIO_VAE_DECODER_COMFY_KEYS_FILTER,
    AUDIO_VAE_ENCODER_COMFY_KEYS_FILTER,
    VOCODER_COMFY_KEYS_FILTER,
    AudioDecoderConfigurator,
    AudioEncoderConfigurator,
    VocoderConfigurator,
)
from ltx_core.model.audio_vae.vocoder import VocoderWithBWE

AUDIO_FILE = "audio_checkpoint.safetensors"
STATS = "audio_vae.per_channel_statistics."
CONV_POST_STD = 0.25  # stage-1 (or LTX-2) conv_post output std after calibration
BWE_POST_STD = 0.08  # BWE generator output std after calibration

AUDIO_DECODER = Component("audio_vae_decoder", AudioDecoderConfigurator, AUDIO_VAE_DECODER_COMFY_KEYS_FILTER,
                          AUDIO_FILE, _prefix_map({"per_channel_statistics.": STATS}, default="audio_vae.decoder."))
AUDIO_ENCODER = Component("audio_vae_encoder", AudioEncoderConfigurator, AUDIO_VAE_ENCODER_COMFY_KEYS_FILTER,
                          AUDIO_FILE, _prefix_map({"per_channel_statistics.": STATS}, default="audio_vae.encoder."))
VOCODER = Component("vocoder", VocoderConfigurator, VOCODER_COMFY_KEYS_FILTER, AUDIO_FILE,
                    _prefix_map({}, default="vocoder."))
AUDIO_COMPONENTS = (AUDIO_DECODER, AUDIO_ENCODER, VOCODER)


def checkpoint_config(preset: dict) -> dict:
    return {"audio_vae": preset["audio_vae"], "vocoder": preset["vocoder"]}


def _generator(seed: int, key: str) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % (2**63))


def _bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).to(torch.float32)


def init_tensor(key: str, shape: tuple[int, ...], seed: int, real_module: torch.nn.Module, module_key: str,
                transposed: bool) -> torch.Tensor:
    g = _generator(seed, key)
    leaf = key.rsplit(".", 1)[-1]

    def randn() -> torch.Tensor:
        return torch.randn(shape, generator=g, dtype=torch.float32)

    if leaf == "filter":  # kaiser-sinc anti-aliasing filters: the module's own value, bf16-rounded
        return _bf16(real_module.get_buffer(module_key).detach().clone())
    if leaf == "std-of-means":
        return 0.5 + torch.rand(shape, generator=g)
    if leaf == "mean-of-means":
        return 0.1 * randn()
    if leaf in ("alpha", "beta"):  # SnakeBeta log-scale parameters
        return 0.2 * randn()
    if leaf == "weight" and len(shape) >= 2:
        if transposed:  # ConvTranspose1d [in, out, k] with stride s: keep the output O(1)
            stride = real_module.get_submodule(module_key.rsplit(".", 1)[0]).stride[0]
            return randn() / math.sqrt(shape[0] * shape[2] / stride)
        return randn() / math.sqrt(math.prod(shape[1:]))
    if leaf == "bias" and len(shape) == 1:
        return 0.05 * randn()
    raise ValueError(f"no init rule for {key!r} with shape {shape}")


def mel_stft_buffers(bwe: dict) -> dict[str, torch.Tensor]:
    """`vocoder.mel_stft.*` for the BWE config (plausible values, bf16-rounded; never the released ones)."""
    n_fft, sr = bwe["n_fft"], bwe["input_sampling_rate"]
    forward, inverse = dft_bases(n_fft)
    mel = slaney_mel_filterbank(sr, n_fft, bwe["num_mels"], 0.0, sr / 2)
    out = {"mel_stft.mel_basis": mel, "mel_stft.stft_fn.forward_basis": forward,
           "mel_stft.stft_fn.inverse_basis": inverse}
    return {k: _bf16(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))) for k, v in out.items()}


def build_real(component: Component, config: dict) -> torch.nn.Module:
    return component.configurator.from_config(config).eval()


def generate_state_dict(preset: dict, seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.nn.Module]]:
    """({file key: float32 tensor}, {component name: real module with those weights loaded})."""
    cfg = checkpoint_config(preset)
    tensors: dict[str, torch.Tensor] = {}
    modules = {}
    for comp in AUDIO_COMPONENTS:
        module = build_real(comp, cfg)
        sd = module.state_dict()
        transposed = {f"{n}.weight" for n, m in module.named_modules() if isinstance(m, torch.nn.ConvTranspose1d)}
        extra = mel_stft_buffers(preset["vocoder"]["bwe"]) if isinstance(module, VocoderWithBWE) else {}
        for k, v in sd.items():
            fk = comp.to_file_key(k)
            if fk in tensors:  # shared statistics
                continue
            if k in extra:
                tensors[fk] = extra[k]
            else:
                tensors[fk] = init_tensor(fk, tuple(v.shape), seed, module, k, k in transposed).contiguous()
        module.load_state_dict({k: tensors[comp.to_file_key(k)] for k in sd}, strict=True)
        modules[comp.name] = module
    return tensors, modules


def _stage1(vocoder: torch.nn.Module) -> torch.nn.Module:
    return vocoder.vocoder if isinstance(vocoder, VocoderWithBWE) else vocoder


def _conv_post_out(generator: torch.nn.Module, mel: torch.Tensor) -> torch.Tensor:
    out = {}
    h = generator.conv_post.register_forward_hook(lambda m, i, o: out.setdefault("y", o))
    try:
        generator(mel)
    finally:
        h.remove()
    return out["y"]


def calibrate(tensors: dict[str, torch.Tensor], modules: dict[str, torch.nn.Module], preset: dict,
              seed: int) -> dict[str, float]:
    """Rescales the vocoders' final conv so outputs have a plausible level on this fixture's own decoded mel:
    stage-1 / LTX-2 conv_post output std 0.25, BWE generator output std 0.08. Returns the scales."""
    decoder, vocoder = modules["audio_vae_decoder"], modules["vocoder"]
    g = torch.Generator().manual_seed(5000 + seed)
    t = max(preset["latent_lengths"])
    latent = torch.randn(1, 8, t, 16, generator=g)
    mel = decoder(latent)
    scales = {}
    stage1 = _stage1(vocoder)
    prefix = "vocoder.vocoder." if isinstance(vocoder, VocoderWithBWE) else "vocoder."
    s = CONV_POST_STD / float(_conv_post_out(stage1, mel).std())
    scales[prefix + "conv_post"] = s
    for leaf in ("weight", "bias"):
        if prefix + "conv_post." + leaf in tensors:
            tensors[prefix + "conv_post." + leaf] = tensors[prefix + "conv_post." + leaf] * s
    if isinstance(vocoder, VocoderWithBWE):
        stage1.conv_post.weight.data *= s
        x = stage1(mel)
        rem = x.shape[-1] % vocoder.hop_length
        if rem:
            x = torch.nn.functional.pad(x, (0, vocoder.hop_length - rem))
        residual = vocoder.bwe_generator(vocoder._compute_mel(x).transpose(2, 3))
        s2 = BWE_POST_STD / float(residual.std())
        scales["vocoder.bwe_generator.conv_post"] = s2
        tensors["vocoder.bwe_generator.conv_post.weight"] = tensors["vocoder.bwe_generator.conv_post.weight"] * s2
    return scales
