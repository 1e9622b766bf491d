"""Hostile and careless input to the Python API (issue 18): byte order, bfloat16 bit patterns.

The CLI's hostile inputs are in test_cli.py; the safetensors header fuzz harness is in
Tests/fuzz/python.
"""
import numpy as np
import pytest

import prunekit


def rng(seed=0):
    return np.random.default_rng(seed)


def swapped(a):
    """The same values in the other byte order (big-endian on this little-endian host)."""
    return a.astype(a.dtype.newbyteorder("S"))


def bf16_bits(x):
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


# ------------------------------------------------------------------------------------------
# Byte order. np.dtype('>f4').name is 'float32', so a byte-swapped array used to be handed to
# the library as it lies in memory and read as little-endian: wrong answers, no error. Every
# input is now read by value (a native copy) and every output that would be written in place
# is refused.

WEIGHT = rng(1).standard_normal((6, 16)).astype(np.float32)
FEATURES = np.abs(rng(2).standard_normal(16)) + 0.1


def test_swapped_byte_order_is_a_real_difference_on_this_host():
    assert not swapped(WEIGHT).dtype.isnative and swapped(WEIGHT).dtype.name == "float32"
    assert swapped(WEIGHT).tobytes() != WEIGHT.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_mask_and_score_read_swapped_weights_by_value(dtype):
    w = WEIGHT.astype(dtype)
    for kwargs in (dict(), dict(pattern="2:4"), dict(scope="layer"), dict(criterion="wanda", features=FEATURES)):
        np.testing.assert_array_equal(prunekit.mask(swapped(w), 0.5, **kwargs), prunekit.mask(w, 0.5, **kwargs))
    np.testing.assert_array_equal(prunekit.score(swapped(w)), prunekit.score(w))
    # Three dimensions (a conv weight) and a strided row slice take the same path.
    conv = w.reshape(6, 4, 4)
    np.testing.assert_array_equal(prunekit.mask(swapped(conv), 0.5), prunekit.mask(conv, 0.5))
    np.testing.assert_array_equal(prunekit.mask(swapped(w)[::2], 0.5), prunekit.mask(w[::2], 0.5))


def test_features_gradients_and_several_layers_read_swapped_by_value():
    g = rng(3).standard_normal(WEIGHT.shape).astype(np.float32)
    np.testing.assert_array_equal(prunekit.score(WEIGHT, "taylor", gradient=swapped(g)),
                                  prunekit.score(WEIGHT, "taylor", gradient=g))
    np.testing.assert_array_equal(prunekit.score(WEIGHT, "wanda", features=swapped(FEATURES)),
                                  prunekit.score(WEIGHT, "wanda", features=FEATURES))
    layers = [WEIGHT, WEIGHT[:3] * 2]
    expected = prunekit.masks(layers, 0.5)
    for got, want in zip(prunekit.masks([swapped(a) for a in layers], 0.5), expected):
        np.testing.assert_array_equal(got, want)


def test_stats_update_reads_swapped_batches_by_value():
    batch = rng(4).standard_normal((32, 16))
    for dtype in (np.float64, np.float32, np.float16):
        native, other = prunekit.Stats(16, gram=True), prunekit.Stats(16, gram=True)
        native.update(batch.astype(dtype))
        other.update(swapped(batch.astype(dtype)))
        assert native.to_bytes() == other.to_bytes()
    s = prunekit.Stats(16)
    s.update(swapped(batch.reshape(4, 8, 16)))      # higher-rank batches are flattened first
    np.testing.assert_allclose(s.l2_norm(), np.sqrt((batch ** 2).sum(0)))


