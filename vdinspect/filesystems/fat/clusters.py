"""Cluster chains: the file allocation table, chain following, and file bytes on clusters.

Shared by FAT12/16/32 and exFAT (whose FAT has 32-bit entries and is only used for
fragmented files). :class:`FatTable` decodes one copy of the table with numpy and follows
chains with loop and length bounds; :func:`take_free` is The Sleuth Kit's guess at a
deleted file's clusters; :class:`ClusterRuns` is a file's bytes on its cluster runs.
"""

from __future__ import annotations

import bisect

import numpy as np

from ...io import (
    NOT_STORED,
    ByteSource,
    HostPieces,
    HostRanges,
    LRUCache,
    MemorySource,
    damaged_through,
    join_host_ranges,
)
from .structs import FAT16_DTYPE, FAT32_DTYPE, FAT32_MASK

EXFAT_EOC_MIN, EXFAT_BAD = 0xFFFFFFF8, 0xFFFFFFF7  # exFAT FAT entries: end of chain, bad



class FatTable:
    """One copy of a FAT (12, 16 or 32 bits a cluster; exFAT uses 32), decoded with numpy.

    Entries are read in blocks of ``BLOCK`` clusters and cached, so a 1 GiB FAT32 table
    is never held whole. ``limit`` is the number of entries that exist (the highest valid
    cluster + 1); entries past the end of the source are out of range.
    """

    BLOCK = 1 << 20

    def __init__(
        self,
        source: ByteSource,
        offset: int,
        length: int,
        bits: int,
        limit: int,
        *,
        exfat: bool = False,
        name: str = "FAT",
    ) -> None:
        self.source = source
        self.offset = offset
        self.length = length
        self.bits = bits
        self.name = name
        self.exfat = exfat
        readable = max(0, min(length, source.size - offset))
        fits = readable * 8 // bits
        self.complete = fits >= limit
        self.limit = min(limit, fits)
        #: the bits of an entry that hold a cluster number
        self.mask = 0xFFFFFFFF if exfat else (1 << bits) - 1 if bits < 32 else FAT32_MASK
        if exfat:
            self.eoc_min, self.bad = EXFAT_EOC_MIN, EXFAT_BAD
        else:
            self.eoc_min, self.bad = self.mask - 7, self.mask - 8
        self._cache: LRUCache[np.ndarray] = LRUCache(8)

    def block(self, b: int) -> np.ndarray:
        """Entries [b*BLOCK, (b+1)*BLOCK) as uint32 (fewer at the end)."""
        return self._cache.get(b, lambda: self._load(b))

    def _load(self, b: int) -> np.ndarray:
        start = b * self.BLOCK
        stop = min(self.limit, start + self.BLOCK)
        if stop <= start:
            return np.zeros(0, dtype=np.uint32)
        if self.bits == 12:
            lo = start // 2 * 3
            hi = min((stop + 1) // 2 * 3, self.length, self.source.size - self.offset)
            raw = self.source.read(self.offset + lo, hi - lo)
            raw += bytes((-len(raw)) % 3)
            t = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.uint32)
            pairs = np.empty((t.shape[0], 2), dtype=np.uint32)
            pairs[:, 0] = t[:, 0] | ((t[:, 1] & 0x0F) << 8)
            pairs[:, 1] = (t[:, 1] >> 4) | (t[:, 2] << 4)
            flat = pairs.reshape(-1)
            first = start - start // 2 * 2
            return flat[first : first + stop - start].copy()
        width = self.bits // 8
        raw = self.source.read(self.offset + start * width, (stop - start) * width)
        if width == 2:
            return np.frombuffer(raw, dtype=FAT16_DTYPE).astype(np.uint32)
        arr = np.frombuffer(raw, dtype=FAT32_DTYPE).astype(np.uint32)
        if not self.exfat:
            arr &= FAT32_MASK
        return arr

    def get(self, c: int) -> int:
        """The entry of cluster ``c`` (which must be < ``limit``)."""
        b, i = divmod(c, self.BLOCK)
        return int(self.block(b)[i])

    def values(self, start: int, stop: int) -> np.ndarray:
        """Entries [start, stop) clamped to the table, as one uint32 array."""
        stop = min(stop, self.limit)
        if stop <= start:
            return np.zeros(0, dtype=np.uint32)
        parts = []
        b = start // self.BLOCK
        while b * self.BLOCK < stop:
            arr = self.block(b)
            lo = max(start - b * self.BLOCK, 0)
            hi = min(stop - b * self.BLOCK, len(arr))
            parts.append(arr[lo:hi])
            b += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def is_eoc(self, v: int) -> bool:
        """Whether entry value ``v`` marks the end of a chain."""
        return v >= self.eoc_min

    def chain(
        self, first: int, max_clusters: int, max_cluster: int
    ) -> tuple[list[tuple[int, int]], str | None, bool]:
        """The runs (start, count) of the chain from ``first``, at most ``max_clusters``.

        Returns (runs, problem, ended): ``problem`` describes a loop, a free or bad cluster
        or an out-of-range link where the chain was cut (None if sound); ``ended`` is True
        when the chain reached its end-of-chain mark.
        """
        runs: list[tuple[int, int]] = []
        starts: list[int] = []  # sorted starts of the visited runs, for loop detection
        ends: dict[int, int] = {}
        total = 0
        c = first
        top = min(max_cluster, self.limit - 1)
        while total < max_clusters:
            if not 2 <= c <= top:
                return runs, f"cluster {c} is out of range (2..{max_cluster})", False
            # follow consecutive links c -> c+1 -> ... with growing numpy windows
            k = 0
            window = 64
            nxt = None
            while total + k < max_clusters:
                lo = c + k
                n = min(window, max_clusters - total - k, top + 1 - lo)
                if n <= 0:
                    break
                seg = self.values(lo, lo + n)
                bad = np.flatnonzero(seg != np.arange(lo + 1, lo + 1 + n, dtype=np.uint32))
                if bad.size:
                    k += int(bad[0]) + 1
                    nxt = int(seg[bad[0]])
                    break
                k += n
                window *= 4
            if nxt is None and total + k < max_clusters:
                # the run reached the last cluster linking onward: the next link is c+k
                nxt = c + k
            # loop check: visited runs are disjoint, so walk back from the last one that
            # starts inside [c, c+k) until one ends before c
            hit = None
            j = bisect.bisect_right(starts, c + k - 1) - 1
            while j >= 0 and ends[starts[j]] > c:
                hit = max(starts[j], c)
                j -= 1
            if hit is not None:
                if hit > c:
                    runs.append((c, hit - c))
                return runs, f"cluster chain loops back to cluster {hit}", False
            runs.append((c, k))
            bisect.insort(starts, c)
            ends[c] = c + k
            total += k
            if total >= max_clusters:
                return runs, None, nxt is not None and self.is_eoc(nxt)
            assert nxt is not None
            if self.is_eoc(nxt):
                return runs, None, True
            if nxt == 0:
                return runs, f"cluster {c + k - 1} links to a free cluster", False
            if nxt == self.bad:
                return runs, f"cluster {c + k - 1} links to a bad cluster", False
            c = nxt
        return runs, None, False

    def free_mask(self, start: int, stop: int) -> np.ndarray:
        """True where clusters [start, stop) are free (entry 0) in this copy."""
        return self.values(start, stop) == 0


