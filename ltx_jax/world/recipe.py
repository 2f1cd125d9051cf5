"""The one command that reproduces the embedded default from scratch (issue 17): `ltx-jax world-default`.

No ltx_core counterpart. `reproduce(out, recipe)` runs, each stage resumable and skipped once finished:
  1. `vae/`      the video VAE on the world (`world.train_vae`);
  1b. `decoder/` its decoder trained on with the encoder frozen (`world.train_decoder`): the shipped decoder;
                 every later stage encodes with stage 1's encoder, which this stage keeps bit for bit;
  2. `dit/`      the dev DiT on the world with flow matching and caption dropout (`world.train_dit`);
  3. `audio/`    the audio VAE decoder and the vocoder, for the DiT's (still random) audio encoder
                 (`world.train_audio`);
  4. `distill/`  the 8-step CFG-free student (`world.distill`, linear weights only);
  5. `default/`  the packaged files (`world.package`), then the prompt adherence of the packaged dev model and its
                 LoRA student on `recipe.prompts` held-out prompts, written into the manifest;
and, when asked, copies `default/` to the package's data folder. `recipe.json` pins the recipe and the source
code's fingerprint at the start; a folder started with another recipe is refused. `stages.json` records each
stage's seconds. With `beside=True` (the `world-default` command's default) the decoder and audio stages run in
second processes beside the DiT, the decoder stage on beside the distillation. Stage times: README "Training the
embedded default".
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ltx_jax.world.distill import DistillConfig
from ltx_jax.world.package import MANIFEST
from ltx_jax.world.train_audio import AudioTrainConfig
from ltx_jax.world.train_decoder import DecoderTrainConfig
from ltx_jax.world.train_dit import DiTTrainConfig
from ltx_jax.world.train_vae import VAETrainConfig

__all__ = ["Recipe", "reproduce", "adherence", "measure_default", "install_default", "record_stage", "STAGES"]

STAGES = ("vae", "decoder", "dit", "audio", "distill")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recipe:
    vae: VAETrainConfig = dataclasses.field(default_factory=VAETrainConfig)
    decoder: DecoderTrainConfig = dataclasses.field(default_factory=DecoderTrainConfig)
    dit: DiTTrainConfig = dataclasses.field(default_factory=DiTTrainConfig)
    audio: AudioTrainConfig = dataclasses.field(default_factory=AudioTrainConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    prompts: int = 64          # held-out prompts of the adherence check (0: none)
    dev_steps: int = 32        # the dev model's sampler in that check: steps and video CFG
    dev_cfg: float = 2.0       # the shipped dev model's best (64 held-out prompts: colour 96.9%; official CFG 3: 90.6%)
    dev_audio_cfg: float = 7.0  # the official dev default

    def __post_init__(self):
        if self.prompts < 0 or self.dev_steps < 1:
            raise ValueError(f"world recipe: prompts={self.prompts} must be >= 0 and dev_steps={self.dev_steps} >= 1")

    @classmethod
    def tiny(cls) -> Recipe:
        """A few steps of every stage at 9 x 32 x 32 (the CI test of the command)."""
        return cls(vae=VAETrainConfig(latent_channels=16, decoder_base_channels=8, frames=9, height=32, width=32,
                                      batch=2, steps=2, warmup_steps=1, save_every=2, held_out_clips=8),
                   decoder=DecoderTrainConfig(steps=2, batch=2, warmup_steps=1, pool=4, save_every=2),
                   dit=DiTTrainConfig(clips=8, layers=2, steps=16, batch=4, learning_rate=3e-3, warmup_steps=2,
                                      checkpoint_every=4, log_every=1, caption_dropout_p=0.25),
                   audio=AudioTrainConfig(steps=4, batch=2, warmup_steps=1, save_every=2, held_out_clips=2),
                   distill=DistillConfig(steps=10, batch=4, learning_rate=1e-3, warmup_steps=1, substeps=1,
                                         checkpoint_every=5),
                   prompts=2, dev_steps=2)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: Mapping) -> Recipe:
        return cls(**{k: _PARTS[k](**v) if k in _PARTS else v for k, v in d.items()})

    def override(self, items: Sequence[str]) -> Recipe:
        """This recipe with `STAGE.FIELD=VALUE` (or `FIELD=VALUE` for the recipe's own fields) changes applied in
        order; VALUE is JSON (`3`, `0.5`, `true`, `[10, 16]`) or else a plain string. Unknown names are refused."""
        d = self.to_json()
        for item in items:
            key, sep, text = item.partition("=")
            if not sep or not key:
                raise ValueError(f"recipe override {item!r}: expected STAGE.FIELD=VALUE")
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text
            stage, _, field = key.rpartition(".")
            if stage and stage not in _PARTS:
                raise ValueError(f"recipe override {item!r}: no stage {stage!r} (stages: {', '.join(_PARTS)})")
            target = d[stage] if stage else d
            if field not in target or isinstance(target[field], dict):
                names = sorted(k for k, v in target.items() if not isinstance(v, dict))
                raise ValueError(f"recipe override {item!r}: no field {field!r} in {stage or 'the recipe'} "
                                 f"(fields: {', '.join(names)})")
            old = target[field]  # keep the field's type where JSON has a narrower one (3 -> 3.0, [..] -> (..))
            value = (float(value) if isinstance(old, float) and type(value) is int
                     else tuple(value) if isinstance(old, tuple) and isinstance(value, list) else value)
            if old is not None and type(value) is not type(old):
                raise ValueError(f"recipe override {item!r}: {key} expects type {type(old).__name__} "
                                 f"(now {old!r}), not {value!r}")
            target[field] = value
        return Recipe.from_json(d)


_PARTS = {"vae": VAETrainConfig, "decoder": DecoderTrainConfig, "dit": DiTTrainConfig, "audio": AudioTrainConfig,
          "distill": DistillConfig}


def _pin(out: Path, recipe: Recipe) -> None:
    from ltx_jax.world.package import code_fingerprint, machine_info

    path = out / "recipe.json"
    if path.exists():
        old, new = json.loads(path.read_text())["recipe"], json.loads(json.dumps(recipe.to_json()))
        if old != new:
            changed = sorted(k for k in old if old[k] != new.get(k))
            raise ValueError(f"{out}: was started with another recipe (differs in {changed}); use a new --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".recipe.json.tmp")
    tmp.write_text(json.dumps({"recipe": recipe.to_json(), "code": code_fingerprint(),
                               "machine": machine_info()}, indent=1) + "\n")
    tmp.replace(path)


def record_stage(out: Path, name: str, seconds: float) -> None:
    """Add `seconds` to stage `name` in `out/stages.json` (summed over resumed calls)."""
    path = out / "stages.json"
    stages = json.loads(path.read_text()) if path.exists() else {}
    stages[name] = round(stages.get(name, 0.0) + seconds, 1)  # summed over resumed calls
    path.write_text(json.dumps(stages, indent=1) + "\n")


def adherence(default: Path, recipe: Recipe, log: Callable[[str], None]) -> dict:
    """The packaged dev model (`recipe.dev_steps`, CFG `recipe.dev_cfg` on the video and `recipe.dev_audio_cfg` on
    the audio) and its LoRA student (8 distilled sigmas,
    CFG 1) on the first `recipe.prompts` held-out prompts (world seed `recipe.vae.held_out_seed`)."""
    from ltx_jax.world.adherence import AdherenceRun, generate_world, held_out_scenes, score
    from ltx_jax.world.package import GEMMA, LORA, MODEL

    v = recipe.vae
    scenes = held_out_scenes(recipe.prompts, seed=v.held_out_seed, frames=v.frames, height=v.height, width=v.width)
    captions = [s.caption for s in scenes]
    size = dict(frames=v.frames, height=v.height, width=v.width)
    report = {"prompts": recipe.prompts, "world_seed": v.held_out_seed}
    for name, run, loras in (("dev", AdherenceRun(steps=recipe.dev_steps, cfg=recipe.dev_cfg,
                                                  audio_cfg=recipe.dev_audio_cfg, **size), ()),
                             ("student", AdherenceRun(pipeline="distilled", **size), ((default / LORA, 1.0),))):
        t0 = time.perf_counter()
        clips, evals = generate_world(default / MODEL, default / GEMMA, captions, run, loras=loras)
        result = score(scenes, clips, with_audio=True)
        dev = name == "dev"
        report[name] = {"pipeline": run.pipeline, "steps": run.steps if dev else 8, "cfg": run.cfg if dev else 1.0,
                        "audio_cfg": run.audio_cfg if dev else 1.0, "transformer_evaluations": evals,
                        "scores": result["scores"], "seconds": round(time.perf_counter() - t0, 1)}
        log(f"adherence {name}: {report[name]['scores']} at {evals} evaluations")
    report["evaluation_ratio"] = report["dev"]["transformer_evaluations"] / report["student"]["transformer_evaluations"]
    return report


def install_default(default: Path, install: Path, log: Callable[[str], None]) -> None:
    """Copy the packaged folder `default` over `install` (staged in a hidden sibling, then renamed)."""
    stage = install.with_name(f".{install.name}.partial")
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(default, stage)
    if install.exists():
        shutil.rmtree(install)
    stage.rename(install)
    log(f"installed the default in {install}")


def measure_default(default: Path, recipe: Recipe, out: Path, log: Callable[[str], None]) -> dict:
    """The packaged `default`'s manifest with its adherence measured (`adherence`) and the stage times of `out`."""
    manifest = json.loads((default / MANIFEST).read_text())
    t0 = time.perf_counter()
    manifest["adherence"] = adherence(default, recipe, log)
    record_stage(out, "adherence", time.perf_counter() - t0)
    manifest["stages"] = {**manifest.get("stages", {}), **json.loads((out / "stages.json").read_text())}
    tmp = default / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(default / MANIFEST)
    return manifest


_DONE = {"vae": "vae/video_vae.json", "decoder": "decoder/video_vae.json", "dit": "dit/train/model.safetensors",
         "audio": "audio/audio.json", "distill": "distill/student.safetensors"}  # written when a stage finishes


def run_stage(name: str, out: Path, recipe: Recipe, *, stop_after: int | None = None,
              log: Callable[[str], None] = print) -> tuple[dict, bool]:
    """Run (or resume) stage `name` of the run `out`; returns (its summary, whether it finished)."""
    v = recipe.vae
    if name == "vae":
        from ltx_jax.world.train_vae import train_video_vae
        r = train_video_vae(out / "vae", v, stop_after=stop_after, log=log)
        return r, r["step"] >= v.steps
    if name == "decoder":
        from ltx_jax.world.train_decoder import train_decoder
        r = train_decoder(out / "decoder", out / "vae", recipe.decoder, stop_after=stop_after, log=log)
        return r, r["step"] >= recipe.decoder.steps
    if name == "dit":
        from ltx_jax.world.train_dit import train_dit
        from ltx_jax.world.train_vae import load_trained, video_vae_config
        vae_cfg, weights = load_trained(out / "vae")
        r = train_dit(out / "dit", weights, video_vae_config(vae_cfg), recipe.dit, frames=v.frames,
                      height=v.height, width=v.width, stop_after=stop_after, log=log)
        return r, "model" in r
    if name == "audio":  # on the DiT's base file, whose audio VAE the trained file keeps
        from ltx_jax.world.train_audio import train_audio
        r = train_audio(out / "audio", out / "dit" / "base.safetensors", recipe.audio, frames=v.frames,
                        height=v.height, width=v.width, stop_after=stop_after, log=log)
        return r, r["step"] >= recipe.audio.steps
    if name == "distill":
        from ltx_jax.world.distill import distill
        r = distill(out / "dit", out / "distill", recipe.distill, stop_after=stop_after, log=log)
        return r, "student" in r
    raise ValueError(f"unknown stage {name!r}; stages are {STAGES}")


def _beside(out: Path, name: str) -> subprocess.Popen:
    """Stage `name` of `out` (its pinned recipe) in a second process (`python -m ltx_jax.world.recipe`); its log
    lines go to stderr prefixed with the stage, its summary to stdout."""
    return subprocess.Popen([sys.executable, "-m", "ltx_jax.world.recipe", str(out), name], stdout=subprocess.PIPE,
                            text=True)


def _join(side: dict[str, subprocess.Popen], out: Path, summary: dict) -> None:
    """Wait for the stages running beside; record their seconds and summaries (raises if one failed)."""
    for name, proc in list(side.items()):
        lines = proc.communicate()[0].strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"the {name} stage beside the DiT failed (exit {proc.returncode}); its log is above")
        summary["stages"][name] = json.loads(lines[-1])
        record_stage(out, name, summary["stages"][name]["seconds"])
        del side[name]


