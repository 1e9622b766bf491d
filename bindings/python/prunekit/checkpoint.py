"""Checkpoints as Hugging Face writes them: one safetensors file, or shards plus an index.

A sharded checkpoint is a folder with `model.safetensors.index.json`
({"metadata": {...}, "weight_map": {tensor name: shard file name}}) and the shards it names
(`model-00001-of-00003.safetensors`, ...). `open_checkpoint` takes a file, such an index or a
folder, checks every shard's header and that the index and the shards agree (each listed
tensor in its shard, nothing unlisted) before anything is read.

`write_pruned` writes the checkpoint again with chosen tensors replaced: the same shards under
the same names, the index copied as it is, every byte that is not a replaced tensor (headers,
untouched tensors, padding) copied unchanged in the kernel (copy_file_range), and each replaced
tensor read into memory alone, pruned and written at its own offset. So memory holds one
tensor at a time, and the address space never holds a whole shard. The output is built in a
temporary file or folder next to it and renamed into place only when everything succeeded.
"""
from __future__ import annotations

import errno
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

from .safetensors import (DTYPES, PendingFile, SafeTensorsError, SafeTensorsFile, Tensor, parse_json, signals_held,
                          temporary_folder)

INDEX_SUFFIX = ".safetensors.index.json"
# Files of a checkpoint folder that are weights in another format: never copied next to the
# pruned shards, where they would bring the unpruned weights back.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf")
CHUNK = 1 << 24


class Checkpoint:
    """A checked checkpoint: `tensors` by name, iteration in file order (shard, then offset)."""

    def __init__(self, shards: List[SafeTensorsFile], index_path: Optional[str], folder: Optional[str]):
        self.shards = shards
        self.index_path = index_path
        self.folder = folder  # the folder of a sharded or folder input (its companion files come along)
        self.tensors: Dict[str, Tensor] = {}
        self.shard_of: Dict[str, SafeTensorsFile] = {}
        for shard in shards:
            for t in shard:
                self.tensors[t.name] = t
                self.shard_of[t.name] = shard

    @property
    def sharded(self) -> bool:
        return self.index_path is not None

    @property
    def path(self) -> str:
        return self.index_path or self.shards[0].path

    def __iter__(self) -> Iterator[Tensor]:
        for shard in self.shards:
            yield from shard

    def array(self, name: str) -> np.ndarray:
        """A tensor read into its own memory (bfloat16 as uint16 bits), writable."""
        return read_tensor(self.shard_of[name], self.tensors[name])

    def total_bytes(self) -> int:
        return sum(s.size for s in self.shards)


def open_checkpoint(path: str) -> Checkpoint:
    """A safetensors file, a `*.safetensors.index.json`, or a folder holding one of them."""
    folder = None
    if os.path.isdir(path):
        folder = path
        names = sorted(os.listdir(path))
        indexes = [n for n in names if n.endswith(INDEX_SUFFIX)]
        files = [n for n in names if n.endswith(".safetensors")]
        if len(indexes) > 1:
            raise SafeTensorsError(f"{path}: several indexes ({', '.join(indexes)}); pass the one to use")
        if indexes:
            path = os.path.join(path, indexes[0])
        elif len(files) == 1:
            return Checkpoint([SafeTensorsFile(os.path.join(path, files[0]))], None, folder)
        else:
            raise SafeTensorsError(f"{path}: no {INDEX_SUFFIX} and {len(files)} .safetensors files; "
                                   "expected an index or exactly one file")
    if not path.endswith(".index.json"):
        if not os.path.isfile(path):
            raise SafeTensorsError(f"{path}: no such file")
        return Checkpoint([SafeTensorsFile(path)], None, None)
    return Checkpoint(_shards_of_index(path), path, folder or os.path.dirname(os.path.abspath(path)))


