#!/usr/bin/env python3
"""Mask speed on a 4096 x 11008 float32 matrix, all figures from one run.

Times per-row 50% Wanda masks and 2:4 masks through the C API (the bench_masks program) and from
Python (prunekit), against numpy doing the same selection with a stable argsort and with
argpartition, and against one plain pass of memory over the matrix (a vectorized read in C, and
numpy's sum). Prints the times and the ratios; exits 0 whatever they are (a benchmark, not a test).

    python3 benchmarks/bench_masks.py --c-bench build/bench_masks [--repeats 3]
"""
import argparse
import os
import subprocess
import time

import numpy as np

import prunekit

ROWS, COLS = 4096, 11008


def best_of(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def numpy_row_mask_argsort(scores, k):
    mask = np.ones(scores.shape, dtype=bool)
    idx = np.argsort(scores, axis=1, kind="stable")[:, :k]
    np.put_along_axis(mask, idx, False, axis=1)
    return mask


def numpy_row_mask_argpartition(scores, k):
    mask = np.ones(scores.shape, dtype=bool)
    idx = np.argpartition(scores, k - 1, axis=1)[:, :k]
    np.put_along_axis(mask, idx, False, axis=1)
    return mask


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--c-bench", default=os.path.join(os.path.dirname(__file__), "..", "build", "bench_masks"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    c = {}
    out = subprocess.run([args.c_bench, str(max(args.repeats, 3)), str(args.threads)], check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        name, seconds = line.split()
        c[name] = float(seconds)

    rng = np.random.default_rng(0)
    w = (rng.random((ROWS, COLS), dtype=np.float32) * 2 - 1)
    norms = (0.1 + 10 * rng.random(COLS)).astype(np.float32)
    k = COLS // 2

    py_row = best_of(lambda: prunekit.mask(w, 0.5, criterion="wanda", features=norms, threads=args.threads), args.repeats)
    py_nm = best_of(lambda: prunekit.mask(w, pattern="2:4", criterion="wanda", features=norms, threads=args.threads), args.repeats)

    # numpy references: the same scores, the same selection.
    scores = lambda: np.abs(w) * norms  # noqa: E731
    np_sort_row = best_of(lambda: numpy_row_mask_argsort(scores(), k), 1)
    np_part_row = best_of(lambda: numpy_row_mask_argpartition(scores(), k), args.repeats)
    group = lambda: scores().reshape(-1, 4)  # noqa: E731
    np_sort_nm = best_of(lambda: numpy_row_mask_argsort(group(), 2), 1)
    np_part_nm = best_of(lambda: numpy_row_mask_argpartition(group(), 2), args.repeats)
    np_pass = best_of(lambda: w.sum(), args.repeats)

    # The masks agree with numpy's stable argsort (the contract), so the comparison is fair.
    got = prunekit.mask(w, 0.5, criterion="wanda", features=norms)
    assert np.array_equal(got, numpy_row_mask_argsort(scores(), k)), "per-row mask differs from numpy"
    got = prunekit.mask(w, pattern="2:4", criterion="wanda", features=norms)
    assert np.array_equal(got.reshape(-1, 4), numpy_row_mask_argsort(group(), 2)), "2:4 mask differs from numpy"

    mem = c["memory_pass"]
    print(f"PruneKit mask benchmark: {ROWS} x {COLS} float32, threads={args.threads or os.cpu_count()}, best of {args.repeats}")
    print(f"  one memory pass (C, vectorized read)     {mem * 1e3:9.1f} ms")
    print(f"  one memory pass (numpy sum)              {np_pass * 1e3:9.1f} ms")
    print()
    print(f"  {'selection':28s} {'C API':>9s} {'Python':>9s} {'np argsort':>11s} {'np argpart':>11s}"
          f" {'argsort/C':>10s} {'argpart/C':>10s} {'C/mem':>7s}")
    for name, c_t, py_t, sort_t, part_t in (("per-row 50% Wanda", c["c_wanda_row50"], py_row, np_sort_row, np_part_row),
                                           ("2:4 Wanda", c["c_wanda_2of4"], py_nm, np_sort_nm, np_part_nm)):
        print(f"  {name:28s} {c_t * 1e3:7.1f}ms {py_t * 1e3:7.1f}ms {sort_t * 1e3:9.1f}ms {part_t * 1e3:9.1f}ms"
              f" {sort_t / c_t:9.1f}x {part_t / c_t:9.1f}x {c_t / mem:6.1f}x")
    print()
    print("  targets: >= 30x faster than the stable argsort, >= 5x faster than argpartition, within 8x of one memory pass")


if __name__ == "__main__":
    main()
