#!/usr/bin/env python3
"""Golden vectors for structured selection (channels, heads, blocks), made by an independent
reference written from the header's documentation (include/prunekit.h, "Structured pruning"),
not by PruneKit.

Weights are multiples of 1/8 with small numerators, so every structure sum (of |w| or w^2) is
exact in float64 whatever the order of additions; everything after that (square roots, the
reduction across members, normalisation) is done here in the documented order with Python floats.

Writes into Tests/vectors/structures/:
  cases.txt             one case a line, space-separated tokens:
                          name=N criterion=C reduction=R normalization=Z mode=M ratio=X multiple=K
                          stages=v0,v1,... (or stages=-)  groups=G
                        then per group: group=min_keep,stage,member_count
                        then per member: member=rows,cols,axis,span,block_cols,scored
  N.g<i>.m<j>.bin       member tensors, float32, rows x cols
  N.keep.bin            expected keep bytes, all groups' structures in order
  N.scores.bin          expected scores, float64
Run `python3 Tests/vectors/structures_reference.py Tests/vectors/structures`.
"""
import math
import os
import sys

import numpy as np

ROWS, COLS, BLOCKS = 0, 1, 2
CRITERIA = {"l1": 0, "l2": 1}
REDUCTIONS = {"sum": 0, "mean": 1, "max": 2}
NORMALIZATIONS = {"none": 0, "mean": 1, "max": 2, "sum": 3, "standard": 4}
MODES = {"per_group": 0, "global": 1, "uniform": 2, "threshold": 3}


