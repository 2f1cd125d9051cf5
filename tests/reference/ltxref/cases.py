"""Connector and transformer runs: the main case, the extra cases and the bf16 path.

Inputs are made with the official tools (`VideoLatentTools`, `AudioLatentTools`, conditioning items,
`GaussianNoiser`, `modality_from_latent_state`), so positions, masks and timesteps are the pipeline's own.
"""

from dataclasses import dataclass, replace

import torch

from ltxref.record import Recorder
from ltx_core.components.noisers import GaussianNoiser
from ltx_core.components.patchifiers import AudioPatchifier, VideoLatentPatchifier
from ltx_core.conditioning import VideoConditionByKeyframeIndex, VideoConditionByLatentIndex
from ltx_core.guidance.perturbations import (
    BatchedPerturbationConfig,
    Perturbation,
    PerturbationConfig,
    PerturbationType,
)
from ltx_core.model.transformer import Modality
from ltx_core.text_encoders.gemma import convert_to_additive_mask
from ltx_core.tools import AudioLatentTools, VideoLatentTools
from ltx_core.types import AudioLatentShape, LatentState, VideoLatentShape, VideoPixelShape
from ltx_pipelines.utils.helpers import modality_from_latent_state

CPU = torch.device("cpu")
BF16 = torch.bfloat16

CONNECTOR_SEQ_LEN = 128  # must be a multiple of the 128 learnable registers (fixed in ltx-core 1.0.0)
CONNECTOR_VALID_TOKENS = 20  # left padding: the last 20 tokens are valid
TRANSFORMER_PIXELS = VideoPixelShape(batch=1, frames=17, height=128, width=128, fps=24.0)  # latent 3x4x4
TRANSFORMER_SIGMA = 0.725
KEYFRAME_PIXEL_IDX = 16  # the last pixel frame


def run_connector(rec: Recorder, ep: torch.nn.Module, preset: dict, g: torch.Generator) -> tuple:
    """`EmbeddingsProcessor.process_hidden_states` on random Gemma-like hidden states; returns the contexts."""
    te = preset["text_encoder"]
    width, n_states = te["hidden_size"], te["num_hidden_layers"] + 1
    hidden = []
    for i in range(n_states):
        # Layer-dependent scale and offset, as real Gemma layers differ widely in magnitude.
        h = torch.randn(1, CONNECTOR_SEQ_LEN, width, generator=g) * (1.0 + i) + 0.1 * i
        hidden.append(rec.add(f"connector.in.hidden_states.{i}", h))
    hidden = tuple(hidden)
    mask = torch.zeros(1, CONNECTOR_SEQ_LEN, dtype=torch.int64)
    mask[:, -CONNECTOR_VALID_TOKENS:] = 1
    rec.add("connector.in.attention_mask", mask, note="binary, left padding (tokenizer layout)")

    video_feats, audio_feats = ep.feature_extractor(hidden, mask, "left")
    rec.add("connector.mid.video_features", video_feats, note="feature_extractor output")
    rec.add("connector.mid.audio_features", audio_feats, note="feature_extractor output (V1: same as video)")
    rec.add("connector.mid.additive_mask", convert_to_additive_mask(mask, video_feats.dtype),
            note="(mask-1)*finfo(float32).max, shape [B,1,1,T]")
    out = ep.process_hidden_states(hidden, mask)
    rec.add("connector.out.video_encoding", out.video_encoding)
    rec.add("connector.out.audio_encoding", out.audio_encoding)
    rec.add("connector.out.attention_mask", out.attention_mask,
            note="all ones: the connector replaces padding by registers and clears the mask")
    return hidden, mask, out.video_encoding, out.audio_encoding


@dataclass(frozen=True)
class TransformerInputs:
    video: LatentState
    audio: LatentState
    sigma: torch.Tensor
    video_context: torch.Tensor
    audio_context: torch.Tensor

    def modalities(self, video: LatentState | None = None) -> tuple[Modality, Modality]:
        """The pipeline's Modality pair (`context_mask=None`, timesteps = denoise_mask * sigma)."""
        vm = modality_from_latent_state(video or self.video, self.video_context, self.sigma)
        am = modality_from_latent_state(self.audio, self.audio_context, self.sigma)
        return vm, am


