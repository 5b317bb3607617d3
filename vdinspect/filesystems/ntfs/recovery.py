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

if TYPE_CHECKING:
    from .catalog import Info
    from .fs import NTFS

ORPHANS = "$OrphanFiles"
ORPHANS_KEY = (None, ORPHANS)
UNUSABLE = "unusable"  # third member of the key of an entry whose record is unusable
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
    """$Bitmap's $DATA (empty, with a finding, when it cannot be read)."""
    try:
        f = fs.file(BITMAP_RECORD)
        s = f.streams(AT_DATA)[""]
        return fs.stream_source(f, s, "$Bitmap")
    except (RecordError, CorruptImage, KeyError) as e:
        fs.finding("error", "$Bitmap", fs.record_offset(BITMAP_RECORD), f"unreadable: {e}")
        return MemorySource(b"")


def orphan_dir() -> Entry:
    """The virtual ``/$OrphanFiles`` directory."""
    return Entry(
        name=ORPHANS,
        kind=DIR,
        size=0,
        key=ORPHANS_KEY,
        extra=dict(stream=None, tsk_addr=None),
    )


def unusable_entry(ref: int, fn: FileNameAttr) -> Entry:
    """A name an index lists for a record that cannot be used: what the index keeps."""
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
        key=(ref, None, UNUSABLE),
        raw=fn,
        extra=dict(stream=None, note=f"MFT record {ref} is unusable: listed from its "
                   "directory's index; its content cannot be read"),
    )


def refuse_unusable(fs: NTFS, entry: Entry) -> None:
    """Raise CorruptImage for an entry listed only from an index (its record is unusable)."""
    key = entry.key
    if isinstance(key, tuple) and len(key) == 3 and key[2] == UNUSABLE:
        fs.fail(
            CorruptImage,
            f"{entry.path or entry.name}: the MFT record is unusable; only its name, "
            "size and times are known (from the directory index)",
            f"MFT record {key[0]}",
            fs.record_offset(key[0]),
        )
