"""prunekit.ray on a local Ray cluster that the test starts (2 CPUs, loopback, no dashboard)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed here (pip install 'prunekit[ray]'): prunekit.ray is not tested")

import prunekit  # noqa: E402
import prunekit.ray as pkray  # noqa: E402
from prunekit import safetensors as st  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "benchmarks"))
import bench_scale  # noqa: E402

SMALL = dict(vocab=64, hidden=32, intermediate=96, layers=3)


@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", object_store_memory=128 * 2 ** 20,
             log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture
def checkpoint(tmp_path):
    folder = tmp_path / "llama"
    shapes = list(bench_scale.llama_shapes(**SMALL))
    bench_scale.write_checkpoint(str(folder), shapes, max_shard_bytes=20000)
    bundle = tmp_path / "wanda.pkstats"
    bench_scale.write_wanda_bundle(str(bundle), shapes, tokens=40)
    return folder, bundle


def activations(batch):
    """A stand-in for a forward pass with hooks: two inputs per batch, from the batch's seed."""
    rng = np.random.default_rng(batch)
    return {"attn": rng.standard_normal((17, 12)).astype(np.float32),
            "mlp": (rng.standard_normal((17, 20)) * 3 + 1).astype(np.float32)}


def cli_prune(folder, out, *options):
    result = subprocess.run([sys.executable, "-m", "prunekit", "prune", str(folder), "-o", str(out), "--quiet", *options],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def same_files(a, b):
    assert sorted(os.listdir(a)) == sorted(os.listdir(b))
    for name in os.listdir(a):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_sharded_calibration_merges_to_the_same_bytes_for_any_number_of_workers(cluster):
    features = {"attn": 12, "mlp": 20}
    batches = list(range(11))
    local = pkray.calibrate(activations, batches, features=features, gram=True, batches_per_task=2, local=True)
    for workers in (1, 2, None):
        # The leaf tasks run `workers` at a time (None: as Ray schedules them); the tree of merges is fixed.
        merged = pkray.calibrate(activations, batches, features=features, gram=True, batches_per_task=2, workers=workers)
        for name in features:
            assert merged[name].to_bytes() == local[name].to_bytes(), (workers, name)
    # The tree gives the statistics of one pass over all the data (to float64 round-off).
    one = prunekit.Stats(20, gram=True)
    for b in batches:
        one.update(activations(b)["mlp"])
    assert local["mlp"].count == one.count == 17 * len(batches)
    np.testing.assert_allclose(local["mlp"].mean(), one.mean(), rtol=1e-12)
    np.testing.assert_allclose(local["mlp"].gram(), one.gram(), rtol=1e-12)
    assert pkray.merge_tree(["a", "b", "c", "d", "e"], lambda x, y: f"({x}{y})") == "(((ab)(cd))e)"


def test_parallel_pruning_is_the_single_process_cli_byte_for_byte(cluster, checkpoint, tmp_path):
    folder, bundle = checkpoint
    calib = tmp_path / "calib"     # per-block Gram bundles, as for the CLI
    bench_scale.write_gram_bundles(str(calib), list(bench_scale.llama_shapes(**SMALL)), tokens=40)
    for label, options, kwargs, per_block in (
            ("wanda", ["--method", "wanda", "--stats", str(bundle)], dict(method="wanda", stats=str(bundle)), 7),
            ("sparsegpt", ["--method", "sparsegpt", "--stats", str(calib)], dict(method="sparsegpt", stats=str(calib)), 7),
            ("mixed", ["--sparsity", "0.6", "--scope", "layer", "--override", "o_proj=pattern:2:4", "--override", "down_proj=skip"],
             dict(sparsity=0.6, scope="layer", override=["o_proj=pattern:2:4", "down_proj=skip"]), 6)):
        expected, parallel = tmp_path / f"cli-{label}", tmp_path / f"ray-{label}"
        cli_prune(folder, expected, "--include", bench_scale.LINEAR, *options)
        reached = pkray.prune_checkpoint(str(folder), str(parallel), include=[bench_scale.LINEAR], quiet=True, **kwargs)
        assert len(reached) == per_block * SMALL["layers"]
        same_files(expected, parallel)
        shards = [n for n in os.listdir(folder) if n.endswith(".safetensors")]
        assert sum((parallel / n).read_bytes() != (folder / n).read_bytes() for n in shards) >= 2  # pruned, not copied


def test_a_killed_task_is_retried_and_gives_the_same_checkpoint(cluster, checkpoint, tmp_path):
    folder, _ = checkpoint
    expected, parallel = tmp_path / "cli", tmp_path / "ray"
    cli_prune(folder, expected, "--pattern", "2:4", "--include", bench_scale.LINEAR)
    marker = str(tmp_path / "killed")
    target = "model.layers.1.mlp.up_proj.weight"

    def kill_once(name):
        if name == target and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # the worker process dies after writing: Ray sees a crashed worker

    pkray.prune_checkpoint(str(folder), str(parallel), pattern="2:4", include=[bench_scale.LINEAR], quiet=True,
                           _after_write=kill_once)
    assert os.path.exists(marker)
    same_files(expected, parallel)


def test_a_failed_run_leaves_no_output(cluster, checkpoint, tmp_path):
    folder, _ = checkpoint
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    name = "model.layers.1.self_attn.o_proj.weight"
    shard = st.SafeTensorsFile(str(folder / index["weight_map"][name]))
    with open(shard.path, "r+b") as f:  # a bfloat16 NaN: the library refuses this tensor
        f.seek(shard.data_start + shard.tensors[name].begin)
        f.write(np.uint16(0x7FC0).tobytes())
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=rf"{re.escape(name)}|row 0, column 0 is nan"):
        pkray.prune_checkpoint(str(folder), str(out), include=[bench_scale.LINEAR], quiet=True)
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".prunekit-")]
    # Options are checked before any task runs, as the CLI checks them.
    with pytest.raises(ValueError, match="needs --stats"):
        pkray.prune_checkpoint(str(folder), str(out), method="wanda", quiet=True)
    assert not out.exists()
