"""Runlists (mapping pairs) of non-resident attributes, and the byte sources built on them.

A runlist is a series of runs, each a header byte (low nibble: bytes of the run length,
high nibble: bytes of the signed LCN delta), the length in clusters (unsigned, little
endian) and the delta from the previous run's LCN (signed). A run without an LCN field is
sparse. A 0 header byte ends the list (Linux-NTFS documentation, "Data runs").
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from ...errors import CorruptImage
from ...io import (
    NOT_STORED,
    ByteSource,
    FilledSource,
    HostPieces,
    HostRanges,
    damaged_through,
    join_host_ranges,
)

MAX_RUNS = 1 << 20  # more runs than this in one attribute is treated as corruption


@dataclass(slots=True)
class Run:
    """``length`` clusters from ``vcn``; ``lcn`` None for a sparse (unallocated) run."""

    vcn: int
    lcn: int | None
    length: int


class RunlistError(ValueError):
    """A runlist that cannot be decoded; ``runs`` holds the runs decoded before the fault."""

    def __init__(self, message: str, runs: list[Run] | None = None) -> None:
        super().__init__(message)
        self.runs = runs or []


MAX_VCN = 1 << 56  # sparse runs end below this VCN (with 4 KiB clusters: 2**68 bytes)


def decode_runlist(
    data: bytes | memoryview, start_vcn: int = 0, clusters: int | None = None
) -> list[Run]:
    """Decode mapping pairs into runs starting at ``start_vcn``.

    ``clusters`` (the volume's cluster count) bounds the allocated runs: a run past the
    end of the volume, with a negative LCN or an absurd length raises RunlistError.
    Sparse runs may reach past the volume's size (up to ``MAX_VCN``).
    """
    runs: list[Run] = []
    pos = 0
    lcn = 0
    vcn = start_vcn
    n = len(data)
    while pos < n:
        head = data[pos]
        if head == 0:
            return runs
        len_size, off_size = head & 0x0F, head >> 4
        if len_size == 0 or len_size > 8 or off_size > 8:
            raise RunlistError(f"bad run header byte {head:#04x} at byte {pos}", runs)
        if pos + 1 + len_size + off_size > n:
            raise RunlistError(f"run at byte {pos} runs past the end of the attribute", runs)
        length = int.from_bytes(data[pos + 1 : pos + 1 + len_size], "little")
        # an allocated run must fit the volume (checked below); a sparse run need not: a
        # sparse file may be larger than its volume (Windows makes them), so it is only
        # held to what a VCN can count
        if length == 0 or (off_size == 0 and vcn + length > MAX_VCN):
            raise RunlistError(f"run at byte {pos} has an absurd length of {length} clusters", runs)
        if off_size:
            delta = int.from_bytes(
                data[pos + 1 + len_size : pos + 1 + len_size + off_size], "little", signed=True
            )
            lcn += delta
            if lcn < 0 or (clusters is not None and lcn + length > clusters):
                raise RunlistError(
                    f"run at byte {pos}: clusters {lcn}..{lcn + length - 1} are "
                    f"outside the volume ({clusters} clusters)",
                    runs,
                )
            runs.append(Run(vcn, lcn, length))
        else:
            runs.append(Run(vcn, None, length))
        vcn += length
        pos += 1 + len_size + off_size
        if len(runs) > MAX_RUNS:
            raise RunlistError(f"more than {MAX_RUNS} runs", runs)
    raise RunlistError("runlist has no terminating 0 byte", runs)


def overlapping(runs: list[Run]) -> tuple[Run, Run] | None:
    """The first two allocated runs that share clusters, or None."""
    alloc = sorted((r for r in runs if r.lcn is not None), key=lambda r: r.lcn)
    for a, b in zip(alloc, alloc[1:]):
        if b.lcn < a.lcn + a.length:
            return a, b
    return None


class RunSource(FilledSource):
    """The bytes of a non-resident attribute: its runs over the volume, holes as zeros.

    Bytes past ``initialized`` read as zeros (the valid data length); clusters the
    runlist does not cover (a damaged list in salvage mode) read as zeros too.
    """

    def __init__(
        self,
        volume: ByteSource,
        runs: list[Run],
        cluster_size: int,
        size: int,
        initialized: int | None = None,
        name: str = "<ntfs stream>",
    ) -> None:
        self.volume = volume
        self.runs = [r for r in runs if r.length > 0]
        self.starts = [r.vcn * cluster_size for r in self.runs]
        self.cs = cluster_size
        self.size = size
        self.initialized = size if initialized is None else min(size, initialized)
        self.name = name

    def seek_data(self, offset: int) -> int:
        """The first offset >= ``offset`` in a stored (not sparse) run below the valid
        data length (``size`` if none): the extractor skips holes instead of reading them."""
        cs, runs = self.cs, self.runs
        for i in range(max(0, bisect.bisect_right(self.starts, offset) - 1), len(runs)):
            r = runs[i]
            if r.vcn * cs >= self.initialized:
                break
            if r.lcn is not None and (r.vcn + r.length) * cs > offset:
                return max(r.vcn * cs, offset)
        return self.size

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        cs, lim = self.cs, min(end, self.initialized)
        pieces = [(r.vcn * cs, r.lcn * cs, r.length * cs) for r in self.runs if r.lcn is not None]
        out = damaged_through(self.volume, pieces, start, lim)
        # clusters below the valid data length that no run covers: a damaged runlist
        pos = 0
        for r in sorted(self.runs, key=lambda r: r.vcn):
            a = r.vcn * cs
            if a > pos:
                out.append((pos, a))
            pos = max(pos, a + r.length * cs)
        out.append((pos, self.initialized))
        return [(max(a, start), min(b, lim)) for a, b in out if min(b, lim) > max(a, start)]

    def host_ranges(self, offset: int, length: int) -> HostRanges:
        """Stored runs through the volume's host ranges, sparse runs and bytes past the
        valid data length as zeros; None where the runlist leaves a gap (damaged: the
        read reports it) or the volume cannot say."""
        return self._host(offset, length, False)

    def host_pieces(self, offset: int, length: int) -> HostPieces:
        """As :meth:`host_ranges`, gaps in the runlist and what the volume cannot say as
        stretches not stored (``io.NOT_STORED``): read, and reported, by the copier."""
        return self._host(offset, length, True)

    def _host(self, offset: int, length: int, pieces: bool) -> list | None:
        self._check_range(offset, length)
        end = offset + length
        lim = min(end, self.initialized)
        cs = self.cs
        out: list = []
        pos = offset
        i = max(0, bisect.bisect_right(self.starts, pos) - 1)
        while pos < lim:
            r = self.runs[i] if i < len(self.runs) else None
            rstart = lim if r is None else r.vcn * cs
            if r is not None and (r.vcn + r.length) * cs <= pos:
                i += 1
                continue
            if rstart > pos:  # a gap in the runlist
                if not pieces:
                    return None
                join_host_ranges(out, [(NOT_STORED, 0, min(rstart, lim) - pos)])
                pos = min(rstart, lim)
                continue
            n = min((r.vcn + r.length) * cs, lim) - pos
            if r.lcn is None:
                got = [(None, 0, n)]
            else:
                host = r.lcn * cs + (pos - rstart)
                if host + n > self.volume.size:
                    got = None
                elif pieces:
                    got = self.volume.host_pieces(host, n)
                else:
                    got = self.volume.host_ranges(host, n)
                if got is None:
                    if not pieces:
                        return None
                    got = [(NOT_STORED, 0, n)]
            join_host_ranges(out, got)
            pos += n
            i += 1
        if pos < end:
            join_host_ranges(out, [(None, 0, end - pos)])
        return out

    def _fill(self, offset: int, mv: memoryview, zeroed: bool) -> None:
        """Copy stored bytes of [offset, offset+len(mv)) into ``mv``, zeroed first if need be."""
        if not zeroed:
            mv[:] = bytes(len(mv))
        end = min(offset + len(mv), self.initialized)
        pos = offset
        i = max(0, bisect.bisect_right(self.starts, pos) - 1)
        cs = self.cs
        vsize = self.volume.size
        while pos < end and i < len(self.runs):
            r = self.runs[i]
            rstart = r.vcn * cs
            rend = rstart + r.length * cs
            if pos < rstart:
                pos = rstart  # a gap the runlist does not cover: zeros
                continue
            if pos >= rend:
                i += 1
                continue
            n = min(end, rend) - pos
            if n <= 0:
                break
            if r.lcn is not None:
                host = r.lcn * cs + (pos - rstart)
                if host + n > vsize:
                    raise CorruptImage(
                        f"run at cluster {r.lcn} goes past the end of the volume",
                        path=self.volume.name,
                        structure="runlist",
                        offset=host,
                    )
                self.volume.readinto(host, mv[pos - offset : pos - offset + n])
            pos += n
            i += 1


def runs_clusters(runs: list[Run]) -> int:
    """Allocated (non-sparse) clusters in a runlist."""
    return sum(r.length for r in runs if r.lcn is not None)
