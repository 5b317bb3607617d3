"""QEMU copy-on-write version 1 (QCOW) images.

Layout (QEMU block/qcow.c; all integers big-endian): a 48-byte header, optionally the
backing file name, the L1 table, then L2 tables and data clusters in the order they were
allocated. A virtual offset splits into an L1 index (top bits), an L2 index (``l2_bits``
bits) and the offset inside a cluster (``cluster_bits`` bits). An L2 entry is

- 0: the cluster was never written (reads as zeros or falls through to the backing file);
- bit 63 clear: the host offset of an uncompressed cluster;
- bit 63 set: a compressed cluster. Bits ``63 - cluster_bits .. 62`` hold the compressed
  length in bytes, the bits below hold its host offset (byte-aligned). The data is a raw
  deflate stream (no zlib header) that inflates to exactly one cluster.

AES-encrypted images (``crypt_method`` 1) are refused with :class:`EncryptedImage`.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from construct import Bytes, ConstructError, Int8ub, Int16ub, Int32ub, Int64ub, Struct

from ..errors import CorruptImage, EncryptedImage, NotRecognized
from ..io import ByteSource, LRUCache
from .base import (
    DAMAGED,
    DATA,
    UNALLOCATED,
    Image,
    ParentHint,
    Run,
    leak_rows,
    unused_spans,
)

FORMAT = "qcow"

QCOW_MAGIC = b"QFI\xfb"
QCOW_VERSION = 1
QCOW_CRYPT_NONE = 0
QCOW_CRYPT_AES = 1
QCOW_OFLAG_COMPRESSED = 1 << 63

# -- on-disk structures ------------------------------------------------------------------

QcowHeader = Struct(
    "magic" / Bytes(4),  # b"QFI\xfb"
    "version" / Int32ub,  # 1 for this format (2 and 3 are QCOW2)
    "backing_file_offset" / Int64ub,  # host offset of the backing file name, bytes; 0 = none
    "backing_file_size" / Int32ub,  # length of the backing file name, bytes (no NUL)
    "mtime" / Int32ub,  # modification time, seconds since 1970-01-01 UTC (qemu writes 0)
    "size" / Int64ub,  # virtual disk size, bytes
    "cluster_bits" / Int8ub,  # log2 of cluster size, bytes (qemu accepts 9..16)
    "l2_bits" / Int8ub,  # log2 of the number of entries in one L2 table (qemu accepts 6..13)
    "padding" / Int16ub,  # unused, zero
    "crypt_method" / Int32ub,  # 0 = none, 1 = AES-CBC
    "l1_table_offset" / Int64ub,  # host offset of the L1 table, bytes
)
HEADER_SIZE = QcowHeader.sizeof()  # 48


def _offset_of(field: str) -> int:
    """Byte offset of a header field (for error messages)."""
    off = 0
    for sc in QcowHeader.subcons:
        if sc.name == field:
            return off
        off += sc.sizeof()
    raise KeyError(field)


#: L1 and L2 tables are arrays of big-endian u64 (``numpy.frombuffer(buf, ">u8")``):
#: L1 entry = host offset of an L2 table (0 = none); L2 entry as in the module docstring.
TABLE_ENTRY = ">u8"

MAX_L1_ENTRIES = (2**31 - 1) // 8  # qemu's limit (INT_MAX / sizeof(uint64_t))
MAX_BACKING_NAME = 1023  # qemu's limit on backing_file_size
MAX_FINDINGS = 100  # per kind of problem in check(); the rest are summarised
L2_SCAN_BYTES = 16 << 20  # leaked bytes check() reads to recognise unreferenced L2 tables

# kinds of L2 entries after decoding
_UNALLOC, _PLAIN, _COMPRESSED, _BAD = 0, 1, 2, 3


def probe(head: bytes) -> bool:
    """QCOW magic and version 1 (8 bytes suffice, so a truncated header is still ours)."""
    return len(head) >= 8 and head[:4] == QCOW_MAGIC and int.from_bytes(head[4:8], "big") == 1


@dataclass(slots=True)
class _L2:
    """One decoded L2 table: per-entry kind, host offset and compressed length."""

    index: int  # L1 index
    offset: int  # host offset of the table
    raw: np.ndarray  # uint64 entries as stored (0 where the table is cut off by EOF)
    kind: np.ndarray  # uint8: _UNALLOC / _PLAIN / _COMPRESSED / _BAD
    host: np.ndarray  # int64 host offset (0 unless plain or compressed)
    csize: np.ndarray  # int64 compressed length in bytes (0 unless compressed)
    missing: int  # entries lost because the table runs past the end of the file


class QcowImage(Image):
    """A QCOW version 1 image (one layer; the backing file is named by ``parent_hint``)."""

    format = FORMAT

    def __init__(self, source: ByteSource, *, path: str | None = None, strict: bool = True):
        super().__init__(source, path=path, strict=strict)
        self._file_size = source.size
        h = self.header = self._parse_header()
        self.size = h.size
        self.cluster_bits = h.cluster_bits
        self.cluster_size = 1 << h.cluster_bits
        self.l2_bits = h.l2_bits
        self.l2_size = 1 << h.l2_bits
        self._shift = h.cluster_bits + h.l2_bits  # virtual bytes per L2 table = 1 << shift
        self._offset_mask = (1 << (63 - h.cluster_bits)) - 1
        self.l1_size = -(-h.size >> self._shift)  # ceil
        self.backing_file = self._read_backing_name()
        self._l1 = self._read_l1()
        self._l1_used = np.flatnonzero(self._l1)  # indexes of L1 entries that name an L2 table
        self._l2_cache: LRUCache[_L2] = LRUCache(64)

    # -- opening ----------------------------------------------------------------------


    def _parse_header(self):
        if self._file_size < HEADER_SIZE:
            self.fail(CorruptImage, f"file is {self._file_size} bytes, shorter than the {HEADER_SIZE}-byte header", "header", 0)
        try:
            h = QcowHeader.parse(self.file.read(0, HEADER_SIZE))
        except ConstructError as e:  # pragma: no cover - fixed-size fields cannot fail
            self.fail(CorruptImage, f"unreadable header ({e})", "header", 0)

        def bad(cls, field, message):
            return cls(
                message, path=self.path, structure=f"header.{field}", offset=_offset_of(field)
            )

        if h.magic != QCOW_MAGIC:
            raise bad(NotRecognized, "magic", f"not a QCOW image (magic {h.magic!r})")
        if h.version != QCOW_VERSION:
            hint = " (a QCOW2 image)" if h.version in (2, 3) else ""
            raise bad(NotRecognized, "version", f"QCOW version {h.version}{hint}, not 1")
        if h.crypt_method == QCOW_CRYPT_AES:
            raise bad(EncryptedImage, "crypt_method", "image is AES-encrypted (crypt_method 1)")
        if h.crypt_method != QCOW_CRYPT_NONE:
            raise bad(CorruptImage, "crypt_method", f"unknown crypt_method {h.crypt_method}")
        if not 9 <= h.cluster_bits <= 16:
            raise bad(CorruptImage, "cluster_bits", f"cluster_bits {h.cluster_bits} outside 9..16")
        if not 6 <= h.l2_bits <= 13:
            raise bad(CorruptImage, "l2_bits", f"l2_bits {h.l2_bits} outside 6..13")
        l1_size = -(-h.size >> (h.cluster_bits + h.l2_bits))
        if l1_size > MAX_L1_ENTRIES:
            raise bad(
                CorruptImage,
                "size",
                f"virtual size {h.size} needs {l1_size} L1 entries (too large)",
            )
        return h

    def _read_backing_name(self) -> str | None:
        h = self.header
        if h.backing_file_offset == 0:
            return None
        off, n = h.backing_file_offset, h.backing_file_size
        if n > MAX_BACKING_NAME:
            self.problem("backing file name", off, f"backing file name of {n} bytes is longer than {MAX_BACKING_NAME}")
            return None
        if off + n > self._file_size:
            self.problem("backing file name", off, f"backing file name ({n} bytes) runs past the end of the file "
                f"({self._file_size} bytes)")
            return None
        raw = self.file.read(off, n).split(b"\0", 1)[0]
        return os.fsdecode(raw) if raw else None

    def _read_l1(self) -> np.ndarray:
        off, n = self.header.l1_table_offset, self.l1_size
        avail = max(0, min(n, (self._file_size - off) // 8)) if off < self._file_size else 0
        if avail < n:
            self.problem("L1 table", off, f"L1 table of {n} entries ({n * 8} bytes) runs past the end of the "
                f"file ({self._file_size} bytes); {n - avail} entries missing")
        try:
            buf = self.file.read(off, avail * 8) if avail else b""
            l1 = np.frombuffer(buf, TABLE_ENTRY).astype(np.uint64)
        except MemoryError:
            self.fail(CorruptImage, f"L1 table of {n} entries does not fit in memory", "L1 table", off)
        if avail < n:
            l1 = self._cut_l1(l1, off)
        return l1

    def _cut_l1(self, l1: np.ndarray, off: int) -> np.ndarray:
        """Salvage: an L1 table that runs past EOF (a damaged ``size``) would take the rest
        of the file for entries. It cannot reach into an L2 table it points to, so keep it
        only up to the first such table; the entries after it count as missing."""
        pos = off + 8 * np.arange(len(l1), dtype=np.uint64)
        target = np.where(
            (l1 > np.uint64(off)) & (l1 < np.uint64(self._file_size)),
            l1,
            np.uint64(self._file_size),
        )
        lowest = np.minimum.accumulate(target)  # lowest L2 table named by entries 0..i
        clash = np.flatnonzero(pos[1:] >= lowest[:-1])
        if not len(clash):
            return l1
        cut = int(clash[0]) + 1
        self.finding(
            "error",
            "L1 table",
            off + 8 * cut,
            f"L1 table taken to end at entry {cut}, where it would overlap the L2 "
            f"table at {int(lowest[cut - 1]):#x}",
        )
        return l1[:cut]

    # -- L2 tables ----------------------------------------------------------------------
    def _l2(self, index: int) -> _L2 | None:
        """The decoded L2 table of L1 entry ``index``; None if it is wholly past EOF.

        A table that runs past the end of the file is an error in strict mode; in salvage
        mode its lost entries read as damaged.
        """
        offset = int(self._l1[index])
        n = self._l2_readable(offset)
        if n < self.l2_size:
            self.problem("L2 table", offset, self._l2_past_eof_message(index, n))
        return self._cached_l2(index, offset, n)

    def _cached_l2(self, index: int, offset: int, readable: int) -> _L2 | None:
        if readable == 0:
            return None
        return self._l2_cache.get((index, offset), lambda: self._load_l2(index, offset, readable))

    def _l2_readable(self, offset: int) -> int:
        """How many entries of an L2 table at ``offset`` lie inside the file."""
        if offset >= self._file_size:
            return 0
        return min(self.l2_size, (self._file_size - offset) // 8)

    def _load_l2(self, index: int, offset: int, readable: int) -> _L2:
        raw = np.zeros(self.l2_size, dtype=np.uint64)
        raw[:readable] = np.frombuffer(self.file.read(offset, readable * 8), TABLE_ENTRY)
        return self._decode_l2(index, offset, raw, self.l2_size - readable)

    def _l2_past_eof_message(self, index: int, readable: int) -> str:
        return (
            f"L2 table of L1 entry {index} ({self.l2_size * 8} bytes) runs past the end "
            f"of the file ({self._file_size} bytes); {self.l2_size - readable} entries lost"
        )

    def _decode_l2(self, index: int, offset: int, raw: np.ndarray, missing: int) -> _L2:
        cs = self.cluster_size
        compressed = (raw & np.uint64(QCOW_OFLAG_COMPRESSED)) != 0
        plain = (raw != 0) & ~compressed
        csize = np.where(
            compressed, (raw >> np.uint64(63 - self.cluster_bits)) & np.uint64(cs - 1), 0
        ).astype(np.int64)
        # plain entries have bit 63 clear and compressed ones are masked: both fit int64
        host = np.where(
            compressed, raw & np.uint64(self._offset_mask), np.where(plain, raw, 0)
        ).astype(np.int64)
        vstart = (index << self._shift) + np.arange(self.l2_size, dtype=np.int64) * cs
        # bytes the host must hold: a whole cluster, less for the last partial one
        need = np.where(compressed, csize, np.clip(self.size - vstart, 0, cs))
        bad = (plain | compressed) & ((host > self._file_size - need) | (compressed & (csize == 0)))
        kind = np.full(self.l2_size, _UNALLOC, dtype=np.uint8)
        kind[plain] = _PLAIN
        kind[compressed] = _COMPRESSED
        kind[bad] = _BAD
        if missing:
            kind[self.l2_size - missing :] = _BAD
        kind[vstart >= self.size] = _UNALLOC  # past the virtual disk: never read
        host[(kind == _BAD) | (kind == _UNALLOC)] = 0
        return _L2(index, offset, raw, kind, host, csize, missing)

    def _bad_entries(self, t: _L2, first: int = 0, last: int | None = None) -> list[int]:
        """Indexes of entries in ``[first, last)`` pointing past EOF (lost ones excluded:
        the table-level problem already covers them)."""
        last = min(self.l2_size - t.missing, self.l2_size if last is None else last)
        return (first + np.flatnonzero(t.kind[first:last] == _BAD)).tolist()

    def _entry_problem(self, t: _L2, j: int) -> tuple[str, int, str]:
        """(structure, host offset, message) for the bad entry ``j`` of table ``t``."""
        vstart = (t.index << self._shift) + j * self.cluster_size
        where = f"L2 entry {j} of the L2 table at {t.offset:#x} (virtual offset {vstart:#x})"
        e = int(t.raw[j])
        eof = f"runs past the end of the file ({self._file_size} bytes)"
        if not e & QCOW_OFLAG_COMPRESSED:
            return "data cluster", e, f"{where}: data cluster {eof}"
        off = e & self._offset_mask
        n = (e >> (63 - self.cluster_bits)) & (self.cluster_size - 1)
        problem = "has length 0" if n == 0 else f"({n} bytes) {eof}"
        return "compressed cluster", off, f"{where}: compressed cluster {problem}"

    # -- allocation runs ----------------------------------------------------------------
    def _runs(self, start: int, end: int):
        pos = start
        while pos < end:
            index = pos >> self._shift
            tstart = index << self._shift
            tend = min((index + 1) << self._shift, self.size)
            if index >= len(self._l1):  # the rest of the L1 table is past EOF (salvage)
                yield Run(tstart, self.size - tstart, DAMAGED)
                return
            if self._l1[index] == 0:  # jump to the next L1 entry in use
                k = int(np.searchsorted(self._l1_used, index))
                stop = int(self._l1_used[k]) if k < len(self._l1_used) else len(self._l1)
                tend = min(stop << self._shift, self.size)
                yield Run(tstart, tend - tstart, UNALLOCATED)
            else:
                table = self._l2(index)
                if table is None:
                    yield Run(tstart, tend - tstart, DAMAGED)
                else:
                    first = (pos - tstart) >> self.cluster_bits
                    last = ((min(end, tend) - 1 - tstart) >> self.cluster_bits) + 1
                    yield from self._table_runs(table, tstart, first, last)
            pos = tend

    def _table_runs(self, t: _L2, tstart: int, first: int, last: int):
        """Runs for entries ``[first, last)`` of one L2 table, contiguous clusters joined."""
        cs = self.cluster_size
        kind = t.kind[first:last]
        host = t.host[first:last]
        for j in self._bad_entries(t, first, last)[:16]:
            structure, off, message = self._entry_problem(t, j)
            self.problem(structure, off, message)
        brk = np.ones(len(kind), dtype=bool)
        brk[1:] = (
            (kind[1:] != kind[:-1])
            | (kind[1:] == _COMPRESSED)
            | ((kind[1:] == _PLAIN) & (host[1:] != host[:-1] + cs))
        )
        starts = np.flatnonzero(brk)
        ends = np.append(starts[1:], len(kind))
        for s, e in zip(starts.tolist(), ends.tolist()):
            k = kind[s]
            vstart = tstart + (first + s) * cs
            length = (e - s) * cs
            if k == _BAD:
                yield from self._bad_runs(t, tstart, first + s, first + e)
            elif k == _UNALLOC:
                yield Run(vstart, length, UNALLOCATED)
            else:
                extra = (vstart, int(t.csize[first + s])) if k == _COMPRESSED else None
                yield Run(
                    vstart,
                    length,
                    DATA,
                    host_file=self.path,
                    host_offset=int(host[s]),
                    compressed=k == _COMPRESSED,
                    source=self.file,
                    extra=extra,
                )

    def _bad_runs(self, t: _L2, tstart: int, a: int, b: int):
        """Damaged runs for the bad entries ``[a, b)`` of table ``t``; a plain cluster that
        starts inside the file (one cut short by its end) keeps the bytes that are there."""
        cs = self.cluster_size
        raw = t.raw[a:b]
        inside = ((raw & np.uint64(QCOW_OFLAG_COMPRESSED)) == 0) & (raw != 0)
        inside &= raw < np.uint64(self._file_size)
        pos = a
        for j in (a + np.flatnonzero(inside)).tolist():
            if j > pos:
                yield Run(tstart + pos * cs, (j - pos) * cs, DAMAGED)
            h = int(t.raw[j])
            room = self._file_size - h
            yield Run(
                tstart + j * cs, room, DATA, host_file=self.path, host_offset=h, source=self.file
            )
            yield Run(tstart + j * cs + room, cs - room, DAMAGED)
            pos = j + 1
        if pos < b:
            yield Run(tstart + pos * cs, (b - pos) * cs, DAMAGED)

    def _read_compressed(self, run: Run) -> bytes:
        cs = self.cluster_size
        vstart, n = run.extra
        data = self.file.read(run.host_offset, n)  # bounds checked when the run was made
        try:
            out = zlib.decompressobj(-15).decompress(data, cs)
            problem = None if len(out) == cs else f"inflates to {len(out)} bytes, not {cs}"
        except zlib.error as e:
            out, problem = b"", f"does not inflate ({e})"
        if problem:
            msg = f"compressed cluster of {n} bytes for virtual offset {vstart:#x} {problem}"
            self.problem("compressed cluster", run.host_offset, msg)
            out = out + bytes(cs - len(out))  # salvage: what inflated, then zeros
        return out

    # -- what the image says about itself -----------------------------------------------
    @property
    def parent_hint(self) -> ParentHint | None:
        return ParentHint(path=self.backing_file) if self.backing_file else None

    TABLES = (
        (r"l1 table", ">u8", "describe_l1_entry"),
        (r"l2 table.*", ">u8", "describe_l2_entry"),
    )

    def describe_l1_entry(self, v: int) -> str:
        """What an L1 table entry says."""
        return f"L2 table at {v:#x}" if v else "no L2 table"

    def describe_l2_entry(self, v: int) -> str:
        """What an L2 table entry says (bit 63: compressed)."""
        if v >> 63:
            return "compressed cluster"
        return f"data cluster at {v:#x}" if v else "unallocated: read from the backing file"

    def info_fields(self) -> dict:
        h = self.header
        return dict(
            version=h.version,
            cluster_size=self.cluster_size,
            l2_bits=h.l2_bits,
            backing_file=self.backing_file,
            mtime=datetime.fromtimestamp(h.mtime, tz=UTC) if h.mtime else None,
            encrypted=h.crypt_method != QCOW_CRYPT_NONE,
        )

    def _tables(self):
        """(L1 index, decoded L2 table or None if wholly past EOF) for every L1 entry in use,
        without raising or recording findings (for the reports)."""
        for index in self._l1_used.tolist():
            offset = int(self._l1[index])
            yield index, self._cached_l2(index, offset, self._l2_readable(offset))

    def _allocations(self):
        """Arrays over every in-file cluster reference: kind, host, length, virtual start.

        An L2 table that several L1 entries name counts once (for the first of them):
        check() reports the shared table, not each cluster in it twice."""
        parts = []
        seen: set[int] = set()
        for index, t in self._tables():
            if t is None or t.offset in seen:
                continue
            seen.add(t.offset)
            j = np.flatnonzero((t.kind == _PLAIN) | (t.kind == _COMPRESSED))
            length = np.where(t.kind[j] == _PLAIN, self.cluster_size, t.csize[j])
            vstart = (index << self._shift) + j.astype(np.int64) * self.cluster_size
            parts.append((t.kind[j], t.host[j], length, vstart))
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return np.zeros(0, dtype=np.uint8), empty, empty, empty
        return tuple(np.concatenate(p) for p in zip(*parts))

    def structures(self) -> list[dict]:
        h = self.header

        def row(name, offset, length, description):
            return dict(
                name=name,
                host_file=self.path,
                host_offset=offset,
                length=length,
                description=description,
            )

        rows = [
            row(
                "header",
                0,
                HEADER_SIZE,
                f"QCOW v1 header: {self.size} virtual bytes, {self.cluster_size}-byte "
                f"clusters, {self.l2_size}-entry L2 tables",
            )
        ]
        if self.backing_file is not None:
            rows.append(
                row(
                    "backing file name",
                    h.backing_file_offset,
                    h.backing_file_size,
                    f"backing file {self.backing_file!r}",
                )
            )
        rows.append(
            row(
                "L1 table",
                h.l1_table_offset,
                len(self._l1) * 8,
                f"{self.l1_size} entries, one per {1 << self._shift} virtual bytes",
            )
        )
        seen = set()
        for index, t in self._tables():
            off = int(self._l1[index])
            if t is None or off in seen:
                continue
            seen.add(off)
            v = index << self._shift
            end = min(v + (1 << self._shift), self.size)
            rows.append(
                row(
                    "L2 table",
                    off,
                    (self.l2_size - t.missing) * 8,
                    f"L1 entry {index}: virtual {v:#x}..{end:#x}",
                )
            )
        kind, host, length, _ = self._allocations()
        for k, name in ((_PLAIN, "data clusters"), (_COMPRESSED, "compressed clusters")):
            sel = kind == k
            for start, n, count in _coalesce(host[sel], length[sel]):
                rows.append(row(name, start, n, f"{count} cluster{'s' if count > 1 else ''}"))
        return rows

    def check(self) -> list[dict]:
        rep = _Report(self.findings)
        cs = self.cluster_size
        l2_offsets: dict[int, int] = {}  # host offset -> first L1 index using it
        for index, t in self._tables():
            off = int(self._l1[index])
            if t is None or t.missing:
                readable = 0 if t is None else self.l2_size - t.missing
                rep.add("error", "L2 table", off, self._l2_past_eof_message(index, readable))
                if t is None:
                    continue
            if off % cs:
                rep.add(
                    "warning",
                    "L2 table",
                    off,
                    f"L2 table of L1 entry {index} is not aligned to a cluster",
                )
            if off in l2_offsets:
                rep.add(
                    "error",
                    "L2 table",
                    off,
                    f"L2 table is used by L1 entries {l2_offsets[off]} and {index}",
                )
                continue  # its entries were checked for the first L1 entry
            l2_offsets[off] = index
            rep.many(
                "L2 entry",
                self._bad_entries(t),
                lambda j, t=t: ("error", *self._entry_problem(t, j)),
            )
            tail = np.count_nonzero(t.raw[t.kind == _UNALLOC])
            if tail:
                rep.add(
                    "warning",
                    "L2 table",
                    off,
                    f"{tail} entries past the virtual size are "
                    f"set in the L2 table of L1 entry {index}",
                )
        kind, host, length, vstart = self._allocations()
        plain = kind == _PLAIN
        for sel, severity, what in (
            (plain & (host % 512 != 0), "error", "512 bytes (qemu refuses to read it)"),
            (plain & (host % 512 == 0) & (host % cs != 0), "warning", "a cluster"),
        ):
            rep.many(
                "data cluster",
                np.flatnonzero(sel),
                lambda i, severity=severity, what=what: (
                    severity,
                    "data cluster",
                    int(host[i]),
                    f"data cluster for virtual offset {int(vstart[i]):#x} is not aligned to {what}",
                ),
            )
        self._check_overlaps(rep, kind, host, length, vstart, l2_offsets)
        for r in self._leak_rows(l2_offsets):
            rep._keep(r["severity"], r["structure"], r["host_offset"], r["message"])
        return rep.finish()

    def _leak_rows(self, l2_offsets: dict[int, int]) -> list[dict]:
        """Clusters that no structure touches: not the header, backing file name or L1
        table, no L2 table an L1 entry names, no cluster or compressed range an L2 entry
        names. One ``leak`` row per such cluster (the grid is the cluster size from offset
        0, as QEMU allocates; a partly used cluster, e.g. the padding after the L1 table's
        last sector or after compressed data, is not leaked; the file's last partial
        cluster is a cluster).
        A leaked cluster that holds a well-formed L2 table (an L1 entry lost) is named
        "L2 table", and the clusters its entries point to say so."""
        n, cs, h = self._file_size, self.cluster_size, self.header
        tb = self.l2_size * 8
        # qemu writes the L1 table in whole 512-byte sectors
        starts = [0, min(h.l1_table_offset, n)]
        ends = [HEADER_SIZE, min(h.l1_table_offset, n) + -(-len(self._l1) * 8 // 512) * 512]
        if h.backing_file_offset and h.backing_file_size <= MAX_BACKING_NAME:
            off = min(h.backing_file_offset, n)
            starts.append(off)
            ends.append(off + h.backing_file_size)
        for off in l2_offsets:
            starts.append(min(off, n))
            ends.append(min(off, n) + tb)
        parts = [np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)]
        for off, index in l2_offsets.items():
            t = self._cached_l2(index, off, self._l2_readable(off))
            if t is not None:
                s, e = self._entry_ranges(t.raw)
                parts += [s, e]
        gaps = unused_spans(np.concatenate(parts[::2]), np.concatenate(parts[1::2]), 0, n)
        cells = []  # leaked runs of whole clusters (the last may end with the file)
        for a, b in gaps:
            a2 = -(-a // cs) * cs
            b2 = b if b == n else b // cs * cs
            if b2 > a2:
                cells.append((a2, b2, b))
        total = sum(-(-(b2 - a2) // cs) for a2, b2, _ in cells)

        def leaks():
            budget = L2_SCAN_BYTES
            table, table_end = None, 0  # the unreferenced L2 table being listed
            targets: dict[int, int] = {}  # cluster -> unreferenced L2 table pointing there
            for a2, b2, b in cells:
                for at in range(a2, b2, cs):
                    if at < table_end:
                        msg = f"part of the unreferenced L2 table at {table:#x}"
                        yield "L2 table", at, f"cluster at {at:#x} is {msg} (leaked)"
                        continue
                    raw = None
                    if at + tb <= b and budget > 0:
                        budget -= min(tb, 512)
                        raw = self._orphan_l2(at)
                    if raw is not None:
                        budget -= tb
                        table, table_end = at, at + tb
                        s, e = self._entry_ranges(raw)
                        for x, y in zip(s.tolist(), e.tolist()):
                            for c in range(x // cs * cs, min(y, n), cs):
                                targets.setdefault(c, at)
                        msg = f"{int(np.count_nonzero(raw))} entries set"
                        yield (
                            "L2 table",
                            at,
                            f"L2 table at {at:#x} ({msg}) is named by no L1 entry (leaked)",
                        )
                        continue
                    msg = f"cluster at {at:#x} is used by no L1 or L2 entry and no structure"
                    if at in targets:
                        msg += f" (the unreferenced L2 table at {targets[at]:#x} points here)"
                    yield "cluster", at, msg + " (leaked)"

        return leak_rows(leaks(), total, "cluster", "leaked clusters")

    def _entry_ranges(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Host ranges (starts, ends) the non-zero L2 entries ``raw`` name, clipped to start
        inside the file: a plain cluster, or a compressed cluster's bytes."""
        n, cs = self._file_size, self.cluster_size
        raw = raw[raw != 0]
        compressed = (raw & np.uint64(QCOW_OFLAG_COMPRESSED)) != 0
        off = np.where(compressed, raw & np.uint64(self._offset_mask), raw)
        off = np.minimum(off, np.uint64(n)).astype(np.int64)
        size = np.where(
            compressed, (raw >> np.uint64(63 - self.cluster_bits)) & np.uint64(cs - 1), cs
        ).astype(np.int64)
        return off, off + size

    def _orphan_l2(self, at: int) -> np.ndarray | None:
        """The entries of an L2 table at ``at`` if the bytes there look like one: every entry
        zero or naming a 512-aligned cluster / a compressed range inside the file, at least
        one set. (Leaked space only: nothing says it is a table, so this only names it.)"""
        tb = self.l2_size * 8
        head = np.frombuffer(self.file.read(at, min(tb, 512)), TABLE_ENTRY)
        if not self._plausible_entries(head):
            return None
        raw = head if tb <= 512 else np.frombuffer(self.file.read(at, tb), TABLE_ENTRY)
        if tb > 512 and not self._plausible_entries(raw):
            return None
        return raw.astype(np.uint64) if raw.any() else None

    def _plausible_entries(self, raw: np.ndarray) -> bool:
        n, cs = self._file_size, self.cluster_size
        raw = raw.astype(np.uint64)
        compressed = (raw & np.uint64(QCOW_OFLAG_COMPRESSED)) != 0
        off = raw & np.uint64(self._offset_mask)
        size = (raw >> np.uint64(63 - self.cluster_bits)) & np.uint64(cs - 1)
        plain_ok = (raw % np.uint64(512) == 0) & (raw < np.uint64(n))
        comp_ok = (size > 0) & (off < np.uint64(n)) & (size <= np.uint64(n) - off)
        return bool(np.all((raw == 0) | np.where(compressed, comp_ok, plain_ok)))

    def _check_overlaps(self, rep, kind, host, length, vstart, l2_offsets) -> None:
        """Report host ranges used by two structures (clusters referenced twice)."""
        h = self.header
        names = [
            "header",
            "backing file name",
            "L1 table",
            "L2 table",
            "data cluster",
            "compressed cluster",
        ]
        fixed = [(0, 0, HEADER_SIZE, -1)]
        if len(self._l1):  # inside the file (a missing L1 table is reported elsewhere)
            fixed.append((2, h.l1_table_offset, len(self._l1) * 8, -1))
        if self.backing_file is not None:
            fixed.append((1, h.backing_file_offset, h.backing_file_size, -1))
        for off, index in l2_offsets.items():
            fixed.append((3, off, min(self.l2_size * 8, self._file_size - off), index))
        fk, fs, fn, fv = (np.array(c, dtype=np.int64) for c in zip(*fixed))
        k = np.concatenate([fk, np.where(kind == _PLAIN, 4, 5)])
        s = np.concatenate([fs, host])
        e = s + np.concatenate([fn, length])
        v = np.concatenate([fv, vstart])
        order = np.lexsort((k, s))
        k, s, e, v = k[order], s[order], e[order], v[order]
        cummax = np.maximum.accumulate(e)
        # index of the range that reaches furthest among those before each one
        holder = np.maximum.accumulate(np.where(e == cummax, np.arange(len(e)), 0))

        def row(i):
            j = int(holder[i - 1])
            if k[i] == k[j] == 4 and s[i] == s[j]:
                msg = (
                    f"data cluster at {s[i]:#x} is referenced twice (by virtual offsets "
                    f"{v[j]:#x} and {v[i]:#x})"
                )
            else:
                msg = (
                    f"{_describe(names, k[i], s[i], v[i])} overlaps "
                    f"{_describe(names, k[j], s[j], v[j])}"
                )
            return "error", names[k[i]], int(s[i]), msg

        rep.many("overlap", np.flatnonzero(s[1:] < cummax[:-1]) + 1, row)


