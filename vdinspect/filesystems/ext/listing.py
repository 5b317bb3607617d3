"""Directory listing: directory blocks (linear or htree) to raw entries, raw entries to
:class:`~vdinspect.filesystems.base.Entry` objects (live, or deleted from slack).
"""

from __future__ import annotations

import base64
from collections.abc import Hashable, Iterator

from ...errors import CorruptImage, InvalidArgument
from ...io import LRUCache
from ...lazy import np
from ..base import DIR, FILE, OTHER, SYMLINK, Entry
from ..walk import HANDLE, Child
from . import superblock as S
from .dirlisting import DirListing
from .dirs import (
    FT_DIR,
    FT_REG_FILE,
    FT_SYMLINK,
    LiveColumns,
    RawDirent,
    parse_dir_block,
    parse_dx_node,
    parse_dx_root,
    scan_live_block,
)
from .extents import DATA, BlockMap, plain_extents
from .inode import (
    FL_CASEFOLD,
    FL_COMPRESSED_ANY,
    FL_ENCRYPT,
    FL_INDEX,
    I_BLOCK_SIZE,
    ROOT_INO,
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    S_IFSOCK,
    InodeRecord,
    ns_to_datetime,
)

_KIND_OF_TYPE = {
    S_IFREG: FILE,
    S_IFDIR: DIR,
    S_IFLNK: SYMLINK,
    S_IFCHR: OTHER,
    S_IFBLK: OTHER,
    S_IFIFO: OTHER,
    S_IFSOCK: OTHER,
}
_INLINE_PARENT = 4  # an inline directory's i_block starts with the parent's inode number
FT_KIND = {FT_REG_FILE: FILE, FT_DIR: DIR, FT_SYMLINK: SYMLINK}  # other types: OTHER
EXTRA_COLUMNS = ("mtime_ns", "atime_ns", "ctime_ns", "crtime_ns", "dtime", "flags")


