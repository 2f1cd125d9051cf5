"""`ltx-jax generate --format mp4` on the bundled tiny audio-video checkpoint, read back with PyAV.

The checkpoint is the demo's (`LTX_2_3_TINY_AV`: transformer, video VAE, audio VAE and the LTX-2.3 vocoder with
BWE, seeded random weights in the official layout). The run is image-to-video (a frame-0 image), so it also
shows that an image-conditioned generation keeps the audio path.
"""

from __future__ import annotations

import numpy as np
import pytest

av = pytest.importorskip("av")


def test_generate_mp4_round_trip(tmp_path):
    from ltx_jax.cli import main
    from ltx_jax.configs import LTX_2_3_TINY_AV, TINY_UPSAMPLERS
    from ltx_jax.convert.synthetic import write_checkpoint, write_upsampler
    from ltx_jax.sampling import audio_token_count

    ckpt = write_checkpoint(LTX_2_3_TINY_AV, tmp_path / "tiny.safetensors")
    up = write_upsampler(TINY_UPSAMPLERS["spatial_x2"], tmp_path / "up.safetensors")
    rng = np.random.default_rng(0)
    c = LTX_2_3_TINY_AV.connector
    video_width = c.connector_num_attention_heads * c.connector_attention_head_dim
    audio_width = c.audio_connector_num_attention_heads * c.audio_connector_attention_head_dim
    np.savez(tmp_path / "prompt.npz", video_context=rng.standard_normal((1, 16, video_width)).astype(np.float32),
             audio_context=rng.standard_normal((1, 16, audio_width)).astype(np.float32))
    np.save(tmp_path / "image.npy", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    frames, fps, out = 9, 24.0, tmp_path / "out"
    rc = main(["generate", str(ckpt), "--prompt", str(tmp_path / "prompt.npz"), "--upsampler", str(up),
               "--frames", str(frames), "--height", "64", "--width", "64", "--fps", str(fps), "--dtype", "float32",
               "--image", str(tmp_path / "image.npy"), "0", "1.0", "--crf", "0", "--format", "mp4,npz",
               "--out", str(out), "--quiet"])
    assert rc == 0
    t = audio_token_count(frames, fps)
    samples = (4 * t - 3) * 480  # mel frames x 160 (16 kHz) x 3 (BWE to 48 kHz)
    with np.load(out / "video.npz") as z:
        assert z["frames"].shape == (frames, 64, 64, 3)
        assert z["audio"].shape == (2, samples) and int(z["sample_rate"]) == 48000
        written = z["audio"]
    assert 0.01 < np.abs(written).max() <= 1.0
    with av.open(str(out / "video.mp4")) as container:
        vstream = container.streams.video[0]
        astream = container.streams.audio[0]
        assert (vstream.codec_context.width, vstream.codec_context.height) == (64, 64)
        assert astream.codec_context.name == "aac" and astream.rate == 48000 and astream.channels == 2
        decoded = [f for f in container.decode(video=0)]
        container.seek(0)
        audio = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=-1)
    assert len(decoded) == frames and decoded[0].width == 64 and decoded[0].height == 64
    assert audio.shape[0] == 2
    # AAC works in 1024-sample frames: the decoded track is the waveform rounded up to whole frames.
    assert samples <= audio.shape[1] <= samples + 2048, (audio.shape, samples)
    assert abs(audio.shape[1] / 48000 - samples / 48000) < 0.05
