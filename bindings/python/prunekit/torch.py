"""PruneKit on PyTorch models: calibration hooks, sequential pruning, torch.nn.utils.prune
methods, and physically smaller Hugging Face models.

This layer adds no pruning logic of its own. It turns modules into the buffers PruneKit takes
(the weight tensors themselves, no copy: CPU float32/float64/float16/bfloat16), streams module
inputs into prunekit.Stats with forward hooks, drives the block-by-block loop, and does the module
surgery. Masks, scores, updates and selections are prunekit.mask / sparsegpt / reconstruct /
select / compact, bit for bit.

    import prunekit.torch as pkt
    stats = pkt.calibrate(model, batches)                         # {module name: prunekit.Stats}
    report = pkt.prune(model, batches, method="wanda", sparsity=0.5)   # or pattern="2:4"
    print(report)                                                  # per-layer table; report.to_json()
    pkt.prune_channels(model, 0.5, batches=batches)                # FFN channels, physically removed
    pkt.prune_heads(model, 1 / 3, batches=batches)                 # heads (GQA: key/value groups)
    model.save_pretrained(path); pkt.from_pretrained(AutoModel, path)

Batches are what the model is called with: a dict (model(**batch), e.g. a tokenizer's output),
a tuple/list (model(*batch)) or a tensor (model(batch)); forward=fn(model, batch) overrides
that. A dict batch's "attention_mask" ([batch, tokens], 0 = padding) keeps padding out of every
statistic (inputs whose leading dimensions are the mask's, or its flattening; other inputs,
such as a pooler's [batch, features], count every row). Modules: nn.Linear, nn.Conv1d,
nn.Conv2d (ungrouped; inputs as im2col patches, features ordered as weight.reshape(out, -1))
and transformers' GPT-2 Conv1D (weight [in, out]).
"""
from __future__ import annotations

import inspect
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as _torch_prune

import prunekit as _pk
import prunekit.progressive as _pp

__all__ = ["calibrate", "prune", "Report", "LayerReport", "Method", "METHODS",
           "PruneKitMethod", "Magnitude", "Wanda", "Stade", "Random", "Scores", "scores",
           "magnitude_unstructured", "wanda_unstructured", "stade_unstructured", "random_unstructured",
           "nm_unstructured", "sparsegpt_unstructured",
           "prune_channels", "prune_heads", "StructureReport", "from_pretrained", "parameter_count", "Pruner"]

Patterns = Union[None, str, Sequence[str]]


# ------------------------------------------------------------------------------------------
# Modules as PruneKit buffers

def _kind(module: nn.Module) -> Optional[str]:
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return "conv"
    if any(c.__name__ == "Conv1D" and c.__module__.startswith("transformers") for c in type(module).__mro__):
        return "conv1d_t"   # GPT-2's Conv1D: y = x @ W + b with W [in, out]
    return None


class _Target:
    """One prunable module: how its weight looks to PruneKit and how its inputs become rows of
    [tokens, features]."""

    __slots__ = ("name", "module", "kind")

    def __init__(self, name: str, module: nn.Module):
        kind = _kind(module)
        weight = getattr(module, "weight", None)
        if kind is None or not isinstance(weight, torch.Tensor):
            raise TypeError(f"{name or 'the model'}: {type(module).__name__} has no weight PruneKit can prune "
                            "(nn.Linear, nn.Conv1d, nn.Conv2d, transformers' Conv1D)")
        if weight.device.type != "cpu":
            raise ValueError(f"{name}: the weight is on {weight.device}; prunekit.torch works on CPU modules "
                             "(move the model with model.cpu())")
        if kind == "conv":
            if module.groups != 1:
                raise ValueError(f"{name}: grouped convolution (groups={module.groups}) is not supported")
        self.name, self.module, self.kind = name, module, kind

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight

    @property
    def features(self) -> int:
        w = self.weight
        return int(w.shape[0]) if self.kind == "conv1d_t" else math.prod(w.shape[1:])

    def matrix(self) -> torch.Tensor:
        """The tensor PruneKit prunes: the weight itself (rows = outputs), or for Conv1D a
        transposed copy that commit() writes back."""
        w = self.weight.detach()
        return w.t().contiguous() if self.kind == "conv1d_t" else w

    def commit(self, matrix: torch.Tensor) -> None:
        if self.kind == "conv1d_t":
            with torch.no_grad():
                self.weight.copy_(matrix.t())

    def tokens(self, x: torch.Tensor, mask: Optional[_TokenMask]) -> Tuple[torch.Tensor, Optional[_TokenMask]]:
        """The module input as [rows, features], and the mask whose real tokens are the rows
        that count (None: every row; linear layers only)."""
        if self.kind == "conv":
            return self._patches(x), None
        return _token_rows(x, mask)

    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        """im2col rows [positions, in * kernel], in the order of weight.reshape(out, -1)."""
        m = self.module
        pad = m.padding
        if m.padding_mode != "zeros" or pad == "same":
            mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
            x = F.pad(x, m._reversed_padding_repeated_twice, mode=mode)
            pad = 0
        elif pad == "valid":
            pad = 0
        dims = 1 if isinstance(m, nn.Conv1d) else 2

        def pair(v, fill=1):   # Conv1d runs as a 2-D unfold over [batch, channels, 1, length]
            v = tuple(v) if isinstance(v, (tuple, list)) else (v,) * dims
            return (fill,) + v if dims == 1 else v

        if dims == 1:
            x = x.unsqueeze(-2)
        patches = F.unfold(x, pair(m.kernel_size), dilation=pair(m.dilation), padding=pair(pad, fill=0),
                           stride=pair(m.stride))
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])

    def output(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The module's output without bias for another weight (in the module's layout)."""
        if self.kind == "linear":
            return F.linear(x, weight)
        if self.kind == "conv1d_t":
            return x @ weight
        return self.module._conv_forward(x, weight, None)


class _TokenMask:
    """A batch's real tokens: the bool mask [batch, tokens] and their flat positions (as a
    tensor, and as the int64 array Stats.update(rows=) takes)."""

    __slots__ = ("mask", "index", "rows")

    def __init__(self, mask: torch.Tensor):
        self.mask = mask
        self.index = mask.reshape(-1).nonzero().reshape(-1)
        self.rows = self.index.numpy()


def _token_rows(x: torch.Tensor, tokens: Optional[_TokenMask]) -> Tuple[torch.Tensor, Optional[_TokenMask]]:
    """x as [rows, features] and the mask that picks its real tokens, when x's leading
    dimensions are the mask's (or its flattening); else None: every row counts (a pooler's
    [batch, features])."""
    flat = x.reshape(-1, x.shape[-1])
    if tokens is not None:
        m = tokens.mask
        if tuple(x.shape[:-1]) == tuple(m.shape) or (x.dim() == 2 and x.shape[0] == m.numel()):
            return flat, tokens
    return flat, None


def _real_tokens(x: torch.Tensor, tokens: Optional[_TokenMask]) -> torch.Tensor:
    """x as [rows, features]; only the real tokens (the rows x[mask] gives, in that order)."""
    flat, picked = _token_rows(x, tokens)
    return flat if picked is None else flat.index_select(0, picked.index)


def _token_mask(batch: Any, key: Optional[str]) -> Optional[_TokenMask]:
    """The batch's padding mask, or None when every token is real."""
    if key is None or not isinstance(batch, Mapping) or batch.get(key) is None:
        return None
    m = torch.as_tensor(batch[key])
    if m.dim() != 2:
        raise ValueError(f"batch[{key!r}] has shape {tuple(m.shape)}; a [batch, tokens] padding mask is needed "
                         "(or mask_key=None)")
    m = m != 0
    return None if bool(m.all()) else _TokenMask(m)


def _compile(patterns: Patterns, what: str) -> List[re.Pattern]:
    if patterns is None:
        return []
    if isinstance(patterns, (str, re.Pattern)):
        patterns = [patterns]
    out = []
    for p in patterns:
        try:
            out.append(p if isinstance(p, re.Pattern) else re.compile(p))
        except re.error as e:
            raise ValueError(f"{what} pattern {p!r} is not a regular expression: {e}") from None
    return out


