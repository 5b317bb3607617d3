"""Reading Btrfs file data: checked against the checksum tree, other copies tried.

Data checksums live in the csum tree as EXTENT_CSUM items keyed by the logical address of
their first sector, one checksum per sector. A sector that fails its checksum is read from
the next copy (DUP, RAID1/10/1C3/1C4); when none matches, strict mode raises
``CorruptImage`` and salvage mode reads zeros there and remembers the range, which the
``damaged`` column and ``check()`` then report. ``check()`` verifies every checksum (a
scrub). A run of sectors is checked against the run of stored checksums in one compare.
``data_host_ranges`` says where file data lies in host files for kernel copies, after
checking the host bytes the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

from ...errors import CorruptImage
from ...io import FileSource, HostRanges, cut_host_ranges, join_host_ranges
from . import structs as S
from .compress import DecompressError, decompress
from .csum import digest, digests, sector_sums
from .tree import KEY_MAX
from .volume import BtrfsVolume

MAX_DATA_READ = 1 << 26  # bytes checked in one piece
HOST_STEP = 1 << 23  # host bytes checksummed per buffer (memory stays bounded)
MAX_REFUSED = 4096  # sectors remembered as not to be copied raw (each is read instead)


class BtrfsData(BtrfsVolume):
    """Data reads with checksums; needs ``roots`` (the csum tree's ROOT_ITEM) and
    ``bad_logical`` from the filesystem class."""

    # --- data reads and checksums ------------------------------------------------------
    def _expected_csums(self, start: int, nsec: int) -> dict[int, bytes]:
        """Stored checksums of the sectors ``[start, start + nsec*sectorsize)`` by address."""
        r = self.roots.get(S.CSUM_TREE_OBJECTID)
        if r is None:
            return {}
        ss, cl = self.sectorsize, self.csum_len
        span = (self.nodesize // cl + 1) * ss
        end = start + nsec * ss
        lo = (S.EXTENT_CSUM_OBJECTID, S.EXTENT_CSUM, max(0, start - span))
        hi = (S.EXTENT_CSUM_OBJECTID, S.EXTENT_CSUM, end - 1)
        out = {}
        for node, i in self.search(r.bytenr, r.level, lo, hi):
            base = node.keys[i][2]
            data = node.data(i)
            first = max(0, (start - base) // ss)
            last = min(len(data) // cl, (end - base + ss - 1) // ss)
            for k in range(first, last):
                out[base + k * ss] = data[k * cl:(k + 1) * cl]
        return out

    def read_data(self, logical: int, n: int, verify: bool = True
                  ) -> tuple[bytes, list[tuple[int, int]]]:
        """``n`` bytes of file data at ``logical``, checked against the csum tree; with
        the ranges (relative to ``logical``) read as zeros in salvage mode."""
        if n > MAX_DATA_READ:
            parts, bad = [], []
            for k in range(0, n, MAX_DATA_READ):
                d, b = self.read_data(logical + k, min(MAX_DATA_READ, n - k), verify)
                parts.append(d)
                bad.extend((k + a, m) for a, m in b)
            return b"".join(parts), bad
        ss = self.sectorsize
        a = logical // ss * ss
        b = -(-(logical + n) // ss) * ss
        raw, bad = self._read_checked(a, b - a, verify)
        if a == logical and b - a == n:
            return raw, bad
        shift = logical - a
        bad = [(max(0, x - shift), min(n, x - shift + m) - max(0, x - shift))
               for x, m in bad if x - shift < n and x - shift + m > 0]
        return raw[shift:shift + n], bad

    def _read_checked(self, a: int, length: int, verify: bool
                      ) -> tuple[bytes, list[tuple[int, int]]]:
        try:
            raw = self.read_logical(a, length)
        except CorruptImage as e:
            if self.strict:
                raise
            self.finding("error", "data", a, e.detail)
            return bytes(length), [(0, length)]
        if not verify:
            return raw, []
        ss, cl = self.sectorsize, self.csum_len
        run = self._csum_run(a, length // ss)  # every sector has one: one compare
        if run is not None and sector_sums(self.csum_type, raw, ss, cl) == run:
            return raw, []
        want = self._expected_csums(a, length // ss)
        if not want:
            return raw, []
        got = digests(self.csum_type, raw, ss)
        wrong = [k for k in range(0, length, ss)
                 if (exp := want.get(a + k)) is not None and got[k // ss][:cl] != exp]
        if not wrong:
            return raw, []
        raw = bytearray(raw)
        bad = []
        for k in wrong:
            exp = want[a + k]
            fixed = None
            for m in range(1, self.mirrors(a + k)):
                try:
                    alt = self.read_logical(a + k, ss, m)
                except CorruptImage:
                    continue
                if digest(self.csum_type, alt)[:self.csum_len] == exp:
                    fixed = alt
                    break
            if fixed is not None:
                raw[k:k + ss] = fixed
                self.finding("warning", "data", a + k, "checksum mismatch; another copy used")
                continue
            self.problem("data", a + k, "data checksum mismatch")
            raw[k:k + ss] = bytes(ss)
            bad.append((k, ss))
            self._note_bad(a + k, ss)
        return bytes(raw), bad

    def data_host_ranges(self, logical: int, n: int, verify: bool = True) -> HostRanges:
        """Where the file data ``[logical, +n)`` lies in host files (``ByteSource.host_ranges``),
        on the copy a read takes first, RAID0/10 stripes in pieces; with ``verify``, only
        when every sector it touches matches its stored checksum (read from the host bytes,
        a memory map where there is one). None where a read does more than copy: a stripe
        on a missing device (parity), bytes not stored as themselves below, a checksum that
        fails (the read then tries the other copies and reports), a range found bad."""
        if n <= 0:
            return []
        if any(x < logical + n and x + m > logical for x, m in self.bad_logical):
            return None
        ss = self.sectorsize
        if any(logical - ss < x < logical + n for x in self.copy_refused):
            return None  # a sector found wrong before: the read handles it
        a = logical // ss * ss if verify else logical
        b = -(-(logical + n) // ss) * ss if verify else logical + n
        out: list = []
        try:
            pieces = self._pieces(a, b - a)
        except CorruptImage:
            return None
        for dev, phys, m, _pos in pieces:
            if dev is None:
                return None
            got = dev.host_ranges(phys, m)
            if got is None:
                return None
            join_host_ranges(out, got)
        try:
            wrong = self._host_mismatch(a, b - a, out) if verify else None
        except CorruptImage:  # a csum tree block unreadable: the read says so
            return None
        if wrong is not None:
            if len(self.copy_refused) < MAX_REFUSED:  # later windows skip it unchecked
                self.copy_refused.append(wrong)
            return None
        return cut_host_ranges(out, logical - a, n)

    def _host_mismatch(self, a: int, length: int, ranges: list) -> int | None:
        """The first sector of the host bytes ``ranges`` (logical ``[a, +length)``, whole
        sectors) that fails a checksum the csum tree holds; None when all match."""
        ss, cl = self.sectorsize, self.csum_len
        nsec = length // ss
        run = self._csum_run(a, nsec)
        want = None if run is not None else self._expected_csums(a, nsec)
        if run is None and not want:
            return None
        got = b"".join(sector_sums(self.csum_type, buf, ss, cl)
                       for buf in _host_sectors(ranges, ss))
        if run is None:
            run = b"".join(want.get(a + k * ss, got[k * cl:(k + 1) * cl]) for k in range(nsec))
        if got == run:
            return None
        first = next(k for k in range(nsec)
                     if got[k * cl:(k + 1) * cl] != run[k * cl:(k + 1) * cl])
        return a + first * ss

    def _csum_run(self, start: int, nsec: int) -> bytes | None:
        """The stored checksums of the sectors ``[start, +nsec*sectorsize)`` joined, when
        the csum tree holds one for every one of them (else None)."""
        r = self.roots.get(S.CSUM_TREE_OBJECTID)
        if r is None or not nsec:
            return None
        ss, cl = self.sectorsize, self.csum_len
        span = (self.nodesize // cl + 1) * ss
        at, end = start, start + nsec * ss
        lo = (S.EXTENT_CSUM_OBJECTID, S.EXTENT_CSUM, max(0, start - span))
        hi = (S.EXTENT_CSUM_OBJECTID, S.EXTENT_CSUM, end - 1)
        parts = []
        for node, i in self.search(r.bytenr, r.level, lo, hi):
            base = node.keys[i][2]
            data = node.data(i)
            count = len(data) // cl
            if base + count * ss <= at:
                continue
            if base > at or (at - base) % ss:
                return None
            k0, k1 = (at - base) // ss, min(count, (end - base) // ss)
            parts.append(data[k0 * cl:k1 * cl])
            at = base + k1 * ss
            if at >= end:
                return b"".join(parts)
        return None

    def _note_bad(self, logical: int, n: int) -> None:
        if (logical, n) not in self.bad_logical and len(self.bad_logical) < 1 << 20:
            self.bad_logical.append((logical, n))

    def read_compressed(self, addr: int, disk_len: int, ram: int, codec: int, verify: bool
                        ) -> tuple[bytes, bool]:
        """A compressed extent decoded (zeros and True when it cannot be)."""
        if disk_len > 1 << 24:
            self.problem("data", addr, f"compressed extent of {disk_len} bytes")
            return bytes(min(ram, 1 << 20)), True
        raw, bad = self.read_data(addr, disk_len, verify)
        if bad:
            return bytes(min(ram, 1 << 20)), True
        try:
            return decompress(codec, raw, ram, self.sectorsize), False
        except DecompressError as e:
            self.problem("data", addr, str(e))
            self._note_bad(addr, disk_len)
            return bytes(min(ram, 1 << 20)), True

    def damaged_logical(self, logical: int, n: int) -> list[tuple[int, int]]:
        """(start, end) pairs relative to ``logical`` that cannot be read: damaged device
        ranges below, missing devices, and checksum failures met so far."""
        out = []
        try:
            pieces = self._pieces(logical, n)
        except CorruptImage:
            return [(0, n)]
        for dev, phys, m, pos in pieces:
            rel = pos - logical
            if dev is None:
                others = self._parity_sources(pos, m)
                if others is None:  # nothing to rebuild it from
                    out.append((rel, rel + m))
                    continue
                for odev, ophys in others:  # rebuilt: damaged where a source is
                    for x, y in odev._damage_pairs(ophys, ophys + m):
                        out.append((rel + x - ophys, rel + y - ophys))
                continue
            for x, y in dev._damage_pairs(phys, phys + m):
                out.append((rel + x - phys, rel + y - phys))
        for x, m in self.bad_logical:
            a, b = max(x, logical), min(x + m, logical + n)
            if a < b:
                out.append((a - logical, b - logical))
        return out

    def volume_damaged(self) -> bool:
        """Whether anything could not be read: device ranges, tree blocks, checksums."""
        return bool(self.bad_logical or self.bad_blocks) or any(
            d.size and d._damage_pairs(0, d.size) for d in self.devs.values())

    def _scrub(self) -> None:
        r = self.roots.get(S.CSUM_TREE_OBJECTID)
        if r is None:
            return
        ss, cl = self.sectorsize, self.csum_len
        lo = (S.EXTENT_CSUM_OBJECTID, S.EXTENT_CSUM, 0)
        hi = (S.EXTENT_CSUM_OBJECTID, S.EXTENT_CSUM, KEY_MAX[2])
        for node, i in self.search(r.bytenr, r.level, lo, hi):
            base = node.keys[i][2]
            count = len(node.data(i)) // cl
            for k in range(0, count, 256):
                m = min(256, count - k)
                self._read_checked(base + k * ss, m * ss, True)


def _host_sectors(ranges: list, ss: int) -> Iterator[memoryview]:
    """The bytes host ranges name, as buffers of whole ``ss``-byte sectors in order (a memory
    map's slices where the host file has one, else reads of at most ``HOST_STEP`` bytes;
    a sector split between two pieces joined)."""
    carry = b""
    zeros = b""
    for host, off, k in ranges:
        view = host.view() if isinstance(host, FileSource) else None
        if view is not None and off + k > len(view):
            view = None
        for at in range(off, off + k, HOST_STEP):
            n = min(HOST_STEP, off + k - at)
            if host is None:
                if len(zeros) < n:
                    zeros = bytes(n)
                data = memoryview(zeros)[:n]
            else:
                data = view[at:at + n] if view is not None else memoryview(host.read(at, n))
            if carry:
                take = min(ss - len(carry), len(data))
                carry += bytes(data[:take])
                data = data[take:]
                if len(carry) < ss:
                    continue
                yield memoryview(carry)
                carry = b""
            whole = len(data) // ss * ss
            if whole:
                yield data[:whole]
            carry = bytes(data[whole:])
