"""Training: flow-matching objective, LoRA / full fine-tuning, the jitted step, Orbax checkpoints, cached data.

Counterpart: Lightricks' ltx-trainer (PyTorch). Sits beside `pipelines` in the layer order: it imports
models, sampling, checkpoint I/O and nn; only the CLI imports it.
"""
