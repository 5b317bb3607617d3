"""Build tiny QCOW2 files from the specification (docs/interop/qcow2.txt), without qemu-img.

For what qemu-img is too slow or unwilling to write: a chain of a thousand layers, backing
and external data file names pointing anywhere (``/etc/shadow``, ``../../x``), extended L2
entries with any subcluster bitmap, L2 entries that all point at the same cluster.

A file is laid out cluster by cluster: 0 the header (version 3, 104 bytes, then the backing
format and external data file name extensions, the end marker, then the backing file name),
1 the refcount table, 2 its one refcount block (16-bit refcounts), 3 the L1 table, then the
L2 tables and the data clusters. Everything is packed with ``struct`` from the field list,
independently of vdinspect; refcounts are right (1 for each cluster used), so strict mode
opens the result.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

MAGIC = b"QFI\xfb"
COPIED = 1 << 63
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_DATA_FILE = 0x44415441
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_EXTL2 = 1 << 4
AUTOCLEAR_DATA_FILE_RAW = 1 << 1
# magic, version, backing_file_offset, backing_file_size, cluster_bits, size, crypt_method,
# l1_size, l1_table_offset, refcount_table_offset, refcount_table_clusters, nb_snapshots,
# snapshots_offset, incompatible, compatible, autoclear, refcount_order, header_length
HEADER = struct.Struct(">4sIQIIQIIQQIIQQQQII")
assert HEADER.size == 104


@dataclass
class Qcow2:
    """What to write. ``clusters`` maps a guest cluster number to its data (zero-padded);
    ``l2`` overrides raw L2 entries (guest cluster -> u64, or (u64, u64) with extended L2)."""

    size: int = 64 << 10
    cluster_bits: int = 9
    clusters: dict = field(default_factory=dict)
    backing: str | None = None
    backing_format: str | None = "qcow2"
    data_file: str | None = None  # external data file name (guest clusters at guest offsets)
    extended_l2: bool = False
    l2: dict = field(default_factory=dict)
    #: extended L2: subcluster bitmap of a data cluster of ``clusters`` (default: all
    #: 32 subclusters allocated)
    bitmaps: dict = field(default_factory=dict)

    @property
    def cs(self) -> int:
        return 1 << self.cluster_bits


def _ext(kind: int, data: bytes) -> bytes:
    return struct.pack(">II", kind, len(data)) + data + bytes(-len(data) % 8)


def build(q: Qcow2) -> bytes:
    cs = q.cs
    entry = 16 if q.extended_l2 else 8
    per_l2 = cs // entry
    n_clusters = -(-q.size // cs)
    l1_size = max(1, -(-n_clusters // per_l2))
    assert l1_size * 8 <= cs, "one L1 cluster only"
    l1_off = 3 * cs
    next_free = 4
    l2_of: dict[int, int] = {}
    wanted = sorted(set(q.clusters) | set(q.l2))
    for g in wanted:
        t = g // per_l2
        if t not in l2_of:
            l2_of[t] = next_free
            next_free += 1
    data_at: dict[int, int] = {}
    if q.data_file is None:
        for g in sorted(q.clusters):
            data_at[g] = next_free
            next_free += 1
    assert next_free <= cs // 2, "one refcount block only"
    out = bytearray(next_free * cs)
    # header cluster
    incompat = (INCOMPAT_DATA_FILE if q.data_file else 0) | (
        INCOMPAT_EXTL2 if q.extended_l2 else 0)
    exts = b""
    if q.backing and q.backing_format:
        exts += _ext(EXT_BACKING_FORMAT, q.backing_format.encode())
    if q.data_file:
        exts += _ext(EXT_DATA_FILE, q.data_file.encode())
    exts += struct.pack(">II", 0, 0)
    name = q.backing.encode() if q.backing else b""
    name_off = 104 + len(exts) if name else 0
    assert name_off + len(name) <= cs, "the header cluster holds the backing name"
    out[0:104] = HEADER.pack(
        MAGIC, 3, name_off, len(name), q.cluster_bits, q.size, 0, l1_size, l1_off, cs, 1, 0, 0,
        incompat, 0, AUTOCLEAR_DATA_FILE_RAW if q.data_file else 0, 4, 104)
    out[104 : 104 + len(exts)] = exts
    if name:
        out[name_off : name_off + len(name)] = name
    # refcount table -> block at cluster 2; every cluster used has refcount 1
    struct.pack_into(">Q", out, cs, 2 * cs)
    for c in range(next_free):
        struct.pack_into(">H", out, 2 * cs + 2 * c, 1)
    # L1
    for t, c in l2_of.items():
        struct.pack_into(">Q", out, l1_off + 8 * t, c * cs | COPIED)
    # L2 entries and data
    for g in wanted:
        at = l2_of[g // per_l2] * cs + (g % per_l2) * entry
        if g in q.l2:
            raw = q.l2[g]
            if q.extended_l2:
                struct.pack_into(">QQ", out, at, *raw)
            else:
                struct.pack_into(">Q", out, at, raw)
            continue
        host = g * cs if q.data_file else data_at[g] * cs
        struct.pack_into(">Q", out, at, host | COPIED)
        if q.extended_l2:
            struct.pack_into(">Q", out, at + 8, q.bitmaps.get(g, 0xFFFFFFFF))
        if q.data_file is None:
            d = bytes(q.clusters[g])[:cs]
            out[data_at[g] * cs : data_at[g] * cs + len(d)] = d
    return bytes(out)


def write(path: str | Path, q: Qcow2) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(build(q))
    return p


def pattern(k: int, n: int) -> bytes:
    """``n`` bytes that say which layer wrote them."""
    return (f"layer {k:06d} ".encode() * (n // 13 + 1))[:n]


def chain(folder: str | Path, depth: int, *, size: int | None = None, cluster_bits: int = 9,
          name: str = "layer{:04d}.qcow2") -> tuple[list[Path], bytes]:
    """``depth`` layers in ``folder``, base first, each backed by the one before (relative
    names); layer k writes guest cluster k mod (clusters in the disk). By default the disk
    has a cluster more than there are layers, so that each cluster is written by one layer
    at most and the last one by none: reading it falls through every layer. Returns the
    files and the bytes the top must read as."""
    folder = Path(folder)
    cs = 1 << cluster_bits
    if size is None:
        size = (depth + 1) * cs
    n = -(-size // cs)
    want = bytearray(size)
    files = []
    for k in range(depth):
        g = k % n
        data = pattern(k, cs)
        q = Qcow2(size=size, cluster_bits=cluster_bits, clusters={g: data},
                  backing=files[-1].name if files else None)
        files.append(write(folder / name.format(k), q))
        want[g * cs : g * cs + cs] = data
    return files, bytes(want)
