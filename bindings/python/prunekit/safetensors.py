"""Reading and writing safetensors files one tensor at a time (memory-mapped), without torch.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
({name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}), then
the data; offsets are relative to the end of the header. `SafeTensorsFile` checks all of that
before anything is read (`parse_header` is the checker, and the fuzz target of
Tests/fuzz/python); `rewrite` writes a copy in which chosen tensors are replaced, keeping every
other byte. Outputs, here and in prunekit.checkpoint, are made as a `PendingFile` (or in a
`temporary_folder`): they appear, complete, only when everything succeeded; a run stopped by a
signal leaves nothing, and one killed (SIGKILL, power loss) leaves nothing where the file
system has unnamed files (O_TMPFILE), else a file that the next run in that folder removes.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import stat
import struct
import threading
from contextlib import contextmanager
from typing import BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

# safetensors dtype -> (numpy storage dtype, PruneKit dtype name or None when PruneKit cannot prune it)
DTYPES = {
    "F64": (np.float64, "float64"), "F32": (np.float32, "float32"), "F16": (np.float16, "float16"),
    "BF16": (np.uint16, "bfloat16"), "I64": (np.int64, None), "I32": (np.int32, None),
    "I16": (np.int16, None), "I8": (np.int8, None), "U8": (np.uint8, None), "BOOL": (np.bool_, None),
    "U16": (np.uint16, None), "U32": (np.uint32, None), "U64": (np.uint64, None),
}

MAX_HEADER = 100 * 1024 * 1024
MAX_DIMS = 64                   # numpy's limit on the number of dimensions
INT64_MAX = 2 ** 63 - 1
_INT64_DIGITS = len(str(INT64_MAX))
# Data is little-endian in the file; numpy dtypes above are the host's, so say so explicitly.
_STORAGE = {name: np.dtype(storage).newbyteorder("<") for name, (storage, _) in DTYPES.items()}


class SafeTensorsError(ValueError):
    """A file that is not a valid safetensors file; the message says why."""


class Tensor:
    __slots__ = ("name", "dtype", "shape", "begin", "end")

    def __init__(self, name: str, dtype: str, shape: Tuple[int, ...], begin: int, end: int):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end

    @property
    def prunekit_dtype(self) -> Optional[str]:
        return DTYPES[self.dtype][1]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def quote(text: object, limit: int = 80) -> str:
    """repr() of a name or value from a file, cut short: a header may hold anything."""
    r = repr(text)
    return r if len(r) <= limit else r[:limit - 3] + "..."


# ------------------------------------------------------------------------------------------
# The header

class _Object(dict):
    """A JSON object that remembers the keys it was given more than once, in order (json keeps
    the last value silently)."""

    __slots__ = ("duplicates",)


def _json_object(pairs) -> _Object:
    obj = _Object()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


class _NotJSON(Exception):
    pass


def _json_integer(text: str) -> int:
    if len(text.lstrip("-")) > _INT64_DIGITS:   # also keeps Python's 4300-digit limit out of reach
        raise _NotJSON(f"holds a {len(text)}-digit number, outside int64")
    return int(text)


def _json_constant(text: str):
    raise _NotJSON(f"holds {text}, which is not JSON")


def parse_json(raw: bytes, what: str):
    """JSON from a file (a header, an index), or SafeTensorsError saying why not, whatever the
    bytes: UTF-8 only, no NaN or Infinity, integers within int64, not nested past Python's
    recursion limit. Objects are dicts whose `duplicates` attribute lists the keys given twice."""
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_json_object, parse_int=_json_integer,
                          parse_constant=_json_constant)
    except UnicodeDecodeError as e:
        raise SafeTensorsError(f"{what} is not UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise SafeTensorsError(f"{what} is not valid JSON ({e.msg} at byte {e.pos})") from None
    except RecursionError:
        raise SafeTensorsError(f"{what} nests JSON arrays or objects too deeply") from None
    except _NotJSON as e:
        raise SafeTensorsError(f"{what} {e}") from None


def _utf8(text: str, what: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SafeTensorsError(f"{what} {quote(text)} is not valid UTF-8 (an unpaired surrogate escape)") from None
    return text


def _integers(value, count: Optional[int] = None) -> bool:
    """A JSON array of integers (true and false are not integers here), of `count` entries if given."""
    return (isinstance(value, list) and (count is None or len(value) == count)
            and all(type(v) is int for v in value))


def header_length(prefix: bytes, size: int, path: str) -> int:
    """The header length N from the first 8 bytes of a file of `size` bytes, checked."""
    if size < 8 or len(prefix) < 8:
        raise SafeTensorsError(f"{path}: {size} bytes is too short for a safetensors file")
    (n,) = struct.unpack("<Q", prefix[:8])
    if n > MAX_HEADER or 8 + n > size:
        raise SafeTensorsError(f"{path}: header length {n} runs past the end of the {size}-byte file")
    return n


def parse_header(raw: bytes, data_size: int, path: str) -> Tuple[Dict[str, Tensor], Optional[Dict[str, str]]]:
    """Checks a header (the N bytes after the length) against `data_size` bytes of data:
    (tensors by name, __metadata__ or None), or SafeTensorsError saying what is wrong. Nothing
    else is raised, whatever the bytes."""
    try:
        return _parse_header(raw, data_size)
    except SafeTensorsError as e:
        raise SafeTensorsError(f"{path}: {e}") from None


def _parse_header(raw: bytes, data_size: int):
    header = parse_json(raw, "header")
    if not isinstance(header, dict):
        raise SafeTensorsError("header is not a JSON object")
    if header.duplicates:
        raise SafeTensorsError(f"header names {quote(header.duplicates[0])} twice")
    metadata = header.pop("__metadata__", None)
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise SafeTensorsError("__metadata__ is not an object of strings")
        if metadata.duplicates:
            raise SafeTensorsError(f"__metadata__ names {quote(metadata.duplicates[0])} twice")
        for key, value in metadata.items():
            if not isinstance(value, str):
                raise SafeTensorsError(f"__metadata__ value of {quote(key)} is {type(value).__name__}, not a string")
            _utf8(key, "__metadata__ key")
            _utf8(value, "__metadata__ value")
        metadata = dict(metadata)
    tensors: Dict[str, Tensor] = {}
    spans = []
    for name, info in header.items():
        _utf8(name, "tensor name")
        q = quote(name)
        if not isinstance(info, dict):
            raise SafeTensorsError(f"tensor {q} is not an object with dtype, shape and data_offsets")
        twice = [key for key in info.duplicates if key in ("dtype", "shape", "data_offsets")]
        if twice:   # (other keys are ignored, as other readers do, repeated or not)
            raise SafeTensorsError(f"tensor {q} gives {twice[0]} twice")
        missing = [key for key in ("dtype", "shape", "data_offsets") if key not in info]
        if missing:
            raise SafeTensorsError(f"tensor {q} lacks {', '.join(missing)}")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise SafeTensorsError(f"tensor {q} has unknown dtype {quote(dtype)}")
        if not _integers(shape):
            raise SafeTensorsError(f"tensor {q}: shape must be a list of integers, got {quote(shape)}")
        if len(shape) > MAX_DIMS:
            raise SafeTensorsError(f"tensor {q} has {len(shape)} dimensions, more than {MAX_DIMS}")
        if not _integers(offsets, 2):
            raise SafeTensorsError(f"tensor {q}: data_offsets must be two integers [begin, end], got {quote(offsets)}")
        if any(d < 0 for d in shape) or not 0 <= offsets[0] <= offsets[1]:
            raise SafeTensorsError(f"tensor {q} has a bad shape or offsets")
        begin, end = offsets
        itemsize = _STORAGE[dtype].itemsize
        # Empty dimensions included, as numpy counts them when it makes the array.
        if math.prod(max(d, 1) for d in shape) * itemsize > INT64_MAX:
            raise SafeTensorsError(f"tensor {q}: shape {quote(shape)} has more elements than int64 can count")
        if end > data_size:
            raise SafeTensorsError(f"tensor {q} ends at {end}, past the {data_size} data bytes (truncated?)")
        expected = math.prod(shape) * itemsize
        if end - begin != expected:
            raise SafeTensorsError(f"tensor {q} has {end - begin} bytes, shape {list(shape)} of {dtype} needs {expected}")
        tensors[name] = Tensor(name, dtype, tuple(shape), begin, end)
        spans.append((begin, end, name))
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise SafeTensorsError(f"tensors {quote(n0)} and {quote(n1)} overlap")
    return tensors, metadata


def tensor_view(data: np.ndarray, data_start: int, t: Tensor) -> np.ndarray:
    """The tensor inside a file's bytes (uint8, as mapped): its shape and storage dtype, no copy."""
    raw = data[data_start + t.begin:data_start + t.end]
    return raw.view(_STORAGE[t.dtype]).reshape(t.shape)


