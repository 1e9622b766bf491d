"""prunekit: prune safetensors checkpoints from the command line.

    prunekit prune model.safetensors -o pruned.safetensors --method wanda --sparsity 0.5 --stats calib.pkstats
    prunekit prune model.safetensors -o pruned.safetensors --method magnitude --pattern 2:4 --exclude embed
    prunekit inspect pruned.safetensors --pattern 2:4
    prunekit prune llama-7b/ -o llama-7b-2of4/ --pattern 2:4 --include 'layers\\.'   (a sharded checkpoint)
    prunekit prune llama-7b/ -o llama-7b-sgpt/ --method sparsegpt --stats calib/ --include 'layers\\.'
        (calib/: one statistics bundle per block, model.layers.0.pkstats, ...; see --stats)
    prunekit export pruned.safetensors layer.weight --format 2:4 -o layer.npz

Tensors are processed one at a time and keep their dtype (float32, float16, bfloat16,
float64); tensors not pruned are copied byte for byte. A Hugging Face sharded checkpoint (a
folder, or its model.safetensors.index.json) is written as the same shards plus index
(prunekit.checkpoint). Every tensor and option is
checked before anything is written, and the output appears only when the whole run succeeded.
SIGTERM, SIGINT or SIGHUP stop a run with nothing left behind (exit by that signal). A run
killed outright (SIGKILL, power loss) leaves nothing where the file system has unnamed files
(O_TMPFILE: ext4, xfs, btrfs, tmpfs); elsewhere, and for a folder output, it leaves a
`.prunekit-PID-*.HOST.tmp` that the next run in that folder removes. Outputs get the mode the
umask gives a new file; an output that replaces a file (an in-place run) keeps that file's mode.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import signal
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

import prunekit
from prunekit.bundles import Accumulators, BundleIndex
from prunekit.checkpoint import open_checkpoint, write_pruned
from prunekit.safetensors import SafeTensorsError, SafeTensorsFile, atomic_output, quote, remove_stale_temporaries

METHODS = ("magnitude", "random", "wanda", "stade", "sparsegpt", "admm")
STATS_METHODS = ("wanda", "stade", "sparsegpt", "admm")   # need --stats
GRAM_METHODS = ("sparsegpt", "admm")                       # need accumulators made with gram=True
SCOPES = ("row", "layer")


def shown(name: str) -> str:
    """A tensor name as printed: as it is when printable, else quoted with escapes (a header
    may hold terminal control sequences or unpaired surrogates)."""
    return name if name.isprintable() else quote(name)


def parse_pattern(text: str, where: str = "--pattern") -> Tuple[int, int]:
    """'N:M' with 0 < N < M."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.isdecimal() for p in parts) or not 0 < int(parts[0]) < int(parts[1]):
        raise ValueError(f"{where}: expected N:M with 0 < N < M (such as 2:4), got {text!r}")
    return int(parts[0]), int(parts[1])


def parse_regex(text: str, where: str) -> "re.Pattern[str]":
    try:
        return re.compile(text)
    except re.error as e:
        raise ValueError(f"{where} {text!r} is not a regular expression ({e})") from None


class Plan:
    """What happens to one tensor."""

    def __init__(self, method: str, sparsity: Optional[float], pattern: Optional[str], scope: str):
        self.method, self.sparsity, self.pattern, self.scope = method, sparsity, pattern, scope

    def describe(self) -> str:
        return f"{self.method} {self.pattern or f'{self.scope} {self.sparsity:g}'}"


