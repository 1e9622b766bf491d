"""PruneKit: decide which weights of a neural network to remove, and remove them.

Weights are 2-D (rows = output features, cols = input features, PyTorch's Linear layout); a
conv weight [out, in, kh, kw] is viewed as [out, in*kh*kw]. Arrays are numpy arrays or CPU torch
tensors of float32, float64, float16 or bfloat16 (torch.bfloat16 or ml_dtypes.bfloat16).
Contiguous rows are read in place (no copy), also when rows are strided (a slice of a larger
array). Masks are numpy bool arrays: True = keep, False = pruned, so `w * mask` is the pruned
weight.

Exact semantics, shared with the C and Swift APIs: a group of n entries at sparsity s prunes
k = int(n * s) entries, the k lowest by (score, index); scores are one float32 operation per
entry; results never depend on the number of threads. Errors raise ValueError, TypeError or
MemoryError (or PruneKitError) with the library's message, and nothing is written.

    import prunekit
    stats = prunekit.Stats(features=w.shape[1])
    for batch in activations:            # [tokens, features]
        stats.update(batch)
    mask = prunekit.mask(w, 0.5, criterion="wanda", features=stats)
    prunekit.apply_mask(w, mask)
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from . import _prunekit
from ._prunekit import PruneKitError

__all__ = ["score", "mask", "masks", "apply_mask", "sparsity", "Stats", "PruneKitError",
           "sparsegpt", "admm", "refine_mask", "channel_permutation", "ChannelPermutation", "outlier_ratio", "allocate_sparsity", "compensate_bias", "output_error", "reconstruct", "prune_columns", "to_24", "from_24", "to_csr", "from_csr",
           "to_bitmask", "from_bitmask", "bfloat16", "save_stats", "load_stats", "CRITERIA", "SCOPES",
           "Member", "Group", "select", "structure_scores", "compact", "compact_data_free", "apply_structures",
           "structure_mask", "block_masks", "key_channels", "permute", "permute_stats", "PermutedStats", "low_rank",
           "top_channels", "gather", "random_channel_mask",
           "__version__"]

_VERSION_NUMBER, __version__ = _prunekit.version()
if _VERSION_NUMBER != _prunekit.HEADER_VERSION:  # pragma: no cover - the extension checks too
    raise ImportError(f"prunekit: loaded libprunekit {__version__} does not match the extension")



def _enum(prefix: str) -> "dict[str, int]":
    """name -> value of the header's PK_<prefix>* enum (exported by the extension), names in lower case."""
    return {name[len(prefix):].lower(): value for name, value in vars(_prunekit).items()
            if name.startswith(prefix) and isinstance(value, int)}


def _code(table: "dict[str, int]", name: Optional[str], what: str) -> Optional[int]:
    """The header's value of an enum name; None (not given) stays None, the library's default."""
    if name is not None and name not in table:
        raise ValueError(f"{what} must be one of {sorted(table)}, got {name!r}")
    return None if name is None else table[name]


CRITERIA = _enum("CRITERION_")
SCOPES = _enum("SCOPE_")
_DTYPES = _enum("DTYPE_")
_PRECISIONS = _enum("PRECISION_")


class _View:
    """A 2-D array over the argument's memory as the extension takes it (no copy when possible),
    with the argument's own shape and the library's dtype code."""

    __slots__ = ("array", "dtype", "rows", "cols", "shape")

    def __init__(self, array: np.ndarray, dtype: int, shape: Tuple[int, ...]):
        self.array = array
        self.dtype = dtype
        self.rows, self.cols = array.shape
        self.shape = shape


def _native_byte_order(a: np.ndarray, name: str, writable: bool) -> np.ndarray:
    """The library reads and writes memory in the host's byte order, and np.dtype('>f4').name is
    'float32' too: a byte-swapped input is read by value (a native copy); a byte-swapped array
    that would be written in place is refused, since native results in it would be wrong."""
    if a.dtype.isnative:
        return a
    if writable:
        raise ValueError(f"{name}: array has non-native byte order ({a.dtype.str}), but this call writes to it; "
                         f"pass a native one (a.astype(a.dtype.newbyteorder('=')))")
    return a.astype(a.dtype.newbyteorder("="))


def _as_numpy(x: Any, name: str, writable: bool = False) -> np.ndarray:
    """numpy view of a numpy array or CPU torch tensor, without copying (unless byte-swapped)."""
    if isinstance(x, np.ndarray):
        return _native_byte_order(x, name, writable)
    module = type(x).__module__
    if module.startswith("torch"):
        if x.device.type != "cpu":
            raise ValueError(f"{name}: torch tensor is on {x.device}; PruneKit takes CPU tensors")
        t = x.detach()
        if str(t.dtype) == "torch.bfloat16":  # small vectors and masks only: weights take _view
            return t.float().numpy()
        return t.numpy()
    if isinstance(x, (list, tuple)):
        return np.asarray(x, dtype=np.float32)
    raise TypeError(f"{name}: expected a numpy array or a CPU torch tensor, got {type(x).__name__}")


