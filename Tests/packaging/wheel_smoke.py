"""Runs in a fresh venv where the wheel is the only PruneKit (clean_room.sh): golden masks, a
SparseGPT call and the installed CLI, then checks that no library came from a hidden path.

    wheel_smoke.py VECTORS_DIR HIDDEN_LIST

Exits non-zero (an AssertionError) on any difference; prints one line per check for the test.
"""
import ctypes
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

import prunekit
from prunekit import safetensors

VECTORS, HIDDEN_LIST = sys.argv[1], sys.argv[2]
HIDDEN = [line.strip() for line in open(HIDDEN_LIST) if line.strip()]
VENV = os.path.realpath(sys.prefix)
NUMPY_DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16}
# Libraries that must come from the wheel (or, for numpy's own, from numpy's wheel in the venv).
OURS = re.compile(r"(libprunekit|_prunekit|openblas|libgfortran|libquadmath|libswift|libdispatch|libFoundation)")


def inside_venv(path):
    return os.path.realpath(path).startswith(VENV + os.sep)


# The wheel is what was imported, and the hidden paths really are hidden here.
assert inside_venv(prunekit.__file__), f"prunekit imported from {prunekit.__file__}, not the venv {VENV}"
assert not os.path.exists("/opt/swift/usr/bin/swift"), "the Swift toolchain is visible"
try:
    ctypes.CDLL("libopenblas.so.0")
    raise AssertionError("the system libopenblas.so.0 still loads")
except OSError:
    pass
print(f"prunekit {prunekit.__version__} from {os.path.dirname(prunekit.__file__)}")


def cases(manifest):
    with open(os.path.join(VECTORS, manifest)) as f:
        return [dict(kv.split("=", 1) for kv in line.split()) for line in f if line.strip()]


def layers_of(case):
    out = []
    shapes = zip(*(case[key].split(",") for key in ("rows", "cols", "stride")))
    for i, (rows, cols, stride) in enumerate(shapes):
        base = os.path.join(VECTORS, f"{case['name']}.L{i}")
        padded = np.fromfile(base + ".w.bin", dtype=NUMPY_DTYPES[case["dtype"]]).reshape(int(rows), int(stride))
        layer = {"w": padded[:, :int(cols)],
                 "mask": np.fromfile(base + ".mask.bin", dtype=np.uint8).reshape(int(rows), int(cols))}
        if os.path.exists(base + ".f.bin"):
            layer["f"] = np.fromfile(base + ".f.bin", dtype=np.float32)
        if os.path.exists(base + ".g.bin"):
            layer["g"] = np.fromfile(base + ".g.bin", dtype=NUMPY_DTYPES[case["dtype"]]).reshape(int(rows), int(cols))
        out.append(layer)
    return out


# Every golden mask case with numpy inputs (bfloat16 ones take torch tensors; torch is not here).
golden = [c for c in cases("manifest.txt") if c["dtype"] in NUMPY_DTYPES]
for case in golden:
    layers = layers_of(case)
    pattern = f"{case['n']}:{case['m']}" if case["scope"] == "nm" else None
    kwargs = dict(criterion=case["criterion"], pattern=pattern, scope=case["scope"] if not pattern else "row")
    sparsity, seed = float(case["sparsity"]), int(case["seed"])
    if len(layers) == 1:
        got = [prunekit.mask(layers[0]["w"], sparsity, features=layers[0].get("f"), gradient=layers[0].get("g"),
                             seed=seed, **kwargs)]
    else:
        got = prunekit.masks([l["w"] for l in layers], sparsity, features=[l.get("f") for l in layers],
                             gradients=[l.get("g") for l in layers], seeds=[seed] * len(layers), **kwargs)
    for mask, layer in zip(got, layers):
        np.testing.assert_array_equal(mask.view(np.uint8), layer["mask"], err_msg=case["name"])
print(f"golden masks: {len(golden)} cases equal")

