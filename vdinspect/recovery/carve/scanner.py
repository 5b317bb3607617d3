"""The carving scan: read the searched ranges in large sequential chunks, find aligned
magics with numpy, let each signature's validator find the file's true end, and keep the
candidates as rows, within caps on rows, validation reads and time."""

from __future__ import annotations

import bisect
import time
from collections import Counter
from dataclasses import dataclass, field

from ...errors import VDInspectError
from ...findings import Findings
from ...io import ByteSource
from ...io.mapped import MappedSource
from ...progress import Progress, reporter
from .reader import OutOfBudget, Reader
from .registry import Matcher, Signature, Types, keeps

CHUNK = 8 << 20  # bytes read at a time while searching
MAX_PER_TYPE = 10_000  # rows kept for one type; the rest are counted in a finding
MAX_TOTAL = 100_000  # rows kept in all
#: bytes validators may read beyond the searched bytes (scaled by them), so a disk full
#: of fake headers costs a bounded multiple of one pass
VALIDATION_FACTOR, VALIDATION_SLACK = 4, 256 << 20


def pieces_source(base: ByteSource, pieces: list[tuple[int, int, int]], name: str
                  ) -> MappedSource:
    """Pieces of a volume read back to back (its free ranges): ``pieces`` are (start here,
    offset in ``base``, length), in order and gap-free here; the io layer's mapped source
    reads them and maps the volume's damaged ranges into them."""
    size = pieces[-1][0] + pieces[-1][2] if pieces else 0
    return MappedSource(base, size, [s for s, _o, _n in pieces],
                        [s + n for s, _o, n in pieces], [o for _s, o, _n in pieces],
                        name=name)


@dataclass
class Space:
    """What a scan searches. ``source`` is what validators read (the disk, or a volume's
    free ranges one after another); ``search`` the (start, length) ranges of it whose
    aligned blocks may start a file; ``pieces`` maps the source back to the volume as
    (start in source, offset in volume, length) — empty when they are the same."""

    source: ByteSource
    search: list[tuple[int, int]]
    align: int = 512
    pieces: list[tuple[int, int, int]] = field(default_factory=list)
    base: ByteSource | None = None  # the volume the pieces are of

    def __post_init__(self) -> None:
        self.starts = [p[0] for p in self.pieces]

    def origin(self, pos: int) -> int:
        """The volume offset of source offset ``pos``."""
        if not self.pieces:
            return pos
        i = max(0, bisect.bisect_right(self.starts, pos) - 1)
        s, o, _n = self.pieces[i]
        return o + pos - s

    def fragmented(self, pos: int, length: int) -> bool | None:
        """Whether ``[pos, pos+length)`` of the source is not one run of the volume (None
        when the source is the volume itself: a carve there cannot tell)."""
        if not self.pieces:
            return None
        i = max(0, bisect.bisect_right(self.starts, pos) - 1)
        j = max(0, bisect.bisect_right(self.starts, pos + max(length, 1) - 1) - 1)
        return any(self.pieces[k][1] + self.pieces[k][2] != self.pieces[k + 1][1]
                   for k in range(i, j))


@dataclass
class Candidate:
    """One carved file: its row, and where its bytes are in the searched source."""

    row: dict
    at: int


def scan(space: Space, sigs: tuple[Signature, ...], report: Findings, *,
         budget: float | None = None, progress: Progress = None,
         max_per_type: int = MAX_PER_TYPE, max_total: int = MAX_TOTAL,
         types: Types = None) -> list[Candidate]:
    """Candidates in ``space`` (rows ``offset, length, type, validated, fragmented, note``);
    what was not examined (time budget, caps, unreadable ranges) becomes a finding.
    ``types`` (as given to ``carve``) keeps only the rows of the types asked for."""
    total = sum(n for _a, n in space.search)
    reader = Reader(space.source, VALIDATION_FACTOR * total + VALIDATION_SLACK)
    matcher = Matcher(sigs, space.align)
    report_fn = reporter(progress, total)
    out: list[Candidate] = []
    kept: Counter[str] = Counter()
    hidden: Counter[str] = Counter()
    unexamined = 0
    skip_until = 0
    done = 0
    t0 = time.monotonic()
    buf = bytearray(CHUNK)
    for a, n in space.search:
        pos = -(-a // space.align) * space.align
        end = a + n
        while pos < end:
            if budget is not None and time.monotonic() - t0 > budget:
                left = total - done
                report.finding("warning", "carve", space.origin(pos), f"time budget of "
                               f"{budget} s spent: {left} bytes were not searched")
                return _finish(out, report, (hidden, max_per_type, max_total), unexamined,
                               report_fn, done, total)
            m = min(CHUNK, end - pos)
            m -= m % space.align
            if m == 0:
                break
            view = memoryview(buf)[:m]
            try:
                space.source.readinto(pos, view)
            except VDInspectError as e:
                report.finding("error", "carve", space.origin(pos),
                               f"{m} bytes could not be read and were not searched: {e}")
                pos += m
                done += m
                continue
            for p, sig in matcher.hits(view, pos):
                if p < skip_until:
                    continue
                if reader.used > reader.budget:
                    unexamined += 1
                    continue
                try:
                    f = sig.validate(reader, p, min(sig.max_size, space.source.size - p))
                except OutOfBudget:
                    unexamined += 1
                    continue
                except VDInspectError as e:
                    report.finding("error", "carve", space.origin(p),
                                   f"{sig.name} candidate unreadable: {e}")
                    continue
                if f is None:
                    continue
                room = space.source.size - p
                if not 0 < f.length <= room:  # a validator's safety net: never past the end
                    f.length, f.validated = max(1, min(f.length, room)), False
                    f.note = f.note or "runs past the end of the searched space"
                if f.validated:  # what lies inside a whole file is not looked at again
                    skip_until = p + f.length
                if not keeps(types, sig, f.type):
                    continue
                if kept[f.type] >= max_per_type or len(out) >= max_total:
                    hidden[f.type] += 1
                    continue
                kept[f.type] += 1
                row = dict(offset=space.origin(p), length=f.length, type=f.type,
                           validated=f.validated, fragmented=space.fragmented(p, f.length),
                           note=f.note or None)
                out.append(Candidate(row, p))
            pos += m
            done += m
            if report_fn:
                report_fn(done, total)
    return _finish(out, report, (hidden, max_per_type, max_total), unexamined,
                               report_fn, done, total)


def _finish(out, report: Findings, caps: tuple, unexamined: int, report_fn, done: int,
            total: int) -> list[Candidate]:
    hidden, per_type, in_all = caps
    for kind, n in sorted(hidden.items()):
        report.finding("warning", "carve", None, f"{n} more {kind} candidates not shown "
                       f"(at most {per_type} a type and {in_all} in all are kept)")
    if unexamined:
        report.finding("warning", "carve", None, f"{unexamined} candidates were not examined: "
                       "the validators' read budget was spent (a disk full of fake headers?)")
    if report_fn and done < total:
        report_fn(total, total)
    return out