def _select_targets(model: nn.Module, targets: Patterns, ignore: Patterns,
                    within: Optional[List[Tuple[str, nn.Module]]] = None) -> Dict[str, _Target]:
    """Prunable modules by name: those matching a targets regex (re.search), or every prunable
    module (inside the blocks when given), minus those matching an ignore regex."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    chosen: Dict[str, nn.Module] = {}
    patterns = _compile(targets, "targets")
    if patterns:
        for p in patterns:
            hits = [n for n in modules if n and p.search(n)]
            if not hits:
                sample = ", ".join(n for n in list(modules)[1:4])
                raise ValueError(f"targets pattern {p.pattern!r} matches no module of the model "
                                 f"(names look like {sample}, ...)")
            prunable = [n for n in hits if _kind(modules[n]) is not None]
            if not prunable:
                n = hits[0]
                raise TypeError(f"targets pattern {p.pattern!r} matches only modules without a weight PruneKit can "
                                f"prune, e.g. {n} ({type(modules[n]).__name__}); PruneKit prunes nn.Linear, nn.Conv1d, "
                                "nn.Conv2d and transformers' Conv1D")
            for n in prunable:
                chosen[n] = modules[n]
        chosen = {n: chosen[n] for n in modules if n in chosen}   # model order
    else:
        prefixes = None if within is None else tuple(name + "." for name, _ in within)
        chosen = {n: m for n, m in modules.items()
                  if _kind(m) is not None and (prefixes is None or n.startswith(prefixes))}
        if not chosen and len(modules) == 1 and _kind(model) is not None:
            chosen = {"": model}
    if not chosen:
        raise ValueError("the model has no module PruneKit can prune (nn.Linear, nn.Conv1d, nn.Conv2d, "
                         "transformers' Conv1D)" + ("" if within is None else " inside its blocks"))
    skip = _compile(ignore, "ignore")
    chosen = {n: m for n, m in chosen.items() if not any(p.search(n) for p in skip)}
    if not chosen:
        raise ValueError("no module to prune: ignore= excludes every target")
    return {n: _Target(n, m) for n, m in chosen.items()}


def _accepts(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _run(model: nn.Module, batch: Any, forward: Optional[Callable]) -> Any:
    """One forward pass over a batch (no key/value cache)."""
    if forward is not None:
        return forward(model, batch)
    extra = {}
    if getattr(getattr(model, "config", None), "use_cache", None) is not None and _accepts(model.forward, "use_cache"):
        extra["use_cache"] = False
    if isinstance(batch, Mapping):
        return model(**batch, **{k: v for k, v in extra.items() if k not in batch})
    if isinstance(batch, (tuple, list)):
        return model(*batch, **extra)
    return model(batch, **extra)


class _evaluating:
    """eval() and no_grad for the duration; the training flag comes back."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.training = self.model.training
        self.model.eval()
        self.grad = torch.no_grad()
        self.grad.__enter__()
        return self

    def __exit__(self, *exc):
        self.grad.__exit__(*exc)
        self.model.train(self.training)
        return False


_NUMPY_FLOATS = (torch.float32, torch.float64, torch.float16)


class _Share:
    """Targets that one accumulator serves: modules fed the same input tensor in the same pass
    (q, k and v; gate and up), found in the batch where they first run ("forming"). In each
    batch the first member's call adds its input at once, read where it lies, after the state
    from before the batch is kept (the accumulator's bytes, not any input); the other
    members' calls on that same input add nothing. A batch where they part (a member fed
    something else, called again, or not called) ends the share: the members that took the
    shared input keep the accumulator (copies of it), the others the state from before the
    batch, and from then on each takes its own inputs alone, so every name's statistics are
    those of its own inputs."""

    __slots__ = ("names", "stats", "batch", "key", "called", "before")

    def __init__(self, name: str, stats: Any, batch: int, key: Optional[tuple]):
        self.names, self.stats, self.batch, self.key = [name], stats, batch, key
        self.called = {name}                    # the members that took this batch's shared input
        self.before: Optional[bytes] = None     # the accumulator's bytes before this batch (None: empty)


class _Collector:
    """Forward pre-hooks that stream every target's input into its Stats, in call order, inside
    the hook and before the module runs: only the real tokens (Stats.update(rows=)), read in
    place, so no activation is copied or held. Modules fed the same tensor (q, k, v) share one
    accumulator (the same Stats object under each name, as a statistics bundle stores them)."""

    def __init__(self, targets: Dict[str, _Target], gram: Union[bool, Iterable[str]]):
        grams = set(targets) if gram is True else set() if gram is False else set(gram)
        self.targets = targets
        self._grams = grams
        self.stats: Dict[str, Any] = {}
        self._share: Dict[str, _Share] = {}      # name -> its share, while it has one
        self._alone: set = set()                 # names that take their inputs alone
        self._batch = 0                          # a batch begins when the mask is set
        self._inputs: Dict[tuple, _Share] = {}   # input key -> the share formed on it in this batch, while whole
        self._held: list = []                    # this batch's keyed inputs, so that their ids stay theirs
        self._mask: Optional[_TokenMask] = None
        self.handles: list = []

    @property
    def mask(self) -> Optional[_TokenMask]:
        return self._mask

    @mask.setter
    def mask(self, value: Optional[_TokenMask]) -> None:
        self._end_batch()
        self._mask = value

    def __enter__(self):
        for name, target in self.targets.items():
            self.handles.append(target.module.register_forward_pre_hook(self._hook(name, target), with_kwargs=True))
        return self

    def _empty(self, name: str) -> Any:
        return _pk.Stats(self.targets[name].features, gram=name in self._grams)

    def _add(self, stats: Any, target: _Target, x: torch.Tensor) -> None:
        data, tokens = target.tokens(x, self._mask)
        if data.dtype not in _NUMPY_FLOATS or data.device.type != "cpu":
            stats.update(data, rows=None if tokens is None else tokens.rows)
        elif tokens is None:                             # Stats.update without its conversions
            stats._update(data.detach().numpy())
        else:
            stats._update(data.detach().numpy(), rows=tokens.rows)

    def _split(self, share: _Share) -> None:
        """Every member alone, on the accumulator it would have had alone."""
        kept = False
        for name in share.names:
            if name in share.called:
                self.stats[name] = share.stats if not kept else _pk.Stats.from_bytes(share.stats.to_bytes())
                kept = True
            else:
                self.stats[name] = _pk.Stats.from_bytes(share.before)   # kept at the share's first call in the batch
            del self._share[name]
            self._alone.add(name)
        if self._inputs.get(share.key) is share:
            del self._inputs[share.key]

    def _end_batch(self) -> None:
        for share in {id(s): s for s in self._share.values()}.values():
            if share.batch == self._batch and (len(share.names) == 1 or len(share.called) < len(share.names)):
                self._split(share)
            share.before = None
        self._batch += 1
        self._inputs, self._held = {}, []

    def _hook(self, name: str, target: _Target):
        tag = (target.kind, target.features, name in self._grams)   # the weight's shape holds while hooked
        keyed = target.kind != "conv"                                # conv patches are a tensor of their own

        def hook(module, args, kwargs):
            x = args[0] if args else next(iter(kwargs.values()))
            if name in self._alone:
                self._add(self.stats[name], target, x)
                return
            key = (id(x), x._version) + tag if keyed else None
            share = self._share.get(name)
            if share is None:                            # its first call: join a share forming on this input, or start one
                other = self._inputs.get(key) if keyed else None
                if other is not None:
                    other.names.append(name)
                    other.called.add(name)
                    self._share[name], self.stats[name] = other, other.stats
                    return
                share = self._share[name] = _Share(name, self._empty(name), self._batch, key)
                self.stats[name] = share.stats
                if keyed:
                    self._inputs[key] = share
                    self._held.append(x)
            elif share.batch != self._batch:             # the share's first call in this batch
                share.batch, share.key, share.called = self._batch, key, {name}
                share.before = share.stats.to_bytes()
                self._held.append(x)
            elif keyed and key == share.key and name not in share.called:
                share.called.add(name)                   # the input the accumulator has taken
                return
            else:                                        # fed something else, or called again
                self._split(share)
            self._add(self.stats[name], target, x)
        return hook

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles = []
        if exc[0] is None:
            self._end_batch()
        for name in self.targets:                       # a target never called: an empty accumulator
            if name not in self.stats:
                self.stats[name] = self._empty(name)
        self.stats = {n: self.stats[n] for n in self.targets}
        return False


class _ErrorMeter:
    """Forward hooks that measure ||(W_dense - W) x|| / ||W_dense x + b|| over real tokens."""

    def __init__(self, targets: Dict[str, _Target], deltas: Dict[str, torch.Tensor]):
        self.targets, self.deltas = targets, deltas
        self.sums = {n: [0.0, 0.0] for n in deltas}
        self.mask: Optional[_TokenMask] = None
        self.handles: list = []

    def __enter__(self):
        for name in self.deltas:
            target = self.targets[name]
            self.handles.append(target.module.register_forward_hook(self._hook(name, target), with_kwargs=True))
        return self

    def _hook(self, name: str, target: _Target):
        delta, sums = self.deltas[name], self.sums[name]

        def hook(module, args, kwargs, output):
            x = args[0] if args else next(iter(kwargs.values()))
            if target.kind != "conv":
                x, output = _real_tokens(x, self.mask), _real_tokens(output, self.mask)
            difference = target.output(x.float(), delta)
            dense = output.float() + difference
            sums[0] += float(torch.linalg.vector_norm(difference)) ** 2
            sums[1] += float(torch.linalg.vector_norm(dense)) ** 2
        return hook

    def errors(self) -> Dict[str, float]:
        return {n: (float(np.sqrt(a / b)) if b > 0 else (0.0 if a == 0 else float("inf"))) for n, (a, b) in self.sums.items()}

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles = []
        return False


def calibrate(model: nn.Module, batches: Iterable[Any], targets: Patterns = None, *, gram: bool = False,
              ignore: Patterns = None, mask_key: Optional[str] = "attention_mask",
              forward: Optional[Callable] = None) -> Dict[str, "_pk.Stats"]:
    """One prunekit.Stats per targeted module (by module name, in model order) of the inputs
    the module sees over `batches`, streamed by forward pre-hooks (no activation is kept).

    targets: regex or list of regexes (re.search on module names); default every nn.Linear,
    Conv1d, Conv2d and Conv1D. gram=True also keeps X^T X (for sparsegpt / reconstruct).
    Linear layers count only the real tokens of a dict batch's attention mask. Equal, bit for
    bit, to Stats filled by hand with stats.update(input[mask]) for the same inputs.
    """
    chosen = _select_targets(model, targets, ignore)
    return _calibrate_targets(model, chosen, set(chosen) if gram else set(), batches, mask_key, forward)


