"""`ltx-jax train-preprocess --gemma FOLDER --audio`: captions through Gemma + connectors, sound through the audio
VAE, on two mp4 clips with an AAC track (written with PyAV), the tiny audio-video checkpoint and the tiny Gemma.

Checked against the encoders called directly, one caption / one clip at a time:
* contexts: the tokenizer, `GemmaEncoder.hidden_states`, then the connectors (`encode_text`) on that caption;
* audio tokens: the AAC track decoded with PyAV into a plain array (no resampler: it is already 16 kHz stereo),
  cut to the kept frames' duration, the log-mel front end and the `AudioEncoder` module, patchified with NumPy
  (`c t f -> t (c f)`) and cut to `audio_token_count(frames, fps)`.
Then the cache feeds training: the batch carries those audio tokens and the loss has its audio part.
"""

import json

import av
import numpy as np
import pytest

from ltx_jax.configs import LTX_2_3_TINY_AV
from ltx_jax.sampling.positions import audio_token_count

FRAMES, FPS, SIZE, RATE = 9, 24.0, 64, 16000


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from ltx_jax.audio_vae import audio_schema
    from ltx_jax.checkpoint.synthetic import write_checkpoint
    from ltx_jax.cli import main
    from ltx_jax.pipelines.media import write_mp4
    from ltx_jax.world.tokenizer import write_tiny_gemma

    root = tmp_path_factory.mktemp("prep")
    ckpt = write_checkpoint(LTX_2_3_TINY_AV, root / "tiny-av.safetensors", seed=0,
                            extra_schema=audio_schema(LTX_2_3_TINY_AV))
    c = LTX_2_3_TINY_AV.connector
    gemma = write_tiny_gemma(root / "gemma", shape={"hidden_size": c.text_hidden_size,
                                                    "num_hidden_layers": c.text_num_hidden_states - 1})
    data = root / "clips"
    data.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(int(0.6 * RATE)) / RATE
    captions = {"a.mp4": "a red ball rolls", "b.mp4": "waves on a beach at dusk"}
    for i, name in enumerate(captions):
        wave = np.stack([0.3 * np.sin(2 * np.pi * (300 + 200 * i) * t), 0.2 * np.sin(2 * np.pi * 750 * t)])
        wave += 0.02 * rng.standard_normal(wave.shape)
        frames = rng.integers(0, 256, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
        write_mp4(data / name, frames, FPS, wave.astype(np.float32), RATE)
    (data / "captions.jsonl").write_text("".join(json.dumps({"video": k, "caption": v}) + "\n"
                                                 for k, v in captions.items()))
    rc = main(["train-preprocess", str(data), str(root / "cache"), "--checkpoint", str(ckpt), "--gemma", str(gemma),
               "--audio"])
    assert rc == 0
    return {"root": root, "ckpt": ckpt, "gemma": gemma, "data": data, "captions": captions}


def _entries(cache):
    return [json.loads(x) for x in (cache / "index.jsonl").read_text().splitlines()]


def test_cached_contexts_equal_gemma_and_connectors(prepared):
    import jax.numpy as jnp

    from ltx_jax.configs import Runtime
    from ltx_jax.text_encoder import load_gemma
    from ltx_jax.text_encoder.prompts import load_text_embeddings_for
    from ltx_jax.transformer import encode_text

    rt = Runtime(param_dtype="float32", compute_dtype="float32")  # train-preprocess's default --dtype
    gemma = load_gemma(prepared["gemma"], rt)
    graphdef, state = load_text_embeddings_for(gemma, prepared["ckpt"], rt)
    entries = _entries(prepared["root"] / "cache")
    assert sorted(e["caption"] for e in entries) == sorted(prepared["captions"].values())
    for e in entries:
        ids, mask = gemma.tokenize([e["caption"]])
        hidden = jnp.moveaxis(gemma.hidden_states(ids, mask), 0, -1)  # [1, T, H, L+1]
        video, audio = encode_text(graphdef, state, hidden, jnp.asarray(mask))
        with np.load(prepared["root"] / "cache" / e["file"]) as z:
            for name, ref in (("video_context", video), ("audio_context", audio)):
                ref = np.asarray(ref, np.float32)[0]
                assert z[name].shape == ref.shape
                err = float(np.abs(z[name] - ref).max() / np.abs(ref).max())
                print(f"{e['caption']!r} {name}: max err / max ref {err:.2e}")
                assert err <= 1e-6, (name, err)


def test_cached_audio_equals_the_encoder_on_the_decoded_track(prepared):
    import jax.numpy as jnp

    from ltx_jax.audio_vae import load_audio_encoder
    from ltx_jax.audio_vae.mel import waveform_to_mel
    from ltx_jax.configs import Runtime

    encoder = load_audio_encoder(prepared["ckpt"], Runtime(param_dtype="float32", compute_dtype="float32"))
    cfg = encoder.config
    n = audio_token_count(FRAMES, FPS)
    samples = round(FRAMES / FPS * RATE)
    by_caption = {e["caption"]: e for e in _entries(prepared["root"] / "cache")}
    for name, caption in prepared["captions"].items():
        with av.open(str(prepared["data"] / name)) as container:
            stream = container.streams.audio[0]
            assert stream.rate == RATE and stream.channels == 2
            wave = np.concatenate([f.to_ndarray() for f in container.decode(stream)], axis=-1).astype(np.float32)
        assert wave.shape[-1] >= samples
        mel = waveform_to_mel(jnp.asarray(wave[None, :, :samples]), sample_rate=RATE, n_fft=cfg.n_fft,
                              hop=cfg.mel_hop_length, n_mels=cfg.mel_bins)
        latent = np.asarray(encoder(mel), np.float32)[0]                   # [C, T', F]
        ref = latent.transpose(1, 0, 2).reshape(latent.shape[1], -1)[:n]   # c t f -> t (c f)
        e = by_caption[caption]
        assert e["audio_tokens"] == n
        with np.load(prepared["root"] / "cache" / e["file"]) as z:
            got = z["audio_latent"]
        assert got.shape == ref.shape == (n, 128)
        err = float(np.abs(got - ref).max() / np.abs(ref).max())
        print(f"{name} audio tokens: max err / max ref {err:.2e}")
        assert err <= 1e-5, err


def test_training_consumes_the_cache(prepared):
    from ltx_jax.training.config import TrainConfig
    from ltx_jax.training.run import build

    config = TrainConfig.from_dict({
        "model": {"checkpoint": str(prepared["ckpt"]), "base_dtype": "float32", "compute_dtype": "float32"},
        "data": {"cache": str(prepared["root"] / "cache"), "batch_size": 2, "with_audio": True},
        "output": {"dir": str(prepared["root"] / "out"), "progress": False},
        "lora": {"rank": 2}})
    trainer, dataset, _ = build(config)
    batch = dataset.batch(0)
    assert batch.audio.shape == (2, audio_token_count(FRAMES, FPS), 128)
    cached = {e["id"]: np.load(prepared["root"] / "cache" / e["file"])["audio_latent"] for e in dataset.entries}
    assert any(np.array_equal(np.asarray(batch.audio[0]), a) for a in cached.values())
    loss, parts = trainer.loss(trainer.init(0), batch)
    assert np.isfinite(float(loss)) and float(parts["audio"]) > 0, parts
