"""Safetensors reading/writing without torch: exact bytes, FP8 and bf16, and clear errors on bad files."""

import json
import struct

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy

from ltx_jax.checkpoint.safetensors_file import SafetensorsError, SafetensorsFile, save_file


def _tensors():
    rng = np.random.default_rng(0)
    return {
        "w.f32": rng.standard_normal((3, 5)).astype(np.float32),
        "w.bf16": rng.standard_normal((4, 2)).astype(ml_dtypes.bfloat16),
        "w.f16": rng.standard_normal((7,)).astype(np.float16),
        "w.e4m3": np.array([0.0, 1.5, -448.0, 3e-3], np.float32).astype(ml_dtypes.float8_e4m3fn),
        "w.e5m2": np.array([-2.0, 57344.0], np.float32).astype(ml_dtypes.float8_e5m2),
        "scale": np.array(0.125, np.float32),  # 0-d, like FP8 weight_scale
        "ids": np.arange(6, dtype=np.int64).reshape(2, 3),
        "empty": np.zeros((0, 4), np.float32),
    }


def test_round_trip_every_dtype_bit_exact(tmp_path):
    tensors = _tensors()
    path = tmp_path / "a.safetensors"
    save_file(tensors, path, {"config": "{}", "model_version": "2.3"})
    with SafetensorsFile(path) as f:
        assert f.metadata == {"config": "{}", "model_version": "2.3"}
        assert set(f) == set(tensors)
        for k, v in tensors.items():
            assert f[k].dtype == v.dtype and f[k].shape == v.shape
            assert f[k].tobytes() == v.tobytes(), k
        assert f.num_parameters == sum(v.size for v in tensors.values())


def test_reads_files_written_by_the_safetensors_library(tmp_path):
    tensors = {k: v for k, v in _tensors().items() if "e4m3" not in k and "e5m2" not in k}
    path = tmp_path / "lib.safetensors"
    safetensors.numpy.save_file(tensors, str(path), metadata={"k": "v"})
    with SafetensorsFile(path) as f:
        assert f.metadata == {"k": "v"}
        for k, v in tensors.items():
            assert f[k].dtype == v.dtype and f[k].tobytes() == v.tobytes(), k


def test_library_reads_our_files(tmp_path):
    tensors = {k: v for k, v in _tensors().items() if k in ("w.f32", "w.f16", "ids", "scale")}
    path = tmp_path / "ours.safetensors"
    save_file(tensors, path)
    loaded = safetensors.numpy.load_file(str(path))
    for k, v in tensors.items():
        np.testing.assert_array_equal(loaded[k], v)


def test_read_slice_reads_a_part(tmp_path):
    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    save_file({"x": x}, tmp_path / "s.safetensors")
    with SafetensorsFile(tmp_path / "s.safetensors") as f:
        np.testing.assert_array_equal(f.read_slice("x", (slice(2, 4),)), x[2:4])


def test_streaming_writer_with_callables(tmp_path):
    calls = []

    def make(i):
        def f():
            calls.append(i)
            return np.full((2, 2), i, np.float32)
        return f

    save_file({f"t{i}": make(i) for i in range(3)}, tmp_path / "c.safetensors",
              shapes={f"t{i}": ((2, 2), np.float32) for i in range(3)})
    assert calls == [0, 1, 2]
    with SafetensorsFile(tmp_path / "c.safetensors") as f:
        assert float(f["t2"][0, 0]) == 2.0


def test_failed_write_leaves_nothing(tmp_path):
    def boom():
        raise RuntimeError("disk on fire")

    path = tmp_path / "x.safetensors"
    with pytest.raises(RuntimeError):
        save_file({"a": lambda: np.zeros(2, np.float32), "b": boom}, path,
                  shapes={"a": ((2,), np.float32), "b": ((2,), np.float32)})
    assert list(tmp_path.iterdir()) == []


def _raw(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.mark.parametrize("name, content, message", [
    ("truncated", None, "past the end of the data"),
    ("bad_json", struct.pack("<Q", 5) + b"{nope" + b"\0" * 8, "not valid JSON"),
    ("overlap", _raw({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12), "overlap"),
    ("size_mismatch", _raw({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
     "expected 12"),
    ("huge_header", struct.pack("<Q", 1 << 40) + b"{}", "does not fit"),
    ("tiny", b"abc", "too short"),
    ("bad_dtype", _raw({"a": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}}, b"\0"), "unsupported dtype"),
    ("hole", _raw({"a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}, b"\0\0"), "unindexed bytes"),
    ("trailing", _raw({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"\0\0\0"), "trailing"),
    ("bad_metadata", _raw({"__metadata__": {"a": 1}}, b""), "__metadata__"),
    ("negative_shape", _raw({"a": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 0]}}, b""), "shape"),
])
def test_malformed_files_fail_with_a_clear_error(tmp_path, name, content, message):
    path = tmp_path / f"{name}.safetensors"
    if content is None:  # a valid file cut in the middle of its data
        save_file({"a": np.zeros((64,), np.float32)}, path)
        content = path.read_bytes()[:-40]
    path.write_bytes(content)
    with pytest.raises(SafetensorsError, match=message) as e:
        SafetensorsFile(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("suffix, head", [(".pt", b"PK\x03\x04rest"), (".bin", b"\x80\x02}q\x00."),
                                           (".ckpt", b"\x80\x04\x95"), (".safetensors", b"PK\x03\x04zzzzzzzz")])
def test_pickled_checkpoints_are_refused(tmp_path, suffix, head):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(head + b"\0" * 16)
    with pytest.raises(SafetensorsError, match="pickle|zip"):
        SafetensorsFile(path)


def test_missing_file(tmp_path):
    with pytest.raises(SafetensorsError, match="no such file"):
        SafetensorsFile(tmp_path / "nope.safetensors")
