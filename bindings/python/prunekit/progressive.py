"""Pruning over time: sparsity schedules, a progressive Pruner (hard or decaying masks,
gradient-flow scores, serializable state), PDP soft masks, and loops in which the library asks
the host to evaluate candidates (C-SWAP progressive structures, SBPF sensitivity ratios).

    pruner = prunekit.progressive.Pruner([w1, w2], schedule="cubic", begin=0, end=300,
                                         frequency=10, final_sparsity=0.8)
    for t in range(steps):
        ...train one step (the optimizer updates w1, w2 in place)...
        pruner.step(t)          # masks recomputed at the schedule's update points, then applied

The Pruner writes the weight arrays it was given at every step and keeps them alive: they must
stay the same arrays (in-place updates only) for its lifetime.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import _prunekit, _enum, _code, _view, _criterion, _selection, CRITERIA
from .structured import Group, _scoring, _structures, _split

__all__ = ["SCHEDULES", "schedule_sparsity", "Pruner", "soft_mask", "progressive_structures", "sensitivity_ratios"]

SCHEDULES = _enum("SCHEDULE_")
_STOPS = {value: name for name, value in _enum("PROGRESSIVE_").items()}


def _schedule(kind: Optional[str], begin: Optional[int], end: Optional[int], frequency: Optional[int],
              initial: Optional[float], final: Optional[float]) -> dict:
    """The schedule as the extension takes it (pk_schedule's fields; None: the library's default)."""
    return {"kind": _code(SCHEDULES, kind, "schedule"), "begin": begin, "end": end, "frequency": frequency,
            "initial_sparsity": initial, "final_sparsity": final}


def schedule_sparsity(step: int, schedule: Optional[str] = None, *, begin: Optional[int] = None,
                      end: Optional[int] = None, frequency: Optional[int] = None,
                      initial_sparsity: Optional[float] = None, final_sparsity: Optional[float] = None) -> float:
    """The scheduled sparsity at a training step (pk_schedule_sparsity). Options left as None take
    the library's defaults (pk_schedule_init: cubic from step 0 to 1000 every 100 steps, 0 -> 0.5)."""
    return _prunekit.schedule_sparsity(_schedule(schedule, begin, end, frequency, initial_sparsity, final_sparsity),
                                       step)


