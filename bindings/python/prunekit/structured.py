"""Structured pruning: channels, heads and blocks of coupled tensors, selection, compaction.

PruneKit cannot see a model graph, so the caller declares a Group: the tensors (Members) that
share one structural axis, each with its axis. For an MLP's hidden channels:

    g = prunekit.Group([prunekit.Member(w1, "rows"), prunekit.Member(b1),       # b1: 1-D vector
                        prunekit.Member(w2, "cols")])
    keep, = prunekit.select([g], 0.5)                     # bool per hidden channel, True = keep
    (w1s, b1s, w2s), kept = prunekit.compact(g, keep)     # physically smaller arrays

Conv weights [out, in, kh, kw] are viewed as [out, in*kh*kw]; a "cols" member of such a weight
has span kh*kw by default. Heads: Member(q, "rows", span=head_dim) ... Member(o, "cols",
span=head_dim). Blocks: Member(w, "blocks", block=(32, 32)). Scores are float64; selection ranks
by (score, index) inside a group and by (score, group, index) across the groups of a stage;
counts are exact (int(ratio * n)); results never depend on threads.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from . import (_prunekit, _enum, _code, _view, _View, _criterion, _bfloat16_numpy_view, Stats, _StatsView, _hessian,
               _PRECISIONS)

__all__ = ["Member", "Group", "select", "structure_scores", "compact", "compact_data_free", "apply_structures",
           "structure_mask", "permute", "permute_stats", "PermutedStats",
           "block_masks", "key_channels", "STRUCTURE_CRITERIA", "MODES"]

_AXES = _enum("AXIS_")
STRUCTURE_CRITERIA = _enum("STRUCTURE_")
_REDUCTIONS = _enum("REDUCE_")
_NORMALIZATIONS = _enum("NORMALIZE_")
MODES = _enum("SELECT_")
_ACTIVATIONS = _enum("ACTIVATION_")


class Member:
    """One tensor of a group and the axis along which its structures lie.

    axis: "rows" (structure i = rows [i*span, (i+1)*span)), "cols" (columns likewise), or
    "blocks" with block=(rows, cols). A 1-D tensor (bias, batch-norm vector) is a row of entries:
    its axis is ignored and span 1 unless given. span defaults to 1, or kh*kw for "cols" of an
    N-D conv weight. scored=False members are compacted and masked but do not count towards
    scores. criterion/features/gradient/seed give the entry scores (as in mask()).
    """

    def __init__(self, tensor: Any, axis: str = "rows", span: Optional[int] = None, *,
                 block: Optional[Tuple[int, int]] = None, scored: bool = True, criterion: Optional[str] = None,
                 features: Any = None, gradient: Any = None, seed: Optional[int] = None):
        self.tensor = tensor
        shape = tuple(tensor.shape)
        self.vector = len(shape) == 1
        if axis not in _AXES:
            raise ValueError(f"axis must be one of {sorted(_AXES)}, got {axis!r}")
        if self.vector:
            axis = "cols"
        if axis == "blocks":
            if block is None or len(block) != 2:
                raise ValueError("axis 'blocks' needs block=(rows, cols)")
            span, block_cols = int(block[0]), int(block[1])
        else:
            block_cols = 0
            if span is None:
                span = int(np.prod(shape[2:])) if axis == "cols" and len(shape) > 2 else 1
        self.axis, self.span, self.block_cols = axis, int(span), block_cols
        self.scored = bool(scored)
        self.criterion, self.features, self.gradient, self.seed = criterion, features, gradient, seed

    def _view(self, writable: bool) -> _View:
        t = self.tensor
        if self.vector:
            t = t.reshape(1, -1) if not hasattr(t, "bits") else t
        return _view(t, "tensor", writable=writable)

    def _args(self, writable: bool = False) -> Tuple[dict, _View]:
        """The member as the extension takes it (pk_group_member's fields), and its view."""
        v = self._view(writable)
        return {"tensor": v.array, "axis": _AXES[self.axis], "scored": int(self.scored), "span": self.span,
                "block_cols": self.block_cols,
                "criterion": _criterion(self.criterion, self.features, self.gradient, self.seed)}, v


class Group:
    """Members sharing one structural axis. min_keep: structures always kept (global and
    threshold selection; elsewhere a target that keeps fewer is an error). stage: groups of one
    stage are ranked together (global), share a width (uniform) and a stage value. activations:
    a Stats of the structures' outputs, for the activation criteria."""

    def __init__(self, members: Sequence[Member], *, min_keep: int = 0, stage: int = 0,
                 activations: Optional[Stats] = None):
        self.members = list(members)
        self.min_keep, self.stage, self.activations = int(min_keep), int(stage), activations

    def _args(self, writable: bool = False) -> Tuple[dict, List[_View]]:
        """The group as the extension takes it (pk_group's fields), and its members' views."""
        pairs = [m._args(writable) for m in self.members]   # (no member: the library says so)
        return {"members": [p[0] for p in pairs], "min_keep": self.min_keep, "stage": self.stage,
                "activations": self.activations}, [p[1] for p in pairs]

    def structures(self) -> int:
        """The number of structures (pk_group_layout: the members checked to agree)."""
        return _prunekit.group_layout(self._args()[0])


def _keep_bytes(keep: Any, n: int) -> np.ndarray:
    k = np.asarray(keep)
    if k.shape != (n,):
        raise ValueError(f"keep has shape {k.shape}, the group has {n} structures")
    # (the library refuses bytes other than 0 and 1 too, but a value such as 256 would not survive
    # the conversion to bytes)
    if k.dtype != np.bool_ and not np.isin(k, (0, 1)).all():
        raise ValueError("keep must hold only True/False (or 0/1)")
    return np.ascontiguousarray(k, dtype=np.uint8)


def _scoring(criterion: Optional[str], reduction: Optional[str], normalize: Optional[str]) -> dict:
    """The structure options that say how structures are scored (None: the library's defaults)."""
    return {"criterion": _code(STRUCTURE_CRITERIA, criterion, "criterion"),
            "reduction": _code(_REDUCTIONS, reduction, "reduction"),
            "normalization": _code(_NORMALIZATIONS, normalize, "normalize")}


def _structures(groups: Sequence[Group], scores: Any, writable: bool = False):
    """The groups as the extension takes them, the bounds of each group's structures in the flat
    arrays, and the caller's own scores as one float64 array of all of them (or None)."""
    args = [g._args(writable)[0] for g in groups]
    bounds = np.cumsum([0] + [_prunekit.group_layout(a) for a in args])
    given = None
    if scores is not None:   # the library reads one score per structure: the count is checked here
        given = np.ascontiguousarray(np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1) for s in scores]))
        if given.shape != (bounds[-1],):
            raise ValueError(f"scores hold {given.size} values, the groups have {bounds[-1]} structures")
    return args, bounds, given