def _shards_of_index(index_path: str) -> List[SafeTensorsFile]:
    with open(index_path, "rb") as f:
        raw = f.read()
    try:
        index = parse_json(raw, "index")
    except SafeTensorsError as e:
        raise SafeTensorsError(f"{index_path}: not a valid JSON index ({e})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise SafeTensorsError(f"{index_path}: no weight_map of tensor names to shard files")
    folder = os.path.dirname(os.path.abspath(index_path))
    listed: Dict[str, List[str]] = {}
    for name, shard_name in weight_map.items():
        if os.path.basename(shard_name) != shard_name or shard_name in ("", ".", "..") or not shard_name.endswith(".safetensors"):
            raise SafeTensorsError(f"{index_path}: tensor {name!r} is in {shard_name!r}, not a .safetensors file next to the index")
        listed.setdefault(shard_name, []).append(name)
    shards = []
    for shard_name in sorted(listed):
        shard_path = os.path.join(folder, shard_name)
        if not os.path.isfile(shard_path):
            raise SafeTensorsError(f"{index_path}: shard {shard_name} is missing ({len(listed[shard_name])} tensors are in it)")
        shard = SafeTensorsFile(shard_path)
        names = set(listed[shard_name])
        absent = sorted(names - set(shard.tensors))
        if absent:
            raise SafeTensorsError(f"{shard_path}: the index puts {absent[0]!r} here, but the shard does not hold it"
                                   f"{f' (and {len(absent) - 1} more)' if len(absent) > 1 else ''}")
        unlisted = sorted(set(shard.tensors) - names)
        if unlisted:
            raise SafeTensorsError(f"{shard_path}: holds {unlisted[0]!r}, which the index does not put in this shard")
        shards.append(shard)
    return shards


# ---------------------------------------------------------------------------------------------
# Reading and writing byte ranges

def _pread_into(fd: int, buffer: memoryview, offset: int, path: str) -> None:
    done = 0
    while done < len(buffer):
        n = os.preadv(fd, [buffer[done:]], offset + done)
        if n == 0:
            raise SafeTensorsError(f"{path}: ends before byte {offset + len(buffer)} (changed while reading?)")
        done += n


def _pwrite_all(fd: int, buffer: memoryview, offset: int) -> None:
    done = 0
    while done < len(buffer):
        done += os.pwrite(fd, buffer[done:], offset + done)


def read_tensor(shard: SafeTensorsFile, t: Tensor, buffer: Optional[np.ndarray] = None, direct: bool = False) -> np.ndarray:
    """One tensor read from its shard into its own (writable) memory: part of `buffer` (uint8,
    at least the tensor's bytes, plus 2 * DIRECT_ALIGN for a direct read) when given, else a new
    array. direct: read with O_DIRECT where the file system allows it (the kernel then copies
    nothing through the page cache: about 8% of a 7B magnitude run's CPU), else as usual."""
    nbytes = t.end - t.begin
    start = shard.data_start + t.begin
    if direct and buffer is not None:
        at = _read_direct(shard.path, start, nbytes, buffer, DTYPES[t.dtype][0]().itemsize)
        if at is not None:
            return buffer[at:at + nbytes].view(DTYPES[t.dtype][0]).reshape(t.shape)
    out = np.empty(nbytes, dtype=np.uint8) if buffer is None else buffer[:nbytes]
    fd = os.open(shard.path, os.O_RDONLY)
    try:
        _pread_into(fd, memoryview(out), start, shard.path)
    finally:
        os.close(fd)
    return out.view(DTYPES[t.dtype][0]).reshape(t.shape)


DIRECT_ALIGN = 4096   # offsets, lengths and addresses of O_DIRECT reads (a multiple of every block size in use)


def _read_direct(path: str, start: int, nbytes: int, buffer: np.ndarray, itemsize: int) -> Optional[int]:
    """Bytes [start, start + nbytes) of `path` read with O_DIRECT into `buffer` (whole aligned
    blocks around them); returns where in `buffer` they begin, or None where O_DIRECT is not
    available (the caller reads as usual)."""
    flag = getattr(os, "O_DIRECT", 0)
    low = start - start % DIRECT_ALIGN
    high = -(-(start + nbytes) // DIRECT_ALIGN) * DIRECT_ALIGN
    pad = (-buffer.ctypes.data) % DIRECT_ALIGN
    if not flag or pad + high - low > buffer.size or ((pad + start - low) % itemsize):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | flag)
    except OSError:
        return None
    try:
        region = memoryview(buffer[pad:pad + high - low])
        done = 0
        while done < len(region):
            try:
                n = os.preadv(fd, [region[done:]], low + done)
            except OSError as e:
                if e.errno == errno.EINVAL and done == 0:   # the file system refuses these reads
                    return None
                raise
            if n == 0:
                break
            done += n
            if n % DIRECT_ALIGN:   # the end of the file
                break
        if done < start + nbytes - low:
            raise SafeTensorsError(f"{path}: ends before byte {start + nbytes} (changed while reading?)")
        return pad + start - low
    finally:
        os.close(fd)


def write_tensor(path: str, shard: SafeTensorsFile, t: Tensor, values: np.ndarray) -> None:
    """Writes a tensor's new bytes at its offset in an output shard (the same layout as `shard`)."""
    data = np.ascontiguousarray(values)
    if data.nbytes != t.end - t.begin:
        raise ValueError(f"{t.name}: {data.nbytes} bytes to write, the tensor has {t.end - t.begin}")
    fd = os.open(path, os.O_WRONLY)
    try:
        _pwrite_all(fd, memoryview(data.reshape(-1).view(np.uint8)), shard.data_start + t.begin)
    finally:
        os.close(fd)


def copy_range(src: int, dst: int, begin: int, end: int) -> None:
    """Bytes [begin, end) of one file to the same offsets of another, in the kernel where it can."""
    at = begin
    while at < end:
        try:
            n = os.copy_file_range(src, dst, min(end - at, 1 << 30), at, at)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                raise
            n = 0
        if n == 0:  # not supported here (or an unexpected end): copy through a buffer
            buffer = memoryview(bytearray(min(CHUNK, end - at)))
            while at < end:
                part = buffer[:min(len(buffer), end - at)]
                _pread_into(src, part, at, f"fd {src}")
                _pwrite_all(dst, part, at)
                at += len(part)
            return
        at += n


def copy_untouched(shard: SafeTensorsFile, out_path: str, replaced: Sequence[str]) -> None:
    """Copies every byte of `shard` except the data of the `replaced` tensors to `out_path`
    (already of the shard's size): the header, the other tensors and any padding between."""
    holes = sorted((shard.tensors[n].begin, shard.tensors[n].end) for n in replaced)
    src = os.open(shard.path, os.O_RDONLY)
    try:
        dst = os.open(out_path, os.O_WRONLY)
        try:
            at = 0
            for begin, end in holes:
                copy_range(src, dst, at, shard.data_start + begin)
                at = shard.data_start + end
            copy_range(src, dst, at, shard.size)
        finally:
            os.close(dst)
    finally:
        os.close(src)


# ---------------------------------------------------------------------------------------------
# The pruned copy

def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Output:
    """Where a pruned checkpoint is built: a temporary file or folder next to `output`, holding
    every shard at its full size. `copy_untouched()` fills in every byte that is not a replaced
    tensor; `write()` puts a replaced tensor at its offset (in any order, from any thread or
    process). `commit()` renames it into place; `discard()` (also on any exception in a `with`
    block) removes it. unnamed: a single-file output is an unnamed file until committed, where
    the file system allows (prunekit.safetensors.PendingFile); only this process can then write
    it, so writers in other processes (prunekit.ray) need the default, a named one."""

    def __init__(self, checkpoint: Checkpoint, output: str, replaced: Sequence[str], unnamed: bool = False):
        self.checkpoint, self.output = checkpoint, output
        self.directory = checkpoint.sharded or checkpoint.folder is not None
        if self.directory and os.path.exists(output) and (not os.path.isdir(output) or os.listdir(output)):
            raise ValueError(f"{output}: exists and is not an empty folder (a {'sharded ' if checkpoint.sharded else ''}"
                             "checkpoint is written as a folder)")
        if not self.directory and os.path.isdir(output):
            raise ValueError(f"{output}: is a folder; give the output file's name")
        parent = os.path.dirname(os.path.abspath(output))
        if self.directory:
            self.temporary = temporary_folder(parent)
            self.paths = {id(s): os.path.join(self.temporary, os.path.basename(s.path)) for s in checkpoint.shards}
        else:   # keeps the mode of a file it replaces
            self.pending = PendingFile(output, unnamed=unnamed)
            self.temporary = self.pending.path_to_open
            self.paths = {id(checkpoint.shards[0]): self.temporary}
        self.replaced: Dict[int, List[str]] = {id(s): [] for s in checkpoint.shards}
        for name in replaced:
            self.replaced[id(checkpoint.shard_of[name])].append(name)
        try:
            for shard in checkpoint.shards:
                with open(self.paths[id(shard)], "wb") as f:
                    f.truncate(shard.size)
        except BaseException:
            self.discard()
            raise

    def copy_untouched(self) -> None:
        for shard in self.checkpoint.shards:
            copy_untouched(shard, self.paths[id(shard)], self.replaced[id(shard)])

    def path_of(self, name: str) -> str:
        return self.paths[id(self.checkpoint.shard_of[name])]

    def write(self, name: str, values: np.ndarray) -> None:
        write_tensor(self.path_of(name), self.checkpoint.shard_of[name], self.checkpoint.tensors[name], values)

    def commit(self) -> None:
        if not self.directory:
            self.pending.publish()
            return
        mode = 0o666 & ~_umask()
        for path in self.paths.values():
            _fsync(path)
            os.chmod(path, mode)
        if self.directory:
            source = self.checkpoint.folder or os.path.dirname(os.path.abspath(self.checkpoint.path))
            shard_names = {os.path.basename(s.path) for s in self.checkpoint.shards}
            if self.checkpoint.index_path is not None:
                copied = os.path.join(self.temporary, os.path.basename(self.checkpoint.index_path))
                shutil.copyfile(self.checkpoint.index_path, copied)
                os.chmod(copied, mode)
            if self.checkpoint.folder is not None:
                for name in sorted(os.listdir(source)):
                    full = os.path.join(source, name)
                    if (name in shard_names or name.endswith(INDEX_SUFFIX) or name.startswith(".")
                            or name.endswith(WEIGHT_SUFFIXES) or not os.path.isfile(full)):
                        continue
                    shutil.copyfile(full, os.path.join(self.temporary, name))  # config.json, tokenizer, ...
                    os.chmod(os.path.join(self.temporary, name), mode)
            os.chmod(self.temporary, 0o777 & ~_umask())
        with signals_held():
            if os.path.isdir(self.output):
                os.rmdir(self.output)  # empty, checked above
            os.replace(self.temporary, self.output)

    def discard(self) -> None:
        if self.directory:
            shutil.rmtree(self.temporary, ignore_errors=True)
        else:
            self.pending.discard()

    def __enter__(self) -> "Output":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            self.discard()


def write_pruned(checkpoint: Checkpoint, output: str, names: Sequence[str],
                 prune: Callable[[Tensor, np.ndarray], np.ndarray], ordered: bool = False) -> None:
    """Writes `checkpoint` to `output` with each tensor of `names` replaced by
    `prune(tensor, values)` (values: the tensor read into its own memory; return the new values,
    same shape and dtype, which may be `values` changed in place), called in order of the files
    (in the order of `names` when `ordered`), one tensor at a time. One thread works the disk
    alongside: it reads the next tensor and writes the previous one while `prune` runs, then copies the untouched bytes, so at most
    three tensors are in memory (and one thread's worth of address space is added, which
    matters under an address-space limit). The three buffers are reused from tensor to tensor
    (a new buffer per tensor costs the kernel a page fault and a zero fill per page: about 3 s
    of a 7B run). On any error no output is left."""
    wanted = set(names)
    order = list(dict.fromkeys(names)) if ordered else [t.name for t in checkpoint if t.name in wanted]
    with Output(checkpoint, output, order, unnamed=True) as out:
        largest = max((checkpoint.tensors[n].end - checkpoint.tensors[n].begin for n in order), default=0)
        free: List[np.ndarray] = []     # buffers of `largest` bytes not in use (touched only by the I/O thread)

        def read(name: str):
            buffer = free.pop() if free else np.empty(largest + 2 * DIRECT_ALIGN, dtype=np.uint8)
            return buffer, read_tensor(checkpoint.shard_of[name], checkpoint.tensors[name], buffer, direct=True)

        def write(name: str, values: np.ndarray, buffer: np.ndarray) -> None:
            out.write(name, values)
            free.append(buffer)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prunekit-io") as io:
            reading = io.submit(read, order[0]) if order else None
            writing = None
            try:
                for i, name in enumerate(order):
                    buffer, values = reading.result()
                    reading = io.submit(read, order[i + 1]) if i + 1 < len(order) else None
                    pruned = prune(checkpoint.tensors[name], values)
                    del values
                    if writing is not None:
                        writing.result()
                    writing = io.submit(write, name, pruned, buffer)
                    del pruned, buffer
                io.submit(out.copy_untouched).result()
                if writing is not None:
                    writing.result()
            finally:  # on an error, the thread finishes before the output is discarded
                for job in (reading, writing):
                    if job is not None:
                        job.cancel()
        out.commit()
