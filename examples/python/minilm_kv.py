#!/usr/bin/env python3
"""KV-cache compression on all-MiniLM-L6-v2's six attention layers: activation-aware low rank of the
key and value projections (prunekit.low_rank: the cache holds x B^T, r numbers per token, and A
restores the keys) against ThinK's query-driven key channels (prunekit.key_channels, chosen from
each sequence's own queries) and a plain SVD of the weights. Prints the cache bytes per token and
the attention-output error (||O' - O|| / ||O|| of softmax(Q K^T / sqrt(d)) V per sequence) per layer.

    python3 examples/python/minilm_kv.py [--calibration 64 --evaluation 32]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import minilm  # noqa: E402
import prunekit  # noqa: E402

HEADS, D, HIDDEN = 12, 32, 384


def attention(q, k, v):
    """Context softmax(Q K^T / sqrt(d)) V per head for one sequence (no padding)."""
    length = q.shape[0]
    split = lambda t: t.reshape(length, HEADS, -1).transpose(1, 0, 2)  # noqa: E731
    scores = split(q) @ split(k).transpose(0, 2, 1) / np.sqrt(D)
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    scores /= scores.sum(-1, keepdims=True)
    return (scores @ split(v)).transpose(1, 0, 2).reshape(length, -1)


def layer_inputs(weights, tokenizer, texts):
    """Per layer, the attention input x [tokens, 384] of every sequence (one sequence per batch)."""
    encoder = minilm.Encoder(weights)
    inputs = [[] for _ in range(6)]
    for text in texts:
        ids, mask = next(minilm.batches(tokenizer, [text], size=1))

        def capture(name, x):
            if name.endswith("attention.self.query"):
                inputs[int(name.split(".")[2])].append(x.astype(np.float64))
        encoder(ids, mask, capture)
    return inputs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--evaluation", type=int, default=32)
    args = parser.parse_args()
    weights, tokenizer = minilm.load_model()
    calibration, evaluation = minilm.texts(args.calibration, args.evaluation)
    cal, ev = layer_inputs(weights, tokenizer, calibration), layer_inputs(weights, tokenizer, evaluation)
    tokens = sum(x.shape[0] for x in ev[0])

    # label -> (cache floats per token per layer, per-layer errors)
    rows = {}

    def record(label, floats, layer, errors):
        rows.setdefault(label, [floats, [0.0] * 6])[1][layer] = float(np.sqrt(errors[0] / errors[1]))

    for layer in range(6):
        p = f"encoder.layer.{layer}.attention.self."
        wq, wk, wv = (weights[p + n + ".weight"].astype(np.float64) for n in ("query", "key", "value"))
        bq, bk, bv = (weights[p + n + ".bias"].astype(np.float64) for n in ("query", "key", "value"))
        stats = prunekit.Stats(features=HIDDEN, gram=True)
        for x in cal[layer]:
            stats.update(x)
        h = stats.gram()
        factors = {}
        for rank in (96, 192):
            factors[("aware", "k", rank)] = prunekit.low_rank(wk, h, rank=rank)[:2]
            factors[("aware", "v", rank)] = prunekit.low_rank(wv, h, rank=rank)[:2]
            u, s, vt = np.linalg.svd(wk, full_matrices=False)
            factors[("plain", "k", rank)] = (u[:, :rank] * s[:rank], vt[:rank])
        a99, b99, _ = prunekit.low_rank(wk, h, energy=0.99)
        c99, d99, _ = prunekit.low_rank(wv, h, energy=0.99)
        sums = {}
        for x in ev[layer]:
            q, k, v = x @ wq.T + bq, x @ wk.T + bk, x @ wv.T + bv
            reference = attention(q, k, v)
            norm = float((reference ** 2).sum())

            def add(label, floats, out):
                e = sums.setdefault(label, [floats, 0.0, 0.0])
                e[1] += float(((out - reference) ** 2).sum())
                e[2] += norm

            def restored(key):
                a, b = factors[key]
                return (x @ b.T) @ a.T
            keep, _ = prunekit.key_channels(q.astype(np.float32), k.astype(np.float32), HEADS, 0.5)
            add("ThinK keys 50% (own queries)", HIDDEN // 2 + HIDDEN, attention(q * keep, k * keep, v))
            keep75, _ = prunekit.key_channels(q.astype(np.float32), k.astype(np.float32), HEADS, 0.75)
            add("ThinK keys 75%", HIDDEN // 4 + HIDDEN, attention(q * keep75, k * keep75, v))
            add("plain SVD keys r=192", 192 + HIDDEN, attention(q, restored(("plain", "k", 192)) + bk, v))
            add("low rank keys r=192", 192 + HIDDEN, attention(q, restored(("aware", "k", 192)) + bk, v))
            add("plain SVD keys r=96", 96 + HIDDEN, attention(q, restored(("plain", "k", 96)) + bk, v))
            add("low rank keys r=96", 96 + HIDDEN, attention(q, restored(("aware", "k", 96)) + bk, v))
            add("low rank keys+values r=192", 2 * 192,
                attention(q, restored(("aware", "k", 192)) + bk, restored(("aware", "v", 192)) + bv))
            add(f"low rank keys+values energy 0.99 (L{layer}: r={a99.shape[1]}/{c99.shape[1]})",
                a99.shape[1] + c99.shape[1], attention(q, (x @ b99.T) @ a99.T + bk, (x @ d99.T) @ c99.T + bv))
        for label, (floats, err, nrm) in sums.items():
            key = label.split(" (L")[0] if "energy" in label else label
            record(key, floats if "energy" not in label else None, layer, (err, nrm))
            if "energy" in label:
                rows[key].append(floats)

    dense = 2 * HIDDEN * 6
    print(f"all-MiniLM-L6-v2, {len(evaluation)} evaluation sequences ({tokens} tokens), Hessians from {len(calibration)} "
          f"calibration sequences. Dense KV cache: {dense} float values = {dense * 2} bytes (fp16) per token over 6 layers.")
    print(f"{'method':34s} {'KV bytes/token':>14s} {'saved':>6s}  attention-output error per layer (0..5)   mean")
    for label, entry in rows.items():
        floats = entry[0] * 6 if entry[0] is not None else sum(entry[2:])
        errors = entry[1]
        print(f"{label:34s} {floats * 2:14d} {100 * (1 - floats / dense):5.1f}%  "
              + " ".join(f"{e:.4f}" for e in errors) + f"   {np.mean(errors):.4f}")


if __name__ == "__main__":
    main()
