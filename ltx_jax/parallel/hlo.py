"""Per-device statistics of a compiled (SPMD-partitioned) program, read from its HLO text.

No ltx_core counterpart. XLA's `cost_analysis()` counts a while-loop body once; here every computation is
weighted by how often it runs: a while body by its known trip count (`known_trip_count` in the backend
config, which XLA sets for `scan` / `fori_loop`), everything else once per call.

  dot_flops(text)       2 * prod(output) * prod(contracting) summed over `dot` ops, weighted;
  collectives(text)     per collective kind: count (weighted), output bytes, and bytes each device sends
                        (ring all-gather / all-to-all: out*(n-1)/n, all-reduce: 2*size*(n-1)/n,
                        reduce-scatter: in*(n-1)/n, collective-permute: out), weighted;
  collective_ops(text)  the individual ops (kind, shape, group size, weight) for finer checks.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np

__all__ = ["dot_flops", "collectives", "collective_ops", "computation_weights", "COLLECTIVES"]

COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")
_BYTES = {"f64": 8, "f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "s8": 1, "u8": 1, "pred": 1, "s64": 8,
          "u64": 8, "f8e4m3fn": 1, "f8e5m2": 1, "s16": 2, "u16": 2}
_HEADER = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*(?:\(.*\))?\s*->.*\{\s*$")
_SHAPE = re.compile(r"\b(f64|f32|bf16|f16|s32|u32|s8|u8|pred|s64|u64|f8e4m3fn|f8e5m2|s16|u16)\[([\d,]*)\]")


def _computations(text: str) -> tuple[dict[str, list[str]], str]:
    comps, entry, name = {}, None, None
    for line in text.splitlines():
        if name is None:
            m = _HEADER.match(line.strip())
            if m and not line.startswith(" "):
                name = m.group(1)
                comps[name] = []
                if line.startswith("ENTRY"):
                    entry = name
            continue
        if line.strip() == "}":
            name = None
            continue
        comps[name].append(line)
    if entry is None:
        raise ValueError("no ENTRY computation in the HLO text")
    return comps, entry


def computation_weights(text: str) -> dict[str, float]:
    """{computation: times it runs per call of the entry} (while bodies/conditions by trip count)."""
    comps, entry = _computations(text)
    calls = defaultdict(list)  # caller -> [(callee, multiplier)]
    for name, lines in comps.items():
        for line in lines:
            trip = 1.0
            if " while(" in line:
                m = re.search(r'"known_trip_count":\{"n":"(\d+)"', line)
                if m is None:
                    raise ValueError(f"while loop without a known trip count: {line.strip()[:160]}")
                trip = float(m.group(1))
                for key in ("body", "condition"):
                    c = re.search(rf"{key}=%?([\w.\-]+)", line)
                    if c:
                        calls[name].append((c.group(1), trip))
                continue
            for key in ("calls", "to_apply", "branch_computations", "true_computation", "false_computation"):
                for group in re.findall(rf"{key}=\{{?([^}}\s,]+(?:,\s*%?[\w.\-]+)*)\}}?", line):
                    for callee in re.split(r",\s*", group):
                        calls[name].append((callee.lstrip("%"), 1.0))
    weights: dict[str, float] = defaultdict(float)

    def visit(name: str, w: float, depth: int = 0):
        if depth > 64:
            raise ValueError("HLO call graph too deep (cycle?)")
        weights[name] += w
        for callee, mult in calls.get(name, ()):
            visit(callee, w * mult, depth + 1)

    visit(entry, 1.0)
    return dict(weights)


def _shapes(s: str) -> list[tuple[str, tuple[int, ...]]]:
    return [(t, tuple(int(d) for d in dims.split(",") if d)) for t, dims in _SHAPE.findall(s)]


def _nbytes(shapes) -> int:
    return int(sum(_BYTES[t] * int(np.prod(d, dtype=np.int64)) for t, d in shapes))


_DEF = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.*?)\s+[\w\-]+\(")


def _symbols(comps: dict[str, list[str]]) -> dict[str, list]:
    """{instruction name: its result shapes} (operands are printed by name only)."""
    table = {}
    for lines in comps.values():
        for line in lines:
            m = _DEF.match(line)
            if m:
                table[m.group(1)] = _shapes(m.group(2))
    return table


def _operand_shapes(args: str, table: dict[str, list]) -> list:
    shapes = _shapes(args)
    if shapes:
        return shapes
    return [s for name in re.findall(r"%([\w.\-]+)", args) for s in table.get(name, [])[:1]]


def dot_flops(text: str) -> float:
    """Per-device dot FLOPs of one call of the entry computation, while bodies weighted by trip count."""
    comps, _ = _computations(text)
    weights = computation_weights(text)
    table = _symbols(comps)
    total = 0.0
    for name, lines in comps.items():
        w = weights.get(name, 0.0)
        if not w:
            continue
        for line in lines:
            m = re.search(r"=\s*(.*?)\s+dot\((.*?)\),\s*(.*)$", line)
            if not m:
                continue
            out = _shapes(m.group(1))
            ops = _operand_shapes(m.group(2), table)
            dims = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", m.group(3))
            if not out or not ops or dims is None:
                raise ValueError(f"cannot read dot: {line.strip()[:200]}")
            contract = int(np.prod([ops[0][1][int(i)] for i in dims.group(1).split(",") if i] or [1]))
            total += w * 2.0 * float(np.prod(out[0][1], dtype=np.float64)) * contract
    return total


def _group_size(line: str, devices: int) -> int:
    m = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", line)  # mesh['a'=2,'b'=4] {'b'}
    if m:
        sizes = {k: int(v) for k, v in re.findall(r"'([^']+)'=(\d+)", m.group(1))}
        return int(np.prod([sizes[a] for a in re.findall(r"'([^']+)'", m.group(2))] or [1]))
    m = re.search(r"replica_groups=\[(\d+),(\d+)\]<=", line)
    if m:
        return int(m.group(2))
    m = re.search(r"replica_groups=\{\{([\d,]*)\}", line)
    if m and m.group(1):
        return len(m.group(1).split(","))
    m = re.search(r"source_target_pairs=\{(.*?)\}\}?", line)
    if m:
        return len(re.findall(r"\{\d+,\d+\}", line))
    return devices


def collective_ops(text: str, devices: int = 1) -> list[dict]:
    """Every collective (async `-start` forms counted once, `-done` skipped) with its weight."""
    comps, _ = _computations(text)
    weights = computation_weights(text)
    table = _symbols(comps)
    out = []
    for name, lines in comps.items():
        w = weights.get(name, 0.0)
        if not w:
            continue
        for line in lines:
            for kind in COLLECTIVES:
                m = re.search(rf"=\s*(.*?)\s+{kind}(-start)?\((.*?)\)(,|$)", line)
                if not m:
                    continue
                result = _shapes(m.group(1))
                if m.group(2):  # async start: the result tuple holds (operand(s), output(s))
                    result = result[len(result) // 2:]
                operands = _operand_shapes(m.group(3), table)
                n = _group_size(line, devices)
                out.append({"kind": kind, "computation": name, "weight": w, "group": n,
                            "out_shapes": result, "out_bytes": _nbytes(result), "in_bytes": _nbytes(operands)})
                break
    return out


def _sent(op: dict) -> float:
    n, kind = max(op["group"], 1), op["kind"]
    if kind == "collective-permute":
        return float(op["out_bytes"])
    if kind == "all-reduce":
        return 2.0 * op["out_bytes"] * (n - 1) / n
    if kind == "reduce-scatter":
        return float(op["in_bytes"]) * (n - 1) / n
    return float(op["out_bytes"]) * (n - 1) / n  # all-gather, all-to-all


def collectives(text: str, devices: int = 1) -> dict[str, dict[str, float]]:
    """{kind: {"count", "out_bytes", "sent_bytes"}} per call of the entry, weighted by trip counts."""
    stats = {k: {"count": 0.0, "out_bytes": 0.0, "sent_bytes": 0.0} for k in COLLECTIVES}
    for op in collective_ops(text, devices):
        s = stats[op["kind"]]
        s["count"] += op["weight"]
        s["out_bytes"] += op["weight"] * op["out_bytes"]
        s["sent_bytes"] += op["weight"] * _sent(op)
    return stats
