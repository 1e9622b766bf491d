"""The safetensors reader/writer and the prunekit command line."""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import prunekit
from prunekit import safetensors as st


def run(*args):
    return subprocess.run([sys.executable, "-m", "prunekit", *args], capture_output=True, text=True)


def bf16_bits(x):
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


@pytest.fixture
def model(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "embed.weight": ("F32", rng.standard_normal((10, 16)).astype(np.float32)),
        "layer.0.fc.weight": ("F32", rng.standard_normal((12, 16)).astype(np.float32)),
        "layer.0.fc.bias": ("F32", rng.standard_normal(12).astype(np.float32)),
        "layer.1.fc.weight": ("F16", rng.standard_normal((8, 12)).astype(np.float16)),
        "layer.2.conv.weight": ("BF16", bf16_bits(rng.standard_normal((6, 2, 2, 2)))),
        "layer.3.count": ("I64", np.arange(6, dtype=np.int64).reshape(2, 3)),
    }
    path = tmp_path / "model.safetensors"
    st.write(str(path), tensors, {"format": "pt"})
    return path, tensors


def raw_bytes(path, name):
    f = st.SafeTensorsFile(str(path))
    return f.array(name).tobytes()


def test_prune_matches_the_python_api_and_keeps_everything_else(model, tmp_path):
    path, tensors = model
    out = tmp_path / "pruned.safetensors"
    result = run("prune", str(path), "-o", str(out), "--sparsity", "0.5", "--exclude", "embed")
    assert result.returncode == 0, result.stderr
    assert "[3/3]" in result.stderr
    original, pruned = st.SafeTensorsFile(str(path)), st.SafeTensorsFile(str(out))
    # The header and every untouched tensor are byte for byte the same.
    assert open(path, "rb").read()[:original.data_start] == open(out, "rb").read()[:pruned.data_start]
    for name in ("embed.weight", "layer.0.fc.bias", "layer.3.count"):
        assert raw_bytes(path, name) == raw_bytes(out, name)
    for name in ("layer.0.fc.weight", "layer.1.fc.weight"):
        w = tensors[name][1]
        expected = w * prunekit.mask(w, 0.5)
        np.testing.assert_array_equal(pruned.array(name), expected)
    conv = tensors["layer.2.conv.weight"][1].reshape(6, -1)
    mask = prunekit.mask(prunekit.bfloat16(conv), 0.5)
    np.testing.assert_array_equal(pruned.array("layer.2.conv.weight").reshape(6, -1), np.where(mask, conv, 0))


def test_patterns_overrides_and_inspect(model, tmp_path):
    path, tensors = model
    out = tmp_path / "p.safetensors"
    result = run("prune", str(path), "-o", str(out), "--pattern", "2:4", "--override", "layer.1=skip",
                 "--override", "embed=sparsity:0.25,scope:layer", "--quiet")
    assert result.returncode == 0, result.stderr
    pruned = st.SafeTensorsFile(str(out))
    assert raw_bytes(path, "layer.1.fc.weight") == raw_bytes(out, "layer.1.fc.weight")
    embed = tensors["embed.weight"][1]
    # The override keeps the 2:4 pattern of the command line unless it sets its own.
    np.testing.assert_array_equal(pruned.array("embed.weight"), embed * prunekit.mask(embed, pattern="2:4"))
    report = run("inspect", str(out), "--pattern", "2:4").stdout
    lines = {line.split()[0]: line.split() for line in report.splitlines()[1:]}
    assert lines["layer.0.fc.weight"][-1] == "yes" and lines["layer.1.fc.weight"][-1] == "no"
    assert float(lines["layer.0.fc.weight"][-2]) == 0.5
    export = tmp_path / "fc.npz"
    assert run("export", str(out), "layer.0.fc.weight", "--format", "2:4", "-o", str(export)).returncode == 0
    saved = np.load(export)
    np.testing.assert_array_equal(prunekit.from_24(saved["values"], saved["metadata"]), pruned.array("layer.0.fc.weight"))
    refused = run("export", str(path), "layer.0.fc.weight", "--format", "2:4", "-o", str(tmp_path / "x.npz"))
    assert refused.returncode == 2 and "not 2:4" in refused.stderr


