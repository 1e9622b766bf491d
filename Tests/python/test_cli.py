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


# ------------------------------------------------------------------------------------------
# Faults and careless input (issue 18)

def leftovers(folder):
    return sorted(p for p in os.listdir(folder) if p.startswith(".prunekit-"))


def test_empty_tensors_are_skipped_and_copied_not_fatal(tmp_path):
    w = np.random.default_rng(2).standard_normal((8, 16)).astype(np.float32)
    path = tmp_path / "empty.safetensors"
    st.write(str(path), {"a.weight": ("F32", w), "rows0.weight": ("F32", np.zeros((0, 16), np.float32)),
                         "cols0.weight": ("F16", np.zeros((8, 0), np.float16)),
                         "conv0.weight": ("BF16", np.zeros((4, 0, 3), np.uint16))})
    out = tmp_path / "out.safetensors"
    result = run("prune", str(path), "-o", str(out), "--pattern", "2:4")
    assert result.returncode == 0, result.stderr
    for name in ("rows0.weight", "cols0.weight", "conv0.weight"):
        assert f"skipping {name}" in result.stderr and "empty" in result.stderr
    assert "[1/1] a.weight" in result.stderr
    pruned = st.SafeTensorsFile(str(out))
    np.testing.assert_array_equal(pruned.array("a.weight"), w * prunekit.mask(w, pattern="2:4"))
    assert pruned.array("cols0.weight").shape == (8, 0)
    report = run("inspect", str(out))
    assert report.returncode == 0, report.stderr
    rows = {line.split()[0]: line.split() for line in report.stdout.splitlines()[1:]}
    assert rows["rows0.weight"][-1] == "-" and rows["a.weight"][-1] == "yes"
    refused = run("export", str(out), "cols0.weight", "--format", "csr", "-o", str(tmp_path / "e.npz"))
    assert refused.returncode == 2 and "empty" in refused.stderr and not (tmp_path / "e.npz").exists()
    only_empty = run("prune", str(path), "-o", str(tmp_path / "none.safetensors"), "--include", "0")
    assert only_empty.returncode == 2 and "nothing to prune" in only_empty.stderr


def test_data_that_is_not_aligned_is_pruned(tmp_path):
    # A header length that is not a multiple of 8 (safetensors allows it) puts every tensor's
    # data at an odd address of a memory map.
    w = np.random.default_rng(3).standard_normal((4, 8)).astype(np.float32)
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, w.nbytes]}}).encode() + b" "
    assert len(header) % 4
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + w.tobytes())
    assert not st.SafeTensorsFile(str(path)).array("w").flags.aligned
    out = tmp_path / "out.safetensors"
    result = run("prune", str(path), "-o", str(out))
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(st.SafeTensorsFile(str(out)).array("w"), w * prunekit.mask(w, 0.5))
    assert run("export", str(path), "w", "--format", "bitmask", "-o", str(tmp_path / "w.npz")).returncode == 0


@pytest.mark.parametrize("args, expected", [
    (["--include", "("], "not a regular expression"),
    (["--exclude", "[z-a]"], "not a regular expression"),
    (["--override", "(=skip"], "not a regular expression"),
    (["--pattern", "abc"], "expected N:M"),
    (["--pattern", "2:4:8"], "expected N:M"),
    (["--pattern", "4:2"], "expected N:M"),
    (["--override", "layer=sparsity:abc"], "not a number"),
    (["--override", "layer=scope:xyz"], "unknown scope"),
    (["--override", "layer=pattern:x"], "expected N:M"),
    (["--override", "layer=method:nope"], "unknown method"),
    (["--threads", "-5"], "outside"),
    (["--seed", "-1"], "outside"),
    (["--seed", "1.5"], "not an integer"),
])
def test_bad_options_are_refused_in_words_before_anything_is_written(model, tmp_path, args, expected):
    path, _ = model
    out = tmp_path / "o.safetensors"
    result = run("prune", str(path), "-o", str(out), *args)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr
    for raw in ("invalid literal", "unpack", "could not convert", "unhashable"):
        assert raw not in result.stderr
    assert not out.exists() and not leftovers(tmp_path)


def test_inspect_refuses_a_bad_pattern_and_stops_quietly_on_a_closed_pipe(model):
    path, _ = model
    result = run("inspect", str(path), "--pattern", "x")
    assert result.returncode == 2 and "expected N:M" in result.stderr
    piped = subprocess.run(f"{sys.executable} -m prunekit inspect {path} | head -c 10 > /dev/null", shell=True,
                           capture_output=True, text=True)
    assert "Traceback" not in piped.stderr and "Broken pipe" not in piped.stderr