def take_free(
    free_mask, first: int, needed: int, max_cluster: int
) -> list[tuple[int, int]] | None:
    """The first ``needed`` free clusters from ``first`` on, as runs; None if too few.

    This is The Sleuth Kit's recovery of a deleted FAT file: its clusters are assumed to
    follow the first one, skipping clusters that are allocated now.
    """
    runs: list[tuple[int, int]] = []
    got = 0
    pos = first
    window = max(64, needed * 2)
    while got < needed and pos <= max_cluster:
        stop = min(max_cluster + 1, pos + window)
        idx = np.flatnonzero(free_mask(pos, stop))
        if idx.size:
            idx = idx[: needed - got] + pos
            breaks = np.flatnonzero(np.diff(idx) != 1)
            a = 0
            for b in list(breaks) + [len(idx) - 1]:
                s, n = int(idx[a]), int(b) - a + 1
                if runs and runs[-1][0] + runs[-1][1] == s:
                    runs[-1] = (runs[-1][0], runs[-1][1] + n)
                else:
                    runs.append((s, n))
                a = int(b) + 1
            got += len(idx)
        pos = stop
        window *= 4
    return runs if got >= needed else None


class ClusterRuns(ByteSource):
    """A file's bytes laid out on cluster runs of a volume (reads go straight to the runs)."""

    def __init__(
        self,
        vol: ByteSource,
        heap: int,
        csize: int,
        runs: list[tuple[int, int]],
        size: int,
        name: str,
    ) -> None:
        self.vol = vol
        self.name = name
        self.starts: list[int] = []  # file offset where each run starts
        self.offsets: list[int] = []  # volume offset of each run
        self.lengths: list[int] = []
        pos = 0
        for start, count in runs:
            if pos >= size:
                break
            n = min(count * csize, size - pos)
            self.starts.append(pos)
            self.offsets.append(heap + (start - 2) * csize)
            self.lengths.append(n)
            pos += n
        self.size = pos

    def _pieces(self, offset: int, length: int):
        i = bisect.bisect_right(self.starts, offset) - 1
        while length > 0:
            local = offset - self.starts[i]
            n = min(length, self.lengths[i] - local)
            yield self.offsets[i] + local, n
            offset += n
            length -= n
            i += 1

    def _read(self, offset: int, length: int) -> bytes:
        return b"".join(self.vol.read(o, n) for o, n in self._pieces(offset, length))

    def readinto(self, offset: int, buffer) -> None:
        mv = memoryview(buffer).cast("B")
        self._check_range(offset, len(mv))
        pos = 0
        for o, n in self._pieces(offset, len(mv)):
            self.vol.readinto(o, mv[pos : pos + n])
            pos += n

    def host_ranges(self, offset: int, length: int) -> HostRanges:
        """The runs' bytes through the volume's host ranges (None where it cannot say)."""
        self._check_range(offset, length)
        out: list = []
        for o, n in (self._pieces(offset, length) if length else ()):
            got = None if o + n > self.vol.size else self.vol.host_ranges(o, n)
            if got is None:
                return None
            out += got
        return out

    def host_pieces(self, offset: int, length: int) -> HostPieces:
        """As :meth:`host_ranges`, what the volume cannot say as stretches not stored
        (``io.NOT_STORED``, see ``ByteSource.host_pieces``)."""
        self._check_range(offset, length)
        out: list = []
        for o, n in (self._pieces(offset, length) if length else ()):
            got = [(NOT_STORED, 0, n)] if o + n > self.vol.size else self.vol.host_pieces(o, n)
            join_host_ranges(out, got)
        return out

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        return damaged_through(self.vol, zip(self.starts, self.offsets, self.lengths),
                               start, end)


