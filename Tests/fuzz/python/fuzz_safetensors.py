"""Fuzz harness for the CLI's safetensors header checker (prunekit.safetensors).

The property, for any bytes taken as a whole file: `header_length` + `parse_header` either
raise SafeTensorsError with a short, printable message that names the file, or return tensors
that the rest of the CLI can use as they are (inside the data, sizes that match their shapes,
no overlaps, views that numpy makes, str -> str metadata). Any other exception is a finding.

    python Tests/fuzz/python/fuzz_safetensors.py CORPUS_DIR... [libFuzzer flags]   (atheris)
    python Tests/fuzz/python/fuzz_safetensors.py --mutate SECONDS CORPUS_DIR...    (no atheris)
    python Tests/fuzz/python/fuzz_safetensors.py --replay CORPUS_DIR...            (line coverage)

`make fuzz-python FUZZ_TIME=600` runs the first (installing atheris from PyPI if it is
missing) with the committed seed corpus (corpus/) and dictionary (safetensors.dict). pytest
runs the seeds and a few seconds of the built-in mutator and of hypothesis on every test run
(Tests/python/test_hostile.py).
"""
from __future__ import annotations

import json
import math
import os
import random
import struct
import sys
import time
from typing import Iterable, List

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
DICTIONARY = os.path.join(HERE, "safetensors.dict")
NAME = "fuzz.safetensors"


def _import_targets():
    global st, shown, nm_ok
    from prunekit import safetensors as st
    from prunekit.cli import nm_ok, shown
    return st


def check(data: bytes) -> None:
    """The property for one input, as it is and with its length prefix made to fit (so that
    mutated JSON of any length reaches the header checker, not only the length check)."""
    check_file(data)
    body = data[8:]
    end = body.rfind(b"}") + 1
    if end:
        check_file(struct.pack("<Q", end) + body)


def check_file(data: bytes) -> None:
    try:
        n = st.header_length(data[:8], len(data), NAME)
        tensors, metadata = st.parse_header(data[8:8 + n], len(data) - 8 - n, NAME)
    except st.SafeTensorsError as e:
        message = str(e)
        assert message.startswith(f"{NAME}: "), message
        assert len(message) < 600, message
        message.encode("utf-8")                     # printable as it is
        return
    data_size = len(data) - 8 - n
    assert metadata is None or all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    file_bytes = np.frombuffer(data, dtype=np.uint8)
    spans = []
    for name, t in tensors.items():
        assert isinstance(name, str) and t.name == name
        name.encode("utf-8")
        assert t.dtype in st.DTYPES and all(type(d) is int and 0 <= d <= st.INT64_MAX for d in t.shape)
        assert len(t.shape) <= st.MAX_DIMS
        assert 0 <= t.begin <= t.end <= data_size
        itemsize = np.dtype(st.DTYPES[t.dtype][0]).itemsize
        assert t.end - t.begin == math.prod(t.shape) * itemsize
        view = st.tensor_view(file_bytes, 8 + n, t)     # what SafeTensorsFile.array() returns
        assert view.shape == t.shape and view.nbytes == t.end - t.begin
        # What the CLI does with every tensor it prints or could prune.
        shown(name)
        if len(t.shape) >= 2 and t.prunekit_dtype and t.size:
            rows = view.reshape(t.shape[0], math.prod(t.shape[1:]))
            nm_ok(rows != 0, 2, 4)
        if t.begin < t.end:
            spans.append((t.begin, t.end))
    spans.sort()
    assert all(e0 <= b1 for (_, e0), (b1, _) in zip(spans, spans[1:])), spans


# ------------------------------------------------------------------------------------------
# Without atheris: a mutator of the same shape as libFuzzer's (bytes, dictionary tokens,
# splices, interesting integers), seeded, so that a run is reproducible.

def dictionary_tokens(path: str = DICTIONARY) -> List[bytes]:
    tokens = []
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if line.startswith(b'"') and line.endswith(b'"'):
                tokens.append(line[1:-1].decode("unicode_escape").encode("latin-1"))
    return tokens


INTERESTING = [b"0", b"-1", b"1", b"7", b"8", b"128", b"4294967296", b"9223372036854775807",
               b"9223372036854775808", b"18446744073709551616", b"1e309", b"1.0", b"true", b"null", b'"8"']


