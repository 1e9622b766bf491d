"""Reading and writing safetensors files one tensor at a time (memory-mapped), without torch.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
({name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}), then the
data; offsets are relative to the end of the header. `SafeTensorsFile` checks all of that before
anything is read; `rewrite` writes a copy in which chosen tensors are replaced, keeping every
other byte, through a temporary file renamed into place only on success.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np

# safetensors dtype -> (numpy storage dtype, PruneKit dtype name or None when PruneKit cannot prune it)
DTYPES = {
    "F64": (np.float64, "float64"), "F32": (np.float32, "float32"), "F16": (np.float16, "float16"),
    "BF16": (np.uint16, "bfloat16"), "I64": (np.int64, None), "I32": (np.int32, None),
    "I16": (np.int16, None), "I8": (np.int8, None), "U8": (np.uint8, None), "BOOL": (np.bool_, None),
    "U16": (np.uint16, None), "U32": (np.uint32, None), "U64": (np.uint64, None),
}

MAX_HEADER = 100 * 1024 * 1024


class SafeTensorsError(ValueError):
    """A file that is not a valid safetensors file; the message says why."""


class Tensor:
    __slots__ = ("name", "dtype", "shape", "begin", "end")

    def __init__(self, name: str, dtype: str, shape: Tuple[int, ...], begin: int, end: int):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end

    @property
    def prunekit_dtype(self) -> Optional[str]:
        return DTYPES[self.dtype][1]


class SafeTensorsFile:
    """A checked, memory-mapped safetensors file."""

    def __init__(self, path: str):
        self.path = path
        size = os.path.getsize(path)
        if size < 8:
            raise SafeTensorsError(f"{path}: {size} bytes is too short for a safetensors file")
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > MAX_HEADER or 8 + n > size:
                raise SafeTensorsError(f"{path}: header length {n} runs past the end of the {size}-byte file")
            raw = f.read(n)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SafeTensorsError(f"{path}: header is not valid JSON ({e})") from None
        if not isinstance(header, dict):
            raise SafeTensorsError(f"{path}: header is not a JSON object")
        self.metadata = header.pop("__metadata__", None)
        self.data_start = 8 + n
        data_size = size - self.data_start
        self.tensors: Dict[str, Tensor] = {}
        spans = []
        for name, info in header.items():
            try:
                dtype, shape, (begin, end) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
            except (KeyError, TypeError, ValueError):
                raise SafeTensorsError(f"{path}: tensor {name!r} lacks dtype, shape or data_offsets") from None
            if dtype not in DTYPES:
                raise SafeTensorsError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}")
            if any(d < 0 for d in shape) or not (0 <= begin <= end):
                raise SafeTensorsError(f"{path}: tensor {name!r} has a bad shape or offsets")
            if end > data_size:
                raise SafeTensorsError(f"{path}: tensor {name!r} ends at {end}, past the {data_size} data bytes (truncated?)")
            expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(DTYPES[dtype][0]).itemsize
            if end - begin != expected:
                raise SafeTensorsError(f"{path}: tensor {name!r} has {end - begin} bytes, shape {list(shape)} of {dtype} needs {expected}")
            self.tensors[name] = Tensor(name, dtype, shape, begin, end)
            spans.append((begin, end, name))
        spans.sort()
        for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
            if b1 < e0:
                raise SafeTensorsError(f"{path}: tensors {n0!r} and {n1!r} overlap")
        self.size = size
        self._map = None  # mapped on first array(): a checkpoint of many shards opens them all to check them

    def array(self, name: str) -> np.ndarray:
        """The tensor as a read-only numpy array (memory-mapped; bfloat16 as uint16 bits)."""
        t = self.tensors[name]
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        raw = self._map[self.data_start + t.begin:self.data_start + t.end]
        return raw.view(DTYPES[t.dtype][0]).reshape(t.shape)

    def __iter__(self) -> Iterator[Tensor]:
        return iter(sorted(self.tensors.values(), key=lambda t: t.begin))


def rewrite(source: SafeTensorsFile, output: str, replace: Callable[[Tensor, np.ndarray, np.ndarray], bool]) -> None:
    """Writes a copy of `source` to `output`: every byte is copied, then for each tensor
    `replace(tensor, original, target)` may write new values into `target` (same shape and dtype)
    and returns whether it did. The copy goes to a temporary file in the output's folder, renamed
    over `output` only when everything succeeded; on any error no output file is left."""
    folder = os.path.dirname(os.path.abspath(output)) or "."
    fd, temporary = tempfile.mkstemp(prefix=".prunekit-", suffix=".safetensors", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out, open(source.path, "rb") as src:
            while True:
                chunk = src.read(1 << 24)
                if not chunk:
                    break
                out.write(chunk)
        target_map = np.memmap(temporary, dtype=np.uint8, mode="r+")
        for t in source:
            raw = target_map[source.data_start + t.begin:source.data_start + t.end]
            target = raw.view(DTYPES[t.dtype][0]).reshape(t.shape)
            replace(t, source.array(t.name), target)
        target_map.flush()
        del target_map
        os.replace(temporary, output)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write(path: str, tensors: Dict[str, Tuple[str, np.ndarray]], metadata: Optional[Dict[str, str]] = None) -> None:
    """Writes a new safetensors file from {name: (safetensors dtype, array)} (for tests and tools)."""
    header, offset, blobs = {}, 0, []
    for name, (dtype, array) in tensors.items():
        data = np.ascontiguousarray(array, dtype=DTYPES[dtype][0]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)