def test_outputs_get_the_umask_mode_and_an_in_place_run_keeps_the_input_mode(model, tmp_path):
    path, _ = model
    out = tmp_path / "new.safetensors"
    for umask, mode in ((0o022, 0o644), (0o027, 0o640), (0o077, 0o600)):
        result = subprocess.run([sys.executable, "-m", "prunekit", "prune", str(path), "-o", str(out), "--quiet"],
                                capture_output=True, text=True, umask=umask)
        assert result.returncode == 0, result.stderr
        assert os.stat(out).st_mode & 0o7777 == mode, (oct(umask), oct(os.stat(out).st_mode))
        out.unlink()
    os.chmod(path, 0o604)
    before = os.stat(path).st_ino
    result = subprocess.run([sys.executable, "-m", "prunekit", "prune", str(path), "-o", str(path), "--quiet"],
                            capture_output=True, text=True, umask=0o077)
    assert result.returncode == 0, result.stderr
    assert os.stat(path).st_mode & 0o7777 == 0o604 and os.stat(path).st_ino != before
    export = tmp_path / "w"
    assert subprocess.run([sys.executable, "-m", "prunekit", "export", str(path), "layer.0.fc.weight", "--format",
                           "csr", "-o", str(export)], umask=0o027, capture_output=True).returncode == 0
    assert os.stat(tmp_path / "w.npz").st_mode & 0o7777 == 0o640
    folder, pruned = tmp_path / "folder", tmp_path / "pruned"
    folder.mkdir()
    os.replace(path, folder / "model.safetensors")
    result = subprocess.run([sys.executable, "-m", "prunekit", "prune", str(folder), "-o", str(pruned), "--quiet"],
                            capture_output=True, text=True, umask=0o027)
    assert result.returncode == 0, result.stderr
    assert os.stat(pruned).st_mode & 0o7777 == 0o750
    assert os.stat(pruned / "model.safetensors").st_mode & 0o7777 == 0o640
    assert not leftovers(tmp_path)


# A run that stops in the middle of writing: prune_tensor waits for a signal once the output's
# temporary file holds every byte (full size, untouched tensors copied).
STOPPED = """
import sys, time
import prunekit.cli as cli, prunekit.safetensors as st
st.USE_UNNAMED_TEMPORARY = {unnamed}
def wait(*args, **kwargs):
    open({ready!r}, "w").close()
    time.sleep(120)
cli.prune_tensor = wait
sys.exit(cli.main(sys.argv[1:]))
"""


def stopped_run(tmp_path, source, output, signum, unnamed):
    import signal
    import time
    ready = tmp_path / "ready"
    if ready.exists():
        ready.unlink()
    process = subprocess.Popen([sys.executable, "-c", STOPPED.format(unnamed=unnamed, ready=str(ready)), "prune",
                                str(source), "-o", str(output)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.02)
    os.kill(process.pid, signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == -signum, err
    return err


@pytest.mark.parametrize("unnamed", [True, False])
@pytest.mark.parametrize("shape", ["file", "folder"])
def test_sigterm_mid_write_leaves_nothing(model, tmp_path, unnamed, shape):
    import signal
    path, _ = model
    work = tmp_path / "work"
    work.mkdir()
    if shape == "folder":
        source = tmp_path / "in"
        source.mkdir()
        os.replace(path, source / "model.safetensors")
    else:
        source = path
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        err = stopped_run(tmp_path, source, work / "out", signum, unnamed)
        assert f"stopped by {signal.Signals(signum).name}" in err and "Traceback" not in err, err
        assert os.listdir(work) == [], os.listdir(work)


@pytest.mark.parametrize("shape", ["file", "folder"])
def test_sigkill_mid_write_leaves_nothing_or_what_the_next_run_removes(model, tmp_path, shape):
    import signal
    path, _ = model
    work = tmp_path / "work"
    work.mkdir()
    if shape == "folder":
        source = tmp_path / "in"
        source.mkdir()
        os.replace(path, source / "model.safetensors")
    else:
        source = path
    size = os.path.getsize(source / "model.safetensors" if shape == "folder" else source)
    if shape == "file":
        # Where files can be unnamed (O_TMPFILE, here), a killed run leaves nothing at all.
        assert st.USE_UNNAMED_TEMPORARY
        stopped_run(tmp_path, source, work / "out", signal.SIGKILL, True)
        assert os.listdir(work) == []
    # Elsewhere (and for folders) the temporary names its process and host ...
    stopped_run(tmp_path, source, work / "out", signal.SIGKILL, False)
    (stale,) = os.listdir(work)
    assert stale.startswith(".prunekit-") and stale.endswith(".tmp")
    full = work / stale if shape == "file" else work / stale / "model.safetensors"
    assert os.path.getsize(full) == size                  # the full-size file the issue saw
    # ... so the next run in that folder removes it, and says so; a live process's is kept.
    live = work / f".prunekit-{os.getpid()}-0123abcd.{st._host()}.tmp"
    live.write_bytes(b"in use")
    result = run("prune", str(source), "-o", str(work / "out"))
    assert result.returncode == 0, result.stderr
    assert f"removed {work / stale}" in result.stderr
    assert sorted(os.listdir(work)) == sorted([live.name, "out"])
