"""Statistics bundles read one accumulator at a time: a `.pkstats` file or a folder of them.

`prunekit prune --stats` takes either. A folder holds one bundle per block, conventionally
named after the block's prefix (`model.layers.0.pkstats`, ...; any `*.pkstats` name works),
each written by `prunekit.save_stats` with the full tensor names of that block (q, k and v
given one Stats, gate and up one: stored once, docs/stats-format.md). Every tensor name is in
at most one bundle of the folder. A Gram bundle of a LLaMA-2-7B block is 1.37 GB, the whole
model's 44 GB: `BundleIndex` therefore reads only the bundles' entry headers (names, byte
ranges, each accumulator's feature count and flags), so that every tensor's statistics can be
checked before anything is written, and `Accumulators` loads an accumulator when its first
tensor needs it and drops it after its last, so a block-ordered run holds one block's
accumulators at most (docs/scale.md).
"""
from __future__ import annotations

import os
import struct
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

BUNDLE_MAGIC = b"PKSTATSB"
ALIAS_TAG = b"PKALIAS\0"
STATS_MAGIC = b"PKSTATS\0"
SUFFIX = ".pkstats"
_FLAG_GRAM, _FLAG_ACTIVITY = 1, 2


class Entry(NamedTuple):
    """Where one accumulator's bytes are (`key` identifies it: names sharing it share the key)."""
    path: str
    offset: int
    size: int
    features: int
    gram: bool

    @property
    def key(self) -> Tuple[str, int]:
        return self.path, self.offset


def _expected_size(features: int, flags: int) -> int:
    arrays = 5 if flags & _FLAG_ACTIVITY else 3
    return 32 + 8 * arrays * features + (8 * features * features if flags & _FLAG_GRAM else 0) + 8


def scan_bundle(path: str) -> Dict[str, Entry]:
    """The entries of one bundle (aliases included), from its headers only: ValueError for
    anything that is not a well-formed bundle (wrong magic, truncation, trailing bytes, an
    accumulator whose length does not match its feature count and flags, a repeated name).
    The accumulators' contents are checked when they are loaded (Stats.from_bytes)."""
    size = os.path.getsize(path)
    out: Dict[str, Entry] = {}
    held: List[Entry] = []
    with open(path, "rb") as f:
        def read(n: int, what: str) -> bytes:
            data = f.read(n)
            if len(data) != n:
                raise ValueError(f"{path}: truncated statistics bundle ({what})")
            return data

        def name_of(raw: bytes) -> str:
            try:
                return raw.decode()
            except UnicodeDecodeError:
                raise ValueError(f"{path}: a name in the statistics bundle is not UTF-8") from None

        head = f.read(12)
        if len(head) < 12 or head[:8] != BUNDLE_MAGIC:
            raise ValueError(f"{path}: not a PruneKit statistics bundle")
        (count,) = struct.unpack_from("<I", head, 8)
        at = 12
        for _ in range(count):
            (n,) = struct.unpack("<I", read(4, "name length"))
            name = name_of(read(n, "name"))
            (blob,) = struct.unpack("<Q", read(8, "accumulator length"))
            at += 12 + n
            if at + blob > size:
                raise ValueError(f"{path}: truncated statistics bundle ({name!r} needs {blob} bytes, "
                                 f"{size - at} are left)")
            header = read(min(blob, 32), "accumulator header")
            if len(header) < 32 or header[:8] != STATS_MAGIC:
                raise ValueError(f"{path}: the accumulator of {name!r} is not PruneKit statistics")
            flags, features = struct.unpack_from("<IQ", header, 12)
            if flags & ~(_FLAG_GRAM | _FLAG_ACTIVITY) or not 1 <= features <= 1 << 24 \
                    or blob != _expected_size(features, flags):
                raise ValueError(f"{path}: the accumulator of {name!r} is malformed ({blob} bytes for "
                                 f"{features} features, flags {flags})")
            if name in out:
                raise ValueError(f"{path}: {name!r} appears twice")
            entry = Entry(path, at, blob, features, bool(flags & _FLAG_GRAM))
            out[name] = entry
            held.append(entry)
            at += blob
            f.seek(at)
        if at < size:
            if read(8, "alias tag") != ALIAS_TAG or at + 12 > size:
                raise ValueError(f"{path}: {size - at} trailing bytes in the statistics bundle")
            (aliases,) = struct.unpack("<I", read(4, "alias count"))
            at += 12
            for _ in range(aliases):
                (n,) = struct.unpack("<I", read(4, "alias name length"))
                name = name_of(read(n, "alias name"))
                (target,) = struct.unpack("<I", read(4, "alias target"))
                if target >= len(held) or name in out:
                    raise ValueError(f"{path}: alias {name!r} names accumulator {target} of {len(held)}"
                                     f"{' and repeats a name' if name in out else ''}")
                out[name] = held[target]
                at += 8 + n
            if at != size:
                raise ValueError(f"{path}: {size - at} trailing bytes in the statistics bundle")
    return out


