"""The Python API: inputs (numpy, torch, strided, conv), errors, threads, GIL, properties."""
import sys
import threading
import time

import numpy as np
import pytest
try:
    import torch
except ImportError:
    torch = None
from hypothesis import given, settings, strategies as st

import generate
import prunekit
from conftest import results_per_environment


needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def rng(seed=0):
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------------
# Inputs

@needs_torch
def test_torch_float32_is_read_without_copy():
    t = torch.randn(8, 16)
    view = prunekit._view(t, "weight")
    assert np.shares_memory(view.array, t.numpy())
    f = torch.rand(16)
    m = prunekit.mask(t, 0.5, criterion="wanda", features=f)
    assert np.array_equal(m, prunekit.mask(t.numpy().copy(), 0.5, criterion="wanda", features=f.numpy()))
    assert m.shape == (8, 16) and m.sum() == 8 * 8


@needs_torch
def test_torch_and_numpy_agree_for_every_dtype():
    w = rng(1).standard_normal((6, 32)).astype(np.float32)
    f = np.abs(rng(2).standard_normal(32)).astype(np.float32)
    expected = prunekit.mask(w, 0.5, criterion="wanda", features=f)
    assert np.array_equal(prunekit.mask(torch.from_numpy(w), 0.5, criterion="wanda", features=torch.from_numpy(f)), expected)
    for tdtype in (torch.float16, torch.bfloat16, torch.float64):
        t = torch.from_numpy(w).to(tdtype)
        got = prunekit.mask(t, 0.5, criterion="wanda", features=f)
        ref_w = t.float().numpy()
        ref = generate.reference_masks([{"w": ref_w, "dtype": "float32", "f": f}], "wanda", "row", 0.5, 0, 0, 0)[0]
        assert np.array_equal(got.view(np.uint8), ref)


@needs_torch
def test_apply_mask_in_place_on_torch_and_strided_numpy():
    t = torch.randn(4, 8)
    before = t.clone()
    m = prunekit.mask(t, pattern="2:4")
    prunekit.apply_mask(t, m)
    assert torch.equal(t, before * torch.from_numpy(m))
    big = rng(3).standard_normal((5, 12)).astype(np.float32)
    original = big.copy()
    view = big[:, 2:10]  # strided rows, contiguous within a row: written in place
    m = prunekit.mask(view, 0.25, scope="layer")
    prunekit.apply_mask(view, m)
    assert np.array_equal(big[:, 2:10], original[:, 2:10] * m)
    assert np.array_equal(big[:, :2], original[:, :2]) and np.array_equal(big[:, 10:], original[:, 10:])


def test_conv_weights_are_viewed_as_out_by_in_kh_kw():
    w = rng(4).standard_normal((8, 3, 3, 3)).astype(np.float32)
    m = prunekit.mask(w, 0.5)
    assert m.shape == (8, 27)
    assert np.array_equal(m, prunekit.mask(w.reshape(8, 27), 0.5))
    prunekit.apply_mask(w, m)
    assert (w.reshape(8, 27)[~m] == 0).all()


def test_scores_match_one_float32_operation():
    w = rng(5).standard_normal((3, 10))
    f = np.abs(rng(6).standard_normal(10))
    np.testing.assert_array_equal(prunekit.score(w, "wanda", features=f), np.abs(w.astype(np.float32)) * f.astype(np.float32))
    g = rng(7).standard_normal((3, 10)).astype(np.float32)
    np.testing.assert_array_equal(prunekit.score(w, "taylor", gradient=g), np.abs(w.astype(np.float32) * g))
    np.testing.assert_array_equal(prunekit.score(w, "random", seed=11), generate.random_scores(11, 3, 10))


@needs_torch
def test_stats_as_features():
    x = rng(8).standard_normal((100, 10)).astype(np.float32) * np.arange(1, 11, dtype=np.float32)
    s = prunekit.Stats(10)
    s.update(x[:30])
    s.update(torch.from_numpy(x[30:]))
    w = rng(9).standard_normal((4, 10)).astype(np.float32)
    by_norm = prunekit.mask(w, 0.5, criterion="wanda", features=np.sqrt((x.astype(np.float64) ** 2).sum(0)))
    assert np.array_equal(prunekit.mask(w, 0.5, criterion="wanda", features=s), by_norm)
    by_std = prunekit.mask(w, 0.5, criterion="stade", features=x.astype(np.float64).std(0))
    assert np.array_equal(prunekit.mask(w, 0.5, criterion="stade", features=s), by_std)