def _describe(names, k, s, v) -> str:
    text = f"{names[k]} at {int(s):#x}"
    if k >= 3 and v >= 0:
        text += f" (L1 entry {int(v)})" if k == 3 else f" (virtual {int(v):#x})"
    return text


def _coalesce(starts: np.ndarray, lengths: np.ndarray):
    """(start, length, count) of host ranges joined where one ends as the next begins."""
    if not len(starts):
        return []
    order = np.argsort(starts, kind="stable")
    s, n = starts[order], lengths[order]
    e = s + n
    brk = np.ones(len(s), dtype=bool)
    brk[1:] = s[1:] != e[:-1]
    first = np.flatnonzero(brk)
    last = np.append(first[1:], len(s)) - 1
    return [
        (int(s[a]), int(e[b] - s[a]), int(b - a + 1)) for a, b in zip(first.tolist(), last.tolist())
    ]


class _Report:
    """check() rows: duplicates dropped, at most MAX_FINDINGS per topic, the rest counted."""

    def __init__(self, findings):
        self.rows: list[dict] = []
        self.seen: set = set()
        self.counts: dict[str, int] = {}
        for f in findings:  # problems met while reading, as recorded
            self._keep(f["severity"], f["structure"], f["host_offset"], f["message"])

    def _keep(self, severity, structure, offset, message):
        key = (severity, structure, offset, message)
        if key not in self.seen:
            self.seen.add(key)
            self.rows.append(
                dict(severity=severity, structure=structure, host_offset=offset, message=message)
            )

    def add(self, severity, structure, offset, message, topic=None):
        topic = topic or structure
        n = self.counts[topic] = self.counts.get(topic, 0) + 1
        if n <= MAX_FINDINGS:
            self._keep(severity, structure, offset, message)

    def many(self, topic, items, make):
        """Rows ``make(item)`` for as many ``items`` as the topic has room for."""
        room = max(0, MAX_FINDINGS - self.counts.get(topic, 0))
        for item in items[:room]:
            self._keep(*make(item))
        self.counts[topic] = self.counts.get(topic, 0) + len(items)

    def finish(self) -> list[dict]:
        for topic, n in self.counts.items():
            if n > MAX_FINDINGS:
                self._keep(
                    "error",
                    topic,
                    None,
                    f"{n - MAX_FINDINGS} more problems of this kind ({topic}) not listed",
                )
        return self.rows


def open_image(source: ByteSource, *, path: str | None = None, strict: bool = True) -> QcowImage:
    """Open a QCOW version 1 image (``strict=False``: salvage what can be read)."""
    return QcowImage(source, path=path, strict=strict)