def _split(flat: np.ndarray, bounds: np.ndarray, dtype: Any) -> List[np.ndarray]:
    return [flat[a:b].astype(dtype) for a, b in zip(bounds[:-1], bounds[1:])]


def _select(groups: Sequence[Group], ratio: Optional[float], mode: Optional[str], criterion: Optional[str],
            reduction: Optional[str], normalize: Optional[str], stage_values: Any, multiple: Optional[int],
            scores: Any, threads: Optional[int]):
    args, bounds, given = _structures(groups, scores)
    stages = None if stage_values is None else np.ascontiguousarray(stage_values, dtype=np.float64).reshape(-1)
    keep = np.empty(bounds[-1], dtype=np.uint8)
    out = np.empty(bounds[-1], dtype=np.float64)
    _prunekit.select_structures(args, keep, out, stage_values=stages, scores=given, mode=_code(MODES, mode, "mode"),
                                ratio=ratio, multiple=multiple, num_threads=threads,
                                **_scoring(criterion, reduction, normalize))
    return _split(keep, bounds, bool), _split(out, bounds, np.float64)


def select(groups: Sequence[Group], ratio: Optional[float] = None, *, mode: Optional[str] = None,
           criterion: Optional[str] = None, reduction: Optional[str] = None, normalize: Optional[str] = None,
           stage_values: Any = None, multiple: Optional[int] = None, scores: Any = None,
           threads: Optional[int] = None) -> List[np.ndarray]:
    """Which structures of each group stay: a list of bool arrays (True = keep), one per group.
    Options left as None take the library's defaults (pk_structure_options_init: ratio 0.5,
    "per_group", "l2", "sum", no normalisation).

    mode: "per_group" (each group prunes int(ratio * n)), "global" (the groups of a stage are
    ranked together, keeping min_keep per group), "uniform" (every group of a stage keeps the
    same count, from its smallest group), "threshold" (scores below the stage's value go; ratio
    is the threshold). stage_values: one ratio (threshold) per stage, indexed by Group.stage.
    criterion: "l1", "l2" (norms of the scored members' entry scores), "mean_abs_activation",
    "nonzero_fraction" (from Group.activations). reduction across members: "sum", "mean", "max".
    normalize per group: None, "mean", "max", "sum", "standard". multiple: kept counts rounded up
    to a multiple. scores: your own structure scores (one array per group) instead of computing.
    """
    return _select(groups, ratio, mode, criterion, reduction, normalize, stage_values, multiple, scores, threads)[0]


