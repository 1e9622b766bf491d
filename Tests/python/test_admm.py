"""ADMM pruning with weight updates: against the independent float64 reference, invariants,
quality against SparseGPT, determinism, scale invariance and bad input."""
import numpy as np
import pytest

import prunekit
import admm_reference as ref


def correlated_layer(rng, rows, cols, tokens=None, dead=()):
    """Weights and X^T X of correlated inputs of very different scales."""
    tokens = tokens or 4 * cols
    mix = rng.standard_normal((cols, cols)) / np.sqrt(cols) + np.eye(cols)
    x = rng.standard_normal((tokens, cols)) @ mix * rng.uniform(0.1, 3.0, cols)
    x[:, list(dead)] = 0
    w = rng.standard_normal((rows, cols))
    return w, x.T @ x


SCOPES = [dict(scope="layer"), dict(scope="row"), dict(pattern="2:4")]


def reference_options(kw):
    if "pattern" in kw:
        return dict(scope="nm", n=2, m=4)
    return dict(scope=kw["scope"])


@pytest.mark.parametrize("kw", SCOPES, ids=["layer", "row", "2:4"])
@pytest.mark.parametrize("shape", [(8, 16), (24, 32)])
def test_float64_matches_the_reference(kw, shape):
    rng = np.random.default_rng(shape[0] + len(kw.get("scope", "")))
    w, h = correlated_layer(rng, *shape, dead=(3,))
    mask, out = prunekit.admm(w, h, 0.5, precision="float64", iterations=12, ramp_iterations=8,
                              refine_iterations=5, **kw)
    ref_mask, ref_out = ref.admm(w, h, sparsity=0.5, iterations=12, ramp=8, refine=5, **reference_options(kw))
    np.testing.assert_array_equal(mask, ref_mask)
    np.testing.assert_allclose(out, ref_out, rtol=1e-6, atol=1e-9 * np.abs(ref_out).max())
    assert not out[:, 3].any()  # an input that never fires loses its weights


def test_rho_schedule_and_given_mask_match_the_reference():
    rng = np.random.default_rng(5)
    w, h = correlated_layer(rng, 12, 16)
    mask, out = prunekit.admm(w, h, 0.6, precision="float64", iterations=10, ramp_iterations=6, rho=0.3,
                              rho_growth=1.5, rho_interval=2, refine_iterations=0, dampening=0.05)
    ref_mask, ref_out = ref.admm(w, h, sparsity=0.6, iterations=10, ramp=6, rho=0.3, rho_growth=1.5, rho_interval=2,
                                 refine=0, dampening=0.05)
    np.testing.assert_array_equal(mask, ref_mask)
    np.testing.assert_allclose(out, ref_out, rtol=1e-6, atol=1e-9 * np.abs(ref_out).max())
    given = prunekit.mask(w, 0.5, criterion="magnitude")
    kept_mask, kept = prunekit.admm(w, h, mask=given, precision="float64", iterations=8)
    np.testing.assert_array_equal(kept_mask, given)
    _, ref_kept = ref.admm(w, h, iterations=8, mask=given)
    np.testing.assert_allclose(kept, ref_kept, rtol=1e-6, atol=1e-9 * np.abs(ref_kept).max())
    assert not kept[~given].any()


def test_counts_and_patterns_are_exact():
    rng = np.random.default_rng(1)
    w, h = correlated_layer(rng, 20, 24)
    mask, out = prunekit.admm(w.astype(np.float32), h, 0.7)
    assert (~mask).sum() == int(0.7 * w.size) and not out[~mask].any()
    mask, _ = prunekit.admm(w, h, 0.3, scope="row")
    assert ((~mask).sum(1) == int(0.3 * 24)).all()
    mask, _ = prunekit.admm(w, h, pattern="2:4")
    assert (mask.reshape(20, 6, 4).sum(2) == 2).all()
    mask, _ = prunekit.admm(w, h, pattern="1:3", ramp_iterations=0)
    assert (mask.reshape(20, 8, 3).sum(2) == 1).all()


@pytest.mark.parametrize("pattern", [None, "2:4"])
def test_layer_error_below_sparsegpt(pattern):
    """On random correlated layers ADMM's output error is below SparseGPT's, same pattern."""
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        w, h = correlated_layer(rng, 64, 128)
        w = w.astype(np.float32)
        _, admm_out = prunekit.admm(w, h, 0.5, pattern=pattern)
        _, sgpt_out = prunekit.sparsegpt(w, h, 0.5, pattern=pattern)
        a, b = ref.layer_error(w, admm_out, h), ref.layer_error(w, sgpt_out, h)
        assert a < b, (seed, a, b)