def claim_runs(used: np.ndarray, runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Mark the clusters of ``runs`` in ``used``; (run start, first cluster marked before)
    for each run that overlaps clusters another chain already claimed (a cross link)."""
    crossed = []
    for s, n in runs:
        seg = used[s : s + n]
        if seg.any():
            crossed.append((s, s + int(np.flatnonzero(seg)[0])))
        seg[:] = True
    return crossed


def mark_runs(used: np.ndarray, runs: list[tuple[int, int]]) -> None:
    """Mark the clusters of many ``runs`` in ``used`` at once (:func:`claim_runs` without
    the cross links); runs past the end of ``used`` are cut."""
    a = np.array(runs, dtype=np.int64).reshape(-1, 2)
    top = len(used)
    s, e = np.clip(a[:, 0], 0, top), np.clip(a[:, 0] + a[:, 1], 0, top)
    keep = e > s
    edge = np.zeros(top + 1, dtype=np.int64)
    np.add.at(edge, s[keep], 1)
    np.add.at(edge, e[keep], -1)
    used |= np.cumsum(edge[:-1]) > 0


def readable_runs(fs, runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Cluster runs (first, count) cut where the clusters leave ``fs.source`` (FAT, exFAT)."""
    out = []
    for s, n in runs:
        if fs.cluster_offset(s + n) > fs.source.size:
            fit = max(0, (fs.source.size - fs.cluster_offset(s)) // fs.cluster_size)
            if fit:
                out.append((s, fit))
            break
        out.append((s, n))
    return out


def directory_extents(fs, runs: list[tuple[int, int]], path: str) -> list[tuple[int, int]]:
    """A directory's (volume offset, bytes) extents from its cluster runs, cut where they
    leave the volume (an ``error`` finding then: its listing misses what lay there)."""
    readable = readable_runs(fs, runs)
    if sum(n for _, n in runs) > sum(n for _, n in readable):
        fs.finding("error", "directory", None, f"{path or '/'}: clusters past the end of the volume")
    return [(fs.cluster_offset(s), n * fs.cluster_size) for s, n in readable]


def cluster_source(
    vol: ByteSource, heap: int, csize: int, runs: list[tuple[int, int]], size: int, name: str
) -> ByteSource:
    """``size`` bytes (fewer if the runs end first) from cluster runs; cluster 2 at ``heap``."""
    src = ClusterRuns(vol, heap, csize, runs, size, name)
    if src.size == 0:
        return MemorySource(b"", name=name)
    return src

