"""MFT records the $MFT runlist no longer maps, found by scanning the volume.

When record 0's runlist is damaged (cut short, or pointing past the volume), the records
it no longer maps are still on the disk. NTFS 3.1 stores each record's own number in its
header, so a scan of the volume for ``FILE`` records whose update sequence checks out
puts each one back at its number. Only the unmapped numbers are taken (a stale copy of a
mapped record is not); a copy lying in a run of records at one distance from their
numbers (a lost piece of $MFT) wins over a stray one, then the newest ($LogFile sequence
number). The scan is bounded: a volume full of fake FILE records costs at most a fixed
number of examined signatures, with a finding saying what was not examined.
"""

from __future__ import annotations

import bisect
import struct
from array import array
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from ...errors import VDInspectError
from ...layout import offset_of
from ...volumes.multisector import MultiSectorHeader, apply_fixup
from .mft import (
    AT_BITMAP,
    RECORD_FMT,
    RECORD_HEAD_31,
    RECORD_NUMBER_AT,
    RecordError,
    parse_record,
)

if TYPE_CHECKING:
    from .fs import NTFS

SCAN_CHUNK = 8 << 20  # bytes of volume read at once
MIN_HITS = 1 << 16  # FILE signatures examined outside $MFT, at least, plus
HITS_PER_LOST = 2  # this many per lost record,
MAX_HITS = 1 << 22  # and never more (24 bytes kept per candidate: 96 MiB at most)
MAGIC = int.from_bytes(b"FILE", "little")
_USA_AT = offset_of(MultiSectorHeader, "usa_ofs")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


def unmapped(fs: NTFS) -> list[tuple[int, int]]:
    """[first, end) ranges of record numbers the $MFT map does not put inside the volume."""
    rs, cs = fs.record_size, fs.cluster_size
    good = sorted(
        (r.vcn * cs, (r.vcn + r.length) * cs)
        for r in fs.mft.runs
        if r.lcn is not None and (r.lcn + r.length) * cs <= fs.source.size
    )
    out: list[tuple[int, int]] = []
    pos = 0
    end = fs.nrecords * rs
    for a, b in good + [(end, end)]:
        if a > pos:  # bytes [pos, a) unmapped: every record touching them
            first, last = pos // rs, min(fs.nrecords, -(-a // rs))
            if out and out[-1][1] >= first:
                out[-1] = (out[-1][0], max(out[-1][1], last))
            elif last > first:
                out.append((first, last))
        pos = max(pos, b)
    return out


def rescue(fs: NTFS) -> dict[int, int]:
    """Record number -> volume offset of FILE records found for the unmapped numbers."""
    holes = unmapped(fs)
    if not holes:
        return {}
    lost = sum(b - a for a, b in holes)
    starts = [a for a, _b in holes]
    rs, cs = fs.record_size, fs.cluster_size
    mft_at = sorted((r.lcn * cs, (r.lcn + r.length) * cs) for r in fs.mft.runs if r.lcn is not None)
    step = min(rs, cs)
    size = fs.source.size
    cap = min(MAX_HITS, MIN_HITS + HITS_PER_LOST * lost)
    nums, lsns, offs = array("q"), array("Q"), array("q")  # the candidates, compactly
    found: dict[int, tuple[tuple[int, int], int]] = {}  # number -> ((votes, lsn), offset)
    hits = 0
    off = 0
    while off + rs <= size and hits < cap:
        n = min(SCAN_CHUNK, size - off) // step
        if n == 0:
            break
        try:
            buf = fs.source.read(off, n * step)
        except VDInspectError:
            off += n * step
            continue
        rows = np.frombuffer(buf, dtype=np.uint8).reshape(n, step)[:, :4]
        sig = np.ascontiguousarray(rows).view("<u4")[:, 0]
        for i in np.nonzero(sig == MAGIC)[0].tolist():
            pos = off + i * step
            k = bisect.bisect_right(mft_at, (pos, float("inf"))) - 1
            if k >= 0 and mft_at[k][0] <= pos < mft_at[k][1]:
                continue  # inside the mapped $MFT: read the ordinary way
            hits += 1
            if hits > cap:
                break
            got = _candidate(fs, pos, holes, starts)
            if got is not None:
                nums.append(got[0])
                lsns.append(got[1])
                offs.append(pos)
        off += n * step
    # A lost piece of $MFT is a run of records at one distance from their numbers; a
    # stray copy (a disk image stored in a file, an old volume) rarely agrees with as many.
    # Per number: the candidate whose distance most records share, then the newest.
    votes = Counter(pos - num * rs for num, pos in zip(nums, offs))
    for num, lsn, pos in zip(nums, lsns, offs):
        rank = (votes[pos - num * rs], lsn)
        if num not in found or rank > found[num][0]:
            found[num] = (rank, pos)
    where = fs.record_offset(0)
    fs.finding(
        "error",
        "$MFT",
        where,
        f"the $MFT runlist does not map {lost} of its {fs.nrecords} records; a scan of the "
        f"volume for FILE records found {len(found)} of them"
        + ("" if len(found) == lost else f" ({lost - len(found)} lost)"),
    )
    if hits > cap:
        fs.finding(
            "warning",
            "$MFT",
            where,
            f"FILE record scan stopped after {cap} signatures at volume offset {off:#x}: "
            "the rest of the volume was not examined",
        )
    return {num: pos for num, (_rank, pos) in found.items()}


def _candidate(
    fs: NTFS, pos: int, holes: list[tuple[int, int]], starts: list[int]
) -> tuple[int, int] | None:
    """(record number, LSN) of a usable NTFS 3.1 FILE record at ``pos`` whose number is
    one the $MFT map lost, else None."""
    raw = fs.read_raw(pos, fs.record_size)
    if raw is None:
        return None
    buf = bytearray(raw)
    if _U16.unpack_from(buf, _USA_AT)[0] < RECORD_HEAD_31:
        return None  # NTFS 3.0 records do not say their number
    num = _U32.unpack_from(buf, RECORD_NUMBER_AT)[0]
    k = bisect.bisect_right(starts, num) - 1
    if k < 0 or not holes[k][0] <= num < holes[k][1]:
        return None
    try:
        apply_fixup(buf, b"FILE")
        parse_record(buf, num)
    except (RecordError, ValueError):
        return None
    return num, RECORD_FMT.unpack_from(buf, 0)[3]  # (the LSN: the newest copy wins)


def wiped(fs: NTFS, present: set[int]) -> list[int]:
    """Records $MFT's own $BITMAP marks in use that are not in ``present`` (no FILE
    record there: wiped or unreadable), so that their loss is reported."""
    try:
        rec0 = fs.record(0)
        a = next((x for x in rec0.attrs if x.type == AT_BITMAP and x.name == ""), None)
        if a is None:
            return []
        raw = a.value if a.resident else fs.attribute_value(a)
    except (RecordError, VDInspectError, ValueError):
        return []
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")[: fs.nrecords]
    used = np.nonzero(bits)[0]
    if present:
        used = used[~np.isin(used, np.fromiter(present, dtype=np.int64, count=len(present)))]
    return used.tolist()
