"""Independent checks of the tiny autoencoder with no upstream fixture: the wide decoder and previews.

`taeltx2_3_wide` (madebyollin/taehv branch `2026_03_11_taeltx23_wide`) has no reference outputs here, so
its WideMemBlock is checked against a NumPy transcription of docs/tae.md, its full decoder by
streaming == parallel on a float16 file in the wide layout, and its real-size layout by shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ltx_jax.checkpoint.safetensors_file import save_file
from ltx_jax.parity import relative_error
from ltx_jax.tiny_vae import (TAELTX2_3, TAELTX2_3_WIDE, Preview, PreviewHook, TAEConfig, TinyAutoencoder,
                              config_from_shapes, decode_video, load_tae, state_dict)
from ltx_jax.tiny_vae.layers import TGrow, WideMemBlock

# The wide layout at a quarter of the width: grouped convs with 4, 2 and 1 groups of 64 channels.
SMALL_WIDE = TAEConfig(decoder_widths=(256, 128, 64, 64), wide=True)


def _conv_np(x, w, b, groups=1):
    """Reference Conv2d, zero padding k // 2: x [N, H, W, I], w OIHW [O, I/g, k, k] -> [N, H, W, O]."""
    o, ig, k, _ = w.shape
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    h, wd = x.shape[1:3]
    out = np.zeros((*x.shape[:3], o), np.float64)
    og = o // groups
    for g in range(groups):
        xs = xp[..., g * ig:(g + 1) * ig]
        wg = w[g * og:(g + 1) * og]
        for dy in range(k):
            for dx in range(k):
                out[..., g * og:(g + 1) * og] += xs[:, dy:dy + h, dx:dx + wd] @ wg[:, :, dy, dx].T
    return out + b


def _wide_memblock_np(x, params, groups):
    """relu(c6(relu(c4(relu(c2(relu(c0([x, past])))))) + x), frame by frame, past = previous input or 0."""
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    out, past = [], np.zeros_like(x[:, 0])
    for t in range(x.shape[1]):
        h = np.concatenate([x[:, t], past], axis=-1)
        h = relu(_conv_np(h, *params[0]))
        h = relu(_conv_np(h, *params[2], groups))
        h = relu(_conv_np(h, *params[4]))
        h = _conv_np(h, *params[6], groups)
        out.append(relu(h + x[:, t]))
        past = x[:, t]
    return np.stack(out, axis=1)


def test_wide_memblock_matches_numpy():
    n, groups = 128, 2
    block = WideMemBlock(n, groups, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    params = {}
    for i in (0, 2, 4, 6):
        conv = block.conv[i]
        w = rng.normal(size=conv.weight.shape) * (1.0 / np.prod(conv.weight.shape[1:])) ** 0.5
        b = rng.normal(size=conv.bias.shape) * 0.1
        conv.weight[...], conv.bias[...] = jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32)
        params[i] = (w.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64))
    x = rng.normal(size=(2, 3, 4, 5, n)).astype(np.float32)
    ref = _wide_memblock_np(x.astype(np.float64), params, groups)
    whole, last = block(jnp.asarray(x), None)
    assert relative_error(whole, ref) <= 1e-5
    np.testing.assert_array_equal(last, x[:, -1])
    # The same block as two chunks, the memory carried across: frame 1 must see frame 0.
    first, carry = block(jnp.asarray(x[:, :1]), None)
    rest, _ = block(jnp.asarray(x[:, 1:]), carry)
    assert relative_error(jnp.concatenate([first, rest], axis=1), ref) <= 1e-5