def _bfloat16_numpy_view(x: Any) -> Optional[np.ndarray]:
    """uint16 view of a bfloat16 torch tensor, when ml_dtypes is not installed."""
    if type(x).__module__.startswith("torch") and str(x.dtype) == "torch.bfloat16":
        import torch
        if x.device.type != "cpu":
            raise ValueError(f"torch tensor is on {x.device}; PruneKit takes CPU tensors")
        return x.detach().view(dtype=torch.int16).numpy().view(np.uint16)
    return None


class bfloat16:
    """Marks a uint16 numpy array as bfloat16 bit patterns (as read from a file), so that
    mask(), apply_mask() and the rest treat it as bfloat16 without a copy (byte-swapped bits are
    read through a copy and refused as outputs, as other arrays are)."""

    __slots__ = ("bits",)

    def __init__(self, bits: np.ndarray):
        if not isinstance(bits, np.ndarray) or bits.dtype.kind != "u" or bits.dtype.itemsize != 2:
            raise TypeError("bfloat16() takes a uint16 numpy array of bfloat16 bit patterns")
        self.bits = bits

    @property
    def shape(self) -> Tuple[int, ...]:
        return self.bits.shape


def _view(x: Any, name: str, writable: bool = False) -> _View:
    """Shapes an argument into a 2-D view. Reads copy only what cannot be viewed; writes refuse."""
    bf16 = _native_byte_order(x.bits, name, writable) if isinstance(x, bfloat16) else _bfloat16_numpy_view(x)
    if bf16 is not None:
        a, code = bf16, _DTYPES["bfloat16"]
    else:
        a = _as_numpy(x, name, writable)
        dtype_name = a.dtype.name
        if dtype_name not in _DTYPES:
            raise TypeError(f"{name}: dtype {a.dtype} is not supported (float32, float64, float16, bfloat16)")
        code = _DTYPES[dtype_name]
        if dtype_name == "bfloat16":
            a = a.view(np.uint16)
    shape = a.shape
    if a.ndim < 2:
        raise ValueError(f"{name}: expected a 2-D (or conv N-D) array, got shape {shape}")
    if writable and not a.flags.writeable:
        raise ValueError(f"{name}: array is read-only, but this call writes to it")
    if a.ndim > 2:
        flat = a.reshape(a.shape[0], -1)
        if not np.shares_memory(flat, a) and a.size:
            if writable:
                raise ValueError(f"{name}: a non-contiguous conv weight cannot be written in place")
        a = flat
    item = a.itemsize
    row_ok = a.shape[1] <= 1 or a.strides[1] == item
    stride_ok = a.shape[0] <= 1 or (a.strides[0] % item == 0 and a.strides[0] // item >= a.shape[1])
    aligned = a.flags.aligned and a.ctypes.data % item == 0
    if not (row_ok and stride_ok and aligned):
        if writable:
            raise ValueError(f"{name}: rows must be contiguous and aligned to write in place "
                             f"(strides {a.strides}); pass a contiguous array")
        a = np.array(a, order="C")  # a copy: ascontiguousarray keeps a contiguous, unaligned array as it is
    return _View(a, code, shape)


def _criterion(criterion: Optional[str], features: Any, gradient: Any, seed: Optional[int], name: str = "") -> dict:
    """The criterion as the extension takes it (pk_criterion's fields; None: the library's default,
    magnitude and seed 0). A Stats goes as it is: the extension reads its L2 norms (its standard
    deviations for STADE) and rounds them to float32, as it rounds float64 vectors; the library
    checks what the kind needs."""
    if features is not None and not isinstance(features, Stats):
        features = _as_numpy(features, f"{name}features")
        features = np.ascontiguousarray(features, dtype=None if features.dtype in (np.float32, np.float64) else np.float32)
    return {"kind": _code(CRITERIA, criterion, "criterion"), "features": features, "seed": seed,
            "gradient": None if gradient is None else _view(gradient, f"{name}gradient").array}


def _nm(pattern: Union[str, Tuple[int, int], None]) -> dict:
    """The fields of an N:M pattern (scope NM, n, m); none for None."""
    if pattern is None:
        return {}
    if isinstance(pattern, str):
        try:
            n, m = (int(p) for p in pattern.split(":"))
        except ValueError:
            raise ValueError(f"pattern must look like '2:4', got {pattern!r}") from None
    else:
        n, m = pattern
    return {"scope": SCOPES["nm"], "n": int(n), "m": int(m)}


def _scope(scope: Optional[str]) -> Optional[int]:
    """A scope's value (N:M is reached through pattern=); None: the library's default."""
    if scope == "nm" or (scope is not None and scope not in SCOPES):
        raise ValueError(f"unknown scope {scope!r}; one of row, layer, global (or pass pattern='N:M')")
    return None if scope is None else SCOPES[scope]


def _selection(sparsity: Optional[float], scope: Optional[str], pattern: Union[str, Tuple[int, int], None],
               threads: Optional[int]) -> dict:
    """The selection as the extension takes it (pk_selection's fields; None: the library's default)."""
    if pattern is not None:
        return dict(_nm(pattern), num_threads=threads)
    return {"scope": _scope(scope), "sparsity": sparsity, "num_threads": threads}


def score(weight: Any, criterion: Optional[str] = None, *, features: Any = None, gradient: Any = None,
          seed: Optional[int] = None) -> np.ndarray:
    """Importance score of every weight, float32, shape (rows, cols).

    criterion: "magnitude" |w| (the default); "wanda" |w| * features[col] (L2 norms; a Stats works);
    "stade" |w| * features[col] (standard deviations; a Stats works); "taylor" |w * gradient|;
    "random" a documented counter-based uniform draw from `seed`; "scores" the values themselves.
    """
    w = _view(weight, "weight")
    out = np.empty((w.rows, w.cols), dtype=np.float32)
    _prunekit.score(w.array, _criterion(criterion, features, gradient, seed), out)
    return out


def mask(weight: Any, sparsity: Optional[float] = None, *, criterion: Optional[str] = None, scope: Optional[str] = None,
         pattern: Union[str, Tuple[int, int], None] = None, features: Any = None, gradient: Any = None,
         seed: Optional[int] = None, threads: Optional[int] = None, out: Any = None) -> np.ndarray:
    """Pruning mask of one weight matrix: bool, shape (rows, cols), True = keep.

    Options left as None take the library's defaults (sparsity 0.5, criterion "magnitude", scope
    "row", seed 0). scope: "row" (each output's inputs compete, as in Wanda), "layer" (the whole matrix);
    pattern="2:4" (or (n, m)) keeps n of every m consecutive inputs instead. threads: 0 = one per
    CPU; the result does not depend on it. For conv weights the mask has the (out, in*kh*kw)
    shape; reshape it to the weight's shape with `.reshape(w.shape)`. out: a writable C-contiguous
    bool or uint8 numpy array of rows * cols entries to write the mask into (reused across calls,
    it saves allocating and page-faulting a new mask per layer); the result is a view of it.
    """
    w = _view(weight, "weight")
    selection = _selection(sparsity, scope, pattern, threads)
    if out is None:
        out = np.empty((w.rows, w.cols), dtype=np.uint8)
    else:
        if not isinstance(out, np.ndarray) or out.dtype not in (np.bool_, np.uint8):
            raise TypeError("out: expected a bool or uint8 numpy array")
        if out.size != w.rows * w.cols:
            raise ValueError(f"out has {out.size} entries, the mask needs {w.rows} x {w.cols}")
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError("out must be writable and C-contiguous")
        out = out.view(np.uint8).reshape(w.rows, w.cols)
    _prunekit.mask(w.array, _criterion(criterion, features, gradient, seed), selection, out)
    return out.view(np.bool_)


def masks(weights: Sequence[Any], sparsity: Optional[float] = None, *, criterion: Optional[str] = None,
          scope: str = "global", pattern: Union[str, Tuple[int, int], None] = None,
          features: Optional[Sequence[Any]] = None, gradients: Optional[Sequence[Any]] = None,
          seeds: Optional[Sequence[int]] = None, threads: Optional[int] = None) -> list:
    """Masks of several layers (sparsity and criterion as in mask()). scope="global" (this call's
    default, unlike mask()'s) ranks all layers' entries together (index: layer
    position, then row-major position); other scopes treat each layer as mask() would. Nothing
    is computed unless every layer is valid."""
    weights = list(weights)
    count = len(weights)
    for name, seq in (("features", features), ("gradients", gradients), ("seeds", seeds)):
        if seq is not None and len(seq) != count:
            raise ValueError(f"{name} has {len(seq)} entries for {count} layers")
    selection = _selection(sparsity, scope, pattern, threads)
    views = [_view(weight, f"weights[{i}]") for i, weight in enumerate(weights)]
    criteria = [_criterion(criterion, None if features is None else features[i],
                           None if gradients is None else gradients[i], None if seeds is None else seeds[i],
                           f"layer {i}: ") for i in range(count)]
    outs = [np.empty((w.rows, w.cols), dtype=np.uint8) for w in views]
    _prunekit.mask_layers([w.array for w in views], criteria, selection, outs)
    return [o.view(np.bool_) for o in outs]


def apply_mask(weight: Any, mask: Any) -> None:
    """Sets the pruned weights (mask False/0) to +0.0 in place, in the weight's own dtype.
    The weight must be writable with contiguous rows (a strided row slice is fine)."""
    w = _view(weight, "weight", writable=True)
    mk = _as_numpy(mask, "mask")
    if mk.dtype == np.bool_:
        mk = mk.view(np.uint8)
    if mk.dtype != np.uint8:
        raise TypeError(f"mask: expected bool or uint8, got {mk.dtype}")
    if mk.size != w.rows * w.cols:
        raise ValueError(f"mask has {mk.size} entries, weight has {w.rows} x {w.cols}")
    _prunekit.apply_mask(w.array, np.ascontiguousarray(mk).reshape(-1))


def sparsity(mask: Any) -> Tuple[float, np.ndarray]:
    """(overall, per_row): the fraction of pruned entries of a mask, overall and per row."""
    mk = _as_numpy(mask, "mask")
    if mk.dtype == np.bool_:
        mk = mk.view(np.uint8)
    if mk.ndim != 2:
        mk = mk.reshape(mk.shape[0], -1) if mk.ndim > 2 else mk.reshape(1, -1)
    rows = np.empty(mk.shape[0], dtype=np.float64)
    overall = _prunekit.mask_sparsity(np.ascontiguousarray(mk, dtype=np.uint8), mk.shape[0], mk.shape[1], rows)
    return overall, rows


def _hessian(hessian: Any, cols: Optional[int] = None) -> np.ndarray:
    """A Hessian as float64 (a Stats gives its Gram matrix); the library checks its size against
    the weight's columns."""
    if isinstance(hessian, Stats):
        hessian = hessian.gram()
    return np.ascontiguousarray(_as_numpy(hessian, "hessian"), dtype=np.float64)


def _mask_bytes(mask: Any, entries: int, name: str = "mask") -> np.ndarray:
    """A bool or 0/1 mask as contiguous bytes of exactly `entries` entries (the library checks the
    values)."""
    m = _as_numpy(mask, name)
    if m.dtype == np.bool_:
        m = m.view(np.uint8)
    m = np.ascontiguousarray(m, dtype=np.uint8).reshape(-1)
    if m.size != entries:
        raise ValueError(f"{name} has {m.size} entries, {entries} needed")
    return m


def _result_like(weight: Any, w: "_View", out: Any):
    """Where updated weights go: `out` (its view), or a new array of the weight's dtype and kind
    (bfloat16 is held as uint16 bits, so it is wrapped back: prunekit.bfloat16, torch, ml_dtypes)."""
    if out is not None:
        return out, _view(out, "out", writable=True)
    target = np.empty(w.shape, dtype=w.array.dtype if w.dtype != _DTYPES["bfloat16"] else np.uint16)
    result = target
    if w.dtype == _DTYPES["bfloat16"]:
        if isinstance(weight, bfloat16):
            result = bfloat16(target)
        elif _bfloat16_numpy_view(weight) is not None:
            import torch
            result = torch.from_numpy(target.view(np.int16)).view(torch.bfloat16)
        else:  # an ml_dtypes.bfloat16 numpy array
            result = target.view(weight.dtype)
    return result, _view(result, "out", writable=True)


def sparsegpt(weight: Any, hessian: Any, sparsity: Optional[float] = None, *,
              pattern: Union[str, Tuple[int, int], None] = None, block_size: Optional[int] = None,
              dampening: Optional[float] = None, max_retries: Optional[int] = None, precision: Optional[str] = None,
              threads: Optional[int] = None, out: Any = None):
    """SparseGPT on one layer: (mask, updated weight).

    hessian: X^T X of the layer's calibration inputs (any positive multiple), shape (cols, cols), or
    a Stats made with gram=True. Unstructured: exactly int(sparsity * rows * block_size) pruned per
    block of columns; pattern="2:4" keeps n of every m per row. The arithmetic runs in `precision`
    ("float32" or "float64"). out: where the updated weight goes (the weight itself for in-place
    work; default a new array of the weight's dtype and kind, a prunekit.bfloat16 for one). Options
    left as None take the library's defaults (pk_reconstruction_options_init: sparsity 0.5, blocks
    of 128 columns, dampening 0.01, 4 retries, float32). Raises ArithmeticError when the Hessian is not
    positive definite after the dampening retries; nothing is written on any error.
    """
    w = _view(weight, "weight")
    where = _nm(pattern) or dict(sparsity=sparsity)
    result, o = _result_like(weight, w, out)
    mask = np.empty((w.rows, w.cols), dtype=np.uint8)
    _prunekit.sparsegpt(w.array, _hessian(hessian), mask, o.array, block_size=block_size, dampening=dampening,
                        max_dampening_retries=max_retries, precision=_code(_PRECISIONS, precision, "precision"),
                        num_threads=threads, **where)
    return mask.view(np.bool_), result


def admm(weight: Any, hessian: Any, sparsity: Optional[float] = None, *,
         pattern: Union[str, Tuple[int, int], None] = None, scope: Optional[str] = None, mask: Any = None,
         iterations: Optional[int] = None, ramp_iterations: Optional[int] = None, rho: Optional[float] = None,
         rho_growth: Optional[float] = None, rho_interval: Optional[int] = None,
         refine_iterations: Optional[int] = None, dampening: Optional[float] = None,
         precision: Optional[str] = None, threads: Optional[int] = None, out: Any = None):
    """ADMM pruning with weight updates on one layer (Boza 2024): (mask, updated weight).

    Minimises ||(W - W') X||^2 under the pattern: least-squares steps alternate with projections
    onto the pattern, the mask re-chosen during a cubic sparsity ramp and then frozen, then
    conjugate-gradient steps on the frozen support. hessian: X^T X (any positive multiple) or a
    Stats made with gram=True. scope "layer" (default: exactly int(sparsity * rows * cols) pruned)
    or "row"; pattern="2:4" keeps n of every m per row. mask: a given mask (True = keep) whose
    kept weights are updated instead. Options left as None take the library's defaults
    (pk_admm_options_init: sparsity 0.5, scope "layer", 30 iterations, 20 of ramp, rho 1, 10
    refinement steps, dampening 0.1, float32). Raises ArithmeticError on a numeric failure; nothing
    is written on any error.
    """
    w = _view(weight, "weight")
    where = _nm(pattern) or dict(scope=_scope(scope))
    result, o = _result_like(weight, w, out)
    given = None if mask is None else _mask_bytes(mask, w.rows * w.cols)
    mask_out = np.empty((w.rows, w.cols), dtype=np.uint8)
    _prunekit.admm(w.array, _hessian(hessian), given, mask_out, o.array, sparsity=sparsity,
                   precision=_code(_PRECISIONS, precision, "precision"), iterations=iterations,
                   ramp_iterations=ramp_iterations, rho=rho, rho_growth=rho_growth, rho_interval=rho_interval,
                   refine_iterations=refine_iterations, dampening=dampening, num_threads=threads, **where)
    return mask_out.view(np.bool_), result


def refine_mask(weight: Any, hessian: Any, mask: Any, *, pattern: Union[str, Tuple[int, int], None] = None,
                max_swaps: Optional[int] = None, candidates: Optional[int] = None,
                threads: Optional[int] = None) -> np.ndarray:
    """A better mask by swaps (SparseSwaps): kept and pruned entries of a row trade places while
    that lowers the row's exact output error ||(w - w*mask) X||^2 with the weights unchanged.
    Per-row counts are kept; pattern="2:4" keeps swaps inside each group (the mask must be 2:4).
    hessian: X^T X or a Stats made with gram=True. Returns the new mask (bool); `mask` itself is
    not modified. Options left as None take the library's defaults (100 swaps per row, 8
    candidates per side).
    """
    w = _view(weight, "weight")
    refined = _mask_bytes(mask, w.rows * w.cols).copy()
    _prunekit.refine_mask(w.array, _hessian(hessian), refined, max_swaps=max_swaps, candidates=candidates,
                          num_threads=threads, **_nm(pattern))
    return refined.reshape(w.rows, w.cols).view(np.bool_)


class ChannelPermutation(NamedTuple):
    """What channel_permutation found: permutation[j] = the original input column placed at
    position j (the permuted weight is weight[:, permutation]); the importance the N:M mask keeps
    without and with it."""
    permutation: np.ndarray
    kept_before: float
    kept_after: float


def channel_permutation(weight: Any, pattern: Union[str, Tuple[int, int], None] = None, *,
                        criterion: Optional[str] = None, features: Any = None, gradient: Any = None,
                        seed: Optional[int] = None, segment: Optional[int] = None,
                        max_swaps: Optional[int] = None, time_limit: Optional[float] = None,
                        threads: Optional[int] = None) -> ChannelPermutation:
    """A permutation of the layer's input channels under which the N:M mask of the criterion's
    scores keeps more importance (Pool and Yu 2021, NVIDIA ASP; RIA 2024): greedy channel swaps
    between groups, each exactly gaining, largest first, until none gains or the budget is spent.
    Never keeps less than the identity. criterion/features/gradient/seed as in mask(); pattern
    None: 2:4. segment: 0 (any column anywhere, the default) or a run length inside which columns move (a head's
    channels). max_swaps: the budget (default 2^20; 0 is an error); time_limit: seconds (default
    none; a limit makes the result depend on the machine). Deterministic for any thread count.
    Apply it with prunekit.structured.permute(group, p.permutation) over the producer's rows (and
    bias) and this layer's columns, and permute the layer's statistics the same way
    (prunekit.structured.permute_stats)."""
    w = _view(weight, "weight")
    nm = _nm(pattern)
    perm = np.empty(w.cols, dtype=np.int64)
    before, after = _prunekit.channel_permutation(w.array, _criterion(criterion, features, gradient, seed), perm,
                                                  n=nm.get("n"), m=nm.get("m"), segment=segment, max_swaps=max_swaps,
                                                  time_limit=time_limit, num_threads=threads)
    return ChannelPermutation(perm, before, after)


def outlier_ratio(weight: Any, criterion: str = "wanda", *, features: Any = None, threshold: float = 5.0,
                  gradient: Any = None, seed: Optional[int] = None) -> float:
    """OWL's outlier ratio of a layer: the fraction of its scores (Wanda by default) above
    `threshold` times their mean."""
    return _prunekit.outlier_ratio(_view(weight, "weight").array, _criterion(criterion, features, gradient, seed),
                                   threshold)


def allocate_sparsity(sizes: Any, importance: Any, sparsity: float, *, spread: float = 0.08):
    """Per-layer sparsities for a global target (OWL / sensitivity allocation): (sparsities, counts).

    sizes: weights per layer; importance: per layer, higher = prune less (outlier_ratio for OWL, a
    probe error for a sensitivity allocation). Every layer's sparsity lies in [sparsity - spread,
    sparsity + spread] (to one weight) and the counts add up to exactly int(sparsity * sum(sizes));
    pass sparsities[l] to the per-layer call (its floor(s * n) gives counts[l] back).
    """
    n = np.ascontiguousarray(np.asarray(sizes), dtype=np.int64).reshape(-1)
    v = np.ascontiguousarray(np.asarray(importance, dtype=np.float64)).reshape(-1)
    counts = np.empty(n.size, np.int64)
    sparsities = np.empty(n.size, np.float64)
    _prunekit.allocate_sparsity(n, v, sparsity, spread, counts, sparsities)
    return sparsities, counts


def output_error(original: Any, pruned: Any, hessian: Any) -> Tuple[float, float]:
    """(error, relative): a layer's output error on its calibration inputs from the Gram matrix,
    ||(W - W') X^T||^2, and that over ||W X^T||^2. hessian: X^T X or a Stats made with gram=True."""
    return _prunekit.output_error(_view(original, "original").array, _view(pruned, "pruned").array, _hessian(hessian))


def compensate_bias(original: Any, pruned: Any, bias: Any, mean: Any) -> Any:
    """Folds the mean output shift of pruning into the bias, in place: bias += (original - pruned)
    @ mean (mean: the layer inputs' mean per feature, or a Stats). Works after any method; with
    a weight update, reconstruct on stats.gram(centered=True) first. Returns bias."""
    if isinstance(mean, Stats):
        mean = mean.mean()
    mu = np.ascontiguousarray(_as_numpy(mean, "mean"), dtype=np.float64).reshape(-1)
    b = _view(bias.reshape(1, -1) if hasattr(bias, "reshape") else bias, "bias", writable=True)
    _prunekit.compensate_bias(_view(original, "original").array, _view(pruned, "pruned").array, mu, b.array)
    return bias


def reconstruct(weight: Any, hessian: Any, mask: Any, *, block_size: Optional[int] = None,
                dampening: Optional[float] = None, max_retries: Optional[int] = None, precision: Optional[str] = None,
                threads: Optional[int] = None, out: Any = None):
    """The SparseGPT update under a given mask (True = keep), e.g. a Wanda mask: the updated weight.
    Options as in sparsegpt()."""
    w = _view(weight, "weight")
    result, o = _result_like(weight, w, out)
    _prunekit.reconstruct(w.array, _hessian(hessian), _mask_bytes(mask, w.rows * w.cols), o.array,
                          block_size=block_size, dampening=dampening, max_dampening_retries=max_retries,
                          precision=_code(_PRECISIONS, precision, "precision"), num_threads=threads)
    return result


def prune_columns(weight: Any, hessian: Any, keep: Any, *, dampening: Optional[float] = None,
                  max_retries: Optional[int] = None, precision: Optional[str] = None, out: Any = None):
    """Removes input columns (keep[c] False) and compensates with the kept ones in closed form
    (least squares on the Hessian): the updated weight, zero in the removed columns. Options as
    in sparsegpt()."""
    w = _view(weight, "weight")
    result, o = _result_like(weight, w, out)
    _prunekit.prune_columns(w.array, _hessian(hessian), _mask_bytes(keep, w.cols, "keep"), o.array,
                            dampening=dampening, max_dampening_retries=max_retries,
                            precision=_code(_PRECISIONS, precision, "precision"))
    return result


# ------------------------------------------------------------------------------------------
# Sparse formats (layouts in docs/sparse-formats.md). Values keep the weight's dtype (bfloat16
# values come back as uint16 bit patterns).

def _values_dtype(w: _View) -> np.dtype:
    return np.dtype(np.uint16) if w.dtype == _DTYPES["bfloat16"] else w.array.dtype



def to_24(weight: Any) -> Tuple[np.ndarray, np.ndarray]:
    """2:4 compressed form: (values [rows, cols/2], metadata uint8 [rows, ceil(cols/8)]).
    Raises ValueError for a weight that is not 2:4."""
    w = _view(weight, "weight")
    values = np.empty((w.rows, max(w.cols // 2, 1)), dtype=_values_dtype(w))
    metadata = np.empty((w.rows, max((w.cols + 7) // 8, 1)), dtype=np.uint8)
    _prunekit.export_24(w.array, values, metadata)
    return values, metadata


def from_24(values: Any, metadata: Any) -> np.ndarray:
    """Dense weights from to_24's output."""
    v = np.ascontiguousarray(_as_numpy(values, "values"))
    md = np.ascontiguousarray(_as_numpy(metadata, "metadata"), dtype=np.uint8)
    if v.ndim != 2 or md.shape != (v.shape[0], (v.shape[1] // 2 + 1) // 2):
        raise ValueError(f"values {v.shape} and metadata {md.shape} do not describe a 2:4 matrix")
    dense = np.empty((v.shape[0], 2 * v.shape[1]), dtype=v.dtype)   # (the extension refuses other dtypes)
    _prunekit.import_24(v, md, dense)
    return dense


def to_csr(weight: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of the non-zeros: (row_offsets int64 [rows+1], columns int64 [nnz], values [nnz])."""
    w = _view(weight, "weight")
    nnz = _prunekit.count_nonzero(w.array)
    offsets, columns = np.empty(w.rows + 1, np.int64), np.empty(max(nnz, 1), np.int64)
    values = np.empty(max(nnz, 1), dtype=_values_dtype(w))
    _prunekit.export_csr(w.array, nnz, offsets, columns, values)
    return offsets, columns[:nnz], values[:nnz]


def _index_array(value: Any, name: str) -> np.ndarray:
    """An integer array as contiguous int64; floats are refused, not truncated."""
    a = np.asarray(value) if isinstance(value, (list, tuple)) else _as_numpy(value, name)
    if a.dtype.kind not in "iu" and not (a.size == 0 and a.dtype.kind == "f"):
        raise TypeError(f"{name} must be an integer array, got {a.dtype}")
    if a.dtype.kind == "u" and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} has entries above the int64 range")
    return np.ascontiguousarray(a, dtype=np.int64)


def from_csr(row_offsets: Any, columns: Any, values: Any, shape: Tuple[int, int]) -> np.ndarray:
    """Dense weights from CSR."""
    rows, cols = shape
    offsets = _index_array(row_offsets, "row_offsets")
    cols_ = _index_array(columns, "columns")
    v = np.ascontiguousarray(_as_numpy(values, "values"))
    if offsets.shape != (rows + 1,) or cols_.shape != v.shape or (rows and offsets[-1] != len(v)):
        raise ValueError("row_offsets, columns and values do not describe a CSR matrix of that shape")
    dense = np.empty((rows, cols), dtype=v.dtype)
    _prunekit.import_csr(offsets, cols_ if len(cols_) else np.zeros(1, np.int64), v if len(v) else np.zeros(1, v.dtype),
                         dense)
    return dense


def to_bitmask(weight: Any) -> Tuple[np.ndarray, np.ndarray]:
    """(bits uint8 [rows, ceil(cols/8)], values [nnz] in row-major order)."""
    w = _view(weight, "weight")
    nnz = _prunekit.count_nonzero(w.array)
    bits = np.empty((w.rows, (w.cols + 7) // 8), np.uint8)
    values = np.empty(max(nnz, 1), dtype=_values_dtype(w))
    _prunekit.export_bitmask(w.array, nnz, bits, values)
    return bits, values[:nnz]


def from_bitmask(bits: Any, values: Any, shape: Tuple[int, int]) -> np.ndarray:
    """Dense weights from a bit mask and its values."""
    rows, cols = shape
    b = np.ascontiguousarray(_as_numpy(bits, "bits"), dtype=np.uint8)
    v = np.ascontiguousarray(_as_numpy(values, "values"))
    if b.shape != (rows, (cols + 7) // 8):
        raise ValueError(f"bits have shape {b.shape}, ({rows}, {(cols + 7) // 8}) needed")
    dense = np.empty((rows, cols), dtype=v.dtype)
    _prunekit.import_bitmask(b, v if len(v) else np.zeros(1, v.dtype), dense)
    return dense


def save_stats(path: str, stats: "dict[str, Stats]") -> None:
    """Writes named accumulators (e.g. per layer weight name) to one file: magic, count, then
    for each: name length (u32), UTF-8 name, byte length (u64), Stats.to_bytes(). Names that map
    to the same Stats object (q, k and v projections read one input) store it once: the first
    name holds it, the others follow as aliases (docs/stats-format.md)."""
    import struct
    from .bundles import ALIAS_TAG, BUNDLE_MAGIC
    first: "dict[int, int]" = {}
    held, aliases = [], []
    for name, s in stats.items():
        if id(s) in first:
            aliases.append((name, first[id(s)]))
        else:
            first[id(s)] = len(held)
            held.append((name, s))
    with open(path, "wb") as f:
        f.write(BUNDLE_MAGIC + struct.pack("<I", len(held)))
        for name, s in held:
            key, blob = name.encode(), s.to_bytes()
            f.write(struct.pack("<I", len(key)) + key + struct.pack("<Q", len(blob)) + blob)
        if aliases:
            f.write(ALIAS_TAG + struct.pack("<I", len(aliases)))
            for name, target in aliases:
                key = name.encode()
                f.write(struct.pack("<I", len(key)) + key + struct.pack("<I", target))


def load_stats(path: str) -> "dict[str, Stats]":
    """Reads a file written by save_stats; ValueError on anything malformed (the headers are
    checked by prunekit.bundles.scan_bundle, each accumulator by Stats.from_bytes). Aliases give
    the same Stats object back."""
    from .bundles import scan_bundle
    out, loaded = {}, {}
    with open(path, "rb") as f:
        for name, entry in scan_bundle(path).items():
            if entry.key not in loaded:
                f.seek(entry.offset)
                loaded[entry.key] = Stats.from_bytes(f.read(entry.size))
            out[name] = loaded[entry.key]
    return out


class Stats(_prunekit.Stats):
    """Streaming, mergeable per-feature statistics of calibration activations (float64).

    Stats(features) makes an empty accumulator (Stats(features, gram=True) also keeps X^T X for
    sparsegpt()); update(batch) adds activations [tokens, features]
    (any batch size, any supported dtype, numpy or torch; higher-rank batches are flattened to
    [-1, features]); merge(other) adds another shard; to_bytes()/from_bytes() serialize. Read
    l2_norm() (Wanda), std() (STADE), mean(), variance(). Passing a Stats as features= to
    mask()/score() uses l2_norm() for Wanda and std() for STADE.
    """

    def update(self, batch: Any, rows: Any = None) -> None:
        """Adds a batch [tokens, features]; with rows (integer row numbers), only those rows of
        the batch, in that order: the bytes of update(batch[rows]) without the copy (a padded
        batch's real tokens)."""
        b = _as_numpy(batch, "batch") if _bfloat16_numpy_view(batch) is None else batch
        if getattr(b, "ndim", 2) > 2:
            b = b.reshape(-1, b.shape[-1])
        batch = _view(b, "batch").array
        if rows is None:
            self._update(batch)
            return
        index = _as_numpy(rows, "rows") if not isinstance(rows, (list, tuple)) else np.asarray(rows)
        if index.size == 0 and index.ndim == 1:
            index = index.astype(np.int64)
        if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"rows: expected a 1-D array of integer row numbers, got {index.dtype} {index.shape}")
        self._update(batch, rows=np.ascontiguousarray(index, dtype=np.int64))

    def _read(self, read: Any, shape: Tuple[int, ...]) -> np.ndarray:
        out = np.empty(shape, dtype=np.float64)
        read(out)
        return out

    def l2_norm(self) -> np.ndarray:
        """sqrt(sum of x^2) over tokens, per feature (Wanda's feature norm)."""
        return self._read(self._l2_norm, (self.features,))

    def mean(self) -> np.ndarray:
        return self._read(self._mean, (self.features,))

    def variance(self) -> np.ndarray:
        """Population variance (M2 / count)."""
        return self._read(self._variance, (self.features,))

    def std(self) -> np.ndarray:
        """Population standard deviation (STADE's feature scale)."""
        return self._read(self._std, (self.features,))

    def gram(self, centered: bool = False) -> np.ndarray:
        """X^T X (features x features), for sparsegpt(); needs Stats(features, gram=True).
        centered=True: sum of (x - mean)(x - mean)^T, the Hessian to reconstruct on when the bias
        is compensated afterwards (compensate_bias)."""
        return self._read(self._centered_gram if centered else self._gram, (self.features, self.features))

    def mean_abs(self) -> np.ndarray:
        """Mean |x| per feature (a channel's mean absolute activation, for structured pruning)."""
        return self._read(self._mean_abs, (self.features,))

    def zero_fraction(self) -> np.ndarray:
        """Fraction of tokens exactly zero per feature (APoZ after a ReLU)."""
        return self._read(self._zero_fraction, (self.features,))

    def __repr__(self) -> str:
        return f"prunekit.Stats(features={self.features}, count={self.count})"


class _StatsView(Stats):
    """A read-only view of another Stats: each reader (_l2_norm, _gram, ...) is the source's,
    through _from_source, which a view overrides to derive its values. It cannot be updated,
    merged or serialised."""

    READERS = ("_l2_norm", "_mean", "_variance", "_std", "_gram", "_centered_gram", "_mean_abs", "_zero_fraction")

    def __new__(cls, source: Stats, *args: Any):
        return super().__new__(cls, 1)

    def __init__(self, source: Stats):
        self._source = source

    @property
    def count(self) -> int:
        return self._source.count

    @property
    def features(self) -> int:
        return self._source.features

    def _from_source(self, reader: str, out: Any) -> None:
        getattr(self._source, reader)(out)

    def _update(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"a {type(self).__name__} is a read-only view; update the source Stats")

    def merge(self, other: Any) -> None:
        raise TypeError(f"a {type(self).__name__} is a read-only view; merge into the source Stats")

    def to_bytes(self) -> bytes:
        raise TypeError(f"a {type(self).__name__} is a view; serialise the source Stats")


for _reader in _StatsView.READERS:
    setattr(_StatsView, _reader, lambda self, out, _reader=_reader: self._from_source(_reader, out))


from .structured import (Member, Group, select, structure_scores, compact, compact_data_free, apply_structures,  # noqa: E402
                         structure_mask, block_masks, key_channels, permute, permute_stats, PermutedStats)
from .methods import low_rank, top_channels, gather, random_channel_mask  # noqa: E402
