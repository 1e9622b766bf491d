#!/usr/bin/env python3
"""SparseGPT speed: accumulating the Hessian against OpenBLAS dsyrk alone, and pruning with
reconstruction against the float64 numpy implementation of the same algorithm (the tests'
reference) and against OpenBLAS sgemm doing as many multiply-adds. One run, printed ratios.

    python3 benchmarks/bench_sparsegpt.py --c-bench build/bench_sparsegpt [--size 4096 --tokens 4096]
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "vectors"))
import sparsegpt_reference  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--c-bench", default=os.path.join(os.path.dirname(__file__), "..", "build", "bench_sparsegpt"))
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    out = subprocess.run([args.c_bench, str(args.repeats), str(args.size), str(args.tokens)], check=True,
                         capture_output=True, text=True).stdout
    c = {line.split()[0]: float(line.split()[1]) for line in out.splitlines()}

    rng = np.random.default_rng(0)
    n = args.size
    x = rng.standard_normal((args.tokens, n)).astype(np.float32)
    x[:, 1:] += 0.5 * x[:, :-1]
    w = rng.standard_normal((n, n)).astype(np.float32)
    h = x.astype(np.float64).T @ x.astype(np.float64)
    t0 = time.perf_counter()
    sparsegpt_reference.sparsegpt(w, h, sparsity=0.5, blocksize=128)
    numpy_time = time.perf_counter() - t0

    print(f"PruneKit SparseGPT benchmark: {n} x {n} layer, Hessian of {args.tokens} tokens, best of {args.repeats}")
    print(f"  Hessian: pk_stats_update (gram)   {c['pk_stats_update_gram'] * 1e3:9.1f} ms")
    print(f"           OpenBLAS dsyrk alone     {c['dsyrk_alone'] * 1e3:9.1f} ms   ratio {c['pk_stats_update_gram'] / c['dsyrk_alone']:.2f}x")
    print(f"  Prune:   pk_sparsegpt (float32)    {c['pk_sparsegpt_float32'] * 1e3:9.1f} ms")
    print(f"           numpy float64 reference  {numpy_time * 1e3:9.1f} ms   PruneKit {numpy_time / c['pk_sparsegpt_float32']:.1f}x faster")
    print(f"           sgemm, same {c['equivalent_gmacs']:.1f} G multiply-adds {c['sgemm_equivalent'] * 1e3:7.1f} ms"
          f"   PruneKit / sgemm {c['pk_sparsegpt_float32'] / c['sgemm_equivalent']:.2f}x")
    print("  targets: >= 10x faster than numpy, within 2x of the sgemm time")


if __name__ == "__main__":
    main()