def parse_override(text: str):
    """'REGEX=skip' or 'REGEX=key:value,key:value' (keys: method, sparsity, pattern, scope)."""
    if "=" not in text:
        raise ValueError(f"--override {text!r}: expected REGEX=skip or REGEX=key:value,...")
    regex, spec = text.rsplit("=", 1)
    if spec == "skip":
        return parse_regex(regex, "--override"), None
    fields = {}
    for item in spec.split(","):
        key, _, value = item.partition(":")
        if key not in ("method", "sparsity", "pattern", "scope") or not value:
            raise ValueError(f"--override {text!r}: unknown setting {item!r}")
        where = f"--override {text!r}"
        if key == "method" and value not in METHODS:
            raise ValueError(f"{where}: unknown method {value!r}; one of {', '.join(METHODS)}")
        if key == "scope" and value not in SCOPES:
            raise ValueError(f"{where}: unknown scope {value!r}; one of {', '.join(SCOPES)}")
        if key == "pattern":
            parse_pattern(value, where)
        if key == "sparsity":
            try:
                float(value)
            except ValueError:
                raise ValueError(f"{where}: sparsity {value!r} is not a number") from None
        fields[key] = value
    return parse_regex(regex, "--override"), fields


def plans_for(source: SafeTensorsFile, args) -> Dict[str, Plan]:
    include = [parse_regex(r, "--include") for r in args.include]
    exclude = [parse_regex(r, "--exclude") for r in args.exclude]
    overrides = [parse_override(o) for o in args.override]
    if args.pattern:
        parse_pattern(args.pattern)
    plans = {}
    for t in source:
        if len(t.shape) < 2 or t.prunekit_dtype is None:
            continue
        if include and not any(r.search(t.name) for r in include):
            continue
        if any(r.search(t.name) for r in exclude):
            continue
        settings = dict(method=args.method, sparsity=args.sparsity, pattern=args.pattern, scope=args.scope)
        skip = False
        for regex, fields in overrides:
            if regex.search(t.name):
                if fields is None:
                    skip = True
                else:
                    settings.update(fields)
        if skip:
            continue
        if t.size == 0:  # nothing to choose from; copied as it is
            if not args.quiet:
                print(f"skipping {shown(t.name)} {list(t.shape)}: empty, nothing to prune", file=sys.stderr)
            continue
        if settings["method"] not in METHODS:
            raise ValueError(f"{shown(t.name)}: unknown method {settings['method']!r}")
        pattern = settings["pattern"]
        sparsity = None if pattern else float(settings["sparsity"])
        plans[t.name] = Plan(settings["method"], sparsity, pattern, settings["scope"])
    return plans


def check_plans(source: SafeTensorsFile, plans: Dict[str, Plan], stats) -> None:
    """Everything that can fail before a byte is written."""
    for name, plan in plans.items():
        t = source.tensors[name]
        cols = math.prod(t.shape[1:])
        if plan.pattern:
            n, m = parse_pattern(plan.pattern, shown(name))
            if cols % m:
                raise ValueError(f"{shown(name)}: pattern {plan.pattern} does not fit {cols} columns")
        elif not 0 <= plan.sparsity <= 1:
            raise ValueError(f"{shown(name)}: sparsity {plan.sparsity} is outside [0, 1]")
        if plan.method in STATS_METHODS:
            if stats is None:
                raise ValueError(f"{shown(name)}: method {plan.method} needs --stats")
            if name not in stats:
                raise ValueError(f"{shown(name)}: no statistics for this tensor in --stats {stats.path}")
            entry = stats[name]
            if entry.features != cols:
                raise ValueError(f"{shown(name)}: statistics have {entry.features} features, the tensor has {cols} columns"
                                 f" (in {entry.path})")
            if plan.method in GRAM_METHODS and not entry.gram:
                raise ValueError(f"{shown(name)}: method {plan.method} needs a Gram matrix, and its statistics in "
                                 f"{entry.path} have none (calibrate with Stats(features, gram=True))")


def as_input(array: np.ndarray, dtype: str):
    return prunekit.bfloat16(array) if dtype == "bfloat16" else array


