"""prunekit.ray: calibration and checkpoint pruning spread over Ray tasks (`pip install prunekit[ray]`).

PruneKit stays a library: Ray only places the calls and moves bytes. Two jobs:

    import ray, prunekit.ray
    ray.init()
    # Statistics over disjoint calibration batches, one task per chunk of batches:
    stats = prunekit.ray.calibrate(activations, batches, features={"layers.0.q": 4096, ...})
    prunekit.save_stats("calib.pkstats", stats)
    # Every tensor of a (sharded) checkpoint pruned by its own task; the same bytes as the CLI's:
    prunekit.ray.prune_checkpoint("llama-7b/", "llama-7b-2of4/", pattern="2:4", include=[r"layers\\."])

`calibrate` cuts `batches` into chunks of `batches_per_task` (the cut does not depend on the
number of workers), builds one `Stats` per input name in each chunk's task, ships it as
`Stats.to_bytes()`, and merges the chunks pairwise in a fixed binary tree (chunk 0 with 1, 2 with
3, ..., then the results in the same way), the merges being tasks too. So the merged bytes are
the same whatever the number of workers, and equal to `calibrate(..., local=True)`, which runs
the same chunks and tree in this process.

`prune_checkpoint` checks the checkpoint and every option in the driver first, as the CLI does
(`prunekit.cli`), builds the output next to its place with every untouched byte copied, then
runs one task per pruned tensor: the task reads its tensor from the shard file (the shards must
be on a file system every worker sees, as on one machine), prunes it with the CLI's code, and
writes it at its offset in the output shard. A task whose worker dies is retried (`max_retries`);
writing the same bytes at the same offset again is harmless. The output is renamed into place
only when every task succeeded; on any failure the tasks still queued are cancelled and no
output is left.
"""
from __future__ import annotations

import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

try:
    import ray
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("prunekit.ray needs Ray: pip install 'prunekit[ray]' (or pip install ray)") from e

import prunekit
from . import cli
from .checkpoint import Output, open_checkpoint, read_tensor, write_tensor

__all__ = ["calibrate", "merge_tree", "prune_checkpoint"]


# ---------------------------------------------------------------------------------------------
# Calibration

def _merge_pair(left: Dict[str, bytes], right: Dict[str, bytes]) -> Dict[str, bytes]:
    """right merged into left, name by name (a name only one side saw is kept as it is)."""
    merged = dict(left)
    for name, blob in right.items():
        if name in merged:
            s = prunekit.Stats.from_bytes(merged[name])
            s.merge(prunekit.Stats.from_bytes(blob))
            merged[name] = s.to_bytes()
        else:
            merged[name] = blob
    return merged