def test_same_bytes_for_any_thread_count_and_scale():
    rng = np.random.default_rng(2)
    w, h = correlated_layer(rng, 48, 64)
    w = w.astype(np.float32)
    runs = [prunekit.admm(w, h, 0.5, threads=t) for t in (1, 2, 3)]
    for mask, out in runs[1:]:
        np.testing.assert_array_equal(mask, runs[0][0])
        assert out.tobytes() == runs[0][1].tobytes()
    # The problem is normalised by the Hessian's diagonal: its scale does not matter.
    base_mask, base = prunekit.admm(w, h, 0.5, precision="float64")
    for factor in (1e-200, 1e-30, 1e30, 1e200):
        mask, out = prunekit.admm(w, h * factor, 0.5, precision="float64")
        np.testing.assert_array_equal(mask, base_mask)
        np.testing.assert_allclose(out, base, rtol=1e-9, atol=1e-12)


def test_half_precision_weights_and_overflow():
    rng = np.random.default_rng(3)
    w, h = correlated_layer(rng, 16, 32)
    w16 = w.astype(np.float16)
    mask, out = prunekit.admm(w16, h, 0.5)
    assert out.dtype == np.float16 and (~mask).sum() == 256 and not out[~mask].any()
    # Weights near float16's limit whose update overflows it: an error, and `out` untouched.
    # Two nearly identical inputs: pruning one moves its weight onto the other, which doubles.
    x = rng.standard_normal((256, 8))
    x[:, 1] = x[:, 0] + 1e-4 * x[:, 1]
    big = np.full((4, 8), 50000, np.float16)
    big[:, 1] = 1  # the smaller twin goes, the larger takes its part
    target = np.full(big.shape, 7, np.float16)
    with pytest.raises(ArithmeticError, match="overflows the output's float16"):
        prunekit.admm(np.ones((4, 8), np.float16) * 40000, x.T @ x, 0.5, dampening=1e-6, out=target)
    assert (target == 7).all()


@pytest.mark.parametrize("kw, match", [
    (dict(iterations=-1), "iterations"),
    (dict(iterations=5, ramp_iterations=6), "ramp iterations"),
    (dict(rho=0.0), "rho"),
    (dict(rho=float("nan")), "rho"),
    (dict(rho_growth=0.5), "rho growth"),
    (dict(rho_interval=0), "rho interval"),
    (dict(refine_iterations=-3), "refine"),
    (dict(dampening=-1.0), "dampening"),
    (dict(sparsity=1.5), "sparsity"),
    (dict(pattern="2:3"), "divide"),
    (dict(pattern="4:4"), "N:M"),
    (dict(scope="global"), "scope"),
    (dict(threads=-1), "num_threads"),
])
def test_bad_options_are_refused_and_nothing_is_written(kw, match):
    rng = np.random.default_rng(4)
    w, h = correlated_layer(rng, 8, 16)
    w = w.astype(np.float32)
    before = w.copy()
    with pytest.raises(ValueError, match=match):
        prunekit.admm(w, h, out=w, **kw)
    assert w.tobytes() == before.tobytes()


def test_bad_hessian_and_mask():
    rng = np.random.default_rng(6)
    w, h = correlated_layer(rng, 8, 16)
    w = w.astype(np.float32)
    before = w.copy()
    asym = h.copy()
    asym[0, 1] += 1.0
    with pytest.raises(ValueError, match="not symmetric"):
        prunekit.admm(w, asym, out=w)
    nan = h.copy()
    nan[2, 2] = np.nan
    with pytest.raises(ValueError, match="row 2, column 2"):
        prunekit.admm(w, nan, out=w)
    # Indefinite beyond what rho and the dampening make up for.
    indefinite = np.diag(np.full(16, 1.0)) - 5 * np.ones((16, 16))
    np.fill_diagonal(indefinite, 1.0)
    with pytest.raises(ArithmeticError, match="not positive definite"):
        prunekit.admm(w, indefinite, out=w, dampening=0)
    bad_mask = np.ones(w.shape, np.uint8) * 2
    with pytest.raises(ValueError, match="only 0 and 1"):
        prunekit.admm(w, h, mask=bad_mask, out=w)
    assert w.tobytes() == before.tobytes()
