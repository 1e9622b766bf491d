"""Data-free compensation (UDFC) of pruned batch-normalised channels, against a numpy reference
written here, and on a small CNN trained here on scikit-learn's digits."""
import numpy as np
import pytest

import prunekit
from udfc_reference import reference_udfc  # Tests/python/udfc_reference.py


def chain(rng, n=12, inputs=5, kernel=(3, 3), rows=7, dtype=np.float64):
    """conv [n, inputs, kh, kw] -> batch norm (n) -> next conv [rows, n, kh, kw], with a negative
    gamma, a zero-variance channel and a zero filter among them."""
    conv = rng.standard_normal((n, inputs) + kernel)
    conv[3] = 0
    gamma = rng.uniform(0.3, 1.5, n) * np.where(rng.random(n) < 0.25, -1, 1)
    beta = rng.normal(0.2, 0.8, n)
    mean = rng.normal(0, 1, n)
    var = rng.uniform(0.2, 3, n)
    var[5] = 0.0
    nxt = rng.standard_normal((rows, n) + kernel)
    return [a.astype(dtype) for a in (conv, gamma, beta, mean, var, nxt)]


def group_of(conv, gamma, beta, mean, var, nxt, extra=()):
    members = [prunekit.Member(conv, "rows"), prunekit.Member(gamma, scored=False), prunekit.Member(beta, scored=False),
               prunekit.Member(mean, scored=False), prunekit.Member(var, scored=False),
               prunekit.Member(nxt, "cols", scored=False)]
    return prunekit.Group(members + [prunekit.Member(e, scored=False) for e in extra])


OPTIONS = dict(producer=0, next=5, batch_norm=(1, 2, 3, 4))