def structure_scores(groups: Sequence[Group], *, criterion: Optional[str] = None, reduction: Optional[str] = None,
                     normalize: Optional[str] = None, threads: Optional[int] = None) -> List[np.ndarray]:
    """The (normalised) float64 score of every structure of each group, as select() ranks them."""
    groups = list(groups)
    stages = [0.0] * (max([g.stage for g in groups] + [0]) + 1)   # scoring ignores stages
    return _select(groups, 0.0, None, criterion, reduction, normalize, stages, None, None, threads)[1]


def _like(array: np.ndarray, original: Any) -> Any:
    """Returns a torch tensor when the caller passed one (bfloat16 included), else the array."""
    if type(original).__module__.startswith("torch"):
        import torch
        if _bfloat16_numpy_view(original) is not None:
            return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(array)
    return array


class _Compaction:
    """A compaction of `group` to `keep`: the group as the extension takes it, the keep bytes, one
    output per member (pk_group_layout's shapes) and the kept indices; results() gives the
    members' new arrays (an N-D conv weight keeps its layout, a vector stays a vector, a torch
    tensor comes back as one) and the kept indices."""

    def __init__(self, group: Group, keep: Any):
        self.args, self.views = group._args()
        self.keep = _keep_bytes(keep, _prunekit.group_layout(self.args))
        self.kept = kept = int(self.keep.sum())
        self.members, self.outputs, self.finals = group.members, [], []
        for m, v, (rows, cols) in zip(group.members, self.views, _prunekit.group_layout(self.args, kept=kept)[1]):
            shape = tuple(m.tensor.shape)
            if m.vector:
                final = (cols,)
            elif m.axis == "rows":
                final = (rows,) + shape[1:]
            elif len(shape) > 2 and m.span == int(np.prod(shape[2:])):
                final = (shape[0], kept) + shape[2:]
            else:
                final = (rows, cols)
            self.outputs.append(np.empty((max(rows, 1), max(cols, 1)), dtype=v.array.dtype))   # (kept 0: refused)
            self.finals.append(final)
        self.indices = np.empty(max(kept, 1), dtype=np.int64)

    def results(self) -> Tuple[List[Any], np.ndarray]:
        return ([_like(out.reshape(final), m.tensor) for out, final, m in zip(self.outputs, self.finals, self.members)],
                self.indices[:self.kept])


def compact_data_free(group: Group, keep: Any, *, producer: int, next: int, batch_norm: Sequence[int],
                      eps: Optional[float] = None, dampening: Optional[float] = None, activation: Optional[str] = None,
                      threads: Optional[int] = None) -> Tuple[List[Any], np.ndarray, np.ndarray]:
    """compact() after data-free compensation (UDFC, Bai et al., ICCV 2023) of the next layer for the
    pruned channels of a layer -> batch norm -> activation -> next layer chain, from the weights and
    batch-norm statistics alone (no calibration data).

    producer: index of the "rows" member (the layer whose channels go); next: the "cols" member
    compensated (the next layer); batch_norm: the member indices of gamma, beta, running_mean,
    running_var (1-D members). Each pruned channel p is reconstructed as sum_k s[k, p] a_k + t_p
    of the kept channels' outputs, the least squares under a Gaussian model of the batch norm's
    outputs (mean beta, std |gamma| sqrt(var / (var + eps)), correlations the cosines of the
    producer's filters, ReLU moments of the rectified Gaussian): see prunekit.h. The next layer's
    kept columns absorb s; the constants t reach its bias. Returns (outputs, kept indices,
    bias_shift): add bias_shift (float64, one per next-layer output) to the next layer's bias, or
    subtract it from the next batch norm's running_mean if it has no bias. Options left as None take
    the library's defaults (pk_data_free_options_init: eps 1e-5, dampening 0.01, ReLU)."""
    bn = tuple(int(i) for i in batch_norm)
    if len(bn) != 4:
        raise ValueError("batch_norm must be 4 member indices: (gamma, beta, running_mean, running_var)")
    c = _Compaction(group, keep)
    rows = c.views[int(next)].rows if 0 <= int(next) < len(c.views) else 1   # (a bad index: the library says so)
    shift = np.zeros(rows, dtype=np.float64)
    _prunekit.compact_group_data_free(c.args, c.keep, c.outputs, c.indices, shift, producer=producer, next=next,
                                      bn_weight=bn[0], bn_bias=bn[1], bn_mean=bn[2], bn_var=bn[3], epsilon=eps,
                                      dampening=dampening, activation=_code(_ACTIVATIONS, activation, "activation"),
                                      num_threads=threads)
    return (*c.results(), shift)


