#!/usr/bin/env python3
"""prunekit.torch on the real all-MiniLM-L6-v2 (transformers, CPU): figures, not pass/fail.

1. Hook overhead of prunekit.torch.calibrate (every encoder linear's inputs streamed into a
   prunekit.Stats through forward pre-hooks, padding excluded) against the plain forward pass
   over the same batches (target: under 10%), with and without X^T X.
2. CPU latency of the encoder after prune_channels(0.5) + prune_heads(1/3) (physically smaller
   modules) against dense, on the same inputs; parameter counts.

Times are the best of --repeats runs, alternating the variants (in an order rotated each
repeat) so that a busy machine slows them alike; the median over repeats of the ratio within
one repeat is printed too, and the time spent inside the hooks is measured directly.

    python3 benchmarks/bench_torch.py [--texts 256 --batch 32 --repeats 5]
"""
import argparse
import copy
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples", "python"))

import minilm  # noqa: E402  (model loading, stdlib docstrings, tokenised batches)
import prunekit  # noqa: E402
import prunekit.torch as pkt  # noqa: E402


def forward_all(model, batches):
    with torch.no_grad():
        for batch in batches:
            model(**batch)


def best(functions, repeats):
    """Best wall time of each function over repeats, every repeat running each function once with
    the order rotated by one from the last (a function that always ran first or last would take
    that position's cost: on this kind of machine a forward pass after another kind of work runs a
    few percent slower or faster); and the median over repeats of each function's time over the
    first's in the same repeat (a load that changes between repeats cancels out)."""
    n = len(functions)
    runs = []
    for k in range(repeats):
        run = [0.0] * n
        for i in [(k + j) % n for j in range(n)]:
            t0 = time.perf_counter()
            functions[i]()
            run[i] = time.perf_counter() - t0
        runs.append(run)
    times = [min(run[i] for run in runs) for i in range(n)]
    return times, [statistics.median(run[i] / run[0] for run in runs) for i in range(n)]


def time_in_hooks(model, batches):
    """Seconds of calibrate()'s own work in one run: everything its hooks do (the token
    bookkeeping and Stats.update, reading the input in place)."""
    spent = [0.0]
    make = pkt._Collector._hook

    def timed_hook(self, name, target):
        hook = make(self, name, target)

        def wrapper(*args):
            t0 = time.perf_counter()
            try:
                return hook(*args)
            finally:
                spent[0] += time.perf_counter() - t0
        return wrapper

    pkt._Collector._hook = timed_hook
    try:
        pkt.calibrate(model, batches, targets=r"^encoder\.")
    finally:
        pkt._Collector._hook = make
    return spent[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=256, help="docstrings (calibration side)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    model, tokenizer = minilm.load_torch_model()
    texts, _ = minilm.texts(args.texts, 0)
    batches = minilm.torch_batches(tokenizer, texts, size=args.batch)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    positions = sum(b["attention_mask"].numel() for b in batches)
    print(f"all-MiniLM-L6-v2 (transformers {model.config._attn_implementation}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads): {len(texts)} docstrings in {len(batches)} batches of {args.batch}, "
          f"{tokens} real tokens of {positions} positions")
    forward_all(model, batches[:1])   # warm-up

    (plain, hooks, hooks_gram), ratios = best([lambda: forward_all(model, batches),
                                               lambda: pkt.calibrate(model, batches, targets=r"^encoder\."),
                                               lambda: pkt.calibrate(model, batches, targets=r"^encoder\.", gram=True)],
                                              args.repeats)
    inside = time_in_hooks(model, batches)
    print("\n1. calibrate(): forward pre-hooks on the 36 encoder linears (24 accumulators: q, k and v share one)")
    print(f"{'':28s} {'seconds':>8s} {'overhead':>9s} {'median of run pairs':>20s}")
    print(f"{'plain forward':28s} {plain:8.3f}")
    print(f"{'calibrate':28s} {hooks:8.3f} {100 * (hooks / plain - 1):8.1f}% {100 * (ratios[1] - 1):19.1f}%"
          "   (target < 10%)")
    print(f"{'calibrate, gram=True':28s} {hooks_gram:8.3f} {100 * (hooks_gram / plain - 1):8.1f}% "
          f"{100 * (ratios[2] - 1):19.1f}%   (+ X^T X by OpenBLAS syrk per layer)")
    print(f"PruneKit work in the hooks, measured directly (token bookkeeping, Stats.update): {inside:.3f} s, "
          f"{100 * inside / plain:.1f}% of the plain forward")

    smaller = copy.deepcopy(model)
    t0 = time.perf_counter()
    channels = pkt.prune_channels(smaller, 0.5, batches=batches[:4], compensate=True)
    heads = pkt.prune_heads(smaller, 1 / 3, batches=batches[:4], compensate=True)
    surgery = time.perf_counter() - t0
    (dense_s, small_s), ratios = best([lambda: forward_all(model, batches), lambda: forward_all(smaller, batches)],
                                      args.repeats)
    kept_channels = sum(k for _, k, _ in channels.blocks)
    kept_heads = sum(k for _, k, _ in heads.blocks)
    print("\n2. physically smaller encoder: prune_channels(0.5) + prune_heads(1/3), Wanda-scored, compensated "
          f"({surgery:.1f} s incl. calibration on {min(4, len(batches))} batches)")
    print(f"{'':28s} {'params':>11s} {'FFN ch.':>8s} {'heads':>6s} {'latency ms':>11s} {'speed-up':>9s}")
    print(f"{'dense':28s} {pkt.parameter_count(model):11,d} {6 * 1536:8d} {6 * 12:6d} {1000 * dense_s:11.1f} "
          f"{1.0:8.2f}x")
    print(f"{'pruned':28s} {pkt.parameter_count(smaller):11,d} {kept_channels:8d} {kept_heads:6d} "
          f"{1000 * small_s:11.1f} {dense_s / small_s:8.2f}x   (median of run pairs {1 / ratios[1]:.2f}x)")


if __name__ == "__main__":
    sys.exit(main())
