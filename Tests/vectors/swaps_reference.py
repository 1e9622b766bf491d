"""Independent float64 numpy references, written for the tests, of PruneKit's mask refinement by
swaps (pk_refine_mask) and of its layer-wise sparsity allocation (pk_allocate_sparsity)."""
import numpy as np


def refine_mask(W, H, keep, pattern=None, max_swaps=100, candidates=8):
    """The swap search as include/prunekit.h documents it; returns (keep, swaps)."""
    W = np.asarray(W, np.float64)
    H = np.asarray(H, np.float64)
    keep = np.array(keep, bool)
    rows, cols = W.shape
    G = np.where(keep, 0, W) @ H
    hd = np.diag(H)
    total = 0
    for r in range(rows):
        w, g, k = W[r], G[r].copy(), keep[r]
        error = float(np.where(k, 0, w) @ g)
        for _ in range(max_swaps):
            cost = 2 * w * g + w * w * hd
            gain = 2 * w * g - w * w * hd
            if pattern is None:
                kept = np.flatnonzero(k)
                gone = np.flatnonzero(~k)
                kept = kept[np.lexsort((kept, cost[kept]))][:candidates]
                gone = gone[np.lexsort((gone, -gain[gone]))][:candidates]
                pairs = [(i, j) for i in kept for j in gone]
            else:
                n, m = pattern
                pairs = [(i, j) for s in range(0, cols, m) for i in range(s, s + m) if k[i]
                         for j in range(s, s + m) if not k[j]]
            best = None
            for i, j in pairs:
                delta = cost[i] - gain[j] - 2 * w[i] * w[j] * H[i, j]
                if best is None or delta < best[2] or (delta == best[2] and (i, j) < (best[0], best[1])):
                    best = (i, j, delta)
            if best is None or not best[2] < -1e-12 * max(error, 0) - np.finfo(float).tiny:
                break
            i, j, delta = best
            k[i], k[j] = False, True
            g += w[i] * H[i] - w[j] * H[j]
            error += delta
            total += 1
    return keep, total


def row_errors(W, H, keep):
    D = np.where(keep, 0, np.asarray(W, np.float64))
    return np.einsum("ij,jk,ik->i", D, H, D)


def allocate(sizes, importance, sparsity, spread):
    """Per-layer pruned counts: a shift c with sum n_l clip(c - v_l, lo, hi) = target, then largest
    remainder within [floor(lo n), ceil(hi n)]."""
    sizes = np.asarray(sizes, np.int64)
    v = np.asarray(importance, np.float64)
    total = int(sizes.sum())
    target = min(total, int(sparsity * total))
    lo, hi = max(0.0, sparsity - spread), min(1.0, sparsity + spread)
    scaled = (v - v.min()) / (v.max() - v.min()) * 2 * spread if v.max() > v.min() else np.zeros_like(v)
    floors = np.floor(lo * sizes).astype(np.int64)
    ceilings = np.minimum(sizes, np.ceil(hi * sizes).astype(np.int64))
    a, b = lo, hi + 2 * spread
    for _ in range(200):
        mid = (a + b) / 2
        if (sizes * np.clip(mid - scaled, lo, hi)).sum() < target:
            a = mid
        else:
            b = mid
    exact = sizes * np.clip(b - scaled, lo, hi)
    counts = np.clip(np.floor(exact).astype(np.int64), floors, ceilings)
    rest = target - int(counts.sum())
    order = sorted(range(len(sizes)), key=lambda l: (-(exact[l] - np.floor(exact[l])), l))
    while rest:
        for l in (order if rest > 0 else order[::-1]):
            if rest > 0 and counts[l] < ceilings[l]:
                counts[l] += 1
                rest -= 1
            elif rest < 0 and counts[l] > floors[l]:
                counts[l] -= 1
                rest += 1
            if not rest:
                break
    return counts