def compact(group: Group, keep: Any, *, compensate: Optional[dict] = None) -> Tuple[List[Any], np.ndarray]:
    """Physically smaller copies of every member without the pruned structures, and the kept
    indices. Shapes follow the members: rows members lose rows, cols members lose columns (an N-D
    conv weight its input channels), vectors lose entries. compensate={"member": i, "hessian": H
    (or a Stats with gram=True), "dampening": 0.01, "precision": "float32"} first updates cols
    member i in closed form for its removed inputs (least squares on H).

    Data-free, for a group that carries batch-norm members (UDFC; see compact_data_free):
    compensate={"method": "data_free", "producer": i, "next": j, "batch_norm": (gamma, beta,
    running_mean, running_var) member indices, "eps": 1e-5, "dampening": 0.01, "activation":
    "relu" or "identity", "next_bias": the next layer's bias (updated in place) or None}."""
    if compensate is not None and compensate.get("method", "hessian") == "data_free":
        options = {k: v for k, v in compensate.items() if k not in ("method", "next_bias")}
        unknown = set(options) - {"producer", "next", "batch_norm", "eps", "dampening", "activation", "threads"}
        if unknown:
            raise ValueError(f"unknown data-free compensation keys {sorted(unknown)}")
        for key in ("producer", "next", "batch_norm"):
            if key not in options:
                raise ValueError(f"data-free compensation needs {key!r}")
        next_bias = compensate.get("next_bias")
        if next_bias is not None:
            rows = group.members[int(options["next"])]._view(False).rows
            if tuple(next_bias.shape) != (rows,):
                raise ValueError(f"next_bias has shape {tuple(next_bias.shape)}, the next layer has {rows} outputs")
        outputs, indices, shift = compact_data_free(group, keep, **options)
        if next_bias is not None:
            if type(next_bias).__module__.startswith("torch"):
                import torch
                with torch.no_grad():
                    next_bias.add_(torch.from_numpy(shift).to(next_bias.dtype))
            else:
                next_bias += shift.astype(next_bias.dtype)
        return outputs, indices
    if compensate is not None and compensate.get("method", "hessian") != "hessian":
        raise ValueError(f"compensate['method'] must be 'hessian' or 'data_free', got {compensate['method']!r}")
    c = _Compaction(group, keep)
    comp = None
    if compensate is not None:
        comp = {"member": compensate["member"], "hessian": _hessian(compensate["hessian"]),
                "dampening": compensate.get("dampening"), "max_dampening_retries": compensate.get("max_retries"),
                "precision": _code(_PRECISIONS, compensate.get("precision"), "precision")}
    _prunekit.compact_group(c.args, c.keep, c.outputs, c.indices, comp)
    return c.results()


def apply_structures(group: Group, keep: Any) -> None:
    """Zeroes the pruned structures of every member in place (shapes unchanged)."""
    args = group._args(writable=True)[0]
    _prunekit.apply_structures(args, _keep_bytes(keep, _prunekit.group_layout(args)))


