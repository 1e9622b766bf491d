"""Independent float64 numpy reference of PruneKit's ADMM pruning (pk_admm), written from the
algorithm as documented in include/prunekit.h, for the tests. Not used by the library.

Normalise (d = sqrt(diag H), dead inputs d = 1 with a unit diagonal and zero weights), damp the
unit diagonal, then for t < iterations: S = W + U; during the cubic ramp choose the mask of S by
(S^2, position); U = S on pruned entries, Z = S on kept ones; W = (XY + rho (Z - U)) (Hd + rho I)^-1.
Then Z = (W + U) on the support, conjugate-gradient steps per row on the support, and W' = Z / d.
"""
import numpy as np


def _prune_lowest(keys, k):
    """Boolean 'pruned' over a flat key array: the k lowest by (key, position)."""
    order = np.lexsort((np.arange(keys.size), keys))
    pruned = np.zeros(keys.size, bool)
    pruned[order[:k]] = True
    return pruned


def ramp_sparsity(s, t, ramp):
    if ramp == 0:
        return s
    left = 1 - (t + 1) / ramp
    return s - s * (left * left * left)


def choose(S, scope, s, n, m, t, ramp):
    rows, cols = S.shape
    keys = S * S
    if scope == "layer":
        cur = ramp_sparsity(s, t, ramp)
        return _prune_lowest(keys.reshape(-1), min(rows * cols, int(cur * rows * cols))).reshape(rows, cols)
    if scope == "row":
        cur = ramp_sparsity(s, t, ramp)
        k = min(cols, int(cur * cols))
        return np.stack([_prune_lowest(keys[r], k) for r in range(rows)])
    # N:M
    pruned = np.zeros((rows, cols), bool)
    for g in range(0, cols, m):
        block = keys[:, g:g + m]
        for r in range(rows):
            pruned[r, g:g + m] = _prune_lowest(block[r], m - n)
    if t + 1 >= ramp:
        return pruned
    cur = ramp_sparsity((m - n) / m, t, ramp)
    protected = np.where(pruned, keys, np.inf)
    return _prune_lowest(protected.reshape(-1), min(rows * cols, int(cur * rows * cols))).reshape(rows, cols)


def admm(W, H, scope="layer", sparsity=0.5, n=2, m=4, iterations=30, ramp=20, rho=1.0, rho_growth=1.0,
         rho_interval=1, refine=10, dampening=0.1, mask=None):
    """(keep mask, pruned weights), float64."""
    W = np.asarray(W, np.float64)
    H = np.asarray(H, np.float64)
    rows, cols = W.shape
    diag = np.diag(H).copy()
    dead = diag == 0
    d = np.where(dead, 1.0, np.sqrt(diag))
    Hd = H / d[:, None] / d[None, :]
    Hd[dead, :] = 0
    Hd[:, dead] = 0
    Hd[dead, dead] = 1
    Hd[np.diag_indices(cols)] += dampening
    Wn = W * d[None, :]
    Wn[:, dead] = 0
    XY = Wn @ Hd
    s = sparsity if scope != "nm" else (m - n) / m
    pruned = None if mask is None else ~np.asarray(mask, bool)
    Wk, U = Wn.copy(), np.zeros_like(Wn)
    inverse = np.linalg.inv(Hd + rho * np.eye(cols))
    for t in range(iterations):
        S = Wk + U
        if mask is None and (t < ramp or (t == 0 and ramp == 0)):
            pruned = choose(S, scope, s, n, m, t, ramp)
        U = np.where(pruned, S, 0)
        Z = np.where(pruned, 0, S)
        Wk = (XY + rho * (Z - U)) @ inverse
        if rho_growth != 1 and (t + 1) % rho_interval == 0 and t + 1 < iterations:
            rho *= rho_growth
            inverse = np.linalg.inv(Hd + rho * np.eye(cols))
    if mask is None and iterations == 0:
        pruned = choose(Wk, scope, s, n, m, 0, ramp)
    Z = np.where(pruned, 0, Wk + U)
    Z[:, dead] = 0
    if refine:
        G = np.where(pruned, 0, Z @ Hd - XY)
        P = -G
        rr = (G * G).sum(1)
        for _ in range(refine):
            Q = P @ Hd
            for r in range(rows):
                if rr[r] <= 0:
                    continue
                curvature = P[r] @ Q[r]
                if not curvature > 0:
                    rr[r] = 0
                    continue
                alpha = rr[r] / curvature
                keep = ~pruned[r]
                Z[r, keep] += alpha * P[r, keep]
                G[r, keep] += alpha * Q[r, keep]
                new = G[r] @ G[r]
                beta = new / rr[r]
                P[r] = np.where(pruned[r], 0, -G[r] + beta * P[r])
                rr[r] = new
    out = Z / d[None, :]
    out[:, dead] = 0
    return ~pruned, out


def layer_error(W, Wp, H):
    """||(W - W') X||^2 = tr((W - W') H (W - W')^T)."""
    D = np.asarray(W, np.float64) - np.asarray(Wp, np.float64)
    return float(np.einsum("ij,jk,ik->", D, H, D))
