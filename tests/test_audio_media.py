"""`ltx-jax generate --pipeline a2vid --audio FILE --format mp4,npz` on the bundled tiny audio-video checkpoint,
read back with PyAV: the audio-to-video command end to end, and the folder output's waveform and AAC track.

The checkpoint is the demo's (`LTX_2_3_TINY_AV`: transformer, video VAE, audio VAE encoder and decoder, the
LTX-2.3 vocoder with BWE; seeded random weights in the official layout). The input is 0.5 s of 44.1 kHz stereo:
the pipeline encodes it (resampled to 16 kHz) and returns it unchanged as the sound of the video, as
ltx-pipelines' `A2VidPipelineTwoStage` does. (The vocoder's 48 kHz track of the other pipelines is read back in
tests/test_generate.py; the a2vid numbers against the official pipeline are in tests/test_a2vid.py.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest

av = pytest.importorskip("av")


def _stereo_wav(path, rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    pcm = np.stack([3000 * np.sin(2 * np.pi * 440 * t), 2000 * np.sin(2 * np.pi * 550 * t)]).astype(np.int16)
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=rate)
        s.codec_context.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.T.reshape(1, -1)), format="s16", layout="stereo")
        frame.sample_rate = rate
        for packet in [*s.encode(frame), *s.encode(None)]:
            c.mux(packet)
    return pcm.astype(np.float32) / 32768


def test_a2vid_generate_round_trip(tmp_path):
    from ltx_jax.audio_vae import audio_schema
    from ltx_jax.checkpoint.safetensors_file import SafetensorsFile, save_file
    from ltx_jax.checkpoint.synthetic import write_checkpoint, write_upsampler
    from ltx_jax.cli import main
    from ltx_jax.configs import LTX_2_3_TINY_AV, TINY_UPSAMPLERS

    ckpt = write_checkpoint(LTX_2_3_TINY_AV, tmp_path / "tiny.safetensors", extra_schema=audio_schema(LTX_2_3_TINY_AV))
    up = write_upsampler(TINY_UPSAMPLERS["spatial_x2"], tmp_path / "up.safetensors")
    rng = np.random.default_rng(0)
    lora = {}
    with SafetensorsFile(ckpt) as f:  # a rank-2 "distilled LoRA" on the first block's self-attention queries
        info = f.infos["model.diffusion_model.transformer_blocks.0.attn1.to_q.weight"]
        lora["diffusion_model.transformer_blocks.0.attn1.to_q.lora_A.weight"] = rng.standard_normal(
            (2, info.shape[1])).astype(np.float32) * 0.1
        lora["diffusion_model.transformer_blocks.0.attn1.to_q.lora_B.weight"] = rng.standard_normal(
            (info.shape[0], 2)).astype(np.float32) * 0.1
    save_file(lora, tmp_path / "lora.safetensors")
    c = LTX_2_3_TINY_AV.connector
    video_width = c.connector_num_attention_heads * c.connector_attention_head_dim
    audio_width = c.audio_connector_num_attention_heads * c.audio_connector_attention_head_dim
    ctx = {f"{neg}{k}_context": rng.standard_normal((1, 16, w)).astype(np.float32)
           for neg in ("", "negative_") for k, w in (("video", video_width), ("audio", audio_width))}
    np.savez(tmp_path / "prompt.npz", **ctx)
    wave = _stereo_wav(tmp_path / "in.wav", 44100, 0.5)
    frames, fps, out = 9, 24.0, tmp_path / "out"
    rc = main(["generate", str(ckpt), "--prompt", str(tmp_path / "prompt.npz"), "--upsampler", str(up),
               "--pipeline", "a2vid", "--audio", str(tmp_path / "in.wav"), "--distilled-lora",
               str(tmp_path / "lora.safetensors"), "--steps", "2", "--video-stg-blocks", "1",
               "--frames", str(frames), "--height", "64", "--width", "64", "--fps", str(fps), "--dtype", "float32",
               "--format", "mp4,npz", "--out", str(out), "--quiet"])
    assert rc == 0
    samples = round(frames / fps * 44100)  # the official default: read the video's duration of audio
    with np.load(out / "video.npz") as z:
        assert z["frames"].shape == (frames, 64, 64, 3) and int(z["sample_rate"]) == 44100
        np.testing.assert_array_equal(z["audio"], wave[:, :samples])  # the input audio, unchanged
    side = json.loads((out / "generate.json").read_text())
    assert side["outputs"]["audio_note"] == "the input audio (--audio)"
    assert side["resolved"]["audio_input"] == {"sample_rate": 44100, "seconds": samples / 44100, "channels": 2}
    assert side["resolved"]["guidance"]["audio"]["cfg_scale"] == 1.0  # frozen audio: neutral audio guider
    with av.open(str(out / "video.mp4")) as container:
        vstream, astream = container.streams.video[0], container.streams.audio[0]
        assert (vstream.codec_context.width, vstream.codec_context.height) == (64, 64)
        assert astream.codec_context.name == "aac" and astream.rate == 44100 and astream.channels == 2
        decoded = list(container.decode(video=0))
        container.seek(0)
        audio = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=-1)
    assert len(decoded) == frames and audio.shape[0] == 2
    # AAC works in 1024-sample frames: the decoded track is the waveform rounded up to whole frames.
    assert samples <= audio.shape[1] <= samples + 2048, (audio.shape, samples)
