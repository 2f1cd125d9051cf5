"""Video VAE: parity with the official encoder / decoder (3 seeds x both tiny layouts), the module state
against the official key schema, strict loading, and the size rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from flax import nnx

from ltx_jax.configs import LTX_2, LTX_2_3, LTX_2_3_TINY, LTX_2_TINY, Runtime
from ltx_jax.checkpoint.layout import LoadError, module_keys
from ltx_jax.checkpoint.schema import vae_decoder_schema, vae_encoder_schema
from ltx_jax.parity import run_parity
from ltx_jax.types import VideoLatentShape, VideoPixelShape, VideoShapeError, check_video_shape
from ltx_jax.video_vae import VideoDecoder, VideoEncoder, load_video_decoder, load_video_encoder
from ltx_jax.video_vae.ops import depth_to_space, patchify, space_to_depth, unpatchify

F32 = Runtime(param_dtype="float32", compute_dtype="float32")


@pytest.mark.reference
def test_vae_parity(reference_seeds):
    report = run_parity(reference_seeds, only="^vae$")
    assert set(report.arrays) == {"vae_encode.out.latent", "vae_decode.out.video"}
    for name, a in report.arrays.items():
        assert a["max_rel_err"] <= 2e-5, (name, a)


def _module_schema(module_cls, config, prefix: str) -> dict[str, tuple[int, ...]]:
    state = nnx.state(nnx.eval_shape(lambda: module_cls(config, F32, rngs=nnx.Rngs(0))))
    keys = {prefix + k: shape for k, (_, shape, _) in module_keys(state).items()}
    stats = {k: v for k, v in keys.items() if ".per_channel_statistics." in k}
    assert sorted(stats) == [prefix + "per_channel_statistics.mean-of-means",
                             prefix + "per_channel_statistics.std-of-means"]
    return {k: v for k, v in keys.items() if k not in stats}


@pytest.mark.parametrize("config", [LTX_2.vae, LTX_2_3.vae, LTX_2_TINY.vae, LTX_2_3_TINY.vae,
                                    dataclasses.replace(LTX_2.vae, timestep_conditioning=True)],
                         ids=["ltx2", "ltx23", "ltx2-tiny", "ltx23-tiny", "ltx2-conditioned"])
def test_module_state_is_the_official_layout(config):
    """Every variable maps to exactly the official key and shape (built abstractly: no allocation)."""
    assert _module_schema(VideoEncoder, config, "vae.encoder.") == vae_encoder_schema(config)
    assert _module_schema(VideoDecoder, config, "vae.decoder.") == vae_decoder_schema(config)


def _tiny_tensors(config) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = {**vae_encoder_schema(config), **vae_decoder_schema(config),
              "vae.per_channel_statistics.mean-of-means": (config.latent_channels,),
              "vae.per_channel_statistics.std-of-means": (config.latent_channels,),
              "vae.per_channel_statistics.mean-of-stds": (config.latent_channels,)}  # extra: ignored, as ltx-core
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def test_loading_is_strict():
    config = LTX_2_3_TINY.vae
    tensors = _tiny_tensors(config)
    dec = load_video_decoder(tensors, F32, config=config)
    np.testing.assert_array_equal(dec.conv_in.conv.weight[...], tensors["vae.decoder.conv_in.conv.weight"])
    np.testing.assert_array_equal(dec.per_channel_statistics.std_of_means[...],
                                  tensors["vae.per_channel_statistics.std-of-means"])
    missing = {k: v for k, v in tensors.items() if k != "vae.encoder.conv_out.conv.bias"}
    with pytest.raises(LoadError, match="1 missing: vae.encoder.conv_out.conv.bias"):
        load_video_encoder(missing, F32, config=config)
    with pytest.raises(LoadError, match="unexpected: vae.decoder.extra"):
        load_video_decoder({**tensors, "vae.decoder.extra": np.zeros(1, np.float32)}, F32, config=config)
    bad = {**tensors, "vae.encoder.conv_in.conv.weight": np.zeros((1, 48, 3, 3, 3), np.float32)}
    with pytest.raises(LoadError, match="wrong shape"):
        load_video_encoder(bad, F32, config=config)


def test_channel_orders():
    """patchify packs (colour, w offset, h offset); space-to-depth packs (c, t, h, w): official einops orders."""
    x = np.arange(2 * 1 * 8 * 8 * 3, dtype=np.float32).reshape(2, 1, 8, 8, 3)
    p = np.asarray(patchify(x, 4))
    # channel index c*16 + r*4 + q holds pixel (h = 4i + q, w = 4j + r)
    assert p[1, 0, 1, 0, 2 * 16 + 3 * 4 + 1] == x[1, 0, 4 + 1, 0 + 3, 2]
    np.testing.assert_array_equal(unpatchify(p, 4), x)
    y = np.arange(1 * 4 * 4 * 6 * 2, dtype=np.float32).reshape(1, 4, 4, 6, 2)
    s = np.asarray(space_to_depth(y, (2, 2, 2)))
    assert s[0, 1, 0, 2, 1 * 8 + 1 * 4 + 0 * 2 + 1] == y[0, 2 + 1, 0, 4 + 1, 1]
    np.testing.assert_array_equal(depth_to_space(s, (2, 2, 2)), y)


def test_size_rules():
    check_video_shape(17, 64, 96)
    with pytest.raises(VideoShapeError, match=r"1 \+ 8k .* got 16 \(nearest valid: 9 or 17\)"):
        check_video_shape(16, 64, 64)
    with pytest.raises(VideoShapeError, match=r"width must be a positive multiple of 32; got 100"):
        check_video_shape(9, 64, 100)
    with pytest.raises(VideoShapeError, match="height must be a positive multiple of 64; got 96"):
        check_video_shape(9, 96, 128, spatial_multiple=64)
    assert VideoPixelShape(1, 121, 512, 768).to_latent(128) == VideoLatentShape(1, 16, 16, 24, 128)
    assert VideoLatentShape(1, 16, 16, 24, 128).to_pixels() == VideoPixelShape(1, 121, 512, 768)


def test_encoder_refuses_bad_frame_count():
    from ltx_jax.video_vae.codec import encode
    enc = nnx.eval_shape(lambda: VideoEncoder(LTX_2_TINY.vae, F32, rngs=nnx.Rngs(0)))
    with pytest.raises(VideoShapeError, match="frame count"):
        encode(enc, np.zeros((1, 12, 64, 64, 3), np.float32))


def test_decoder_noise_rules():
    from ltx_jax.video_vae.codec import decode
    latent = np.zeros((1, 2, 1, 1, 16), np.float32)
    conditioned = nnx.eval_shape(lambda: VideoDecoder(LTX_2_3_TINY.vae, F32, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="pass noise"):
        decode(conditioned, latent)
    plain = nnx.eval_shape(lambda: VideoDecoder(LTX_2_TINY.vae, F32, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="takes no noise"):
        decode(plain, latent, noise=latent)


@pytest.mark.reference
def test_bfloat16_runtime_stays_close(reference):
    """bf16 weights and activations (norms and the tiled blend in float32) against the float32 reference."""
    import jax.numpy as jnp

    from ltx_jax.video_vae.codec import decode, encode
    bf16 = Runtime(param_dtype="bfloat16", compute_dtype="bfloat16")
    fx = np.load(reference / "fixtures.npz")
    cl = lambda a: np.moveaxis(a, 1, -1)  # noqa: E731
    enc = load_video_encoder(reference / "ltx_checkpoint.safetensors", bf16)
    dec = load_video_decoder(reference / "ltx_checkpoint.safetensors", bf16)
    latent = encode(enc, cl(fx["vae_encode.in.video"]))
    kwargs = dict(noise=cl(fx["vae_decode.in.noise"]), timestep=fx["vae_decode.in.timestep"]) \
        if dec.timestep_conditioning else {}
    video = decode(dec, cl(fx["vae_decode.in.latent"]), **kwargs)
    assert latent.dtype == video.dtype == jnp.bfloat16
    for ours, ref in ((latent, fx["vae_encode.out.latent"]), (video, fx["vae_decode.out.video"])):
        ours = np.asarray(ours, np.float32)
        assert np.max(np.abs(ours - cl(ref))) / np.max(np.abs(ref)) < 5e-2


@pytest.mark.reference
def test_decode_of_the_distilled_loop_latent(reference):
    """The official pipeline's final decode (256 x 256, 17 frames) of its own stage-2 latent."""
    from ltx_jax.video_vae.codec import decode
    fx = np.load(reference / "fixtures.npz")
    assert "loop.decode.out.video" in fx.files, "the suite's fixtures are built with the loop"
    cl = lambda a: np.moveaxis(a, 1, -1)  # noqa: E731
    dec = load_video_decoder(reference / "ltx_checkpoint.safetensors", F32)
    noise = cl(fx["loop.decode.noise"]) if dec.timestep_conditioning else None
    video = np.moveaxis(np.asarray(decode(dec, cl(fx["loop.stage2.out.video_latent"]), noise=noise)), -1, 1)
    ref = fx["loop.decode.out.video"]
    assert np.max(np.abs(video - ref)) / np.max(np.abs(ref)) <= 2e-5
