"""Activation-aware low rank and pruning at inference time, against numpy references written here."""
import numpy as np
import pytest

import prunekit
from prunekit import _prunekit


# ------------------------------------------------------------------------------------------
# Low rank: the whitened-SVD reference

def reference_low_rank(w, h, rank, dampening):
    """W ~ A B minimising tr((W - AB) H (W - AB)^T): L = chol(H + damp), SVD of W L, A = U_r with each
    column's largest-magnitude entry positive, B = S_r V_r^T L^-1."""
    h = h.copy()
    diag = np.diag(h).copy()
    diag[diag == 0] = 1
    h[np.diag_indices_from(h)] = diag + dampening * diag.mean()
    lower = np.linalg.cholesky(h)
    u, s, vt = np.linalg.svd(w @ lower, full_matrices=False)
    a, c = u[:, :rank].copy(), s[:rank, None] * vt[:rank]
    for j in range(rank):
        if a[np.argmax(np.abs(a[:, j])), j] < 0:
            a[:, j], c[j] = -a[:, j], -c[j]
    b = np.linalg.solve(lower.T, c.T).T  # C L^-1
    return a, b, s


def weighted_error(w, a, b, x):
    return float((((w - a @ b) @ x.T) ** 2).sum())


def anisotropic_inputs(rng, tokens, cols):
    mixing = rng.standard_normal((cols, cols)) * np.geomspace(3, 0.05, cols)
    return rng.standard_normal((tokens, cols)) @ mixing


@pytest.mark.parametrize("rows,cols,rank,damp", [(24, 40, 5, 0.0), (40, 24, 9, 0.0), (16, 16, 16, 0.0), (30, 20, 4, 0.01)])
def test_low_rank_matches_whitened_svd(rows, cols, rank, damp):
    rng = np.random.default_rng(rows * 100 + cols)
    x = anisotropic_inputs(rng, 300, cols)
    w = rng.standard_normal((rows, cols))
    h = x.T @ x
    a, b, s = prunekit.low_rank(w, h, rank=rank, dampening=damp)
    ra, rb, rs = reference_low_rank(w, h, rank, damp)
    assert a.shape == (rows, rank) and b.shape == (rank, cols)
    np.testing.assert_allclose(s, rs, rtol=1e-9, atol=1e-9 * rs[0])
    np.testing.assert_allclose(a, ra, atol=1e-8)
    np.testing.assert_allclose(b, rb, atol=1e-8 * np.abs(rb).max())
    np.testing.assert_allclose(a.T @ a, np.eye(rank), atol=1e-10)


def test_low_rank_error_is_the_optimum_and_never_above_plain_svd():
    rng = np.random.default_rng(7)
    x = anisotropic_inputs(rng, 500, 32)
    w = rng.standard_normal((48, 32))
    h = x.T @ x
    u, s_plain, vt = np.linalg.svd(w, full_matrices=False)
    for rank in (1, 4, 8, 16, 31, 32):
        a, b, s = prunekit.low_rank(w, h, rank=rank, dampening=0)
        ours = weighted_error(w, a, b, x)
        # Eckart-Young on W L: the squared error is the sum of the dropped singular values squared.
        assert ours == pytest.approx(float((s[rank:] ** 2).sum()), rel=1e-8, abs=1e-8 * float((s ** 2).sum()))
        plain = weighted_error(w, u[:, :rank] * s_plain[:rank], vt[:rank], x)
        assert ours <= plain * (1 + 1e-10) + 1e-9
        if rank < 32:
            assert ours < 0.9 * plain  # these inputs are far from isotropic: the weighting matters


def test_low_rank_recovers_an_exact_low_rank_weight():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((20, 3)) @ rng.standard_normal((3, 30))
    x = anisotropic_inputs(rng, 200, 30)
    a, b, s = prunekit.low_rank(w, x.T @ x, rank=3, dampening=0)
    np.testing.assert_allclose(a @ b, w, atol=1e-9 * np.abs(w).max())
    assert s[3] < 1e-9 * s[0]


def test_low_rank_energy_picks_the_smallest_rank():
    rng = np.random.default_rng(5)
    x = anisotropic_inputs(rng, 400, 24)
    w = rng.standard_normal((24, 24)) * np.geomspace(1, 0.01, 24)[:, None]
    h = x.T @ x
    for energy in (0.5, 0.9, 0.99, 1.0):
        a, b, s = prunekit.low_rank(w, h, energy=energy)
        share = np.cumsum(s ** 2) / (s ** 2).sum()
        expected = int(np.argmax(share >= energy)) + 1
        assert a.shape[1] == expected and b.shape[0] == expected
        ra, rb, _ = reference_low_rank(w, h, expected, 0.01)
        np.testing.assert_allclose(a @ b, ra @ rb, atol=1e-8 * np.abs(w).max())


