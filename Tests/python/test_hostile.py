"""Hostile and careless input to the Python API (issue 18): byte order, bfloat16 bit patterns.

The CLI's hostile inputs are in test_cli.py; the safetensors header fuzz harness is in
Tests/fuzz/python.
"""
import json
import os
import struct
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as hyp

import prunekit
from prunekit import cli
from prunekit import safetensors as st


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
                 lambda: prunekit.admm(WEIGHT, h, 0.5, out=w),
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
    for got, want in zip(prunekit.admm(swapped(WEIGHT), swapped(h), 0.5), prunekit.admm(WEIGHT, h, 0.5)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(prunekit.refine_mask(swapped(WEIGHT), swapped(h), mask),
                                  prunekit.refine_mask(WEIGHT, h, mask))


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
    admm_mask, admm_result = prunekit.admm(prunekit.bfloat16(bits), h, 0.5)
    assert isinstance(admm_result, prunekit.bfloat16)
    np.testing.assert_array_equal(admm_result.bits, prunekit.admm(prunekit.bfloat16(bits), h, 0.5,
                                                                  out=prunekit.bfloat16(np.empty_like(bits)))[1].bits)


def test_reconstruction_of_ml_dtypes_bfloat16_without_out():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = rng(11).standard_normal((64, 16))
    h = x.T @ x
    w = WEIGHT.astype(ml_dtypes.bfloat16)
    mask, result = prunekit.sparsegpt(w, h, 0.5)
    assert result.dtype == w.dtype and result.shape == w.shape
    _, expected = prunekit.sparsegpt(prunekit.bfloat16(w.view(np.uint16)), h, 0.5)
    np.testing.assert_array_equal(result.view(np.uint16), expected.bits)


# ------------------------------------------------------------------------------------------
# Hostile safetensors headers: each is refused by the reader with its own message, and by the
# CLI with exit 2 and no traceback (they used to give a RecursionError traceback, raw Python
# messages such as "unhashable type: 'list'", or were accepted).

BODY = np.arange(32, dtype=np.float32).tobytes()          # one F32 tensor [4, 8]
GOOD = {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, 128]}


def safetensors_bytes(header, body=BODY):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def tensor(**fields):
    return {"w": dict(GOOD, **fields)}