class Pruner:
    """A progressive pruner over layers (pk_pruner).

    criterion: "magnitude", "random", "wanda" / "stade" (features= one vector or Stats per layer),
    or "gradient_flow" (a moving average of |w * g|; pass gradients= to every step). scope: "row",
    "layer" or "global"; pattern="2:4" with schedule="oneshot". targets: per-layer final
    sparsities. decay_steps > 1: decaying masks (DPM).

    soft_temperature > 0: soft, differentiable masks (PDP). Before the schedule's end, step(t)
    writes no weight; it computes each weight's soft mask m = sigmoid((q - t^2) / T) (q the
    squared score: w^2, (|w| f)^2 for wanda / stade, e^2 for gradient flow; t^2 from the step's
    hard mask at the scheduled sparsity) and dm/dw, read with soft_mask(layer): the host uses
    w * m(w) in its forward pass and back-propagates through it. At the first step >= end the
    masks are hardened (the hard mask at the final sparsity, exact count, applied to the
    weights). Not with decay_steps > 1, pattern= or criterion="random".

    Options left as None take the library's defaults (pk_schedule_init, pk_pruner_options_init: a
    cubic schedule from 0 to 0.5 over steps 0 ... 1000, updated every 100; magnitude per row; no
    decay; gradient momentum 0.9; hard masks).
    """

    def __init__(self, weights: Sequence[Any], *, schedule: Optional[str] = None, begin: Optional[int] = None,
                 end: Optional[int] = None, frequency: Optional[int] = None,
                 initial_sparsity: Optional[float] = None, final_sparsity: Optional[float] = None,
                 targets: Optional[Sequence[float]] = None, criterion: Optional[str] = None,
                 features: Optional[Sequence[Any]] = None, seed: Optional[int] = None, scope: Optional[str] = None,
                 pattern: Any = None, decay_steps: Optional[int] = None, gradient_momentum: Optional[float] = None,
                 threads: Optional[int] = None, soft_temperature: Optional[float] = None):
        weights = list(weights)
        kind = "taylor" if criterion == "gradient_flow" else criterion
        if kind is not None and kind not in CRITERIA:
            raise ValueError(f"criterion must be magnitude, random, wanda, stade or gradient_flow, got {criterion!r}")
        if features is not None and len(features) != len(weights):
            raise ValueError(f"features has {len(features)} entries for {len(weights)} layers")
        selection = _selection(0.0, scope, pattern, threads)   # (the schedule gives the sparsity)
        self._views = [_view(w, f"weights[{i}]", writable=True) for i, w in enumerate(weights)]
        criteria = [_criterion(kind, None if features is None else features[i], None, seed, f"features[{i}]: ")
                    for i in range(len(weights))]
        t = None if targets is None else np.ascontiguousarray(targets, dtype=np.float64)
        self._weights = weights
        self._schedule = dict(schedule=schedule, begin=begin, end=end, frequency=frequency,
                              initial_sparsity=initial_sparsity, final_sparsity=final_sparsity)
        self._targets = None if targets is None else [float(x) for x in targets]
        self._gradient_flow = kind == "taylor"
        fields = _schedule(schedule, begin, end, frequency, initial_sparsity, final_sparsity)
        self._handle = _prunekit.pruner_create([v.array for v in self._views], criteria, selection, fields, t,
                                               decay_steps=decay_steps, gradient_momentum=gradient_momentum,
                                               num_threads=threads, soft_temperature=soft_temperature)
        self._soft = soft_temperature is not None and float(soft_temperature) > 0
        self._end = _prunekit.schedule_init(fields)["end"]   # (the library's default when not given)
        self._last = -1

    def step(self, step: int, gradients: Optional[Sequence[Any]] = None) -> None:
        """Applies training step `step` (pk_pruner_step): recomputes masks at a new update point,
        then sets pruned weights to 0 and decaying ones to their decayed values."""
        grads = None
        if gradients is not None:
            gradients = list(gradients)
            if len(gradients) != len(self._views):
                raise ValueError(f"{len(gradients)} gradients for {len(self._views)} layers")
            grads = [_view(g, f"gradients[{i}]").array for i, g in enumerate(gradients)]
        _prunekit.pruner_step(self._handle, step, grads)
        self._last = max(self._last, int(step))

    @property
    def soft(self) -> bool:
        """Whether the pruner is in soft mode (soft_temperature > 0)."""
        return self._soft

    @property
    def hardened(self) -> bool:
        """Soft mode: whether a step >= the schedule's end has hardened the masks."""
        return self._soft and self._last >= self._end

    def soft_mask(self, layer: int, derivative: bool = True) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Soft mode: (m, dm/dw) of a layer at the last step (float32 (rows, cols); before any
        step 1 and 0, once hardened the binary mask and 0). Hard mode: the factors and 0."""
        v = self._views[layer]
        m = np.empty((v.rows, v.cols), dtype=np.float32)
        d = np.empty((v.rows, v.cols), dtype=np.float32) if derivative else None
        _prunekit.pruner_soft_mask(self._handle, layer, m, d)
        return m, d

    def scheduled_sparsity(self, step: int, layer: Optional[int] = None) -> float:
        """The schedule's sparsity at a step (of a layer's own target when targets= was given)."""
        options = dict(self._schedule)
        if self._targets is not None:
            if layer is None:
                raise ValueError("this pruner has per-layer targets: pass layer=")
            options["final_sparsity"] = self._targets[layer]
        return schedule_sparsity(step, **options)

    def mask(self, layer: int) -> np.ndarray:
        """The current mask of a layer: bool (rows, cols), True = kept."""
        v = self._views[layer]
        out = np.empty((v.rows, v.cols), dtype=np.uint8)
        _prunekit.pruner_mask(self._handle, layer, out)
        return out.view(np.bool_)

    def factors(self, layer: int) -> np.ndarray:
        """The current factor of each weight: 1 kept, the decay factor, 0 pruned (float32)."""
        v = self._views[layer]
        out = np.empty((v.rows, v.cols), dtype=np.float32)
        _prunekit.pruner_factors(self._handle, layer, out)
        return out

    def to_bytes(self) -> bytes:
        """The state (masks, schedule position, decay values, moving scores), versioned and checksummed."""
        return _prunekit.pruner_serialize(self._handle)

    def restore(self, data: bytes) -> None:
        """Replaces the state with to_bytes() of a pruner of the same configuration (weights untouched)."""
        _prunekit.pruner_restore(self._handle, data)
        self._last = int.from_bytes(bytes(data)[32:40], "little", signed=True)

    def close(self) -> None:
        """Frees the handle now; later calls raise."""
        _prunekit.pruner_free(self._handle)


def soft_mask(weight: Any, sparsity: float, *, temperature: float, scope: Optional[str] = None,
              derivative: bool = True) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """PDP's soft mask m(w) and dm/dw (float32, shape (rows, cols)); pk_soft_mask. Harden with
    prunekit.mask(weight, sparsity, scope=scope) (magnitude): exact count, highest m kept."""
    w = _view(weight, "weight")
    selection = _selection(sparsity, scope, None, None)
    m = np.empty((w.rows, w.cols), dtype=np.float32)
    d = np.empty((w.rows, w.cols), dtype=np.float32) if derivative else None
    _prunekit.soft_mask(w.array, selection, temperature, m, d)
    return m, d


def progressive_structures(groups: Sequence[Group], evaluate: Callable[[List[np.ndarray]], float], *,
                           target_ratio: Optional[float] = None, step_ratio: Optional[float] = None,
                           tolerance: Optional[float] = None, criterion: Optional[str] = None,
                           reduction: Optional[str] = None, normalize: Optional[str] = None, scores: Any = None,
                           threads: Optional[int] = None) -> dict:
    """C-SWAP-style progressive structured pruning (pk_progressive_structures). The members'
    tensors are written in place during the call; evaluate(keep) gets the per-group keep flags
    being evaluated and returns the host's cost (lower is better) of the model as it is now. An
    exception from evaluate propagates after the library has put every tensor back. Options left as
    None take the library's defaults (pk_progressive_options_init: target 0.5, steps of 0.05,
    tolerance 0.01; the scoring as in select())."""
    args, bounds, given = _structures(groups, scores, writable=True)

    def ask(keep: bytes) -> float:
        return float(evaluate(_split(np.frombuffer(keep, dtype=np.uint8), bounds, bool)))

    keep = np.empty(max(bounds[-1], 1), dtype=np.uint8)
    protected = np.empty(max(bounds[-1], 1), dtype=np.uint8)
    r = _prunekit.progressive_structures(args, ask, keep, protected, scores=given, num_threads=threads,
                                         target_ratio=target_ratio, step_ratio=step_ratio, tolerance=tolerance,
                                         **_scoring(criterion, reduction, normalize))
    return {"keep": _split(keep, bounds, bool), "protected": _split(protected, bounds, bool), "pruned": r[0],
            "evaluations": r[1],
            "accepted": r[2], "rejected": r[3], "stop": _STOPS[r[4]],
            "baseline_cost": r[5], "final_cost": r[6]}


def sensitivity_ratios(layer_sizes: Sequence[int], probes: Sequence[float], target: float,
                       damage: Callable[[int, float], float]) -> Tuple[np.ndarray, np.ndarray]:
    """SBPF per-layer ratios (pk_sensitivity_ratios): damage(layer, ratio) is the host's damage
    of that layer pruned alone at the probe ratio. Returns (ratios, pruned counts), the counts
    summing to exactly int(target * sum(layer_sizes))."""
    sizes = np.ascontiguousarray(layer_sizes, dtype=np.int64)
    p = np.ascontiguousarray(probes, dtype=np.float64)
    ratios = np.empty(sizes.size, dtype=np.float64)
    counts = np.empty(sizes.size, dtype=np.int64)
    _prunekit.sensitivity_ratios(sizes, p, target, lambda layer, ratio: float(damage(int(layer), float(ratio))),
                                 ratios, counts)
    return ratios, counts
