"""Builds audio reference fixture directories (docs/reference-fixtures-audio.md) from ltx-core 1.0.0 on CPU.

Run with the reference interpreter (never imports ltx_jax):

    .venv-ref/bin/python tests/reference/build_audio.py --root DIR [--configs ltx2-audio-tiny,ltx23-audio-tiny]
        [--seeds 0]

Creates DIR/<config>_seed<seed>/ for every pair (atomically). Besides the documented arrays it records the
waveform -> log-mel front end of `encode_audio` (`audio_encode_wave.*`); that path runs through the torch-only
`MelSpectrogram` of this project's torchaudio stub (tests/reference/stubs), not through real torchaudio, and the
manifest says so.
"""

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

# This checkout's torchaudio stub first (the reference venv's .pth may point at another checkout's copy).
sys.path.insert(0, str(Path(__file__).resolve().parent / "stubs"))
os.environ.setdefault("TQDM_DISABLE", "1")

import safetensors.torch  # noqa: E402
import torch  # noqa: E402

from ltxref.atomic import Laps, build_atomically  # noqa: E402
from ltxref.audio import (  # noqa: E402
    AUDIO_COMPONENTS, AUDIO_FILE, calibrate, checkpoint_config, generate_state_dict)
from ltxref.official import package_versions  # noqa: E402
from ltxref.record import Recorder  # noqa: E402
from ltxref.weights import file_header, ledger  # noqa: E402
from ltx_core.components.patchifiers import AudioPatchifier  # noqa: E402
from ltx_core.model.audio_vae import decode_audio, encode_audio  # noqa: E402
from ltx_core.model.audio_vae.vocoder import VocoderWithBWE  # noqa: E402
from ltx_core.types import Audio  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
WAVE_SECONDS = 0.37  # encode_audio front-end input length (16 kHz, stereo)


def load_preset(name_or_path: str) -> tuple[str, dict]:
    p = Path(name_or_path)
    if not p.suffix:
        p = CONFIG_DIR / f"{name_or_path}.json"
    return p.stem, json.loads(p.read_text())


def round_trip(loaded: dict[str, torch.nn.Module], tensors: dict[str, torch.Tensor]) -> dict:
    comps = {c.name: c for c in AUDIO_COMPONENTS}
    report, used = {"components": {}, "ok": True}, set()
    for name, module in loaded.items():
        comp, sd = comps[name], module.state_dict()
        for k in sd:  # the SDOps (renames + the vocoder's strip-one-prefix kv operation) invert to_file_key
            fk = comp.to_file_key(k)
            back = [r.new_key for r in comp.sd_ops.apply_to_key_value(comp.sd_ops.apply_to_key(fk) or fk, sd[k])]
            if back != [k]:
                raise AssertionError(f"{name}: file key {fk!r} maps to {back} under {comp.sd_ops.name}")
        meta = [k for k, v in sd.items() if v.device.type == "meta"]
        mismatched, missing = [], []
        for k, v in sd.items():
            fk = comp.to_file_key(k)
            used.add(fk)
            ref = tensors.get(fk)
            if ref is None:
                missing.append(fk)
            elif v.device.type == "meta" or v.dtype != ref.dtype or not torch.equal(v, ref):
                mismatched.append(fk)
        ok = not (meta or mismatched or missing)
        report["components"][name] = {"sd_ops": comp.sd_ops.name, "tensors": len(sd),
                                      "parameters": sum(v.numel() for v in sd.values()), "meta_left": meta,
                                      "mismatched": mismatched, "missing_in_file": missing, "ok": ok}
        report["ok"] &= ok
    report["unused_file_keys"] = sorted(set(tensors) - used)
    report["ok"] &= not report["unused_file_keys"]
    report["check"] = ("torch.equal of every state_dict tensor of each module loaded by ModelLedger(dtype=float32) "
                       "against the tensor written under its file key; no tensor left on meta; every file key "
                       "consumed by one of the three SDOps")
    return report


def _hook(module: torch.nn.Module, store: dict, key: str):
    return module.register_forward_hook(lambda m, i, o: store.__setitem__(key, o))