def test_outputs_in_place_refuse_swapped_arrays_and_stay_untouched():
    w = swapped(WEIGHT)
    before = w.copy()
    with pytest.raises(ValueError, match="byte order"):
        prunekit.apply_mask(w, prunekit.mask(WEIGHT, 0.5))
    assert w.tobytes() == before.tobytes()
    h = np.eye(16) + 0.1
    for call in (lambda: prunekit.sparsegpt(WEIGHT, h, 0.5, out=w),
                 lambda: prunekit.sparsegpt(w, h, 0.5, out=w),
                 lambda: prunekit.reconstruct(WEIGHT, h, prunekit.mask(WEIGHT, 0.5), out=w),
                 lambda: prunekit.prune_columns(WEIGHT, h, np.arange(16) % 2 == 0, out=w),
                 lambda: prunekit.apply_structures(prunekit.Group([prunekit.Member(w, "rows")]), [True] * 6)):
        with pytest.raises(ValueError, match="byte order"):
            call()
        assert w.tobytes() == before.tobytes()


def test_reconstruction_reads_swapped_weights_and_hessians_by_value():
    x = rng(5).standard_normal((64, 16))
    h = x.T @ x
    mask, updated = prunekit.sparsegpt(WEIGHT, h, 0.5)
    got_mask, got = prunekit.sparsegpt(swapped(WEIGHT), swapped(h), 0.5)
    np.testing.assert_array_equal(got_mask, mask)
    np.testing.assert_array_equal(got, updated)
    assert got.dtype.isnative       # a new output is native, whatever the input's byte order
    np.testing.assert_array_equal(prunekit.reconstruct(swapped(WEIGHT), swapped(h), mask),
                                  prunekit.reconstruct(WEIGHT, h, mask))
    keep = np.arange(16) % 3 != 0
    np.testing.assert_array_equal(prunekit.prune_columns(swapped(WEIGHT), h, keep), prunekit.prune_columns(WEIGHT, h, keep))


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_sparse_formats_read_swapped_values_and_indices_by_value(dtype):
    w = (WEIGHT * prunekit.mask(WEIGHT, pattern="2:4")).astype(dtype)
    values, metadata = prunekit.to_24(swapped(w))
    np.testing.assert_array_equal(prunekit.from_24(swapped(values), metadata), w)
    assert prunekit.from_24(swapped(values), metadata).dtype.isnative
    offsets, columns, values = prunekit.to_csr(swapped(w))
    np.testing.assert_array_equal(prunekit.from_csr(swapped(offsets), swapped(columns), swapped(values), w.shape), w)
    bits, values = prunekit.to_bitmask(swapped(w))
    np.testing.assert_array_equal(prunekit.from_bitmask(bits, swapped(values), w.shape), w)


def test_structures_read_swapped_members_by_value():
    w1 = rng(6).standard_normal((8, 16)).astype(np.float32)
    w2 = rng(7).standard_normal((16, 8)).astype(np.float32)

    def group(a, b):
        return prunekit.Group([prunekit.Member(a, "rows"), prunekit.Member(b, "cols")])

    keep, = prunekit.select([group(w1, w2)], 0.5)
    got, = prunekit.select([group(swapped(w1), swapped(w2))], 0.5)
    np.testing.assert_array_equal(got, keep)
    (a, b), kept = prunekit.compact(group(w1, w2), keep)
    (sa, sb), skept = prunekit.compact(group(swapped(w1), swapped(w2)), keep)
    np.testing.assert_array_equal(sa, a)
    np.testing.assert_array_equal(sb, b)
    np.testing.assert_array_equal(prunekit.structure_mask(group(swapped(w1), w2), keep),
                                  prunekit.structure_mask(group(w1, w2), keep))
    q = rng(8).standard_normal((12, 16)).astype(np.float32)
    k = rng(9).standard_normal((12, 16)).astype(np.float32)
    expected = prunekit.key_channels(q, k, 2, 0.5)
    for got, want in zip(prunekit.key_channels(swapped(q), swapped(k), 2, 0.5), expected):
        np.testing.assert_array_equal(got, want)


def unaligned(a):
    """The same values at an address that is not a multiple of the item size (as the data of a
    safetensors file whose header length is not, read through a memory map)."""
    raw = np.zeros(a.nbytes + 1, np.uint8)[1:]
    raw[:] = a.reshape(-1).view(np.uint8)
    out = raw.view(a.dtype).reshape(a.shape)
    assert not out.flags.aligned and out.flags.c_contiguous
    return out