@pytest.mark.parametrize("activation", ["relu", "identity"])
@pytest.mark.parametrize("dampening", [0.01, 0.3])
def test_data_free_matches_the_numpy_closed_form(activation, dampening):
    rng = np.random.default_rng(11)
    conv, gamma, beta, mean, var, nxt = chain(rng)
    keep = np.ones(12, bool)
    keep[[0, 4, 6, 9, 11]] = False
    g = group_of(conv, gamma, beta, mean, var, nxt)
    outs, kept, shift = prunekit.compact_data_free(g, keep, dampening=dampening, activation=activation, **OPTIONS)
    ref, ref_shift, _, _ = reference_udfc(conv, gamma, beta, var, nxt, keep, 9, dampening=dampening, activation=activation)
    np.testing.assert_array_equal(kept, np.flatnonzero(keep))
    assert outs[5].shape == (7, 7, 3, 3)
    np.testing.assert_allclose(outs[5].reshape(7, -1), ref, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(shift, ref_shift, rtol=1e-11, atol=1e-12)
    # Every other member is compacted as compact() does, untouched by the compensation.
    plain, _ = prunekit.compact(g, keep)
    for m in range(5):
        np.testing.assert_array_equal(outs[m], plain[m])
    assert not np.allclose(outs[5], plain[5])  # the compensation did something


def test_data_free_float32_and_linear_layers():
    rng = np.random.default_rng(5)
    conv, gamma, beta, mean, var, nxt = chain(rng, n=10, inputs=16, kernel=(), rows=6, dtype=np.float32)
    keep = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 1], bool)
    g = group_of(conv, gamma, beta, mean, var, nxt)
    outs, _, shift = prunekit.compact_data_free(g, keep, **OPTIONS)
    ref, ref_shift, _, _ = reference_udfc(conv, gamma, beta, var, nxt, keep, 1)
    assert outs[5].dtype == np.float32 and outs[5].shape == (6, 7)
    np.testing.assert_allclose(outs[5], ref.astype(np.float32), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(shift, ref_shift, rtol=1e-10, atol=1e-12)


def test_identity_is_the_least_squares_of_gaussian_channels():
    """Without an activation and with isotropic inputs the closed form is the population least
    squares of the pruned channels' batch-norm outputs on the kept ones (plus a constant)."""
    rng = np.random.default_rng(2)
    n, d = 8, 6
    w = rng.standard_normal((n, d))
    bias = rng.standard_normal(n)
    gamma, beta = rng.uniform(0.5, 2, n) * np.array([1, -1, 1, 1, -1, 1, 1, 1]), rng.normal(0, 1, n)
    x = rng.standard_normal((400_000, d))
    z = x @ w.T + bias
    mu, var = z.mean(0), z.var(0)
    y = gamma * (z - mu) / np.sqrt(var + 1e-5) + beta
    keep = np.array([1, 1, 0, 1, 0, 1, 1, 0], bool)
    k, p = np.flatnonzero(keep), np.flatnonzero(~keep)
    design = np.column_stack([y[:, k], np.ones(len(y))])
    fit = np.linalg.lstsq(design, y[:, p], rcond=None)[0]
    nxt = np.eye(n)  # the next layer reads each channel: its columns are the coefficients
    g = group_of(w, gamma, beta, mu, var, nxt)
    outs, _, shift = prunekit.compact_data_free(g, keep, dampening=0.0, activation="identity", **OPTIONS)
    np.testing.assert_allclose(outs[5][p].T, fit[:-1], atol=0.02)
    np.testing.assert_allclose(shift[p], fit[-1], atol=0.02)


def test_compact_option_updates_the_next_bias():
    rng = np.random.default_rng(8)
    conv, gamma, beta, mean, var, nxt = chain(rng)
    keep = np.ones(12, bool)
    keep[[1, 2, 7]] = False
    g = group_of(conv, gamma, beta, mean, var, nxt)
    bias = rng.standard_normal(7)
    before = bias.copy()
    outs, kept = prunekit.compact(g, keep, compensate=dict(method="data_free", next_bias=bias, **OPTIONS))
    ref, ref_shift, _, _ = reference_udfc(conv, gamma, beta, var, nxt, keep, 9)
    np.testing.assert_allclose(outs[5].reshape(7, -1), ref, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(bias, before + ref_shift, rtol=1e-12, atol=1e-12)


def test_nothing_pruned_changes_nothing():
    rng = np.random.default_rng(4)
    conv, gamma, beta, mean, var, nxt = chain(rng)
    outs, _, shift = prunekit.compact_data_free(group_of(conv, gamma, beta, mean, var, nxt), np.ones(12, bool), **OPTIONS)
    np.testing.assert_array_equal(outs[5], nxt)
    assert not shift.any()


def test_bad_input_is_a_clear_error_and_writes_nothing():
    rng = np.random.default_rng(9)
    conv, gamma, beta, mean, var, nxt = chain(rng)
    keep = np.ones(12, bool)
    keep[:4] = False
    bias = np.zeros(7)

    def attempt(*arrays, keep=keep, error=ValueError, match=None, **options):
        options = {**OPTIONS, **options}
        with pytest.raises(error, match=match):
            prunekit.compact(group_of(*arrays), keep, compensate=dict(method="data_free", next_bias=bias, **options))
        assert not bias.any()

    attempt(conv, gamma[:-1], beta, mean, var, nxt, match="structures|1 x 12")           # shape mismatch
    bad = var.copy()
    bad[2] = -0.5
    attempt(conv, gamma, beta, mean, bad, nxt, match="negative")                         # negative variance
    attempt(conv, gamma, beta, mean, var, nxt, keep=np.zeros(12, bool), match="keeps no")  # pruning everything
    for which in (0, 1, 4, 5):                                                            # NaN anywhere read
        arrays = [a.copy() for a in (conv, gamma, beta, mean, var, nxt)]
        arrays[which].reshape(-1)[3 if which != 0 else 20] = np.nan
        attempt(*arrays, match="nan")
    zero_eps_var = var.copy()                                                            # var + eps = 0
    attempt(conv, gamma, beta, mean, zero_eps_var, nxt, eps=0.0, match="divides by 0")
    with pytest.raises(ValueError, match="not split"):                                  # members of the wrong axis
        prunekit.compact_data_free(group_of(conv, gamma, beta, mean, var, nxt), keep, **{**OPTIONS, "producer": 5, "next": 0})
    attempt(conv, gamma, beta, mean, var, nxt, batch_norm=(1, 2, 3, 9), match="outside")
    attempt(conv, gamma, beta, mean, var, nxt, dampening=-1.0, match="dampening")
    attempt(conv, gamma, beta, mean, var, nxt, activation="tanh", match="activation")
    with pytest.raises(ValueError, match="next_bias"):
        prunekit.compact(group_of(conv, gamma, beta, mean, var, nxt), keep,
                         compensate=dict(method="data_free", next_bias=np.zeros(6), **OPTIONS))


def test_singular_covariance_without_dampening_is_numeric():
    """More channels kept than a filter has entries, no dampening: the covariance is singular."""
    rng = np.random.default_rng(1)
    conv, gamma, beta, mean, var, nxt = chain(rng, n=12, inputs=1, kernel=(2, 2))
    conv[3] = rng.standard_normal((1, 2, 2))
    var[5] = 1.0
    keep = np.ones(12, bool)
    keep[0] = False
    with pytest.raises(ArithmeticError, match="dampening"):
        prunekit.compact_data_free(group_of(conv, gamma, beta, mean, var, nxt), keep, dampening=0.0,
                                   activation="identity", **OPTIONS)
    outs, _, _ = prunekit.compact_data_free(group_of(conv, gamma, beta, mean, var, nxt), keep, activation="identity",
                                            **OPTIONS)
    assert np.isfinite(outs[5]).all()


# ------------------------------------------------------------------------------------------
# The demonstration: a CNN trained on the digits, pruned 30% and 50%

torch = pytest.importorskip("torch")
sklearn_datasets = pytest.importorskip("sklearn.datasets")

from digits_cnn import train_digits_cnn, prune_digits_cnn  # noqa: E402  (Tests/python/digits_cnn.py)


@pytest.fixture(scope="module")
def digits_model():
    return train_digits_cnn(seed=0)


def test_digits_cnn_udfc_recovers_accuracy(digits_model, capsys):
    model, data = digits_model
    dense = data.accuracy(model)
    rows = []
    for ratio in (0.3, 0.5):
        acc = {method: data.accuracy(prune_digits_cnn(model, data, ratio, method))
               for method in ("none", "data_free", "prune_columns")}
        rows.append((ratio, acc))
    with capsys.disabled():
        print(f"\ndigits CNN, dense accuracy {dense:.4f}")
        for ratio, acc in rows:
            print(f"  {int(ratio * 100)}% of the channels of every conv pruned: uncompensated {acc['none']:.4f}, "
                  f"UDFC (data-free) {acc['data_free']:.4f}, prune_columns (data-driven) {acc['prune_columns']:.4f}")
    assert dense > 0.9
    for ratio, acc in rows:
        assert acc["data_free"] >= acc["none"], (ratio, acc)
        assert acc["none"] < dense