def run_length(rec: Recorder, t: int, decoder, encoder, vocoder, g: torch.Generator) -> dict:
    sfx = f".T{t}"
    patch = AudioPatchifier(patch_size=1)
    tokens = rec.add("audio_decode.in.tokens" + sfx, torch.randn(1, t, 128, generator=g))
    latent = tokens.reshape(1, t, 8, 16).permute(0, 2, 1, 3).contiguous()  # b t (c f) -> b c t f
    if not torch.equal(patch.patchify(latent), tokens):
        raise AssertionError("token layout differs from AudioPatchifier")
    rec.add("audio_decode.in.latent" + sfx, latent)
    denorm, _ = decoder._denormalize_latents(latent)
    rec.add("audio_decode.mid.latent_unnormalized" + sfx, denorm)
    mel = rec.add("audio_decode.out.mel" + sfx, decoder(latent))
    rec.add("vocoder.in.mel" + sfx, mel)

    bwe = isinstance(vocoder, VocoderWithBWE)
    stage1 = vocoder.vocoder if bwe else vocoder
    taps: dict = {}
    handles = [_hook(stage1.conv_post, taps, "conv_post")]
    if bwe:
        handles.append(_hook(vocoder.vocoder, taps, "stage1"))
        handles.append(_hook(vocoder.bwe_generator, taps, "residual"))
        handles.append(_hook(vocoder.resampler, taps, "skip"))
    try:
        wave = vocoder(mel)
    finally:
        for h in handles:
            h.remove()
    rec.add("vocoder.mid.conv_post_out" + sfx, taps["conv_post"])
    info = {"mel_frames": mel.shape[2], "samples": wave.shape[-1]}
    if bwe:
        x = rec.add("vocoder.mid.waveform_16k" + sfx, taps["stage1"])
        rem = x.shape[-1] % vocoder.hop_length
        padded = torch.nn.functional.pad(x, (0, vocoder.hop_length - rem)) if rem else x
        rec.add("vocoder.mid.waveform_16k_padded" + sfx, padded)
        log_mel = rec.add("vocoder.mid.bwe_log_mel" + sfx, vocoder._compute_mel(padded))
        rec.add("vocoder.mid.bwe_generator_in" + sfx, log_mel.transpose(2, 3))
        rec.add("vocoder.mid.bwe_residual" + sfx, taps["residual"])
        rec.add("vocoder.mid.bwe_skip" + sfx, taps["skip"])
        info.update(stage1_samples=x.shape[-1], padded_samples=padded.shape[-1], padded=bool(rem))
    rec.add("vocoder.out.waveform" + sfx, wave)
    info["saturation_fraction"] = float((wave.abs() >= 1.0).float().mean())
    audio = decode_audio(latent, decoder, vocoder)
    rec.add("decode_audio.out.waveform" + sfx, audio.waveform)
    info["sampling_rate"] = audio.sampling_rate

    rec.add("audio_encode.in.mel" + sfx, mel)
    handle = _hook(encoder.conv_out, taps, "conv_out")
    try:
        enc = encoder(mel)
    finally:
        handle.remove()
    rec.add("audio_encode.mid.conv_out" + sfx, taps["conv_out"])
    rec.add("audio_encode.out.latent" + sfx, enc)
    return info


def run_wave_front_end(rec: Recorder, encoder, g: torch.Generator) -> dict:
    samples = int(WAVE_SECONDS * encoder.sample_rate)
    t = torch.arange(samples, dtype=torch.float32) / encoder.sample_rate
    tone = 0.3 * torch.sin(2 * torch.pi * 440.0 * t)[None, None] * torch.tensor([1.0, 0.5])[None, :, None]
    wave = rec.add("audio_encode_wave.in.waveform", tone + 0.05 * torch.randn(1, 2, samples, generator=g))
    from ltx_core.model.audio_vae.ops import AudioProcessor
    proc = AudioProcessor(target_sample_rate=encoder.sample_rate, mel_bins=encoder.mel_bins,
                          mel_hop_length=encoder.mel_hop_length, n_fft=encoder.n_fft)
    mel = rec.add("audio_encode_wave.mid.mel", proc.waveform_to_mel(Audio(waveform=wave, sampling_rate=16000)))
    latent = encode_audio(Audio(waveform=wave, sampling_rate=encoder.sample_rate), encoder)
    rec.add("audio_encode_wave.out.latent", latent)
    return {"samples": samples, "sampling_rate": encoder.sample_rate, "mel_frames": mel.shape[2],
            "note": "reference runs ltx-core's AudioProcessor/encode_audio with the torchaudio stub's torch-only "
                    "MelSpectrogram (tests/reference/stubs/torchaudio), not real torchaudio"}


