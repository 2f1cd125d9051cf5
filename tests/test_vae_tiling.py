"""Tiled VAE decode / encode against the official ltx-core tiled code (geometry, blending, streaming chunks).

The official runs happen here, through `run_ref_python`, on the seed-0 fixture checkpoints: a latent
big enough for 3 x 4 spatial tiles and 2 temporal tile groups, decoded with `VideoDecoder.tiled_decode`
(per-tile noise replayed for the timestep-conditioned LTX-2.3 decoder) and a video encoded with
`VideoEncoder.tiled_encode`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_ref_python

pytestmark = pytest.mark.reference

BOUND = 2e-5

# Official tile geometry for a list of cases: in/out slices (frames, height, width) and 1-D masks.
GEOMETRY_SCRIPT = r"""
import json, sys
import torch
import ltx_core.loader  # noqa: F401  (import order of ltx-core 1.0.0)
from ltx_core.model.video_vae.video_vae import VideoDecoder, prepare_tiles_for_encoding
from ltx_core.model.video_vae.tiling import SpatialTilingConfig, TemporalTilingConfig, TilingConfig

def cfg(c):
    return TilingConfig(SpatialTilingConfig(*c["spatial"]) if c.get("spatial") else None,
                        TemporalTilingConfig(*c["temporal"]) if c.get("temporal") else None)

def dump(tiles):
    return [{"in": [[s.start, s.stop] for s in t.in_coords[2:]], "out": [[s.start, s.stop] for s in t.out_coords[2:]],
             "masks": [None if m is None else m.tolist() for m in t.masks_1d[2:]]} for t in tiles]

dec = VideoDecoder(in_channels=1, decoder_blocks=[], base_channels=1)
cases = json.loads(sys.argv[1])
print(json.dumps({
    "decode": [dump(dec._prepare_tiles(torch.empty(1, 1, *c["shape"]), cfg(c))) for c in cases["decode"]],
    "encode": [dump(prepare_tiles_for_encoding(torch.empty(1, 3, *c["shape"]), cfg(c))) for c in cases["encode"]]}))
"""

# Official tiled decode and encode of one checkpoint; arrays saved channels-first to an npz.
TILED_SCRIPT = r"""
import json, sys
import numpy as np, torch
import ltx_core.loader  # noqa: F401
from ltx_core.loader.single_gpu_model_builder import SingleGPUModelBuilder
from ltx_core.model.video_vae import (VAE_DECODER_COMFY_KEYS_FILTER, VAE_ENCODER_COMFY_KEYS_FILTER,
                                      VideoDecoderConfigurator, VideoEncoderConfigurator)
from ltx_core.model.video_vae.tiling import SpatialTilingConfig, TemporalTilingConfig, TilingConfig

ckpt, out, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
build = lambda conf, ops: SingleGPUModelBuilder(model_path=ckpt, model_class_configurator=conf,
                                                model_sd_ops=ops).build(device=torch.device("cpu"),
                                                                        dtype=torch.float32).eval()
