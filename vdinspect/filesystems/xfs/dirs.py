"""XFS version 2/3 directory entries: the short form (in the inode) and data blocks.

Every non-short-form directory (block, leaf, node and btree forms) keeps its entries in
data blocks at logical offsets below 32 GiB; the leaf, node and free-index blocks above
only index them, so a listing reads the data blocks alone. A block-form block ends with
``count`` 8-byte leaf entries and an 8-byte tail, which are not entries.

A removed entry becomes (part of) a free region: its first 4 bytes are overwritten by the
free tag and length, and the last 2 of the region by its tag; the low 32 bits of the inode
number and the name often survive, and are returned as deleted entries.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ...layout import field_format, offset_of
from . import structs as S

_SF_HDR = S.DIR2_SF_HDR_FMT
_SF_ENT = S.DIR2_SF_ENTRY_FMT
_DATA_ENT = S.DIR2_DATA_ENTRY_FMT
_UNUSED = S.DIR2_DATA_UNUSED_FMT
_TAIL = S.DIR2_BLOCK_TAIL_FMT
BLOCK_MAGICS = (S.XFS_DIR2_BLOCK_MAGIC, S.XFS_DIR3_BLOCK_MAGIC)
DATA_MAGICS = (S.XFS_DIR2_DATA_MAGIC, S.XFS_DIR3_DATA_MAGIC)
_FREE_HI, _FREE_LO = S.XFS_DIR2_DATA_FREE_TAG >> 8, S.XFS_DIR2_DATA_FREE_TAG & 0xFF
_NAMELEN_AT = offset_of(S.Dir2DataEntryHead, "namelen")
_TAG = field_format(S.Dir2DataUnused, "freetag")  # the u16 tag closing an entry is alike
_TAG_CODE = _TAG.format[-1]


@dataclass(slots=True)
class RawDirent:
    """One directory entry as stored: name bytes, inode number, file type (0 unknown)."""

    name: bytes
    ino: int
    ftype: int
    offset: int  # position in the directory (byte offset in the fork, or the sf offset)
    deleted: bool = False


class Dirents(Sequence):
    """A directory's raw entries kept as columns (lists: ``names``, ``inos``, ``ftypes``,
    ``offsets``, ``deleted``), as parsed; read as a sequence of :class:`RawDirent` they are
    made one by one. The bulk listing reads the columns (thousands of names a folder)."""

    __slots__ = ("names", "inos", "ftypes", "offsets", "deleted", "removed")

    def __init__(self, names: list | None = None, inos: list | None = None,
                 ftypes: list | None = None, offsets: list | None = None,
                 deleted: list | None = None) -> None:
        self.names = names if names is not None else []
        self.inos = inos if inos is not None else []
        self.ftypes = ftypes if ftypes is not None else [0] * len(self.names)
        self.offsets = offsets if offsets is not None else []
        self.deleted = deleted if deleted is not None else [False] * len(self.names)
        self.removed = any(self.deleted)  # whether any entry is a removed one

    @classmethod
    def of(cls, raws: list[RawDirent]) -> Dirents:
        """The columns of a list of RawDirents."""
        return cls([d.name for d in raws], [d.ino for d in raws], [d.ftype for d in raws],
                   [d.offset for d in raws], [d.deleted for d in raws])

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return list(self)[i]
        return RawDirent(self.names[i], self.inos[i], self.ftypes[i], self.offsets[i],
                         self.deleted[i])

    def __iter__(self) -> Iterator[RawDirent]:
        return map(RawDirent, self.names, self.inos, self.ftypes, self.offsets, self.deleted)

    def extend(self, other: Dirents) -> None:
        """Append ``other``'s entries."""
        self.names += other.names
        self.inos += other.inos
        self.ftypes += other.ftypes
        self.offsets += other.offsets
        self.deleted += other.deleted
        self.removed = self.removed or other.removed

    def without_live_copies(self) -> Dirents:
        """These entries less the removed ones that repeat a live entry (same name and
        inode: an old copy of a name still in use)."""
        if not self.removed:
            return self
        rows = list(zip(self.names, self.inos, self.deleted))
        live = {(nm, i) for nm, i, dl in rows if not dl}
        keep = [k for k, (nm, i, dl) in enumerate(rows) if not dl or (nm, i) not in live]
        return Dirents([self.names[i] for i in keep], [self.inos[i] for i in keep],
                       [self.ftypes[i] for i in keep], [self.offsets[i] for i in keep],
                       [self.deleted[i] for i in keep])


