"""VAE encode / decode and latent upsampler runs."""

import torch

from ltxref.record import Recorder
from ltx_core.model.upsampler import upsample_video

VAE_PIXELS = (1, 3, 17, 128, 128)  # [B, 3, F, H, W] in [-1, 1] -> latent [B, C, 3, 4, 4]


def draw_decoder_noise(generator: torch.Generator, sample: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Replays the draw `VideoDecoder.forward` makes when timestep_conditioning is on, without consuming it.

    Returns (noise, generator state after the draw). The caller checks the decoder left the generator in exactly
    that state, which proves it drew this noise and nothing else.
    """
    before = generator.get_state()
    noise = torch.randn(sample.size(), generator=generator, dtype=sample.dtype, device=sample.device)
    after = generator.get_state()
    generator.set_state(before)
    return noise, after


def decode(decoder: torch.nn.Module, latent: torch.Tensor, generator: torch.Generator) -> tuple:
    """Untiled decode as `decode_video(latent, decoder, tiling_config=None, generator)` runs it, in float.

    Returns (video, noise or None). `decode_video` would then map to uint8 with ((x+1)/2).clamp(0,1)*255.
    """
    if not decoder.timestep_conditioning:
        before = generator.get_state()
        video = decoder(latent, generator=generator)
        if not torch.equal(before, generator.get_state()):
            raise AssertionError("decoder without timestep conditioning drew random numbers")
        return video, None
    noise, after = draw_decoder_noise(generator, latent)
    video = decoder(latent, generator=generator)
    if not torch.equal(after, generator.get_state()):
        raise AssertionError("decoder drew something other than the recorded noise")
    return video, noise


def run_vae(rec: Recorder, encoder: torch.nn.Module, decoder: torch.nn.Module, g: torch.Generator,
            decode_seed: int) -> None:
    video = rec.add("vae_encode.in.video", torch.rand(VAE_PIXELS, generator=g) * 2.0 - 1.0)
    latent = encoder(video)
    rec.add("vae_encode.out.latent", latent, note="per-channel normalized means")
    z = rec.add("vae_decode.in.latent", torch.randn(latent.shape, generator=g), note="normalized latent")
    out, noise = decode(decoder, z, torch.Generator().manual_seed(decode_seed))
    if noise is not None:
        rec.add("vae_decode.in.noise", noise, note="raw N(0,1) draw; the decoder uses z = noise*0.025 + 0.975*z")
        rec.add("vae_decode.in.timestep", torch.tensor([decoder.decode_timestep], dtype=torch.float32),
                note="decode_timestep default (timestep=None); multiplied by the learned timestep_scale_multiplier")
    rec.add("vae_decode.out.video", out, note="float decoder output, before decode_video's uint8 mapping")


def run_upsamplers(rec: Recorder, encoder: torch.nn.Module, upsamplers: dict[str, torch.nn.Module],
                   g: torch.Generator, channels: int) -> None:
    latent = rec.add("upsampler.in.latent", torch.randn(1, channels, 3, 4, 4, generator=g), note="normalized latent")
    for kind, up in upsamplers.items():
        rec.add(f"upsampler.out.{kind}", up(latent), note="LatentUpsampler(latent), no (un)normalization")
        rec.add(f"upsampler.out.upsample_video_{kind}", upsample_video(latent, encoder, up),
                note="upsample_video: un-normalize -> upsampler -> normalize with the encoder's statistics")
