#!/usr/bin/env python3
"""Structured pruning of an 8-layer stack of MLP pairs (up [5632, 2048] rows + down [2048, 5632]
columns share the hidden channels; float32): L2 scores summed over both members, one global
ranking across the 8 layers at 50% (at least 64 kept per layer, kept counts rounded up to a
multiple of 64), compaction of both members. PruneKit through the C API (bench_structures.c) and
from Python, against numpy doing the same steps, and one plain pass of memory over the weights.

    python3 benchmarks/bench_structures.py --c-bench build/bench_structures
"""
import argparse
import os
import subprocess
import time

import numpy as np

import prunekit

LAYERS, D, HIDDEN = 8, 2048, 5632


def numpy_prune(ups, downs, ratio=0.5, min_keep=64, multiple=64):
    """The same steps in numpy: scores, a global (score, layer, index) ranking with the minimum,
    counts rounded to the multiple, then W1[keep] and W2[:, keep]."""
    scores = [np.sqrt((u.astype(np.float64) ** 2).sum(1)) + np.sqrt((w.astype(np.float64) ** 2).sum(0))
              for u, w in zip(ups, downs)]
    flat = np.concatenate(scores)
    layer = np.repeat(np.arange(LAYERS), HIDDEN)
    order = np.lexsort((np.tile(np.arange(HIDDEN), LAYERS), layer, flat))
    target = int(LAYERS * HIDDEN * ratio)
    pruned = np.zeros(LAYERS, dtype=np.int64)
    done = 0
    for i in order:                       # the minimum makes this a walk, as in the library
        if done == target:
            break
        l = layer[i]
        if pruned[l] < HIDDEN - min_keep:
            pruned[l] += 1
            done += 1
    out = []
    for l, (s, u, w) in enumerate(zip(scores, ups, downs)):
        keep_count = min(HIDDEN, -(-(HIDDEN - int(pruned[l])) // multiple) * multiple)
        keep = np.zeros(HIDDEN, dtype=bool)
        keep[np.lexsort((np.arange(HIDDEN), s))[HIDDEN - keep_count:]] = True
        out.append((keep, u[keep], w[:, keep]))
    return out


def best(fn, repeats):
    times = []
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--c-bench", default=os.path.join(os.path.dirname(__file__), "..", "build", "bench_structures"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    c = {}
    out = subprocess.run([args.c_bench, str(args.repeats), str(args.threads)], check=True, capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        name, value = line.split()
        c[name] = float(value)

    rng = np.random.default_rng(0)
    ups = [(rng.random((HIDDEN, D), dtype=np.float32) * 2 - 1) for _ in range(LAYERS)]
    downs = [(rng.random((D, HIDDEN), dtype=np.float32) * 2 - 1) * np.float32(1 + 0.1 * l) for l in range(LAYERS)]

    def with_prunekit():
        groups = [prunekit.Group([prunekit.Member(u, "rows"), prunekit.Member(w, "cols")], min_keep=64)
                  for u, w in zip(ups, downs)]
        keeps = prunekit.select(groups, 0.5, mode="global", multiple=64, threads=args.threads)
        return [(k,) + tuple(prunekit.compact(g, k)[0]) for g, k in zip(groups, keeps)]

    t_py, ours = best(with_prunekit, args.repeats)
    t_np, ref = best(lambda: numpy_prune(ups, downs), args.repeats)
    for (k1, a1, b1), (k2, a2, b2) in zip(ours, ref):
        assert np.array_equal(k1, k2) and np.array_equal(a1, a2) and np.array_equal(b1, b2), "numpy and PruneKit disagree"
    t_pass, _ = best(lambda: [np.bitwise_xor.reduce(x.view(np.uint32), axis=None) for x in ups + downs], args.repeats)

    total_c = c["select"] + c["compact"]
    gb = LAYERS * 2 * D * HIDDEN * 4 / 1e9
    print(f"structured pruning, {LAYERS} MLP pairs of {HIDDEN}x{D} + {D}x{HIDDEN} float32 ({gb:.2f} GB), "
          f"global 50% (min 64, multiple 64), best of {args.repeats}")
    print(f"  C API    score+select {c['select'] * 1e3:8.1f} ms   compact {c['compact'] * 1e3:8.1f} ms   "
          f"total {total_c * 1e3:8.1f} ms   (kept {int(c['kept'])} of {LAYERS * HIDDEN})")
    print(f"  Python   total (select + compact into new arrays) {t_py * 1e3:8.1f} ms")
    print(f"  numpy    total (same steps)                       {t_np * 1e3:8.1f} ms   (identical results: checked)")
    print(f"  memory pass: C {c['pass'] * 1e3:.1f} ms, numpy {t_pass * 1e3:.1f} ms")
    print(f"  speed-up vs numpy: C API {t_np / total_c:.1f}x (target 10x), Python {t_np / t_py:.1f}x")
    print(f"  compaction / one memory pass (C): {c['compact'] / c['pass']:.2f}x (target <= 3x); "
          f"score+select / pass: {c['select'] / c['pass']:.2f}x")
    floor = c["floor_read"] + c["floor_compact"]
    print(f"  memory floor, 2 threads: scoring reads every weight {c['floor_read'] * 1e3:.1f} ms + compaction "
          f"copies half, reads a quarter more {c['floor_compact'] * 1e3:.1f} ms = {floor * 1e3:.1f} ms "
          f"(numpy / floor {t_np / floor:.1f}x; C API / floor: score+select {c['select'] / c['floor_read']:.2f}x, "
          f"compact {c['compact'] / c['floor_compact']:.2f}x)")


if __name__ == "__main__":
    main()