def mutate(data: bytes, rng: random.Random, tokens: List[bytes], corpus: List[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        at = rng.randint(0, len(b))
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            del b[at:at + rng.randint(1, 8)]
        elif op == 2:
            b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif op == 3 and tokens:
            b[at:at] = rng.choice(tokens)
        elif op == 4:
            b[at:at] = rng.choice(INTERESTING)
        elif op == 5 and corpus:                    # splice with another input
            other = rng.choice(corpus)
            cut = rng.randint(0, len(other))
            b = b[:at] + other[cut:cut + rng.randint(1, 64)] + b[at:]
        elif op == 6 and len(b) >= 8:               # another header length
            b[:8] = struct.pack("<Q", rng.choice([0, 1, len(b) - 8, len(b), rng.randrange(1 << 20), 2 ** 63]))
        elif op == 7:                               # replace a number
            digits = [i for i, c in enumerate(b) if 48 <= c <= 57]
            if digits:
                i = rng.choice(digits)
                j = i
                while j < len(b) and 48 <= b[j] <= 57:
                    j += 1
                b[i:j] = rng.choice(INTERESTING)
        elif op == 8 and b:                         # repeat a piece (nesting, duplicates)
            piece = bytes(b[at:at + rng.randint(1, 16)])
            b[at:at] = piece * rng.randint(2, 64)
    return bytes(b)


def read_corpus(folders: Iterable[str]) -> List[bytes]:
    inputs = []
    for folder in folders:
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    inputs.append(f.read())
    return inputs


def mutation_run(seconds: float, corpus: List[bytes], seed: int = 0, max_runs: int = 0) -> int:
    """Checks mutants of the corpus for `seconds` (or `max_runs` inputs); returns how many."""
    rng, tokens = random.Random(seed), dictionary_tokens()
    pool = list(corpus)
    deadline, runs = time.monotonic() + seconds, 0
    while time.monotonic() < deadline and (not max_runs or runs < max_runs):
        data = mutate(rng.choice(pool), rng, tokens, pool)
        try:
            check(data)
        except Exception:
            sys.stderr.write(f"finding after {runs} inputs; input: {data!r}\n")
            raise
        runs += 1
        if rng.random() < 0.01 and len(data) < 4096:
            pool.append(data)                       # a crude corpus growth, without coverage
    return runs


# ------------------------------------------------------------------------------------------
# Line coverage of the checker over a corpus (stdlib only)

def replay_coverage(corpus: List[bytes]) -> str:
    import dis
    targets = [st.header_length, st.parse_header, st._parse_header, st.parse_json, st._json_object,
               st._json_integer, st._json_constant, st._utf8, st._integers, st.quote, st.tensor_view]
    lines = {(f.__code__.co_filename, n) for f in targets for _, n in dis.findlinestarts(f.__code__)
             if n is not None and n > f.__code__.co_firstlineno}
    hit = set()

    def tracer(frame, event, arg):
        if frame.f_code.co_filename == st.__file__:
            hit.add((frame.f_code.co_filename, frame.f_lineno))
            return tracer
        return None

    sys.settrace(tracer)
    try:
        for data in corpus:
            check(data)
    finally:
        sys.settrace(None)
    covered = lines & hit
    missed = sorted(n for _, n in lines - hit)
    return (f"{len(corpus)} inputs: {len(covered)} of {len(lines)} lines of the header checker "
            f"({100 * len(covered) / len(lines):.1f}%); not reached: lines {missed}")


def main(argv: List[str]) -> None:
    if argv[1:2] == ["--replay"]:
        _import_targets()
        print(replay_coverage(read_corpus(argv[2:] or [CORPUS])))
        return
    if argv[1:2] == ["--mutate"]:
        _import_targets()
        seconds = float(argv[2])
        corpus = read_corpus(argv[3:] or [CORPUS])
        start = time.monotonic()
        runs = mutation_run(seconds, corpus)
        print(f"{runs} inputs in {time.monotonic() - start:.1f} s, no finding")
        return
    import atheris
    with atheris.instrument_imports(include=["prunekit"]):
        _import_targets()       # json's C scanner is not instrumented, so the seeds and the
                                # dictionary carry the JSON structure

    def one_input(data: bytes) -> None:
        check(data)

    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