HOSTILE = {
    "nested arrays": (b'{"w":' + b"[" * 100000 + b"]" * 100000 + b"}", "too deeply"),
    "nested objects": (b'{"w":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}", "too deeply"),
    "duplicate tensor": (b'{"w":' + json.dumps(GOOD).encode() + b',"w":' + json.dumps(GOOD).encode() + b"}",
                         "names 'w' twice"),
    "duplicate field": (b'{"w":{"dtype":"F32","dtype":"F16","shape":[4,8],"data_offsets":[0,128]}}', "twice"),
    "shape of strings": (tensor(shape=["4", "8"]), "list of integers"),
    "shape a string": (tensor(shape="48"), "list of integers"),
    "shape of floats": (tensor(shape=[4.0, 8.0]), "list of integers"),
    "shape of booleans": (tensor(shape=[4, 8, True]), "list of integers"),
    "shape null": (tensor(shape=None), "list of integers"),
    "element count past int64": (tensor(shape=[4, 8, 2 ** 32, 2 ** 32]), "int64"),
    "empty, but huge": ({"w": GOOD, "e": {"dtype": "F32", "shape": [0, 2 ** 62, 4], "data_offsets": [128, 128]}},
                        "int64"),
    "dimension past int64": (tensor(shape=[4, 8, 2 ** 63]), "int64"),
    "too many dimensions": (tensor(shape=[4, 8] + [1] * 100), "dimensions"),
    "dtype a list": (tensor(dtype=["F32"]), "unknown dtype"),
    "dtype a number": (tensor(dtype=32), "unknown dtype"),
    "offsets of floats": (tensor(data_offsets=[0.0, 128.0]), "data_offsets"),
    "offsets of three": (tensor(data_offsets=[0, 128, 256]), "data_offsets"),
    "offsets a string": (tensor(data_offsets="0,128"), "data_offsets"),
    "offsets of booleans": (tensor(data_offsets=[False, 128]), "data_offsets"),
    "tensor a list": ({"w": [1, 2, 3]}, "not an object"),
    "missing shape": ({"w": {"dtype": "F32", "data_offsets": [0, 128]}}, "lacks shape"),
    "header a list": ([GOOD], "not a JSON object"),
    "metadata value a number": ({**tensor(), "__metadata__": {"format": 1}}, "not a string"),
    "metadata value a list": ({**tensor(), "__metadata__": {"format": ["pt"]}}, "not a string"),
    "metadata a list": ({**tensor(), "__metadata__": ["pt"]}, "not an object"),
    "duplicate metadata": (b'{"w":' + json.dumps(GOOD).encode() + b',"__metadata__":{"a":"1","a":"2"}}', "twice"),
    "a 5000-digit number": (b'{"w":{"dtype":"F32","shape":[4,8],"data_offsets":[0,' + b"1" * 5000 + b"]}}",
                            "digit number"),
    "NaN": (b'{"w":' + json.dumps(GOOD).encode() + b',"__metadata__":{"x":NaN}}', "NaN"),
    "unpaired surrogate": (b'{"\\ud800":' + json.dumps(GOOD).encode() + b"}", "UTF-8"),
    "not UTF-8": (b'{"\xff":' + json.dumps(GOOD).encode() + b"}", "UTF-8"),
    "not JSON": (b"{oops", "not valid JSON"),
}


@pytest.mark.parametrize("label", sorted(HOSTILE))
def test_hostile_headers_are_refused_with_their_own_message(label, tmp_path, capsys):
    header, expected = HOSTILE[label]
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(safetensors_bytes(header))
    with pytest.raises(st.SafeTensorsError, match=expected) as caught:
        st.SafeTensorsFile(str(path))
    assert str(caught.value).startswith(str(path))
    assert len(str(caught.value)) < 400      # a hostile name or value is quoted short
    out = tmp_path / "out.safetensors"
    for argv in (["prune", str(path), "-o", str(out)], ["inspect", str(path)],
                 ["export", str(path), "w", "--format", "csr", "-o", str(tmp_path / "w.npz")]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("prunekit: error: ") and expected in err, err
    assert sorted(os.listdir(tmp_path)) == ["hostile.safetensors"]


def test_the_header_checker_raises_nothing_but_its_error():
    # The fuzz harness (Tests/fuzz/python) holds this property for arbitrary bytes; here, for
    # the hostile headers above and every truncation of one valid header.
    for header, _ in HOSTILE.values():
        data = safetensors_bytes(header)
        with pytest.raises(st.SafeTensorsError):
            st.parse_header(data[8:], len(BODY), "x")
    raw = json.dumps({**tensor(), "__metadata__": {"format": "pt"}}).encode()
    for end in range(len(raw)):
        with pytest.raises(st.SafeTensorsError):
            st.parse_header(raw[:end], len(BODY), "x")
    tensors, metadata = st.parse_header(raw, len(BODY), "x")
    assert tensors["w"].shape == (4, 8) and metadata == {"format": "pt"}


def test_a_deeply_nested_header_gives_the_cli_error_not_a_traceback(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "nested.safetensors"
    path.write_bytes(safetensors_bytes(HOSTILE["nested arrays"][0]))
    result = subprocess.run([sys.executable, "-m", "prunekit", "prune", str(path), "-o", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "too deeply" in result.stderr


def test_names_that_are_terminal_controls_are_printed_escaped(tmp_path, capsys):
    path = tmp_path / "names.safetensors"
    st.write(str(path), {"\x1b[2Jclear": ("F32", np.ones((4, 8), np.float32))})
    assert cli.main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[2Jclear" in out
    assert cli.main(["prune", str(path), "-o", str(tmp_path / "o.safetensors")]) == 0
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[2Jclear" in err


# ------------------------------------------------------------------------------------------
# Outputs that appear only when complete, unnamed (O_TMPFILE) or named (file systems without
# unnamed files): the umask's mode, or the mode of the file replaced; nothing left on failure.

@pytest.mark.parametrize("unnamed", [True, False])
def test_pending_outputs_modes_and_failures(monkeypatch, tmp_path, unnamed):
    monkeypatch.setattr(st, "USE_UNNAMED_TEMPORARY", unnamed)
    path = tmp_path / "out.bin"
    old = os.umask(0o027)
    try:
        with st.atomic_output(str(path)) as f:
            f.write(b"first")
            assert not path.exists()
            assert bool([p for p in os.listdir(tmp_path) if p.startswith(".prunekit-")]) != unnamed
        assert path.read_bytes() == b"first" and os.stat(path).st_mode & 0o7777 == 0o640
        os.chmod(path, 0o604)
        with st.atomic_output(str(path)) as f:
            f.write(b"second")
        assert path.read_bytes() == b"second" and os.stat(path).st_mode & 0o7777 == 0o604
        with pytest.raises(KeyError):
            with st.atomic_output(str(path)) as f:
                f.write(b"third")
                raise KeyError("stop")
        assert path.read_bytes() == b"second"
        assert os.listdir(tmp_path) == ["out.bin"]
    finally:
        os.umask(old)
    with pytest.raises(OSError):
        st.PendingFile(str(tmp_path / "no such folder" / "x"))


def test_signals_wait_while_an_output_is_put_in_place():
    import signal
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append("handled"))
    try:
        with st.signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            seen.append("inside")
        assert seen == ["inside", "handled"]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_stale_temporaries_are_those_of_dead_processes_of_this_host(tmp_path):
    import subprocess
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    host = st._host()
    names = {"dead": f".prunekit-{pid}-0123abcd.{host}.tmp", "dead-folder": f".prunekit-{pid}-4567abcd.{host}.tmp",
             "alive": f".prunekit-{os.getpid()}-89abcdef.{host}.tmp", "other-host": f".prunekit-{pid}-0123abcd.elsewhere.tmp",
             "not ours": f".prunekit-{pid}.{host}.tmp", "old style": ".prunekit-x1y2z3.safetensors"}
    for label, name in names.items():
        if label == "dead-folder":
            (tmp_path / name).mkdir()
            (tmp_path / name / "model.safetensors").write_bytes(b"x")
        else:
            (tmp_path / name).write_bytes(b"x")
    removed = st.remove_stale_temporaries(str(tmp_path))
    assert sorted(removed) == sorted(str(tmp_path / names[k]) for k in ("dead", "dead-folder"))
    assert sorted(os.listdir(tmp_path)) == sorted(v for k, v in names.items() if k not in ("dead", "dead-folder"))


# ------------------------------------------------------------------------------------------
# The fuzz harness of the header checker (Tests/fuzz/python), bounded to a few seconds here;
# `make fuzz-python FUZZ_TIME=...` runs it coverage-guided with atheris.

FUZZ = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "python")
sys.path.insert(0, FUZZ)
import fuzz_safetensors  # noqa: E402

fuzz_safetensors._import_targets()
SEEDS = fuzz_safetensors.read_corpus([fuzz_safetensors.CORPUS])


def test_fuzz_seed_corpus_then_a_bounded_mutation_run():
    assert len(SEEDS) >= 10
    for data in SEEDS:
        fuzz_safetensors.check(data)
    assert fuzz_safetensors.mutation_run(3.0, SEEDS, seed=18) > 1000


json_scalars = hyp.none() | hyp.booleans() | hyp.integers(-2 ** 70, 2 ** 70) | hyp.floats() | hyp.text(max_size=6)
json_values = json_scalars | hyp.lists(json_scalars, max_size=3) | hyp.dictionaries(hyp.text(max_size=4), json_scalars,
                                                                                     max_size=2)
tensor_info = hyp.fixed_dictionaries(
    {"dtype": hyp.sampled_from(sorted(st.DTYPES)) | json_scalars,
     "shape": hyp.lists(hyp.integers(0, 6), max_size=4) | hyp.lists(hyp.integers(-2, 2 ** 64) | json_scalars, max_size=4)
              | json_values,
     "data_offsets": hyp.tuples(hyp.integers(0, 160), hyp.integers(0, 160)).map(sorted) | json_values})
headers = hyp.builds(lambda tensors, metadata: tensors if metadata is None else {**tensors, "__metadata__": metadata},
                     hyp.dictionaries(hyp.text(max_size=8), tensor_info | json_values, max_size=3),
                     hyp.none() | hyp.dictionaries(hyp.text(max_size=4), hyp.text(max_size=4) | json_scalars, max_size=2)
                     ) | json_values


@given(header=headers, body=hyp.integers(0, 160))
@settings(max_examples=400, deadline=None)
def test_fuzz_structured_headers(header, body):
    raw = json.dumps(header).encode()
    fuzz_safetensors.check(struct.pack("<Q", len(raw)) + raw + bytes(body))


def test_fuzz_coverage_guided_for_a_few_seconds(tmp_path):
    pytest.importorskip("atheris")     # make fuzz-python installs it; elsewhere the two above run
    import subprocess
    result = subprocess.run([sys.executable, os.path.join(FUZZ, "fuzz_safetensors.py"), str(tmp_path),
                             fuzz_safetensors.CORPUS, f"-dict={fuzz_safetensors.DICTIONARY}", "-max_total_time=3",
                             f"-artifact_prefix={tmp_path}/"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done" in result.stderr
