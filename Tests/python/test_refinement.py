"""Mask refinement by swaps and layer-wise sparsity allocation, against independent references."""
import numpy as np
import pytest

import prunekit
import swaps_reference as ref
from test_admm import correlated_layer


@pytest.mark.parametrize("pattern", [None, "2:4"])
def test_swaps_match_the_reference_and_never_raise_the_error(pattern):
    for seed in range(3):
        rng = np.random.default_rng(20 + seed)
        w, h = correlated_layer(rng, 16, 32)
        w = w.astype(np.float32)
        features = np.sqrt(np.diag(h)).astype(np.float32)
        start = prunekit.mask(w, 0.5, criterion="wanda", features=features, pattern=pattern)
        refined = prunekit.refine_mask(w, h, start, pattern=pattern, max_swaps=20)
        nm = None if pattern is None else (2, 4)
        expected, swaps = ref.refine_mask(w, h, start, pattern=nm, max_swaps=20)
        np.testing.assert_array_equal(refined, expected)
        assert swaps > 0
        before, after = ref.row_errors(w, h, start), ref.row_errors(w, h, refined)
        assert (after <= before * (1 + 1e-12)).all() and after.sum() < before.sum()
        np.testing.assert_array_equal(refined.sum(1), start.sum(1))  # per-row counts kept
        if pattern:
            assert (refined.reshape(16, 8, 4).sum(2) == 2).all()


def test_swaps_leave_inputs_alone_and_do_not_depend_on_threads():
    rng = np.random.default_rng(7)
    w, h = correlated_layer(rng, 40, 48)
    w = w.astype(np.float32)
    start = prunekit.mask(w, 0.6, criterion="magnitude")
    w_before, start_before = w.copy(), start.copy()
    results = [prunekit.refine_mask(w, h, start, threads=t) for t in (1, 2, 3)]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    assert w.tobytes() == w_before.tobytes() and (start == start_before).all()
    assert (prunekit.refine_mask(w, h, start, max_swaps=0) == start).all()


def test_swap_refinement_bad_input():
    rng = np.random.default_rng(8)
    w, h = correlated_layer(rng, 8, 16)
    w = w.astype(np.float32)
    start = prunekit.mask(w, 0.5)
    with pytest.raises(ValueError, match="not 2 of 4"):
        prunekit.refine_mask(w, h, prunekit.mask(w, 0.5, scope="layer"), pattern="2:4")
    with pytest.raises(ValueError, match="candidates"):
        prunekit.refine_mask(w, h, start, candidates=0)
    with pytest.raises(ValueError, match="max swaps"):
        prunekit.refine_mask(w, h, start, max_swaps=-1)
    with pytest.raises(ValueError, match="only 0 and 1"):
        prunekit.refine_mask(w, h, start.astype(np.uint8) * 3)
    with pytest.raises(ValueError, match="hessian"):
        prunekit.refine_mask(w, h[:8, :8], start)


def test_allocation_hits_the_target_exactly_and_matches_the_reference():
    rng = np.random.default_rng(9)
    for trial in range(20):
        layers = int(rng.integers(1, 12))
        sizes = rng.integers(1, 5000, layers)
        importance = rng.standard_normal(layers)
        s, spread = float(rng.uniform(0.2, 0.8)), float(rng.uniform(0, 0.2))
        sparsities, counts = prunekit.allocate_sparsity(sizes, importance, s, spread=spread)
        assert counts.sum() == int(s * sizes.sum())
        np.testing.assert_array_equal(counts, ref.allocate(sizes, importance, s, spread))
        # The per-layer sparsities give the counts back through floor(s * n).
        assert all(int(p * n) == c for p, n, c in zip(sparsities, sizes, counts))
        lo, hi = np.floor(max(0, s - spread) * sizes), np.ceil(min(1, s + spread) * sizes)
        assert (counts >= lo).all() and (counts <= hi).all()
    # More important layers are pruned less.
    sparsities, _ = prunekit.allocate_sparsity([1000, 1000, 1000], [0.1, 0.5, 0.9], 0.5, spread=0.1)
    assert sparsities[0] > sparsities[1] > sparsities[2]