def video_tools(pixels: VideoPixelShape, channels: int) -> VideoLatentTools:
    shape = VideoLatentShape.from_pixel_shape(pixels, latent_channels=channels)
    return VideoLatentTools(VideoLatentPatchifier(patch_size=1), shape, pixels.fps)


def audio_tools(pixels: VideoPixelShape) -> AudioLatentTools:
    return AudioLatentTools(AudioPatchifier(patch_size=1), AudioLatentShape.from_video_pixel_shape(pixels))


def make_transformer_inputs(preset: dict, g: torch.Generator, video_context: torch.Tensor,
                            audio_context: torch.Tensor) -> tuple[TransformerInputs, LatentState]:
    """Main inputs (latent frame 0 conditioned at strength 1, so its 16 tokens have t = 0) and keyframe inputs."""
    t = preset["transformer"]
    vt = video_tools(TRANSFORMER_PIXELS, t["in_channels"])
    at = audio_tools(TRANSFORMER_PIXELS)
    if at.target_shape.channels * at.target_shape.mel_bins != t["audio_in_channels"]:
        raise ValueError("audio_in_channels must be 8*16 = 128: the audio patchifier's token width")
    noiser = GaussianNoiser(generator=g)
    vshape = vt.target_shape
    frame = (1, vshape.channels, 1, vshape.height, vshape.width)

    video = vt.create_initial_state(CPU, torch.float32, torch.randn(vshape.to_torch_shape(), generator=g))
    video = VideoConditionByLatentIndex(latent=torch.randn(frame, generator=g), strength=1.0, latent_idx=0).apply_to(
        video, vt)
    video = noiser(video, noise_scale=1.0)
    audio = at.create_initial_state(CPU, torch.float32, torch.randn(at.target_shape.to_torch_shape(), generator=g))
    audio = noiser(audio, noise_scale=1.0)

    keyframe = vt.create_initial_state(CPU, torch.float32, torch.randn(vshape.to_torch_shape(), generator=g))
    keyframe = VideoConditionByKeyframeIndex(keyframes=torch.randn(frame, generator=g), frame_idx=KEYFRAME_PIXEL_IDX,
                                             strength=1.0).apply_to(keyframe, vt)
    keyframe = noiser(keyframe, noise_scale=1.0)
    if keyframe.attention_mask is not None:
        raise AssertionError("keyframe conditioning without a strength wrapper should leave attention_mask None")
    sigma = torch.tensor(TRANSFORMER_SIGMA, dtype=torch.float32)
    return TransformerInputs(video, audio, sigma, video_context, audio_context), keyframe


def _record_inputs(rec: Recorder, prefix: str, m: Modality, note: str | None = None) -> None:
    rec.add(f"{prefix}.latent", m.latent, note=note)
    rec.add(f"{prefix}.timesteps", m.timesteps, note="denoise_mask * sigma, [B, T, 1]")
    rec.add(f"{prefix}.positions", m.positions, note="[B, n_axes, T, 2] [start, end) bounds")


def _perturbations(*items: Perturbation) -> BatchedPerturbationConfig:
    return BatchedPerturbationConfig(perturbations=[PerturbationConfig(perturbations=list(items))])


def extra_cases(num_layers: int) -> dict[str, BatchedPerturbationConfig]:
    """Perturbation cases, named as recorded: `transformer.out.<case>.{video,audio}_{velocity,x0}`."""
    last = num_layers - 1
    return {
        f"stg_block{last}": _perturbations(
            Perturbation(type=PerturbationType.SKIP_VIDEO_SELF_ATTN, blocks=[last]),
            Perturbation(type=PerturbationType.SKIP_AUDIO_SELF_ATTN, blocks=[last]),
        ),
        "isolated": _perturbations(
            Perturbation(type=PerturbationType.SKIP_A2V_CROSS_ATTN, blocks=None),
            Perturbation(type=PerturbationType.SKIP_V2A_CROSS_ATTN, blocks=None),
        ),
    }


def _run_pair(rec: Recorder, prefix: str, x0_model: torch.nn.Module, vm: Modality, am: Modality,
              perturbations: BatchedPerturbationConfig | None = None, suffix: str = "") -> None:
    v, a = x0_model.velocity_model(video=vm, audio=am, perturbations=perturbations)
    x0v, x0a = x0_model(video=vm, audio=am, perturbations=perturbations)
    rec.add(f"{prefix}.video_velocity{suffix}", v)
    rec.add(f"{prefix}.audio_velocity{suffix}", a)
    rec.add(f"{prefix}.video_x0{suffix}", x0v)
    rec.add(f"{prefix}.audio_x0{suffix}", x0a)