def prune_tensor(t, original: np.ndarray, target: np.ndarray, plan: Plan, stats, args,
                 mask_buffer: Optional[np.ndarray] = None, count: bool = True) -> Optional[float]:
    """Prunes one tensor into `target` (which may be `original`); returns the sparsity reached
    (None when not `count`). mask_buffer: uint8 scratch of at least the tensor's size for the
    mask (reused across tensors)."""
    rows = t.shape[0]
    weight = as_input(original.reshape(rows, -1), t.prunekit_dtype)
    kwargs = dict(pattern=plan.pattern) if plan.pattern else dict(scope=plan.scope)
    out = as_input(target.reshape(rows, -1), t.prunekit_dtype)
    if plan.method in GRAM_METHODS:   # the Gram matrix alone when the statistics come from a bundle
        hessian = stats.hessian(t.name) if isinstance(stats, Accumulators) else stats[t.name]
    if plan.method == "sparsegpt":
        mask, _ = prunekit.sparsegpt(weight, hessian, plan.sparsity, pattern=plan.pattern, threads=args.threads,
                                     out=out)
    elif plan.method == "admm":
        mask, _ = prunekit.admm(weight, hessian, plan.sparsity, pattern=plan.pattern, scope=plan.scope,
                                threads=args.threads, out=out)
    else:
        features = None
        if plan.method in ("wanda", "stade"):
            features = stats[t.name]
        scratch = None if mask_buffer is None else mask_buffer[:original.size]
        mask = prunekit.mask(weight, plan.sparsity, criterion=plan.method, features=features, seed=args.seed,
                             threads=args.threads, out=scratch, **kwargs)
        if not np.shares_memory(target, original):
            target.reshape(rows, -1)[...] = original.reshape(rows, -1)
        prunekit.apply_mask(out, mask)
    if not count:
        return None
    return 1.0 - np.count_nonzero(mask) / mask.size  # mask.mean() costs a float64 pass (5 s of a 7B run)


def remove_stale(output: str, quiet: bool = False) -> None:
    """Temporary files of killed runs beside the output (where they cannot be unnamed) go first."""
    for path in remove_stale_temporaries(os.path.dirname(os.path.abspath(output))):
        if not quiet:
            print(f"removed {path}, left by a run that was killed", file=sys.stderr)


def load_stats(path: str) -> BundleIndex:
    """A bundle file or a folder of per-block bundles, indexed (names, sizes, feature counts);
    the accumulators are loaded one at a time while pruning (prunekit.bundles)."""
    return BundleIndex(path)


def pruning_order(source, plans: Dict[str, Plan], stats: Optional[BundleIndex]) -> List[str]:
    """The tensors in file order, except that the tensors whose statistics come from one bundle
    are pruned together (from where the bundle's first tensor is), so that a run holds the
    accumulators of one bundle (one block) at a time even when a block's tensors are not
    contiguous in the files."""
    position = {t.name: i for i, t in enumerate(source) if t.name in plans}
    first: Dict[str, int] = {}
    bundle = {}
    for name in sorted(position, key=position.get):
        b = stats.bundle_of(name) if stats is not None and plans[name].method in STATS_METHODS else None
        bundle[name] = b
        if b is not None:
            first.setdefault(b, position[name])
    return sorted(position, key=lambda n: (first.get(bundle[n], position[n]), position[n]))


