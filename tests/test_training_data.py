"""Training data: the preprocessing command on real mp4 files (PyAV) with the shape rules, captions tables, the
cache index, buckets and the deterministic (seed, step) batch order."""

import json

import av
import numpy as np
import pytest
from flax import nnx

from ltx_jax.configs import LTX_2_3_TINY, Runtime
from ltx_jax.training.data import CachedDataset, DataError, write_clip, write_index
from ltx_jax.training.preprocess import caption_id, conform, preprocess, read_captions
from ltx_jax.video_vae import VideoEncoder


def _mp4(path, frames, h, w, fps=24):
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for _ in range(frames):
            img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_conform_rules():
    clip = np.zeros((20, 70, 100, 3), np.uint8)
    assert conform(clip).shape == (17, 64, 96, 3)              # 1 + 8k frames, centre crop to x32
    assert conform(clip, max_frames=12).shape == (9, 64, 96, 3)
    with pytest.raises(DataError, match="32 x 32"):
        conform(np.zeros((9, 20, 64, 3), np.uint8))
    with pytest.raises(DataError, match="shape_mode='refuse'"):
        conform(clip, mode="refuse")
    assert conform(np.zeros((9, 32, 64, 3), np.uint8), mode="refuse").shape == (9, 32, 64, 3)


def test_preprocess_folder_to_cache(tmp_path):
    data = tmp_path / "clips"
    data.mkdir()
    _mp4(data / "a.mp4", 12, 70, 100)   # cropped to 9 x 64 x 96
    _mp4(data / "b.mp4", 9, 64, 96)     # already conforming
    _mp4(data / "c.mp4", 9, 16, 16)     # refused (under 32 x 32)
    rows = [{"video": f"{n}.mp4", "caption": f"clip {n}"} for n in "abc"]
    (data / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_captions(data) == [(f"{n}.mp4", f"clip {n}") for n in "abc"]
    c = LTX_2_3_TINY.transformer
    contexts = {f"clip {n}": (np.full((8, c.cross_attention_dim), i, np.float32),
                              np.full((8, c.audio_cross_attention_dim), -i, np.float32)) for i, n in enumerate("abc")}
    assert len({caption_id(k) for k in contexts}) == 3
    encoder = VideoEncoder(LTX_2_3_TINY.vae, Runtime(param_dtype="float32", compute_dtype="float32"), rngs=nnx.Rngs(0))
    counts = preprocess(data, tmp_path / "cache", encoder=encoder, encode_captions=lambda cs: [contexts[x] for x in cs],
                        log=lambda s: None)
    assert counts == {"encoded": 2, "skipped": 0, "refused": 1}
    refused = [json.loads(x) for x in (tmp_path / "cache" / "refused.jsonl").read_text().splitlines()]
    assert [r["video"] for r in refused] == ["c.mp4"] and "32 x 32" in refused[0]["reason"]
    index = [json.loads(x) for x in (tmp_path / "cache" / "index.jsonl").read_text().splitlines()]
    assert sorted(e["grid"] for e in index) == [[2, 2, 3], [2, 2, 3]] and {e["fps"] for e in index} == {24.0}
    for e in index:
        z = np.load(tmp_path / "cache" / e["file"])
        np.testing.assert_array_equal(z["video_context"], contexts[e["caption"]][0])
    # resumable: a second run skips what is cached
    assert preprocess(data, tmp_path / "cache", encoder=encoder, encode_captions=lambda cs: [contexts[x] for x in cs],
                      log=lambda s: None)["skipped"] == 2


def test_buckets_and_deterministic_order(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(7):
        grid = (2, 2, 3) if i < 4 else (1, 2, 2)
        write_clip(tmp_path, f"c{i}", video_latent=rng.standard_normal((*grid, 16)), video_context=np.zeros((8, 64)),
                   audio_context=np.zeros((8, 32)), fps=24.0)
    write_index(tmp_path)
    ds = CachedDataset(tmp_path, batch_size=2, seed=3)
    assert ds.batches_per_epoch == 3  # 4 // 2 + 3 // 2
    order = [ds.indices(s) for s in range(9)]
    assert order == [CachedDataset(tmp_path, batch_size=2, seed=3).indices(s) for s in range(9)]
    assert order[:3] != order[3:6]  # a new shuffle each epoch
    for idx in order:  # one bucket per batch
        assert len({tuple(ds.entries[i]["grid"]) for i in idx}) == 1
    b = ds.batch(0)
    assert b.video.shape[0] == 2
    assert b.frame_tokens == {12: 6, 4: 4}[b.video.shape[1]]  # H' * W' of the batch's grid
    with pytest.raises(DataError, match="no bucket holds batch_size=5"):
        CachedDataset(tmp_path, batch_size=5)