class ListingMixin:
    """Directory entries and Entry objects of :class:`ExtFileSystem`."""

    _listings: LRUCache | None = None

    # --- entries ------------------------------------------------------------------------
    def root(self) -> Entry:
        rec = self.inode(ROOT_INO)
        if not rec.is_dir:
            self.problem(
                "inode 2", rec.offset, f"the root inode is not a directory (mode {rec.mode:o})"
            )
        e = self.make_entry("", rec, False)
        e.path = "/"
        return e

    def make_entry(
        self,
        name: str,
        rec: InodeRecord | None,
        deleted: bool,
        *,
        ftype: int = 0,
        ino: int | None = None,
        note: str | None = None,
        recoverable: bool = False,
    ) -> Entry:
        if rec is None:
            return Entry(
                name=name,
                kind=FT_KIND.get(ftype, OTHER),
                size=0,
                inode=ino or None,
                deleted=deleted,
                recoverable=False,
                key=ino,
                note=note,
                extra=dict.fromkeys(EXTRA_COLUMNS),
            )
        mode = rec.mode
        kind = _KIND_OF_TYPE.get(mode & S_IFMT) or FT_KIND.get(ftype, OTHER)
        if self.column_walk:  # files() decodes the times itself, in bulk
            created = modified = accessed = changed = None
            extra = {"dtime": rec.dtime or None, "flags": rec.flags}
        else:
            atime, ctime, mtime, crtime = rec.times()
            created = ns_to_datetime(crtime)
            modified = ns_to_datetime(mtime)
            accessed = ns_to_datetime(atime)
            changed = ns_to_datetime(ctime)
            extra = {
                "mtime_ns": mtime,
                "atime_ns": atime,
                "ctime_ns": ctime,
                "crtime_ns": crtime,
                "dtime": rec.dtime or None,
                "flags": rec.flags,
            }
        e = Entry(
            name=name,
            kind=kind,
            size=rec.size,
            allocated=rec.blocks_raw,
            mode=mode,
            uid=rec.uid,
            gid=rec.gid,
            created=created,
            modified=modified,
            accessed=accessed,
            changed=changed,
            inode=rec.number,
            links=rec.links,
            deleted=deleted,
            recoverable=recoverable,
            key=rec.number,
            raw=rec,
            note=note,
            extra=extra,
        )
        if kind == SYMLINK:
            self.fill_target(e, lambda: self._link_target(rec))
        return e

    def _link_target(self, rec: InodeRecord) -> str | None:
        if rec.encrypted:
            return None
        if self.is_fast_symlink(rec):
            raw = rec.i_block[: rec.size]
        else:
            size = min(rec.size, self.block_size * 16)
            raw = self.content_of(rec, size).read(0, size)
        return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")

    def list_dir(self, entry: Entry) -> list[Entry]:
        if entry.key == ("orphans",):
            return [o.copy() for o in self.orphans()]
        if self.column_walk:  # files(): every directory is listed once, no need to keep it
            rec, is_root = self._dir_record(entry)
            return self._list_dir(entry, rec, is_root)
        return [e.copy() for e in self.dir_listing(entry).entries()]

    def _dir_record(self, entry: Entry) -> tuple[InodeRecord, bool]:
        rec = entry.raw if isinstance(entry.raw, InodeRecord) else self.inode(entry.inode)
        if not rec.is_dir:
            raise InvalidArgument(f"{self.name}: {entry.path or entry.name} is not a directory")
        return rec, rec.number == ROOT_INO and entry.path in ("/", "")

    def dir_listing(self, entry: Entry) -> DirListing:
        """A directory's children (kept for the 32 directories last listed), each Entry
        built when first asked for (:mod:`.dirlisting`); errors the listing meets that
        are not left for later are raised here."""
        rec, is_root = self._dir_record(entry)
        key = (rec.number, rec.raw, entry.deleted, is_root)
        if self._listings is None:
            self._listings = LRUCache(32)
        return self._listings.get(key, lambda: self._new_listing(entry, rec, is_root))

    def _new_listing(self, entry: Entry, rec: InodeRecord, is_root: bool) -> DirListing:
        # built in one piece: a deleted directory (probed leniently), a volume with damaged
        # ranges or cut short (an inode may be unreadable: the listing raises or notes it)
        whole = self.dev.size >= self.sb.blocks_count * self.block_size
        if entry.deleted or not whole or self.volume_damaged():
            return DirListing.of_entries(self, self._list_dir(entry, rec, is_root))
        raws = self.dir_entries(rec)
        return DirListing.lazy(self, rec, raws, [self.orphan_dir_entry()] if is_root else [])

    def entry_children(self, d: Child) -> Iterator[Child]:
        """The walk's listing of a directory (handle: an Entry), as the base class's but
        built as the walk takes it: a huge folder's first rows cost only their inodes."""
        parent = d[HANDLE]
        if parent.key == ("orphans",) or self.column_walk:
            return super().entry_children(d)
        listing = self.dir_listing(parent)
        dpath = parent.path
        prefix = "/" if dpath in ("", "/") else dpath + "/"
        dir_id = self.dir_id

        def each() -> Iterator[Child]:
            for i in range(len(listing)):
                c = listing.entry(i).copy()
                c.parent = dpath
                c.path = prefix + c.name
                yield (c.path, c.kind == DIR, dir_id(c), c.deleted, c, c)
        return each()

    def _list_dir(self, entry: Entry, rec: InodeRecord, is_root: bool) -> list[Entry]:
        out = self.probed_listing(
            entry, lambda: [self.child_entry(d, rec) for d in self.dir_entries(rec)])
        if is_root:
            out.append(self.orphan_dir_entry())
        return out

    def child_entry(self, d: RawDirent, parent: InodeRecord) -> Entry:
        name = self.entry_name(d.name, parent)
        if not d.deleted:
            try:
                rec = self.inode(d.inode)
            except CorruptImage as exc:
                if self.strict:
                    raise
                return self.make_entry(
                    name,
                    None,
                    False,
                    ftype=d.file_type,
                    ino=d.inode,
                    note=f"inode unreadable: {exc}",
                )
            note = None
            if d.inode in self.unreadable_inodes:
                note = (
                    f"its inode cannot be read (block {self.unreadable_inodes[d.inode]} of "
                    "the inode table is damaged and the journal has no copy)"
                )
            elif rec.links == 0 or (rec.dtime and not self.inode_allocated(d.inode)):
                note = "the entry is live but its inode is not in use (deleted inode)"
            elif rec.mode == 0:
                note = "the entry is live but its inode is empty"
            elif rec.flags & FL_ENCRYPT:
                note = "encrypted (fscrypt): the content is not decrypted"
            elif rec.flags & FL_COMPRESSED_ANY and self.sb.incompat & S.INCOMPAT_COMPRESSION:
                note = "compressed (e2compr): the content is not read"
            seq = self.journal_inodes.get(d.inode)
            if seq is not None:
                why = (
                    f"inode read from the copy of its inode-table block in journal "
                    f"transaction {seq} (the block cannot be read)"
                )
                note = why if not note else f"{why}; {note}"
            e = self.make_entry(name, rec, False, ftype=d.file_type, note=note)
            if d.found_by != "index":
                e.found_by = d.found_by
                e.note = d.note if not e.note else f"{d.note}; {e.note}"
            return e
        if d.inode == 0:
            e = self.make_entry(
                name,
                None,
                True,
                ftype=d.file_type,
                ino=None,
                note="removed entry whose inode number was cleared",
            )
            e.found_by = "slack"
            return e
        e = self.deleted_entry(name, d.inode, d.file_type)
        if e.found_by == "index":  # the name: from slack; the inode may come from elsewhere
            e.found_by = "slack"
        return e

    def entry_name(self, raw: bytes, parent: InodeRecord) -> str:
        if parent.encrypted and not parent.flags & FL_CASEFOLD:
            return "_" + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        return raw.decode("utf-8", "surrogateescape")

    def dir_entries(self, rec: InodeRecord, deleted: bool = True) -> list[RawDirent]:
        """The raw entries of a directory inode (live, and with ``deleted`` removed ones)."""
        got = self._cached_dirents(rec, deleted, False)
        return got if isinstance(got, list) else got.raws()

    def dir_columns(self, rec: InodeRecord) -> LiveColumns | list[RawDirent]:
        """A directory's entries (removed ones too) for the column walk: as columns when
        it holds live entries only (the common case: no object per entry), else as
        :meth:`dir_entries` gives them."""
        return self._cached_dirents(rec, True, True)

    def dir_inodes(self, rec: InodeRecord) -> tuple[list[int], list[int]]:
        """The inode numbers and file types of a directory's entries (removed ones too;
        0 where a removed entry's number was cleared), from what the column walk read
        when it read this directory."""
        got = self._cached_dirents(rec, True, True)
        if isinstance(got, LiveColumns):
            return got.inodes, got.file_types
        return [d.inode for d in got], [d.file_type for d in got]

    def _cached_dirents(self, rec: InodeRecord, deleted: bool,
                        columns: bool) -> LiveColumns | list[RawDirent]:
        cache = self.dirent_cache
        if cache is None:
            return self._dir_entries(rec, deleted, columns)
        key = (rec.number, deleted)
        got = cache.get(key)
        if got is not None and got[0] == rec.raw:
            return got[1]
        out = self._dir_entries(rec, deleted, columns)
        if not self.lenient:  # a lenient read raises where a salvage read records findings
            cache[key] = (rec.raw, out)
        return out

    def _dir_entries(self, rec: InodeRecord, deleted: bool,
                     columns: bool = False) -> LiveColumns | list[RawDirent]:
        """The entries of a directory; with ``columns``, as :class:`LiveColumns` when the
        directory holds nothing but live entries (each block is scanned for that first,
        and parsed the full way, from the first block, when one holds anything else)."""
        kw = dict(
            filetype=self.filetype,
            inodes_count=self.sb.inodes_count,
            block_size=self.block_size,
            deleted=deleted,
        )
        where = f"directory inode {rec.number}"
        problems: list = []
        out: list[RawDirent] = []
        had_loss = False
        live = LiveColumns() if (columns and self.filetype and self.block_size < 65536
                                 and not self.volume_damaged()) else None
        if live is not None and not rec.inline and not self.lenient:
            got = self._scan_blocks(rec, live, deleted)
            if got is not None:
                return got
            live = LiveColumns()  # something else is there: read again, the full way
        held: list[tuple[bytes, int, int]] = []  # blocks scanned into ``live`` so far
        count = self.sb.inodes_count

        def parse(block: bytes, base: int, skip: int = -1) -> None:
            nonlocal live
            if live is not None:
                held.append((block, base, skip))
                if scan_live_block(block, base, live, inodes_count=count, deleted=deleted,
                                   skip_slack_after=skip):
                    return
                live = None  # something else is here: every block the full way
                todo = held[:]
                held.clear()
            else:
                todo = [(block, base, skip)]
            for blk, at, sk in todo:
                out.extend(parse_dir_block(blk, at, problems=problems, skip_slack_after=sk,
                                           **kw))

        if rec.inline:
            data = self.inline_data(rec)
            size = min(rec.size, len(data))
            # i_block: the parent's inode number, then entries; the rest in system.data
            head, end = _INLINE_PARENT, I_BLOCK_SIZE
            parse(data[head:end], head)
            if size > end:
                parse(data[end:size], end)
        else:
            bmap = self.block_map(rec)
            bs = self.block_size
            index_blocks: set[int] = set()
            root_slack = -1
            if rec.flags & FL_INDEX and len(bmap) and bmap.lblk[0] == 0 and bmap.state[0] == DATA:
                index_blocks, ok = self._htree_index_blocks(rec, bmap)
                if ok:
                    root_slack = 12
            for lb, cnt, pb, st in zip(
                bmap.lblk.tolist(), bmap.count.tolist(), bmap.pblk.tolist(), bmap.state.tolist()
            ):
                if st != DATA:
                    continue
                step = max(1, (256 << 10) // bs)
                for k in range(0, cnt, step):
                    n = min(step, cnt - k)
                    data = self.read_blocks(pb + k, n, where)
                    lost = self._damaged_blocks(pb + k, n)
                    for i in range(n):
                        lblk = lb + k + i
                        if lblk in index_blocks:
                            continue
                        if pb + k + i in lost:  # unreadable: what the journal remembers
                            out += self.directory_from_journal(rec, lblk, pb + k + i)
                            had_loss = True
                            continue
                        block = data[i * bs : (i + 1) * bs]
                        if rec.flags & FL_INDEX and lblk and parse_dx_node(block, bs):
                            continue  # an interior htree node the root did not list
                        parse(block, lblk * bs, root_slack if lblk == 0 else -1)
        if live is not None:
            return live
        for off, msg in problems[:8]:
            self.problem(where, None, f"{msg} (byte {off} of the directory)")
        if had_loss and deleted:
            self._promote_slack_names(out)
        if deleted or any(d.found_by != "index" for d in out):
            out = drop_live_copies(out)
        return out

    def _scan_blocks(self, rec: InodeRecord, live: LiveColumns,
                     deleted: bool) -> LiveColumns | None:
        """:meth:`_dir_entries` with ``columns`` for a directory in blocks (linear or
        hashed, not inline), with less machinery per block: ``live`` filled, or None as
        soon as a block holds anything but live entries. A hashed (htree) directory's
        index blocks are passed over as the full read passes them (the root's tree of
        index blocks, and any later block that reads as an interior node); its leaves
        are ordinary entry blocks. Only where a second read of the same blocks repeats no
        finding (the block map cached, nothing probed leniently, a root found sound)."""
        bs, count = self.block_size, self.sb.inodes_count
        where = f"directory inode {rec.number}"
        hashed = bool(rec.flags & FL_INDEX)
        index: set[int] = set()
        nblocks = -(-rec.size // bs)
        runs = (plain_extents(rec, nblocks, self.block_limit)
                if rec.uses_extents and nblocks and not hashed else None)
        if runs is None:
            bmap = self.block_map(rec)
            runs = [(lb, cnt, pb) for lb, cnt, pb, st in zip(
                bmap.lblk.tolist(), bmap.count.tolist(), bmap.pblk.tolist(),
                bmap.state.tolist()) if st == DATA]
            if hashed and len(bmap) and bmap.lblk[0] == 0 and bmap.state[0] == DATA:
                root = self.read_blocks(int(bmap.pblk[0]), 1, where)
                if parse_dx_root(root, bs) is None:
                    return None  # the full read warns and reads it linearly
                index, _ok = self._htree_index_blocks(rec, bmap)
        step = max(1, (256 << 10) // bs)
        for lb, cnt, pb in runs:
            for k in range(0, cnt, step):
                n = min(step, cnt - k)
                data = self.read_blocks(pb + k, n, where)
                at = (lb + k) * bs
                for i in range(0, n * bs, bs):
                    block = data[i : i + bs]
                    if hashed:
                        lblk = lb + k + i // bs
                        if lblk in index or (lblk and parse_dx_node(block, bs)):
                            continue  # the root, an index node
                    if not scan_live_block(block, at + i, live, count, deleted):
                        return None
        return live

    def _promote_slack_names(self, raws: list[RawDirent]) -> None:
        """In a directory with unreadable blocks: a name left in slack (an htree split's
        copy, an entry moved when a block was packed) whose inode is in use and that no
        readable entry names is taken as the live entry the lost block held."""
        live_inodes = {d.inode for d in raws if not d.deleted}
        live_names = {d.name for d in raws if not d.deleted}
        for d in raws:
            if not d.deleted or not d.inode or d.inode in live_inodes or d.name in live_names:
                continue
            try:
                rec = self.inode(d.inode)
            except CorruptImage:
                continue
            if rec.mode == 0 or rec.links == 0 or rec.dtime or not self.inode_allocated(d.inode):
                continue
            d.deleted = False
            d.found_by = "slack"
            d.note = (
                "named by a leftover copy of its entry in the directory's slack; the block "
                "that holds its live entry cannot be read"
            )
            live_inodes.add(d.inode)
            live_names.add(d.name)

    def _damaged_blocks(self, pblk: int, count: int) -> set[int]:
        """Which of the blocks [pblk, pblk+count) hold bytes that cannot be read."""
        if not self.volume_damaged():
            return set()
        bs = self.block_size
        out: set[int] = set()
        for a, n in self.dev.damaged_ranges(pblk * bs, count * bs):
            out.update(range(a // bs, (a + n - 1) // bs + 1))
        return out

    def _htree_index_blocks(self, rec: InodeRecord, bmap: BlockMap) -> tuple[set[int], bool]:
        bs = self.block_size
        block0 = self.read_blocks(int(bmap.pblk[0]), 1, f"directory inode {rec.number}")
        root = parse_dx_root(block0, bs)
        if root is None:
            self.finding(
                "warning",
                f"directory inode {rec.number}",
                int(bmap.pblk[0]) * bs,
                "htree flag set but block 0 is not a valid htree root; read linearly",
            )
            return set(), False
        _hv, levels, children = root
        index = {0}
        level = children
        for _ in range(levels):
            nxt = []
            for lb in level:
                if lb in index:
                    continue
                pb = self._logical_to_physical(bmap, lb)
                if pb is None:
                    continue
                index.add(lb)
                node = parse_dx_node(self.read_blocks(pb, 1, f"directory inode {rec.number}"), bs)
                if node:
                    nxt.extend(node)
            level = nxt
        return index, True

    @staticmethod
    def _logical_to_physical(bmap: BlockMap, lblk: int) -> int | None:
        i = int(np.searchsorted(bmap.lblk, lblk, side="right")) - 1
        if i < 0 or lblk >= bmap.lblk[i] + bmap.count[i] or bmap.state[i] != DATA:
            return None
        return int(bmap.pblk[i] + (lblk - bmap.lblk[i]))

    def can_list_deleted_dir(self, entry: Entry) -> bool:
        return entry.key == ("orphans",) or entry.recoverable

    def hardlink_key(self, entry: Entry) -> int | None:
        """Live names of one inode with more than one link are hard links."""
        if entry.deleted or entry.inode is None or not entry.links or entry.links < 2:
            return None
        return entry.inode

    def dir_id(self, entry: Entry) -> Hashable | None:
        return entry.inode if entry.inode is not None else entry.key


def drop_live_copies(raws: list[RawDirent]) -> list[RawDirent]:
    """``raws`` without the removed entries that repeat a live entry of the same
    directory (same name, same inode): the leftovers of an htree leaf split or of the
    packing of a block (the kernel copies entries and leaves the old bytes behind), not
    deleted files."""
    if all(not d.deleted and d.found_by == "index" for d in raws):
        return raws  # nothing but live entries: nothing repeats
    live = {(d.name, d.inode) for d in raws if not d.deleted and d.found_by == "index"}
    out = []
    for d in raws:
        key = (d.name, d.inode)
        if d.deleted or d.found_by != "index":
            if key in live:
                continue
            live.add(key)  # one row per name from older copies too
        out.append(d)
    return out
