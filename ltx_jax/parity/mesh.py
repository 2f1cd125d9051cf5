"""The parity checks under a device mesh (`experiments/parity.py FIXTURE --mesh data=2,context=4 --attention NAME`).

No ltx_core counterpart (the official code runs on one device). `run_parity(path, mesh=ParityMesh.build(...))`
hands the mesh to every check through `Fixture.mesh`; each component runs the way it runs in a sharded pipeline
and says so with `note`, and the runner writes that into each compared array's `placement`:
  sharded     the component's own sharded path: the DiT forward (inputs laid out by `inference_rules`, attention
              by the plan's strategy under `shard_map`), the denoising loops (`sample(..., rules=)`), the video VAE
              decode (`decode_sharded`: latent rows over the mesh), the Gemma decoder (FSDP weights);
  replicated  components without a sharded path (VAE encoder, upsamplers, TAE, audio VAE and vocoder, the text
              connectors): weights and inputs on every device of the mesh, the batch on `data` where it divides;
  host        results of numpy alone (schedules, LoRA weight fusion, tokenizer ids): no device computation.
Placements name the real sharding of an output where there is one (`where`). The bounds stay the single-device ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ParityMesh", "HOST", "where"]

HOST = "host: numpy only, no device computation"


def where(x) -> str:
    """`P(...)` over N devices: the sharding of a jax array (what really ran where)."""
    sharding = getattr(x, "sharding", None)
    if sharding is None:
        return "host"
    n = len(sharding.device_set)
    spec = getattr(sharding, "spec", None)
    return f"{spec} on {n} device{'s' if n > 1 else ''}" if spec is not None else f"{n} device(s)"


@dataclass(eq=False)
class ParityMesh:
    """Mesh, sharding rules and attention strategy of a parity run, and the placement notes of the running check.

    Attributes:
        rules: `inference_rules(mesh, attention=...)`: what the sampler and pipelines use.
        notes: `(array regex or None, placement)` recorded by the running check (cleared before each check).
    """

    rules: Any
    notes: list[tuple[str | None, str]] = field(default_factory=list)

    @classmethod
    def build(cls, text: str, attention: str = "auto", devices=None) -> ParityMesh:
        """From `--mesh data=2,context=4` and `--attention` (ValueError naming the problem otherwise)."""
        from ltx_jax.sharding import inference_rules, parse_mesh

        return cls(inference_rules(parse_mesh(text, devices), attention=attention))

    @property
    def mesh(self):
        return self.rules.mesh

    @property
    def attention(self) -> str:
        return self.rules.attention

    @property
    def plan(self):
        """The DiT's attention plan (`ltx_jax.sharding.attention_plan`)."""
        from ltx_jax.sharding import attention_plan

        return attention_plan(self.rules)

    def describe(self) -> dict[str, Any]:
        return {"mesh": {k: int(v) for k, v in self.mesh.shape.items()}, "attention": self.attention,
                "devices": int(self.mesh.size)}

    def self_attention(self, heads: int) -> str:
        """The video self-attention split the plan takes for `heads` heads (ValueError when it cannot split them)."""
        plan = self.plan
        if plan is None or not plan.sequence_parallel:
            return "gspmd (single-device kernel, XLA partitions it)"
        split = plan.split(heads)
        return f"{split.name} (ulysses {split.ulysses} x ring {split.ring}, {heads} heads)"

    def dit_attention(self, dit) -> str:
        """`self_attention` for a split DiT `(graphdef, state)` (its video head count)."""
        from flax import nnx

        return self.self_attention(nnx.merge(*dit).config.num_attention_heads)

    def loop(self, dit, result, arrays: str) -> None:
        """Note a denoising loop that ran under the rules (`sample(..., rules=)`) for `arrays`."""
        self.note(f"sharded loop (sample with the mesh rules): video self-attention {self.dit_attention(dit)}; "
                  f"final video latent {where(result.video.latent)}", arrays)

    def state(self, latent, noise, stream: str):
        """A loop state's latent and noise on the mesh by the sampler's state rules (`activation.state.<stream>`)."""
        from ltx_jax.sharding import place

        return place(latent, self.rules, f"activation.state.{stream}"), place(noise, self.rules,
                                                                               f"activation.state.{stream}")

    def latent_state(self, st, stream: str):
        """A `LatentState` on the mesh: tokens, mask and clean latent by the state rules, positions and attention
        mask by the activation rules (what the sampler does with them inside the loop)."""
        from ltx_jax.sharding import place

        state, act = f"activation.state.{stream}", f"activation.{stream}"
        return st.replace(latent=place(st.latent, self.rules, state), denoise_mask=place(st.denoise_mask, self.rules,
                                                                                          state),
                          clean_latent=place(st.clean_latent, self.rules, state),
                          positions=place(st.positions, self.rules, f"{act}.positions"),
                          attention_mask=place(st.attention_mask, self.rules, f"{act}.attention_mask"))

    # -- placement notes -------------------------------------------------------------------------------------
    def note(self, placement: str, arrays: str | None = None) -> None:
        """Record how the running check computed `arrays` (a regex; None: every array it yields from now on)."""
        self.notes.append((arrays, placement))

    def placement(self, name: str) -> str:
        for pattern, text in reversed(self.notes):
            if pattern is not None and re.search(pattern, name):
                return text
        return next((text for pattern, text in reversed(self.notes) if pattern is None),
                    "default device: the check recorded no placement")

    # -- placing inputs --------------------------------------------------------------------------------------
    def replicate(self, tree):
        """Every array leaf of `tree` (arrays, an `nnx.State`) on every device of the mesh."""
        import jax
        from jax.sharding import NamedSharding, PartitionSpec

        return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec()))

    def batch(self, tree):
        """Every array leaf with its leading axis on `data` (replicated where the batch does not divide)."""
        import jax
        import numpy as np
        from jax.sharding import NamedSharding, PartitionSpec

        from ltx_jax.sharding import fit_spec

        def one(x):
            return jax.device_put(x, NamedSharding(self.mesh, fit_spec(PartitionSpec("data"), np.shape(x), self.mesh)))

        return jax.tree.map(one, tree)

    def module(self, module):
        """An nnx module with its state replicated on the mesh (a new module; the cached one stays as it is)."""
        from flax import nnx

        graphdef, state = nnx.split(module)
        return nnx.merge(graphdef, self.replicate(state))

    def replicated(self, what: str, out=None) -> str:
        """A placement text for a component without a sharded path."""
        tail = f"; output {where(out)}" if out is not None else ""
        return f"replicated ({what} has no sharded path): weights and inputs on all {self.mesh.size} devices, " \
               f"batch on data where it divides{tail}"
