"""Second-order pruning: SparseGPT, reconstruction under a mask, column compensation, Gram stats."""
import os

import numpy as np
import pytest

import prunekit
import sparsegpt_reference as ref
from conftest import VECTORS, results_per_environment


def load_cases():
    with open(os.path.join(VECTORS, "sparsegpt.txt")) as f:
        return [dict(kv.split("=", 1) for kv in line.split()) for line in f if line.strip()]


CASES = load_cases()


def files(case):
    base = os.path.join(VECTORS, "sgpt_" + case["name"])
    rows, cols = int(case["rows"]), int(case["cols"])
    read = lambda suffix, dtype=np.float64: np.fromfile(base + suffix, dtype=dtype)  # noqa: E731
    out = {"w": read(".w.bin").reshape(rows, cols), "h": read(".h.bin").reshape(cols, cols),
           "out": read(".out.bin").reshape(rows, cols)}
    for suffix, key in ((".given.bin", "given"), (".mask.bin", "mask")):
        if os.path.exists(base + suffix):
            out[key] = read(suffix, np.uint8)
    return out


def run_case(case, f, precision, weight=None):
    w = f["w"] if weight is None else weight
    block = int(case["block"])
    if case["op"] == "sparsegpt":
        pattern = f"{case['n']}:{case['m']}" if case["scope"] == "nm" else None
        return prunekit.sparsegpt(w, f["h"], float(case["sparsity"]), pattern=pattern, block_size=block, precision=precision)
    if case["op"] == "reconstruct":
        return None, prunekit.reconstruct(w, f["h"], f["given"].reshape(w.shape), block_size=block, precision=precision)
    return None, prunekit.prune_columns(w, f["h"], f["given"], precision=precision)


@pytest.mark.parametrize("precision,rtol", [("float64", 1e-9), ("float32", 1e-4)])
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_vectors(case, precision, rtol):
    f = files(case)
    weight = f["w"] if precision == "float64" else f["w"].astype(np.float32)
    mask, out = run_case(case, f, precision, weight)
    if "mask" in f:
        np.testing.assert_array_equal(mask.view(np.uint8).ravel(), f["mask"])
    scale = np.abs(f["out"]).max()
    np.testing.assert_allclose(out, f["out"], rtol=0, atol=rtol * scale)


def correlated(rng, rows, cols, tokens):
    x = rng.standard_normal((tokens, cols)) @ (np.eye(cols) + rng.standard_normal((cols, cols)) / np.sqrt(cols))
    x *= rng.uniform(0.1, 4, cols)
    return rng.standard_normal((rows, cols)).astype(np.float32), x


def output_error(w, w2, x):
    return np.linalg.norm((w.astype(np.float64) - w2) @ x.T)


@pytest.mark.parametrize("kwargs", [dict(sparsity=0.5), dict(sparsity=0.7), dict(pattern="2:4"), dict(pattern="4:8")])
def test_reconstruction_beats_the_same_mask_without_it(kwargs):
    rng = np.random.default_rng(1)
    w, x = correlated(rng, 64, 256, 1024)
    stats = prunekit.Stats(256, gram=True)
    for batch in np.array_split(x, 5):
        stats.update(batch)
    mask, updated = prunekit.sparsegpt(w, stats, block_size=64, **kwargs)
    assert updated.dtype == w.dtype and (updated[~mask] == 0).all()
    assert output_error(w, updated, x) < output_error(w, w * mask, x)
    # Any criterion's mask gets the update too.
    wanda = prunekit.mask(w, 0.5, criterion="wanda", features=stats)
    fixed = prunekit.reconstruct(w, stats, wanda, block_size=64)
    assert (fixed[~wanda] == 0).all()
    assert output_error(w, fixed, x) < output_error(w, w * wanda, x)


def test_mask_structure():
    rng = np.random.default_rng(2)
    w, x = correlated(rng, 20, 96, 300)
    h = x.T @ x
    mask, _ = prunekit.sparsegpt(w, h, 0.37, block_size=32)
    for b in range(3):  # exact count in every block of columns
        assert (~mask[:, 32 * b:32 * (b + 1)]).sum() == int(20 * 32 * 0.37)
    mask, _ = prunekit.sparsegpt(w, h, pattern="2:4", block_size=32)
    assert (mask.reshape(20, 24, 4).sum(-1) == 2).all()


def test_threads_and_in_place():
    rng = np.random.default_rng(3)
    w, x = correlated(rng, 48, 64, 200)
    h = x.T @ x
    m1, w1 = prunekit.sparsegpt(w, h, 0.5, block_size=16, threads=1)
    m4, w4 = prunekit.sparsegpt(w, h, 0.5, block_size=16, threads=4)
    assert np.array_equal(m1, m4) and np.array_equal(w1, w4)
    inplace = w.copy()
    m, result = prunekit.sparsegpt(inplace, h, 0.5, block_size=16, out=inplace)
    assert result is inplace and np.array_equal(inplace, w1)
    f16 = w.astype(np.float16)
    _, out16 = prunekit.sparsegpt(f16, h, 0.5, block_size=16)
    assert out16.dtype == np.float16


