"""A file's bytes from its mapped runs on a volume: what ext extents, XFS extent maps and
similar block maps become once decoded. Runs read from the device, holes read as zeros,
runs whose mapping was lost read as zeros and are reported by ``damaged_ranges()``."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from .sources import (
    NOT_STORED,
    ByteSource,
    FilledSource,
    HostPieces,
    HostRanges,
    damaged_through,
    join_host_ranges,
)


class MappedSource(FilledSource):
    """Exactly ``size`` bytes: ``[starts[i], ends[i])`` of the file lie at ``phys[i]`` on
    ``dev`` (byte offsets, sorted by start, not overlapping); everything else is a hole;
    ``lost`` (start, end) pairs are ranges the map says exist but could not be read."""

    def __init__(self, dev: ByteSource, size: int, starts: Sequence[int], ends: Sequence[int],
                 phys: Sequence[int], *, lost: Sequence[tuple[int, int]] = (),
                 name: str = "") -> None:
        self.dev = dev
        self.size = size
        self.name = name
        self._starts, self._ends, self._phys = list(starts), list(ends), list(phys)
        self._lost = list(lost)

    @classmethod
    def from_blocks(cls, dev: ByteSource, size: int, block_size: int, logical, count,
                    physical, state, *, data: int, damaged: int, name: str = ""
                    ) -> MappedSource:
        """From parallel numpy arrays of runs in blocks (``logical``, ``count``,
        ``physical``) and their ``state``: runs in state ``data`` are read, runs in state
        ``damaged`` are lost, any other state (unwritten, uninitialised) reads as zeros."""
        keep, bad = state == data, state == damaged
        bs = block_size
        return cls(dev, size, (logical[keep] * bs).tolist(),
                   ((logical[keep] + count[keep]) * bs).tolist(), (physical[keep] * bs).tolist(),
                   lost=list(zip((logical[bad] * bs).tolist(),
                                 ((logical[bad] + count[bad]) * bs).tolist())), name=name)

    def seek_data(self, offset: int) -> int:
        """The first offset >= ``offset`` inside a mapped run (``size`` if none): the
        extractor skips holes with it instead of reading them as zeros."""
        i = bisect.bisect_right(self._starts, offset) - 1
        if i >= 0 and self._ends[i] > offset:
            return offset
        return self._starts[i + 1] if i + 1 < len(self._starts) else self.size

    def host_ranges(self, offset: int, length: int) -> HostRanges:
        """The mapped runs through the device's host ranges, holes as zeros; None when a
        lost run (or the device) cannot say."""
        self._check_range(offset, length)
        end = offset + length
        if any(a < end and b > offset for a, b in self._lost):
            return None
        return self._host(offset, end, False)

    def host_pieces(self, offset: int, length: int) -> HostPieces:
        """As :meth:`host_ranges`, lost runs and what the device cannot say as stretches
        not stored (``NOT_STORED``): read, and reported, by the copier."""
        self._check_range(offset, length)
        return self._host(offset, offset + length, True)

    def _host(self, offset: int, end: int, pieces: bool) -> list | None:
        starts, ends, phys = self._starts, self._ends, self._phys
        lost = sorted((max(a, offset), min(b, end)) for a, b in self._lost if a < end and b > offset)
        i = max(0, bisect.bisect_right(starts, offset) - 1)
        out: list = []
        pos = offset
        while pos < end:
            if i < len(starts) and starts[i] < end and ends[i] > pos:
                a = max(starts[i], pos)
                if a > pos:
                    join_host_ranges(out, self._hole(pos, a, lost))
                b = min(ends[i], end)
                at = phys[i] + (a - starts[i])
                if at + (b - a) > self.dev.size:  # past the device: the read reports it
                    got = None
                elif pieces:
                    got = self.dev.host_pieces(at, b - a)
                else:
                    got = self.dev.host_ranges(at, b - a)
                if got is None:
                    if not pieces:
                        return None
                    got = [(NOT_STORED, 0, b - a)]
                join_host_ranges(out, got)
                pos = b
                i += 1
            elif i < len(starts) and ends[i] <= pos:
                i += 1
            else:  # a hole up to the next run or the end
                b = min(end, starts[i]) if i < len(starts) else end
                join_host_ranges(out, self._hole(pos, b, lost))
                pos = b
        return out

    @staticmethod
    def _hole(a: int, b: int, lost: list[tuple[int, int]]) -> list:
        """``[a, b)`` outside every run: zeros, but the lost runs in it not stored (read,
        so the copy reports them)."""
        out: list = []
        pos = a
        for x, y in lost:
            x, y = max(x, pos), min(y, b)
            if x >= y:
                continue
            if x > pos:
                out.append((None, 0, x - pos))
            out.append((NOT_STORED, 0, y - x))
            pos = y
        if pos < b:
            out.append((None, 0, b - pos))
        return out

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        pieces = zip(self._starts, self._phys, (e - s for s, e in zip(self._starts, self._ends)))
        out = damaged_through(self.dev, pieces, start, min(end, self.size))
        out += [(max(a, start), min(b, end)) for a, b in self._lost if a < end and b > start]
        return out

    def _fill(self, offset: int, mv: memoryview, zeroed: bool) -> None:
        """Read the mapped parts of [offset, offset+len) into ``mv``; zero the rest."""
        end = offset + len(mv)
        starts, ends, phys = self._starts, self._ends, self._phys
        i = max(0, bisect.bisect_right(starts, offset) - 1)
        n = len(starts)
        pos = offset  # everything before pos is filled
        while i < n and starts[i] < end:
            a = max(starts[i], offset)
            b = min(ends[i], end)
            if a < b:
                if a > pos and not zeroed:
                    mv[pos - offset : a - offset] = bytes(a - pos)
                self.dev.readinto(phys[i] + (a - starts[i]), mv[a - offset : b - offset])
                pos = b
            i += 1
        if pos < end and not zeroed:
            mv[pos - offset :] = bytes(end - pos)