def test_allocation_bad_input():
    # The bounds are within one weight of [s - spread, s + spread], so the target is always
    # reachable: even with no spread at all every layer gets its own floor or ceiling.
    _, counts = prunekit.allocate_sparsity([7, 9, 11], [3.0, 1.0, 2.0], 0.5, spread=0.0)
    assert counts.sum() == 13 and all(abs(c - 0.5 * n) < 1 for c, n in zip(counts, [7, 9, 11]))
    with pytest.raises(ValueError, match="sparsity"):
        prunekit.allocate_sparsity([10], [1.0], 1.5)
    with pytest.raises(ValueError, match="spread"):
        prunekit.allocate_sparsity([10], [1.0], 0.5, spread=2)
    with pytest.raises(ValueError, match="importance of layer 1"):
        prunekit.allocate_sparsity([10, 10], [1.0, np.nan], 0.5)
    with pytest.raises(ValueError, match="positive"):
        prunekit.allocate_sparsity([10, 0], [1.0, 2.0], 0.5)


def test_outlier_ratio_matches_numpy():
    rng = np.random.default_rng(10)
    w = rng.standard_normal((32, 64)).astype(np.float32)
    features = rng.uniform(0.1, 10, 64).astype(np.float32)
    scores = np.abs(w) * features
    expected = float((scores.astype(np.float64) > 5 * scores.astype(np.float64).mean()).mean())
    assert prunekit.outlier_ratio(w, features=features, threshold=5) == expected
    with pytest.raises(ValueError, match="threshold"):
        prunekit.outlier_ratio(w, features=features, threshold=0)


def test_bias_compensation_and_centred_gram():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((500, 24)) * rng.uniform(0.5, 2, 24) + rng.uniform(-3, 3, 24)  # inputs with a mean
    w = rng.standard_normal((16, 24)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    stats = prunekit.Stats(24, gram=True)
    stats.update(x)
    centred = (x - x.mean(0)).T @ (x - x.mean(0))
    np.testing.assert_allclose(stats.gram(centered=True), centred, rtol=1e-9, atol=1e-9 * np.abs(centred).max())
    mask = prunekit.mask(w, 0.5, criterion="wanda", features=stats)
    pruned = w * mask
    bias = b.copy()
    assert prunekit.compensate_bias(w, pruned, bias, stats) is bias
    expected = b.astype(np.float64) + (w.astype(np.float64) - pruned) @ x.mean(0)
    np.testing.assert_allclose(bias, expected, rtol=1e-6, atol=1e-6)
    # The compensated layer's mean output is the dense one's, and its error is lower.
    dense, before, after = x @ w.T + b, x @ pruned.T + b, x @ pruned.T + bias
    np.testing.assert_allclose(after.mean(0), dense.mean(0), atol=1e-4)
    assert ((after - dense) ** 2).sum() < ((before - dense) ** 2).sum()
    # Reconstruction on the centred Gram plus compensation beats plain reconstruction here.
    _, plain = prunekit.admm(w, stats.gram(), 0.5)
    _, recon = prunekit.admm(w, stats.gram(centered=True), 0.5)
    compensated = prunekit.compensate_bias(w, recon, b.copy(), stats)
    err = lambda q, c: ((x @ q.T + c - dense) ** 2).sum()  # noqa: E731
    assert err(recon, compensated) < err(plain, b)
    # Bad input: nothing written.
    frozen = b.copy()
    with pytest.raises(ValueError, match="mean has 23 entries"):
        prunekit.compensate_bias(w, pruned, frozen, x.mean(0)[:23])
    nan_mean = x.mean(0)
    nan_mean[5] = np.nan
    with pytest.raises(ValueError, match="mean at 5"):
        prunekit.compensate_bias(w, pruned, frozen, nan_mean)
    with pytest.raises(ValueError, match="1 x 16"):
        prunekit.compensate_bias(w, pruned, frozen[:8], x.mean(0))
    assert frozen.tobytes() == b.tobytes()
    with pytest.raises(ValueError, match="keep no Gram"):
        plain_stats = prunekit.Stats(24)
        plain_stats.update(x)
        plain_stats.gram(centered=True)


def test_output_error_matches_numpy():
    rng = np.random.default_rng(12)
    w, h = correlated_layer(rng, 12, 20)
    w = w.astype(np.float32)
    pruned = w * prunekit.mask(w, 0.5)
    error, relative = prunekit.output_error(w, pruned, h)
    d = (w - pruned).astype(np.float64)
    expected = float(np.einsum("ij,jk,ik->", d, h, d))
    assert error == pytest.approx(expected, rel=1e-10)
    assert relative == pytest.approx(expected / float(np.einsum("ij,jk,ik->", w.astype(np.float64), h, w.astype(np.float64))), rel=1e-10)
    assert prunekit.output_error(w, w, h) == (0.0, 0.0)
    with pytest.raises(ValueError, match="shape"):
        prunekit.output_error(w, pruned[:6], h)
