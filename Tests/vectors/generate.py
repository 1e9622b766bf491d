#!/usr/bin/env python3
"""Golden vectors for PruneKit, made by an independent numpy reference (not by PruneKit).

The reference follows docs and ARCHITECTURE.md literally: scores as one float32 operation,
k = int(n * s) pruned per group, groups ranked by a stable argsort (score, then index).

Writes into the given folder:
  manifest.txt           one case a line: key=value pairs (see `case_line`)
  NAME.L<i>.w.bin        layer i's weights, rows x stride elements of its dtype (padding = NaN)
  NAME.L<i>.f.bin        feature values, float32, cols (wanda, stade)
  NAME.L<i>.g.bin        gradient, rows x cols of the weights' dtype (taylor)
  NAME.L<i>.mask.bin     expected mask, uint8, rows x cols (1 = keep)

SparseGPT cases (sparsegpt.txt, sgpt_NAME.*.bin) come from sparsegpt_reference.py: weights,
Hessian (float64), a given mask where the case has one, the expected keep mask and the expected
updated weights (float64).

Run `python3 Tests/vectors/generate.py Tests/vectors`; tests check the committed files equal a
fresh run (the float64 SparseGPT outputs to round-off, everything else byte for byte).
"""
import os
import sys

import numpy as np

import sparsegpt_reference

DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "bfloat16": None}
CRITERIA = ["magnitude", "random", "wanda", "stade", "taylor", "scores"]


# ------------------------------------------------------------------------------------------
# The reference

def to_bfloat16_bits(values):
    """float32 -> bfloat16 bits, round to nearest even (finite inputs)."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def as_float32(stored, dtype):
    """The float32 value of each stored element, as PruneKit reads it."""
    if dtype == "bfloat16":
        return (stored.astype(np.uint32) << 16).view(np.float32)
    return stored.astype(np.float32)


def random_scores(seed, rows, cols):
    """SplitMix64's finaliser over seed + (p + 1) * golden gamma; top 24 bits / 2^24."""
    with np.errstate(over="ignore"):
        p = np.arange(rows * cols, dtype=np.uint64)
        z = np.uint64(seed) + (p + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)).reshape(rows, cols)


def scores_of(layer, criterion, seed):
    w = as_float32(layer["w"], layer["dtype"])
    if criterion == "magnitude":
        return np.abs(w)
    if criterion in ("wanda", "stade"):
        return np.abs(w) * layer["f"]
    if criterion == "taylor":
        return np.abs(w * as_float32(layer["g"], layer["dtype"]))
    if criterion == "scores":
        return w
    if criterion == "random":
        return random_scores(seed, *w.shape)
    raise ValueError(criterion)


def prune_group(scores, k):
    """Keep-mask of one group: the k lowest by (score, index) are pruned."""
    keep = np.ones(scores.size, dtype=np.uint8)
    order = np.argsort(scores, kind="stable")
    keep[order[:k]] = 0
    return keep