def test_real_wide_layout_and_detection():
    """taeltx2_3_wide at full size, abstractly: docs/tae.md's key shapes, 146 tensors, 28.608 M decoder params."""
    model = nnx.eval_shape(lambda: TinyAutoencoder(TAELTX2_3_WIDE, rngs=nnx.Rngs(0)))
    shapes = {".".join(map(str, p)): tuple(v.shape) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert len(shapes) == 146
    assert shapes["decoder.1.weight"] == (1024, 128, 3, 3)
    assert shapes["decoder.3.conv.0.weight"] == (1024, 2048, 1, 1)
    assert shapes["decoder.9.conv.2.weight"] == (512, 64, 3, 3)  # 8 groups of 64
    assert shapes["decoder.15.conv.6.weight"] == (256, 64, 3, 3)
    assert shapes["decoder.7.conv.weight"] == (2048, 1024, 1, 1)
    assert shapes["decoder.20.weight"] == (64, 256, 3, 3)
    dec = sum(int(np.prod(s)) for k, s in shapes.items() if k.startswith("decoder."))
    assert round(dec / 1e6, 3) == 28.608
    assert config_from_shapes(shapes) == TAELTX2_3_WIDE
    assert TAELTX2_3_WIDE.groups(1024) == 16 and TAELTX2_3_WIDE.groups(256) == 4


@pytest.fixture(scope="module")
def small_wide(tmp_path_factory):
    """A float16 safetensors file in the wide layout (random weights), loaded back by shape detection."""
    tensors = {k: np.asarray(v) for k, v in state_dict(TinyAutoencoder(SMALL_WIDE, rngs=nnx.Rngs(3))).items()}
    rng = np.random.default_rng(0)
    tensors = {k: (rng.normal(size=v.shape) * 0.1 if k.endswith("bias") else v) for k, v in tensors.items()}
    # Residual-output and output convs scaled down (as the fixture's init does) so that activations stay
    # O(1) and most pixels land inside (0, 1) rather than on the clamp.
    tensors = {k: v * 0.25 if k.endswith("conv.6.weight") else v for k, v in tensors.items()}
    tensors["decoder.22.weight"] = tensors["decoder.22.weight"] * 0.125
    tensors["decoder.22.bias"] = 0.5 + tensors["decoder.22.bias"] * 0.5
    path = tmp_path_factory.mktemp("tae") / "wide.safetensors"
    save_file({k: v.astype(np.float16) for k, v in tensors.items()}, path)
    return load_tae(path)


def test_wide_streaming_equals_parallel(small_wide):
    assert small_wide.config == SMALL_WIDE
    z = jax.random.normal(jax.random.key(0), (2, 3, 2, 2, 128))
    parallel = decode_video(small_wide, z)
    assert parallel.shape == (2, 8 * 3 - 7, 64, 64, 3)
    assert 0.5 < float(jnp.mean((parallel > 0) & (parallel < 1)))  # mostly unclamped, so equality means something
    # chunk 2 over 3 latent frames: one scan step, then a partial chunk with the carried memory
    assert relative_error(decode_video(small_wide, z, mode="streaming", chunk=2), parallel) <= 1e-5
    # Causality: the first latent frame's output does not depend on later latent frames.
    assert relative_error(decode_video(small_wide, z[:, :1]), parallel[:, :1]) <= 1e-5


def test_stride1_tgrow_keeps_the_later_frame(small_wide):
    """A preview decoder's TGrow (time upscale off) equals the full TGrow's later output frames."""
    preview = Preview(small_wide, time_upscale=False, dtype=jnp.float32)
    reduced = nnx.merge(preview.graphdef, preview.params).decoder[7]
    full = small_wide.decoder[7]
    assert isinstance(reduced, TGrow) and reduced.stride == 1 and full.stride == 2
    x = jax.random.normal(jax.random.key(1), (1, 3, 2, 2, 256))
    np.testing.assert_allclose(reduced(x), full(x)[:, 1::2], rtol=1e-6, atol=1e-6)


def test_previews(tae_fixture):
    tae = load_tae(tae_fixture / "taeltx2_3.safetensors")
    assert tae.config == TAELTX2_3
    z = jax.random.normal(jax.random.key(2), (1, 3, 2, 3, 128))
    full = Preview(tae, time_upscale=True, space_upscale=True, dtype=jnp.float32)
    assert relative_error(full(z), decode_video(tae, z)) <= 1e-6  # the preview copy is the same decoder
    cheap = Preview(tae)  # one frame per latent frame, bfloat16
    frames = cheap(z)
    assert frames.shape == (1, 3, 64, 96, 3) and frames.dtype == jnp.float32
    tokens = z.reshape(1, 3 * 2 * 3, 128)  # the transformer's (t, h, w) token order
    np.testing.assert_array_equal(cheap(tokens, grid=(3, 2, 3)), frames)
    assert Preview(tae, space_upscale=False)(z).shape == (1, 3, 8, 12, 3)  # pixel shuffle only: 4x latent
    seen = []
    hook = PreviewHook(cheap, lambda step, f: seen.append((step, f.shape, f.dtype)), every=4, num_steps=10)
    for step in range(10):
        hook(step, z)
    assert seen == [(s, (1, 3, 64, 96, 3), np.uint8) for s in (0, 4, 8, 9)]