def parse_shortform(fork: bytes, size: int, ftype: bool,
                    problems: list) -> tuple[int | None, list[RawDirent]]:
    """(parent inode, entries) of a short-form directory kept in the data fork."""
    data = fork[:min(size, len(fork))]
    if len(data) < _SF_HDR.size + 4:
        problems.append((0, "short-form directory too small for its header"))
        return None, []
    count, i8count = _SF_HDR.unpack_from(data, 0)
    isz = 8 if i8count else 4
    pos = _SF_HDR.size
    if pos + isz > len(data):
        problems.append((0, "short-form directory too small for its parent"))
        return None, []
    parent = int.from_bytes(data[pos:pos + isz], "big")
    pos += isz
    out = []
    for _ in range(count):
        if pos + _SF_ENT.size > len(data):
            problems.append((pos, f"short-form entries run past the directory ({count} "
                                  "announced)"))
            break
        namelen, off = _SF_ENT.unpack_from(data, pos)
        p = pos + _SF_ENT.size
        end = p + namelen + (1 if ftype else 0) + isz
        if namelen == 0 or end > len(data):
            problems.append((pos, "short-form entry runs past the directory"))
            break
        name = data[p:p + namelen]
        ft = data[p + namelen] if ftype else 0
        ino = int.from_bytes(data[end - isz:end], "big")
        out.append(RawDirent(name, ino, ft, off))
        pos = end
    return parent, out


def entry_size(namelen: int, ftype: bool) -> int:
    """Bytes of a data-block entry: inumber, namelen, name, [ftype], tag, 8-aligned."""
    return (_DATA_ENT.size + namelen + (1 if ftype else 0) + _TAG.size + 7) & ~7


@functools.cache
def entry_formats(ftype: bool) -> tuple[struct.Struct, ...]:
    """Per name length (0-255), the whole data-block entry as one ``struct.Struct``: the
    head (structs.Dir2DataEntryHead), the name, [the file type], padding, the tag."""
    out = []
    for n in range(256):
        pad = entry_size(n, ftype) - _DATA_ENT.size - n - (1 if ftype else 0) - _TAG.size
        out.append(struct.Struct(f"{_DATA_ENT.format}{n}s{'B' if ftype else ''}{pad}x"
                                 f"{_TAG_CODE}"))
    return tuple(out)


@functools.cache
def entry_readers(ftype: bool) -> tuple[tuple, ...]:
    """Per name length (0-255), the bound ``unpack_from`` of :func:`entry_formats`' struct
    and its size in bytes (one tuple: the parse loop's one look-up per entry)."""
    return tuple((f.unpack_from, f.size) for f in entry_formats(ftype))


RUN = 64  # entries of one name length parsed together at most (one slice of the block)


def parse_data_block(block: bytes, base: int, *, v5: bool, ftype: bool, problems: list,
                     deleted: bool = True) -> Dirents:
    """Entries of one directory data block (block form or data form) at fork offset
    ``base``; problems are appended as (offset in the block, message)."""
    bs = len(block)
    if bs < S.DIR_MAGIC_FMT.size:
        problems.append((0, f"directory block of {bs} bytes: shorter than its magic"))
        return Dirents()
    (magic,) = S.DIR_MAGIC_FMT.unpack_from(block)
    if magic in BLOCK_MAGICS:
        count, _stale = _TAIL.unpack_from(block, bs - _TAIL.size)
        end = bs - _TAIL.size - count * S.DIR2_LEAF_ENTRY_SIZE
    elif magic in DATA_MAGICS:
        end = bs
    else:
        problems.append((0, f"not a directory data block (magic {magic:#x})"))
        return Dirents()
    if (magic in (S.XFS_DIR3_BLOCK_MAGIC, S.XFS_DIR3_DATA_MAGIC)) != v5:
        problems.append((0, f"directory block magic {magic:#x} is of the wrong version"))
        return Dirents()
    pos = S.DIR3_DATA_HDR_V5 if v5 else S.DIR2_DATA_HDR_V4
    if end < pos:
        problems.append((bs - _TAIL.size, "block tail's leaf count leaves no room"))
        return Dirents()
    # each entry one unpack (inumber, namelen, name, [ftype], tag), kept as it comes; the
    # columns are made from the tuples at the end (zip: C speed), the offsets from the
    # tags (an entry's tag is its offset; ``moved``: those that are not). A run of
    # entries with names of one length is read column-wise (:func:`_run_columns`).
    got: list[tuple] = []
    add = got.append
    parts: list = []  # the rows so far: lists of tuples and runs' columns, in order
    done = 0  # rows in ``parts``
    gone: list[int] = []  # row numbers of removed entries found in free regions
    moved: list[tuple[int, int]] = []  # (row number, offset) of bad-tag entries
    unused = _UNUSED.unpack_from
    readers = entry_readers(ftype)
    while pos + 8 <= end:
        if block[pos] == _FREE_HI and block[pos + 1] == _FREE_LO:  # a free region
            _tag, length = unused(block, pos)
            if length < 8 or length % 8 or pos + length > end:
                problems.append((pos, f"bad free region length {length}"))
                break
            if deleted:
                for d in _salvage(block, pos, pos + length, base, ftype):
                    gone.append(done + len(got))
                    at = d.offset - base
                    add((d.ino, 0, d.name, d.ftype, at) if ftype else (d.ino, 0, d.name, at))
            pos += length
            continue
        try:
            namelen = block[pos + _NAMELEN_AT]
        except IndexError:  # the last 8 bytes of a data-form block: no whole entry head
            namelen = 0
        unpack, size = readers[namelen]
        if namelen == 0 or pos + size > end:
            problems.append((pos, f"entry of name length {namelen} runs past the block"))
            break
        nxt = pos + size + _NAMELEN_AT  # the next entry's namelen: the same starts a run
        if namelen > 2 and nxt < end and block[nxt] == namelen:
            run = _run_columns(block, pos, end, namelen, size, ftype)
            if run is not None:
                if got:
                    parts.append(got)
                    done += len(got)
                    got = []
                    add = got.append
                parts.append(run)
                done += len(run[0])
                pos += len(run[0]) * size
                continue
        one = unpack(block, pos)
        if namelen > 2 or (one[2] != b"." and one[2] != b".."):  # not a row: "." and ".."
            if one[-1] != pos:
                problems.append((pos, "entry tag is not its offset"))
                moved.append((done + len(got), pos))
            add(one)
        elif one[-1] != pos:
            problems.append((pos, "entry tag is not its offset"))
        pos += size
    if got:
        parts.append(got)
        done += len(got)
    if not done:
        return Dirents()
    names: list = []
    inos: list = []
    fts: list = []
    offs: list = []
    for part in parts:
        if type(part) is list:  # tuples: transposed at C speed
            cols = list(zip(*part))
            names += cols[2]
            inos += cols[0]
            fts += cols[3] if ftype else [0] * len(part)
            offs += cols[-1]
        else:
            names += part[0]
            inos += part[1]
            fts += part[2]
            offs += part[3]
    for i, p in moved:
        offs[i] = p
    flags = [False] * done
    for i in gone:
        flags[i] = True
    return Dirents(names, inos, fts, [base + p for p in offs], flags)


