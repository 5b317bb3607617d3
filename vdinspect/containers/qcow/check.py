"""What a QCOW image reports: table decoders, info, structures() and check() (leaks,
overlaps, entries past the end of the file)."""

from __future__ import annotations

from datetime import UTC, datetime

from ...findings import CappedRows
from ...lazy import np
from ..base import leak_rows, structure_row, unused_spans
from .structs import (
    COMPRESSED,
    HEADER_SIZE,
    L2_SCAN_BYTES,
    MAX_BACKING_NAME,
    MAX_FINDINGS,
    PLAIN,
    QCOW_CRYPT_NONE,
    QCOW_OFLAG_COMPRESSED,
    TABLE_ENTRY,
    UNALLOC,
)


class QcowReport:
    """Mixin of :class:`~vdinspect.containers.qcow.QcowImage`: its reports."""

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
            j = np.flatnonzero((t.kind == PLAIN) | (t.kind == COMPRESSED))
            length = np.where(t.kind[j] == PLAIN, self.cluster_size, t.csize[j])
            vstart = (index << self._shift) + j.astype(np.int64) * self.cluster_size
            parts.append((t.kind[j], t.host[j], length, vstart))
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return np.zeros(0, dtype=np.uint8), empty, empty, empty
        return tuple(np.concatenate(p) for p in zip(*parts))

    def structure_rows(self) -> list[dict]:
        h = self.header

        def row(name, offset, length, description):
            return structure_row(name, self.path, offset, length, description)

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
        for k, name in ((PLAIN, "data clusters"), (COMPRESSED, "compressed clusters")):
            sel = kind == k
            for start, n, count in _coalesce(host[sel], length[sel]):
                rows.append(row(name, start, n, f"{count} cluster{'s' if count > 1 else ''}"))
        return rows

    def check_rows(self) -> list[dict]:
        rep = CappedRows(self.findings, MAX_FINDINGS)
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
            tail = np.count_nonzero(t.raw[t.kind == UNALLOC])
            if tail:
                rep.add(
                    "warning",
                    "L2 table",
                    off,
                    f"{tail} entries past the virtual size are "
                    f"set in the L2 table of L1 entry {index}",
                )
        kind, host, length, vstart = self._allocations()
        plain = kind == PLAIN
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
        k = np.concatenate([fk, np.where(kind == PLAIN, 4, 5)])
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
