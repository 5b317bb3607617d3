"""The catalog: the whole MFT read once, every file's listing facts, names linked.

Listing the whole volume directory by directory would read every index and every record
at random; instead the MFT is read in large sequential chunks, fixed up with numpy, and
each ordinary record is decoded straight from its bytes (:func:`quick_info`); unusual
ones (attribute lists, extension records, damage) go the general way through
:func:`~.file.build_file`. Then every name is hung on its parent directory, live or
deleted, or on ``/$OrphanFiles`` (parent gone, or a parent-reference loop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ...errors import CorruptImage
from ...volumes.multisector import fixup_many
from .attributes import (
    IO_REPARSE_TAG_WOF,
    NS_DOS,
    NS_WIN32,
    FileNameAttr,
    Reparse,
    StdInfo,
    parse_file_name,
    parse_reparse,
    parse_std_info,
)
from .file import NtfsFile, build_file
from .mft import (
    AT_ATTRIBUTE_LIST,
    AT_DATA,
    AT_END,
    AT_FILE_NAME,
    AT_INDEX_ALLOCATION,
    AT_INDEX_ROOT,
    AT_REPARSE_POINT,
    AT_STANDARD_INFORMATION,
    ATTR_COMPRESSED,
    ATTR_FMT,
    ATTR_SPARSE,
    ATTR_TYPE,
    COMPRESSED_END,
    COMPRESSED_SIZE_AT,
    COMPRESSED_SIZE_FMT,
    FORM_AT,
    MREF_MASK,
    NONRES_FMT,
    REC_DIRECTORY,
    REC_IN_USE,
    RECORD_FMT,
    RECORD_HEAD,
    RESIDENT_END,
    RESIDENT_FMT,
    Record,
    RecordError,
    RecordFlags,
    parse_record,
)
from .mftscan import wiped
from .recordcols import plain_infos
from .recovery import RUNS_DAMAGED
from .runlist import RunlistError, decode_runlist
from .wof import ALGORITHMS, PROVIDER_FILE, parse_wof_reparse

if TYPE_CHECKING:
    from .fs import NTFS

ROOT = 5
MIRROR_RECORDS = 4  # $MFTMirr holds at least records 0-3
SCAN_CHUNK = 4 << 20  # bytes of MFT read at once by the sequential scan


@dataclass(slots=True, eq=False)
class Info(RecordFlags):
    """What the listing needs of one file, kept for the whole volume by the MFT scan."""

    number: int
    sequence: int
    flags: int
    link_count: int
    si: StdInfo | None
    names: list[FileNameAttr]
    data: list[tuple[str, int, int, int, int]]  # (stream name, size, allocated, flags, id)
    i30_id: int | None
    reparse: Reparse | None
    wof: str | None  # WOF algorithm name
    runs: list[tuple[int, int]] | None  # allocated (lcn, clusters) of all $DATA (free files)
    index_blocks: bool = False  # has a non-resident $INDEX_ALLOCATION (INDX blocks, slack)


@dataclass
class Catalog:
    """The MFT read once: per-record info, directory children, deleted files, orphans."""

    infos: dict[int, Info]
    live: dict[int, list[tuple[Info, FileNameAttr]]]
    dead: dict[int, list[tuple[Info, FileNameAttr]]]
    orphans: list[tuple[Info, FileNameAttr | None]]
    #: in-use-looking records that could not be used (fixups, parse errors, unreadable)
    unusable: set[int] = field(default_factory=set)
    #: directories stood in for (salvage: the root when its record is unusable)
    virtual: set[int] = field(default_factory=set)


def scan(fs: NTFS) -> Catalog:
    """The MFT read once, in large sequential chunks: every record's Info, linked."""
    rs = fs.record_size
    per = max(1, SCAN_CHUNK // rs)
    infos: dict[int, Info] = {}
    unusable: set[int] = set()
    pending: dict[int, Record] = {}  # records that need merging (attr lists, extensions)
    n = 0
    while n < fs.nrecords:
        count = min(per, fs.nrecords - n)
        try:
            chunk = fs.mft.read(n * rs, count * rs)
        except CorruptImage as e:
            fs.finding(
                "error",
                "$MFT",
                fs.record_offset(n),
                f"records {n}..{n + count - 1} unreadable: {e}",
            )
            unusable.update(range(n, n + count))
            n += count
            continue
        arr, has_magic, ok = fixup_many(chunk, rs)
        plain = plain_infos(arr, has_magic & ok, n, Info)  # most records, column-wise
        # the first records are also in $MFTMirr: a wiped start of $MFT is read there
        first = [i for i in range(max(0, min(count, MIRROR_RECORDS - n))) if not has_magic[i]]
        for i in first + np.nonzero(has_magic)[0].tolist():
            num = n + i
            if not ok[i] or not has_magic[i]:
                rec = _mirror_record(fs, num)
                if rec is None:
                    fs.finding(
                        "error",
                        f"MFT record {num}",
                        fs.record_offset(num),
                        "update sequence fixup mismatch; record skipped",
                    )
                    unusable.add(num)
                    continue
            else:
                quick = plain.get(i)
                if quick is None:
                    quick = quick_info(arr[i].data, num, fs.clusters)
                if quick is not None:
                    infos[num] = quick
                    continue
                try:
                    rec = parse_record(arr[i].data, num)
                except RecordError as e:
                    fs.finding(
                        "error", f"MFT record {num}", fs.record_offset(num), f"skipped: {e}"
                    )
                    unusable.add(num)
                    continue
            if rec.base_ref & MREF_MASK and rec.base != num:
                pending[num] = rec
                continue
            if any(a.type == AT_ATTRIBUTE_LIST for a in rec.attrs):
                pending[num] = rec
                continue
            info = file_info(build_file(rec, fs.record, fs.attribute_value), fs.clusters)
            infos[num] = info
        n += count
    for num in sorted(set(fs.rescued) - set(infos) - set(pending)):
        try:  # records the $MFT map lost, found by scanning the volume
            rec = fs.record(num)
        except (RecordError, CorruptImage) as e:
            fs.finding("error", f"MFT record {num}", fs.record_offset(num), f"skipped: {e}")
            unusable.add(num)
            continue
        if (rec.base_ref & MREF_MASK and rec.base != num) or any(
            a.type == AT_ATTRIBUTE_LIST for a in rec.attrs
        ):
            pending[num] = rec
        else:
            infos[num] = file_info(build_file(rec, fs.record, fs.attribute_value), fs.clusters)

    def get(m: int) -> Record:
        r = pending.get(m)
        return r if r is not None else fs.record(m)

    for num, rec in pending.items():
        if rec.base_ref & MREF_MASK and rec.base != num:
            base = rec.base
            if base not in pending and base not in infos:
                fs.finding(
                    "warning",
                    f"MFT record {num}",
                    fs.record_offset(num),
                    f"extension record of record {base}, which is unusable",
                )
            continue
        f = build_file(rec, get, fs.attribute_value)
        for p in f.problems:  # a deleted file's extension records are often reused
            fs.finding(
                "error" if f.in_use else "info",
                f"MFT record {num}",
                fs.record_offset(num),
                p,
            )
        infos[num] = file_info(f, fs.clusters)
    gone = [m for m in wiped(fs, set(infos) | set(pending)) if m not in unusable]
    if gone:
        fs.finding("error", "$MFT", fs.record_offset(gone[0]),
                   f"{len(gone)} records marked in use in $MFT's $BITMAP hold no FILE record "
                   f"(wiped or unreadable): {', '.join(map(str, gone[:20]))}"
                   + (" ..." if len(gone) > 20 else ""))
        unusable.update(gone)
    virtual = set()
    root = infos.get(ROOT)
    if (root is None or not root.is_dir or not root.in_use) and not fs.strict:
        # salvage: a stand-in root, so that its files keep their paths (found through
        # their parent references) instead of all going to /$OrphanFiles
        fs.finding("error", f"MFT record {ROOT}", fs.record_offset(ROOT),
                   "the root directory's record is unusable: its files are placed through "
                   "their $FILE_NAME parent references")
        infos[ROOT] = Info(ROOT, ROOT, REC_IN_USE | REC_DIRECTORY, 1, None, [], [], None, None,
                           None, None)
        virtual.add(ROOT)
    catalog = _link(fs, infos)
    catalog.unusable = unusable - set(infos)
    catalog.virtual = virtual
    return catalog


def _mirror_record(fs: NTFS, n: int) -> Record | None:
    if n >= MIRROR_RECORDS or fs.strict:
        return None
    try:
        return fs.record(n)
    except (RecordError, CorruptImage):
        return None


def quick_info(buf: bytes | memoryview, num: int, clusters: int) -> Info | None:
    """The scan's fast path: Info straight from a fixed-up record's bytes.

    Gives exactly what ``file_info(build_file(...))`` gives for an ordinary base record;
    anything unusual (attribute lists, extension records, pieces, damage) returns None
    and goes the general way, which also reports the problems.
    """
    (_sig, _uo, _uc, _lsn, seq, links, first, flags, used, _al, base_ref, _nx) = (
        RECORD_FMT.unpack_from(buf, 0)
    )
    size = len(buf)
    if base_ref & MREF_MASK or first < RECORD_HEAD or first & 7 or used > size or used < first:
        return None
    in_use = flags & REC_IN_USE
    si = None
    names: list[FileNameAttr] = []
    data: list[tuple[str, int, int, int, int]] = []
    i30 = reparse = None
    blocks = False
    runs: list[tuple[int, int]] | None = None
    off = first
    try:
        while off + 4 <= used:
            atype = ATTR_TYPE(buf, off)[0]
            if atype == AT_END:
                break
            if off + FORM_AT > used:
                return None
            atype, length, nonres, nlen, noff, aflags, inst = ATTR_FMT.unpack_from(buf, off)
            if length < FORM_AT or length & 7 or off + length > used or atype == AT_ATTRIBUTE_LIST:
                return None
            name = ""
            if nlen:
                if noff + 2 * nlen > length:
                    return None
                if atype in (AT_DATA, AT_INDEX_ROOT):
                    name = bytes(buf[off + noff : off + noff + 2 * nlen]).decode(
                        "utf-16-le", "replace"
                    )
            if nonres == 0:
                if length < RESIDENT_END:
                    return None
                vlen, voff, _rflags = RESIDENT_FMT.unpack_from(buf, off + FORM_AT)
                if voff + vlen > length:
                    return None
                v = off + voff
                if atype == AT_STANDARD_INFORMATION:
                    if si is None:
                        si = parse_std_info(bytes(buf[v : v + vlen]))
                elif atype == AT_FILE_NAME:
                    names.append(parse_file_name(buf[v : v + vlen]))
                elif atype == AT_DATA:
                    data.append((name, vlen, 0, aflags, inst))
                elif atype == AT_INDEX_ROOT:
                    if name == "$I30" and i30 is None:
                        i30 = inst
                elif atype == AT_REPARSE_POINT:
                    if reparse is not None:
                        return None
                    reparse = parse_reparse(bytes(buf[v : v + vlen]))
            else:
                if length < COMPRESSED_SIZE_AT:
                    return None
                lvcn, hvcn, mp_off, cu, alloc, dsize, isize = NONRES_FMT.unpack_from(
                    buf, off + FORM_AT
                )
                if (
                    max(alloc, dsize, isize) >= 1 << 62
                    or dsize > alloc
                    or isize > alloc
                    or lvcn != 0
                    or hvcn >= 1 << 62
                    or hvcn < -1
                    or mp_off < COMPRESSED_SIZE_AT
                    or mp_off > length
                ):
                    return None
                if atype == AT_REPARSE_POINT:
                    return None
                blocks = blocks or atype == AT_INDEX_ALLOCATION
                if atype == AT_DATA:
                    allocated = alloc
                    if (
                        (cu or aflags & (ATTR_COMPRESSED | ATTR_SPARSE))
                        and length >= COMPRESSED_END
                        and aflags & (ATTR_COMPRESSED | ATTR_SPARSE)
                    ):
                        (allocated,) = COMPRESSED_SIZE_FMT.unpack_from(
                            buf, off + COMPRESSED_SIZE_AT
                        )
                    if not in_use:
                        try:
                            got = decode_runlist(
                                bytes(buf[off + mp_off : off + length]), 0, clusters
                            )
                            runs = (runs or []) + [
                                (r.lcn, r.length) for r in got if r.lcn is not None
                            ]
                        except RunlistError:
                            return None
                    data.append((name, dsize, allocated, aflags, inst))
            off += length
    except RecordError:
        return None
    if len({d[0] for d in data}) != len(data):
        return None
    data.sort(key=lambda d: d[0])
    return Info(
        num, seq, flags, links, si, names, data, i30, reparse, wof_name(reparse), runs, blocks
    )


def file_info(f: NtfsFile, clusters: int) -> Info:
    """What the listing needs of a file built from its records."""
    data = []
    runs = None
    for s in f.streams(AT_DATA).values():
        data.append((s.name, s.size, s.allocated, s.flags, s.instance))
        if not f.in_use and not s.resident:
            try:
                got = []
                for a in s.pieces:
                    got += decode_runlist(a.mapping_pairs, a.lowest_vcn, clusters)
                runs = (runs or []) + [(r.lcn, r.length) for r in got if r.lcn is not None]
            except RunlistError:
                runs = None
                data[-1] = (s.name, s.size, s.allocated, s.flags | RUNS_DAMAGED, s.instance)
    data.sort(key=lambda d: d[0])
    i30 = next(
        (a.instance for a in f.attrs if a.type == AT_INDEX_ROOT and a.name == "$I30"), None
    )
    wof = wof_name(f.reparse)
    return Info(
        f.number,
        f.sequence,
        f.flags,
        f.link_count,
        f.si,
        f.names,
        data,
        i30,
        f.reparse,
        wof,
        runs,
        any(a.type == AT_INDEX_ALLOCATION and not a.resident for a in f.attrs),
    )


def _link(fs: NTFS, infos: dict[int, Info]) -> Catalog:
    """Hang every name on its parent directory (live or deleted), or on the orphans."""
    live: dict[int, list] = {}
    dead: dict[int, list] = {}
    orphans: list = []
    for num, info in infos.items():
        if num == ROOT:
            continue
        names = display_names(info.names)
        if not names:
            if not info.in_use and info.si is not None:  # TSK's OrphanFile-N
                orphans.append((info, None))
            continue
        for fn in names:
            parent = infos.get(fn.parent)
            ok = parent is not None and parent.is_dir and fn.parent != num
            if ok and fn.parent_seq:
                if parent.sequence != fn.parent_seq and not (
                    not info.in_use
                    and not parent.in_use
                    and parent.sequence == (fn.parent_seq + 1) & 0xFFFF
                ):
                    ok = False
            if ok and info.in_use and not parent.in_use:
                ok = False
            if not ok:
                if fn.parent == num and num != ROOT:
                    fs.finding(
                        "error",
                        f"MFT record {num}",
                        fs.record_offset(num),
                        f"{fn.name!r} names itself as its parent directory",
                    )
                orphans.append((info, fn))
            elif info.in_use:
                live.setdefault(fn.parent, []).append((info, fn))
            else:
                dead.setdefault(fn.parent, []).append((info, fn))
    # names whose parent chain never reaches the root: parent-reference loops
    # (an orphaned directory's own children stay under it: /$OrphanFiles/dir/file)
    tops = [ROOT] + [info.number for info, _fn in orphans if info.is_dir]
    reached = set(tops)
    todo = list(tops)
    while todo:
        d = todo.pop()
        for group in (live.get(d, ()), dead.get(d, ())):
            for info, _fn in group:
                if info.is_dir and info.number not in reached:
                    reached.add(info.number)
                    todo.append(info.number)
    for table in (live, dead):
        for parent in [p for p in table if p not in reached]:
            for info, fn in table.pop(parent):
                fs.finding(
                    "error",
                    f"MFT record {info.number}",
                    fs.record_offset(info.number),
                    f"{fn.name!r}: its parent directories never reach the root "
                    f"(parent reference loop through record {parent})",
                )
                orphans.append((info, fn))
    orphans.sort(key=lambda t: t[0].number)
    return Catalog(infos, live, dead, orphans)


def wof_name(rp: Reparse | None) -> str | None:
    """The compression a WOF reparse point names (None for other reparse points)."""
    if rp is None or rp.tag != IO_REPARSE_TAG_WOF:
        return None
    try:
        provider, algo = parse_wof_reparse(rp.data)
    except ValueError:
        return "?"
    return (
        ALGORITHMS.get(algo, (f"algorithm {algo}", 0))[0]
        if provider == PROVIDER_FILE
        else f"provider {provider}"
    )


def display_names(names: list[FileNameAttr]) -> list[FileNameAttr]:
    """The names Windows shows, per parent: DOS-only names only when nothing else exists."""
    if len(names) == 1:  # (most files: one name, shown whatever its namespace)
        return names[:]
    by_parent: dict[int, list[FileNameAttr]] = {}
    for fn in names:
        by_parent.setdefault(fn.parent, []).append(fn)
    out = []
    for group in by_parent.values():
        long = [fn for fn in group if fn.namespace != NS_DOS]
        out += long if long else group[:1]
    return out


def record_fn(info: Info, fn: FileNameAttr) -> FileNameAttr:
    """The record's own $FILE_NAME for an index key (index copies of times go stale)."""
    for x in info.names:
        if x.name == fn.name and x.parent == fn.parent:
            return x
    return fn


def short_name(info: Info, fn: FileNameAttr | None) -> str | None:
    """The DOS 8.3 name that goes with ``fn`` (same parent), if the file has one."""
    if fn is None or fn.namespace != NS_WIN32:
        return None
    for x in info.names:
        if x.namespace == NS_DOS and x.parent == fn.parent:
            return x.name
    return None
