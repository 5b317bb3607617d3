"""Deleted files, $OrphanFiles and records that cannot be used.

A deleted file keeps its MFT record until it is reused; its content is recoverable while
none of its clusters is allocated again ($Bitmap). Files whose parent directory is gone
are listed under ``/$OrphanFiles`` as The Sleuth Kit does. A name a directory index lists
for an unusable record is still listed, from what the index keeps, so that listings and
extraction reports name what was lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...errors import CorruptImage
from ...io import ByteSource, MemorySource
from ..base import DIR, FILE, Entry
from .attributes import FileNameAttr, filetime
from .mft import AT_DATA, RecordError
from .runlist import RunlistError, decode_runlist

if TYPE_CHECKING:
    from .catalog import Info
    from .fs import NTFS

ORPHANS = "$OrphanFiles"
ORPHANS_KEY = (None, ORPHANS)
UNUSABLE = "unusable"  # third member of the key of an entry whose record is unusable
SLACK = "slack"  # ... of a name from index slack whose record was reused
RUNS_DAMAGED = 0x10000  # our mark in Info.data flags: the runlist could not be decoded
BITMAP_RECORD = 6  # $Bitmap


def recoverable(fs: NTFS, info: Info) -> bool:
    """Whether a deleted file's clusters are all still free in the volume's $Bitmap."""
    if any(d[3] & RUNS_DAMAGED for d in info.data):
        return False
    if not info.runs:
        return True
    bm = fs.volume_bitmap()
    if bm is None:
        return False
    for lcn, length in info.runs:
        a, b = lcn // 8, (lcn + length + 7) // 8
        if b > bm.size:
            return False
        bits = np.unpackbits(np.frombuffer(bm.read(a, b - a), dtype=np.uint8), bitorder="little")
        lo = lcn - a * 8
        if bits[lo : lo + length].any():
            return False
    return True


def load_volume_bitmap(fs: NTFS) -> ByteSource:
    """$Bitmap's $DATA; when it cannot be read, or marks free clusters the system files
    ($MFT, $Boot, $Bitmap, ...: records 0-11) use, the cluster use rebuilt from the
    runlists of every in-use record (as chkdsk rebuilds it), with a finding."""
    try:
        f = fs.file(BITMAP_RECORD)
        s = f.streams(AT_DATA)[""]
        src = fs.stream_source(f, s, "$Bitmap")
        lost = sum(n for _a, n in src.damaged_ranges())
        why = f"{lost} bytes unreadable" if lost else _contradiction(fs, src)
    except (RecordError, CorruptImage, KeyError) as e:
        why, src = f"unreadable: {e}", None
    if not why:
        return src
    try:
        derived, records = derived_bitmap(fs)
    except CorruptImage as e:  # strict mode: a record on the way is damaged
        fs.finding("error", "$Bitmap", fs.record_offset(BITMAP_RECORD),
                   f"{why}; cluster use could not be rebuilt either: {e.detail}")
        return MemorySource(b"")
    fs.finding("error", "$Bitmap", fs.record_offset(BITMAP_RECORD),
               f"{why}: cluster use rebuilt from the runlists of the {records} MFT records "
               "in use (as chkdsk rebuilds $Bitmap); recoverable and free space follow it")
    return MemorySource(derived)


SYSTEM_RECORDS = 12  # $MFT .. $Extend: their clusters are in use on any volume


def _runs(fs: NTFS, f) -> list[tuple[int, int]]:
    """(lcn, clusters) of every allocated run of a file's non-resident attributes."""
    out = []
    for a in f.attrs:
        if not a.resident and a.mapping_pairs:
            try:
                got = decode_runlist(a.mapping_pairs, a.lowest_vcn, fs.clusters)
            except RunlistError:
                continue
            out += [(r.lcn, r.length) for r in got if r.lcn is not None]
    return out


def _contradiction(fs: NTFS, bm: ByteSource) -> str | None:
    """Why a readable $Bitmap cannot be right: it marks free a system file's cluster."""
    for n in range(SYSTEM_RECORDS):
        f = fs.file_or_none(n)
        if f is None or not f.in_use:
            continue
        for lcn, length in _runs(fs, f):
            a, b = lcn // 8, (lcn + length + 7) // 8
            if b > bm.size:
                return f"too short for the clusters of MFT record {n}"
            bits = np.unpackbits(np.frombuffer(bm.read(a, b - a), dtype=np.uint8),
                                 bitorder="little")
            if not bits[lcn - a * 8:lcn - a * 8 + length].all():
                return (f"marks free clusters of MFT record {n} (from LCN {lcn}), which are "
                        "in use")
    return None


