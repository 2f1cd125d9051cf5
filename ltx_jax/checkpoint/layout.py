"""The official file layout, written once: per-component prefixes and key views, the stacking rule, and the
one strict matcher every load and conversion goes through.

Module attribute paths mirror the official state-dict keys (`transformer_blocks.attn1.to_q.weight`,
`to_out.0.bias`, ...), so a module variable's file key is its dotted path plus these rules:

1. **Key views.** A component's keys sit under prefixes in the file (`model.diffusion_model.`,
   `vae.decoder.`, ...); a `Component` lists `(module path prefix, file key prefix)` pairs, first match wins.
2. **Stacking.** A module path under a stacked prefix (e.g. `transformer_blocks`, whose blocks are created
   with `nnx.vmap` and run with `nnx.scan`) holds an array with a leading layer axis; its layer `i` is the
   file key with `<prefix>.<i>.` in place of `<prefix>.`.
3. **Names NNX cannot hold.** Official buffer names with a hyphen (`mean-of-means`) are module attributes
   with an underscore (`mean_of_means`).

A `Component` is data (plus its config reader, which depends on configs only): the model side binds its
constructor (`loader.bind`). Adding a component is one entry in `LAYOUT` plus its module.

Counterparts: the SDOps key maps of ltx_core `loader/sd_ops.py` and `ltx_pipelines/utils/model_ledger.py`
(`LTXV_MODEL_COMFY_RENAMING_MAP`, `VAE_*_COMFY_KEYS_FILTER`, `EMBEDDINGS_PROCESSOR_KEY_OPS`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flax import nnx

from ltx_jax.configs import from_metadata, upsampler_from_metadata, vae_config_from_metadata
from ltx_jax.checkpoint.errors import LoadError
from ltx_jax.checkpoint.source import Source
from ltx_jax.checkpoint.tae_layout import tae_config_from_shapes

__all__ = ["LoadError", "Component", "LAYOUT", "FILE_GROUPS", "file_group", "module_keys", "file_keys",
           "expected_keys", "mismatch", "match", "read_ltx_config", "TRANSFORMER_PREFIX", "CONNECTOR_PREFIXES",
           "TEXT_PROJECTION_PREFIX", "VAE_PREFIX", "VAE_STATISTICS_PREFIX", "AUDIO_VAE_PREFIX", "VOCODER_PREFIX"]

TRANSFORMER_PREFIX = "model.diffusion_model."
CONNECTOR_PREFIXES = {"video": "model.diffusion_model.video_embeddings_connector.",
                      "audio": "model.diffusion_model.audio_embeddings_connector."}
TEXT_PROJECTION_PREFIX = "text_embedding_projection."
VAE_PREFIX = "vae."
VAE_STATISTICS_PREFIX = "vae.per_channel_statistics."
AUDIO_VAE_PREFIX = "audio_vae."
VOCODER_PREFIX = "vocoder."
_TEXT_PREFIXES = (TEXT_PROJECTION_PREFIX, *CONNECTOR_PREFIXES.values())
# The statistics both VAE halves hold; files may carry more (`channel`, `mean-of-stds`, ...), which ltx-core
# ignores and so do we.
_USED_STATISTICS = tuple(VAE_STATISTICS_PREFIX + s for s in ("mean-of-means", "std-of-means"))

# Groups of a single-file checkpoint's keys (what `inspect` lists and `convert --components` selects), first
# match wins: the connectors share the DiT's prefix.
FILE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("connectors", _TEXT_PREFIXES),
    ("transformer", (TRANSFORMER_PREFIX,)),
    ("vae_encoder", ("vae.encoder.",)),
    ("vae_decoder", ("vae.decoder.",)),
    ("vae_statistics", (VAE_STATISTICS_PREFIX,)),
    ("audio_vae_encoder", ("audio_vae.encoder.",)),
    ("audio_vae_decoder", ("audio_vae.decoder.",)),
    ("audio_vae_statistics", ("audio_vae.per_channel_statistics.",)),
    ("vocoder", (VOCODER_PREFIX,)),
)


def file_group(key: str) -> str:
    """The group (transformer, connectors, vae_encoder, ...) a single-file checkpoint key belongs to, or `other`."""
    for name, prefixes in FILE_GROUPS:
        if key.startswith(prefixes):
            return name
    return "other"


def read_ltx_config(source: Source):
    """The `LTXConfig` of a single-file checkpoint (metadata `config` JSON; text depth from the projection)."""
    return from_metadata(source.metadata, tensor_shapes={k: s.shape for k, s in source.specs().items()})


@dataclass(frozen=True)
class Component:
    """How one component sits in the official file. Data only; `loader.bind` attaches the module constructor.

    Attributes:
        name: the component name (`restore(src, name)`).
        views: `(module path prefix, file key prefix)` pairs; the first whose module prefix starts the key wins.
        stacked: module path prefixes whose variables carry a leading layer axis (rule 2).
        owns: file key prefixes of this component (None: every key of the file), ...
        owned_keys: ... plus these exact keys, ...
        excluded: ... minus keys with these prefixes. Every owned key must be consumed (strictness).
        config: reads the component config from a source (metadata or tensor shapes).
        checks: `(config, source) -> None` run before matching, for errors clearer than a key list.
    """

    name: str
    views: tuple[tuple[str, str], ...] = (("", ""),)
    stacked: tuple[str, ...] = ()
    owns: tuple[str, ...] | None = None
    owned_keys: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    config: Callable[[Source], Any] | None = None
    checks: tuple[Callable[[Any, Source], None], ...] = ()

    def to_file(self, module_key: str) -> str:
        for module_prefix, file_prefix in self.views:
            if module_key.startswith(module_prefix):
                return file_prefix + module_key[len(module_prefix):]
        raise LoadError(f"{self.name}: module path {module_key!r} is under no key view of the component")

    def owns_key(self, key: str) -> bool:
        if key in self.owned_keys:
            return True
        owned = self.owns is None or key.startswith(self.owns)
        return owned and not (self.excluded and key.startswith(self.excluded))


def _to_official(name: str) -> str:
    return name.replace("_of_", "-of-") if re.search(r"per_channel_statistics\.\w+_of_\w+$", name) else name


def module_keys(state: nnx.State, stacked: Sequence[str] = ()) -> dict[str, tuple[tuple, tuple[int, ...], int | None]]:
    """{module-view key (with `{i}` for a stacked layer index): (state path, shape, stacked axis length)}."""
    out = {}
    for path, var in nnx.to_flat_state(state):
        key, layers = _to_official(".".join(str(p) for p in path)), None
        for prefix in stacked:
            if key.startswith(prefix + "."):
                key = prefix + ".{i}." + key[len(prefix) + 1:]
                layers = var.shape[0]
                break
        out[key] = (path, tuple(var.shape), layers)
    return out


def file_keys(component: Component, state: nnx.State) -> dict[tuple, tuple[list[str], tuple[int, ...], bool]]:
    """{state path: (file keys, the shape each file key has, stacked)}: one key, or one per layer."""
    out = {}
    for view_key, (path, shape, layers) in module_keys(state, component.stacked).items():
        if layers is None:
            out[path] = ([component.to_file(view_key)], tuple(shape), False)
        else:
            out[path] = ([component.to_file(view_key.format(i=i)) for i in range(layers)], tuple(shape[1:]), True)
    return out


def expected_keys(component: Component, state: nnx.State) -> dict[str, tuple[int, ...]]:
    """{file key: shape} a module state needs from the file (one key per layer for stacked variables)."""
    return {k: shape for keys, shape, _ in file_keys(component, state).values() for k in keys}


def _listing(label: str, items: Sequence[str]) -> str:
    return f"{len(items)} {label}: " + ", ".join(items[:8]) + (" ..." if len(items) > 8 else "")


def mismatch(expected: Mapping[str, tuple[int, ...]], available: Mapping[str, tuple[int, ...]],
             extra_ok: Callable[[str], bool] = lambda k: False) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, wrong-shape) keys of `available` against `expected` ({key: shape} both)."""
    missing = [k for k in expected if k not in available]
    wrong = [k for k, s in expected.items() if k in available and tuple(available[k]) != tuple(s)]
    unexpected = sorted(k for k in available if k not in expected and not extra_ok(k))
    return missing, unexpected, wrong


