"""One pass over a disk's bytes: where each signature sits, sector by sector.

Only what holds data is read: a virtual disk's ``data``/``backing`` runs (an unallocated
or zero range reads as zeros and holds no signature), in large sequential chunks. Each
chunk is viewed as a (sectors x 512) numpy array and each signature compared column-wise
at its offset inside the sector, so the cost is the reading. Bounded: at most
``max_hits`` places per signature are kept (the rest counted), and a time budget stops
the pass early; both become findings, never silence.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from ...findings import Findings
from ...io import ByteSource, Slice
from ...progress import Progress, reporter
from .structs import SECTOR, Signature

CHUNK = 8 << 20  # bytes read at a time
MAX_HITS = 4096  # places kept per signature


class Sweep(Findings):
    """The hits of ``signatures`` on ``source``: ``hits[name]`` = ordered byte offsets of the
    sectors holding that signature (the sector's start, not the magic's)."""

    def __init__(self, source: ByteSource, signatures: Sequence[Signature], *,
                 progress: Progress = None, budget: float | None = None,
                 chunk: int = CHUNK, max_hits: int = MAX_HITS) -> None:
        self.name = getattr(source, "path", None) or source.name
        self.path = self.name
        self.strict = False
        self.source = source
        self.signatures = list(signatures)
        self.hits: dict[str, list[int]] = {s.name: [] for s in self.signatures}
        self.dropped: dict[str, int] = {}
        self.read_bytes = 0
        self.complete = True
        self.chunk = max(SECTOR, chunk // SECTOR * SECTOR)
        self.max_hits = max_hits
        self._run(progress, budget)

    def ranges(self) -> list[tuple[int, int]]:
        """(start, end) of the bytes that can hold data, sector-aligned and merged: the
        allocation runs of the source, or of the disk a partition (a Slice) lies on."""
        base, src = 0, self.source
        while getattr(src, "runs", None) is None and isinstance(src, Slice):
            base, src = base + src.offset, src.source
        if getattr(src, "runs", None) is None:
            return [(0, self.source.size // SECTOR * SECTOR)] if self.source.size else []
        out: list[tuple[int, int]] = []
        for r in src.runs(base, self.source.size):
            if r.state not in ("data", "backing", "damaged"):
                continue
            a = max(0, (r.start - base) // SECTOR * SECTOR)
            b = min(-(-(r.start - base + r.length) // SECTOR) * SECTOR,
                    self.source.size // SECTOR * SECTOR)
            if out and a <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], b))
            elif b > a:
                out.append((a, b))
        return out

    def _run(self, progress: Progress, budget: float | None) -> None:
        ranges = self.ranges()
        total = sum(b - a for a, b in ranges)
        report: Callable[[int, int], None] | None = reporter(progress, total)
        deadline = None if budget is None else time.monotonic() + budget
        buf = bytearray(self.chunk)
        for a, b in ranges:
            pos = a
            while pos < b:
                if deadline is not None and time.monotonic() > deadline:
                    self.complete = False
                    self.finding("warning", "scan", pos,
                                 f"the scan stopped at byte {pos:#x} when its time budget of "
                                 f"{budget} s ran out: {self.read_bytes} of {total} bytes "
                                 "holding data were read; what lies beyond is not listed")
                    if report:
                        report(total, total)
                    return
                n = min(self.chunk, b - pos)
                mv = memoryview(buf)[:n]
                self.source.readinto(pos, mv)
                self._match(pos, np.frombuffer(buf, dtype=np.uint8, count=n))
                pos += n
                self.read_bytes += n
                if report:
                    report(self.read_bytes, total)
        if report:
            report(total, total)
        for name, n in self.dropped.items():
            self.finding("warning", f"{name} signature", None,
                         f"{n} more places holding the {name} signature were not examined "
                         f"(only the first {self.max_hits} are): the disk may be hostile or "
                         "full of copies")

    def _match(self, base: int, data: np.ndarray) -> None:
        """The sectors of ``data`` (at byte ``base``) holding each signature.

        The first two or four bytes of each magic are compared as one integer in a column
        gathered once per place (one column per distinct offset, not per signature); the
        few sectors that pass have their other bytes compared row by row."""
        n = len(data) // SECTOR
        sectors = data[: n * SECTOR].reshape(n, SECTOR)
        columns: dict[tuple[int, int], np.ndarray] = {}
        for sig in self.signatures:
            width = 4 if len(sig.magic) >= 4 else 2
            key = (sig.at, width)
            col = columns.get(key)
            if col is None:
                col = columns[key] = np.ndarray((n,), dtype=f"<u{width}", buffer=data,
                                                offset=sig.at, strides=(SECTOR,)).copy()
            idx = np.flatnonzero(col == int.from_bytes(sig.magic[:width], "little"))
            if not len(idx):
                continue
            rows = sectors[idx]
            keep = np.ones(len(idx), dtype=bool)
            for i in range(width, len(sig.magic)):
                keep &= rows[:, sig.at + i] == sig.magic[i]
            for off in sig.zero:
                keep &= rows[:, off] == 0
            for off in sig.flag:
                keep &= (rows[:, off] & 0x7F) == 0
            idx = idx[keep]
            if not len(idx):
                continue
            kept = self.hits[sig.name]
            room = self.max_hits - len(kept)
            if room < len(idx):
                self.dropped[sig.name] = self.dropped.get(sig.name, 0) + len(idx) - max(room, 0)
                idx = idx[:max(room, 0)]
            kept.extend(int(base + i * SECTOR) for i in idx)