def build(out_dir: Path, name: str, preset: dict, seed: int) -> dict:
    lap = Laps()
    seeds = {"weights": seed, "inputs": 1000 + seed, "calibration": 5000 + seed}
    tensors, modules = generate_state_dict(preset, seed)
    scales = calibrate(tensors, modules, preset, seed)
    cfg = checkpoint_config(preset)
    meta = {"config": json.dumps(cfg), "model_version": preset["model_version"], "tiny_fixture": name}
    safetensors.torch.save_file(tensors, str(out_dir / AUDIO_FILE), metadata=meta)
    lap("weights_and_file")

    led = ledger(out_dir, torch.float32, checkpoint=AUDIO_FILE)
    loaded = {"audio_vae_decoder": led.audio_decoder(), "audio_vae_encoder": led.audio_encoder(),
              "vocoder": led.vocoder()}
    rt = round_trip(loaded, tensors)
    if not rt["ok"]:
        raise RuntimeError("round trip through the official loader failed:\n" + json.dumps(rt, indent=1)[:4000])
    lap("load_and_round_trip")

    rec = Recorder()
    g = torch.Generator().manual_seed(seeds["inputs"])
    lengths = {}
    for t in preset["latent_lengths"]:
        lengths[t] = run_length(rec, t, loaded["audio_vae_decoder"], loaded["audio_vae_encoder"], loaded["vocoder"], g)
    wave = run_wave_front_end(rec, loaded["audio_vae_encoder"], g)
    lap("runs")
    rec.save(str(out_dir / "fixtures.npz"))
    header = file_header(out_dir / AUDIO_FILE)
    keys = sorted(header)
    prefixes = ("audio_vae.decoder.", "audio_vae.encoder.", "audio_vae.per_channel_statistics.", "vocoder.vocoder.",
                "vocoder.bwe_generator.", "vocoder.mel_stft.", "vocoder.")
    counts = {}
    for k in keys:
        p = next(p for p in prefixes if k.startswith(p))
        counts[p] = counts.get(p, 0) + 1
    voc = preset["vocoder"]
    rates = ({"stage1": voc["vocoder"]["upsample_rates"], "bwe": voc["bwe"]["upsample_rates"]} if "bwe" in voc
             else {"vocoder": voc["upsample_rates"]})
    lap("save")
    return {
        "format": "docs/reference-fixtures-audio.md", "builder": "tests/reference/build_audio.py",
        "config_name": name, "model_version": preset["model_version"], "config": cfg,
        "latent_lengths": preset["latent_lengths"], "rates": rates, "seeds": seeds,
        "calibration_scales": scales, "lengths": {str(k): v for k, v in lengths.items()},
        **{f"saturation_fraction_T{k}": v["saturation_fraction"] for k, v in lengths.items()},
        "encode_wave": wave,
        "checkpoint_keys": keys, "key_counts": counts,
        "parameters": int(sum(t.numel() for t in tensors.values())),
        "round_trip": rt, "arrays": rec.meta, "timings_s": lap.timings, "torch_threads": torch.get_num_threads(),
        "versions": package_versions(),
        "file_sizes": {AUDIO_FILE: (out_dir / AUDIO_FILE).stat().st_size,
                       "fixtures.npz": (out_dir / "fixtures.npz").stat().st_size},
    }


def build_dir(config: str, seed: int, out: Path) -> dict:
    name, preset = load_preset(config)
    return build_atomically(out, lambda tmp: build(tmp, name, preset, seed))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--configs", default="ltx2-audio-tiny,ltx23-audio-tiny")
    ap.add_argument("--seeds", default="0")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    for config in args.configs.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            out = Path(args.root) / f"{Path(config).stem}_seed{seed}"
            try:
                m = build_dir(config, seed, out)
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                print(f"build_audio.py: FAILED {config} seed {seed}: {type(e).__name__}: {e}", file=sys.stderr)
                return 1
            print(f"build_audio.py: {out} ({m['timings_s']['total']:.1f}s)")
    print(f"build_audio.py: done in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