def test_sparsity_report():
    m = prunekit.mask(rng(10).standard_normal((5, 40)), 0.3)
    overall, rows = prunekit.sparsity(m)
    assert overall == pytest.approx(12 * 5 / 200) and np.all(rows == 12 / 40)


# ------------------------------------------------------------------------------------------
# Errors: an exception with the library's message, nothing written

def test_bad_parameters_raise_with_messages():
    w = rng(11).standard_normal((4, 8)).astype(np.float32)
    cases = [
        (dict(sparsity=1.5), ValueError, "sparsity"),
        (dict(sparsity=float("nan")), ValueError, "sparsity"),
        (dict(sparsity=-0.1), ValueError, "sparsity"),
        (dict(pattern="4:4"), ValueError, "N:M"),
        (dict(pattern="0:4"), ValueError, "N:M"),
        (dict(pattern="2:3"), ValueError, "divide"),
        (dict(pattern="2-4"), ValueError, "2:4"),
        (dict(scope="everything"), ValueError, "scope"),
        (dict(criterion="entropy"), ValueError, "criterion"),
        (dict(criterion="wanda"), ValueError, "features"),
        (dict(criterion="wanda", features=np.ones(7)), ValueError, "length 7"),
        (dict(criterion="stade", features=-np.ones(8)), ValueError, "negative"),
        (dict(criterion="wanda", features=np.full(8, np.inf)), ValueError, "inf"),
        (dict(criterion="taylor"), ValueError, "gradient"),
        (dict(criterion="taylor", gradient=np.ones((4, 7), np.float32)), ValueError, "shape"),
        (dict(threads=-1), ValueError, "num_threads"),
    ]
    for kwargs, error, text in cases:
        kwargs = {"sparsity": 0.5, **kwargs}
        with pytest.raises(error, match=text):
            prunekit.mask(w, **kwargs)


def test_unsupported_and_empty_inputs():
    with pytest.raises(TypeError, match="dtype"):
        prunekit.mask(np.ones((2, 4), np.int32), 0.5)
    with pytest.raises(TypeError, match="dtype"):
        prunekit.mask(np.ones((2, 4), np.complex64), 0.5)
    with pytest.raises(ValueError, match="positive"):
        prunekit.mask(np.ones((0, 4), np.float32), 0.5)
    with pytest.raises(ValueError, match="2-D"):
        prunekit.mask(np.ones(4, np.float32), 0.5)
    with pytest.raises(TypeError):
        prunekit.mask("weights", 0.5)


def test_non_finite_weights_name_the_position_and_write_nothing():
    w = rng(12).standard_normal((5, 8)).astype(np.float32)
    w[3, 6] = np.nan
    for kwargs in (dict(sparsity=0.5), dict(sparsity=0.5, scope="layer"), dict(pattern="2:4")):
        with pytest.raises(ValueError, match="row 3, column 6"):
            prunekit.mask(w, **kwargs)
    with pytest.raises(ValueError, match="layer 1: weight at row 3, column 6"):
        prunekit.masks([np.ones((2, 8), np.float32), w], 0.5)
    target = rng(13).standard_normal((5, 8)).astype(np.float32)
    before = target.copy()
    bad_mask = np.ones((5, 8), np.uint8)
    bad_mask[4, 7] = 2
    with pytest.raises(ValueError, match="index 39"):
        prunekit.apply_mask(target, bad_mask)
    assert np.array_equal(target, before)


def test_writes_refuse_read_only_and_strided_arrays():
    w = rng(14).standard_normal((4, 8)).astype(np.float32)
    m = prunekit.mask(w, 0.5)
    ro = w.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        prunekit.apply_mask(ro, m)
    strided = np.zeros((4, 16), np.float32)[:, ::2]
    with pytest.raises(ValueError, match="contiguous"):
        prunekit.apply_mask(strided, m)
    with pytest.raises(ValueError, match="entries"):
        prunekit.apply_mask(w, m[:2])
    # Reading a strided array is fine (copied), and gives the same mask.
    src = np.zeros((4, 16), np.float32)
    src[:, ::2] = w
    assert np.array_equal(prunekit.mask(src[:, ::2], 0.5), m)


