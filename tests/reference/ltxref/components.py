"""The official components of a fixture: configurator, SDOps and file-key map for each.

The SDOps are the ones `ltx_pipelines/utils/model_ledger.py` uses. A file key maps to a module key by the
SDOps (prefix filter + substring replacement); `to_file_key` is its inverse, checked against the SDOps for
every key (`check_key_maps`).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ltxref.official import gemma_width  # noqa: F401  (import order: ltx_core.loader first)
from ltx_core.loader.sd_ops import SDOps
from ltx_core.model.transformer import LTXV_MODEL_COMFY_RENAMING_MAP, LTXModelConfigurator
from ltx_core.model.upsampler import LatentUpsamplerConfigurator
from ltx_core.model.video_vae import (
    VAE_DECODER_COMFY_KEYS_FILTER,
    VAE_ENCODER_COMFY_KEYS_FILTER,
    VideoDecoderConfigurator,
    VideoEncoderConfigurator,
)
from ltx_core.text_encoders.gemma import EMBEDDINGS_PROCESSOR_KEY_OPS, EmbeddingsProcessorConfigurator

CHECKPOINT_FILE = "ltx_checkpoint.safetensors"
FP8_FILE = "ltx_transformer_fp8.safetensors"
UPSAMPLER_KINDS = ("spatial_x2", "spatial_x2_rational", "spatial_x1_5_rational", "temporal_x2")


def upsampler_file(kind: str) -> str:
    return f"upsampler_{kind}.safetensors"


def _prefix_map(pairs: dict[str, str], default: str | None = None) -> Callable[[str], str]:
    def to_file_key(module_key: str) -> str:
        for module_prefix, file_prefix in pairs.items():
            if module_key.startswith(module_prefix):
                return file_prefix + module_key[len(module_prefix) :]
        if default is None:
            raise KeyError(f"no file prefix for module key {module_key!r}")
        return default + module_key

    return to_file_key


@dataclass(frozen=True)
class Component:
    """One official module as the loader builds it from one file."""

    name: str
    configurator: type
    sd_ops: SDOps | None
    file: str
    to_file_key: Callable[[str], str]

    def meta_module(self, config: dict) -> torch.nn.Module:
        """Builds the module on the meta device exactly as `SingleGPUModelBuilder.meta_model` does."""
        with torch.device("meta"):
            return self.configurator.from_config(config)


TRANSFORMER = Component(
    "transformer", LTXModelConfigurator, LTXV_MODEL_COMFY_RENAMING_MAP, CHECKPOINT_FILE,
    _prefix_map({}, default="model.diffusion_model."),
)
EMBEDDINGS_PROCESSOR = Component(
    "embeddings_processor", EmbeddingsProcessorConfigurator, EMBEDDINGS_PROCESSOR_KEY_OPS, CHECKPOINT_FILE,
    _prefix_map({
        "feature_extractor.": "text_embedding_projection.",
        "video_connector.": "model.diffusion_model.video_embeddings_connector.",
        "audio_connector.": "model.diffusion_model.audio_embeddings_connector.",
    }),
)
VAE_ENCODER = Component(
    "vae_encoder", VideoEncoderConfigurator, VAE_ENCODER_COMFY_KEYS_FILTER, CHECKPOINT_FILE,
    _prefix_map({"per_channel_statistics.": "vae.per_channel_statistics."}, default="vae.encoder."),
)
VAE_DECODER = Component(
    "vae_decoder", VideoDecoderConfigurator, VAE_DECODER_COMFY_KEYS_FILTER, CHECKPOINT_FILE,
    _prefix_map({"per_channel_statistics.": "vae.per_channel_statistics."}, default="vae.decoder."),
)
MAIN_COMPONENTS = (TRANSFORMER, EMBEDDINGS_PROCESSOR, VAE_ENCODER, VAE_DECODER)


def upsampler_component(kind: str) -> Component:
    # ModelLedger builds the upsampler with no SDOps: file keys are the module's own state_dict keys.
    return Component(f"upsampler.{kind}", LatentUpsamplerConfigurator, None, upsampler_file(kind), lambda k: k)


def checkpoint_config(preset: dict) -> dict:
    """The `config` metadata JSON of the single-file checkpoint: exactly `{"transformer", "vae"}`."""
    return {"transformer": preset["transformer"], "vae": preset["vae"]}


def meta_file_shapes(component: Component, module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """{file key: shape} of every tensor of a (meta) module, via the component's key map."""
    return {component.to_file_key(k): tuple(v.shape) for k, v in module.state_dict().items()}


def check_key_maps(component: Component, module_keys: list[str]) -> None:
    """Fails if `to_file_key` is not the exact inverse of the official SDOps for these keys."""
    if component.sd_ops is None:
        return
    for k in module_keys:
        fk = component.to_file_key(k)
        back = component.sd_ops.apply_to_key(fk)
        if back != k:
            raise AssertionError(f"{component.name}: file key {fk!r} maps to {back!r} under "
                                 f"{component.sd_ops.name}, expected {k!r}")