def test_gram_statistics_merge_and_round_trip():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 20))
    a, b = prunekit.Stats(20, gram=True), prunekit.Stats(20, gram=True)
    a.update(x[:120])
    b.update(x[120:].astype(np.float32))
    a.merge(b)
    exact = x.copy()
    exact[120:] = x[120:].astype(np.float32)
    np.testing.assert_allclose(a.gram(), exact.T @ exact, rtol=1e-12)
    restored = prunekit.Stats.from_bytes(a.to_bytes())
    np.testing.assert_array_equal(restored.gram(), a.gram())
    with pytest.raises(ValueError, match="Gram"):
        prunekit.Stats(20).gram()
    with pytest.raises(ValueError, match="with and without"):
        a.merge(prunekit.Stats(20))


def test_inputs_that_never_fire():
    rng = np.random.default_rng(5)
    w, x = correlated(rng, 8, 16, 100)
    x[:, 5] = 0
    mask, updated = prunekit.sparsegpt(w, x.T @ x, 0.25, block_size=8, precision="float64")
    assert np.isfinite(updated).all() and (updated[:, 5] == 0).all()


def test_bad_input_changes_nothing():
    rng = np.random.default_rng(6)
    w, x = correlated(rng, 8, 16, 100)
    h = x.T @ x
    before = w.copy()
    bad = []
    asym = h.copy()
    asym[2, 3] += 1.0
    nan_h = h.copy()
    nan_h[4, 4] = np.nan
    indefinite = np.eye(16)
    indefinite[0, 1] = indefinite[1, 0] = 1000.0
    nan_w = w.copy()
    nan_w[1, 2] = np.inf
    cases = [
        (lambda: prunekit.sparsegpt(w, h[:15, :15], out=w), ValueError, "shape"),
        (lambda: prunekit.sparsegpt(w, asym, out=w), ValueError, "not symmetric"),
        (lambda: prunekit.sparsegpt(w, nan_h, out=w), ValueError, "nan"),
        (lambda: prunekit.sparsegpt(w, indefinite, out=w), ArithmeticError, "not positive definite"),
        (lambda: prunekit.sparsegpt(w, indefinite, max_retries=0, out=w), ArithmeticError, "0 dampening retries"),
        (lambda: prunekit.sparsegpt(w, h, block_size=0, out=w), ValueError, "block"),
        (lambda: prunekit.sparsegpt(w, h, pattern="2:4", block_size=6, out=w), ValueError, "block size"),
        (lambda: prunekit.sparsegpt(w, h, 1.5, out=w), ValueError, "sparsity"),
        (lambda: prunekit.sparsegpt(w, h, precision="float16", out=w), ValueError, "precision"),
        (lambda: prunekit.sparsegpt(nan_w, h), ValueError, "row 1, column 2"),
        (lambda: prunekit.reconstruct(w, h, np.ones((8, 15), bool), out=w), ValueError, "mask"),
        (lambda: prunekit.reconstruct(w, h, np.full((8, 16), 2, np.uint8), out=w), ValueError, "mask byte"),
        (lambda: prunekit.prune_columns(w, h, np.ones(15, np.uint8), out=w), ValueError, "keep"),
        (lambda: prunekit.sparsegpt(w, h, out=np.zeros((8, 15), np.float32)), ValueError, "out"),
    ]
    for call, error, text in cases:
        with pytest.raises(error, match=text):
            call()
        assert np.array_equal(w, before)
    assert not bad


def test_column_pruning_is_least_squares():
    rng = np.random.default_rng(7)
    w, x = correlated(rng, 6, 24, 400)
    w = w.astype(np.float64)
    h = x.T @ x
    keep = np.ones(24, bool)
    keep[[1, 5, 9, 20]] = False
    out = prunekit.prune_columns(w, h, keep, dampening=0.0, precision="float64")
    assert (out[:, ~keep] == 0).all()
    # Optimal: the gradient of ||(W - W') X^T||^2 over the kept columns vanishes.
    gradient = (w.astype(np.float64) - out) @ h
    assert np.abs(gradient[:, keep]).max() < 1e-8 * np.abs(w @ h).max()
    assert output_error(w, out, x) < output_error(w, w * keep, x)


def test_openblas_thread_count_changes_at_most_round_off(tmp_path):
    """OpenBLAS reads OPENBLAS_NUM_THREADS at load, so each count runs in its own process."""
    script = (
        "import numpy as np, prunekit, sys\n"
        "rng = np.random.default_rng(11)\n"
        "x = rng.standard_normal((600, 192)); x[:, 1:] += 0.5 * x[:, :-1]\n"
        "w = rng.standard_normal((96, 192)).astype(np.float32)\n"
        "m, out = prunekit.sparsegpt(w, x.T @ x, 0.5, block_size=32)\n"
        "m24, out24 = prunekit.sparsegpt(w, x.T @ x, pattern='2:4', block_size=32)\n"
        "np.savez(sys.argv[1], m=m, out=out, m24=m24, out24=out24)\n"
    )
    one, two = results_per_environment(script, tmp_path, "OPENBLAS_NUM_THREADS", ("1", "2"))
    assert np.array_equal(one["m"], two["m"]) and np.array_equal(one["m24"], two["m24"])
    for key in ("out", "out24"):
        np.testing.assert_allclose(one[key], two[key], rtol=0, atol=1e-5 * np.abs(one[key]).max())


