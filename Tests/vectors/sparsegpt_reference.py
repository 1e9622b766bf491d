"""An independent float64 numpy implementation of SparseGPT's OBS procedure, for the tests.

Follows the SparseGPT reference (Frantar & Alistarh, 2023) step by step: dead inputs, dampening by
a fraction of the mean diagonal, the upper Cholesky factor of the inverse Hessian, column blocks
with lazy updates, unstructured masks chosen per block, N:M masks chosen when a group is reached.
The deliberate differences from the paper's code: PruneKit's count contract (a block prunes
exactly int(n * s) entries, ties broken by row-major position, a stable argsort, instead of
`tmp <= threshold`), and dead inputs' diagonal set to the mean of the live ones instead of 1, so
that the result does not depend on the Hessian's scale.
"""
import numpy as np


def _dampened(H, indices, percdamp):
    Hs = H[np.ix_(indices, indices)].astype(np.float64).copy()
    dead = np.diag(Hs) == 0
    # SparseGPT sets 1, which depends on the Hessian's scale; PruneKit's contract is that any
    # positive multiple of X^T X gives the same result, so dead inputs get the mean of the live
    # diagonal entries (the same as 1 for a Hessian whose live mean is 1).
    Hs[dead, dead] = np.mean(np.diag(Hs)[~dead]) if (~dead).any() else 1
    Hs[np.diag_indices(len(indices))] += percdamp * np.mean(np.diag(Hs))
    return Hs


def sparsegpt(W, H, sparsity=0.5, n=0, m=0, blocksize=128, percdamp=0.01, keep=None):
    """Returns (updated weights, keep mask). n, m > 0: N:M keeping n of m. keep: a given mask."""
    W = np.array(W, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    rows, cols = W.shape
    W[:, np.diag(H) == 0] = 0
    Hd = _dampened(H, np.arange(cols), percdamp)
    U = np.linalg.cholesky(np.linalg.inv(Hd)).T  # Hinv = U^T U, U upper
    pruned = np.zeros((rows, cols), dtype=bool) if keep is None else (np.asarray(keep) == 0)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].copy()
        Err1 = np.zeros((rows, count))
        U1 = U[i1:i2, i1:i2]
        if keep is None and n == 0:
            tmp = W1 ** 2 / np.diag(U1) ** 2
            k = int(tmp.size * sparsity)
            flat = np.zeros(tmp.size, dtype=bool)
            flat[np.argsort(tmp.ravel(), kind="stable")[:k]] = True
            pruned[:, i1:i2] = flat.reshape(rows, count)
        for i in range(count):
            if keep is None and n and i % m == 0:
                tmp = W1[:, i:i + m] ** 2 / np.diag(U1)[i:i + m] ** 2
                order = np.argsort(tmp, axis=1, kind="stable")
                group = np.zeros((rows, m), dtype=bool)
                np.put_along_axis(group, order[:, :m - n], True, axis=1)
                pruned[:, i1 + i:i1 + i + m] = group
            w = W1[:, i].copy()
            d = U1[i, i]
            q = w.copy()
            q[pruned[:, i1 + i]] = 0
            err = (w - q) / d
            W1[:, i:] -= np.outer(err, U1[i, i:])
            W1[:, i] = q
            Err1[:, i] = err
        W[:, i1:i2] = W1
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]
    return W, (~pruned).astype(np.uint8)


def prune_columns(W, H, keep_columns, percdamp=0.01):
    """Least squares: W'_K = W_K + W_P H_PK H_KK^-1 (H_KK dampened), W'_P = 0."""
    W = np.array(W, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    keep = np.asarray(keep_columns) != 0
    K, P = np.flatnonzero(keep), np.flatnonzero(~keep)
    out = W.copy()
    if len(K) and len(P):
        Hkk = _dampened(H, K, percdamp)
        out[:, K] = W[:, K] + (W[:, P] @ H[np.ix_(P, K)]) @ np.linalg.inv(Hkk)
    out[:, P] = 0
    return out