def test_unaligned_inputs_are_read_through_an_aligned_copy():
    # A contiguous, unaligned array used to reach the library as it was ("data pointer is not
    # aligned"): np.ascontiguousarray does not copy it.
    for dtype in (np.float32, np.float16, np.float64):
        w = WEIGHT.astype(dtype)
        np.testing.assert_array_equal(prunekit.mask(unaligned(w), 0.5), prunekit.mask(w, 0.5))
    bits = bf16_bits(WEIGHT)
    np.testing.assert_array_equal(prunekit.mask(prunekit.bfloat16(unaligned(bits)), 0.5),
                                  prunekit.mask(prunekit.bfloat16(bits), 0.5))
    out = unaligned(WEIGHT)
    with pytest.raises(ValueError, match="aligned"):
        prunekit.apply_mask(out, prunekit.mask(WEIGHT, 0.5))


def test_bfloat16_bit_patterns_in_either_byte_order():
    bits = bf16_bits(WEIGHT)
    np.testing.assert_array_equal(prunekit.mask(prunekit.bfloat16(swapped(bits)), 0.5),
                                  prunekit.mask(prunekit.bfloat16(bits), 0.5))
    out = swapped(bits)
    with pytest.raises(ValueError, match="byte order"):
        prunekit.apply_mask(prunekit.bfloat16(out), prunekit.mask(WEIGHT, 0.5))
    assert out.tobytes() == swapped(bits).tobytes()
    with pytest.raises(TypeError, match="uint16"):
        prunekit.bfloat16(WEIGHT)


# ------------------------------------------------------------------------------------------
# bfloat16 bit patterns without out=: sparsegpt used to make a uint16 array for the result and
# then refuse it ("out: dtype uint16 is not supported").

def test_reconstruction_of_bfloat16_bit_patterns_without_out():
    x = rng(10).standard_normal((64, 16))
    h = x.T @ x
    bits = bf16_bits(WEIGHT)
    given = np.empty_like(bits)
    mask, _ = prunekit.sparsegpt(prunekit.bfloat16(bits), h, 0.5, out=prunekit.bfloat16(given))
    got_mask, result = prunekit.sparsegpt(prunekit.bfloat16(bits), h, 0.5)
    assert isinstance(result, prunekit.bfloat16)      # the kind of array it was given
    assert result.bits.dtype == np.uint16 and result.shape == bits.shape
    np.testing.assert_array_equal(got_mask, mask)
    np.testing.assert_array_equal(result.bits, given)
    assert (result.bits[~mask] & 0x7FFF == 0).all()
    # Conv-shaped bit patterns keep their shape; reconstruct and prune_columns take the same path.
    conv = bits.reshape(6, 4, 4)
    assert prunekit.sparsegpt(prunekit.bfloat16(conv), h, 0.5)[1].shape == (6, 4, 4)
    np.testing.assert_array_equal(prunekit.reconstruct(prunekit.bfloat16(bits), h, mask).bits,
                                  prunekit.reconstruct(prunekit.bfloat16(bits), h, mask,
                                                       out=prunekit.bfloat16(np.empty_like(bits))).bits)
    keep = np.arange(16) % 2 == 0
    assert (prunekit.prune_columns(prunekit.bfloat16(bits), h, keep).bits[:, ~keep] == 0).all()


def test_reconstruction_of_ml_dtypes_bfloat16_without_out():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = rng(11).standard_normal((64, 16))
    h = x.T @ x
    w = WEIGHT.astype(ml_dtypes.bfloat16)
    mask, result = prunekit.sparsegpt(w, h, 0.5)
    assert result.dtype == w.dtype and result.shape == w.shape
    _, expected = prunekit.sparsegpt(prunekit.bfloat16(w.view(np.uint16)), h, 0.5)
    np.testing.assert_array_equal(result.view(np.uint16), expected.bits)