# SparseGPT (OpenBLAS's Cholesky and GEMM, from the copy inside the wheel) against its vectors.
sparsegpt_cases = [c for c in cases("sparsegpt.txt") if c["op"] == "sparsegpt"]
for case in sparsegpt_cases:
    base = os.path.join(VECTORS, "sgpt_" + case["name"])
    rows, cols = int(case["rows"]), int(case["cols"])
    w = np.fromfile(base + ".w.bin", dtype=np.float64).reshape(rows, cols)
    h = np.fromfile(base + ".h.bin", dtype=np.float64).reshape(cols, cols)
    expected = np.fromfile(base + ".out.bin", dtype=np.float64).reshape(rows, cols)
    pattern = f"{case['n']}:{case['m']}" if case["scope"] == "nm" else None
    mask, out = prunekit.sparsegpt(w, h, float(case["sparsity"]), pattern=pattern, block_size=int(case["block"]),
                                   precision="float64")
    np.testing.assert_array_equal(mask.view(np.uint8).ravel(), np.fromfile(base + ".mask.bin", dtype=np.uint8))
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-9 * np.abs(expected).max(), err_msg=case["name"])
print(f"sparsegpt: {len(sparsegpt_cases)} cases equal the reference (float64, 1e-9)")


# The installed console script on a safetensors file holding two golden layers; LD_DEBUG lists
# every library its process initialised.
def largest(predicate):
    chosen = [c for c in golden if predicate(c) and c["layers"] == "1" and c["cols"] == c["stride"]
              and c["criterion"] == "magnitude" and c["dtype"] == "float32"]
    return max(chosen, key=lambda c: int(c["rows"]) * int(c["cols"]))


row_case = largest(lambda c: c["scope"] == "row" and c["sparsity"] == "0.5")
nm_case = largest(lambda c: c["scope"] == "nm" and (c["n"], c["m"]) == ("2", "4"))
cli = os.path.join(sys.prefix, "bin", "prunekit")
loaded = set()
with tempfile.TemporaryDirectory() as work:
    layers = {"row.weight": layers_of(row_case)[0], "nm.weight": layers_of(nm_case)[0]}
    model = os.path.join(work, "model.safetensors")
    safetensors.write(model, {name: ("F32", layer["w"]) for name, layer in layers.items()})
    for name, options in (("row.weight", ["--sparsity", "0.5"]), ("nm.weight", ["--pattern", "2:4"])):
        out = os.path.join(work, name + ".safetensors")
        run = subprocess.run([cli, "prune", model, "-o", out, "--method", "magnitude", "--include", re.escape(name),
                              *options], capture_output=True, text=True, env=dict(os.environ, LD_DEBUG="libs"))
        assert run.returncode == 0, run.stderr[-3000:]
        loaded |= set(re.findall(r"calling init: (\S+)", run.stderr))
        layer = layers[name]
        np.testing.assert_array_equal(safetensors.SafeTensorsFile(out).array(name), layer["w"] * layer["mask"],
                                      err_msg=f"CLI {name}")
    report = subprocess.run([cli, "inspect", os.path.join(work, "nm.weight.safetensors"), "--pattern", "2:4"],
                            capture_output=True, text=True, check=True).stdout
    assert re.search(r"^nm\.weight\s.*\byes$", report, re.M), report
print(f"cli: prune (row 50% on {row_case['name']}, 2:4 on {nm_case['name']}) equals the golden masks; inspect says 2:4")

# Nothing resolved from a hidden path, in this process (/proc/self/maps) or the CLI's (LD_DEBUG).
with open("/proc/self/maps") as f:
    mapped = {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}
mapped = {p for p in mapped if p.startswith("/")}
for where, paths in (("this process", mapped), ("the CLI", loaded)):
    for path in paths:
        real = os.path.realpath(path)
        assert not any(real == h or real.startswith(h + os.sep) for h in HIDDEN), f"{where} mapped {path} (hidden)"
        assert not OURS.search(os.path.basename(path)) or inside_venv(path), f"{where} mapped {path}, outside the venv"
bundled = sorted(os.path.basename(p) for p in mapped if "prunekit.libs" in p)
assert any("openblas" in name for name in bundled), f"no OpenBLAS from prunekit.libs among {sorted(mapped)}"
assert any(p.endswith("prunekit.libs/" + b) for p in loaded for b in bundled if "openblas" in b), sorted(loaded)
print(f"maps: {len(mapped)} files mapped, none hidden; from prunekit.libs: {' '.join(bundled)}")