def match(name: str, what: str, expected: Mapping[str, tuple[int, ...]], available: Mapping[str, tuple[int, ...]],
          extra_ok: Callable[[str], bool] = lambda k: False, error: type[Exception] = LoadError) -> None:
    """The one strict matcher: every expected key present with its shape, and no other key (unless `extra_ok`).

    Raises:
        `error` (LoadError): naming the missing, unexpected and mis-shaped keys, with `name` and `what`.
    """
    missing, unexpected, wrong = mismatch(expected, available, extra_ok)
    wrong = [f"{k}: file {tuple(available[k])}, model {tuple(expected[k])}" for k in wrong]
    parts = [_listing(label, items) for label, items in (("missing", missing), ("unexpected", unexpected),
                                                         ("wrong shape", wrong)) if items]
    if parts:
        raise error(f"{name}: keys do not match {what}; " + "; ".join(parts))


# ------------------------------------------------------------------------------------------- checks


def _family(present: Iterable[str]) -> str:
    present = set(present)
    return "LTX-2.3" if "prompt_adaln_single" in present else "LTX-2" if "caption_projection" in present else "unknown"


def _check_transformer(config, source: Source) -> None:
    """The variant-defining modules the config asks for against those the file has; stray keys."""
    keys, name = source.specs(), source.name
    if not any(k.startswith(TRANSFORMER_PREFIX + "transformer_blocks.") for k in keys):
        raise LoadError(f"{name}: no transformer keys ({TRANSFORMER_PREFIX}transformer_blocks.*): not an LTX-2 "
                        "DiT checkpoint")
    features = {  # name: (in the file, wanted by the config)
        "caption_projection": (f"{TRANSFORMER_PREFIX}caption_projection.linear_1.weight" in keys,
                               config.has_caption_projection),
        "prompt_adaln_single": (f"{TRANSFORMER_PREFIX}prompt_adaln_single.linear.weight" in keys,
                                config.cross_attention_adaln),
        "to_gate_logits": (f"{TRANSFORMER_PREFIX}transformer_blocks.0.attn1.to_gate_logits.weight" in keys,
                           config.apply_gated_attention),
    }
    if any(has != want for has, want in features.values()):
        present = sorted(k for k, (has, _) in features.items() if has)
        wanted = sorted(k for k, (_, want) in features.items() if want)
        raise LoadError(
            f"{name}: checkpoint is an {_family(present)} layout (has {present or 'none'} of caption_projection/"
            f"prompt_adaln_single/to_gate_logits) but the config is {_family(wanted)} (wants {wanted or 'none'});"
            " wrong variant for this config")
    stray = sorted(k for k in keys if file_group(k) == "other")
    if stray:
        raise LoadError(f"{name}: {len(stray)} keys belong to no known component: {', '.join(stray[:8])}"
                        + (" ..." if len(stray) > 8 else ""))


