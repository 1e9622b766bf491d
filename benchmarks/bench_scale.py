"""prunekit prune on a LLaMA-2-7B-shaped sharded checkpoint: peak memory and time against the disk.

    python3 benchmarks/bench_scale.py --folder /work/scale-bench          # makes ~13.5 GB, deletes it after
    python3 benchmarks/bench_scale.py --folder /tmp/small --layers 2      # a quick look

The benchmark writes a checkpoint with LLaMA-2-7B's tensor names and shapes (embed_tokens,
32 blocks of q/k/v/o, gate/up/down and two norms, norm, lm_head) and random bfloat16 values,
as Hugging Face shards it (model-0000k-of-0000n.safetensors of at most 10 GB plus
model.safetensors.index.json), and a Wanda statistics bundle with one accumulator per distinct
layer input (q, k, v share one; gate and up share one). It then measures, in the same run:

  read     every shard read once (16 MiB reads), from disk: the shards' pages are dropped from the
           page cache first (posix_fadvise DONTNEED on our own files only);
  write    the same number of bytes written to a new file and fsynced;
  prune    `python -m prunekit prune` (a separate process; its peak resident memory is that
           process's ru_maxrss) with magnitude 0.5, Wanda 0.5 and magnitude 2:4 over every
           linear layer of the blocks, the input's pages dropped first as for the read;
  ray      optionally (--ray N) the same 2:4 run through prunekit.ray.prune_checkpoint.

and prints each figure. Nothing is pass or fail; the checkpoint is deleted at the end unless
--keep is given.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

LLAMA_2_7B = dict(vocab=32000, hidden=4096, intermediate=11008, layers=32)
LINEAR = r"model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight"


def llama_shapes(vocab: int, hidden: int, intermediate: int, layers: int) -> Iterator[Tuple[str, Tuple[int, ...]]]:
    """The tensors of a Hugging Face LlamaForCausalLM state dict (multi-head attention), in its order."""
    yield "model.embed_tokens.weight", (vocab, hidden)
    for i in range(layers):
        p = f"model.layers.{i}."
        for proj in ("q", "k", "v", "o"):
            yield p + f"self_attn.{proj}_proj.weight", (hidden, hidden)
        yield p + "mlp.gate_proj.weight", (intermediate, hidden)
        yield p + "mlp.up_proj.weight", (intermediate, hidden)
        yield p + "mlp.down_proj.weight", (hidden, intermediate)
        yield p + "input_layernorm.weight", (hidden,)
        yield p + "post_attention_layernorm.weight", (hidden,)
    yield "model.norm.weight", (hidden,)
    yield "lm_head.weight", (vocab, hidden)


def layer_inputs(names: Sequence[str]) -> Dict[str, str]:
    """Which input each linear layer reads: q, k and v read one (after input_layernorm), gate and
    up read one (after post_attention_layernorm); o and down read their own."""
    inputs = {}
    for name in names:
        key = name
        for shared, first in (("self_attn.k_proj", "self_attn.q_proj"), ("self_attn.v_proj", "self_attn.q_proj"),
                              ("mlp.up_proj", "mlp.gate_proj")):
            key = key.replace(shared, first)
        inputs[name] = key
    return inputs


def random_bf16(rng: np.random.Generator, shape: Tuple[int, ...], scale: float) -> np.ndarray:
    """Random bfloat16 bit patterns, all finite: a random sign and mantissa and one of 16
    exponents, so magnitudes spread over [scale * 2^-15, scale * 2) as trained weights spread
    over octaves. One random 16-bit draw per value (a normal draw per value makes a 7B
    checkpoint several times slower to write)."""
    r = rng.integers(0, 1 << 16, size=shape, dtype=np.uint16)
    top = int(np.clip(np.round(np.log2(scale)) + 127, 16, 254))  # the largest exponent
    exponent = (r >> np.uint16(7)) & np.uint16(0xF)
    exponent += np.uint16(top - 15)
    r &= np.uint16(0x807F)
    r |= exponent << np.uint16(7)
    return r


def write_checkpoint(folder: str, shapes: Sequence[Tuple[str, Tuple[int, ...]]], max_shard_bytes: Optional[int],
                     seed: int = 0) -> List[str]:
    """Writes bfloat16 tensors as Hugging Face does: shards filled in state-dict order up to
    max_shard_bytes (model-0000k-of-0000n.safetensors plus model.safetensors.index.json), or one
    model.safetensors when max_shard_bytes is None. One tensor is in memory at a time."""
    os.makedirs(folder, exist_ok=True)
    groups: List[List[Tuple[str, Tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in shapes:
        nbytes = 2 * int(np.prod(shape))
        if max_shard_bytes is not None and groups[-1] and size + nbytes > max_shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append((name, shape))
        size += nbytes
    if max_shard_bytes is None:
        files = ["model.safetensors"]
    else:
        files = [f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors" for k in range(len(groups))]
    rng = np.random.default_rng(seed)
    weight_map, total = {}, 0
    for file, group in zip(files, groups):
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, shape in group:
            nbytes = 2 * int(np.prod(shape))
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
            weight_map[name] = file
        total += offset
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(os.path.join(folder, file), "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            for name, shape in group:
                scale = 1.0 if len(shape) == 1 else 0.02
                f.write(random_bf16(rng, shape, scale).tobytes())
    if max_shard_bytes is not None:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)
            f.write("\n")
    return [os.path.join(folder, f) for f in files]


def write_wanda_bundle(path: str, shapes: Sequence[Tuple[str, Tuple[int, ...]]], tokens: int = 256, seed: int = 1) -> int:
    """A statistics bundle for every linear layer of the blocks, one accumulator per distinct input."""
    import re
    import prunekit
    linear = [(n, s) for n, s in shapes if re.fullmatch(LINEAR, n)]
    inputs = layer_inputs([n for n, _ in linear])
    rng = np.random.default_rng(seed)
    by_input: Dict[str, prunekit.Stats] = {}
    stats = {}
    for name, shape in linear:
        key = inputs[name]
        if key not in by_input:
            s = prunekit.Stats(shape[1])
            s.update(rng.standard_normal((tokens, shape[1]), dtype=np.float32))
            by_input[key] = s
        stats[name] = by_input[key]
    prunekit.save_stats(path, stats)
    return len(by_input)


def block_of(name: str) -> Optional[str]:
    """'model.layers.7' for any tensor of that block, else None."""
    import re
    found = re.match(r"(.*\.layers\.\d+)\.", name)
    return found.group(1) if found else None


def write_gram_bundles(folder: str, shapes: Sequence[Tuple[str, Tuple[int, ...]]], tokens: int = 256, seed: int = 1,
                       blocks: Optional[int] = None) -> Dict[str, int]:
    """One statistics bundle with Gram matrices per block (FOLDER/model.layers.K.pkstats, the
    `prunekit prune --stats FOLDER` layout), one accumulator per distinct input (q/k/v share
    one, gate/up one) filled with `tokens` synthetic activations (standard normal). One block's
    accumulators are in memory at a time. Returns {bundle file: bytes}."""
    import re
    import prunekit
    os.makedirs(folder, exist_ok=True)
    linear = [(n, s) for n, s in shapes if re.fullmatch(LINEAR, n)]
    inputs = layer_inputs([n for n, _ in linear])
    order = list(dict.fromkeys(block_of(n) for n, _ in linear))[:blocks]
    rng = np.random.default_rng(seed)
    written = {}
    for block in order:
        by_input: Dict[str, "prunekit.Stats"] = {}
        stats = {}
        for name, shape in linear:
            if block_of(name) != block:
                continue
            key = inputs[name]
            if key not in by_input:
                s = prunekit.Stats(shape[1], gram=True)
                for start in range(0, tokens, 512):
                    s.update(rng.standard_normal((min(512, tokens - start), shape[1]), dtype=np.float32))
                by_input[key] = s
            stats[name] = by_input[key]
        path = os.path.join(folder, block + ".pkstats")
        prunekit.save_stats(path, stats)
        written[path] = os.path.getsize(path)
        del by_input, stats
    return written


# ---------------------------------------------------------------------------------------------
# Measuring

def drop_cache(paths: Sequence[str]) -> None:
    """Evicts our own files' pages from the page cache, so the next read comes from the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def files_of(folder: str) -> List[str]:
    return [os.path.join(folder, f) for f in sorted(os.listdir(folder))]