def test_stats_errors():
    s = prunekit.Stats(4)
    with pytest.raises(ValueError, match="empty"):
        s.mean()
    with pytest.raises(ValueError, match="features"):
        s.update(np.ones((3, 5), np.float32))
    x = np.ones((3, 4), np.float32)
    x[2, 1] = np.inf
    with pytest.raises(ValueError, match="token 2, feature 1"):
        s.update(x)
    assert s.count == 0
    with pytest.raises(ValueError, match="features"):
        prunekit.Stats(0)
    with pytest.raises(ValueError, match="merge"):
        s.merge(prunekit.Stats(3))
    data = bytearray(prunekit.Stats(4).to_bytes())
    for cut in (0, 12, len(data) - 1):
        with pytest.raises(ValueError, match="truncated"):
            prunekit.Stats.from_bytes(bytes(data[:cut]))
    data[40] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        prunekit.Stats.from_bytes(bytes(data))


# ------------------------------------------------------------------------------------------
# Statistics

def test_stats_merge_equals_one_pass_and_round_trips():
    x = rng(15).standard_normal((300, 12)) * 5 + 2
    shards = [x[:7], x[7:150], x[150:151], x[151:]]
    a, b = prunekit.Stats(12), prunekit.Stats(12)
    for i, shard in enumerate(shards):
        (a if i % 2 else b).update(shard.astype(np.float32) if i == 2 else shard)
    a.merge(b)
    whole = prunekit.Stats(12)
    for shard in (x[:150], x[150:151].astype(np.float32), x[151:]):
        whole.update(shard)
    for name in ("mean", "variance", "l2_norm", "std"):
        np.testing.assert_allclose(getattr(a, name)(), getattr(whole, name)(), rtol=1e-12)
    exact = x.copy()
    exact[150] = x[150].astype(np.float32)
    np.testing.assert_allclose(whole.mean(), exact.mean(0), rtol=1e-12)
    np.testing.assert_allclose(whole.variance(), exact.var(0), rtol=1e-12)
    restored = prunekit.Stats.from_bytes(a.to_bytes())
    assert isinstance(restored, prunekit.Stats) and restored.count == 300
    np.testing.assert_array_equal(restored.std(), a.std())
    s3 = prunekit.Stats(12)
    s3.update(x.reshape(3, 100, 12))  # [batch, tokens, features] flattens
    assert s3.count == 300


# ------------------------------------------------------------------------------------------
# Threads and the GIL

def test_masks_do_not_depend_on_threads():
    w = rng(16).integers(-4, 5, (64, 2048)).astype(np.float32)  # many ties
    for kwargs in (dict(sparsity=0.5), dict(sparsity=0.37, scope="layer"), dict(pattern="2:4")):
        one = prunekit.mask(w, threads=1, **kwargs)
        for threads in (2, 3, 8):
            assert np.array_equal(prunekit.mask(w, threads=threads, **kwargs), one)
    layers = [w, w[:10, :100].copy()]
    one = prunekit.masks(layers, 0.6, threads=1)
    assert all(np.array_equal(a, b) for a, b in zip(prunekit.masks(layers, 0.6, threads=4), one))


def test_the_gil_is_released_while_the_library_works():
    """Deterministic, not timed: with a huge switch interval the interpreter never takes the GIL
    from a thread, so the main thread can only run while the worker is inside the library if the
    library released the GIL. It counts to 100000 (a few ms) during a layer-wide mask of 16M
    entries (tens of ms or more) and checks the worker is still busy when it is done."""
    import sys
    w = rng(17).standard_normal((4096, 4096)).astype(np.float32)
    entered, done = threading.Event(), threading.Event()

    def work():
        entered.set()
        prunekit.mask(w, 0.5, scope="layer", threads=1)
        done.set()

    previous = sys.getswitchinterval()
    sys.setswitchinterval(10.0)
    try:
        thread = threading.Thread(target=work)
        thread.start()
        entered.wait()
        count = 0
        while count < 100_000:
            count += 1
        worker_still_busy = not done.is_set()
        thread.join()
    finally:
        sys.setswitchinterval(previous)
    assert worker_still_busy


# ------------------------------------------------------------------------------------------
# Properties

@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 6), cols=st.integers(1, 40), sparsity=st.floats(0, 1),
       quantized=st.booleans(), seed=st.integers(0, 2 ** 32 - 1),
       scope=st.sampled_from(["row", "layer"]))