class SafeTensorsFile:
    """A checked, memory-mapped safetensors file."""

    def __init__(self, path: str):
        self.path = path
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            n = header_length(f.read(8), size, path)
            raw = f.read(n)
        self.tensors, self.metadata = parse_header(raw, size - 8 - n, path)
        self.data_start = 8 + n
        self.size = size
        self._map = None  # mapped on first array(): a checkpoint of many shards opens them all to check them

    def array(self, name: str) -> np.ndarray:
        """The tensor as a read-only numpy array (memory-mapped; bfloat16 as uint16 bits)."""
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        return tensor_view(self._map, self.data_start, self.tensors[name])

    def __iter__(self) -> Iterator[Tensor]:
        return iter(sorted(self.tensors.values(), key=lambda t: t.begin))


# ------------------------------------------------------------------------------------------
# Output that appears only when complete

TEMPORARY_PREFIX = ".prunekit-"
# Where the file system allows it, the output is an unnamed file (O_TMPFILE) until it is
# complete, then linked into place (linkat through /proc/self/fd): a run killed by SIGKILL or a
# power loss leaves nothing. Elsewhere it is a named file that says which process made it, so
# that a later run removes it once that process is gone.
USE_UNNAMED_TEMPORARY = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")
_TEMPORARY = re.compile(r"^\.prunekit-(\d+)-[0-9a-f]{8}\.([A-Za-z0-9_-]+)\.tmp$")
_CRITICAL_SIGNALS = {getattr(signal, s) for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s)}


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", os.uname().nodename) or "host"