def test_wide_and_baseline_kernels_give_the_same_bytes(tmp_path):
    """SparseGPT's in-block updates run as an AVX2 kernel where the CPU has it; PRUNEKIT_SIMD=
    baseline forces the baseline loop. Both do the same roundings, so masks and weights are the
    same bytes (same machine, same OpenBLAS). Each setting runs in its own process."""
    script = (
        "import numpy as np, prunekit, sys\n"
        "rng = np.random.default_rng(12)\n"
        "x = rng.standard_normal((700, 200)); x[:, 1:] += 0.5 * x[:, :-1]\n"
        "w = rng.standard_normal((90, 200)).astype(np.float32)\n"
        "out = {}\n"
        "for p in ('float32', 'float64'):\n"
        "    out['m' + p], out['w' + p] = prunekit.sparsegpt(w, x.T @ x, 0.5, block_size=64, precision=p)\n"
        "    out['n' + p], out['v' + p] = prunekit.sparsegpt(w, x.T @ x, pattern='2:4', block_size=40, precision=p)\n"
        "np.savez(sys.argv[1], **out)\n"
    )
    baseline, default = results_per_environment(script, tmp_path, "PRUNEKIT_SIMD", ("baseline", "default"))
    assert sorted(baseline.files) == sorted(default.files) and len(baseline.files) == 8
    for key in baseline.files:
        assert baseline[key].tobytes() == default[key].tobytes(), key


def test_the_first_bad_hessian_entry_is_reported_whatever_the_threads():
    """The symmetry check runs 64 x 64 tile rows on several workers; the error names the entry a
    serial scan meets first (lowest tile row, then position), for any thread count."""
    rng = np.random.default_rng(8)
    w, x = correlated(rng, 8, 300, 400)
    h = x.T @ x
    h[130, 250] += 1.0     # tile row 2
    h[70, 280] += 1.0      # tile row 1: met first
    h[200, 201] = np.nan   # tile row 3
    messages = set()
    for threads in (1, 2, 3, 5):
        with pytest.raises(ValueError) as caught:
            prunekit.sparsegpt(w, h, threads=threads)
        messages.add(str(caught.value))
    assert len(messages) == 1
    assert "(70, 280)" in messages.pop()


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_zero_sparsity_keeps_everything_unchanged(precision):
    rng = np.random.default_rng(9)
    w, x = correlated(rng, 40, 96, 300)
    # Earlier calls leave freed scratch memory with nonzero contents for the next one to reuse.
    prunekit.sparsegpt(w, x.T @ x, 0.5, block_size=32, precision=precision)
    mask, out = prunekit.sparsegpt(w, x.T @ x, 0.0, block_size=32, precision=precision)
    assert mask.all()
    np.testing.assert_array_equal(out, w)


@pytest.mark.parametrize("op", ["sparsegpt", "reconstruct", "prune_columns"])
def test_float16_overflow_is_an_error_and_changes_nothing(op):
    """Two nearly collinear inputs move 30000 onto 60000: past float16's 65504. ArithmeticError
    (PK_ERROR_NUMERIC), the weights untouched in place, nothing returned (was: Inf written)."""
    w = np.array([[30000.0, 60000.0]], dtype=np.float16)
    h = np.array([[1.0, 0.999], [0.999, 1.0]])
    before = w.copy()
    with pytest.raises(ArithmeticError, match="overflows the output's float16"):
        if op == "sparsegpt":
            prunekit.sparsegpt(w, h, 0.5, out=w)
        elif op == "reconstruct":
            prunekit.reconstruct(w, h, np.array([[0, 1]], dtype=bool), out=w)
        else:
            prunekit.prune_columns(w, h, np.array([1, 0], dtype=bool), out=w)
    assert np.array_equal(w, before)


def test_stats_refuse_squares_that_overflow_and_stay_serializable():
    """float64 activations of 1e200 square to inf: refused before the accumulator changes, so its
    bytes still load (was: an inf L2 norm with no error, then bytes from_bytes refused)."""
    stats = prunekit.Stats(features=2)
    stats.update(np.array([[1.0, 2.0]]))
    with pytest.raises(ArithmeticError, match="sum of squares"):
        stats.update(np.array([[1e200, 1.0]]))
    assert stats.count == 1
    assert np.isfinite(stats.l2_norm()).all()
    assert prunekit.Stats.from_bytes(stats.to_bytes()).count == 1