# ------------------------------------------------------------------------------------------
# Methods: one entry each

@dataclass(frozen=True)
class Method:
    """One pruning method: the calibration it needs and how it prunes one weight in place.

    stats: None (no calibration), "features" (input L2 norms / standard deviations) or "gram"
    (X^T X as well). run(weight, stats, sparsity, pattern, scope, options) prunes `weight` (the
    module's tensor, rows = outputs) in place and returns the bool mask. options: the keyword
    options it takes (None: the keyword-only parameters of the prunekit function that a
    _second_order(name) runner calls)."""
    stats: Optional[str]
    run: Callable[..., np.ndarray]
    options: Optional[frozenset] = None


_MASK_OPTIONS = frozenset({"seed", "threads"})
_OBS_OPTIONS = frozenset({"block_size", "dampening", "max_retries", "precision", "threads"})


def _criterion(criterion: str) -> Callable[..., np.ndarray]:
    def run(w, stats, sparsity, pattern, scope, options):
        features = stats if criterion in ("wanda", "stade") else None
        m = _pk.mask(w, sparsity, criterion=criterion, scope=scope or "row", pattern=pattern, features=features,
                     **options)
        _pk.apply_mask(w, m)
        return m
    return run


def _criterion_then_update(criterion: str) -> Callable[..., np.ndarray]:
    """The criterion's mask, then SparseGPT's update of the kept weights (prunekit.reconstruct)."""
    def run(w, stats, sparsity, pattern, scope, options):
        masking = {k: v for k, v in options.items() if k in _MASK_OPTIONS}
        update = {k: v for k, v in options.items() if k in _OBS_OPTIONS}
        features = stats if criterion in ("wanda", "stade") else None
        m = _pk.mask(w, sparsity, criterion=criterion, scope=scope or "row", pattern=pattern, features=features,
                     **masking)
        _pk.reconstruct(w, stats, m, out=w, **update)
        return m
    return run


def _criterion_then_swaps(criterion: str) -> Callable[..., np.ndarray]:
    """The criterion's mask refined by swaps against the layer's exact output error
    (prunekit.refine_mask); the kept weights are not updated."""
    def run(w, stats, sparsity, pattern, scope, options):
        features = stats if criterion in ("wanda", "stade") else None
        m = _pk.mask(w, sparsity, criterion=criterion, scope=scope or "row", pattern=pattern, features=features,
                     **options)
        m = _pk.refine_mask(w, stats, m, pattern=pattern)
        _pk.apply_mask(w, m)
        return m
    return run


def _second_order(name: str) -> Callable[..., np.ndarray]:
    """prunekit.<name>(weight, hessian, sparsity, pattern=...) -> (mask, weight), looked up when
    it runs; the result goes into the weight (out=weight where the function takes it). A scope
    given to prune() is passed on where the function takes one (else its own default holds)."""
    def run(w, stats, sparsity, pattern, scope, options):
        fn = getattr(_pk, name)
        if scope is not None and _accepts(fn, "scope"):
            options = dict(options, scope=scope)
        if _accepts(fn, "out"):
            m, _ = fn(w, stats, sparsity, pattern=pattern, out=w, **options)
        else:
            m, new = fn(w, stats, sparsity, pattern=pattern, **options)
            _copy_into(w, new)
        return m
    run.function = name
    return run


def _accepted_options(label: str, entry: Method) -> Optional[frozenset]:
    """The option names a method takes: its own list, or its prunekit function's keywords."""
    if entry.options is not None:
        return entry.options
    name = getattr(entry.run, "function", None)
    if name is None:
        return None
    fn = getattr(_pk, name, None)
    if fn is None:
        raise ValueError(f"method {label!r} needs prunekit.{name}, which this prunekit does not have")
    params = inspect.signature(fn).parameters
    return frozenset(n for n, p in params.items() if p.kind == p.KEYWORD_ONLY) - {"pattern", "out", "scope"}


# Options of the driver itself, valid with every method.
#   permute: N:M only; True (or a dict of prunekit.channel_permutation options: max_swaps,
#     time_limit, threads) permutes the input channels of each layer that has a known producer
#     (_couplings) before it is pruned, so that its N:M mask keeps more importance.
#   compensate_bias: fold the mean output shift of pruning into the module's bias
#     (prunekit.compensate_bias), the weights reconstructed on the centred Gram matrix.
_DRIVER_OPTIONS = frozenset({"permute", "compensate_bias"})
_PERMUTE_KEYS = frozenset({"max_swaps", "time_limit", "threads"})


def _permute_options(name: str, value: Any, pattern: Optional[str]) -> Any:
    if value is False or value is None:
        return None
    if value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: permute must be True, False or a dict of channel_permutation options, got {value!r}")
    unknown = set(value) - _PERMUTE_KEYS
    if unknown:
        raise ValueError(f"{name}: permute takes no option {sorted(unknown)[0]!r} (it takes {sorted(_PERMUTE_KEYS)})")
    if pattern is None:
        raise ValueError(f"{name}: permute applies to N:M patterns (pattern='2:4'), not to an unstructured sparsity")
    swaps, limit = value.get("max_swaps"), value.get("time_limit")
    if swaps is not None and (not isinstance(swaps, int) or not 1 <= swaps <= 2 ** 40):
        raise ValueError(f"{name}: the permutation budget max_swaps must be an int in [1, 2^40], got {swaps!r}")
    if limit is not None and not (isinstance(limit, (int, float)) and 0 <= limit < float("inf")):
        raise ValueError(f"{name}: the permutation time_limit must be 0 (none) or positive seconds, got {limit!r}")
    return dict(value)


class _Coupling:
    """A consumer layer whose input channels are a producer's output rows (and bias) and nothing
    else, so both may be permuted together: segment 0 = any order, else only inside runs of
    `segment` channels (an attention head's value channels)."""

    def __init__(self, producer: nn.Module, producer_name: str, segment: int):
        self.producer, self.producer_name, self.segment = producer, producer_name, segment


def _couplings(model: nn.Module) -> Dict[str, _Coupling]:
    """The permutable couplings PruneKit knows, by consumer module name: for the BERT family
    (BERT, RoBERTa, MiniLM, ...) the FFN's intermediate channels (intermediate.dense rows + bias,
    output.dense columns) and each head's value channels (attention.self.value rows + bias,
    attention.output.dense columns, within the head). Neither touches the residual stream."""
    modules = dict(model.named_modules())
    found: Dict[str, _Coupling] = {}
    for name, module in modules.items():
        for producer_tail, consumer_tail in (("intermediate.dense", "output.dense"),
                                              ("attention.self.value", "attention.output.dense")):
            if name == producer_tail or name.endswith("." + producer_tail):
                prefix = name[:len(name) - len(producer_tail)]
                consumer = modules.get(prefix + consumer_tail)
                if not (isinstance(module, nn.Linear) and isinstance(consumer, nn.Linear)
                        and module.out_features == consumer.in_features):
                    continue
                segment = 0
                if producer_tail == "attention.self.value":
                    attention = modules.get(name[:-len(".value")])
                    segment = int(getattr(attention, "attention_head_size", 0) or 0)
                    if segment <= 0 or module.out_features % segment:
                        continue
                found[prefix + consumer_tail] = _Coupling(module, name, segment)
    return found


def _permute_inputs(model: nn.Module, names: Sequence[str], targets: Dict[str, _Target], plans: Dict[str, _Plan],
                    stats: Dict[str, Any], couplings: Dict[str, _Coupling]) -> Dict[str, Tuple[float, float]]:
    """Permutes, before they are pruned, the input channels of the listed modules whose plan asks
    for it and that have a coupling: the search on the module's scores (Wanda from its statistics
    where it has them, else magnitude), the producer's rows and bias and the module's columns
    permuted alike (prunekit.structured.permute), the module's statistics replaced by their
    permuted view. Returns (kept importance before, after) per permuted module."""
    done = {}
    for n in names:
        plan = plans[n]
        if plan.permute is None or n not in couplings:
            continue
        start = time.perf_counter()
        coupling, target = couplings[n], targets[n]
        n_keep, m = (int(p) for p in plan.pattern.split(":"))
        width = coupling.segment
        if width and width % m:
            continue          # a head narrower than the pattern's groups: nothing can move
        weight = target.weight.detach()
        features = stats.get(n)
        options = dict(plan.permute)
        threads = options.pop("threads", None)
        found = _pk.channel_permutation(weight, (n_keep, m), criterion="wanda" if features is not None else "magnitude",
                                        features=features, segment=width, threads=threads, **options)
        members = [_pk.Member(coupling.producer.weight.detach(), "rows")]
        if coupling.producer.bias is not None:
            members.append(_pk.Member(coupling.producer.bias.detach()))
        members.append(_pk.Member(weight, "cols"))
        with torch.no_grad():
            _pk.permute(_pk.Group(members), found.permutation)
        if features is not None:
            stats[n] = _pk.permute_stats(features, found.permutation)
        done[n] = (found.kept_before, found.kept_after, time.perf_counter() - start)
    return done