def run_transformer(rec: Recorder, x0_model: torch.nn.Module, inp: TransformerInputs, keyframe: LatentState,
                    num_layers: int) -> list[str]:
    """Records the main case, video-only, the perturbation cases and the keyframe case. Returns case names."""
    vm, am = inp.modalities()
    _record_inputs(rec, "transformer.in.video", vm, note="first 16 tokens (latent frame 0) are clean, t = 0")
    rec.add("transformer.in.video.context", vm.context, note="= connector.out.video_encoding")
    _record_inputs(rec, "transformer.in.audio", am)
    rec.add("transformer.in.audio.context", am.context, note="= connector.out.audio_encoding")
    rec.add("transformer.in.sigma", inp.sigma.reshape(1), note="a 0-d float32 tensor in torch (Modality.sigma)")

    _run_pair(rec, "transformer.out", x0_model, vm, am)
    v_only, a_none = x0_model.velocity_model(video=vm, audio=None, perturbations=None)
    assert a_none is None
    rec.add("transformer.out.video_velocity_video_only", v_only, note="LTXModel(video, audio=None)")

    cases = []
    for case, pert in extra_cases(num_layers).items():
        _run_pair(rec, f"transformer.out.{case}", x0_model, vm, am, pert)
        cases.append(case)

    km, _ = inp.modalities(keyframe)
    _record_inputs(rec, "transformer.in.keyframe.video", km,
                   note="48 noisy tokens + 16 appended keyframe tokens (t = 0, time offset by frame_idx)")
    rec.add("transformer.in.keyframe.frame_idx", torch.tensor([KEYFRAME_PIXEL_IDX], dtype=torch.int64))
    _run_pair(rec, "transformer.out.keyframe", x0_model, km, am)
    cases.append("keyframe")
    return cases


def run_bf16(rec: Recorder, x0_bf16: torch.nn.Module, ep_bf16: torch.nn.Module, inp: TransformerInputs,
             hidden: tuple, mask: torch.Tensor) -> dict:
    """The official bf16 path (ModelLedger(dtype=bfloat16)) on the same inputs; returns its description."""
    out = ep_bf16.process_hidden_states(tuple(h.to(BF16) for h in hidden), mask)
    rec.add("connector.out_bf16.video_encoding", out.video_encoding)
    rec.add("connector.out_bf16.audio_encoding", out.audio_encoding)

    vm, am = inp.modalities()
    vm = replace(vm, latent=vm.latent.to(BF16), positions=vm.positions.to(BF16), context=vm.context.to(BF16))
    am = replace(am, latent=am.latent.to(BF16), context=am.context.to(BF16))
    rec.add("transformer.in_bf16.video.positions", vm.positions, note="video positions as the bf16 pipeline has them")
    _run_pair(rec, "transformer.out_bf16", x0_bf16, vm, am)
    return {
        "weights": "every component loaded by ModelLedger(dtype=torch.bfloat16): all weights cast to bf16",
        "connector": "process_hidden_states(tuple(connector.in.hidden_states.* .to(bf16)), "
                     "connector.in.attention_mask)",
        "transformer_inputs": {
            "video.latent": "transformer.in.video.latent .to(bf16)",
            "video.positions": "transformer.in.video.positions .to(bf16) (VideoLatentTools casts positions to the "
                               "pipeline dtype); stored as transformer.in_bf16.video.positions",
            "video.context": "transformer.in.video.context .to(bf16) (the f32 connector output, so only the "
                             "transformer path differs)",
            "audio.latent": "transformer.in.audio.latent .to(bf16)",
            "audio.positions": "float32, unchanged (AudioLatentTools keeps them float32)",
            "audio.context": "transformer.in.audio.context .to(bf16)",
            "timesteps": "float32, unchanged (denoise_mask is float32 and sigma a float32 tensor in the pipeline)",
            "sigma": "float32, unchanged",
        },
        "outputs": "transformer.out_bf16.{video,audio}_{velocity,x0} (x0: to_denoised computes in float32 and "
                   "casts back to bf16); connector.out_bf16.{video,audio}_encoding; all stored as float32",
    }