def _temporary_name() -> str:
    return f"{TEMPORARY_PREFIX}{os.getpid()}-{os.urandom(4).hex()}.{_host()}.tmp"


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:         # another user's process, or a pid this one may not signal
        return True
    return True


def remove_stale_temporaries(folder: str) -> List[str]:
    """Removes the temporary files and folders in `folder` that killed runs left behind (those
    of this host whose process is gone); returns their paths."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    host = _host()
    for name in names:
        match = _TEMPORARY.match(name)
        if match is None or match.group(2) != host or _running(int(match.group(1))):
            continue
        path = os.path.join(folder, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        except OSError:
            continue
        removed.append(path)
    return removed


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP that arrive during the block take effect after it: for the few
    steps that put an output in place, which must not stop half-way. (Python runs signal
    handlers in the main thread only, so they are held there, whichever thread receives them.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: List[int] = []
    held = {}
    for s in _CRITICAL_SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:
            held[s] = signal.signal(s, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        for s, handler in held.items():
            signal.signal(s, handler)
        for s in arrived:
            signal.raise_signal(s)


def temporary_folder(parent: str) -> str:
    """A new folder in `parent`, named so that remove_stale_temporaries() knows whose it is."""
    while True:
        path = os.path.join(parent, _temporary_name())
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue


class PendingFile:
    """A file being written next to `path`, mode 0666 less the umask (or the mode of the file
    at `path`, which it will replace: an in-place run keeps the input's mode). `path_to_open`
    reaches it by name while it is written; publish() puts it at `path`, complete and synced;
    discard() leaves nothing. With `unnamed`, it is an unnamed file (O_TMPFILE) where the file
    system allows it: then only this process can open it by that path."""

    def __init__(self, path: str, unnamed: bool = True):
        self.folder = os.path.dirname(os.path.abspath(path))
        self.name = os.path.basename(path)
        try:
            self.mode: Optional[int] = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            self.mode = None
        self.folder_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.fd, self.named = self._create(unnamed and USE_UNNAMED_TEMPORARY)
        except BaseException:
            os.close(self.folder_fd)
            raise
        if self.mode is not None:
            os.fchmod(self.fd, self.mode)

    def _create(self, unnamed: bool) -> Tuple[int, Optional[str]]:
        if unnamed:
            try:
                return os.open(".", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o666, dir_fd=self.folder_fd), None
            except OSError:
                pass    # a file system without unnamed files (EOPNOTSUPP; EISDIR on old kernels)
        while True:
            name = _temporary_name()
            try:
                return os.open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o666,
                               dir_fd=self.folder_fd), name
            except FileExistsError:
                continue
            except OSError as e:
                raise OSError(e.errno, f"cannot create the output there ({e.strerror})", self.folder) from None

    @property
    def path_to_open(self) -> str:
        if self.named is None:
            return f"/proc/self/fd/{self.fd}"
        return os.path.join(self.folder, self.named)

    def publish(self) -> None:
        os.fsync(self.fd)
        with signals_held():
            if self.named is None:
                # linkat(AT_SYMLINK_FOLLOW) names the unnamed file; it cannot replace a file,
                # so an existing output is replaced through a named step.
                unnamed = self.path_to_open
                try:
                    os.link(unnamed, self.name, dst_dir_fd=self.folder_fd)
                    self._close()
                    return
                except FileExistsError:
                    named = _temporary_name()
                    os.link(unnamed, named, dst_dir_fd=self.folder_fd)
                    self.named = named
            os.replace(self.named, self.name, src_dir_fd=self.folder_fd, dst_dir_fd=self.folder_fd)
            self.named = None
            self._close()

    def discard(self) -> None:
        if self.named is not None:
            try:
                os.remove(self.named, dir_fd=self.folder_fd)
            except OSError:
                pass
            self.named = None
        self._close()

    def _close(self) -> None:
        for fd in (self.fd, self.folder_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.folder_fd = -1


@contextmanager
def atomic_output(path: str) -> Iterator[BinaryIO]:
    """A PendingFile as a binary file object: it appears at `path` when the block ends without
    an exception; on an exception (or a signal that raises one) nothing is left."""
    pending = PendingFile(path)
    try:
        with open(os.dup(pending.fd), "w+b") as f:
            yield f
        pending.publish()
    except BaseException:
        pending.discard()
        raise


def rewrite(source: SafeTensorsFile, output: str, replace: Callable[[Tensor, np.ndarray, np.ndarray], bool]) -> None:
    """Writes a copy of `source` to `output`: every byte is copied, then for each tensor
    `replace(tensor, original, target)` may write new values into `target` (same shape and dtype)
    and returns whether it did. The copy is made through atomic_output: on any error, or
    SIGTERM handled as an exception, no output file is left."""
    with atomic_output(output) as out:
        with open(source.path, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 24)
        out.flush()
        target_map = np.memmap(out, dtype=np.uint8, mode="r+")
        try:
            for t in source:
                replace(t, source.array(t.name), tensor_view(target_map, source.data_start, t))
            target_map.flush()
        finally:
            del target_map


def write(path: str, tensors: Dict[str, Tuple[str, np.ndarray]], metadata: Optional[Dict[str, str]] = None) -> None:
    """Writes a new safetensors file from {name: (safetensors dtype, array)} (for tests and tools)."""
    header, offset, blobs = {}, 0, []
    for name, (dtype, array) in tensors.items():
        data = np.ascontiguousarray(array, dtype=_STORAGE[dtype]).tobytes()
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