def time_read(paths: Sequence[str]) -> float:
    drop_cache(paths)
    buffer = bytearray(1 << 24)
    start = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buffer):
                pass
    return time.perf_counter() - start


def time_write(path: str, nbytes: int) -> float:
    block = np.random.default_rng(2).integers(0, 256, 1 << 24, dtype=np.uint8).tobytes()
    start = time.perf_counter()
    with open(path, "wb", buffering=0) as f:
        left = nbytes
        while left > 0:
            left -= f.write(block[:min(len(block), left)])
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - start
    drop_cache([path])
    os.remove(path)
    return elapsed


# The child reports its own high-water mark: ru_maxrss of a child started by vfork + exec also
# counts the parent's peak (Linux folds the old mm's high-water mark in at exec).
MEASURED = """import sys
from prunekit.cli import main
try:
    code = main(sys.argv[1:])
finally:
    print(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).strip(), file=sys.stderr)
sys.exit(code)
"""


def run_measured(arguments: Sequence[str]) -> Tuple[float, float, float, int]:
    """(wall seconds, CPU seconds, peak resident GB, return code) of `prunekit ARGUMENTS` in a child."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", MEASURED, *arguments], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    child.stderr.close()
    child.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(err, file=sys.stderr)
    peak_kb = int(err.strip().splitlines()[-1].split()[1])
    return elapsed, usage.ru_utime + usage.ru_stime, peak_kb * 1024 / 1e9, code


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--folder", required=True, help="where the checkpoint is made (deleted at the end)")
    p.add_argument("--layers", type=int, default=LLAMA_2_7B["layers"])
    p.add_argument("--shard-gb", type=float, default=10.0)
    p.add_argument("--methods", default="magnitude,wanda,2:4")
    p.add_argument("--ray", type=int, default=0, help="also prune 2:4 with prunekit.ray over this many workers")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--reuse", action="store_true",
                   help="measure the checkpoint and bundle an earlier run left in --folder (with --keep)")
    args = p.parse_args()
    config = dict(LLAMA_2_7B, layers=args.layers)
    shapes = list(llama_shapes(**config))
    source = os.path.join(args.folder, "llama")
    if args.reuse:
        args.keep = True
    elif os.path.exists(args.folder) and os.listdir(args.folder):
        raise SystemExit(f"{args.folder}: exists and is not empty")
    try:
        start = time.perf_counter()
        bundle = os.path.join(args.folder, "wanda.pkstats")
        if args.reuse:
            from prunekit.checkpoint import open_checkpoint
            found = open_checkpoint(source)
            if [(t.name, tuple(t.shape)) for t in found] != shapes:
                raise SystemExit(f"{source}: not the checkpoint of these options")
            shards = [s.path for s in found.shards]
            accumulators = len({id(s) for s in __import__("prunekit").load_stats(bundle).values()})
        else:
            shards = write_checkpoint(source, shapes, int(args.shard_gb * 1e9))
            accumulators = write_wanda_bundle(bundle, shapes)
        total = sum(os.path.getsize(s) for s in shards)
        largest = max(2 * int(np.prod(s)) for _, s in shapes)
        largest_linear = max(2 * int(np.prod(s)) for n, s in shapes if "layers" in n)
        print(f"checkpoint: LLaMA-2-7B shapes, {config['layers']} blocks, {len(shapes)} tensors, "
              f"{len(shards)} shards, {total / 1e9:.2f} GB bfloat16 ({'reused' if args.reuse else f'made in {time.perf_counter() - start:.0f} s'}); "
              f"largest tensor {largest / 1e6:.0f} MB, largest linear layer {largest_linear / 1e6:.0f} MB; "
              f"Wanda bundle: {accumulators} accumulators for {sum(1 for n, _ in shapes if 'proj' in n)} layers "
              f"({os.path.getsize(bundle) / 1e6:.1f} MB)", flush=True)
        before = os.getloadavg()[0]
        read = time_read(shards)
        write = time_write(os.path.join(args.folder, "write-test.bin"), total)
        floor = read + write
        print(f"disk: read {read:.1f} s ({total / read / 1e9:.2f} GB/s), write + fsync {write:.1f} s "
              f"({total / write / 1e9:.2f} GB/s); one read + one write = {floor:.1f} s "
              f"(load {before:.1f}-{os.getloadavg()[0]:.1f})", flush=True)
        print(f"load average (1 min) before and after each figure: {os.getloadavg()[0]:.1f} at the start", flush=True)
        print(f"{'run':28s} {'time s':>8s} {'CPU s':>7s} {'x (read+write)':>15s} {'peak RSS GB':>12s} {'x largest':>10s}"
              f" {'load':>9s}")
        runs = []
        for method in args.methods.split(","):
            options = ["--pattern", "2:4"] if method == "2:4" else ["--method", method, "--sparsity", "0.5"]
            if method == "wanda":
                options += ["--stats", bundle]
            runs.append((f"prune {method}", options))
        for label, options in runs:
            output = os.path.join(args.folder, "pruned")
            drop_cache(shards)
            before = os.getloadavg()[0]
            seconds, cpu, peak, code = run_measured(["prune", source, "-o", output, "--include", LINEAR, "--quiet", *options])
            print(f"{label:28s} {seconds:8.1f} {cpu:7.1f} {seconds / floor:15.2f} {peak:12.2f} {peak * 1e9 / largest:10.1f}"
                  f" {before:4.1f}-{os.getloadavg()[0]:.1f}{'' if code == 0 else f'  FAILED ({code})'}", flush=True)
            if os.path.exists(output):
                drop_cache(files_of(output))
                shutil.rmtree(output)
        if args.ray:
            output = os.path.join(args.folder, "pruned-ray")
            drop_cache(shards)
            script = ("import sys, ray, prunekit.ray as pr\n"
                      f"ray.init(num_cpus={args.ray}, include_dashboard=False, object_store_memory=256 * 2**20,"
                      " _node_ip_address='127.0.0.1', log_to_driver=False)\n"
                      "import time; t = time.perf_counter()\n"
                      f"pr.prune_checkpoint({source!r}, {output!r}, pattern='2:4', include=[{LINEAR!r}], workers={args.ray}, quiet=True)\n"
                      "seconds = time.perf_counter() - t\n"
                      "hwm = lambda: (__import__('os').getpid(), int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]))\n"
                      "peaks = dict(ray.get([ray.remote(hwm).remote() for _ in range(16)]))  # lands on the same workers\n"
                      "print(f'workers: {len(peaks)}, peak RSS {max(peaks.values()) / 1e6:.2f} GB each at most; driver {hwm()[1] / 1e6:.2f} GB', file=sys.stderr)\n"
                      "print(f'{seconds:.1f}', file=sys.stderr)\n")
            env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
            start = time.perf_counter()
            child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
            seconds = time.perf_counter() - start
            inner = child.stderr.strip().splitlines()[-1] if child.returncode == 0 else "FAILED"
            print(f"{'ray 2:4, ' + str(args.ray) + ' workers':28s} {seconds:8.1f} {'':7s} {seconds / floor:15.2f}   "
                  f"(prune call {inner} s, without Ray start-up)", flush=True)
            if child.returncode != 0:
                print(child.stderr[-3000:], file=sys.stderr)
            else:
                print("  " + child.stderr.strip().splitlines()[-2], flush=True)
            if os.path.exists(output):
                shutil.rmtree(output)
    finally:
        if not args.keep:
            if os.path.exists(source):
                drop_cache(files_of(source))
            shutil.rmtree(args.folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
