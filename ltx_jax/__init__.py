"""ltx-jax: LTX-2 / LTX-2.3 in JAX / Flax NNX, loading the official files directly.

The curated public API, imported on first use (so `import ltx_jax` costs nothing):

    import ltx_jax as lj
    rt = lj.Runtime(param_dtype="bfloat16", compute_dtype="bfloat16")
    dit = lj.restore("ltx-2.3-22b-dev.safetensors", "transformer", runtime=rt)    # or lj.load_transformer(...)
    models = lj.load_models("ltx-2.3-22b-distilled.safetensors", upsampler="...x2-1.0.safetensors", runtime=rt)
    out = lj.distilled_two_stage(models, lj.load_prompt("prompt.npz"), lj.Request(frames=121))

Everything else stays importable from its module (see the README's architecture and layers).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # configs and runtime
    "Runtime": "ltx_jax.configs", "LTXConfig": "ltx_jax.configs", "from_metadata": "ltx_jax.configs",
    "ConfigError": "ltx_jax.configs",
    # checkpoint I/O
    "restore": "ltx_jax.checkpoint.loader", "restore_state": "ltx_jax.checkpoint.loader",
    "LoadError": "ltx_jax.checkpoint.errors", "open_source": "ltx_jax.checkpoint.open",
    "convert": "ltx_jax.checkpoint.converter", "export": "ltx_jax.checkpoint.exporter",
    "inspect_file": "ltx_jax.checkpoint.inspect", "load_lora": "ltx_jax.checkpoint.lora",
    # sharding
    "make_mesh": "ltx_jax.sharding", "inference_rules": "ltx_jax.sharding", "ShardingRules": "ltx_jax.sharding",
    # models
    "load_transformer": "ltx_jax.transformer", "load_text_embeddings": "ltx_jax.transformer",
    "forward": "ltx_jax.transformer", "encode_text": "ltx_jax.transformer", "Modality": "ltx_jax.transformer",
    "Perturbations": "ltx_jax.transformer", "apply_lora_runtime": "ltx_jax.transformer",
    "load_video_encoder": "ltx_jax.video_vae", "load_video_decoder": "ltx_jax.video_vae",
    "encode": "ltx_jax.video_vae", "decode": "ltx_jax.video_vae", "decode_stream": "ltx_jax.video_vae",
    "TilingConfig": "ltx_jax.video_vae",
    "load_upsampler": "ltx_jax.upsampler", "upsample_video": "ltx_jax.upsampler",
    "load_tae": "ltx_jax.tiny_vae", "decode_video": "ltx_jax.tiny_vae",
    "load_audio_decoder": "ltx_jax.audio_vae", "load_audio_encoder": "ltx_jax.audio_vae",
    "load_vocoder": "ltx_jax.audio_vae", "decode_audio": "ltx_jax.audio_vae",
    "decode_audio_chunked": "ltx_jax.audio_vae", "encode_audio": "ltx_jax.audio_vae",
    "load_gemma": "ltx_jax.text_encoder", "encode_prompts": "ltx_jax.text_encoder",
    # sampling
    "video_positions": "ltx_jax.sampling", "audio_positions": "ltx_jax.sampling", "GuiderParams": "ltx_jax.sampling",
    # pipelines
    "Request": "ltx_jax.pipelines", "RunOptions": "ltx_jax.pipelines", "Generation": "ltx_jax.pipelines",
    "load_models": "ltx_jax.pipelines", "load_prompt": "ltx_jax.pipelines", "load_noise": "ltx_jax.pipelines",
    "distilled_two_stage": "ltx_jax.pipelines", "dev_two_stage": "ltx_jax.pipelines",
    "dev_one_stage": "ltx_jax.pipelines", "hq_two_stage": "ltx_jax.pipelines", "PIPELINES": "ltx_jax.pipelines",
}
# The model packages bind their modules to the checkpoint layout when imported; `restore` by name needs them.
_MODEL_PACKAGES = ("ltx_jax.transformer", "ltx_jax.video_vae", "ltx_jax.upsampler", "ltx_jax.tiny_vae",
                   "ltx_jax.audio_vae", "ltx_jax.text_encoder")

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ltx_jax' has no attribute {name!r}")
    if name in ("restore", "restore_state"):
        for package in _MODEL_PACKAGES:
            importlib.import_module(package)
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
