"""From evidence to a partition set: group by start, weigh, confirm, keep what does not overlap.

Evidence for one start is combined as independent votes: confidence = 1 - prod(1 - w).
A start whose bytes the filesystem probe (:func:`vdinspect.volumes.probes.probe`, what
``partitions()`` uses) recognises as the same filesystem gains a vote, and gives the
label and UUID. The set is then chosen greedily, most confident first, so that no two
partitions overlap: a filesystem inside another partition (an LVM volume's, a disk image
stored as a file, a stale copy) loses to the one that holds it, and is counted in a
finding. A partition whose structures do not say its length (LUKS, BitLocker) runs to the
next partition found or to the end of the disk.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

from construct import ConstructError

from ...errors import VDInspectError
from ...io import ByteSource, Slice
from ...volumes import probes
from ...volumes.types import gpt_type_name, mbr_type_name
from .evidence import Evidence

MAX_ROWS = 1000  # partitions listed; a disk can hold no more real ones than that
MAX_PROBES = 4096  # starts confirmed with the filesystem probe
PROBE_WEIGHT = 0.3
CONTAINERS = frozenset({"LVM2_member"})  # chosen before the filesystems inside them

#: the probe's filesystem names by family (the evidence knows the family only for ext)
_FAMILY = {"ext2": "ext", "ext3": "ext", "ext4": "ext", "jbd": "ext",
           "fat12": "fat", "fat16": "fat", "fat32": "fat"}


def family(fstype: str | None) -> str | None:
    """The filesystem family a probe or evidence name belongs to (ext4 -> ext)."""
    return _FAMILY.get(fstype, fstype) if fstype else None


def _confidence(weights) -> float:
    p = 1.0
    for w in weights:
        p *= 1.0 - w
    return round(1.0 - p, 3)


class Candidate:
    """The evidence for one start, and what it adds up to."""

    def __init__(self, start: int, evidence: list[Evidence]) -> None:
        self.start = start
        self.evidence = evidence
        votes: dict[str, float] = defaultdict(float)
        for e in evidence:
            if e.filesystem:
                votes[family(e.filesystem)] += e.weight
        self.family = max(votes, key=votes.get) if votes else None
        used: dict[str, Evidence] = {}  # one vote per structure (two copies may repeat one)
        for e in evidence:
            if (e.table or family(e.filesystem) == self.family) and (
                    e.found_by not in used or used[e.found_by].weight < e.weight):
                used[e.found_by] = e
        self.used = list(used.values())
        tables = [e for e in self.used if e.table]
        fs = [e for e in self.used if not e.table]
        self.table = max(tables, key=lambda e: e.weight) if tables else None
        lengths = [e.length for e in fs if e.length]
        if self.table is not None:
            self.length = self.table.length
        else:
            self.length = max(lengths) if lengths else None
        self.filesystem = max(fs, key=lambda e: e.weight).filesystem if fs else None
        self.uuid = next((e.uuid for e in fs if e.uuid), None)
        self.label = None
        self.probed = False
        self.confidence = _confidence(e.weight for e in self.used)

    @property
    def end(self) -> int:
        return self.start + (self.length or 0)

    def confirm(self, disk: ByteSource, length: int) -> None:
        """Run the filesystem probe on the candidate's bytes: a match is one more vote."""
        if self.family is None or length <= 0 or self.start + length > disk.size:
            return
        try:
            info = probes.probe(Slice(disk, self.start, length))
        except (VDInspectError, ConstructError, ValueError, IndexError, OverflowError):
            return
        if info is None or family(info.type) != self.family:
            return
        self.probed = True
        self.filesystem, self.label = info.type, info.label
        self.uuid = info.uuid or self.uuid
        self.confidence = _confidence([*(e.weight for e in self.used), PROBE_WEIGHT])

    def row(self, index: int) -> dict:
        t = self.table
        scheme = t.table if t is not None else "none"
        if t is None:
            type_code, type_name = None, None
        elif t.table == "gpt":
            type_code, type_name = t.type, gpt_type_name(t.type)
        else:
            type_code, type_name = t.type, mbr_type_name(int(t.type, 16))
        found = [e.found_by for e in self.used] + (["filesystem probe"] if self.probed else [])
        return dict(index=index, scheme=scheme, type=type_code, type_name=type_name,
                    name=t.name if t is not None else None, start=self.start,
                    length=self.length, end=self.start + self.length,
                    filesystem=self.filesystem, label=self.label, uuid=self.uuid,
                    bootable=None, found_by="; ".join(found), confidence=self.confidence,
                    evidence=len(found))


class _Chosen:
    """Non-overlapping candidates kept in start order (overlap tests by bisection)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.items: list[Candidate] = []

    def room_at(self, start: int, end: int) -> int:
        """Bytes from ``start`` to the next chosen start (or ``end``); 0 if inside one."""
        i = bisect.bisect_right(self.starts, start)
        if i and self.items[i - 1].end > start:
            return 0
        return (self.starts[i] if i < len(self.starts) else end) - start

    def add(self, c: Candidate, length: int) -> bool:
        """Keep ``c`` with ``length`` if it overlaps nothing kept; False otherwise."""
        i = bisect.bisect_right(self.starts, c.start)
        if length <= 0 or (i and self.items[i - 1].end > c.start) or (
                i < len(self.starts) and self.starts[i] < c.start + length):
            return False
        c.length = length
        self.starts.insert(i, c.start)
        self.items.insert(i, c)
        return True


def combine(ctx, disk: ByteSource, evidence: list[Evidence]) -> list[dict]:
    """The partition rows the evidence supports (see the module's description)."""
    by_start: dict[int, list[Evidence]] = defaultdict(list)
    for e in evidence:
        if 0 <= e.start < disk.size:
            by_start[e.start].append(e)
    cands = [Candidate(s, ev) for s, ev in by_start.items()]
    for c in cands:
        if c.length is not None:
            c.length = min(c.length, disk.size - c.start)
    cands.sort(key=lambda c: (-c.confidence, c.start))
    for c in cands[:MAX_PROBES]:
        if ctx.out_of_time("filesystem probe", c.start):
            break
        c.confirm(disk, c.length if c.length is not None else disk.size - c.start)
    if len(cands) > MAX_PROBES:
        ctx.finding("info", "scan", None, f"{len(cands) - MAX_PROBES} less likely starts were "
                    "not confirmed with the filesystem probe")
    # a volume container (an LVM2 PV, its label CRC-checked) before what lies inside it:
    # the filesystems of its logical volumes often have more copies to vote for them
    cands.sort(key=lambda c: (-(c.family in CONTAINERS and c.confidence >= 0.5),
                              -c.confidence, c.start))
    chosen = _Chosen()
    hidden = 0
    for c in cands:  # known lengths first; open-ended ones then fill the gaps
        if c.length is not None and not chosen.add(c, c.length):
            hidden += 1
    for c in cands:
        if c.length is None and not chosen.add(c, chosen.room_at(c.start, disk.size)):
            hidden += 1
    if hidden:
        ctx.finding("info", "scan", None,
                    f"{hidden} other candidate starts overlap the partitions listed (a "
                    "filesystem inside a partition or a file, a stale copy, a backup that "
                    "did not agree) and are not listed")
    chosen = chosen.items
    if len(chosen) > MAX_ROWS:
        ctx.finding("warning", "scan", chosen[MAX_ROWS].start,
                    f"{len(chosen) - MAX_ROWS} more partitions found are not listed (only the "
                    f"first {MAX_ROWS} are): the disk may be hostile")
        chosen = chosen[:MAX_ROWS]
    return [c.row(i + 1) for i, c in enumerate(chosen)]