def merge_tree(parts: Sequence[Any], merge: Callable[[Any, Any], Any] = _merge_pair) -> Any:
    """Merges parts pairwise in a fixed binary tree: (0, 1), (2, 3), ... then the results the
    same way; an odd last part moves up a level unchanged. The order never depends on timing."""
    level = list(parts)
    if not level:
        raise ValueError("nothing to merge")
    while len(level) > 1:
        level = [merge(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    return level[0]


def _calibrate_chunk(activations: Callable[[Any], Mapping[str, Any]], chunk: Sequence[Any],
                     features: Mapping[str, int], gram: bool) -> Dict[str, bytes]:
    stats: Dict[str, prunekit.Stats] = {}
    for batch in chunk:
        for name, values in activations(batch).items():
            if name not in features:
                raise ValueError(f"activations gave {name!r}, which features= does not list")
            if name not in stats:
                stats[name] = prunekit.Stats(int(features[name]), gram=gram)
            stats[name].update(values)
    return {name: s.to_bytes() for name, s in stats.items()}


_calibrate_task = ray.remote(_calibrate_chunk)
_merge_task = ray.remote(_merge_pair)


def calibrate(activations: Callable[[Any], Mapping[str, Any]], batches: Sequence[Any], *,
              features: Mapping[str, int], gram: bool = False, batches_per_task: int = 1,
              workers: Optional[int] = None, max_retries: int = 3, local: bool = False) -> Dict[str, prunekit.Stats]:
    """Per-input statistics over `batches`, computed by Ray tasks.

    activations(batch) returns {input name: activations [tokens, features]} for one batch (it
    runs inside the tasks: a model forward pass with hooks, or a read of saved activations);
    features gives each input's width. Returns {input name: Stats}; give layers that read one
    input the same Stats object when saving (prunekit.save_stats stores it once). workers
    bounds the chunk tasks in flight (default: Ray's scheduling alone); it changes nothing in
    the result."""
    if batches_per_task < 1:
        raise ValueError(f"batches_per_task must be at least 1, got {batches_per_task}")
    batches = list(batches)
    if not batches:
        raise ValueError("no calibration batches")
    chunks = [batches[i:i + batches_per_task] for i in range(0, len(batches), batches_per_task)]
    features = dict(features)
    if local:
        merged = merge_tree([_calibrate_chunk(activations, c, features, gram) for c in chunks])
    else:
        leaf = _calibrate_task.options(max_retries=max_retries)
        merge = _merge_task.options(max_retries=max_retries)
        fn = ray.put(activations)
        refs: List[Any] = []
        in_flight: List[Any] = []
        for chunk in chunks:
            if workers is not None and len(in_flight) >= workers:
                _, in_flight = ray.wait(in_flight, num_returns=1)
            refs.append(leaf.remote(fn, chunk, features, gram))
            in_flight.append(refs[-1])
        merged = ray.get(merge_tree(refs, lambda a, b: merge.remote(a, b)))
    return {name: prunekit.Stats.from_bytes(blob) for name, blob in merged.items()}


# ---------------------------------------------------------------------------------------------
# Pruning a checkpoint

def _prune_one(shard: types.SimpleNamespace, t, plan, stats_blob: Optional[bytes], seed: int, threads: int,
               out_path: str, after_write: Optional[Callable[[str], None]]):
    start = time.perf_counter()
    values = read_tensor(shard, t)
    stats = None if stats_blob is None else {t.name: prunekit.Stats.from_bytes(stats_blob)}
    args = types.SimpleNamespace(seed=seed, threads=threads)
    achieved = cli.prune_tensor(t, values, values, plan, stats, args)
    write_tensor(out_path, shard, t, values)
    if after_write is not None:
        after_write(t.name)
    return t.name, achieved, time.perf_counter() - start


_prune_task = ray.remote(_prune_one)


def _cli_args(input: str, output: str, options: Dict[str, Any]):
    argv = ["prune", input, "-o", output]
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    return cli.parser().parse_args(argv)


def prune_checkpoint(input: str, output: str, *, method: str = "magnitude", sparsity: float = 0.5,
                     pattern: Optional[str] = None, scope: str = "row", stats: Optional[str] = None,
                     include: Sequence[str] = (), exclude: Sequence[str] = (), override: Sequence[str] = (),
                     seed: int = 0, threads: int = 1, workers: Optional[int] = None, max_retries: int = 3,
                     quiet: bool = False, _after_write: Optional[Callable[[str], None]] = None) -> Dict[str, float]:
    """`prunekit prune INPUT -o OUTPUT ...` with one Ray task per pruned tensor.

    The options are the CLI's (stats: a bundle path); the output is the same bytes. workers
    bounds the tasks in flight (default: as many as the cluster has CPUs); threads is each
    task's thread count (results do not depend on it). Returns {tensor: sparsity reached}.
    Raises what the CLI reports as errors (ValueError, SafeTensorsError, OSError, ...) and
    leaves no output on any failure. (_after_write(name) runs in the task after a tensor is
    written: for tests that kill a task.)"""
    args = _cli_args(input, output, dict(method=method, sparsity=sparsity, pattern=pattern, scope=scope,
                                         stats=stats, include=list(include), exclude=list(exclude),
                                         override=list(override), seed=seed, threads=threads))
    source = open_checkpoint(args.input)
    bundle = cli.load_stats(args.stats) if args.stats else None   # indexed, loaded per accumulator
    plans = cli.plans_for(source, args)
    cli.check_plans(source, plans, bundle)
    if not plans:
        raise ValueError("no tensor matches: nothing to prune (check --include/--exclude)")
    order = cli.pruning_order(source, plans, bundle)
    users: Dict[Any, int] = {}
    for name in order:
        if plans[name].method in cli.STATS_METHODS:
            users[bundle[name].key] = users.get(bundle[name].key, 0) + 1
    if not ray.is_initialized():
        ray.init()  # as a first .remote() call would: a local cluster
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    task = _prune_task.options(max_retries=max_retries, retry_exceptions=False)
    blobs: Dict[Any, Any] = {}  # one object per distinct accumulator, shared by the tasks that read it
    reached: Dict[str, float] = {}
    start = time.perf_counter()
    with Output(source, args.output, order) as out:
        pending: List[Any] = []
        copying = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prunekit-copy")
        copied = copying.submit(out.copy_untouched)  # alongside the tasks
        try:
            queue = list(order)
            while queue or pending:
                while queue and len(pending) < workers:
                    name = queue.pop(0)
                    t, shard = source.tensors[name], source.shard_of[name]
                    blob = None
                    if plans[name].method in cli.STATS_METHODS:
                        key = bundle[name].key
                        if key not in blobs:
                            blobs[key] = ray.put(bundle.read(name))
                        blob = blobs[key]
                        users[key] -= 1
                        if users[key] == 0:   # the queued tasks hold the object; the driver lets it go
                            del blobs[key]
                    where = types.SimpleNamespace(path=shard.path, data_start=shard.data_start)
                    pending.append(task.remote(where, t, plans[name], blob, args.seed, args.threads,
                                               out.path_of(name), _after_write))
                ready, pending = ray.wait(pending, num_returns=1)
                name, achieved, seconds = ray.get(ready[0])
                reached[name] = achieved
                if not quiet:
                    t = source.tensors[name]
                    print(f"[{len(reached)}/{len(order)}] {name} {list(t.shape)} {t.dtype}: {plans[name].describe()} -> "
                          f"sparsity {achieved:.3f} ({1e3 * seconds:.0f} ms, Ray task)", file=sys.stderr, flush=True)
            copied.result()
        except BaseException as e:
            for ref in pending:
                ray.cancel(ref, force=True)
            if pending:
                ray.wait(pending, num_returns=len(pending), timeout=10)
            if isinstance(e, ray.exceptions.RayTaskError) and isinstance(e.cause, Exception):
                raise e.cause from None
            raise
        finally:
            copying.shutdown(wait=True)
        out.commit()
    if not quiet:
        print(f"wrote {args.output}: {len(order)} of {len(source.tensors)} tensors pruned by Ray tasks in "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    return reached