def _run_columns(block: bytes, pos: int, end: int, namelen: int, size: int, ftype: bool
                 ) -> tuple[tuple, tuple, tuple | list, range] | None:
    """(names, inumbers, file types, offsets) of the run of entries at ``pos`` whose names
    are ``namelen`` (> 2) bytes long: the entries that follow at ``size`` bytes each, up to
    :data:`RUN`, another name length or a first byte 0xff (a free region's), read with
    one unpack (:func:`run_format`); None when fewer than two, or when a tag is not its
    offset (the entries are then read one by one, which reports it)."""
    k = min((end - pos) // size, RUN)
    last = pos + (k - 1) * size + 1
    k -= len(block[pos + _NAMELEN_AT:last + _NAMELEN_AT:size].lstrip(bytes((namelen,))))
    ff = block[pos:last:size].find(b"\xff", 0, k)
    if ff >= 0:
        k = ff
    if k < 2:
        return None
    flat = run_format(namelen, k, ftype).unpack_from(block, pos)
    w = 4 if ftype else 3  # values per entry: inumber, name, [ftype], tag
    offsets = range(pos, pos + k * size, size)
    if flat[w - 1::w] != tuple(offsets):
        return None
    return flat[1::w], flat[0::w], flat[2::w] if ftype else [0] * k, offsets


@functools.lru_cache(maxsize=1024)
def run_format(namelen: int, k: int, ftype: bool) -> struct.Struct:
    """``k`` data-block entries with ``namelen``-byte names as one ``struct.Struct``: per
    entry :func:`entry_formats`' fields with the name length skipped (it is known)."""
    one = entry_formats(ftype)[namelen].format.lstrip("<>!=@")
    head = _DATA_ENT.format.lstrip("<>!=@")  # inumber, namelen
    return struct.Struct(">" + (head[:-1] + "x" + one[len(head):]) * k)


def _salvage(block: bytes, start: int, end: int, base: int, ftype: bool) -> list[RawDirent]:
    """Removed entries still legible inside the free region [start, end)."""
    out = []
    pos = start
    while pos + _DATA_ENT.size + 1 <= end:
        # the free region's tag and length overwrote the high half of the inode number
        ino = int.from_bytes(block[pos + _UNUSED.size:pos + _NAMELEN_AT], "big")
        namelen = block[pos + _NAMELEN_AT]
        size = entry_size(namelen, ftype)
        if not namelen or pos + size > end or not ino:
            break
        name = block[pos + _DATA_ENT.size:pos + _DATA_ENT.size + namelen]
        if b"/" in name or b"\0" in name:
            break
        tag_at = pos + size - _TAG.size
        if tag_at + _TAG.size < end and _TAG.unpack_from(block, tag_at)[0] != pos:
            break  # not the tag an entry here would carry: not an old entry
        ft = block[pos + _DATA_ENT.size + namelen] if ftype else 0
        if name not in (b".", b".."):
            out.append(RawDirent(name, ino, ft, base + pos, deleted=True))
        pos += size
    return out
