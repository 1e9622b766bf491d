"""An independent float64 numpy reference of PruneKit's N:M channel-permutation search, written for
the tests (no PruneKit code): the gains are recomputed by brute force (the kept N:M sums of the two
groups after the exchange, directly), not by the core's without/smallest bookkeeping.

The search (include/prunekit.h, pk_channel_permutation): per segment of columns, a table of every
pair of groups' best exchange of one column each (largest gain, first in (column of a, column of b)
order); each pass takes the pairs whose gain exceeds 1e-12 * sum |scores of the segment|, largest
first, ties by (a, b), makes their swaps skipping pairs that share a group with a swap made earlier
in the pass, and recomputes the touched entries; it stops when nothing gains or at the budget
(max_swaps, split evenly among segments, the remainder to the first ones).
"""
import numpy as np


def kept(scores, n, m):
    """The importance the n:m mask keeps: sum over rows and groups of the n largest scores."""
    rows, cols = scores.shape
    groups = np.sort(scores.reshape(rows, cols // m, m).astype(np.float64), axis=2)[:, :, ::-1]
    return float(groups[:, :, :n].sum())


def _group_kept(block, n):
    """Per row, the sum of the n largest entries of block [rows, m]."""
    return np.sort(block, axis=1)[:, ::-1][:, :n].sum(axis=1)


def _best(current, a, b, n, m):
    cols_a, cols_b = list(range(a * m, a * m + m)), list(range(b * m, b * m + m))
    base = _group_kept(current[:, cols_a], n).sum() + _group_kept(current[:, cols_b], n).sum()
    best, where = -np.inf, None
    for k in range(m):
        for q in range(m):
            ga, gb = current[:, cols_a].copy(), current[:, cols_b].copy()
            ga[:, k], gb[:, q] = current[:, b * m + q], current[:, a * m + k]
            gain = _group_kept(ga, n).sum() + _group_kept(gb, n).sum() - base
            if gain > best:
                best, where = gain, (k, q)
    return best, where


def _segment(scores, n, m, budget):
    current = scores.astype(np.float64).copy()
    width = current.shape[1]
    groups = width // m
    perm = np.arange(width)
    tolerance = np.abs(current).sum() * 1e-12
    table = {(a, b): _best(current, a, b, n, m) for a in range(groups) for b in range(a + 1, groups)}
    swaps = 0
    while swaps < budget:
        candidates = sorted(((g, a, b) for (a, b), (g, _) in table.items() if g > tolerance),
                            key=lambda c: (-c[0], c[1], c[2]))
        if not candidates:
            break
        touched = set()
        for _, a, b in candidates:
            if a in touched or b in touched:
                continue
            k, q = table[(a, b)][1]
            p, o = a * m + k, b * m + q
            perm[[p, o]] = perm[[o, p]]
            current[:, [p, o]] = current[:, [o, p]]
            touched.update((a, b))
            swaps += 1
            if swaps == budget:
                break
        if swaps == budget:
            break
        for key in table:
            if key[0] in touched or key[1] in touched:
                table[key] = _best(current, key[0], key[1], n, m)
    return perm, swaps


def channel_permutation(scores, n=2, m=4, segment=0, max_swaps=1 << 20):
    """(permutation, kept before, kept after) for float32 scores [rows, cols]."""
    scores = np.asarray(scores, dtype=np.float32)
    cols = scores.shape[1]
    width = segment or cols
    segments = cols // width
    perm = np.empty(cols, dtype=np.int64)
    for s in range(segments):
        budget = max_swaps // segments + (1 if s < max_swaps % segments else 0)
        local, _ = _segment(scores[:, s * width:(s + 1) * width], n, m, budget)
        perm[s * width:(s + 1) * width] = local + s * width
    return perm, kept(scores, n, m), kept(scores[:, perm], n, m)
