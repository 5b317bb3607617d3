"""The XFS reader: the FileSystem protocol over superblock, inodes, forks and directories.

Read-only. Directories are read from their data blocks whatever their form (short form,
block, leaf, node, btree); a file's content comes from its data fork's extents (holes and
unwritten extents read as zeros). On v5 filesystems every metadata block read is checked
against its CRC-32C; a bad one raises in strict mode and is a finding in salvage mode,
where the extents a damaged bmbt block holds read as zeros (the ``damaged`` column).
Removed names still legible in directory free space are listed with ``deleted=True``;
inodes that no name reaches are listed under ``/$OrphanFiles`` as The Sleuth Kit does.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from ...errors import (
    CorruptImage,
    InvalidArgument,
    NotFound,
    NotRecognized,
    UnsupportedFeature,
    VDInspectError,
)
from ...frames import files_columns_frame
from ...io import ByteSource, LRUCache, MemorySource, Zero
from ..base import DIR, FILE, OTHER, SYMLINK, Entry, FileSystem, inode_record
from ..walk import paused_gc
from . import structs as S
from .ag import AllocationGroups
from .attrs import read_xattrs
from .bmap import DAMAGED, DATA, STATE_NAMES, ExtentMap, fork_map, fork_source
from .bulk import InodeTable
from .dirs import Dirents, RawDirent, parse_data_block, parse_shortform
from .inode import Inode, ns_to_datetime
from .intents import Intents
from .log import LogState, log_state
from .replay import LOG_NOTE, replay_into
from .superblock import Geometry, crc_ok, parse
from .table import EXTRA_DTYPES, column_entries, walk_columns

if TYPE_CHECKING:
    from collections.abc import Hashable

    import pandas as pd

_KIND = {0o100000: FILE, 0o40000: DIR, 0o120000: SYMLINK}
FT_KIND = {1: FILE, 2: DIR, 7: SYMLINK}
ORPHAN_DIR_NAME = "$OrphanFiles"
EXTRA_COLUMNS = ("mtime_ns", "atime_ns", "ctime_ns", "crtime_ns", "flags")
CHUNK = 64 << 10  # bytes read and cached at a time for inodes and small blocks


class XfsFileSystem(FileSystem):
    """An XFS volume (v4 or v5) on a ByteSource (a partition, LV or raw file)."""

    fstype = "xfs"
    case_sensitive = True

    def __init__(self, source: ByteSource, *, name: str | None = None,
                 strict: bool = True, replay_log: bool = True) -> None:
        super().__init__(source, name=name, strict=strict)
        self.dev = source
        self.lenient = 0
        self._chunks = LRUCache(256)
        self._inodes = LRUCache(4096)
        self._groups = LRUCache(256)
        self._maps = LRUCache(256)
        self._listings = LRUCache(64)
        self._orphans: list[Entry] | None = None
        self._dircache: dict | None = None
        self._flat: XfsFileSystem | None = None  # the volume as it lies (a replayed log)
        self.geo = self._open_superblock()
        g = self.geo
        self.block_size = g.block_size
        self.label = g.label or None
        self.uuid = g.uuid
        if g.raw["sb_versionnum"] & 0x4000:  # BORG: ASCII case-insensitive names
            self.case_sensitive = False
        self.inode_table: InodeTable | None = None  # during a whole-volume files()
        self.intents: Intents | None = None  # open log intents carried out (a replay)
        self.log: LogState = log_state(self)
        if self.log.dirty and replay_log and replay_into(self) is not None:
            self._groups = LRUCache(256)
            self._chunks = LRUCache(256)  # what was read before is seen through the log now
            self.geo = self._open_superblock()
        elif self.log.dirty:
            self.log.text += "; not replayed (replay_log=False): read as it lies on disk"
            self.finding("warning", "log", self.log.offset, self.log.text)
        self.ags = AllocationGroups(self)

    # --- errors and reading ---------------------------------------------------------

    def read_bytes(self, offset: int, length: int, structure: str) -> bytes:
        """Bytes of the volume, checked against its size."""
        if offset < 0 or length < 0 or offset + length > self.dev.size:
            self.fail(CorruptImage, f"{length} bytes at {offset:#x} run past the end of the "
                      f"volume ({self.dev.size:#x})", structure, offset)
        if length <= 4096 and offset // CHUNK == (offset + length - 1) // CHUNK:
            k = offset // CHUNK
            chunk = self._chunks.get(k, lambda: self.dev.read(
                k * CHUNK, min(CHUNK, self.dev.size - k * CHUNK)))
            a = offset - k * CHUNK
            return chunk[a:a + length]
        return self.dev.read(offset, length)

    def inode_group(self, offset: int, length: int) -> np.ndarray:
        """The whole inode records in ``length`` bytes at ``offset``, as an (n, inode
        size) uint8 array, cached (the bulk inode reads of ``files()``)."""
        isz = self.geo.inode_size
        return self._groups.get((offset, length), lambda: np.frombuffer(
            self.read_bytes(offset, length, "inodes"), dtype=np.uint8,
            count=length // isz * isz).reshape(-1, isz))

    def read_block(self, blk: int, structure: str, count: int = 1) -> bytes:
        """``count`` filesystem blocks from linear block ``blk``."""
        if blk < 0 or blk + count > self.geo.dblocks:
            self.fail(CorruptImage, f"block {blk} (+{count}) is outside the filesystem "
                      f"({self.geo.dblocks} blocks)", structure, blk * self.block_size)
        return self.read_bytes(blk * self.block_size, count * self.block_size, structure)

    def verify_block(self, data: bytes, crc_at: int) -> str | None:
        """Why a v5 metadata block fails its CRC-32C check, or None."""
        return None if crc_ok(data, crc_at) else "CRC-32C mismatch"

    # --- opening -------------------------------------------------------------------
    def _open_superblock(self) -> Geometry:
        if self.dev.size < 512:
            self.fail(NotRecognized, "volume too small for an XFS superblock", "superblock", 0)
        head = self.dev.read(0, min(self.dev.size, 4096))
        g, why = parse(head)
        if g is None:
            if head[S.SB_MAGIC] != S.XFS_SB_MAGIC_BYTES:
                self.fail(NotRecognized, why or "not XFS", "superblock", 0)
            self.fail(CorruptImage, why or "bad superblock", "superblock", 0)
        if len(head) < g.sector_size:
            head = self.read_bytes(0, g.sector_size, "superblock")
        if g.crc and not crc_ok(head[:g.sector_size], S.SB_CRC_OFF):
            self.problem("superblock", 0, "superblock CRC-32C mismatch")
        unknown = g.raw["sb_features_incompat"] & ~S.INCOMPAT_KNOWN if g.crc else 0
        if unknown:
            self.finding("warning", "superblock", 0,
                         f"unknown incompatible features {unknown:#x}; read as far as known")
        if g.raw["sb_inprogress"]:
            self.finding("warning", "superblock", 0, "mkfs did not finish (sb_inprogress)")
        have = self.dev.size // g.block_size
        if have < g.dblocks:
            self.problem("superblock", 0, f"the volume holds {have} of the {g.dblocks} "
                         "blocks the superblock announces (cut off)")
        return g

    # --- inodes ----------------------------------------------------------------------
    def inode(self, ino: int) -> Inode:
        """The inode ``ino`` (checked: magic, version, CRC and number on v5)."""
        return self._inodes.get(ino, lambda: self._load_inode(ino))

    def _load_inode(self, ino: int) -> Inode:
        g = self.geo
        where = f"inode {ino}"
        if not g.ino_valid(ino):
            self.fail(CorruptImage, f"inode number {ino} is outside the filesystem", where, None)
        off = g.ino_offset(ino)
        table = self.inode_table  # a whole-volume listing has read its folders' already
        raw = (table and table.record(ino)) or self.read_bytes(off, g.inode_size, where)
        rec = Inode(ino, off, raw)
        lit = S.DINODE_V3_SIZE if g.crc else S.DINODE_V2_SIZE
        why = rec.problem(v5=g.crc, forkoff_limit=g.inode_size - lit)
        if why:
            self.fail(CorruptImage, why, where, off)
        if rec.f["di_size"] >= 1 << 63:
            self.problem(where, off, f"negative file size {rec.f['di_size'] - (1 << 64)}; "
                         "read as 0")
            rec.f["di_size"] = 0
        if g.crc:
            if not crc_ok(raw, S.DINODE_CRC_OFF):
                rec.crc_bad = True
                self.problem(where, off, "inode CRC-32C mismatch")
            elif rec.f["di_ino"] != ino:
                self.problem(where, off, f"inode says it is number {rec.f['di_ino']}")
        return rec

    def fork_map(self, rec: Inode, attr: bool = False) -> ExtentMap:
        """The extent map of the data fork (or the attribute fork)."""
        def load():
            where = f"inode {rec.number} {'attr' if attr else 'data'} fork"
            if attr:
                return fork_map(self, rec, rec.attr_fork, rec.aformat, rec.anextents, where,
                                rec.offset)
            return fork_map(self, rec, rec.data_fork, rec.format, rec.nextents, where,
                            rec.offset)

        def loaded():  # open log intents that change this fork (a replayed log's BUIs)
            emap = load()
            return emap if self.intents is None else self.intents.remap(
                self, rec.number, attr, emap)
        if self.lenient:
            return loaded()
        return self._maps.get((rec.number, rec.raw, attr), loaded)

    def fork_source(self, rec: Inode, size: int, *, attr: bool = False,
                    name: str | None = None) -> ByteSource:
        """A fork's bytes (extents or btree format) as a ByteSource of ``size`` bytes."""
        return fork_source(self.dev, self.block_size, size, self.fork_map(rec, attr),
                             name or f"{self.name}:inode {rec.number}")

    # --- entries -------------------------------------------------------------------------
    def root(self) -> Entry:
        rec = self.inode(self.geo.rootino)
        if not rec.is_dir:
            self.problem(f"inode {rec.number}", rec.offset,
                         f"the root inode is not a directory (mode {rec.mode:o})")
        e = self.make_entry("", rec, False)
        e.path = "/"
        return e

    def make_entry(self, name: str, rec: Inode | None, deleted: bool, *, ftype: int = 0,
               ino: int | None = None, note: str | None = None,
               recoverable: bool = False) -> Entry:
        if rec is None:
            return Entry(name=name, kind=FT_KIND.get(ftype, OTHER), inode=ino, deleted=deleted,
                         key=ino, note=note, extra=dict.fromkeys(EXTRA_COLUMNS))
        kind = _KIND.get(rec.ftype) or (OTHER if rec.mode else FT_KIND.get(ftype, OTHER))
        at, mt, ct, cr = rec.times_ns()
        e = Entry(name=name, kind=kind, size=rec.size, allocated=rec.nblocks * self.block_size,
                  mode=rec.mode, uid=rec.uid, gid=rec.gid, created=ns_to_datetime(cr),
                  modified=ns_to_datetime(mt), accessed=ns_to_datetime(at),
                  changed=ns_to_datetime(ct), inode=rec.number, links=rec.links,
                  deleted=deleted, recoverable=recoverable, key=rec.number, raw=rec, note=note,
                  extra={"mtime_ns": mt, "atime_ns": at, "ctime_ns": ct, "crtime_ns": cr,
                         "flags": rec.f["di_flags"]})
        if kind == SYMLINK:
            self.fill_target(e, lambda: self.link_target(rec), CorruptImage)
        return e

    def _rec(self, path: str | Entry | int | Inode) -> Inode:
        return inode_record(self, path, Inode)

    def lookup(self, path: str, *, deleted: bool = False) -> Entry:
        """The entry at ``path``: one name looked up per directory through an index of its
        raw entries (the generic lookup builds every child's entry at each step)."""
        if self.geo.raw["sb_versionnum"] & 0x4000 or not isinstance(path, str):  # BORG: CI
            return super().lookup(path, deleted=deleted)  # ASCII-CI names: generic rules
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts:
            return super().lookup(path, deleted=deleted)  # raises as the protocol says
        entry = self.root()
        entry.path, entry.parent = "/", ""
        for i, part in enumerate(parts):
            if entry.kind != DIR:
                raise NotFound(f"{self.name}: {'/' + '/'.join(parts[:i])} is not a directory")
            if entry.key == ("orphans",) or entry.deleted or not isinstance(entry.raw, Inode):
                return super().lookup(path, deleted=deleted)
            index = self._name_index(entry.raw)
            if entry.path == "/" and part == ORPHAN_DIR_NAME:
                child = self.orphan_dir_entry()
            else:
                found = index.get(part.encode("utf-8", "surrogateescape"), ())
                if not found and "\\x" in part:  # a name shown with \xNN escapes
                    raw = re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(0xDC00 + int(m[1], 16)),
                                 part)
                    found = index.get(raw.encode("utf-8", "surrogateescape"), ())
                pick = [d for d in found if not d.deleted] or (
                    [d for d in found if d.deleted] if deleted else [])
                if not pick:
                    raise NotFound(f"{self.name}: no such file or directory: {path}")
                child = self.entry_of(pick[0])
            child.parent = entry.path
            child.path = ("/" if entry.path == "/" else entry.path + "/") + child.name
            entry = child
        return entry

    def _name_index(self, rec: Inode) -> dict[bytes, list[RawDirent]]:
        def load():
            out: dict[bytes, list[RawDirent]] = {}
            for d in self.dir_entries(rec):
                out.setdefault(d.name, []).append(d)
            return out
        return self._listings.get(("index", rec.number, rec.raw), load)

    def log_new_names(self, rec: Inode, raws: Dirents) -> set[bytes]:
        """Names of directory ``rec`` that only the log replay put there (empty when the
        log was not replayed, or when the directory cannot be read as it lies)."""
        if not self.log.replayed:
            return set()
        if self._flat is None:
            self._flat = XfsFileSystem(self.source, name=self.name, strict=False,
                                       replay_log=False)
        try:
            before = {d.name for d in self._flat.dir_entries(self._flat.inode(rec.number))
                      if not d.deleted}
        except VDInspectError:
            before = set()
        return {d.name for d in raws if not d.deleted} - before

    def list_dir(self, entry: Entry) -> list[Entry]:
        if entry.key == ("orphans",):
            return [o.copy() for o in self.orphans()]
        rec = self._rec(entry)
        if not rec.is_dir:
            raise InvalidArgument(f"{self.name}: {entry.path or entry.name} is not a directory")
        is_root = rec.number == self.geo.rootino and entry.path in ("/", "")
        key = (rec.number, rec.raw, entry.deleted, is_root)
        cached = self._listings.get(key, lambda: self._list_dir(entry, rec, is_root))
        return [e.copy() for e in cached]

    def _list_dir(self, entry: Entry, rec: Inode, is_root: bool) -> list[Entry]:
        def children() -> list[Entry]:
            raws = self.dir_entries(rec)
            out = [self.entry_of(d, listing=True) for d in raws]
            new = self.log_new_names(rec, raws)
            for e, d in zip(out, raws):
                if not d.deleted and d.name in new:
                    e.found_by, e.note = "journal", LOG_NOTE
            return out

        out = self.probed_listing(entry, children)
        if is_root:
            out.append(self.orphan_dir_entry())
        return out

    def entry_of(self, d: RawDirent, listing: bool = False) -> Entry:
        """The Entry of a raw directory entry; ``listing``: a row of a folder's listing,
        whose unreadable inode (strict mode too) is an error finding and a note."""
        name = d.name.decode("utf-8", "surrogateescape")
        if d.deleted:
            return self._deleted_entry(name, d.ino, d.ftype)
        try:
            rec = self.inode(d.ino)
        except CorruptImage as exc:
            if self.strict and (not listing or self.lenient):  # lenient: a removed folder
                raise
            if listing and not self.lenient:
                self.finding("error", exc.structure or f"inode {d.ino}", exc.offset,
                             exc.detail)
            return self.make_entry(name, None, False, ftype=d.ftype, ino=d.ino,
                               note=f"inode unreadable: {exc}")
        note = None
        if rec.mode == 0:
            note = "the entry is live but its inode is free"
        elif d.ftype and FT_KIND.get(d.ftype, OTHER) != (_KIND.get(rec.ftype) or OTHER):
            note = f"the entry's file type {d.ftype} disagrees with the inode's mode"
        return self.make_entry(name, rec, False, ftype=d.ftype, note=note)

    def _deleted_entry(self, name: str, ino: int, ftype: int) -> Entry:
        try:
            self.lenient += 1
            rec = self.inode(ino)
        except CorruptImage as exc:
            return self.make_entry(name, None, True, ftype=ftype, ino=ino,
                               note=f"inode unreadable: {exc.detail}")
        finally:
            self.lenient -= 1
        ok, why = self.recoverability(rec)
        return self.make_entry(name, rec, True, ftype=ftype, note=why, recoverable=ok)

    def recoverability(self, rec: Inode) -> tuple[bool, str]:
        """Whether a deleted file's content can still be read, and why (not)."""
        if self.ags.inode_allocated(rec.number):
            return False, ("the inode is in use again: its content belongs to the current "
                           "file")
        if rec.mode == 0:
            return False, ("the inode was freed (XFS clears the mode and the extents on "
                           "deletion): content not recoverable from the inode")
        if rec.format == S.FMT_LOCAL:
            return rec.size > 0, "data kept in the inode"
        if rec.format not in (S.FMT_EXTENTS, S.FMT_BTREE) or not rec.nextents:
            return False, "no extents left in the inode: content not recoverable"
        try:
            with self.probing():
                emap = self.fork_map(rec)
        except CorruptImage as exc:
            return False, f"the extent map is damaged: {exc.detail}"
        used = self.ags.blocks_in_use(emap)
        if used is None:
            return True, "extents kept in the inode (whether reused is unknown)"
        if used:
            return False, f"{used} of its blocks are allocated again: overwritten"
        return True, "extents kept and their blocks free: content likely recoverable"

    def orphan_dir_entry(self) -> Entry:
        return Entry(name=ORPHAN_DIR_NAME, kind=DIR, inode=None, deleted=True,
                     key=("orphans",), found_by="inode-table",
                     note="virtual directory (The Sleuth Kit's $OrphanFiles): inodes "
                          "that no directory entry names", extra=dict.fromkeys(EXTRA_COLUMNS))

    def can_list_deleted_dir(self, entry: Entry) -> bool:
        return self.can_list_deleted(entry)

    def can_list_deleted(self, entry: Entry) -> bool:
        """Whether a deleted directory's children may be listed ($OrphanFiles, or a
        removed directory whose inode still holds its blocks)."""
        return entry.key == ("orphans",) or entry.recoverable

    def files(self, path: str = "/", *, recursive: bool = True,
              deleted: bool = True) -> pd.DataFrame:
        """The ``files()`` frame, built column-wise (same rows as the generic walk). Extra
        columns: ``mtime_ns``, ``atime_ns``, ``ctime_ns``, ``crtime_ns`` (nanoseconds since
        the epoch) and ``flags`` (di_flags)."""
        top = self.lookup(path, deleted=deleted)
        if top.kind != DIR:
            return super().files(path, recursive=recursive, deleted=deleted)
        with paused_gc():  # the walk's objects all live until the frame is built
            self._dircache = {}  # the orphan search reads every directory again
            if recursive and top.inode == self.geo.rootino:  # the whole tree: every inode
                self.inode_table = InodeTable.build(self)
            try:
                cols = walk_columns(self, top, recursive, deleted)
            finally:
                self._dircache = self.inode_table = None
            # the rows' Entries are only asked for when the volume has damage
            cols["damaged"] = self.damaged_column(cols["kind"], lambda: column_entries(cols))
            return files_columns_frame(cols, EXTRA_DTYPES)

    def hardlink_key(self, entry: Entry) -> Hashable | None:
        if entry.deleted or entry.inode is None or not entry.links or entry.links < 2:
            return None
        return entry.inode

    # --- directories -----------------------------------------------------------------------
    def dir_entries(self, rec: Inode, deleted: bool = True) -> Dirents:
        """The raw entries of a directory inode (with ``deleted``: removed ones too)."""
        cache = self._dircache
        if cache is None:
            return self._dir_entries(rec, deleted)
        key = (rec.number, rec.raw, deleted)
        got = cache.get(key)
        if got is None:
            got = self._dir_entries(rec, deleted)
            if not self.lenient:  # a lenient read raises where the others record findings
                cache[key] = got
        return got

    def _dir_entries(self, rec: Inode, deleted: bool) -> Dirents:
        g = self.geo
        where = f"directory inode {rec.number}"
        problems: list = []
        if rec.format == S.FMT_LOCAL:
            _parent, short = parse_shortform(rec.data_fork, rec.size, g.ftype, problems)
            for off, msg in problems[:8]:
                self.problem(where, rec.offset + off, msg)
            return Dirents.of(short)
        if rec.format not in (S.FMT_EXTENTS, S.FMT_BTREE):
            self.problem(where, rec.offset, f"directory data fork format {rec.format}")
            return Dirents()
        emap = self.fork_map(rec)
        dbs, bs = g.dir_block_size, self.block_size
        per = dbs // bs
        blocks: list[int] = []
        direct: dict[int, int] = {}  # directory block -> its volume offset, when in one extent
        last = -1
        # data blocks only: below the leaf offset and inside di_size (which ends them)
        limit = min(S.XFS_DIR2_LEAF_OFFSET, -(-rec.size // dbs) * dbs) // bs
        for lb, pb, cnt, st in emap.rows():
            if st == DAMAGED or lb >= limit:
                continue
            first = max(lb // per, last + 1)
            end = (min(lb + cnt, limit) - 1) // per
            blocks.extend(range(first, end + 1))
            last = max(last, end)
            if st == DATA:
                for db in range(first, end + 1):
                    if lb <= db * per and (db + 1) * per <= lb + cnt:
                        direct[db] = (pb + db * per - lb) * bs
        src = None
        out = Dirents()
        for db in blocks:
            at = direct.get(db)
            if at is not None:
                data = self.dev.read(at, dbs)  # inside the volume: fork_map checked it
            else:
                if src is None:
                    src = fork_source(self.dev, bs, min(limit, (last + 1) * per) * bs, emap,
                                      where)
                data = src.read(db * dbs, dbs)
            if g.crc and len(data) >= S.DIR_MAGIC_FMT.size and S.DIR_MAGIC_FMT.unpack_from(
                    data)[0] in (S.XFS_DIR3_BLOCK_MAGIC, S.XFS_DIR3_DATA_MAGIC):
                if not crc_ok(data, S.DIR3_CRC_OFF):
                    self.problem(where, self._fork_offset(emap, db * per),
                                 f"directory block {db} CRC-32C mismatch")
            bad: list = []
            out.extend(parse_data_block(data, db * dbs, v5=g.crc, ftype=g.ftype,
                                        problems=bad, deleted=deleted))
            for off, msg in bad[:4]:
                self.problem(where, self._fork_offset(emap, db * per) + off,
                             f"directory block {db}: {msg}")
        return out.without_live_copies()

    def directory_damage(self, entry: Entry) -> int:
        """Bytes of a directory's data blocks (its data fork up to di_size: a short-form
        directory lives in its inode) that could not be read."""
        try:
            rec = self._rec(entry)
            if rec.format not in (S.FMT_EXTENTS, S.FMT_BTREE):
                return 0
            size = min(rec.size, S.XFS_DIR2_LEAF_OFFSET)
            return sum(n for _a, n in self.fork_source(rec, size).damaged_ranges())
        except VDInspectError:
            return 0

    def _fork_offset(self, emap: ExtentMap, lblk: int) -> int | None:
        """The volume byte offset of logical block ``lblk`` of a fork (None if unmapped)."""
        for lb, pb, cnt, _st in emap.rows():
            if lb <= lblk < lb + cnt:
                return (pb + lblk - lb) * self.block_size
        return None

    # --- content and links ---------------------------------------------------------------
    def content(self, entry: Entry) -> ByteSource:
        if entry.key == ("orphans",) or entry.kind == DIR:
            raise InvalidArgument(f"{self.name}: {entry.path} is a directory")
        if entry.raw is None and entry.inode is None:
            raise NotFound(f"{self.name}: {entry.path or entry.name}: no inode: no content")
        rec = self._rec(entry)
        name = entry.path or entry.name
        if not (rec.is_reg or rec.is_symlink):
            return Zero(0, name=name)
        if entry.deleted:
            if not entry.recoverable:
                raise NotFound(f"{self.name}: {name}: deleted, content not recoverable")
            self.lenient += 1
            try:
                return self.content_of(rec, name)
            except CorruptImage as exc:
                raise NotFound(f"{self.name}: {name}: deleted, content not recoverable: "
                               f"{exc.detail}") from exc
            finally:
                self.lenient -= 1
        return self.content_of(rec, name)

    def content_of(self, rec: Inode, name: str | None = None) -> ByteSource:
        """The data fork's bytes, ``di_size`` of them."""
        size = rec.size
        if rec.f["di_flags"] & S.DIFLAG_REALTIME and rec.is_reg:
            self.fail(UnsupportedFeature, "the file's data is on the realtime device, which "
                      "vdinspect does not read", f"inode {rec.number}", rec.offset)
        if rec.format == S.FMT_LOCAL:
            data = rec.data_fork[:size]
            if len(data) < size:
                self.problem(f"inode {rec.number}", rec.offset,
                             f"local data of {size} bytes does not fit in the inode")
                data = data + bytes(min(size, len(rec.data_fork)) - len(data))
                return MemorySource(data, name=name or "")
            return MemorySource(data, name=name or "")
        if rec.is_symlink and rec.format == S.FMT_EXTENTS and self.geo.crc:
            return MemorySource(self.link_target(rec).encode("utf-8", "surrogateescape"),
                                name=name or "")
        if rec.format not in (S.FMT_EXTENTS, S.FMT_BTREE):
            self.problem(f"inode {rec.number}", rec.offset,
                         f"data fork format {rec.format} holds no file data")
            return Zero(size, name=name or "")
        return self.fork_source(rec, size, name=name)

    def link_target(self, rec: Inode) -> str:
        """A symlink's target: local (in the inode) or remote blocks (v5: with headers)."""
        where = f"inode {rec.number}"
        size = rec.size
        if size > S.XFS_SYMLINK_MAXLEN or size == 0:
            self.problem(where, rec.offset, f"symlink length {size} is not 1..1024")
            size = min(size, S.XFS_SYMLINK_MAXLEN)
        if rec.format == S.FMT_LOCAL:
            raw = rec.data_fork[:size]
        elif rec.format == S.FMT_EXTENTS:
            emap = self.fork_map(rec)
            bs = self.block_size
            hdr = S.SYMLINK_HDR_SIZE if self.geo.crc else 0
            nblocks = -(-size // (bs - hdr))
            src = fork_source(self.dev, bs, nblocks * bs, emap, where)
            parts = []
            for i in range(nblocks):
                blk = src.read(i * bs, bs)
                if hdr:
                    magic, _off, nbytes = S.SYMLINK_HDR_FMT.unpack_from(blk, 0)[:3]
                    if magic != S.XFS_SYMLINK_MAGIC or nbytes > bs - hdr:
                        self.problem(where, rec.offset, f"remote symlink block {i} has a bad "
                                     "header")
                        nbytes = bs - hdr
                    elif not crc_ok(blk, S.SYMLINK_CRC_OFF):
                        self.problem(where, rec.offset, f"remote symlink block {i} CRC-32C "
                                     "mismatch")
                    parts.append(blk[hdr:hdr + nbytes])
                else:
                    parts.append(blk)
            raw = b"".join(parts)[:size]
        else:
            self.problem(where, rec.offset, f"symlink fork format {rec.format}")
            raw = b""
        return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")

    def readlink_entry(self, entry: Entry) -> str:
        if entry.kind != SYMLINK:
            raise InvalidArgument(f"{self.name}: {entry.path} is not a symbolic link")
        if entry.target is None:
            return self.link_target(self._rec(entry))
        return entry.target

    def extents(self, path: str | Entry) -> list[dict]:
        """A file's mapping as rows: logical, physical (bytes on the volume), length, state."""
        rec = self._rec(path)
        if rec.format not in (S.FMT_EXTENTS, S.FMT_BTREE):
            return []
        bs = self.block_size
        return [dict(logical=lb * bs, physical=pb * bs, length=cnt * bs,
                     state=STATE_NAMES[st]) for lb, pb, cnt, st in self.fork_map(rec).rows()]

    def xattrs(self, path: str | Entry) -> dict[str, bytes]:
        """Extended attributes (``user.``, ``trusted.``, ``security.`` names) of a file."""
        return read_xattrs(self, self._rec(path))

    # --- orphans ---------------------------------------------------------------------------
    def orphans(self) -> list[Entry]:
        """Inodes no directory entry names, as ``OrphanFile-<inode>`` (see :mod:`.ag`)."""
        if self._orphans is None:
            self.lenient += 1
            try:
                self._orphans = self.ags.find_orphans()
            finally:
                self.lenient -= 1
        return self._orphans

    # --- facts -----------------------------------------------------------------------------
    def free_ranges(self) -> list[tuple[int, int]]:
        """Each AG's free space btree (by block number) as (offset, length) byte ranges; an
        AG whose tree cannot be read is left out, with a finding."""
        g, bs, out = self.geo, self.block_size, []
        for agno in range(g.agcount):
            free = self.ags.free_extents(agno)
            if free is None:
                self.finding("warning", "free space btree", g.ag_offset(agno),
                             f"AG {agno}: free space unknown; not searched")
                continue
            base = g.ag_offset(agno)
            out += [(base + a * bs, (b - a) * bs) for a, b in zip(*(x.tolist() for x in free))
                    if a < b and base + a * bs < self.source.size]
        return [(o, min(n, self.source.size - o)) for o, n in out]

    def info_fields(self) -> dict:
        g = self.geo
        r = g.raw
        return dict(
            fstype=self.fstype, label=self.label, uuid=self.uuid, block_size=g.block_size,
            size=g.dblocks * g.block_size, blocks=g.dblocks, free_blocks=r["sb_fdblocks"],
            inodes=r["sb_icount"], free_inodes=r["sb_ifree"], version=g.version,
            features=g.features, sector_size=g.sector_size, inode_size=g.inode_size,
            dir_block_size=g.dir_block_size, ag_count=g.agcount, ag_blocks=g.agblocks,
            root_ino=g.rootino, log=("internal" if g.logstart else "external"),
            log_blocks=g.logblocks, dirty=self.log.dirty, log_state=self.log.text,
            log_replayed=self.log.replayed,
        )

    def run_checks(self) -> None:
        self.ags.check()

    def structure_rows(self) -> list[dict]:
        g = self.geo
        rows = []

        def add(name, off, length, desc):
            rows.append(dict(name=name, host_file=self.name, host_offset=off, length=length,
                             description=desc))

        ss = g.sector_size
        for agno in range(g.agcount):
            base = g.ag_offset(agno)
            add("superblock" if agno == 0 else "backup superblock", base, ss,
                f"XFS v{g.version}, {g.dblocks} blocks of {g.block_size} bytes, "
                f"{g.agcount} AGs" if agno == 0 else f"copy of the superblock in AG {agno}")
            add("AGF", base + ss, ss, f"free space header of AG {agno}")
            add("AGI", base + 2 * ss, ss, f"inode header of AG {agno}")
            add("AGFL", base + 3 * ss, ss, f"free list of AG {agno}")
        if g.logstart:
            add("log", g.fsb_to_block(g.logstart) * g.block_size, g.logblocks * g.block_size,
                f"internal log, {g.logblocks} blocks ({self.log.text})")
        return rows
