"""Sequence-parallel attention under `jax.shard_map` (sits beside `nn`, below the models).

`attend(q, k, v, bias, plan, role)` is the one entry point the transformer's attention calls; the plan
(mesh + strategy, `AttentionPlan`) comes from the sharding rules of the run, the role from the call site.
"""

from ltx_jax.parallel.dispatch import ROLES, attend
from ltx_jax.parallel.norm import head_sharded_rms_norm, splits_heads
from ltx_jax.parallel.plan import STRATEGIES, AttentionPlan, SequenceSplit
from ltx_jax.parallel.strategies import local_kv_attention, merge_partials, sequence_attention, sharded_kv_attention

__all__ = ["attend", "ROLES", "AttentionPlan", "SequenceSplit", "STRATEGIES", "sequence_attention",
           "local_kv_attention", "sharded_kv_attention", "merge_partials",
           "head_sharded_rms_norm", "splits_heads"]
