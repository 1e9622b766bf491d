"""The golden vectors through the Python API, and the vectors' own reproducibility."""
import filecmp
import os

import numpy as np
import pytest
try:
    import torch
except ImportError:  # bfloat16 cases need torch tensors as inputs
    torch = None

import generate
import generate_admm
import generate_permutation
import prunekit
from conftest import VECTORS

NUMPY_DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "bfloat16": np.uint16}


def load_cases():
    cases = []
    with open(os.path.join(VECTORS, "manifest.txt")) as f:
        for line in f:
            fields = dict(kv.split("=", 1) for kv in line.split())
            cases.append(fields)
    return cases


CASES = load_cases()


def as_input(array, dtype):
    """numpy for the numpy dtypes; a bfloat16 torch tensor (sharing memory) for bfloat16."""
    if dtype == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return array


def layers_of(case):
    dtype = case["dtype"]
    rows = [int(x) for x in case["rows"].split(",")]
    cols = [int(x) for x in case["cols"].split(",")]
    strides = [int(x) for x in case["stride"].split(",")]
    out = []
    for i, (r, c, s) in enumerate(zip(rows, cols, strides)):
        base = os.path.join(VECTORS, f"{case['name']}.L{i}")
        padded = np.fromfile(base + ".w.bin", dtype=NUMPY_DTYPES[dtype]).reshape(r, s)
        layer = {"w": as_input(padded[:, :c], dtype),  # a strided view: read in place
                 "mask": np.fromfile(base + ".mask.bin", dtype=np.uint8).reshape(r, c)}
        if os.path.exists(base + ".f.bin"):
            layer["f"] = np.fromfile(base + ".f.bin", dtype=np.float32)
        if os.path.exists(base + ".g.bin"):
            layer["g"] = as_input(np.fromfile(base + ".g.bin", dtype=NUMPY_DTYPES[dtype]).reshape(r, c), dtype)
        out.append(layer)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_masks_equal_reference(case):
    if case["dtype"] == "bfloat16" and torch is None:
        pytest.skip("bfloat16 inputs are passed as torch tensors; torch is not installed")
    layers = layers_of(case)
    pattern = f"{case['n']}:{case['m']}" if case["scope"] == "nm" else None
    kwargs = dict(criterion=case["criterion"], pattern=pattern, scope=case["scope"] if not pattern else "row")
    sparsity = float(case["sparsity"])
    if len(layers) == 1:
        l = layers[0]
        got = [prunekit.mask(l["w"], sparsity, features=l.get("f"), gradient=l.get("g"), seed=int(case["seed"]), **kwargs)]
    else:
        got = prunekit.masks([l["w"] for l in layers], sparsity, features=[l.get("f") for l in layers],
                             gradients=[l.get("g") for l in layers], seeds=[int(case["seed"])] * len(layers), **kwargs)
    for i, (mask, layer) in enumerate(zip(got, layers)):
        assert mask.dtype == np.bool_
        np.testing.assert_array_equal(mask.view(np.uint8), layer["mask"], err_msg=f"layer {i}")


def test_vectors_reproduce_from_the_reference(tmp_path):
    """The committed vectors are exactly what the numpy reference generates."""
    count = generate.generate(str(tmp_path))
    assert count == len(CASES)
    generate_admm.main(str(tmp_path))
    generate_permutation.main(str(tmp_path))
    names = sorted(os.listdir(tmp_path))
    assert names == sorted(n for n in os.listdir(VECTORS) if n.endswith((".bin", ".txt")))
    exact = [n for n in names if not (n.startswith(("sgpt_", "admm_")) and n.endswith((".out.bin", ".h.bin")))]
    match, mismatch, errors = filecmp.cmpfiles(VECTORS, tmp_path, exact, shallow=False)
    assert not mismatch and not errors
    # Float64 linear algebra may differ in the last bits between BLAS builds.
    for name in set(names) - set(exact):
        a = np.fromfile(os.path.join(VECTORS, name))
        b = np.fromfile(os.path.join(tmp_path, name))
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * np.abs(a).max(), err_msg=name)