dec = build(VideoDecoderConfigurator, VAE_DECODER_COMFY_KEYS_FILTER)
enc = build(VideoEncoderConfigurator, VAE_ENCODER_COMFY_KEYS_FILTER)
g = torch.Generator().manual_seed(123)
latent = torch.randn(spec["latent"], generator=g)
video = torch.rand(spec["video"], generator=g) * 2 - 1
arrays = {"latent": latent, "video": video}
dcfg = TilingConfig(SpatialTilingConfig(*spec["decode_spatial"]), TemporalTilingConfig(*spec["decode_temporal"]))
ecfg = TilingConfig(SpatialTilingConfig(*spec["encode_spatial"]), TemporalTilingConfig(*spec["encode_temporal"]))
with torch.inference_mode():
    if dec.timestep_conditioning:  # replay the generator: one randn(tile latent shape) per tile, in tile order
        replay = torch.Generator().manual_seed(7)
        for i, tile in enumerate(dec._prepare_tiles(latent, dcfg)):
            arrays[f"tile_noise.{i}"] = torch.randn(latent[tile.in_coords].shape, generator=replay)
        arrays["untiled_noise"] = torch.randn(latent.shape, generator=torch.Generator().manual_seed(8))
    gen = torch.Generator().manual_seed(7)
    chunks = list(dec.tiled_decode(latent, dcfg, generator=gen))
    if dec.timestep_conditioning and not torch.equal(gen.get_state(), replay.get_state()):
        raise AssertionError("tiled_decode drew something other than the replayed per-tile noise")
    for i, c in enumerate(chunks):
        arrays[f"chunk.{i}"] = c
    arrays["untiled"] = dec(latent, generator=torch.Generator().manual_seed(8))
    arrays["encoded_tiled"] = enc.tiled_encode(video, ecfg)
    arrays["encoded"] = enc(video)