class _CenteredStats(_pk._StatsView):
    """A view of a Stats whose Gram matrix is the centred one (sum (x - mean)(x - mean)^T): the
    Hessian to reconstruct on when the bias absorbs the mean shift afterwards."""

    def _gram(self, out: Any) -> None:
        self._source._centered_gram(out)


def _copy_into(w: torch.Tensor, new: Any) -> None:
    if isinstance(new, np.ndarray):
        new = torch.from_numpy(new.view(np.int16)).view(torch.bfloat16) if new.dtype == np.uint16 else torch.from_numpy(new)
    with torch.no_grad():
        w.copy_(new.reshape(w.shape))


# Adding a method is one entry. (method name -> Method)
METHODS: Dict[str, Method] = {
    "magnitude": Method(None, _criterion("magnitude"), _MASK_OPTIONS),
    "random": Method(None, _criterion("random"), _MASK_OPTIONS),
    "wanda": Method("features", _criterion("wanda"), _MASK_OPTIONS),
    "stade": Method("features", _criterion("stade"), _MASK_OPTIONS),
    "sparsegpt": Method("gram", _second_order("sparsegpt"), _OBS_OPTIONS),
    "wanda+obs": Method("gram", _criterion_then_update("wanda"), _MASK_OPTIONS | _OBS_OPTIONS),
    "magnitude+obs": Method("gram", _criterion_then_update("magnitude"), _MASK_OPTIONS | _OBS_OPTIONS),
    "admm": Method("gram", _second_order("admm")),     # prunekit.admm: options from its signature
    "wanda+swap": Method("gram", _criterion_then_swaps("wanda"), _MASK_OPTIONS),
}


@dataclass
class _Plan:
    method_name: str
    method: Method
    sparsity: Optional[float]
    pattern: Optional[str]
    scope: str
    options: dict
    permute: Optional[dict] = None  # None, or the prunekit.channel_permutation options (a dict)
    compensate_bias: bool = False

    @property
    def selection(self) -> str:
        return self.pattern if self.pattern else f"{self.sparsity * 100:g}%" + (f" {self.scope}" if self.scope else "")


def _pattern_text(pattern: Any) -> Optional[str]:
    if pattern is None:
        return None
    if isinstance(pattern, str):
        return pattern
    n, m = pattern
    return f"{int(n)}:{int(m)}"


def _plans(targets: Dict[str, _Target], method: str, sparsity: Optional[float], pattern: Any, scope: str,
           overrides: Optional[Mapping], options: dict) -> Dict[str, _Plan]:
    """Every module's settings, checked before anything is computed or written."""
    rules = [(re.compile(k) if isinstance(k, str) else k, v) for k, v in (overrides or {}).items()]
    plans = {}
    options = dict(options)
    shared_driver = {k: options.pop(k) for k in list(options) if k in _DRIVER_OPTIONS}
    used = set(shared_driver)
    for name, target in targets.items():
        settings = dict(method=method, sparsity=sparsity, pattern=pattern, scope=scope, **shared_driver)
        skip = False
        for regex, value in rules:
            if regex.search(name):
                if value is None or value == "skip":
                    skip = True
                elif isinstance(value, Mapping):
                    settings.update(value)
                else:
                    raise ValueError(f"overrides[{regex.pattern!r}]: expected a dict of settings or 'skip', got {value!r}")
        if skip:
            continue
        driver = {k: settings.pop(k) for k in list(settings) if k in _DRIVER_OPTIONS}
        label = settings.pop("method")
        if label not in METHODS:
            raise ValueError(f"{name}: unknown method {label!r}; one of {sorted(METHODS)}")
        entry = METHODS[label]
        pat = _pattern_text(settings.pop("pattern"))
        s = settings.pop("sparsity")
        sc = settings.pop("scope")
        if pat is not None:
            try:
                n, m = (int(p) for p in pat.split(":"))
            except ValueError:
                raise ValueError(f"{name}: pattern must look like '2:4', got {pat!r}") from None
            if not 0 < n < m or target.features % m:
                raise ValueError(f"{name}: pattern {pat} does not fit {target.features} input features")
            s = None
        else:
            s = 0.5 if s is None else float(s)
            if not 0.0 <= s <= 1.0:
                raise ValueError(f"{name}: sparsity {s} is outside [0, 1]")
            if sc not in (None, "row", "layer"):
                raise ValueError(f"{name}: scope must be 'row' or 'layer', got {sc!r}")
        # Options given to prune() go to the methods that take them; an override's are its own.
        accepted = _accepted_options(label, entry)
        if accepted is not None:
            unknown = set(settings) - accepted
            if unknown:
                raise ValueError(f"{name}: method {label!r} takes no option {sorted(unknown)[0]!r} "
                                 f"(it takes {sorted(accepted)})")
        shared = {k: v for k, v in options.items() if accepted is None or k in accepted}
        used.update(shared)
        permute = _permute_options(name, driver.get("permute", False), pat)
        compensate = driver.get("compensate_bias", False)
        if not isinstance(compensate, bool):
            raise ValueError(f"{name}: compensate_bias must be True or False, got {compensate!r}")
        if compensate and entry.stats is None:
            raise ValueError(f"{name}: compensate_bias needs calibration statistics (the inputs' mean), and method "
                             f"{label!r} takes none")
        plans[name] = _Plan(label, entry, s, pat, sc, dict(shared, **settings), permute, compensate)
    if not plans:
        raise ValueError("no module to prune: the overrides skip every target")
    unused = sorted(set(options) - used)
    if unused:
        raise ValueError(f"no method pruned here takes the option {unused[0]!r}")
    return plans


# ------------------------------------------------------------------------------------------
# Report

@dataclass
class LayerReport:
    name: str
    method: str
    selection: str
    shape: Tuple[int, ...]
    dtype: str
    sparsity: float
    seconds: float
    error: Optional[float]       # relative output error on the calibration inputs (None: not measured)
    block: Optional[int] = None
    permutation: Optional[Tuple[float, float]] = None   # importance the N:M mask keeps before / after permuting


@dataclass
class Report:
    """What prune() did: one LayerReport per pruned module. print(report) shows the table;
    report.to_json() / to_dict() serialise it; report["name"] is one layer."""
    layers: List[LayerReport]
    mode: str                     # "sequential" or "one-shot"
    tokens: int                   # calibration tokens (real ones) seen by the first pruned layer
    seconds: float
    calibration_seconds: float
    blocks: int = 0

    @property
    def sparsity(self) -> float:
        """Pruned fraction of all the pruned modules' weights."""
        total = sum(int(np.prod(layer.shape)) for layer in self.layers)
        return sum(layer.sparsity * int(np.prod(layer.shape)) for layer in self.layers) / total if total else 0.0

    def __getitem__(self, name: str) -> LayerReport:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def table(self) -> str:
        width = max([len("layer")] + [len(layer.name) for layer in self.layers])
        lines = [f"{'layer':{width}s}  {'method':13s} {'selection':>9s}  {'shape':>12s} {'sparsity':>9s} "
                 f"{'rel. error':>11s} {'time s':>7s}"]
        for layer in self.layers:
            shape = "x".join(str(s) for s in layer.shape)
            error = "-" if layer.error is None else f"{layer.error:.4f}"
            lines.append(f"{layer.name:{width}s}  {layer.method:13s} {layer.selection:>9s}  {shape:>12s} "
                         f"{layer.sparsity * 100:8.1f}% {error:>11s} {layer.seconds:7.3f}")
        weights = sum(int(np.prod(layer.shape)) for layer in self.layers)
        lines.append(f"{len(self.layers)} layers ({weights:,} weights), {self.sparsity * 100:.1f}% pruned, "
                     f"{self.mode}" + (f" over {self.blocks} blocks" if self.blocks else "")
                     + f", {self.tokens:,} calibration tokens, {self.seconds:.2f} s "
                     f"(calibration {self.calibration_seconds:.2f} s)")
        return "\n".join(lines)

    __str__ = table

    def to_dict(self) -> dict:
        return dict(mode=self.mode, tokens=self.tokens, seconds=self.seconds, calibration_seconds=self.calibration_seconds,
                    blocks=self.blocks, sparsity=self.sparsity,
                    layers=[dict(asdict(layer), shape=list(layer.shape)) for layer in self.layers])

    def to_json(self, **kwargs) -> str:
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), **kwargs)


# ------------------------------------------------------------------------------------------
# Blocks and the pruning loop

def _find_blocks(model: nn.Module, blocks: Any = None) -> Optional[List[Tuple[str, nn.Module]]]:
    """The model's blocks as (name, module): the given ModuleList (by name) or modules, or the
    ModuleList holding the most prunable modules (BERT's encoder.layer, LLaMA's model.layers,
    GPT-2's transformer.h). None when the model has no such list."""
    names = {id(m): n for n, m in model.named_modules()}
    if blocks is None:
        best, count = None, 0
        for name, m in model.named_modules():
            if isinstance(m, nn.ModuleList) and len(m):
                c = sum(1 for sub in m.modules() if _kind(sub) is not None)
                if c > count:
                    best, count = name, c
        if best is None:
            return None
        blocks = best
    if isinstance(blocks, str):
        try:
            container = model.get_submodule(blocks)
        except AttributeError:
            raise ValueError(f"blocks={blocks!r}: the model has no such submodule") from None
        children = list(container.children())
        if not children:
            raise ValueError(f"blocks={blocks!r} has no child modules")
        return [(f"{blocks}.{i}" if blocks else str(i), child) for i, child in enumerate(children)]
    out = []
    for m in blocks:
        if id(m) not in names:
            raise ValueError(f"blocks: {type(m).__name__} is not a submodule of the model")
        out.append((names[id(m)], m))
    return out


