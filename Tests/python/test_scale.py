"""Sharded checkpoints (prunekit.checkpoint through the CLI), shared statistics, bounded memory."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import prunekit
from prunekit import safetensors as st
from prunekit.checkpoint import open_checkpoint

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "benchmarks"))
import bench_scale  # noqa: E402  (the LLaMA-shaped checkpoint writer the benchmark uses)

SMALL = dict(vocab=64, hidden=32, intermediate=96, layers=3)


def run(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "prunekit", *args], capture_output=True, text=True, **kwargs)


def leftovers(folder):
    return [p for p in os.listdir(folder) if p.startswith(".prunekit-")]


@pytest.fixture
def sharded(tmp_path):
    folder = tmp_path / "llama"
    shapes = list(bench_scale.llama_shapes(**SMALL))
    shards = bench_scale.write_checkpoint(str(folder), shapes, max_shard_bytes=20000)
    (folder / "config.json").write_text('{"model_type": "llama"}\n')
    (folder / "pytorch_model.bin").write_bytes(b"old weights")  # another format: not copied
    assert len(shards) >= 3
    return folder, shapes


def expected_2of4(checkpoint, name):
    bits = checkpoint.array(name)
    rows = bits.shape[0]
    keep = prunekit.mask(prunekit.bfloat16(bits.reshape(rows, -1)), pattern="2:4")
    return np.where(keep, bits.reshape(rows, -1), 0).reshape(bits.shape)


def test_sharded_round_trip_keeps_index_shards_and_untouched_bytes(sharded, tmp_path):
    folder, shapes = sharded
    out = tmp_path / "pruned"
    result = run("prune", str(folder), "-o", str(out), "--pattern", "2:4", "--include", bench_scale.LINEAR)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == sorted(n for n in os.listdir(folder) if n != "pytorch_model.bin")
    index = "model.safetensors.index.json"
    assert (out / index).read_bytes() == (folder / index).read_bytes()
    source, pruned = open_checkpoint(str(folder)), open_checkpoint(str(out))
    linear = [n for n, _ in shapes if re.fullmatch(bench_scale.LINEAR, n)]
    assert f"[{len(linear)}/{len(linear)}]" in result.stderr
    for a, b in zip(source.shards, pruned.shards):
        assert os.path.basename(a.path) == os.path.basename(b.path)
        assert os.path.getsize(a.path) == os.path.getsize(b.path)
        raw_a, raw_b = open(a.path, "rb").read(), open(b.path, "rb").read()
        assert raw_a[:a.data_start] == raw_b[:b.data_start]  # the header, as it was
        assert sorted(a.tensors) == sorted(b.tensors)  # every tensor stays in its shard
    changed = 0
    for name, _ in shapes:
        if name in linear:
            np.testing.assert_array_equal(pruned.array(name), expected_2of4(source, name))
            changed += not np.array_equal(pruned.array(name), source.array(name))
        else:
            assert pruned.array(name).tobytes() == source.array(name).tobytes(), name
    assert changed == len(linear)
    # The index path names the same checkpoint; the output is the same bytes.
    again = tmp_path / "again"
    assert run("prune", str(folder / index), "-o", str(again), "--pattern", "2:4", "--include",
               bench_scale.LINEAR, "--quiet").returncode == 0
    for name in os.listdir(out):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    # One file holding the same tensors prunes them the same.
    single = tmp_path / "single.safetensors"
    bench_scale.write_checkpoint(str(tmp_path / "one"), shapes, max_shard_bytes=None)
    os.replace(tmp_path / "one" / "model.safetensors", single)
    single_out = tmp_path / "single-pruned.safetensors"
    assert run("prune", str(single), "-o", str(single_out), "--pattern", "2:4", "--include", bench_scale.LINEAR,
               "--quiet").returncode == 0
    one = st.SafeTensorsFile(str(single_out))
    for name in linear:
        np.testing.assert_array_equal(one.array(name), pruned.array(name))
    report = run("inspect", str(out), "--pattern", "2:4")
    assert report.returncode == 0, report.stderr
    rows = {line.split()[0]: line.split() for line in report.stdout.splitlines()[1:]}
    assert len(rows) == len(shapes)
    assert all(rows[n][-1] == "yes" for n in linear) and rows["lm_head.weight"][-1] == "no"
    exported = tmp_path / "down.npz"
    result = run("export", str(out), linear[-1], "--format", "2:4", "-o", str(exported))
    assert result.returncode == 0, result.stderr
    saved = np.load(exported)
    np.testing.assert_array_equal(prunekit.from_24(saved["values"], saved["metadata"]).view(np.uint16), pruned.array(linear[-1]))
    assert not leftovers(tmp_path)


def test_missing_or_corrupt_shards_are_refused_and_leave_no_output(sharded, tmp_path):
    folder, _ = sharded
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard_names = sorted(set(index["weight_map"].values()))
    last = folder / shard_names[-1]
    original = last.read_bytes()
    header_end = 8 + int.from_bytes(original[:8], "little")

    def refused(expect):
        out = tmp_path / "out"
        result = run("prune", str(folder), "-o", str(out), "--sparsity", "0.5", "--include", bench_scale.LINEAR)
        assert result.returncode == 2, result.stderr
        assert "prunekit: error:" in result.stderr and re.search(expect, result.stderr), result.stderr
        assert not out.exists() and not leftovers(tmp_path)

    last.unlink()
    refused(rf"shard {shard_names[-1]} is missing")
    last.write_bytes(original[:-10])
    refused("truncated")
    last.write_bytes(original[:8] + b"{" * (header_end - 8) + original[header_end:])
    refused("not valid JSON")
    last.write_bytes(original)
    moved = dict(index, weight_map=dict(index["weight_map"], **{"model.norm.weight": shard_names[0]}))
    (folder / "model.safetensors.index.json").write_text(json.dumps(moved))
    refused("model.norm.weight")
    escaping = dict(index, weight_map=dict(index["weight_map"], **{"model.norm.weight": "../x.safetensors"}))
    (folder / "model.safetensors.index.json").write_text(json.dumps(escaping))
    refused("not a .safetensors file next to the index")
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    # An output folder that already holds something is not overwritten.
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    result = run("prune", str(folder), "-o", str(busy), "--sparsity", "0.5")
    assert result.returncode == 2 and "not an empty folder" in result.stderr
    assert os.listdir(busy) == ["keep.txt"]


def test_a_failure_while_pruning_leaves_no_output(sharded, tmp_path):
    folder, _ = sharded
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    name = "model.layers.2.mlp.down_proj.weight"
    shard = st.SafeTensorsFile(str(folder / index["weight_map"][name]))
    t = shard.tensors[name]
    with open(shard.path, "r+b") as f:  # a NaN (bfloat16 0x7FC0) in the last block's last layer
        f.seek(shard.data_start + t.end - 2)
        f.write(np.uint16(0x7FC0).tobytes())
    out = tmp_path / "out"
    result = run("prune", str(folder), "-o", str(out), "--sparsity", "0.5", "--include", bench_scale.LINEAR)
    assert result.returncode == 2 and "prunekit: error:" in result.stderr, result.stderr
    assert not out.exists() and not leftovers(tmp_path)


def test_layers_that_share_an_input_share_one_accumulator(sharded, tmp_path):
    folder, shapes = sharded
    linear = [(n, s) for n, s in shapes if re.fullmatch(bench_scale.LINEAR, n)]
    bundle = tmp_path / "shared.pkstats"
    distinct = bench_scale.write_wanda_bundle(str(bundle), shapes, tokens=40)
    assert distinct == 4 * SMALL["layers"] and len(linear) == 7 * SMALL["layers"]
    loaded = prunekit.load_stats(str(bundle))
    assert sorted(loaded) == sorted(n for n, _ in linear)
    block = "model.layers.1."
    assert loaded[block + "self_attn.q_proj.weight"] is loaded[block + "self_attn.v_proj.weight"]
    assert loaded[block + "mlp.gate_proj.weight"] is loaded[block + "mlp.up_proj.weight"]
    assert loaded[block + "self_attn.q_proj.weight"] is not loaded[block + "self_attn.o_proj.weight"]
    # Stored once: the bundle is the accumulators plus short alias records, not one per layer.
    held = sum(len(s.to_bytes()) for s in {id(s): s for s in loaded.values()}.values())
    assert held < os.path.getsize(bundle) < held + 100 * len(linear)
    # Without sharing the bytes are the format as it was before aliases.
    plain = {n: prunekit.Stats.from_bytes(loaded[n].to_bytes()) for n, _ in linear[:2]}
    prunekit.save_stats(str(tmp_path / "plain.pkstats"), plain)
    expected = b"PKSTATSB" + (2).to_bytes(4, "little")
    for n, s in plain.items():
        blob = s.to_bytes()
        expected += len(n).to_bytes(4, "little") + n.encode() + len(blob).to_bytes(8, "little") + blob
    assert (tmp_path / "plain.pkstats").read_bytes() == expected
    # The CLI's Wanda on the sharded checkpoint uses the shared accumulator for q, k and v.
    out = tmp_path / "wanda"
    result = run("prune", str(folder), "-o", str(out), "--method", "wanda", "--stats", str(bundle),
                 "--include", bench_scale.LINEAR, "--quiet")
    assert result.returncode == 0, result.stderr
    source, pruned = open_checkpoint(str(folder)), open_checkpoint(str(out))
    name = block + "self_attn.k_proj.weight"
    bits = source.array(name)
    keep = prunekit.mask(prunekit.bfloat16(bits), 0.5, criterion="wanda", features=loaded[block + "self_attn.q_proj.weight"])
    np.testing.assert_array_equal(pruned.array(name), np.where(keep, bits, 0))
    # A damaged alias is refused.
    data = bytearray(bundle.read_bytes())
    data[-4:] = (10 ** 6).to_bytes(4, "little")
    bundle.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="alias"):
        prunekit.load_stats(str(bundle))


LIMIT = 640 * 2 ** 20  # Python, numpy, the library and OpenBLAS with their threads map about 340 MB of it

BOUNDED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from prunekit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_1gb_checkpoint_is_pruned_under_an_address_space_limit_of_half_its_size(tmp_path):
    # TinyLlama's widths with 10 blocks: 1.29 GB of bfloat16 in one file, so a whole-file map or
    # read cannot fit in the limit; the largest linear layer is 23 MB.
    shapes = list(bench_scale.llama_shapes(vocab=32000, hidden=2048, intermediate=5632, layers=10))
    (path,) = bench_scale.write_checkpoint(str(tmp_path / "tiny"), shapes, max_shard_bytes=None)
    size = os.path.getsize(path)
    assert LIMIT < 0.55 * size
    out = tmp_path / "pruned.safetensors"
    command = [sys.executable, "-c", BOUNDED.format(limit=LIMIT), "prune", path, "-o", str(out),
               "--pattern", "2:4", "--include", bench_scale.LINEAR, "--quiet"]
    # glibc reserves 64 MB of address space for each thread's malloc arena (the library's and
    # OpenBLAS's workers, the I/O thread); one arena keeps reservations from counting as memory.
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, MALLOC_ARENA_MAX="1"))
    assert result.returncode == 0, result.stderr
    assert os.path.getsize(out) == size
    # The limit bites: mapping the whole file, as a loader that holds it would, fails under it.
    probe = subprocess.run([sys.executable, "-c", BOUNDED.split("from")[0].format(limit=LIMIT) +
                            f"import numpy as np\nnp.memmap({path!r}, dtype=np.uint8, mode='r')\n"],
                           capture_output=True, text=True)
    assert probe.returncode != 0 and ("MemoryError" in probe.stderr or "Cannot allocate" in probe.stderr), probe.stderr
    source, pruned = st.SafeTensorsFile(path), st.SafeTensorsFile(str(out))
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.9.mlp.down_proj.weight"):
        bits = source.array(name)
        keep = prunekit.mask(prunekit.bfloat16(bits), pattern="2:4")
        np.testing.assert_array_equal(pruned.array(name), np.where(keep, bits, 0))
    assert pruned.array("lm_head.weight").tobytes() == source.array("lm_head.weight").tobytes()


# ---------------------------------------------------------------------------------------------
# SparseGPT and ADMM from a folder of per-block Gram bundles

def library_result(checkpoint, name, method, stats):
    """What the library gives for one tensor (the reference for the CLI)."""
    bits = checkpoint.array(name)
    rows = bits.shape[0]
    weight = prunekit.bfloat16(bits.reshape(rows, -1))
    if method == "sparsegpt":
        _, updated = prunekit.sparsegpt(weight, stats, 0.5)
    else:
        _, updated = prunekit.admm(weight, stats, pattern="2:4", scope="row")
    return np.asarray(updated.bits if hasattr(updated, "bits") else updated).view(np.uint16).reshape(bits.shape)


@pytest.fixture
def gram_bundles(sharded, tmp_path):
    folder, shapes = sharded
    calib = tmp_path / "calib"
    written = bench_scale.write_gram_bundles(str(calib), shapes, tokens=64)
    assert sorted(os.path.basename(p) for p in written) == [f"model.layers.{i}.pkstats" for i in range(SMALL["layers"])]
    return folder, shapes, calib


@pytest.mark.parametrize("method", ["sparsegpt", "admm"])
def test_second_order_methods_from_per_block_bundles_equal_the_library_per_tensor(gram_bundles, tmp_path, method):
    folder, shapes, calib = gram_bundles
    out = tmp_path / method
    options = ["--sparsity", "0.5"] if method == "sparsegpt" else ["--pattern", "2:4"]
    result = run("prune", str(folder), "-o", str(out), "--method", method, "--stats", str(calib),
                 "--include", bench_scale.LINEAR, *options)
    assert result.returncode == 0, result.stderr
    source, pruned = open_checkpoint(str(folder)), open_checkpoint(str(out))
    linear = [n for n, _ in shapes if re.fullmatch(bench_scale.LINEAR, n)]
    for name in linear:
        stats = prunekit.load_stats(str(calib / (bench_scale.block_of(name) + ".pkstats")))[name]
        expected = library_result(source, name, method, stats)
        got = pruned.array(name)
        np.testing.assert_array_equal(got, expected, err_msg=name)
        assert not np.array_equal(got, source.array(name))    # updated, not only masked
    for name, _ in shapes:
        if name not in linear:
            assert pruned.array(name).tobytes() == source.array(name).tobytes(), name
    index = "model.safetensors.index.json"
    assert (out / index).read_bytes() == (folder / index).read_bytes()
    # One bundle holding every block gives the same bytes as the folder.
    merged = {}
    for path in sorted(calib.iterdir()):
        merged.update(prunekit.load_stats(str(path)))
    prunekit.save_stats(str(tmp_path / "all.pkstats"), merged)
    again = tmp_path / "again"
    assert run("prune", str(folder), "-o", str(again), "--method", method, "--stats", str(tmp_path / "all.pkstats"),
               "--include", bench_scale.LINEAR, "--quiet", *options).returncode == 0
    for name in os.listdir(out):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    assert not leftovers(tmp_path)


def test_the_cli_holds_one_blocks_accumulators_at_a_time(gram_bundles, tmp_path, monkeypatch):
    from prunekit import cli
    folder, shapes, calib = gram_bundles
    made = []

    class Recorded(cli.Accumulators):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    monkeypatch.setattr(cli, "Accumulators", Recorded)
    assert cli.main(["prune", str(folder), "-o", str(tmp_path / "out"), "--method", "sparsegpt", "--stats", str(calib),
                     "--include", bench_scale.LINEAR, "--quiet"]) == 0
    (acc,) = made
    # 4 distinct inputs per block (q/k/v, o, gate/up, down) and 3 blocks: at most one block's held.
    assert len(acc.remaining) == 4 * SMALL["layers"]
    assert 1 <= acc.peak_live <= 4 and acc.live == 0


def test_bad_or_missing_block_bundles_are_refused_with_no_output(gram_bundles, tmp_path):
    folder, shapes, calib = gram_bundles
    out = tmp_path / "out"

    def refused(expect, method="sparsegpt", stats=calib):
        result = run("prune", str(folder), "-o", str(out), "--method", method, "--stats", str(stats),
                     "--include", bench_scale.LINEAR)
        assert result.returncode == 2, result.stderr
        assert "prunekit: error:" in result.stderr and re.search(expect, result.stderr), result.stderr
        assert not out.exists() and not leftovers(tmp_path)

    last = calib / "model.layers.2.pkstats"
    original = last.read_bytes()
    last.unlink()     # a block's bundle is missing
    refused(r"model\.layers\.2\..*no statistics for this tensor")
    # A block's statistics of the wrong width (a bundle for another model).
    wrong = {n: prunekit.Stats(SMALL["hidden"] + 4, gram=True) for n, _ in shapes
             if bench_scale.block_of(n) == "model.layers.2" and re.fullmatch(bench_scale.LINEAR, n)}
    for s in wrong.values():
        s.update(np.ones((3, SMALL["hidden"] + 4), np.float32))
    prunekit.save_stats(str(last), wrong)
    refused(r"model\.layers\.2\..*statistics have 36 features, the tensor has (32|96) columns")
    # Without Gram matrices SparseGPT and ADMM cannot run (Wanda can).
    plain = {n: prunekit.Stats(s.features) for n, s in prunekit.load_stats(str(calib / "model.layers.1.pkstats")).items()}
    for s in plain.values():
        s.update(np.ones((3, s.features), np.float32))
    last.write_bytes(original)
    saved_1 = (calib / "model.layers.1.pkstats").read_bytes()
    prunekit.save_stats(str(calib / "model.layers.1.pkstats"), plain)
    refused("needs a Gram matrix", method="admm")
    (calib / "model.layers.1.pkstats").write_bytes(saved_1)
    # A name in two bundles, a truncated bundle, a garbled Gram matrix (found when loaded, mid-run).
    (calib / "copy.pkstats").write_bytes(original)
    refused("is in two bundles")
    (calib / "copy.pkstats").unlink()
    last.write_bytes(original[:-100])
    refused("truncated")
    garbled = bytearray(original)
    garbled[len(garbled) // 2] ^= 0x40
    last.write_bytes(bytes(garbled))
    refused(r"model\.layers\.2\.pkstats: the statistics of")
    last.write_bytes(original)
    refused("no such statistics bundle or folder", stats=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    refused("no .pkstats bundle", stats=tmp_path / "empty")
    # Restored, it runs.
    assert run("prune", str(folder), "-o", str(out), "--method", "sparsegpt", "--stats", str(calib),
               "--include", bench_scale.LINEAR, "--quiet").returncode == 0


def test_direct_reads_give_the_same_bytes_at_any_offset(sharded, tmp_path):
    from prunekit import checkpoint as ck
    folder, _ = sharded
    source = open_checkpoint(str(folder))
    largest = max(t.end - t.begin for t in source)
    buffer = np.empty(largest + 2 * ck.DIRECT_ALIGN + 3, dtype=np.uint8)
    for offset in (0, 1, 2):          # buffer addresses of every alignment (odd ones fall back)
        for t in source:
            plain = ck.read_tensor(source.shard_of[t.name], t)
            direct = ck.read_tensor(source.shard_of[t.name], t, buffer[offset:], direct=True)
            assert direct.dtype == plain.dtype and direct.shape == plain.shape
            assert direct.tobytes() == plain.tobytes(), t.name
    # A shard cut short after the check is reported, not read as zeros.
    shard = source.shards[-1]
    last = max(shard, key=lambda t: t.end)
    with open(shard.path, "r+b") as f:
        f.truncate(shard.data_start + last.end - 3)
    with pytest.raises(st.SafeTensorsError, match="ends before"):
        ck.read_tensor(shard, last, buffer, direct=True)
