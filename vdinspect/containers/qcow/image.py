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
from functools import partial

from construct import ConstructError

from ...errors import CorruptImage, EncryptedImage, NotRecognized
from ...io import ByteSource, LRUCache
from ...layout import offset_of
from ...lazy import np
from .. import readplan
from ..base import DAMAGED, DATA, UNALLOCATED, Image, ParentHint, Run
from ..runs import unit_breaks
from .check import QcowReport
from .structs import (
    BAD,
    COMPRESSED,
    FORMAT,
    HEADER_SIZE,
    MAX_BACKING_NAME,
    MAX_L1_ENTRIES,
    PLAIN,
    QCOW_CRYPT_AES,
    QCOW_CRYPT_NONE,
    QCOW_MAGIC,
    QCOW_OFLAG_COMPRESSED,
    QCOW_VERSION,
    TABLE_ENTRY,
    UNALLOC,
    QcowHeader,
)


@dataclass(slots=True)
class L2Table:
    """One decoded L2 table: per-entry kind, host offset and compressed length."""

    index: int  # L1 index
    offset: int  # host offset of the table
    raw: np.ndarray  # uint64 entries as stored (0 where the table is cut off by EOF)
    kind: np.ndarray  # uint8: UNALLOC / PLAIN / COMPRESSED / BAD
    host: np.ndarray  # int64 host offset (0 unless plain or compressed)
    csize: np.ndarray  # int64 compressed length in bytes (0 unless compressed)
    missing: int  # entries lost because the table runs past the end of the file


#: UNALLOC, PLAIN, COMPRESSED, BAD -> read plan piece kind
PLAN_KINDS = [readplan.SLOW] * 4
PLAN_KINDS[UNALLOC], PLAN_KINDS[PLAIN] = readplan.HOLE, readplan.DATA
PLAN_KINDS[COMPRESSED] = readplan.INFLATE


class QcowImage(QcowReport, Image):
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
        self._l2_cache: LRUCache[L2Table] = LRUCache(64)

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
                message, path=self.path, structure=f"header.{field}", offset=offset_of(QcowHeader, field)
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
    def _l2(self, index: int) -> L2Table | None:
        """The decoded L2 table of L1 entry ``index``; None if it is wholly past EOF.

        A table that runs past the end of the file is an error in strict mode; in salvage
        mode its lost entries read as damaged.
        """
        offset = int(self._l1[index])
        n = self._l2_readable(offset)
        if n < self.l2_size:
            self.problem("L2 table", offset, self._l2_past_eof_message(index, n))
        return self._cached_l2(index, offset, n)

    def _cached_l2(self, index: int, offset: int, readable: int) -> L2Table | None:
        if readable == 0:
            return None
        return self._l2_cache.get((index, offset), lambda: self._load_l2(index, offset, readable))

    def _l2_readable(self, offset: int) -> int:
        """How many entries of an L2 table at ``offset`` lie inside the file."""
        if offset >= self._file_size:
            return 0
        return min(self.l2_size, (self._file_size - offset) // 8)

    def _load_l2(self, index: int, offset: int, readable: int) -> L2Table:
        raw = np.zeros(self.l2_size, dtype=np.uint64)
        raw[:readable] = np.frombuffer(self.file.read(offset, readable * 8), TABLE_ENTRY)
        return self._decode_l2(index, offset, raw, self.l2_size - readable)

    def _l2_past_eof_message(self, index: int, readable: int) -> str:
        return (
            f"L2 table of L1 entry {index} ({self.l2_size * 8} bytes) runs past the end "
            f"of the file ({self._file_size} bytes); {self.l2_size - readable} entries lost"
        )

    def _decode_l2(self, index: int, offset: int, raw: np.ndarray, missing: int) -> L2Table:
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
        kind = np.full(self.l2_size, UNALLOC, dtype=np.uint8)
        kind[plain] = PLAIN
        kind[compressed] = COMPRESSED
        kind[bad] = BAD
        if missing:
            kind[self.l2_size - missing :] = BAD
        kind[vstart >= self.size] = UNALLOC  # past the virtual disk: never read
        host[(kind == BAD) | (kind == UNALLOC)] = 0
        return L2Table(index, offset, raw, kind, host, csize, missing)

    def _bad_entries(self, t: L2Table, first: int = 0, last: int | None = None) -> list[int]:
        """Indexes of entries in ``[first, last)`` pointing past EOF (lost ones excluded:
        the table-level problem already covers them)."""
        last = min(self.l2_size - t.missing, self.l2_size if last is None else last)
        return (first + np.flatnonzero(t.kind[first:last] == BAD)).tolist()

    def _entry_problem(self, t: L2Table, j: int) -> tuple[str, int, str]:
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
    def plan(self, start: int, end: int) -> readplan.Plan | None:
        """The fast read plan: one lookup per L2 table (decoded and cached)."""
        return readplan.plan_tables(start, end, 1 << self._shift, self._plan_table)

    def _plan_table(self, index: int) -> readplan.Table:
        """What L1 entry ``index`` holds for a read plan (:data:`readplan.Table`)."""
        if index >= len(self._l1):
            return None
        if self._l1[index] == 0:
            return readplan.HOLE
        t = self._l2(index)
        if t is None:
            return None
        return (PLAN_KINDS, t.kind, t.host, self.cluster_size, self.file,
                partial(self._compressed_at, t, index << self._shift))

    def _compressed_at(self, t: L2Table, tstart: int, j: int):
        """For a read plan: (loader of compressed cluster ``j`` of table ``t``, its start),
        keyed as the runs key it."""
        vstart = tstart + j * self.cluster_size
        run = Run(vstart, self.cluster_size, DATA, host_file=self.path,
                  host_offset=int(t.host[j]), compressed=True, source=self.file,
                  extra=(vstart, int(t.csize[j])))
        return partial(self.inflated, run), vstart

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

    def _table_runs(self, t: L2Table, tstart: int, first: int, last: int):
        """Runs for entries ``[first, last)`` of one L2 table, contiguous clusters joined."""
        cs = self.cluster_size
        kind = t.kind[first:last]
        host = t.host[first:last]
        for j in self._bad_entries(t, first, last)[:16]:
            structure, off, message = self._entry_problem(t, j)
            self.problem(structure, off, message)
        starts = np.flatnonzero(unit_breaks(kind, host, cs, PLAIN, kind == COMPRESSED))
        ends = np.append(starts[1:], len(kind))
        for s, e in zip(starts.tolist(), ends.tolist()):
            k = kind[s]
            vstart = tstart + (first + s) * cs
            length = (e - s) * cs
            if k == BAD:
                yield from self._bad_runs(t, tstart, first + s, first + e)
            elif k == UNALLOC:
                yield Run(vstart, length, UNALLOCATED)
            else:
                extra = (vstart, int(t.csize[first + s])) if k == COMPRESSED else None
                yield Run(
                    vstart,
                    length,
                    DATA,
                    host_file=self.path,
                    host_offset=int(host[s]),
                    compressed=k == COMPRESSED,
                    source=self.file,
                    extra=extra,
                )

    def _bad_runs(self, t: L2Table, tstart: int, a: int, b: int):
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


def open_image(source: ByteSource, *, path: str | None = None, strict: bool = True) -> QcowImage:
    """Open a QCOW version 1 image (``strict=False``: salvage what can be read)."""
    return QcowImage(source, path=path, strict=strict)