def test_masks_match_the_reference_and_count_exactly(rows, cols, sparsity, quantized, seed, scope):
    r = np.random.default_rng(seed)
    w = (r.integers(-2, 3, (rows, cols)) if quantized else r.standard_normal((rows, cols))).astype(np.float32)
    got = prunekit.mask(w, sparsity, scope=scope).view(np.uint8)
    ref = generate.reference_masks([{"w": w, "dtype": "float32"}], "magnitude", scope, sparsity, 0, 0, 0)[0]
    assert np.array_equal(got, ref)
    if scope == "row":
        assert np.all((got == 0).sum(1) == int(cols * sparsity))
    else:
        assert (got == 0).sum() == int(rows * cols * sparsity)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 5), cols=st.integers(1, 300), sparsity=st.floats(0.01, 0.99),
       criterion=st.sampled_from(["magnitude", "wanda", "taylor"]), dtype=st.sampled_from(["float32", "float16"]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_row_masks_of_nonnegative_criteria_match_the_reference(rows, cols, sparsity, criterion, dtype, seed):
    """Per-row selection keys magnitude, Wanda and Taylor scores by their bit patterns, eight
    lanes at a time with a scalar tail: any width, zero and -0.0 feature values, ties."""
    r = np.random.default_rng(seed)
    w = (r.integers(-3, 4, (rows, cols)) * 0.25 if seed % 2 else r.standard_normal((rows, cols))).astype(dtype)
    f = np.abs(r.standard_normal(cols)).astype(np.float32)
    f[r.random(cols) < 0.2] = 0.0
    f[r.random(cols) < 0.2] = -0.0
    g = r.integers(-2, 3, (rows, cols)).astype(dtype)
    layer = {"w": w, "dtype": dtype, "f": f, "g": g}
    got = prunekit.mask(w, sparsity, criterion=criterion, features=f, gradient=g).view(np.uint8)
    ref = generate.reference_masks([layer], criterion, "row", sparsity, 0, 0, 0)[0]
    assert np.array_equal(got, ref)


@settings(max_examples=40, deadline=None)
@given(nm=st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 4), (4, 8), (2, 8), (7, 16), (9, 32)]),
       groups=st.integers(1, 9), rows=st.integers(1, 4), seed=st.integers(0, 2 ** 32 - 1))
def test_nm_structure_holds_in_every_group(nm, groups, rows, seed):
    n, m = nm
    w = np.random.default_rng(seed).integers(-3, 4, (rows, groups * m)).astype(np.float32)
    mask = prunekit.mask(w, pattern=nm)
    assert np.all(mask.reshape(rows, groups, m).sum(-1) == n)
    ref = generate.reference_masks([{"w": w, "dtype": "float32"}], "magnitude", "nm", 0, n, m, 0)[0]
    assert np.array_equal(mask.view(np.uint8), ref)