def permute(group: Group, permutation: Any) -> None:
    """Permutes the structures of every member in place: structure j becomes the old structure
    permutation[j] (rows or columns, span at a time; a 1-D bias entry by entry). With the
    producer's rows, its bias and the consumer's columns as members the model computes the same
    function afterwards: this applies a prunekit.channel_permutation. Members must not share
    memory. Checks everything (a permutation of range(group.structures()), no block member)
    before writing."""
    p = np.asarray(permutation)
    if p.ndim != 1 or (p.size and not np.issubdtype(p.dtype, np.integer)):
        raise ValueError(f"permutation must be a 1-D integer vector, got shape {p.shape} dtype {p.dtype}")
    _prunekit.permute_group(group._args(writable=True)[0], np.ascontiguousarray(p, dtype=np.int64))


class PermutedStats(_StatsView):
    """A read-only view of a Stats with its features reordered: feature j is the source's
    feature permutation[j] (vectors v[permutation], Gram matrices G[permutation][:, permutation]),
    the statistics of a layer whose input channels were permuted. It cannot be updated, merged
    or used as a group's activations."""

    def __init__(self, source: Stats, permutation: Any):
        p = np.ascontiguousarray(permutation, dtype=np.int64)
        if p.shape != (source.features,) or not np.array_equal(np.sort(p), np.arange(source.features)):
            raise ValueError(f"permutation must be a permutation of range({source.features})")
        super().__init__(source)
        self._permutation = p

    def _from_source(self, reader: str, out: Any) -> None:
        target = np.asarray(out)
        full = np.empty_like(target)
        getattr(self._source, reader)(full)
        p = self._permutation
        target[...] = full[np.ix_(p, p)] if full.ndim == 2 else full[p]


def permute_stats(stats: Stats, permutation: Any) -> PermutedStats:
    """The statistics of a layer after its input channels were permuted (feature j = the old
    feature permutation[j]): what Wanda's norms and SparseGPT's / ADMM's X^T X become."""
    return PermutedStats(stats, permutation)


def structure_mask(group: Group, keep: Any, member: int = 0) -> np.ndarray:
    """The entry mask (bool, the member tensor's shape) of a selection for one member."""
    args, views = group._args()
    k = _keep_bytes(keep, _prunekit.group_layout(args))
    inside = 0 <= member < len(views)   # (a member outside the group: the library says so)
    out = np.empty((views[member].rows, views[member].cols) if inside else (1, 1), dtype=np.uint8)
    _prunekit.structure_mask(args, member, k, out)
    return out.view(bool).reshape(tuple(group.members[member].tensor.shape))


def block_masks(weights: Sequence[Any], block: Tuple[int, int], sparsity: Optional[float] = None, *,
                criterion: Optional[str] = None, features: Any = None, norm: Optional[str] = None,
                mode: Optional[str] = None, min_keep: int = 0, multiple: Optional[int] = None,
                normalize: Optional[str] = None) -> List[np.ndarray]:
    """Block-structured masks: removes whole block[0] x block[1] blocks of each weight, scored by
    the block norm ("l1"/"l2") of the entry scores (magnitude, or Wanda with features=), at a
    sparsity per layer (mode "per_group"), globally ("global"), or the same count everywhere
    ("uniform"). features may be a list (one per weight). None: the library's defaults (0.5,
    magnitude, "l2", "per_group")."""
    weights = list(weights)
    feats = features if isinstance(features, (list, tuple)) else [features] * len(weights)
    groups = [Group([Member(w, "blocks", block=block, criterion=criterion, features=f)], min_keep=min_keep)
              for w, f in zip(weights, feats)]
    keeps = select(groups, sparsity, mode=mode, criterion=norm, multiple=multiple, normalize=normalize)
    return [structure_mask(g, k) for g, k in zip(groups, keeps)]


def key_channels(queries: Any, keys: Any, heads: int, ratio: float) -> Tuple[np.ndarray, np.ndarray]:
    """Query-driven key-cache channel pruning (ThinK): per key head, drops int(ratio * head_dim)
    channels with the smallest ||Q[:, c]|| * ||K[:, c]||. queries: [tokens, query_heads * d]
    (query_heads a multiple of heads), keys: [tokens, heads * d]. Returns keep (bool, heads * d)
    and the float64 scores."""
    q, k = _view(queries, "queries"), _view(keys, "keys")
    keep = np.empty(k.cols, dtype=np.uint8)
    scores = np.empty(k.cols, dtype=np.float64)
    _prunekit.key_channels(q.array, k.array, heads, ratio, keep, scores)
    return keep.view(bool), scores