def test_low_rank_float32_weights_and_stats():
    rng = np.random.default_rng(11)
    x = anisotropic_inputs(rng, 256, 16).astype(np.float32)
    w = rng.standard_normal((12, 16)).astype(np.float32)
    stats = prunekit.Stats(features=16, gram=True)
    stats.update(x)
    a, b, s = prunekit.low_rank(w, stats, rank=6)
    ra, rb, rs = reference_low_rank(w.astype(np.float64), stats.gram(), 6, 0.01)
    np.testing.assert_allclose(a @ b, ra @ rb, atol=1e-8 * np.abs(w).max())


def test_low_rank_bad_ranks_and_singular_hessians():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((6, 10))
    x = rng.standard_normal((4, 10))  # 4 tokens, 10 features: H is singular (rank 4)
    h = x.T @ x
    with pytest.raises(ValueError, match="rank 0 chooses the rank by energy"):
        prunekit.low_rank(w, h)  # neither a rank nor an energy
    with pytest.raises(ValueError, match=r"rank must be in 1 \.\.\. min\(rows, cols\) = 6, got 7"):
        prunekit.low_rank(w, h, rank=7)
    with pytest.raises(ValueError, match="out of range|rank must be"):
        prunekit.low_rank(w, h, rank=-1)
    with pytest.raises(ValueError, match="not both"):
        prunekit.low_rank(w, h, rank=2, energy=0.5)
    with pytest.raises(ValueError, match="energy"):
        prunekit.low_rank(w, h, energy=1.5)
    # Singular H without dampening and without retries: a clear numeric error.
    with pytest.raises(ArithmeticError, match="not positive definite"):
        prunekit.low_rank(w, h, rank=2, dampening=0, max_retries=0)
    # Documented: with retries the dampening grows to at least 1e-8 of the mean diagonal, and the
    # factors then fit the directions the inputs span.
    a, b, s = prunekit.low_rank(w, h, rank=4, dampening=0)
    assert np.isfinite(a).all() and np.isfinite(b).all()
    assert weighted_error(w, a, b, x) < 1e-6 * float(((w @ x.T) ** 2).sum())
    bad = h.copy()
    bad[0, 1] += 1
    with pytest.raises(ValueError, match="not symmetric"):
        prunekit.low_rank(w, bad, rank=2)
    w_nan = w.copy()
    w_nan[2, 3] = np.nan
    with pytest.raises(ValueError, match="row 2, column 3"):
        prunekit.low_rank(w_nan, h, rank=2)


def test_low_rank_too_small_output_writes_nothing():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((5, 8))
    h = (lambda x: x.T @ x)(rng.standard_normal((50, 8)))
    a = np.full((5, 1), 7.0)
    b = np.full((1, 8), 7.0)
    s = np.full(5, 7.0)
    with pytest.raises(ValueError, match="rank 5 needs 5"):
        _prunekit.low_rank(w, h, a, b, s, energy=1.0)
    assert (a == 7).all() and (b == 7).all() and (s == 7).all()


# ------------------------------------------------------------------------------------------
# Gating: top-k per sample

def reference_top(scores, k):
    n = scores.shape[1]
    out = []
    for row in scores:
        order = np.lexsort((np.arange(n), row + 0.0))  # (score, channel) ascending; -0.0 == +0.0
        out.append(np.sort(order[n - k:]))
    return np.array(out, dtype=np.int64)


@pytest.mark.parametrize("k", [1, 7, 32, 63, 64])
def test_top_channels_match_the_reference_with_ties(k):
    rng = np.random.default_rng(k)
    scores = rng.integers(-4, 5, size=(40, 64)).astype(np.float32)  # many ties
    scores[0, :] = 0.0
    scores[1, ::2] = -0.0
    np.testing.assert_array_equal(prunekit.top_channels(scores, k), reference_top(scores, k))
    np.testing.assert_array_equal(prunekit.top_channels(scores, k, magnitude=True), reference_top(np.abs(scores), k))


