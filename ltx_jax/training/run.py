"""`ltx-jax train CONFIG.toml`: load, train, log, checkpoint, sample, export the LoRA.

Counterpart: ltx-trainer `LtxvTrainer.train` (its loop, progress display, checkpoint interval, validation
sampling). Logging: one JSON line per `log_every` steps in `<output>/log.jsonl` (step, loss and its parts,
grad norm, lr, step time, tokens/s, samples/s). Checkpoints: `<output>/checkpoints/<step>/` (Orbax, see
`training.checkpoints`); a run started on an output folder that holds one resumes from the latest.
The trained LoRA goes to `<output>/lora.safetensors` (official layout; `lora_ema.safetensors` with EMA); a full
fine-tuning to `<output>/model.safetensors` (the official single file: the trained transformer plus the base
checkpoint's other components, `training.export`; `model_ema.safetensors` with EMA).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp

from ltx_jax.configs import Runtime
from ltx_jax.sharding import attention_plan, shard_state
from ltx_jax.training.checkpoints import TrainCheckpoints
from ltx_jax.training.config import ConfigError, TrainConfig
from ltx_jax.training.data import CachedDataset
from ltx_jax.training.lora import add_lora, save_lora
from ltx_jax.training.sharding import place_batch, train_mesh, train_rules
from ltx_jax.training.step import Trainer

__all__ = ["build", "train"]


def _runtime(config: TrainConfig) -> Runtime:
    """The base's runtime. An FP8 base keeps the file's e4m3 weights with their scales (`Runtime.fp8="weights"`:
    each matmul dequantizes `q * weight_scale` to the compute dtype); its other tensors load in bf16. LoRA
    factors stay float32 masters on top (`training.lora`), so gradients never touch the e4m3 values."""
    m = config.model
    if m.base_dtype == "fp8":
        return Runtime(param_dtype="bfloat16", compute_dtype=m.compute_dtype, remat=m.remat, fp8="weights")
    return Runtime(param_dtype=m.base_dtype, compute_dtype=m.compute_dtype, remat=m.remat)


def _check_fp8_file(path: str) -> None:
    """An FP8 base is restored from a file that holds FP8 weights (an official `*-fp8.safetensors` or the output
    of `ltx-jax quantize`); a bf16 / f32 file is refused here rather than quantized on the fly."""
    from ltx_jax.checkpoint.fp8_restore import fp8_layers
    from ltx_jax.checkpoint.open import open_source

    source = open_source(path)
    try:
        found = fp8_layers(source)
    finally:
        source.close()
    if not found:
        raise ConfigError(f"model.base_dtype='fp8' but {path} holds no FP8 weights; use an FP8 file (the official "
                          "*-fp8.safetensors) or write one with `ltx-jax quantize IN OUT`")


def _empty_context(config: TrainConfig):
    if config.data.empty_prompt is None:
        return None
    from ltx_jax.pipelines.stages import load_prompt

    p = load_prompt(config.data.empty_prompt).positive
    return jnp.asarray(p.video[0], jnp.float32), jnp.asarray(p.audio[0], jnp.float32)


def build(config: TrainConfig, model=None):
    """(trainer, dataset, rules): the model restored (into the mesh), adapters added, the data opened."""
    from ltx_jax.checkpoint import restore

    mesh_cfg = config.mesh
    rules = None
    if mesh_cfg.data * mesh_cfg.context * mesh_cfg.tensor > 1:
        rules = train_rules(train_mesh(mesh_cfg.data, mesh_cfg.context, mesh_cfg.tensor), fsdp=mesh_cfg.fsdp)
    if config.data.batch_size % mesh_cfg.data:
        raise ConfigError(f"data.batch_size={config.data.batch_size} must be a multiple of mesh.data={mesh_cfg.data}")
    dataset = CachedDataset(config.data.cache, batch_size=config.data.batch_size, seed=config.data.seed,
                            with_audio=config.data.with_audio)
    if model is None:
        if config.model.base_dtype == "fp8":
            _check_fp8_file(config.model.checkpoint)
        model = restore(config.model.checkpoint, "transformer", runtime=_runtime(config), shardings=rules)
    if config.model.mode == "lora":
        add_lora(model, config.lora, seed=config.data.seed)
    trainer = Trainer(model, mode=config.model.mode, objective=config.objective, optim=config.optim,
                      empty_context=_empty_context(config),
                      shard=(lambda s: shard_state(s, rules)) if rules is not None else None,
                      plan=attention_plan(rules) if mesh_cfg.context > 1 else None)
    return trainer, dataset, rules


def _progress(enabled: bool, total: int, start: int):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("{task.fields[info]}"))
    bar.start()
    bar.add_task("train", total=total, completed=start, info="")
    return bar


def _sample(config: TrainConfig, lora: Path, step: int, log: Callable[[str], None]) -> None:
    """A dev one-stage generation with the current LoRA (official merge path), written under samples/."""
    from ltx_jax.pipelines import Request, load_models, load_prompt
    from ltx_jax.pipelines.generation import dev_one_stage
    from ltx_jax.pipelines.media import write_frames

    s = config.sample
    models = load_models(config.model.checkpoint, loras=[(lora, 1.0)] if config.model.mode == "lora" else [],
                         runtime=Runtime(param_dtype="bfloat16", compute_dtype=config.model.compute_dtype))
    guidance = {}
    if s.guidance == "none":
        from ltx_jax.sampling.guidance import GuiderParams
        guidance = {"video": GuiderParams(), "audio": GuiderParams()}
    out = dev_one_stage(models, load_prompt(s.prompt), Request(frames=s.frames, height=s.height, width=s.width,
                                                                fps=s.fps, seed=s.seed), steps=s.steps, **guidance)
    written = write_frames(Path(config.output.dir) / "samples" / f"step{step:06d}", out.frames_uint8(), s.fps,
                           formats=("npz", "mp4"))
    log(f"sample at step {step}: {written[-1]}")


def train(config: TrainConfig, *, stop_after: int | None = None, model=None,
          log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the training described by `config`; returns a summary with the per-step losses.

    Args:
        stop_after: stop after this many steps of this call (an interruption, for tests and time-boxed jobs);
            the state is checkpointed before returning.
        model: an already-built `LTXModel` instead of restoring `model.checkpoint` (tests, benchmarks).
    """
    if config.sample.every and config.model.mode == "full":
        raise ConfigError("[sample] with model.mode='full' is not supported yet (samples load the checkpoint "
                          "with the LoRA merged)")
    if config.sample.every and not config.sample.prompt:
        raise ConfigError("[sample] every > 0 needs sample.prompt (a prompt .npz)")
    out = Path(config.output.dir)
    out.mkdir(parents=True, exist_ok=True)
    trainer, dataset, rules = build(config, model)
    record = {"seed": config.data.seed, "data": dataset.fingerprint, "mode": config.model.mode,
              "batch_size": config.data.batch_size}
    ckpts = TrainCheckpoints(out / "checkpoints", keep=config.output.keep, async_save=config.output.async_save)
    state = trainer.init(config.data.seed)
    start = 0
    if ckpts.latest_step() is not None:
        state = ckpts.restore(state, record)
        start = int(jax.device_get(state.step))
        log(f"resumed from {ckpts.directory}/{start}")
    total = config.optim.steps
    bar = _progress(config.output.progress, total, start)
    losses, last_saved, done = {}, start, 0
    tokens_per_sample = None
    try:
        with (out / "log.jsonl").open("a") as jl:
            for step in range(start, total):
                t0 = time.perf_counter()
                batch = place_batch(dataset.batch(step), rules)
                state, metrics = trainer.step(state, batch)
                if (step + 1) % config.output.log_every == 0 or step + 1 == total:
                    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                    dt = time.perf_counter() - t0
                    tokens_per_sample = batch.video.shape[1] + (batch.audio.shape[1] if batch.audio is not None else 0)
                    b = batch.video.shape[0]
                    row = {"step": step + 1, **metrics, "step_time_s": dt, "samples_per_s": b / dt,
                           "tokens_per_s": b * tokens_per_sample / dt}
                    jl.write(json.dumps(row) + "\n")
                    jl.flush()
                    losses[step + 1] = metrics["loss"]
                    if bar is not None:
                        bar.update(bar.task_ids[0], completed=step + 1, info=f"loss {metrics['loss']:.4f}")
                if (step + 1) % config.output.checkpoint_every == 0:
                    ckpts.save(state, record)
                    last_saved = step + 1
                if config.sample.every and (step + 1) % config.sample.every == 0 and config.model.mode == "lora":
                    _sample(config, save_lora(trainer.model(state), out / "samples" / f"lora_step{step + 1:06d}"
                                              ".safetensors"), step + 1, log)
                done += 1
                if stop_after is not None and done >= stop_after:
                    break
        final = int(jax.device_get(state.step))
        if final != last_saved:
            ckpts.save(state, record, force=True)
        ckpts.wait()
    finally:
        if bar is not None:
            bar.stop()
        ckpts.close()
    summary = {"steps": final, "losses": losses, "trained_parameters": trainer.num_trained}
    if config.model.mode == "lora" and final == total:
        summary["lora"] = str(save_lora(trainer.model(state), out / "lora.safetensors", config.lora.save_dtype))
        if state.ema is not None:
            summary["lora_ema"] = str(save_lora(trainer.model(state, ema=True), out / "lora_ema.safetensors",
                                                config.lora.save_dtype))
    if config.model.mode == "full" and final == total:
        from ltx_jax.training.export import save_full_checkpoint

        for name, ema in (("model", False), ("model_ema", True)):
            if not ema or state.ema is not None:
                summary[name] = str(save_full_checkpoint(trainer.model(state, ema=ema), config.model.checkpoint,
                                                         out / f"{name}.safetensors", dtype=config.output.export_dtype))
    summary["state"] = state
    return summary
