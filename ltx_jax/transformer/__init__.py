"""The LTX-2 / LTX-2.3 audio-video DiT and the text side stored with it (ltx_core `model/transformer/`,
`text_encoders/gemma/` feature extractor and connectors).

Typical use (weights from the official single file, jitted, state passed explicitly):

    from flax import nnx
    from ltx_jax.configs import Runtime
    from ltx_jax.sampling import audio_positions, video_positions
    from ltx_jax.transformer import (Modality, Perturbations, encode_text, forward, load_text_embeddings,
                                     load_transformer)

    rt = Runtime(param_dtype="bfloat16", compute_dtype="bfloat16")
    dit = nnx.split(load_transformer("ltx-2.3-22b-dev.safetensors", rt))
    text = nnx.split(load_text_embeddings("ltx-2.3-22b-dev.safetensors", rt))
    v_ctx, a_ctx = encode_text(*text, gemma_hidden_states, attention_mask)
    video = Modality(latent=v_tokens, sigma=sigma, timesteps=v_mask * sigma, positions=video_positions(F, H, W, fps=fps),
                     context=v_ctx)
    audio = Modality(latent=a_tokens, sigma=sigma, timesteps=a_mask * sigma, positions=audio_positions(...),
                     context=a_ctx)
    v_x0, a_x0 = forward(*dit, video, audio, x0=True)
"""

from ltx_jax.transformer.functional import encode_text, forward
from ltx_jax.transformer.loading import LoadError, load_text_embeddings, load_transformer, read_config
from ltx_jax.transformer.lora import apply_lora_runtime, set_lora_strengths
from ltx_jax.transformer.modality import PERTURBATION_TYPES, Modality, Perturbations
from ltx_jax.transformer.model import LTXModel, X0Model, to_denoised
from ltx_jax.transformer.text_embeddings import EmbeddingsProcessor

__all__ = ["LTXModel", "X0Model", "EmbeddingsProcessor", "Modality", "Perturbations", "PERTURBATION_TYPES",
           "forward", "encode_text", "load_transformer", "load_text_embeddings", "read_config", "LoadError",
           "to_denoised", "apply_lora_runtime", "set_lora_strengths"]