def test_top_channels_errors_write_nothing():
    scores = np.ones((3, 8), dtype=np.float32)
    scores[2, 5] = np.inf
    out = np.full((3, 4), -7, dtype=np.int64)
    with pytest.raises(ValueError, match="sample 2, channel 5"):
        _prunekit.top_channels(scores, 4, out)
    assert (out == -7).all()
    for k in (0, 9):
        with pytest.raises(ValueError, match="k must be in 1 ... 8"):
            prunekit.top_channels(np.ones((2, 8), np.float32), k)
    with pytest.raises(TypeError):
        prunekit.top_channels(np.ones((2, 8)), 2)


def test_gathered_gemm_equals_the_masked_dense_one():
    rng = np.random.default_rng(9)
    h = rng.standard_normal((16, 96)).astype(np.float32)   # hidden activations of 16 tokens
    w2 = rng.standard_normal((24, 96)).astype(np.float32)  # next layer [out, hidden]
    idx = prunekit.top_channels(h, 48, magnitude=True)
    for t in range(16):
        sub = prunekit.gather(w2, idx[t], axis="cols")
        np.testing.assert_array_equal(sub, w2[:, idx[t]])
        mask = np.zeros(96, dtype=np.float32)
        mask[idx[t]] = 1
        np.testing.assert_allclose(sub @ h[t, idx[t]], w2 @ (h[t] * mask), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(prunekit.gather(w2.T.copy(), idx[t], axis="rows"), w2.T[idx[t]])
    half = prunekit.gather(w2.astype(np.float16), [5, 5, 0], axis="cols")
    np.testing.assert_array_equal(half, w2.astype(np.float16)[:, [5, 5, 0]])
    out = np.full((24, 2), 3.0, dtype=np.float32)
    with pytest.raises(ValueError, match=r"indices\[1\] = 96 is outside 0 ..< 96"):
        prunekit.gather(w2, [1, 96], axis="cols", out=out)
    assert (out == 3).all()
    with pytest.raises(ValueError, match="output is"):
        prunekit.gather(w2, [1, 2, 3], axis="cols", out=out)


# ------------------------------------------------------------------------------------------
# MACPruning's randomised masks

def reference_draw(seed, positions):
    mask64 = (1 << 64) - 1
    out = []
    for p in positions:
        z = (seed + (int(p) + 1) * 0x9E3779B97F4A7C15) & mask64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask64
        z ^= z >> 31
        out.append(np.float32(z >> 40) * np.float32(2.0 ** -24))
    return np.array(out, dtype=np.float32)


def test_random_masks_reproduce_keep_important_channels_and_drop_at_the_rate():
    rng = np.random.default_rng(0)
    n = 20000
    importance = rng.random(n).astype(np.float32)
    threshold, p = 0.6, 0.3
    m1 = prunekit.random_channel_mask(importance, threshold=threshold, drop_probability=p, seed=1234)
    m2 = prunekit.random_channel_mask(importance, threshold=threshold, drop_probability=p, seed=1234)
    m3 = prunekit.random_channel_mask(importance, threshold=threshold, drop_probability=p, seed=1235)
    np.testing.assert_array_equal(m1, m2)
    assert (m1 != m3).any()
    important = importance >= threshold
    assert m1[important].all() and m3[important].all()
    # The documented draw, computed independently.
    expected = important | (reference_draw(1234, np.arange(n)) >= p)
    np.testing.assert_array_equal(m1, expected)
    # Binomial: the others are dropped with probability p (fixed seed; 5 sigma).
    others = int((~important).sum())
    dropped = int((~m1[~important]).sum())
    sigma = np.sqrt(others * p * (1 - p))
    assert abs(dropped - others * p) < 5 * sigma
    assert prunekit.random_channel_mask(importance, threshold=threshold, drop_probability=0, seed=9).all()
    assert (prunekit.random_channel_mask(importance, threshold=threshold, drop_probability=1, seed=9) == important).all()


def test_random_mask_errors_write_nothing():
    importance = np.array([0.5, np.nan, 1.0], dtype=np.float32)
    mask = np.full(3, 9, dtype=np.uint8)
    with pytest.raises(ValueError, match="channel 1"):
        _prunekit.random_channel_mask(importance, 3, mask, threshold=0.2, drop_probability=0.5, seed=1)
    assert (mask == 9).all()
    for p in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="drop probability"):
            _prunekit.random_channel_mask(np.ones(3, np.float32), 3, mask, threshold=0.2, drop_probability=p, seed=1)
    with pytest.raises(ValueError, match="NaN"):
        _prunekit.random_channel_mask(np.ones(3, np.float32), 3, mask, threshold=float("nan"), drop_probability=0.5, seed=1)
    assert (mask == 9).all()