def cmd_prune(args) -> int:
    source = open_checkpoint(args.input)
    index = load_stats(args.stats) if args.stats else None
    plans = plans_for(source, args)
    check_plans(source, plans, index)
    if not plans:
        raise ValueError("no tensor matches: nothing to prune (check --include/--exclude)")
    order = pruning_order(source, plans, index)
    users = [n for n in order if plans[n].method in STATS_METHODS]
    stats = Accumulators(index, users) if index is not None else None
    done = [0]
    mask_buffer: List[np.ndarray] = []   # one mask's scratch, reused by every tensor
    total_start = time.perf_counter()

    def replace(t, values):
        plan = plans[t.name]
        start = time.perf_counter()
        if not mask_buffer:
            mask_buffer.append(np.empty(max(source.tensors[n].size for n in order), dtype=np.uint8))
        # in place: values are our own copy; the sparsity reached is only counted to be printed
        achieved = prune_tensor(t, values, values, plan, stats, args, mask_buffer[0], count=not args.quiet)
        if plan.method in STATS_METHODS:
            stats.release(t.name)   # an accumulator goes after its last tensor
        done[0] += 1
        if not args.quiet:
            print(f"[{done[0]}/{len(plans)}] {shown(t.name)} {list(t.shape)} {t.dtype}: {plan.describe()} -> "
                  f"sparsity {achieved:.3f} ({1e3 * (time.perf_counter() - start):.0f} ms)", file=sys.stderr, flush=True)
        return values

    remove_stale(args.output, args.quiet)
    write_pruned(source, args.output, order, replace, ordered=True)
    if not args.quiet:
        print(f"wrote {args.output}: {len(plans)} of {len(source.tensors)} tensors pruned in "
              f"{time.perf_counter() - total_start:.1f} s", file=sys.stderr)
    return 0