def _check_text(config, source: Source) -> None:
    keys, name = source.specs(), source.name
    have = ("v1 (LTX-2)" if f"{TEXT_PROJECTION_PREFIX}aggregate_embed.weight" in keys else
            "v2 (LTX-2.3)" if f"{TEXT_PROJECTION_PREFIX}video_aggregate_embed.weight" in keys else None)
    want = "v1 (LTX-2)" if config.feature_extractor == "v1" else "v2 (LTX-2.3)"
    if have is None:
        raise LoadError(f"{name}: no text projection ({TEXT_PROJECTION_PREFIX}*aggregate_embed): the file holds no "
                        "text embeddings processor")
    if have != want:
        raise LoadError(f"{name}: checkpoint has feature extractor {have} but the config wants {want}; "
                        "wrong variant for this config")


def _vae(part: str) -> Component:
    # Encoder and decoder each hold the statistics the file stores once, under vae.per_channel_statistics.
    return Component(f"vae_{part}", views=(("per_channel_statistics.", VAE_STATISTICS_PREFIX),
                                           ("", f"{VAE_PREFIX}{part}.")),
                     owns=(f"{VAE_PREFIX}{part}.",), owned_keys=_USED_STATISTICS,
                     config=lambda s: vae_config_from_metadata(s.metadata))


# The official layout: one entry per component.
LAYOUT: dict[str, Component] = {c.name: c for c in (
    Component("transformer", views=(("", TRANSFORMER_PREFIX),), stacked=("transformer_blocks",),
              owns=(TRANSFORMER_PREFIX,), excluded=tuple(CONNECTOR_PREFIXES.values()),
              config=lambda s: read_ltx_config(s).transformer, checks=(_check_transformer,)),
    Component("text_embeddings", views=(("feature_extractor.", TEXT_PROJECTION_PREFIX),
                                        ("video_connector.", CONNECTOR_PREFIXES["video"]),
                                        ("audio_connector.", CONNECTOR_PREFIXES["audio"])),
              stacked=("video_connector.transformer_1d_blocks", "audio_connector.transformer_1d_blocks"),
              owns=_TEXT_PREFIXES, config=lambda s: read_ltx_config(s).connector, checks=(_check_text,)),
    _vae("encoder"),
    _vae("decoder"),
    Component("upsampler", config=lambda s: upsampler_from_metadata(s.metadata)),  # its own file, no prefix
    Component("tae", config=lambda s: tae_config_from_shapes({k: v.shape for k, v in s.specs().items()})),
    # The Gemma-3 text decoder from a Hugging Face folder (`gemma_folder.GemmaFolder` presents the language model
    # as `language_model.model.*`; its vision tower / projector keys are other components, not owned here).
    Component("gemma_text", views=(("", "language_model.model."),), stacked=("layers",),
              owns=("language_model.model.",), config=lambda s: s.config),
)}
