"""Tiny autoencoder (ltx_jax.tiny_vae) against the upstream TAEHV fixture (shared/fixtures/taeltx2_3).

The fixture holds outputs of madebyollin/taehv `taehv.py` with seeded random weights in the real
`taeltx2_3` layout; arrays there are N,T,C,H,W, ours N,T,H,W,C.
"""

from __future__ import annotations

import json
import re

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ltx_jax.checkpoint.layout import LAYOUT, LoadError, expected_keys
from ltx_jax.checkpoint.tae_layout import tae_schema
from ltx_jax.checkpoint.safetensors_file import SafetensorsFile
from ltx_jax.parity import relative_error, run_parity
from ltx_jax.tiny_vae import (TAELTX2_3, TAECheckpointError, TAEInputError, TinyAutoencoder, config_from_shapes,
                              decode_video, encode_video, iter_decode, load_tae)
from ltx_jax.tiny_vae.layers import pixel_shuffle, pixel_unshuffle


def _nthwc(a):
    return jnp.asarray(np.moveaxis(a, 2, -1))


def _ntchw(a):
    return np.moveaxis(np.asarray(a, np.float32), -1, 2)


@pytest.fixture(scope="module")
def fixture_arrays(tae_fixture):
    with np.load(tae_fixture / "fixtures.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def manifest(tae_fixture):
    return json.loads((tae_fixture / "manifest.json").read_text())


@pytest.fixture(scope="module")
def tae(tae_fixture):
    return load_tae(tae_fixture / "taeltx2_3.safetensors")


@pytest.fixture(scope="module")
def state(tae_fixture):
    with SafetensorsFile(tae_fixture / "taeltx2_3.safetensors") as f:
        return {k: np.array(f[k]) for k in f}


def test_parity_runner_checks_every_fixture_array(tae_fixture, fixture_arrays, manifest):
    """experiments/parity.py's runner: every reference array of every case and mode, within 1e-5."""
    report = run_parity(tae_fixture)
    inputs = {case["arrays"]["input"] for case in manifest["cases"]}
    assert set(report.arrays) == set(fixture_arrays) - inputs
    assert not report.skipped
    bad = {k: a for k, a in report.arrays.items() if not (a["ok"] and a["max_rel_err"] <= 1e-5)}
    assert not bad


def test_iter_decode_chunks_equal_reference(tae, fixture_arrays):
    """Chunks of 2 latent frames over 3 (a full chunk, then a partial one) give the reference video."""
    z = _nthwc(fixture_arrays["dec_t3_2x2.latent"])
    chunks = list(iter_decode(tae, z, chunk=2))
    assert [c.shape[1] for c in chunks] == [16 - 7, 8]
    video = np.concatenate([np.asarray(c) for c in chunks], axis=1)
    assert relative_error(_ntchw(video), fixture_arrays["dec_t3_2x2.out_parallel"]) <= 1e-5


def test_streaming_encode_in_chunks_of_two_latents(tae, fixture_arrays):
    v = _nthwc(fixture_arrays["enc_f17_64x64.video"])  # 17 frames -> 3 latents: one chunk of 2, then 1
    ours = encode_video(tae, v, mode="streaming", chunk=2)
    assert relative_error(_ntchw(ours), fixture_arrays["enc_f17_64x64.latent_sequential"]) <= 1e-5


def test_bfloat16_relative_error(tae_fixture, fixture_arrays):
    """float16 weights, bfloat16 compute: a few percent of the output range at most (measured 2.0e-2 / 7.8e-3)."""
    tae16 = load_tae(tae_fixture / "taeltx2_3.safetensors", param_dtype=jnp.bfloat16)
    video = decode_video(tae16, _nthwc(fixture_arrays["dec_t3_2x2.latent"]))
    latent = encode_video(tae16, _nthwc(fixture_arrays["enc_f17_64x64.video"]))
    assert video.dtype == latent.dtype == jnp.bfloat16
    dec = relative_error(_ntchw(video), fixture_arrays["dec_t3_2x2.out_parallel"])
    enc = relative_error(_ntchw(latent), fixture_arrays["enc_f17_64x64.latent_parallel"])
    # Bounded above by bf16's accuracy through ~25 convs, and below so that the test sees bf16 at all.
    assert 1e-4 < dec < 5e-2 and 1e-4 < enc < 3e-2


def test_module_layout_equals_checkpoint(tae_fixture, manifest):
    """Module paths and shapes are the file's keys and shapes; parameter counts are upstream's."""
    with SafetensorsFile(tae_fixture / "taeltx2_3.safetensors") as f:
        file_shapes = {k: info.shape for k, info in f.infos.items()}
    model = nnx.eval_shape(lambda: TinyAutoencoder(TAELTX2_3, rngs=nnx.Rngs(0)))
    ours = {".".join(map(str, p)): tuple(v.shape) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert ours == file_shapes
    count = lambda prefix: sum(int(np.prod(s)) for k, s in ours.items() if k.startswith(prefix))  # noqa: E731
    assert count("encoder.") == manifest["weights"]["num_params_encoder"] == 1565568
    assert count("decoder.") == manifest["weights"]["num_params_decoder"] == 10194160
    assert config_from_shapes(file_shapes) == TAELTX2_3


@pytest.mark.parametrize("edit, message", [
    (lambda s: {"vae.decoder.conv_in.conv.weight": np.zeros((1, 1, 1, 1, 1))}, "not a TAEHV"),
    (lambda s: {**s, "decoder.1.weight": np.zeros((256, 16, 3, 3)), "encoder.17.weight": np.zeros((16, 64, 3, 3))},
     "latent channels 16"),
    (lambda s: {**s, "encoder.12.conv.weight": np.zeros((64, 64, 1, 1))}, "TPool strides [2, 2, 1]"),
    (lambda s: {**s, "decoder.0.weight": np.zeros(3)}, "unexpected: decoder.0.weight"),
    (lambda s: {k: v for k, v in s.items() if k != "decoder.10.conv.4.bias"}, "missing: decoder.10.conv.4.bias"),
    (lambda s: {**s, "decoder.9.conv.2.weight": np.zeros((128, 64, 3, 3))}, "decoder.9.conv.2.weight: file (128, 64"),
])
def test_refuses_non_matching_checkpoints(state, edit, message):
    with pytest.raises(LoadError, match=re.escape(message)):
        load_tae(edit(state))


def test_checkpoint_errors_are_typed(state):
    with pytest.raises(TAECheckpointError):
        load_tae({"model.diffusion_model.x.weight": np.zeros(2)})


def test_refuses_bad_input(tae):
    z = jnp.zeros((1, 2, 2, 2, 128))
    with pytest.raises(TAEInputError, match="move the channel axis last"):
        decode_video(tae, jnp.zeros((1, 2, 128, 2, 2)))
    with pytest.raises(TAEInputError, match=r"\[B, T, h, w, 128\].*\(1, 2, 2, 2, 64\)"):
        decode_video(tae, jnp.zeros((1, 2, 2, 2, 64)))
    with pytest.raises(TAEInputError):
        decode_video(tae, z[0])
    with pytest.raises(ValueError, match="decode mode 'fast'"):
        tae.decode(z, mode="fast")
    with pytest.raises(TAEInputError, match="move the channel axis last"):
        encode_video(tae, jnp.zeros((1, 9, 3, 64, 64)))
    with pytest.raises(TAEInputError, match=r"RGB video"):
        encode_video(tae, jnp.zeros((1, 9, 64, 64, 4)))
    with pytest.raises(TAEInputError, match="divisible by the patch size 4"):
        encode_video(tae, jnp.zeros((1, 9, 66, 64, 3)))


def test_pixel_shuffle_is_pytorch_order():
    x = np.random.default_rng(0).normal(size=(2, 8, 12, 3)).astype(np.float32)
    u = np.asarray(pixel_unshuffle(jnp.asarray(x), 4))
    assert u.shape == (2, 2, 3, 48)
    for c, dy, dx in [(0, 0, 0), (1, 2, 3), (2, 3, 1)]:  # channel c*16 + dy*4 + dx holds pixel (4h+dy, 4w+dx, c)
        np.testing.assert_array_equal(u[:, :, :, c * 16 + dy * 4 + dx], x[:, dy::4, dx::4, c])
    np.testing.assert_array_equal(np.asarray(pixel_shuffle(jnp.asarray(u), 4)), x)


@pytest.mark.parametrize("config", ["TAELTX_2", "TAELTX2_3", "TAELTX2_3_WIDE"])
def test_layout_schema_is_the_module_state(config):
    """`tae_schema` (what convert checks a TAE file against) lists exactly the module's keys and shapes."""
    import ltx_jax.tiny_vae as T
    cfg = getattr(T, config)
    model = nnx.eval_shape(lambda: TinyAutoencoder(cfg, rngs=nnx.Rngs(0)))
    assert tae_schema(cfg) == expected_keys(LAYOUT["tae"], nnx.state(model))
    assert config_from_shapes(tae_schema(cfg)) == cfg