def structure_sums(t, axis, span, block_cols, squared):
    v = t.astype(np.float64)
    v = v * v if squared else np.abs(v)
    rows, cols = t.shape
    if axis == ROWS:
        return [float(v[i * span:(i + 1) * span].sum()) for i in range(rows // span)]
    if axis == COLS:
        return [float(v[:, i * span:(i + 1) * span].sum()) for i in range(cols // span)]
    out = []
    for i in range(0, rows, span):
        for j in range(0, cols, block_cols):
            out.append(float(v[i:i + span, j:j + block_cols].sum()))
    return out


def normalize(values, how):
    n = float(len(values))
    total = 0.0
    for v in values:
        total += v
    if how == "none":
        return values
    if how in ("mean", "sum"):
        d = total / n if how == "mean" else total
        return [v / d for v in values] if d != 0 else values
    if how == "max":
        d = max(values)
        return [v / d for v in values] if d != 0 else values
    mean = total / n
    var = 0.0
    for v in values:
        var += (v - mean) * (v - mean)
    sd = math.sqrt(var / n)
    return [(v - mean) / sd if sd != 0 else 0.0 for v in values]


def group_scores(group, criterion, reduction, normalization):
    squared = criterion == "l2"
    values = None
    scored = 0
    for m in group["members"]:
        if not m["scored"]:
            continue
        sums = structure_sums(m["tensor"], m["axis"], m["span"], m["block_cols"], squared)
        part = [math.sqrt(s) if squared else s for s in sums]
        if values is None:
            values = part
        elif reduction == "max":
            values = [max(a, b) for a, b in zip(values, part)]
        else:
            values = [a + b for a, b in zip(values, part)]
        scored += 1
    if reduction == "mean":
        values = [v / scored for v in values]
    return normalize(values, normalization)


def round_keep(keep, multiple, n):
    return min(n, -(-keep // multiple) * multiple)


def select(groups, scores, mode, values, multiple):
    keep_counts = []
    stage_of = [g["stage"] for g in groups]
    if mode == "per_group":
        for g, s in zip(groups, scores):
            n = len(s)
            keep_counts.append(round_keep(n - int(n * values[g["stage"]]), multiple, n))
            assert keep_counts[-1] >= g["min_keep"]
    elif mode == "uniform":
        keep_counts = [0] * len(groups)
        for stage in sorted(set(stage_of)):
            members = [i for i in range(len(groups)) if stage_of[i] == stage]
            smallest = min(len(scores[i]) for i in members)
            common = round_keep(smallest - int(smallest * values[stage]), multiple, smallest)
            for i in members:
                keep_counts[i] = common
    elif mode == "global":
        keep_counts = [0] * len(groups)
        for stage in sorted(set(stage_of)):
            members = [i for i in range(len(groups)) if stage_of[i] == stage]
            total = sum(len(scores[i]) for i in members)
            target = int(total * values[stage])
            order = sorted((scores[i][j] + 0.0, i, j) for i in members for j in range(len(scores[i])))
            pruned = {i: 0 for i in members}
            done = 0
            for _, i, _ in order:
                if done == target:
                    break
                if pruned[i] < len(scores[i]) - groups[i]["min_keep"]:
                    pruned[i] += 1
                    done += 1
            assert done == target
            for i in members:
                n = len(scores[i])
                keep_counts[i] = round_keep(n - pruned[i], multiple, n)
    else:
        for g, s in zip(groups, scores):
            above = sum(1 for v in s if v >= values[g["stage"]])
            keep_counts.append(round_keep(max(above, g["min_keep"]), multiple, len(s)))
    keep = []
    for s, k in zip(scores, keep_counts):
        flags = [1] * len(s)
        ranked = sorted(range(len(s)), key=lambda j: (s[j] + 0.0, j))
        for j in ranked[:len(s) - k]:
            flags[j] = 0
        keep += flags
    return keep


def grid(rng, shape, ties=False):
    """Multiples of 1/8; with ties, from a tiny set so equal scores happen."""
    top = 3 if ties else 17
    return (rng.integers(-top, top + 1, size=shape) / 8.0).astype(np.float32)


def member(t, axis, span=1, block_cols=0, scored=True):
    return {"tensor": t, "axis": axis, "span": span, "block_cols": block_cols, "scored": scored}


def cases():
    rng = np.random.default_rng(20261121)
    out = []

    def mlp(hidden=12, d=6, ties=False):
        return [member(grid(rng, (hidden, d), ties), ROWS), member(grid(rng, (1, hidden), ties), COLS, scored=False),
                member(grid(rng, (5, hidden), ties), COLS)]

    def add(name, groups, criterion="l2", reduction="sum", normalization="none", mode="per_group", ratio=0.5,
            multiple=1, stages=None):
        out.append(dict(name=name, groups=groups, criterion=criterion, reduction=reduction,
                        normalization=normalization, mode=mode, ratio=ratio, multiple=multiple, stages=stages))

    # Channels of an MLP: rows of the first layer, its bias (not scored), columns of the second.
    for crit in ("l1", "l2"):
        for red in ("sum", "mean", "max"):
            add(f"mlp_{crit}_{red}", [dict(members=mlp(), min_keep=0, stage=0)], crit, red)
    add("mlp_ties_l1", [dict(members=mlp(ties=True), min_keep=0, stage=0)], "l1", ratio=0.4)
    add("mlp_ratio0", [dict(members=mlp(), min_keep=0, stage=0)], ratio=0.0)
    add("mlp_ratio1", [dict(members=mlp(), min_keep=0, stage=0)], ratio=1.0)
    add("mlp_multiple4", [dict(members=mlp(hidden=14), min_keep=0, stage=0)], ratio=0.6, multiple=4)
    # Conv channels with batch norm: network slimming scores by |gamma| alone (L1 of the vector).
    conv1, gamma, beta, conv2 = grid(rng, (8, 27)), grid(rng, (1, 8)), grid(rng, (1, 8)), grid(rng, (4, 72))
    add("conv_bn_scale", [dict(members=[member(conv1, ROWS, scored=False), member(gamma, COLS),
                                        member(beta, COLS, scored=False), member(conv2, COLS, 9, scored=False)],
                               min_keep=0, stage=0)], "l1", ratio=0.5)
    add("conv_l2_filters", [dict(members=[member(conv1, ROWS), member(gamma, COLS, scored=False),
                                          member(conv2, COLS, 9)], min_keep=0, stage=0)], "l2", ratio=0.375)
    # Heads: q, k, v rows in spans of the head dim, the output projection's columns.
    heads = [member(grid(rng, (16, 8)), ROWS, 4), member(grid(rng, (16, 8)), ROWS, 4),
             member(grid(rng, (16, 8)), ROWS, 4), member(grid(rng, (8, 16)), COLS, 4)]
    add("heads_l2", [dict(members=heads, min_keep=0, stage=0)], "l2", ratio=0.5)
    add("heads_l1_max", [dict(members=heads, min_keep=0, stage=0)], "l1", "max", ratio=0.25)
    # Blocks of linear layers, ragged edges included.
    add("blocks_ragged", [dict(members=[member(grid(rng, (10, 12)), BLOCKS, 4, 5)], min_keep=0, stage=0)], "l2", ratio=0.5)
    add("blocks_even_l1", [dict(members=[member(grid(rng, (16, 16)), BLOCKS, 4, 4)], min_keep=0, stage=0)], "l1", ratio=0.5)
    layers = [dict(members=[member(grid(rng, (8 * (i + 1), 8)), BLOCKS, 4, 4)], min_keep=1, stage=0) for i in range(3)]
    add("blocks_global", layers, "l2", mode="global", ratio=0.6)
    add("blocks_global_norm_mean", layers, "l2", normalization="mean", mode="global", ratio=0.6)
    # Global ranking across layers with minimums, stages, normalisation.
    three = [dict(members=mlp(hidden=h), min_keep=k, stage=0) for h, k in ((10, 2), (12, 8), (6, 1))]
    add("global_min_keep", three, mode="global", ratio=0.5)
    for norm in ("mean", "max", "sum", "standard"):
        add(f"global_norm_{norm}", three, "l1", normalization=norm, mode="global", ratio=0.5)
    staged = [dict(members=mlp(hidden=h), min_keep=1, stage=s) for h, s in ((10, 0), (12, 1), (6, 0), (8, 1))]
    add("global_stages", staged, mode="global", stages=[0.25, 0.75])
    add("uniform_sizes", [dict(members=mlp(hidden=h), min_keep=0, stage=0) for h in (10, 12, 9)], mode="uniform", ratio=0.5)
    add("uniform_multiple", [dict(members=mlp(hidden=h), min_keep=0, stage=0) for h in (16, 16)], mode="uniform",
        ratio=0.7, multiple=4)
    add("per_group_stages", staged, mode="per_group", stages=[0.1, 0.9])
    add("threshold_stages", [dict(members=mlp(hidden=h), min_keep=2, stage=s) for h, s in ((10, 0), (12, 1))],
        "l1", mode="threshold", stages=[4.0, 6.5])
    add("threshold_standard", [dict(members=mlp(hidden=h), min_keep=1, stage=0) for h in (10, 12)], "l2",
        normalization="standard", mode="threshold", ratio=0.0)
    return out


def main(folder):
    os.makedirs(folder, exist_ok=True)
    lines = []
    for case in cases():
        name = case["name"]
        scores = [group_scores(g, case["criterion"], case["reduction"], case["normalization"]) for g in case["groups"]]
        values = case["stages"] if case["stages"] is not None else [case["ratio"]]
        keep = select(case["groups"], scores, case["mode"], values, case["multiple"])
        np.asarray(keep, dtype=np.uint8).tofile(os.path.join(folder, f"{name}.keep.bin"))
        np.asarray([v for s in scores for v in s], dtype=np.float64).tofile(os.path.join(folder, f"{name}.scores.bin"))
        stages = "-" if case["stages"] is None else ",".join(repr(float(v)) for v in case["stages"])
        tokens = [f"name={name}", f"criterion={CRITERIA[case['criterion']]}",
                  f"reduction={REDUCTIONS[case['reduction']]}", f"normalization={NORMALIZATIONS[case['normalization']]}",
                  f"mode={MODES[case['mode']]}", f"ratio={case['ratio']!r}", f"multiple={case['multiple']}",
                  f"stages={stages}", f"groups={len(case['groups'])}"]
        for i, g in enumerate(case["groups"]):
            tokens.append(f"group={g['min_keep']},{g['stage']},{len(g['members'])}")
            for j, m in enumerate(g["members"]):
                t = m["tensor"]
                t.astype(np.float32).tofile(os.path.join(folder, f"{name}.g{i}.m{j}.bin"))
                tokens.append(f"member={t.shape[0]},{t.shape[1]},{m['axis']},{m['span']},{m['block_cols']},{int(m['scored'])}")
        lines.append(" ".join(tokens))
    with open(os.path.join(folder, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "structures"))
