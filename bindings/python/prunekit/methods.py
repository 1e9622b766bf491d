"""Activation-aware low rank and pruning at inference time.

    a, b, s = prunekit.low_rank(w_k, stats, energy=0.95)    # W ~ a @ b, min ||(W - a b) X^T||
    idx = prunekit.top_channels(h, 768, magnitude=True)     # per token, channels increasing
    w2_sub = prunekit.gather(w2, idx[0], axis="cols")       # the next layer's dense sub-matrix
    keep = prunekit.random_channel_mask(importance, threshold=t, drop_probability=0.3, seed=s)

Options not given keep the library's defaults (pk_low_rank_options_init). Errors raise ValueError,
TypeError or ArithmeticError with the library's message; nothing is written.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from . import _prunekit, _enum, _view, _as_numpy, _hessian, _index_array

__all__ = ["low_rank", "top_channels", "gather", "random_channel_mask"]

_AXES = _enum("AXIS_")


def low_rank(weight: Any, hessian: Any, *, rank: Optional[int] = None, energy: Optional[float] = None,
             dampening: Optional[float] = None, max_retries: Optional[int] = None,
             threads: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rank-r factors (a: rows x r, b: r x cols, float64) minimising ||(W - a b) X^T||, by the
    Cholesky factor L of the (dampened) Hessian X^T X and the truncated SVD of W L, and the
    singular values of W L (min(rows, cols), descending). Give rank (1 ... min(rows, cols)) or
    energy (in (0, 1]: the smallest r keeping that share of sum s_i^2). hessian: (cols, cols) or a
    Stats made with gram=True. a's columns are orthonormal, each with its largest entry positive."""
    w = _view(weight, "weight")
    k = min(w.rows, w.cols)
    a = np.zeros((w.rows, k), dtype=np.float64)
    b = np.zeros((k, w.cols), dtype=np.float64)
    s = np.zeros(k, dtype=np.float64)
    r = _prunekit.low_rank(w.array, _hessian(hessian), a, b, s, rank=rank, energy=energy, dampening=dampening,
                           max_dampening_retries=max_retries, num_threads=threads)
    return np.ascontiguousarray(a[:, :r]), np.ascontiguousarray(b[:r]), s


def top_channels(scores: Any, k: int, *, magnitude: bool = False) -> np.ndarray:
    """Per-sample gating: for every row of scores (samples x channels, float32; a 1-D array is one
    sample), the k channels kept when the channels are ranked by (score, channel) ascending and
    the first channels - k dropped (so ties keep the higher channel), in increasing order, as an
    int64 array (samples, k). magnitude=True ranks |scores| (the activations as their own gate)."""
    a = _as_numpy(scores, "scores")
    v = _view(a.reshape(1, -1) if a.ndim == 1 else a, "scores")   # (the library takes float32 only)
    k = int(k)
    out = np.empty((v.rows, max(k, 0)), dtype=np.int64)
    _prunekit.top_channels(v.array, k, out, magnitude=bool(magnitude))
    return out


def gather(source: Any, indices: Any, *, axis: str = "cols", out: Any = None) -> np.ndarray:
    """Rows (axis="rows") or columns (axis="cols") `indices` of a 2-D source, as a new dense array
    of the same dtype (or into `out`, a writable array of that shape and dtype)."""
    if axis not in _AXES:   # (rows or cols: the library refuses blocks)
        raise ValueError(f"axis must be one of {sorted(_AXES)}, got {axis!r}")
    s = _view(source, "source")
    idx = _index_array(indices, "indices").reshape(-1)
    shape = (idx.size, s.cols) if axis == "rows" else (s.rows, idx.size)
    if out is None:
        out = np.empty(shape, dtype=s.array.dtype)
    _prunekit.gather(s.array, _AXES[axis], idx, _view(out, "out", writable=True).array)
    return out


def random_channel_mask(importance: Any, *, threshold: float, drop_probability: float, seed: int) -> np.ndarray:
    """MACPruning's randomised mask (bool, True = keep): channels with importance >= threshold are
    always kept, each other channel c is dropped when the documented random draw of position c
    under `seed` (as criterion "random") is below drop_probability. Use a new seed per call."""
    imp = np.ascontiguousarray(_as_numpy(importance, "importance").reshape(-1), dtype=np.float32)
    mask = np.empty(imp.size, dtype=np.uint8)
    _prunekit.random_channel_mask(imp, imp.size, mask, threshold=float(threshold),
                                  drop_probability=float(drop_probability), seed=int(seed) & (2**64 - 1))
    return mask.view(np.bool_)