def reproduce(out: str | Path, recipe: Recipe, *, stop_after: Mapping[str, int] | None = None,
              until: str | None = None, install: str | Path | None = None, beside: bool = False,
              log: Callable[[str], None] = print) -> dict:
    """Run (or resume) every stage of `recipe` in `out` (see the module docstring).

    Args:
        stop_after: {stage: steps}: stop that stage after this many steps of this call (with a checkpoint), and
            return without running later stages (for tests of resumption).
        until: return once this stage (of `STAGES`) is finished, before packaging.
        install: copy the packaged `default/` here when done (the package's `DEFAULT_DIR` for a release).
        beside: run the decoder and audio stages in second processes beside the DiT (they need only stage 1 and
            the DiT's base file): the same results (every stage's data is a function of its seed and step), in
            less time where one process does not use every core (on the 2-core machine). Not with `stop_after`.

    Returns:
        {"finished": bool, "stages": {stage: summary}, and when finished "default" (the packaged folder) and
        "manifest"}.
    """
    from ltx_jax.world.package import package
    from ltx_jax.world.train_dit import prepare
    from ltx_jax.world.train_vae import load_trained, video_vae_config

    out, stop_after = Path(out), dict(stop_after or {})
    unknown = (set(stop_after) | ({until} if until else set())) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {STAGES}")
    if beside and stop_after:
        raise ValueError("reproduce: beside=True runs stages in other processes; it cannot stop them (stop_after)")
    _pin(out, recipe)
    summary: dict = {"finished": False, "stages": {}}
    side: dict[str, subprocess.Popen] = {}
    try:
        for name in STAGES:
            finished = (out / _DONE[name]).exists()
            if beside and name == "decoder" and not finished:
                side[name] = _beside(out, name)  # needs only stage 1
            if beside and name == "dit" and not (out / _DONE["audio"]).exists():
                vae_cfg, weights = load_trained(out / "vae")
                v = recipe.vae
                prepare(out / "dit", weights, video_vae_config(vae_cfg), recipe.dit, frames=v.frames, height=v.height,
                        width=v.width, log=log)  # the DiT's base file, the audio stage's input (idempotent)
                side["audio"] = _beside(out, "audio")
            if not finished and name not in side:
                t0 = time.perf_counter()
                result, done = run_stage(name, out, recipe, stop_after=stop_after.get(name), log=log)
                record_stage(out, name, time.perf_counter() - t0)
                summary["stages"][name] = result
                if not done:
                    return summary
            if until == name:
                _join(side, out, summary)
                return summary
        _join(side, out, summary)  # the decoder stage runs on beside the distillation: only packaging needs it
    finally:  # a failure here (or beside) leaves no stage running
        for proc in side.values():
            proc.kill()
            proc.wait()
    default = out / "default"
    if not (default / MANIFEST).exists():
        t0 = time.perf_counter()
        package(out, default, overwrite=True)
        record_stage(out, "package", time.perf_counter() - t0)
    manifest = json.loads((default / MANIFEST).read_text())
    if recipe.prompts and manifest.get("adherence") is None:
        manifest = measure_default(default, recipe, out, log)
        summary["stages"]["adherence"] = manifest["adherence"]
    if install is not None:
        install_default(default, Path(install), log)
    summary.update(finished=True, default=str(default), manifest=manifest)
    return summary


def _main(argv: list[str]) -> int:
    """`python -m ltx_jax.world.recipe OUT STAGE`: one stage of a pinned run (`reproduce(beside=True)`)."""
    if len(argv) != 2 or argv[1] not in STAGES:
        print(f"usage: python -m ltx_jax.world.recipe RUN_FOLDER STAGE (STAGE one of {', '.join(STAGES)})",
              file=sys.stderr)
        return 2
    out, name = Path(argv[0]), argv[1]
    if not (out / "recipe.json").exists():
        print(f"error: {out}: no recipe.json; start the run with `ltx-jax world-default --out {out}`", file=sys.stderr)
        return 2
    recipe = Recipe.from_json(json.loads((out / "recipe.json").read_text())["recipe"])
    result, _ = run_stage(name, out, recipe, log=lambda m: print(f"[{name}] {m}", file=sys.stderr, flush=True))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
