#!/usr/bin/env python3
"""N:M channel-permutation search speed, one run, printed per layer against SparseGPT 2:4 on the
same layer (the method it precedes), with what it buys: the importance the 2:4 mask keeps without
and with the permutation, and the layer error ||(W - W') X||^2 / ||W X||^2 of Wanda 2:4 and
SparseGPT 2:4 with and without it.

Layers: all-MiniLM-L6-v2's shapes (the FFN output projection 384 x 1536, whose 1536 intermediate
channels may move anywhere; the attention output 384 x 384, channels moving within each head of
32) and a larger 512 x 2048 one, with correlated, unevenly scaled inputs.

    python3 benchmarks/bench_permutation.py [--threads 0]
"""
import argparse
import time

import numpy as np

import prunekit


def relative_error(w, pruned, h):
    d = (w - pruned).astype(np.float64)
    return float(np.einsum("ij,jk,ik->", d, h, d) / np.einsum("ij,jk,ik->", w.astype(np.float64), h, w.astype(np.float64)))


def layer(rng, rows, cols, tokens):
    x = rng.standard_normal((tokens, cols)).astype(np.float32)
    x[:, 1:] += 0.5 * x[:, :-1]
    x *= rng.lognormal(0, 0.7, cols).astype(np.float32)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    return w, x.astype(np.float64).T @ x.astype(np.float64)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("PruneKit N:M channel-permutation search (2:4, Wanda scores, to convergence), one run")
    print(f"{'layer':28s} {'search s':>9s} {'sparsegpt s':>12s} {'ratio':>7s} {'kept gain':>10s} "
          f"{'wanda err':>17s} {'sparsegpt err':>17s}")
    for label, rows, cols, segment, tokens in (("ffn out 384x1536", 384, 1536, 0, 4096),
                                               ("attn out 384x384 (heads 32)", 384, 384, 32, 4096),
                                               ("512x2048", 512, 2048, 0, 8192)):
        w, h = layer(rng, rows, cols, tokens)
        norms = np.sqrt(np.diag(h)).astype(np.float32)
        t0 = time.perf_counter()
        found = prunekit.channel_permutation(w, "2:4", criterion="wanda", features=norms, segment=segment,
                                             threads=args.threads)
        search = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, plain = prunekit.sparsegpt(w, h, pattern="2:4", threads=args.threads)
        sgpt = time.perf_counter() - t0
        p = found.permutation
        wp, hp = np.ascontiguousarray(w[:, p]), np.ascontiguousarray(h[np.ix_(p, p)])
        _, permuted = prunekit.sparsegpt(wp, hp, pattern="2:4", threads=args.threads)
        wanda = w * prunekit.mask(w, pattern="2:4", criterion="wanda", features=norms)
        wanda_p = wp * prunekit.mask(wp, pattern="2:4", criterion="wanda", features=norms[p])
        gain = found.kept_after / found.kept_before - 1
        print(f"{label:28s} {search:9.2f} {sgpt:12.2f} {search / sgpt:6.1f}x {gain * 100:9.2f}% "
              f"{relative_error(w, wanda, h):8.4f}->{relative_error(wp, wanda_p, hp):.4f} "
              f"{relative_error(w, plain, h):8.4f}->{relative_error(wp, permuted, hp):.4f}", flush=True)
    print("(ratio: search time / SparseGPT 2:4 time on the same layer; err: relative layer error "
          "without -> with the permutation)")


if __name__ == "__main__":
    main()