def nm_ok(array2d: np.ndarray, n: int, m: int) -> bool:
    rows, cols = array2d.shape
    if cols % m:
        return False
    return bool(((array2d != 0).reshape(rows, cols // m, m).sum(-1) <= n).all())


def cmd_inspect(args) -> int:
    n, m = parse_pattern(args.pattern)
    source = open_checkpoint(args.file)
    print(f"{'tensor':50s} {'dtype':5s} {'shape':>16s} {'sparsity':>9s} {args.pattern:>5s}")
    for t in source:
        a = source.array(t.name)
        if t.dtype == "BF16":
            nonzero = (a & 0x7FFF) != 0
        else:
            nonzero = a != 0
        sparsity = 1.0 - float(nonzero.mean()) if a.size else 0.0
        pattern = "-"
        if len(t.shape) >= 2 and t.prunekit_dtype and a.size:
            pattern = "yes" if nm_ok(nonzero.reshape(t.shape[0], math.prod(t.shape[1:])), n, m) else "no"
        print(f"{shown(t.name):50s} {t.dtype:5s} {str(list(t.shape)):>16s} {sparsity:9.3f} {pattern:>5s}")
    return 0


def cmd_export(args) -> int:
    source = open_checkpoint(args.file)
    if args.tensor not in source.tensors:
        raise ValueError(f"{args.file}: no tensor {quote(args.tensor)}")
    t = source.tensors[args.tensor]
    if t.prunekit_dtype is None or len(t.shape) < 2:
        raise ValueError(f"{args.tensor}: only floating tensors of 2 or more dimensions can be exported")
    if t.size == 0:
        raise ValueError(f"{args.tensor}: shape {list(t.shape)} is empty; there is nothing to export")
    weight = as_input(source.array(t.name).reshape(t.shape[0], -1), t.prunekit_dtype)
    if args.format == "2:4":
        values, metadata = prunekit.to_24(weight)
        arrays = dict(values=values, metadata=metadata)
    elif args.format == "csr":
        offsets, columns, values = prunekit.to_csr(weight)
        arrays = dict(row_offsets=offsets, columns=columns, values=values)
    else:
        bits, values = prunekit.to_bitmask(weight)
        arrays = dict(bits=bits, values=values)
    output = args.output if args.output.endswith(".npz") else args.output + ".npz"  # as np.savez names it
    remove_stale(output)
    with atomic_output(output) as f:
        np.savez(f, shape=np.array(t.shape), dtype=np.array(t.dtype), **arrays)
    print(f"wrote {output}: {args.tensor} as {args.format}", file=sys.stderr)
    return 0


def integer(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside [{low}, {high}]")
        return value
    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prunekit", description="Prune safetensors checkpoints with PruneKit.")
    sub = p.add_subparsers(dest="command", required=True)
    prune = sub.add_parser("prune", help="prune a checkpoint into a new file")
    prune.add_argument("input", help="a .safetensors file, a sharded checkpoint's folder or its *.safetensors.index.json")
    prune.add_argument("-o", "--output", required=True, help="the output file (a folder for a sharded checkpoint)")
    prune.add_argument("--method", default="magnitude", choices=METHODS)
    prune.add_argument("--sparsity", type=float, default=0.5)
    prune.add_argument("--pattern", help="N:M, e.g. 2:4 (instead of --sparsity)")
    prune.add_argument("--scope", default="row", choices=SCOPES)
    prune.add_argument("--stats", metavar="BUNDLE_OR_FOLDER",
                       help="statistics for wanda, stade, sparsegpt and admm: a bundle (prunekit.save_stats, keyed "
                            "by tensor name), or a folder of *.pkstats bundles, one per block (e.g. "
                            "model.layers.0.pkstats), each name in one bundle; sparsegpt and admm need Gram "
                            "matrices (Stats(features, gram=True)). Accumulators are loaded when first needed and "
                            "dropped after their last tensor; a block's tensors are pruned together, so one "
                            "block's Hessians are held at a time")
    prune.add_argument("--include", action="append", default=[], metavar="REGEX", help="prune only matching tensors")
    prune.add_argument("--exclude", action="append", default=[], metavar="REGEX", help="never prune matching tensors")
    prune.add_argument("--override", action="append", default=[], metavar="REGEX=SPEC",
                       help="per-tensor settings: REGEX=skip or REGEX=sparsity:0.3,pattern:2:4,method:wanda")
    prune.add_argument("--seed", type=integer(0, 2 ** 64 - 1), default=0)
    prune.add_argument("--threads", type=integer(0, 1 << 16), default=0, help="0: one per CPU")
    prune.add_argument("--quiet", action="store_true")
    prune.set_defaults(run=cmd_prune)
    inspect = sub.add_parser("inspect", help="per-tensor sparsity and N:M compliance")
    inspect.add_argument("file")
    inspect.add_argument("--pattern", default="2:4")
    inspect.set_defaults(run=cmd_inspect)
    export = sub.add_parser("export", help="one tensor in a sparse format (.npz)")
    export.add_argument("file")
    export.add_argument("tensor")
    export.add_argument("--format", required=True, choices=("2:4", "csr", "bitmask"))
    export.add_argument("-o", "--output", required=True)
    export.set_defaults(run=cmd_export)
    return p


class Stopped(BaseException):
    """SIGTERM, SIGINT or SIGHUP arrived: unwinds like an error, so that no output is left."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop(signum, frame):
    for s in STOP_SIGNALS:  # one unwinding at a time: further signals wait for it
        signal.signal(s, signal.SIG_IGN)
    raise Stopped(signum)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def message(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    if isinstance(e, MemoryError):
        return f"out of memory{f' ({e})' if str(e) else ''}"
    return str(e)


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            if signal.getsignal(s) is not signal.SIG_IGN:   # ignored by our parent (nohup, &): stays so
                previous[s] = signal.signal(s, _stop)
    try:
        return args.run(args)
    except BrokenPipeError:     # `prunekit inspect ... | head`
        sys.stdout = open(os.devnull, "w")
        return 128 + signal.SIGPIPE
    except (SafeTensorsError, ValueError, TypeError, ArithmeticError, OSError, MemoryError) as e:
        print(f"prunekit: error: {message(e)}", file=sys.stderr)
        return 2
    except Stopped as e:
        # Outputs were discarded on the way here. Die of the same signal, so that the caller
        # (a shell, a job runner) sees what happened.
        print(f"prunekit: stopped by {signal.Signals(e.signum).name}; nothing partial was left", file=sys.stderr)
        sys.stderr.flush()
        signal.signal(e.signum, signal.SIG_DFL)
        os.kill(os.getpid(), e.signum)
        return 128 + e.signum
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
