"""Sparse exports: layouts checked against independent constructions (scipy's CSR, numpy's
packbits, a numpy 2:4 packer), round trips for every dtype, refusals."""
import numpy as np
import pytest

import prunekit

try:
    import torch
except ImportError:
    torch = None


def pruned_24(rng, rows, cols, dtype=np.float32, fewer=True):
    w = rng.standard_normal((rows, cols)).astype(dtype)
    m = prunekit.mask(w, pattern="2:4")
    w = w * m
    if fewer:  # some groups with fewer than 2 non-zeros
        w[0, :4] = 0
        w[1, 4:8] = [0, 0, 0, 3]
    return w


def reference_24(w):
    """The documented 2:4 layout, built with numpy."""
    rows, cols = w.shape
    values = np.zeros((rows, cols // 2), w.dtype)
    metadata = np.zeros((rows, (cols // 4 + 1) // 2), np.uint8)
    for r in range(rows):
        for g in range(cols // 4):
            group = w[r, 4 * g:4 * g + 4]
            picked = [i for i in range(4) if group[i] != 0]
            picked += [i for i in range(4) if i not in picked][:2 - len(picked)]
            picked.sort()
            values[r, 2 * g:2 * g + 2] = group[picked]
            metadata[r, g // 2] |= (picked[0] | picked[1] << 2) << (4 * (g % 2))
    return values, metadata


@pytest.mark.parametrize("cols", [8, 12, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_24_layout_and_round_trip(cols, dtype):
    w = pruned_24(np.random.default_rng(cols), 5, cols, dtype)
    values, metadata = prunekit.to_24(w)
    ref_values, ref_metadata = reference_24(w)
    np.testing.assert_array_equal(metadata, ref_metadata)
    np.testing.assert_array_equal(values, ref_values)
    np.testing.assert_array_equal(prunekit.from_24(values, metadata), w)


def test_csr_and_bitmask_match_scipy_and_packbits():
    scipy_sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(1)
    w = rng.standard_normal((7, 19))
    w[rng.random(w.shape) < 0.6] = 0
    w[3] = 0  # an empty row
    w[4, 5] = -0.0
    offsets, columns, values = prunekit.to_csr(w)
    ref = scipy_sparse.csr_matrix(w)
    np.testing.assert_array_equal(offsets, ref.indptr)
    np.testing.assert_array_equal(columns, ref.indices)
    np.testing.assert_array_equal(values, ref.data)
    np.testing.assert_array_equal(prunekit.from_csr(offsets, columns, values, w.shape), w)
    bits, values = prunekit.to_bitmask(w)
    np.testing.assert_array_equal(bits, np.packbits(w != 0, axis=1, bitorder="little"))
    np.testing.assert_array_equal(values, w[w != 0])
    np.testing.assert_array_equal(prunekit.from_bitmask(bits, values, w.shape), w)
    empty = np.zeros((3, 9), np.float32)
    assert np.array_equal(prunekit.from_csr(*prunekit.to_csr(empty), empty.shape), empty)
    assert np.array_equal(prunekit.from_bitmask(*prunekit.to_bitmask(empty), empty.shape), empty)


def test_strided_and_bfloat16_inputs():
    rng = np.random.default_rng(2)
    big = pruned_24(rng, 4, 24)
    view = np.zeros((4, 32), np.float32)
    view[:, 4:28] = big
    values, metadata = prunekit.to_24(view[:, 4:28])
    np.testing.assert_array_equal(prunekit.from_24(values, metadata), big)
    if torch is not None:
        t = torch.from_numpy(big).to(torch.bfloat16)
        values, metadata = prunekit.to_24(t)
        assert values.dtype == np.uint16
        back = torch.from_numpy(prunekit.from_24(values, metadata).view(np.int16)).view(torch.bfloat16)
        assert torch.equal(back, t)


def test_refusals():
    rng = np.random.default_rng(3)
    dense = rng.standard_normal((3, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="not 2:4: row 0, columns 0...3"):
        prunekit.to_24(dense)
    with pytest.raises(ValueError, match="divisible by 4"):
        prunekit.to_24(np.zeros((2, 6), np.float32))
    w = pruned_24(rng, 3, 8)
    values, metadata = prunekit.to_24(w)
    bad = metadata.copy()
    bad[1, 0] = (bad[1, 0] & 0xF0) | 0b0011  # positions 3 then 0: not increasing
    with pytest.raises(ValueError, match="row 1, group 0"):
        prunekit.from_24(values, bad)
    offsets, columns, vals = prunekit.to_csr(w)
    swapped = columns.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    with pytest.raises(ValueError, match="do not increase"):
        prunekit.from_csr(offsets, swapped, vals, w.shape)
    out_of_range = columns.copy()
    out_of_range[-1] = 99
    with pytest.raises(ValueError, match="out of range"):
        prunekit.from_csr(offsets, out_of_range, vals, w.shape)
    bits, vals = prunekit.to_bitmask(w)
    with pytest.raises(ValueError, match="disagree"):
        prunekit.from_bitmask(bits, vals[:-1], w.shape)
    nan = w.copy()
    nan[2, 2] = np.nan
    with pytest.raises(ValueError, match="row 2, column 2"):
        prunekit.to_csr(nan)


def test_csr_offsets_are_checked_before_columns_are_read():
    # A middle offset above nnz used to make the core read row 0's columns past the buffer.
    with pytest.raises(ValueError, match="decrease at row 1"):
        prunekit.from_csr(np.array([0, 2, 1]), np.array([0]), np.array([1.0], np.float32), (2, 4))
    # Column indices must be integers: floats are refused, not truncated.
    with pytest.raises(TypeError, match="integer"):
        prunekit.from_csr(np.array([0, 1, 1]), np.array([0.7]), np.array([1.0], np.float32), (2, 4))
    dense = prunekit.from_csr([0, 1, 1], [3], np.array([2.0], np.float32), (2, 4))
    assert dense.tolist() == [[0, 0, 0, 2], [0, 0, 0, 0]]