class _Stop(Exception):
    pass


def _capture(model: nn.Module, block: nn.Module, batches: Sequence[Any], mask_key: Optional[str],
             forward: Optional[Callable]) -> list:
    """(args, kwargs, token mask) of the first block's call, per batch; the rest of the model
    does not run (as the reference drivers' 'Catcher')."""
    records: list = []

    def hook(module, args, kwargs):
        records.append([tuple(args), dict(kwargs), None])
        raise _Stop

    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for batch in batches:
            before = len(records)
            try:
                _run(model, batch, forward)
            except _Stop:
                pass
            if len(records) != before + 1:
                raise RuntimeError("the forward pass did not reach the first block; pass blocks= or sequential=False")
            records[-1][2] = _token_mask(batch, mask_key)
    finally:
        handle.remove()
    return records


def _next_inputs(record: list, output: Any) -> None:
    hidden = output[0] if isinstance(output, (tuple, list)) else output
    if not isinstance(hidden, torch.Tensor):
        hidden = output[0]
    args, kwargs = record[0], record[1]
    if args:
        record[0] = (hidden,) + tuple(args[1:])
    elif "hidden_states" in kwargs:
        record[1] = dict(kwargs, hidden_states=hidden)
    else:
        raise RuntimeError("cannot tell which input of the block is its hidden state")


def _progress(iterable, enabled: bool, total: int, desc: str):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False)


def _prune_one(target: _Target, plan: _Plan, stats: Optional["_pk.Stats"], keep_delta: bool, block: Optional[int]):
    if plan.method.stats is not None:
        if stats is None or stats.count == 0:
            raise ValueError(f"{target.name}: method {plan.method_name!r} needs calibration inputs, and the module "
                             "saw none (pass batches that reach it)")
    dense = target.weight.detach().clone() if keep_delta else None
    bias = getattr(target.module, "bias", None) if plan.compensate_bias else None
    start = time.perf_counter()
    w = target.matrix()
    given = stats if plan.method.stats is not None else None
    original = None
    if bias is not None:
        original = w.detach().clone()
        if plan.method.stats == "gram":
            given = _CenteredStats(stats)
    m = plan.method.run(w, given, plan.sparsity, plan.pattern, plan.scope, plan.options)
    if bias is not None:
        with torch.no_grad():
            _pk.compensate_bias(original, w, bias.detach(), stats.mean())
    target.commit(w)
    seconds = time.perf_counter() - start
    delta = None
    if dense is not None:
        delta = dense.float() - target.weight.detach().float()
    overall, _ = _pk.sparsity(m)
    layer = LayerReport(target.name, plan.method_name, plan.selection, tuple(target.weight.shape),
                        str(target.weight.dtype).replace("torch.", ""), float(overall), seconds, None, block)
    return layer, delta


def prune(model: nn.Module, batches: Optional[Iterable[Any]] = None, *, method: str = "wanda",
          sparsity: Optional[float] = None, pattern: Union[str, Tuple[int, int], None] = None,
          scope: Optional[str] = None,
          targets: Patterns = None, ignore: Patterns = None, overrides: Optional[Mapping] = None,
          sequential: bool = True, blocks: Any = None, progress: bool = True, error: bool = True,
          mask_key: Optional[str] = "attention_mask", forward: Optional[Callable] = None, **options) -> Report:
    """Prunes the model in place, each module in its own dtype; returns a Report.

    method: a key of METHODS ("magnitude", "random", "wanda", "stade", "sparsegpt",
    "wanda+obs", "magnitude+obs", "admm", "wanda+swap"). sparsity (default 0.5) with scope "row" or "layer"
    (default: the method's own, per row for the masks), or pattern="2:4" (a pattern wins).
    targets / ignore: regexes on module names (default: every prunable module in the blocks, or
    in the model when it has no block list). overrides={regex: {"method": ..., "sparsity": ...,
    "pattern": ..., option: ...} or "skip"}, later matches winning. options: the methods' own
    (seed, threads; block_size, dampening, precision; ADMM's iterations, rho, ...), each given
    to the methods that take it. Everything is checked before a weight is written.

    Two options hold for every method. compensate_bias=True folds the mean output shift of
    pruning into each pruned module's bias (modules without one are left as they are): the
    weights are reconstructed on the centred Gram matrix (stats.gram(centered=True)) and then
    bias += (W_dense - W) mean(x) (prunekit.compensate_bias). permute=True (N:M patterns only;
    or a dict of prunekit.channel_permutation options: max_swaps, time_limit, threads) permutes
    the input channels of each pruned module that has a known producer before pruning it, so
    that its N:M mask keeps more importance (Wanda scores from its statistics, else magnitude):
    for the BERT family the FFN's intermediate channels and each head's value channels, the
    producer's rows and bias moved alike, so the model computes the same function before
    pruning. The report's layer.permutation gives the importance kept before / after.

    sequential=True calibrates each block on the outputs of the already-pruned blocks before
    it (the Wanda / SparseGPT reference drivers' loop): the first block's inputs are captured,
    then per block its targets' inputs are streamed into Stats, the targets are pruned and the
    block runs again to give the next block its inputs. blocks: the ModuleList (name) or list of
    modules; found from the model by default. sequential=False calibrates once on the dense
    model (methods that need no calibration always run so). error=True measures each layer's
    relative output error on the calibration inputs (an extra run; keeps the block's, or in
    one-shot mode every target's, dense weights).
    """
    start = time.perf_counter()
    found = _find_blocks(model, blocks)
    chosen = _select_targets(model, targets, ignore, within=found)
    plans = _plans(chosen, method, sparsity, pattern, scope, overrides, options)
    couplings: Dict[str, _Coupling] = {}
    if any(p.permute is not None for p in plans.values()):
        couplings = {n: c for n, c in _couplings(model).items() if n in plans and plans[n].permute is not None}
        if not couplings:
            raise ValueError("permute=True, but no pruned module has input channels PruneKit can permute (known: "
                             "the BERT family's FFN output.dense and attention.output.dense)")
    needs = {n: p.method.stats for n, p in plans.items()}
    grams = {n for n, s in needs.items() if s == "gram"}
    calibrated = any(s is not None for s in needs.values())
    batches = None if batches is None else list(batches)
    if calibrated and not batches:
        raise ValueError("these methods need calibration batches (prune(model, batches, ...))")
    layers: List[LayerReport] = []
    calibration_seconds = 0.0
    tokens = 0

    # Methods without calibration prune the same weights either way: one forward pass for the errors.
    if sequential and batches and calibrated:
        if found is None:
            raise ValueError("sequential pruning needs the model's blocks: the model has no ModuleList of layers "
                             "(pass blocks=, or sequential=False)")
        owner = {}
        for n in plans:
            for i, (bname, _) in enumerate(found):
                if n.startswith(bname + "."):
                    owner[n] = i
                    break
            else:
                raise ValueError(f"{n} is outside the blocks ({found[0][0]}, ...); sequential pruning prunes modules "
                                 "inside blocks (ignore it, or sequential=False)")
        last = max(owner.values())
        with _evaluating(model):
            t0 = time.perf_counter()
            records = _capture(model, found[0][1], batches, mask_key, forward)
            calibration_seconds += time.perf_counter() - t0
            for i, (bname, block) in enumerate(_progress(found[:last + 1], progress, last + 1, "prunekit blocks")):
                names = [n for n in plans if owner[n] == i]
                here = {n: chosen[n] for n in names}
                stats: Dict[str, Any] = {}
                wanted = {n: chosen[n] for n in names if needs[n] is not None}
                if wanted:
                    t0 = time.perf_counter()
                    with _Collector(wanted, [n for n in wanted if n in grams]) as collector:
                        for args, kwargs, mask in records:
                            collector.mask = mask
                            block(*args, **kwargs)
                    stats = collector.stats
                    del collector   # it holds the Stats too: this block's Grams must go with `stats`
                    calibration_seconds += time.perf_counter() - t0
                    if not tokens:
                        tokens = next(iter(stats.values())).count
                deltas = {}
                permuted = _permute_inputs(model, names, chosen, plans, stats, couplings) if couplings else {}
                for n in names:
                    layer, delta = _prune_one(chosen[n], plans[n], stats.get(n), error, i)
                    if n in permuted:
                        layer.permutation = permuted[n][:2]
                        layer.seconds += permuted[n][2]
                    layers.append(layer)
                    if delta is not None:
                        deltas[n] = delta
                del stats   # the block's accumulators (Gram matrices: 1.37 GB per 7B block) go here
                if i == last and not error:
                    break
                t0 = time.perf_counter()
                with _ErrorMeter(here, deltas) as meter:
                    for record in records:
                        meter.mask = record[2]
                        out = block(*record[0], **record[1])
                        _next_inputs(record, out)
                calibration_seconds += time.perf_counter() - t0
                for layer in layers:
                    if layer.name in deltas:
                        layer.error = meter.errors()[layer.name]
        mode, block_count = "sequential", last + 1
    else:
        stats = {}
        if calibrated:
            t0 = time.perf_counter()
            wanted = {n: chosen[n] for n in plans if needs[n] is not None}
            stats = _calibrate_targets(model, wanted, grams, batches, mask_key, forward)
            calibration_seconds += time.perf_counter() - t0
            tokens = next(iter(stats.values())).count
        deltas = {}
        keep = error and bool(batches)
        permuted = _permute_inputs(model, list(plans), chosen, plans, stats, couplings) if couplings else {}
        for n in _progress(list(plans), progress, len(plans), "prunekit layers"):
            layer, delta = _prune_one(chosen[n], plans[n], stats.get(n), keep, None)
            if n in permuted:
                layer.permutation = permuted[n][:2]
                layer.seconds += permuted[n][2]
            layers.append(layer)
            if delta is not None:
                deltas[n] = delta
        stats = None
        if keep:
            t0 = time.perf_counter()
            with _evaluating(model), _ErrorMeter(chosen, deltas) as meter:
                for batch in batches:
                    meter.mask = _token_mask(batch, mask_key)
                    _run(model, batch, forward)
            calibration_seconds += time.perf_counter() - t0
            errors = meter.errors()
            for layer in layers:
                layer.error = errors[layer.name]
        mode, block_count = "one-shot", 0
    return Report(layers, mode, tokens, time.perf_counter() - start, calibration_seconds, block_count)


