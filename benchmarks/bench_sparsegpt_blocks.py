"""SparseGPT (and optionally ADMM) over LLaMA-2-7B-shaped blocks from per-block Gram bundles:
peak resident memory and time of `prunekit prune --stats FOLDER`.

    python3 benchmarks/bench_sparsegpt_blocks.py --folder /work/scale-data/sgpt        # 2 blocks
    python3 benchmarks/bench_sparsegpt_blocks.py --folder /tmp/sgpt --blocks 1 --tokens 256

The benchmark writes a checkpoint with LLaMA-2-7B's tensor names and shapes (hidden 4096,
intermediate 11008, vocab 32000) and `--blocks` blocks, random bfloat16 values, and one
statistics bundle with Gram matrices per block (FOLDER/calib/model.layers.K.pkstats), one
accumulator per distinct layer input: q, k and v share one (4096 features), o has one (4096),
gate and up share one (4096), down has one (11008), each filled with `--tokens` standard-normal
synthetic activations. It prints every accumulator's size, then runs `python -m prunekit prune
--method sparsegpt --sparsity 0.5 --stats FOLDER/calib` over every linear layer of the blocks
in a separate process and prints its wall time, CPU time and peak resident memory (VmHWM,
read by the child itself). The Grams of one 7B block are 1.37 GB, so a run that held two
blocks' Grams would peak above 2.7 GB. The folder is deleted at the end unless --keep.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_scale  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--folder", required=True)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--tokens", type=int, default=1024, help="synthetic calibration tokens per accumulator")
    p.add_argument("--methods", default="sparsegpt", help="comma-separated: sparsegpt, admm")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    if os.path.exists(args.folder) and os.listdir(args.folder):
        raise SystemExit(f"{args.folder}: exists and is not empty")
    config = dict(bench_scale.LLAMA_2_7B, layers=args.blocks)
    shapes = list(bench_scale.llama_shapes(**config))
    source, calib = os.path.join(args.folder, "llama"), os.path.join(args.folder, "calib")
    try:
        start = time.perf_counter()
        shards = bench_scale.write_checkpoint(source, shapes, int(10e9))
        total = sum(os.path.getsize(s) for s in shards)
        print(f"checkpoint: LLaMA-2-7B shapes, {args.blocks} blocks, {total / 1e9:.2f} GB bfloat16 "
              f"(made in {time.perf_counter() - start:.0f} s)", flush=True)
        start = time.perf_counter()
        written = bench_scale.write_gram_bundles(calib, shapes, tokens=args.tokens)
        print(f"Gram bundles: {args.tokens} synthetic tokens per input, made in {time.perf_counter() - start:.0f} s",
              flush=True)
        from prunekit.bundles import scan_bundle
        for path, size in written.items():
            entries = scan_bundle(path)
            distinct = {}
            for name, e in entries.items():
                distinct.setdefault(e.key, (e, []))[1].append(name.split(".")[-2])
            parts = ", ".join(f"{'/'.join(users)} F={e.features}: {e.size / 1e6:.0f} MB" for e, users in distinct.values())
            print(f"  {os.path.basename(path)}: {size / 1e9:.2f} GB ({parts})", flush=True)
        print(f"{'run':24s} {'time s':>8s} {'CPU s':>7s} {'peak RSS GB':>12s}", flush=True)
        for method in args.methods.split(","):
            output = os.path.join(args.folder, "pruned-" + method)
            bench_scale.drop_cache(shards + list(written))
            options = ["--sparsity", "0.5"] if method == "sparsegpt" else ["--sparsity", "0.5", "--scope", "layer"]
            seconds, cpu, peak, code = bench_scale.run_measured(
                ["prune", source, "-o", output, "--method", method, "--stats", calib, "--include", bench_scale.LINEAR,
                 "--threads", str(args.threads), "--quiet", *options])
            print(f"{method + ' ' + str(args.blocks) + ' blocks':24s} {seconds:8.1f} {cpu:7.1f} {peak:12.2f}"
                  f"{'' if code == 0 else f'  FAILED ({code})'}", flush=True)
            if os.path.exists(output):
                shutil.rmtree(output)
    finally:
        if not args.keep:
            shutil.rmtree(args.folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