def test_mask_into_a_given_buffer_equals_a_new_mask_and_bad_buffers_are_refused():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, 16)).astype(np.float32)
    buffer = np.full(200, 7, dtype=np.uint8)
    for kwargs in (dict(sparsity=0.5), dict(pattern="2:4"), dict(sparsity=0.3, scope="layer")):
        expected = prunekit.mask(w, **kwargs)
        got = prunekit.mask(w, out=buffer[:96], **kwargs)
        np.testing.assert_array_equal(got, expected)
        assert got.dtype == np.bool_ and got.shape == (6, 16) and np.shares_memory(got, buffer)
    assert (buffer[96:] == 7).all()
    with pytest.raises(ValueError, match="entries"):
        prunekit.mask(w, 0.5, out=buffer[:95])
    with pytest.raises(TypeError):
        prunekit.mask(w, 0.5, out=np.zeros(96, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        prunekit.mask(w, 0.5, out=buffer[:192:2])


@pytest.mark.skipif(torch is None, reason="torch (for bfloat16 batches) is not installed")
def test_stats_update_rows_equals_the_gathered_batch():
    """Stats.update(batch, rows=) (pk_stats_update_rows) gives the bytes of update(batch[rows]),
    for every dtype, feature tails, thread splits, a Gram matrix, unsorted and repeated rows; an
    empty list adds nothing; a row outside the batch, non-integer rows and a non-finite value in
    a listed row are errors that change nothing (a non-finite value in an unlisted row is not)."""
    import torch
    rng = np.random.default_rng(5)
    for tokens, features in [(1, 3), (40, 9), (700, 384), (300, 1031)]:
        x = rng.standard_normal((tokens, features)) * 2
        x[rng.random(x.shape) < 0.1] = 0.0
        picks = [np.sort(rng.choice(tokens, size=max(1, tokens // 2), replace=False)),
                 rng.integers(0, tokens, size=tokens + 5)]                      # unsorted, repeats
        for dtype in ("float32", "float64", "float16", "bfloat16"):
            batch = torch.from_numpy(x).to(torch.bfloat16) if dtype == "bfloat16" else x.astype(dtype)
            for rows in picks:
                gram = features <= 384
                gathered, listed = prunekit.Stats(features, gram=gram), prunekit.Stats(features, gram=gram)
                gathered.update(batch[torch.from_numpy(rows)] if dtype == "bfloat16" else batch[rows])
                listed.update(batch, rows=rows)
                assert listed.to_bytes() == gathered.to_bytes(), (tokens, features, dtype)
                listed.update(batch, rows=torch.from_numpy(rows[:1]))
                gathered.update(batch[rows[:1]] if dtype != "bfloat16" else batch[torch.from_numpy(rows[:1])])
                assert listed.to_bytes() == gathered.to_bytes()
    s = prunekit.Stats(4)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    s.update(x, rows=[0, 2])
    before = s.to_bytes()
    s.update(x, rows=[])
    assert s.to_bytes() == before and s.count == 2
    x[1, 2] = np.nan
    s.update(x, rows=[2, 0])                 # the NaN is in a row that is not read
    assert s.count == 4
    before = s.to_bytes()
    with pytest.raises(ValueError, match=r"rows\[1\] is 3, outside the batch's 3 rows"):
        s.update(x, rows=[0, 3])
    with pytest.raises(ValueError, match=r"rows\[0\] is -1"):
        s.update(x, rows=np.array([-1]))
    with pytest.raises(ValueError, match=r"token 1 \(batch row 1\), feature 2 is nan"):
        s.update(x, rows=[0, 1])
    with pytest.raises(TypeError, match="integer row numbers"):
        s.update(x, rows=[0.0, 1.0])
    with pytest.raises(ValueError, match="features"):
        s.update(np.ones((3, 5), np.float32), rows=[0])
    assert s.to_bytes() == before


def test_stats_wide_and_baseline_kernels_give_the_same_bytes(tmp_path):
    """Where the CPU has AVX2, Stats.update's tiles run as C kernels; PRUNEKIT_SIMD=baseline
    forces the Swift loops. The accumulated statistics must be the same bytes (shapes with
    feature tails, several tiles, large batches split across threads; exact and negative zeros;
    every dtype), and a non-finite value must be reported at the same place."""
    script = (
        "import numpy as np, prunekit as pk, sys\n"
        "rng = np.random.default_rng(11)\n"
        "out = {}\n"
        "for tokens, features in [(1, 1), (33, 7), (70, 259), (700, 770), (257, 1031)]:\n"
        "    x = rng.standard_normal((tokens, features)) * 3\n"
        "    x[rng.random(x.shape) < 0.1] = 0.0\n"
        "    x[rng.random(x.shape) < 0.05] = -0.0\n"
        "    for dtype in ('float32', 'float64', 'float16', 'bfloat16'):\n"
        "        if dtype == 'bfloat16':\n"
        "            import torch\n"
        "            t = torch.from_numpy(x).to(torch.bfloat16)\n"
        "            parts = [t, t[: max(1, tokens // 3)]]\n"
        "        else:\n"
        "            parts = [x.astype(dtype), x.astype(dtype)[: max(1, tokens // 3)]]\n"
        "        s = pk.Stats(features, gram=features < 300)\n"
        "        for b in parts:\n"
        "            s.update(b)\n"
        "        out[f'{tokens}x{features}-{dtype}'] = np.frombuffer(s.to_bytes(), np.uint8)\n"
        "x = rng.standard_normal((90, 600))\n"
        "x[64, 5] = np.inf\n"
        "x[70, 1] = np.nan\n"
        "try:\n"
        "    pk.Stats(600).update(x)\n"
        "except ValueError as e:\n"
        "    out['error'] = np.frombuffer(str(e).encode(), np.uint8)\n"
        "np.savez(sys.argv[1], **out)\n"
    )
    baseline, default = results_per_environment(script, tmp_path, "PRUNEKIT_SIMD", ("baseline", "default"))
    assert sorted(baseline.files) == sorted(default.files) and len(baseline.files) == 21
    assert b"token 64, feature 5" in default["error"].tobytes()
    for key in baseline.files:
        assert baseline[key].tobytes() == default[key].tobytes(), key


@pytest.mark.skipif(sys.byteorder != "little", reason="a '<' dtype is native only on a little-endian host")
def test_explicitly_little_endian_arrays_are_native():
    # safetensors' memory maps are '<f4' / '<u2' arrays: their buffers' formats carry '<'
    w = rng(21).standard_normal((6, 16)).astype(np.float32)
    le = w.view(np.dtype("f4").newbyteorder("<"))
    assert memoryview(le).format == "<f"
    np.testing.assert_array_equal(prunekit.mask(le, 0.5), prunekit.mask(w, 0.5))
    stats = prunekit.Stats(16)
    stats.update(le)
    assert stats.count == 6