def _calibrate_targets(model, targets: Dict[str, _Target], grams, batches, mask_key, forward) -> Dict[str, Any]:
    collector = _Collector(targets, [n for n in targets if n in grams])
    with _evaluating(model), collector:
        for batch in batches:
            collector.mask = _token_mask(batch, mask_key)
            _run(model, batch, forward)
    return collector.stats


# ------------------------------------------------------------------------------------------
# torch.nn.utils.prune interop

class PruneKitMethod(_torch_prune.BasePruningMethod):
    """A torch.nn.utils.prune method whose mask is prunekit.mask's, bit for bit.

    amount: the pruned fraction (PruneKit counts int(amount * n) per row / layer, where torch's
    own methods round). pattern="2:4" keeps n of every m inputs instead. scope: "row" or
    "layer". features: the input L2 norms / standard deviations or a prunekit.Stats (Wanda,
    STADE). transposed: the tensor is [in, out] (transformers' Conv1D). A 1-D tensor (what
    prune.global_unstructured passes: every parameter flattened and concatenated) is one row,
    so global magnitude or Scores masks equal prunekit.masks(..., scope="global")."""

    PRUNING_TYPE = "unstructured"
    criterion = "magnitude"

    def __init__(self, amount: float = 0.5, *, pattern: Union[str, Tuple[int, int], None] = None, scope: str = "row",
                 features: Any = None, seed: int = 0, transposed: bool = False):
        if isinstance(amount, bool) or not isinstance(amount, (float, int)) or not 0 <= amount <= 1:
            raise ValueError(f"amount must be a fraction in [0, 1], got {amount!r}")
        if self.criterion in ("wanda", "stade") and features is None:
            raise ValueError(f"{type(self).__name__} needs features= (a prunekit.Stats or the per-input values)")
        self.amount, self.pattern, self.scope = float(amount), pattern, scope
        self.features, self.seed, self.transposed = features, seed, transposed

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        if t.device.type != "cpu":
            raise ValueError(f"the tensor is on {t.device}; PruneKit takes CPU tensors")
        w = t.detach()
        if self.transposed and w.dim() == 2:
            w = w.t()
        if w.dim() == 1:
            if self.features is not None or self.pattern is not None:
                raise ValueError(f"{type(self).__name__} with features or a pattern needs the weight's 2-D shape; "
                                 "a flattened tensor (global_unstructured, or pruning twice) has none. For global "
                                 "Wanda pass importance_scores=prunekit.torch.scores(...) with prunekit.torch.Scores")
            w = w.reshape(1, -1)
        m = _pk.mask(w, self.amount, criterion=self.criterion, scope=self.scope, pattern=self.pattern,
                     features=self.features, seed=self.seed)
        mask = torch.from_numpy(m)
        if self.transposed and t.dim() == 2:
            mask = mask.t()
        return mask.reshape(t.shape).to(dtype=default_mask.dtype) * default_mask


class Magnitude(PruneKitMethod):
    """|w| (prunekit criterion "magnitude")."""
    criterion = "magnitude"


class Wanda(PruneKitMethod):
    """|w| * ||x_j||_2 (features: a Stats or the input L2 norms)."""
    criterion = "wanda"


class Stade(PruneKitMethod):
    """|w| * std(x_j) (features: a Stats or the input standard deviations)."""
    criterion = "stade"


class Random(PruneKitMethod):
    """PruneKit's seeded counter-based draw (seed=)."""
    criterion = "random"


class Scores(PruneKitMethod):
    """The tensor's values are the scores (pass importance_scores=, e.g. from scores())."""
    criterion = "scores"


def _is_transposed(module: nn.Module, name: str) -> bool:
    return _kind(module) == "conv1d_t" and name == "weight"


def _param(module: nn.Module, name: str) -> torch.Tensor:
    t = getattr(module, name + "_orig", None)
    return getattr(module, name) if t is None else t


def scores(module: nn.Module, criterion: str = "wanda", stats: Any = None, name: str = "weight",
           seed: int = 0) -> torch.Tensor:
    """prunekit.score of a module's parameter as a float32 tensor of the parameter's shape (for
    prune.global_unstructured(..., pruning_method=Scores, importance_scores={...}))."""
    t = _param(module, name).detach()
    transposed = _is_transposed(module, name)
    s = torch.from_numpy(_pk.score(t.t() if transposed else t, criterion, features=stats, seed=seed))
    return (s.t() if transposed else s).reshape(t.shape).contiguous()


def _apply(cls, module, name, amount, importance_scores=None, **kwargs):
    cls.apply(module, name, amount, transposed=_is_transposed(module, name), importance_scores=importance_scores, **kwargs)
    return module


def magnitude_unstructured(module: nn.Module, name: str = "weight", amount: float = 0.5, *, pattern=None,
                           scope: str = "row", importance_scores=None) -> nn.Module:
    """Like prune.l1_unstructured, with PruneKit's magnitude mask (per row by default)."""
    return _apply(Magnitude, module, name, amount, importance_scores, pattern=pattern, scope=scope)


def wanda_unstructured(module: nn.Module, name: str = "weight", amount: float = 0.5, *, stats: Any, pattern=None,
                       scope: str = "row") -> nn.Module:
    """Wanda's mask (stats: the module's input Stats, e.g. calibrate(...)[name])."""
    return _apply(Wanda, module, name, amount, None, pattern=pattern, scope=scope, features=stats)


def stade_unstructured(module: nn.Module, name: str = "weight", amount: float = 0.5, *, stats: Any, pattern=None,
                       scope: str = "row") -> nn.Module:
    return _apply(Stade, module, name, amount, None, pattern=pattern, scope=scope, features=stats)


def random_unstructured(module: nn.Module, name: str = "weight", amount: float = 0.5, *, seed: int = 0,
                        pattern=None, scope: str = "row") -> nn.Module:
    return _apply(Random, module, name, amount, None, pattern=pattern, scope=scope, seed=seed)


def nm_unstructured(module: nn.Module, name: str = "weight", pattern: Union[str, Tuple[int, int]] = "2:4", *,
                    criterion: str = "magnitude", stats: Any = None) -> nn.Module:
    """N:M along the inputs with any criterion ("magnitude", "wanda", "stade", "random")."""
    cls = {"magnitude": Magnitude, "wanda": Wanda, "stade": Stade, "random": Random}.get(criterion)
    if cls is None:
        raise ValueError(f"criterion must be magnitude, wanda, stade or random, got {criterion!r}")
    return _apply(cls, module, name, 0.0, None, pattern=pattern, features=stats)


def sparsegpt_unstructured(module: nn.Module, name: str = "weight", amount: float = 0.5, *, stats: Any,
                           pattern=None, update: bool = True, **options) -> nn.Module:
    """SparseGPT's mask as weight_mask (prunekit.sparsegpt; stats: a Stats with gram=True or
    X^T X). update=True also writes SparseGPT's updated kept weights into weight_orig, so
    weight = weight_orig * weight_mask is SparseGPT's result (and stays so after prune.remove)."""
    t = _param(module, name)
    if t.device.type != "cpu":
        raise ValueError(f"the tensor is on {t.device}; PruneKit takes CPU tensors")
    transposed = _is_transposed(module, name)
    w = t.detach().t().contiguous() if transposed else t.detach()
    if update:
        m, _ = _pk.sparsegpt(w, stats, amount, pattern=pattern, out=w, **options)
        if transposed:
            with torch.no_grad():
                t.copy_(w.t())
    else:
        m, _ = _pk.sparsegpt(w, stats, amount, pattern=pattern, **options)
    mask = torch.from_numpy(m)
    _torch_prune.custom_from_mask(module, name, (mask.t() if transposed else mask).reshape(t.shape))
    return module