def test_wanda_and_sparsegpt_with_a_statistics_bundle(model, tmp_path):
    path, tensors = model
    rng = np.random.default_rng(1)
    stats = {}
    for name, cols in (("layer.0.fc.weight", 16), ("layer.1.fc.weight", 12)):
        s = prunekit.Stats(cols, gram=True)
        s.update(rng.standard_normal((64, cols)) @ (np.eye(cols) + 0.3))
        stats[name] = s
    bundle = tmp_path / "calib.pkstats"
    prunekit.save_stats(str(bundle), stats)
    loaded = prunekit.load_stats(str(bundle))
    np.testing.assert_array_equal(loaded["layer.1.fc.weight"].gram(), stats["layer.1.fc.weight"].gram())
    out = tmp_path / "w.safetensors"
    result = run("prune", str(path), "-o", str(out), "--method", "wanda", "--stats", str(bundle), "--include", r"fc\.weight")
    assert result.returncode == 0, result.stderr
    w = tensors["layer.0.fc.weight"][1]
    np.testing.assert_array_equal(st.SafeTensorsFile(str(out)).array("layer.0.fc.weight"),
                                  w * prunekit.mask(w, 0.5, criterion="wanda", features=stats["layer.0.fc.weight"]))
    out2 = tmp_path / "s.safetensors"
    result = run("prune", str(path), "-o", str(out2), "--method", "sparsegpt", "--stats", str(bundle), "--include", r"fc\.weight")
    assert result.returncode == 0, result.stderr
    _, expected = prunekit.sparsegpt(w, stats["layer.0.fc.weight"], 0.5)
    np.testing.assert_array_equal(st.SafeTensorsFile(str(out2)).array("layer.0.fc.weight"), expected)
    # Missing statistics: refused before anything is written.
    out3 = tmp_path / "missing.safetensors"
    result = run("prune", str(path), "-o", str(out3), "--method", "wanda", "--stats", str(bundle))
    assert result.returncode == 2 and "no statistics" in result.stderr and not out3.exists()
    with open(bundle, "r+b") as f:
        f.truncate(os.path.getsize(bundle) - 3)
    with pytest.raises(ValueError, match="truncated"):
        prunekit.load_stats(str(bundle))


def corrupt_variants(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]

    def with_header(h):
        raw = json.dumps(h).encode()
        return struct.pack("<Q", len(raw)) + raw + body

    unknown = json.loads(json.dumps(header))
    unknown["layer.0.fc.bias"]["dtype"] = "F12"
    past_end = json.loads(json.dumps(header))
    past_end["layer.0.fc.bias"]["data_offsets"][1] += 10 ** 6
    overlap = json.loads(json.dumps(header))
    overlap["layer.0.fc.bias"]["data_offsets"] = [0, 48]
    overlap["layer.0.fc.bias"]["shape"] = [12]
    wrong_size = json.loads(json.dumps(header))
    wrong_size["layer.0.fc.bias"]["shape"] = [13]
    return {
        "too short": data[:5],
        "header past end": struct.pack("<Q", 10 ** 9) + data[8:],
        "not json": struct.pack("<Q", 5) + b"{oops" + body,
        "unknown dtype": with_header(unknown),
        "offsets past end": with_header(past_end),
        "overlapping": with_header(overlap),
        "size mismatch": with_header(wrong_size),
        "truncated": data[:-7],
    }


def test_corrupt_files_are_refused_and_leave_no_output(model, tmp_path):
    path, _ = model
    for label, content in corrupt_variants(path).items():
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(content)
        out = tmp_path / "out.safetensors"
        result = run("prune", str(bad), "-o", str(out))
        assert result.returncode == 2, label
        assert "prunekit: error:" in result.stderr, label
        assert not out.exists(), label
        assert not [p for p in os.listdir(tmp_path) if p.startswith(".prunekit-")], label
    # A setting that does not fit one tensor is refused before anything is written.
    out = tmp_path / "half.safetensors"
    result = run("prune", str(path), "-o", str(out), "--pattern", "3:4", "--override", "layer.1=pattern:5:8")
    assert result.returncode == 2 and not out.exists()