def reference_masks(layers, criterion, scope, sparsity, n, m, seed):
    scores = [scores_of(layer, criterion, seed) for layer in layers]
    if scope == "global":
        flat = np.concatenate([s.ravel() for s in scores])
        keep = prune_group(flat, int(flat.size * sparsity))
        out, start = [], 0
        for s in scores:
            out.append(keep[start:start + s.size].reshape(s.shape))
            start += s.size
        return out
    masks = []
    for s in scores:
        rows, cols = s.shape
        if scope == "layer":
            masks.append(prune_group(s.ravel(), int(s.size * sparsity)).reshape(rows, cols))
        elif scope == "row":
            masks.append(np.stack([prune_group(s[r], int(cols * sparsity)) for r in range(rows)]))
        elif scope == "nm":
            groups = s.reshape(rows * cols // m, m)
            masks.append(np.stack([prune_group(g, m - n) for g in groups]).reshape(rows, cols))
        else:
            raise ValueError(scope)
    return masks


# ------------------------------------------------------------------------------------------
# Inputs

def make_values(rng, rows, cols, kind):
    if kind == "ties":  # few distinct values, both zeros, many exact ties
        return rng.integers(-3, 4, size=(rows, cols)).astype(np.float32) * np.float32(0.5)
    if kind == "zeros":  # -0.0 and +0.0 must tie
        v = rng.integers(0, 3, size=(rows, cols)).astype(np.float32)
        v[rng.random((rows, cols)) < 0.5] *= -1
        v[v == 0] = np.where(rng.random(int((v == 0).sum())) < 0.5, -0.0, 0.0)
        return v
    if kind == "constant":
        return np.full((rows, cols), 0.25, dtype=np.float32)
    return rng.standard_normal((rows, cols)).astype(np.float32)


def store(values32, dtype):
    if dtype == "bfloat16":
        return to_bfloat16_bits(values32)
    return values32.astype(DTYPES[dtype])


def nan_like(dtype):
    if dtype == "bfloat16":
        return np.uint16(0x7FC0)
    return DTYPES[dtype](np.nan)


def make_layer(rng, rows, cols, stride, dtype, criterion, kind):
    w = store(make_values(rng, rows, cols, kind), dtype)
    layer = {"dtype": dtype, "rows": rows, "cols": cols, "stride": stride, "w": w}
    if criterion in ("wanda", "stade"):
        f = np.abs(rng.standard_normal(cols)).astype(np.float32) * np.float32(3)
        if kind in ("ties", "zeros", "constant"):
            f = np.round(f).astype(np.float32)  # includes zeros: 0 * |w| ties
        layer["f"] = f
    if criterion == "taylor":
        layer["g"] = store(make_values(rng, rows, cols, kind), dtype)
    return layer


def cases(rng):
    """(name, criterion, scope, sparsity, n, m, seed, layers) for every criterion x selection."""
    shapes = [  # rows, cols, stride, dtype, kind
        (7, 12, 12, "float32", "normal"),
        (5, 16, 19, "float64", "ties"),
        (1, 24, 24, "float16", "zeros"),
        (9, 8, 8, "bfloat16", "ties"),
        (3, 2048, 2050, "float32", "ties"),      # long rows: the bracketed selection path
        (2, 1536, 1536, "float32", "normal"),
        (4, 20, 20, "float32", "constant"),
    ]
    single_col = (11, 1, 3, "float32", "normal")
    out = []
    for criterion in CRITERIA:
        for i, (rows, cols, stride, dtype, kind) in enumerate(shapes):
            seed = int(rng.integers(0, 2 ** 63))
            for sparsity in (0.5, 0.3) if i < 2 else (0.5,):
                tag = f"{criterion}_{dtype}_{kind}_{rows}x{cols}_s{sparsity}"
                layer = make_layer(rng, rows, cols, stride, dtype, criterion, kind)
                out.append((f"{tag}_row", criterion, "row", sparsity, 0, 0, seed, [layer]))
                out.append((f"{tag}_layer", criterion, "layer", sparsity, 0, 0, seed, [layer]))
            for n, m in ((2, 4), (1, 4), (4, 8), (3, 4)):
                if cols % m == 0:
                    layer = make_layer(rng, rows, cols, stride, dtype, criterion, kind)
                    out.append((f"{criterion}_{dtype}_{kind}_{rows}x{cols}_nm{n}of{m}", criterion, "nm", 0.5, n, m, seed, [layer]))
        rows, cols, stride, dtype, kind = single_col
        layer = make_layer(rng, rows, cols, stride, dtype, criterion, kind)
        for sparsity in (0.0, 0.45, 1.0):
            out.append((f"{criterion}_col_{rows}x1_s{sparsity}_row", criterion, "row", sparsity, 0, 0, 7, [layer]))
            out.append((f"{criterion}_col_{rows}x1_s{sparsity}_layer", criterion, "layer", sparsity, 0, 0, 7, [layer]))
        # Global: layers of different shapes and dtypes (one dtype per case keeps files simple),
        # one large enough to span several chunks, with ties across chunks.
        for dtype, kind in (("float32", "ties"), ("float16", "normal"), ("bfloat16", "zeros")):
            big = (170, 200, 200) if criterion in ("magnitude", "random") else (40, 30, 30)
            shapes_g = [(6, 10, 12), big, (1, 7, 7)]  # 170 x 200: two chunks (163 + 7 rows)
            layers = [make_layer(rng, r, c, st, dtype, criterion, kind) for r, c, st in shapes_g]
            for sparsity in (0.5, 0.77) if dtype == "float32" else (0.77,):
                out.append((f"{criterion}_{dtype}_{kind}_global_s{sparsity}", criterion, "global", sparsity, 0, 0, 99, layers))
    # Multi-chunk layer scope with ties spanning chunks.
    layer = make_layer(rng, 200, 180, 180, "float32", "magnitude", "ties")
    out.append(("magnitude_float32_ties_200x180_chunks_layer", "magnitude", "layer", 0.61, 0, 0, 0, [layer]))
    return out


# ------------------------------------------------------------------------------------------
# Files

def padded(layer):
    rows, cols, stride, dtype = layer["rows"], layer["cols"], layer["stride"], layer["dtype"]
    w = layer["w"]
    full = np.full((rows, stride), nan_like(dtype), dtype=w.dtype)
    full[:, :cols] = w
    return full


def case_line(name, criterion, scope, sparsity, n, m, seed, layers):
    fields = {
        "name": name, "criterion": criterion, "scope": scope, "sparsity": repr(float(sparsity)),
        "n": n, "m": m, "seed": seed, "dtype": layers[0]["dtype"], "layers": len(layers),
        "rows": ",".join(str(l["rows"]) for l in layers),
        "cols": ",".join(str(l["cols"]) for l in layers),
        "stride": ",".join(str(l["stride"]) for l in layers),
    }
    return " ".join(f"{k}={v}" for k, v in fields.items())


def generate(folder):
    rng = np.random.default_rng(20261121)
    os.makedirs(folder, exist_ok=True)
    for old in os.listdir(folder):
        if old.endswith(".bin"):
            os.remove(os.path.join(folder, old))
    lines = []
    for name, criterion, scope, sparsity, n, m, seed, layers in cases(rng):
        masks = reference_masks(layers, criterion, scope, sparsity, n, m, seed)
        for i, (layer, mask) in enumerate(zip(layers, masks)):
            base = os.path.join(folder, f"{name}.L{i}")
            padded(layer).tofile(base + ".w.bin")
            if "f" in layer:
                layer["f"].tofile(base + ".f.bin")
            if "g" in layer:
                layer["g"].tofile(base + ".g.bin")
            mask.astype(np.uint8).tofile(base + ".mask.bin")
        lines.append(case_line(name, criterion, scope, sparsity, n, m, seed, layers))
    with open(os.path.join(folder, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    generate_sparsegpt(folder, np.random.default_rng(7))
    return len(lines)


def sparsegpt_cases(rng):
    """(name, op, scope, sparsity, n, m, block, W, H, given). op: sparsegpt, reconstruct, columns."""
    def layer(rows, cols, tokens, dead=()):
        mix = rng.standard_normal((cols, cols)) / np.sqrt(cols)
        x = rng.standard_normal((tokens, cols)) @ (np.eye(cols) + mix) * rng.uniform(0.2, 3, cols)
        x[:, list(dead)] = 0
        return rng.standard_normal((rows, cols)), x.T @ x

    out = []
    w, h = layer(24, 48, 300)
    out.append(("unstructured_24x48_b16", "sparsegpt", "layer", 0.5, 0, 0, 16, w, h, None))
    w, h = layer(16, 32, 200)
    out.append(("nm2of4_16x32_b8", "sparsegpt", "nm", 0.0, 2, 4, 8, w, h, None))
    w, h = layer(10, 40, 150, dead=(3, 17))
    out.append(("dead_inputs_10x40_b128", "sparsegpt", "layer", 0.3, 0, 0, 128, w, h, None))
    w, h = layer(12, 36, 200)
    magnitude = reference_masks([{"w": w.astype(np.float32), "dtype": "float32"}], "magnitude", "row", 0.6, 0, 0, 0)[0]
    out.append(("reconstruct_magnitude_12x36_b12", "reconstruct", "layer", 0.0, 0, 0, 12, w, h, magnitude))
    w, h = layer(9, 30, 120)
    keep = np.ones(30, dtype=np.uint8)
    keep[::4] = 0
    out.append(("columns_9x30", "columns", "layer", 0.0, 0, 0, 128, w, h, keep))
    return out


def generate_sparsegpt(folder, rng):
    lines = []
    for name, op, scope, sparsity, n, m, block, w, h, given in sparsegpt_cases(rng):
        base = os.path.join(folder, f"sgpt_{name}")
        if op == "columns":
            expected, keep = sparsegpt_reference.prune_columns(w, h, given), None
        else:
            expected, keep = sparsegpt_reference.sparsegpt(w, h, sparsity=sparsity, n=n, m=m, blocksize=block, keep=given)
        w.astype(np.float64).tofile(base + ".w.bin")
        h.astype(np.float64).tofile(base + ".h.bin")
        expected.astype(np.float64).tofile(base + ".out.bin")
        if given is not None:
            given.astype(np.uint8).tofile(base + ".given.bin")
        if op == "sparsegpt":
            keep.astype(np.uint8).tofile(base + ".mask.bin")
        lines.append(f"name={name} op={op} scope={scope} sparsity={sparsity!r} n={n} m={m} block={block} "
                     f"rows={w.shape[0]} cols={w.shape[1]}")
    with open(os.path.join(folder, "sparsegpt.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    count = generate(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
    print(f"{count} cases")