# ------------------------------------------------------------------------------------------
# Structured pruning of BERT-like and LLaMA-like blocks

@dataclass
class _Layout:
    family: str                 # "bert" or "llama"
    ffn_rows: List[nn.Linear]   # modules whose output rows are the hidden channels
    ffn_cols: nn.Linear         # the module whose input columns are the hidden channels
    ffn_owner: Optional[nn.Module]
    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    attention: nn.Module
    head_dim: int

    @property
    def heads(self) -> int:
        return self.q.out_features // self.head_dim

    @property
    def kv_heads(self) -> int:
        return self.k.out_features // self.head_dim

    @property
    def groups(self) -> int:
        return self.heads // self.kv_heads

    @property
    def intermediate(self) -> int:
        return self.ffn_cols.in_features


def _layout(block: nn.Module) -> Optional[_Layout]:
    def get(path):
        m = block
        for part in path.split("."):
            m = getattr(m, part, None)
            if m is None:
                return None
        return m

    names_bert = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                  "intermediate.dense", "output.dense"]
    found = [get(p) for p in names_bert]
    if all(isinstance(m, nn.Linear) for m in found):
        q, k, v, o, up, down = found
        sa = block.attention.self
        d = int(getattr(sa, "attention_head_size", 0) or q.out_features // sa.num_attention_heads)
        return _Layout("bert", [up], down, None, q, k, v, o, sa, d)
    names_llama = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                   "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    found = [get(p) for p in names_llama]
    if all(isinstance(m, nn.Linear) for m in found):
        q, k, v, o, gate, up, down = found
        attn = block.self_attn
        d = int(getattr(attn, "head_dim", 0) or q.out_features // attn.num_heads)
        return _Layout("llama", [gate, up], down, block.mlp, q, k, v, o, attn, d)
    return None


def _layouts(model: nn.Module, blocks: Any, ignore: Patterns, cpu: bool = True) -> List[Tuple[str, _Layout]]:
    found = _find_blocks(model, blocks)
    if not found:
        raise ValueError("the model has no ModuleList of blocks (pass blocks=)")
    skip = _compile(ignore, "ignore")
    out = []
    for name, block in found:
        layout = _layout(block)
        if layout is None:
            raise ValueError(f"{name} ({type(block).__name__}) is neither a BERT-like block (attention.self.query/key/"
                             "value, attention.output.dense, intermediate.dense, output.dense) nor a LLaMA-like one "
                             "(self_attn.q/k/v/o_proj, mlp.gate/up/down_proj)")
        for m in (layout.q, layout.k, layout.v, layout.o, layout.ffn_cols, *layout.ffn_rows):
            if cpu and m.weight.device.type != "cpu":
                raise ValueError(f"{name}: weights are on {m.weight.device}; prunekit.torch works on CPU modules")
        if not any(p.search(name) for p in skip):
            out.append((name, layout))
    if not out:
        raise ValueError("every block is ignored")
    return out


# ------------------------------------------------------------------------------------------
# Pruning over time

class Pruner(_pp.Pruner):
    """prunekit.progressive.Pruner over the weights of a model's modules, for pruning during
    training (schedules, decaying masks, gradient flow, soft masks: the options of
    prunekit.progressive.Pruner).

        stats = pkt.calibrate(model, batches)                   # for criterion="wanda" / "stade"
        pruner = pkt.Pruner(model, targets=r"^encoder\\.", stats=stats, criterion="wanda",
                            schedule="cubic", end=300, frequency=15, final_sparsity=0.8)
        for t in range(steps):
            loss.backward(); optimizer.step()
            pruner.step(t)                                      # masks applied to the module weights

    The pruner keeps and writes the module weight tensors themselves (no copy): update them in
    place (optimizers do) and do not replace them while it lives. Modules: nn.Linear, nn.Conv1d,
    nn.Conv2d (ungrouped; the weight as [out, in * kernel]); transformers' Conv1D is refused (its
    weight is [in, out], which cannot be masked per output row in place). targets / ignore select
    modules as in prune(). stats: {module name: prunekit.Stats} (calibrate's result), needed by
    wanda / stade. With criterion="gradient_flow", step(t) reads each weight's .grad when no
    gradients are passed.
    """

    def __init__(self, model: nn.Module, targets: Patterns = None, *, ignore: Patterns = None,
                 stats: Optional[Mapping] = None, criterion: str = "magnitude", **options):
        chosen = _select_targets(model, targets, ignore)
        for name, target in chosen.items():
            if target.kind == "conv1d_t":
                raise TypeError(f"{name}: transformers' Conv1D keeps its weight as [in, out]; the pruner writes "
                                "weights in place per output row and cannot take it")
            if target.kind == "conv" and target.module.groups != 1:
                raise ValueError(f"{name}: grouped convolution is not supported")
        features = None
        if criterion in ("wanda", "stade"):
            if stats is None:
                raise ValueError(f"criterion {criterion!r} needs stats= (prunekit.torch.calibrate(model, batches))")
            missing = [n for n in chosen if n not in stats]
            if missing:
                raise ValueError(f"stats has no entry for {missing[0]}" +
                                 (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
            features = [stats[n] for n in chosen]
        elif stats is not None:
            raise ValueError(f"stats= is used by wanda / stade only, not by criterion {criterion!r}")
        self.names = list(chosen)
        self._parameters = [t.weight for t in chosen.values()]
        super().__init__([w.data for w in self._parameters], criterion=criterion, features=features, **options)

    def step(self, step: int, gradients: Optional[Sequence[Any]] = None) -> None:
        """As prunekit.progressive.Pruner.step; gradient flow reads the weights' .grad by default."""
        if gradients is None and self._gradient_flow:
            missing = [n for n, w in zip(self.names, self._parameters) if w.grad is None]
            if missing:
                raise ValueError(f"criterion 'gradient_flow': {missing[0]}.weight has no .grad (call backward() "
                                 "before step, or pass gradients=)")
            gradients = [w.grad for w in self._parameters]
        super().step(step, gradients)


def parameter_count(model: nn.Module) -> int:
    """Parameters of the model (shared tensors once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@dataclass
class StructureReport:
    """What prune_channels / prune_heads removed: per block, structures kept of total."""
    unit: str                          # "channels", "heads" or "key/value groups"
    blocks: List[Tuple[str, int, int]]  # (block name, kept, total)
    parameters_before: int
    parameters_after: int
    seconds: float

    def table(self) -> str:
        width = max([5] + [len(n) for n, _, _ in self.blocks])
        lines = [f"{'block':{width}s}  {self.unit + ' kept':>22s}"]
        lines += [f"{n:{width}s}  {kept:>13d} of {total:<5d}" for n, kept, total in self.blocks]
        lines.append(f"parameters {self.parameters_before:,} -> {self.parameters_after:,} "
                     f"({100 * (1 - self.parameters_after / self.parameters_before):.1f}% fewer) in {self.seconds:.2f} s")
        return "\n".join(lines)

    __str__ = table

    def to_dict(self) -> dict:
        return dict(unit=self.unit, blocks=[dict(block=n, kept=k, total=t) for n, k, t in self.blocks],
                    parameters_before=self.parameters_before, parameters_after=self.parameters_after, seconds=self.seconds)

    def to_json(self, **kwargs) -> str:
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), **kwargs)


def _module_names(model: nn.Module) -> Dict[int, str]:
    return {id(m): n for n, m in model.named_modules()}


def _spec(layout: _Layout, unit: str):
    """[(module, parameter name, axis, span, scored)] of one block's group, the module whose
    input scores the rows members, and the cols module."""
    if unit == "channels":
        rows = layout.ffn_rows
        cols, span_rows, span_cols = layout.ffn_cols, 1, 1
        row_modules = rows
    else:
        span_rows = layout.groups * layout.head_dim   # one key/value group: its query heads
        row_modules = [layout.q, layout.k, layout.v]
        cols, span_cols = layout.o, layout.groups * layout.head_dim
    spec = []
    for m in row_modules:
        span = span_rows if (unit == "channels" or m is layout.q) else layout.head_dim
        spec.append((m, "weight", "rows", span, True))
        if m.bias is not None:
            spec.append((m, "bias", "rows", span, False))
    spec.append((cols, "weight", "cols", span_cols, True))
    return spec, row_modules[0], cols


def _set_param(module: nn.Module, name: str, tensor: torch.Tensor) -> None:
    old = getattr(module, name)
    setattr(module, name, nn.Parameter(tensor.to(device=old.device), requires_grad=old.requires_grad))
    if isinstance(module, nn.Linear):
        module.out_features, module.in_features = int(module.weight.shape[0]), int(module.weight.shape[1])


def _set_block_attributes(layout: _Layout) -> None:
    heads, kv = layout.heads, layout.kv_heads
    a = layout.attention
    for attr, value in (("num_attention_heads", heads), ("num_heads", heads), ("num_key_value_heads", kv),
                        ("all_head_size", heads * layout.head_dim)):
        if isinstance(getattr(a, attr, None), int):
            setattr(a, attr, value)
    if layout.ffn_owner is not None and isinstance(getattr(layout.ffn_owner, "intermediate_size", None), int):
        layout.ffn_owner.intermediate_size = layout.intermediate


def _update_config(model: nn.Module, layouts: List[Tuple[str, _Layout]]) -> None:
    """config.prunekit_structure records every block's widths (from_pretrained rebuilds them);
    the standard fields follow when every block has the same width and the family can say it."""
    config = getattr(model, "config", None)
    if config is None:
        return
    every = _layouts(model, None, None)
    per_layer = [dict(intermediate_size=lay.intermediate, num_attention_heads=lay.heads,
                      num_key_value_heads=lay.kv_heads) for _, lay in every]
    config.prunekit_structure = dict(family=every[0][1].family, layers=per_layer)
    family = every[0][1].family
    sizes = {p["intermediate_size"] for p in per_layer}
    if len(sizes) == 1 and hasattr(config, "intermediate_size"):
        config.intermediate_size = sizes.pop()
    heads = {(p["num_attention_heads"], p["num_key_value_heads"]) for p in per_layer}
    if family == "llama" and len(heads) == 1:
        h, kv = heads.pop()
        config.head_dim = every[0][1].head_dim     # explicit: no longer hidden_size // heads
        config.num_attention_heads = h
        if hasattr(config, "num_key_value_heads"):
            config.num_key_value_heads = kv
    # BERT derives the head size from hidden_size / num_attention_heads, so its head count stays;
    # the per-layer record above has the pruned widths.


def _prune_structures(model, unit, ratio, batches, mode, multiple, min_keep, criterion, norm, reduction, normalize,
                      compensate, compact, blocks, ignore, mask_key, forward) -> StructureReport:
    start = time.perf_counter()
    layouts = _layouts(model, blocks, ignore)
    before = parameter_count(model)
    names = _module_names(model)
    if criterion is None:
        criterion = "wanda" if batches is not None else "magnitude"
    needs_stats = criterion in ("wanda", "stade") or compensate
    if needs_stats and batches is None:
        raise ValueError(f"criterion {criterion!r}" + (" and compensation" if compensate else "") + " need batches=")
    specs = [(name, layout, *_spec(layout, unit)) for name, layout in layouts]
    stats: Dict[str, Any] = {}
    if needs_stats:
        wanted, grams = {}, set()
        for _, _, _, row_input, cols in specs:
            for m in (row_input, cols):
                wanted[names[id(m)]] = _Target(names[id(m)], m)
            if compensate:
                grams.add(names[id(cols)])
        stats = _calibrate_targets(model, wanted, grams, list(batches), mask_key, forward)
    groups = []
    for name, layout, spec, row_input, cols in specs:
        members = []
        for m, pname, axis, span, scored in spec:
            t = getattr(m, pname).detach()
            feats = None
            if scored and criterion in ("wanda", "stade"):
                feats = stats[names[id(row_input if axis == "rows" else cols)]]
            members.append(_pk.Member(t, axis, span, scored=scored, criterion=criterion if scored else "magnitude",
                                      features=feats))
        groups.append(_pk.Group(members, min_keep=min_keep))
    keeps = _pk.select(groups, ratio, mode=mode, criterion=norm, reduction=reduction, normalize=normalize,
                       multiple=multiple)
    rows = []
    with torch.no_grad():
        for (name, layout, spec, row_input, cols), group, keep in zip(specs, groups, keeps):
            total = group.structures()
            kept = int(keep.sum())
            rows.append((name, kept, total))
            if kept == total:
                continue
            hessian = stats.get(names[id(cols)]) if compensate else None
            if compact:
                comp = None if hessian is None else {"member": len(spec) - 1, "hessian": hessian}
                tensors, _ = _pk.compact(group, keep, compensate=comp)
                for (m, pname, *_), tensor in zip(spec, tensors):
                    _set_param(m, pname, tensor)
                _set_block_attributes(layout)
            else:
                if hessian is not None:
                    w = cols.weight.detach()
                    _pk.prune_columns(w, hessian, np.repeat(keep, spec[-1][3]), out=w)
                _pk.apply_structures(group, keep)
    if compact:
        _update_config(model, layouts)
    unit_name = unit if unit == "channels" or all(lay.groups == 1 for _, lay in layouts) else "key/value groups"
    return StructureReport(unit_name, rows, before, parameter_count(model), time.perf_counter() - start)


def prune_channels(model: nn.Module, ratio: float = 0.5, *, batches: Optional[Iterable[Any]] = None,
                   mode: str = "per_group", multiple: int = 1, min_keep: int = 1, criterion: Optional[str] = None,
                   norm: str = "l2", reduction: str = "sum", normalize: Optional[str] = None, compensate: bool = False,
                   compact: bool = True, blocks: Any = None, ignore: Patterns = None,
                   mask_key: Optional[str] = "attention_mask", forward: Optional[Callable] = None) -> StructureReport:
    """Removes the ratio of FFN hidden channels of every BERT-like (intermediate.dense rows +
    bias, output.dense columns) or LLaMA-like (gate/up rows, down columns) block, physically.

    Selection is prunekit.select: mode "per_group" (each block), "global" (one ranking, min_keep
    per block), "uniform" (one width); multiple rounds kept counts up (8, 64, ...). Channels are
    scored by the norm of their entry scores, criterion "wanda" with batches (calibrated on
    the dense model), else "magnitude". compensate=True updates the down projection for the
    removed inputs (least squares on its inputs' X^T X, as prunekit.prune_columns).
    compact=False zeroes the channels in place instead (the masked model). The config records
    the widths (config.intermediate_size when every block has the same)."""
    return _prune_structures(model, "channels", ratio, batches, mode, multiple, min_keep, criterion, norm, reduction,
                             normalize, compensate, compact, blocks, ignore, mask_key, forward)


def prune_heads(model: nn.Module, ratio: float = 0.5, *, batches: Optional[Iterable[Any]] = None,
                mode: str = "per_group", multiple: int = 1, min_keep: int = 1, criterion: Optional[str] = None,
                norm: str = "l2", reduction: str = "sum", normalize: Optional[str] = None, compensate: bool = False,
                compact: bool = True, blocks: Any = None, ignore: Patterns = None,
                mask_key: Optional[str] = "attention_mask", forward: Optional[Callable] = None) -> StructureReport:
    """Removes the ratio of attention heads of every block: q/k/v rows (+ biases) and output
    projection columns per head. With grouped-query attention the unit is a key/value group
    (one k/v head and its query heads), so every kept query head keeps its key and value.
    Options as prune_channels (compensate updates the output projection)."""
    return _prune_structures(model, "heads", ratio, batches, mode, multiple, min_keep, criterion, norm, reduction,
                             normalize, compensate, compact, blocks, ignore, mask_key, forward)


def _reshape_to_record(model: nn.Module, record: Mapping) -> None:
    """Shrinks the blocks of a freshly built model to the widths in config.prunekit_structure."""
    layers = list(record.get("layers", []))
    layouts = _layouts(model, None, None, cpu=False)   # built on the meta device by from_pretrained
    if len(layouts) != len(layers):
        raise ValueError(f"config.prunekit_structure has {len(layers)} layers, the model {len(layouts)} blocks")
    for (name, lay), want in zip(layouts, layers):
        d, inter = lay.head_dim, int(want["intermediate_size"])
        heads, kv = int(want["num_attention_heads"]), int(want["num_key_value_heads"])
        shapes = [(m, "weight", (inter, m.in_features)) for m in lay.ffn_rows]
        shapes += [(m, "bias", (inter,)) for m in lay.ffn_rows if m.bias is not None]
        shapes.append((lay.ffn_cols, "weight", (lay.ffn_cols.out_features, inter)))
        for m, n in ((lay.q, heads), (lay.k, kv), (lay.v, kv)):
            shapes.append((m, "weight", (n * d, m.in_features)))
            if m.bias is not None:
                shapes.append((m, "bias", (n * d,)))
        shapes.append((lay.o, "weight", (lay.o.out_features, heads * d)))
        for m, pname, shape in shapes:
            old = getattr(m, pname)
            if tuple(old.shape) != shape:
                _set_param(m, pname, torch.empty(shape, dtype=old.dtype, device=old.device))
        _set_block_attributes(lay)


def from_pretrained(model_class: Any, path: str, **kwargs) -> nn.Module:
    """model_class.from_pretrained(path) for a model whose blocks prune_channels / prune_heads
    made narrower (config.prunekit_structure): the blocks are built at the recorded widths
    before the weights load. Other models load as usual. model_class: a transformers model
    class or Auto class."""
    from transformers import AutoConfig
    config = kwargs.pop("config", None) or AutoConfig.from_pretrained(path)
    record = getattr(config, "prunekit_structure", None)
    if not record:
        return model_class.from_pretrained(path, config=config, **kwargs)
    if hasattr(model_class, "_model_mapping"):
        model_class = model_class._model_mapping[type(config)]

    class Narrowed(model_class):
        def __init__(self, config, *args, **kw):
            super().__init__(config, *args, **kw)
            _reshape_to_record(self, config.prunekit_structure)

    Narrowed.__name__, Narrowed.__qualname__ = model_class.__name__, model_class.__qualname__
    Narrowed.__module__ = model_class.__module__
    model = Narrowed.from_pretrained(path, config=config, **kwargs)
    model.__class__ = model_class
    return model