def derived_bitmap(fs: NTFS) -> tuple[bytes, int]:
    """$Bitmap as chkdsk would rebuild it: a bit set for every cluster a non-resident
    attribute of an in-use record maps; and how many records were read."""
    out = np.zeros(-(-fs.clusters // 8), dtype=np.uint8)
    records = 0
    for n, info in fs.catalog().infos.items():
        if not info.in_use:
            continue
        try:
            f = fs.file(n)
        except (RecordError, CorruptImage):
            continue  # named in check() by the catalog
        records += 1
        for lcn, length in _runs(fs, f):
            end = min(lcn + length, fs.clusters)
            a, b = -(-lcn // 8), end // 8  # the whole bytes of the run
            if a < b:
                out[a:b] = 0xFF
            for c in [*range(lcn, min(end, a * 8)), *range(max(b * 8, lcn), end)]:
                out[c >> 3] |= 1 << (c & 7)
    if fs.clusters % 8:  # the bits past the last cluster read as in use (mkntfs sets them)
        out[-1] |= 0xFF & ~((1 << (fs.clusters % 8)) - 1)
    return out.tobytes(), records


def orphan_dir() -> Entry:
    """The virtual ``/$OrphanFiles`` directory."""
    return Entry(
        name=ORPHANS,
        kind=DIR,
        size=0,
        key=ORPHANS_KEY,
        extra=dict(stream=None, tsk_addr=None),
    )


NOT_IN_INDEX = ("not in its directory's index (damaged or incomplete): placed through its "
                "$FILE_NAME parent reference")


def orphan_note(fn: FileNameAttr | None) -> str:
    """Why a record is listed under ``/$OrphanFiles``."""
    if fn is None:
        return "no $FILE_NAME left: its name and directory are unknown"
    return (f"its parent directory (MFT record {fn.parent}) is gone, reused or not a "
            "directory")


def name_only_entry(ref: int, fn: FileNameAttr, tag: str, note: str, *, deleted: bool = False,
                    found_by: str = "index") -> Entry:
    """A row known only from an index key (name, size, times): its record is unusable
    (``tag`` UNUSABLE) or was reused (``tag`` SLACK); its content cannot be read."""
    times = [filetime(t) for t in (fn.created, fn.modified, fn.accessed, fn.changed)]
    return Entry(
        name=fn.name,
        kind=DIR if fn.is_dir else FILE,
        size=0 if fn.is_dir else fn.data_size,
        created=times[0],
        modified=times[1],
        accessed=times[2],
        changed=times[3],
        inode=ref,
        deleted=deleted,
        found_by=found_by,
        note=note,
        key=(ref, None, tag),
        raw=fn,
        extra=dict(stream=None),
    )


def unusable_entry(ref: int, fn: FileNameAttr) -> Entry:
    """A name an index lists for a record that cannot be used: what the index keeps."""
    return name_only_entry(ref, fn, UNUSABLE, f"MFT record {ref} is unusable: listed from "
                           "its directory's index; its content cannot be read")


def name_only(entry: Entry) -> bool:
    """Whether an entry is known only from an index key (no record to read or list)."""
    key = entry.key
    return isinstance(key, tuple) and len(key) == 3 and key[2] in (UNUSABLE, SLACK)


def refuse_unusable(fs: NTFS, entry: Entry) -> None:
    """Raise CorruptImage for an entry known only from an index key (no usable record)."""
    if not name_only(entry):
        return
    ref = entry.key[0]
    if entry.key[2] == SLACK:
        why = ("its name survives only in its directory's index slack and its MFT record "
               "was reused: the content is gone")
    else:
        why = ("the MFT record is unusable; only its name, size and times are known (from "
               "the directory index)")
    fs.fail(CorruptImage, f"{entry.path or entry.name}: {why}", f"MFT record {ref}",
            fs.record_offset(ref))