class BundleIndex:
    """Every name's accumulator over a bundle file or a folder of `*.pkstats` bundles."""

    def __init__(self, path: str):
        self.path = path
        if os.path.isdir(path):
            files = sorted(n for n in os.listdir(path) if n.endswith(SUFFIX) and not n.startswith("."))
            if not files:
                raise ValueError(f"{path}: a statistics folder with no {SUFFIX} bundle")
            self.files = [os.path.join(path, n) for n in files]
        elif os.path.isfile(path):
            self.files = [path]
        else:
            raise ValueError(f"{path}: no such statistics bundle or folder")
        self.entries: Dict[str, Entry] = {}
        for file in self.files:
            for name, entry in scan_bundle(file).items():
                if name in self.entries:
                    raise ValueError(f"{path}: {name!r} is in two bundles ({os.path.basename(self.entries[name].path)} "
                                     f"and {os.path.basename(file)}); give each tensor's statistics once")
                self.entries[name] = entry

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __getitem__(self, name: str) -> Entry:
        return self.entries[name]

    def bundle_of(self, name: str) -> Optional[str]:
        entry = self.entries.get(name)
        return None if entry is None else entry.path

    def read(self, name: str) -> bytes:
        """The accumulator's serialized bytes (Stats.to_bytes() of what was saved)."""
        entry = self.entries[name]
        with open(entry.path, "rb") as f:
            f.seek(entry.offset)
            data = f.read(entry.size)
        if len(data) != entry.size:
            raise ValueError(f"{entry.path}: ends early (changed while pruning?)")
        return data


class Accumulators:
    """The Stats of the tensors in `users` (in the order they will be asked for), each loaded
    when first asked for and dropped after its last user is `release`d. `live` is how many are
    held; `peak_live` the most at once."""

    def __init__(self, index: BundleIndex, users: Iterable[str]):
        self.index = index
        self.remaining: Dict[Tuple[str, int], int] = {}
        for name in users:
            key = index[name].key
            self.remaining[key] = self.remaining.get(key, 0) + 1
        self.loaded: Dict[Tuple[str, int], object] = {}
        self.peak_live = 0

    @property
    def live(self) -> int:
        return len(self.loaded)

    def __contains__(self, name: str) -> bool:
        return name in self.index

    def __getitem__(self, name: str):
        import prunekit
        import numpy as np
        key = self.index[name].key
        if key not in self.loaded or isinstance(self.loaded[key], np.ndarray):
            data = self.index.read(name)
            try:
                self.loaded[key] = prunekit.Stats.from_bytes(data)
            except (ValueError, prunekit.PruneKitError) as e:
                raise ValueError(f"{self.index[name].path}: the statistics of {name!r}: {e}") from None
            del data
            self.peak_live = max(self.peak_live, len(self.loaded))
        return self.loaded[key]

    def hessian(self, name: str):
        """The accumulator's Gram matrix X^T X (float64, features x features, read-only) for
        sparsegpt / admm: checked by loading it as Stats, which is then dropped; the matrix is
        a view of the bytes read (the format stores it in full, row-major), so it is held once,
        not as Stats plus a gram() copy."""
        import numpy as np
        import prunekit
        entry = self.index[name]
        key = entry.key
        held = self.loaded.get(key)
        if isinstance(held, np.ndarray):
            return held
        data = self.index.read(name)
        if held is None:
            try:
                prunekit.Stats.from_bytes(data)   # every check of the format, then dropped
            except (ValueError, prunekit.PruneKitError) as e:
                raise ValueError(f"{entry.path}: the statistics of {name!r}: {e}") from None
        f = entry.features
        arrays = (entry.size - 40 - 8 * f * f) // (8 * f)
        gram = np.frombuffer(data, dtype="<f8", count=f * f, offset=32 + 8 * arrays * f).reshape(f, f)
        self.loaded[key] = gram   # (a Stats asked for later is loaded again)
        self.peak_live = max(self.peak_live, len(self.loaded))
        return gram

    def release(self, name: str) -> None:
        key = self.index[name].key
        self.remaining[key] -= 1
        if self.remaining[key] == 0:
            self.loaded.pop(key, None)
