"""Data-free compensation (UDFC) on a small CNN trained on scikit-learn's digits: accuracy after
pruning 30% and 50% of the channels of each conv (alone, and of all three), uncompensated, with
UDFC (weights and batch-norm statistics only) and with data-driven prune_columns (least squares on
256 calibration images); then the time of one compensation on a ResNet-sized layer against the
numpy reference of the closed form.

    python examples/python/digits_udfc.py
"""
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "Tests", "python"))

import prunekit  # noqa: E402
from digits_cnn import train_digits_cnn, prune_digits_cnn  # noqa: E402
from udfc_reference import reference_udfc  # noqa: E402


def accuracy_table(seeds=(0, 1, 2)):
    print("accuracy on 497 held-out digits (mean over seeds %s)" % (list(seeds),))
    print(f"{'pruned':<28}{'uncompensated':>15}{'UDFC':>10}{'prune_columns':>15}")
    rows = {}
    for seed in seeds:
        model, data = train_digits_cnn(seed=seed)
        rows.setdefault(("dense", None), []).append((data.accuracy(model),) * 3)
        for layers, label in (((0,), "conv1"), ((1,), "conv2"), ((2,), "conv3"), ((0, 1, 2), "all convs")):
            for ratio in (0.3, 0.5):
                accs = tuple(data.accuracy(prune_digits_cnn(model, data, ratio, m, layers=layers))
                             for m in ("none", "data_free", "prune_columns"))
                rows.setdefault((label, ratio), []).append(accs)
    for (label, ratio), values in rows.items():
        mean = np.mean(values, axis=0)
        name = "dense" if ratio is None else f"{int(ratio * 100)}% of {label}"
        print(f"{name:<28}{mean[0]:>15.4f}{mean[1]:>10.4f}{mean[2]:>15.4f}")


def speed(n=512, rows=512, inputs=512, repeats=3):
    rng = np.random.default_rng(0)
    conv = rng.standard_normal((n, inputs, 3, 3)).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 1.5, n).astype(np.float32), rng.normal(0, 1, n).astype(np.float32)
    mean, var = rng.normal(0, 1, n).astype(np.float32), rng.uniform(0.5, 2, n).astype(np.float32)
    nxt = rng.standard_normal((rows, n, 3, 3)).astype(np.float32)
    keep = np.ones(n, bool)
    keep[rng.permutation(n)[: n // 2]] = False
    group = prunekit.Group([prunekit.Member(conv, "rows")] + [prunekit.Member(v, scored=False) for v in (gamma, beta, mean, var)]
                           + [prunekit.Member(nxt, "cols", scored=False)])

    def ours():
        return prunekit.compact_data_free(group, keep, producer=0, next=5, batch_norm=(1, 2, 3, 4))

    def numpy_reference():
        return reference_udfc(conv, gamma, beta, var, nxt, keep, 9)

    timings = {}
    for name, f in (("prunekit.compact_data_free", ours), ("numpy reference", numpy_reference)):
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            f()
            best = min(best, time.perf_counter() - t)
        timings[name] = best
    out, _, _ = ours()
    ref, _, _, _ = numpy_reference()
    err = float(np.abs(out[5].reshape(rows, -1) - ref).max() / np.abs(ref).max())
    print(f"\none compensation, conv {n} x {inputs} x 3 x 3 -> BN -> ReLU -> conv {rows} x {n} x 3 x 3, half the channels pruned:")
    for name, t in timings.items():
        print(f"  {name:<28}{t * 1e3:9.1f} ms")
    print(f"  ratio numpy / prunekit: {timings['numpy reference'] / timings['prunekit.compact_data_free']:.2f}x; "
          f"max relative difference {err:.2e} (prunekit stores float32)")


if __name__ == "__main__":
    accuracy_table()
    speed()