np.savez(out, **{k: v.numpy() for k, v in arrays.items()})
"""

# Latent 5 x 6 x 5 (33 frames, 192 x 160 px): decode tiles of 3 latents with 1 overlap in space (the
# 5-wide axis gets round(2.5) = 2 with Python's half-to-even rounding) and 2 temporal groups.
# Video 25 x 128 x 160: encode tiles of 96 px (64 overlap) in a 2 x 3 grid, 25 + 17 frames.
SPEC = {"latent": [1, 16, 5, 6, 5], "decode_spatial": [96, 32], "decode_temporal": [24, 8],
        "video": [1, 3, 25, 128, 160], "encode_spatial": [96, 64], "encode_temporal": [24, 16]}

GEOMETRY_CASES = {
    "decode": [
        {"shape": [5, 6, 5], "spatial": [96, 32], "temporal": [24, 8]},
        {"shape": [9, 16, 24], "spatial": [512, 64], "temporal": [64, 24]},
        {"shape": [17, 12, 20], "spatial": [128, 64], "temporal": [32, 16]},
        {"shape": [3, 4, 4], "spatial": [64, 32], "temporal": [16, 8]},  # two temporal tiles starting at 0
        {"shape": [5, 7, 3], "spatial": [96, 32]},
        {"shape": [9, 4, 4], "temporal": [16, 0]},
    ],
    "encode": [
        {"shape": [33, 160, 192], "spatial": [96, 64], "temporal": [24, 16]},
        {"shape": [129, 256, 640], "spatial": [512, 64], "temporal": [64, 24]},
        {"shape": [41, 96, 160], "spatial": [128, 32], "temporal": [32, 8]},  # overlaps raised to 64 px / 16
        {"shape": [17, 224, 64], "spatial": [96, 64]},
    ],
}


def _tiling(c: dict):
    from ltx_jax.video_vae.tiling import SpatialTilingConfig, TemporalTilingConfig, TilingConfig
    return TilingConfig(SpatialTilingConfig(*c["spatial"]) if c.get("spatial") else None,
                        TemporalTilingConfig(*c["temporal"]) if c.get("temporal") else None)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_tile_geometry_matches_official():
    from ltx_jax.video_vae.tiling import decode_tiles, encode_tiles
    ref = json.loads(run_ref_python(GEOMETRY_SCRIPT, json.dumps(GEOMETRY_CASES)))
    for which, make in (("decode", decode_tiles), ("encode", encode_tiles)):
        for case, official in zip(GEOMETRY_CASES[which], ref[which], strict=True):
            ours = make(tuple(case["shape"]), _tiling(case))
            assert len(ours) == len(official), (which, case)
            for tile, want in zip(ours, official):
                assert [[s.start, s.stop] for s in tile.source] == want["in"], (which, case)
                # ltx_core leaves an untiled axis as slice(0, None); ours names its end.
                got_out = [[s.start, s.stop] for s in tile.target]
                assert all(w == g or (w[1] is None and w[0] == g[0] == 0) for g, w in zip(got_out, want["out"]))
                for m, w in zip(tile.masks, want["masks"]):
                    assert (m is None) == (w is None)
                    if m is not None:
                        np.testing.assert_allclose(m, np.asarray(w, np.float32), rtol=0, atol=1e-6)


@pytest.fixture(scope="module", params=["ltx2-tiny", "ltx23-tiny"])
def official_tiled(request, tmp_path_factory):
    from conftest import build_reference
    fixture = build_reference(request.param, 0)
    out = tmp_path_factory.mktemp("tiled") / f"{request.param}.npz"
    run_ref_python(TILED_SCRIPT, str(fixture / "ltx_checkpoint.safetensors"), str(out), json.dumps(SPEC))
    with np.load(out) as z:
        return fixture, {k: z[k] for k in z.files}


def test_tiled_decode_matches_official(official_tiled):
    from ltx_jax.configs import Runtime
    from ltx_jax.video_vae import load_video_decoder
    from ltx_jax.video_vae.codec import decode, decode_stream
    from ltx_jax.video_vae.tiling import decode_tiles, group_by_time
    fixture, ref = official_tiled
    cl = lambda a: np.moveaxis(a, 1, -1)  # noqa: E731
    dec = load_video_decoder(fixture / "ltx_checkpoint.safetensors", Runtime(param_dtype="float32",
                                                                             compute_dtype="float32"))
    latent = cl(ref["latent"])
    tiling = _tiling({"spatial": SPEC["decode_spatial"], "temporal": SPEC["decode_temporal"]})
    tiles = decode_tiles(latent.shape[1:4], tiling)
    # The case must really tile: several tiles along every axis.
    assert len(group_by_time(tiles)) == 2 and len({t.source[1].start for t in tiles}) == 3
    assert len({t.source[2].start for t in tiles}) == 4
    noise = [cl(ref[f"tile_noise.{i}"]) for i in range(len(tiles))] if dec.timestep_conditioning else None
    chunks = [np.asarray(c) for c in decode_stream(dec, latent, tiling, noise=noise)]
    want = [cl(ref[f"chunk.{i}"]) for i in range(sum(k.startswith("chunk.") for k in ref))]
    assert [c.shape for c in chunks] == [w.shape for w in want]
    scale = max(np.max(np.abs(w)) for w in want)
    for c, w in zip(chunks, want):
        assert np.max(np.abs(c - w)) / scale <= BOUND
    tiled = np.concatenate(chunks, axis=1)
    untiled = np.asarray(decode(dec, latent, noise=cl(ref["untiled_noise"]) if dec.timestep_conditioning else None))
    assert _rel(untiled, cl(ref["untiled"])) <= BOUND
    # Tiling changes the result (tiles see padding at their edges): proves the tiled path ran.
    assert _rel(tiled, untiled) > 1e-3


def test_tiled_encode_matches_official(official_tiled):
    from ltx_jax.configs import Runtime
    from ltx_jax.video_vae import load_video_encoder
    from ltx_jax.video_vae.codec import encode
    fixture, ref = official_tiled
    cl = lambda a: np.moveaxis(a, 1, -1)  # noqa: E731
    enc = load_video_encoder(fixture / "ltx_checkpoint.safetensors", Runtime(param_dtype="float32",
                                                                             compute_dtype="float32"))
    video = cl(ref["video"])
    tiled = np.asarray(encode(enc, video, _tiling({"spatial": SPEC["encode_spatial"],
                                                   "temporal": SPEC["encode_temporal"]})))
    assert _rel(tiled, cl(ref["encoded_tiled"])) <= BOUND
    assert _rel(np.asarray(encode(enc, video)), cl(ref["encoded"])) <= BOUND
    assert _rel(tiled, cl(ref["encoded"])) > 1e-3
