"""Btrfs (read-only): subvolumes, directories, inodes and file content.

What is read: the superblock (best valid copy), the chunk map (SINGLE, DUP, RAID0/1/10,
RAID1C3/4, RAID5/6; one missing RAID5/6 device is rebuilt from P parity), the root tree,
FS trees of every subvolume and snapshot, directories (DIR_INDEX items, in creation order),
inodes, inline, regular, compressed (zlib, LZO, zstd) and preallocated extents, holes,
symlinks, hard links, extended attributes, and data checksums (crc32c, xxhash64, sha256,
blake2b; a bad copy is replaced by another where the profile keeps one).

A :class:`BtrfsFileSystem` shows one subvolume as its root: the default one (what a
mount without options shows) unless ``subvolume=`` names another; subvolumes nested
inside appear as directories at their place, as in a mount. ``subvolumes()`` lists them
all; ``subvolume(name_or_id)`` opens another as a view sharing the caches.

Btrfs keeps no deleted entries in its live trees (copy on write); deleted files come from
the FS trees of older commits and from orphan items (:mod:`.recovery`). A tree log left by fsync (``log_root``) is replayed in memory (:mod:`.treelog`):
``info()['dirty']`` and ``info()['log_state']`` say so, and ``check()`` names each inode
the log holds.
"""

from __future__ import annotations

import copy
import stat as statmod
from typing import TYPE_CHECKING

from ...errors import CorruptImage, InvalidArgument, NotFound, VDInspectError
from ...io import ByteSource
from ..base import DIR, FILE, OTHER, SYMLINK, Entry
from ..walk import PAYLOAD, Child, Walk, note_entry
from . import structs as S
from .compress import DecompressError, decompress
from .content import COMPRESSED, HOLE, INLINE, PLAIN, ExtentSource, Piece
from .data import BtrfsData
from .index import TreeIndex
from .listing import NO_INODE_NOTE, files_columns
from .recovery import ORPHANS_NAME, Deleted, Gone, find_deleted
from .report import ReportMixin
from .rescue import lost_dir_note, rescue
from .subvols import BackRef, RootInfo, is_subvolume, parse_root_item, parse_root_ref, timespec
from .tree import KEY_MAX
from .treelog import LogReplay, log_replays, log_xattr_tree, replay_pieces
from .volume import fmt_uuid

if TYPE_CHECKING:
    from collections.abc import Hashable, Iterator

    import pandas as pd

    from .tree import Node

ROOT_DIR_INO = 256  # every FS tree's top directory
MAX_EXTENT_ITEMS = 1 << 22  # extent items one file may have before it is called hostile
MAX_NAME = 4095
MAX_DELETED_ROWS = 1_000_000
MAX_ROOT_TREE_ITEMS = 1 << 24  # subvolumes, refs and internal trees: far more is hostile
_F = S.INODE_FIELDS
_FT_KIND = {1: FILE, 2: DIR, 7: SYMLINK}
_MODE_KIND = {statmod.S_IFDIR: DIR, statmod.S_IFREG: FILE, statmod.S_IFLNK: SYMLINK}


class BtrfsFileSystem(ReportMixin, BtrfsData):
    """A Btrfs filesystem on one device (``source``) or several (``devices``)."""

    fstype = "btrfs"

    def __init__(self, source: ByteSource, *, name: str | None = None, strict: bool = True,
                 subvolume: int | str | None = None,
                 devices: list[ByteSource] | None = None) -> None:
        super().__init__(source, name=name, strict=strict)
        self._open_volume([source] + [d for d in (devices or []) if d is not source])
        self._load_roots()
        if subvolume is None:
            self.top = self.default_subvolume
        else:
            self.top = self._resolve_subvolume(subvolume)
        self.bad_logical: list[tuple[int, int]] = []  # data ranges failing their checksums
        self.copy_refused: list[int] = []  # sectors whose first copy failed: never copied raw
        self.old_roots: dict[tuple, RootInfo] = {}  # FS trees of older commits (recovery)
        self._deleted: Deleted | None = None
        self._indexes: dict[int, TreeIndex | None] = {}
        self._replays: dict[int, LogReplay] | None = None

    # --- the root tree: subvolumes ----------------------------------------------------
    def _load_roots(self) -> None:
        sb = self.sb
        self.roots: dict[int, RootInfo] = {}
        self.backrefs: dict[int, BackRef] = {}
        self.default_subvolume = S.FS_TREE_OBJECTID
        self.reloc_roots = 0
        count = 0
        for node, i in self.search(sb.root, sb.root_level):
            count += 1
            if count > MAX_ROOT_TREE_ITEMS:
                self.problem("root tree", node.bytenr, "too many items")
                break
            obj, typ, off = node.keys[i]
            if typ == S.ROOT_ITEM:
                if obj == S.TREE_RELOC_OBJECTID:
                    self.reloc_roots += 1
                    continue
                info = parse_root_item(obj, node.data(i), node.bytenr)
                if info is None:
                    self.problem("root tree", node.bytenr, f"ROOT_ITEM of tree {obj} too short")
                    continue
                self.roots[obj] = info  # the last (highest offset) one wins
            elif typ == S.ROOT_BACKREF and is_subvolume(obj):
                ref = parse_root_ref(node.data(i))
                if ref is None:
                    self.problem("root tree", node.bytenr, f"ROOT_BACKREF of {obj} cut short")
                    continue
                self.backrefs.setdefault(obj, BackRef(off, ref[0], ref[1], ref[2]))
            elif typ == S.DIR_ITEM and obj == S.ROOT_TREE_DIR_OBJECTID:
                for name, loc, _t, _v in self.dir_items(node.data(i), node.bytenr):
                    if name == b"default" and loc[0]:
                        self.default_subvolume = loc[0]
        if S.FS_TREE_OBJECTID not in self.roots:
            self.fail(CorruptImage, "the root tree has no FS tree (5)", "root tree", sb.root)
        if self.default_subvolume not in self.roots:
            self.finding("error", "root tree", sb.root,
                         f"default subvolume {self.default_subvolume} has no ROOT_ITEM; "
                         "showing the top level (5)")
            self.default_subvolume = S.FS_TREE_OBJECTID

    def _resolve_subvolume(self, which: int | str) -> int:
        if isinstance(which, int) and not isinstance(which, bool):
            if which in self.roots and is_subvolume(which):
                return which
            raise NotFound(f"{self.name}: no subvolume with id {which}")
        if isinstance(which, str):
            want = which.strip("/")
            if want.isdigit() and int(want) in self.roots and is_subvolume(int(want)):
                return int(want)
            for sid in self._subvol_ids():
                if self.subvolume_path(sid) == want:
                    return sid
            for sid in self._subvol_ids():  # a plain name when it is unique
                if sid in self.backrefs and self.backrefs[sid].name == want:
                    return sid
            raise NotFound(f"{self.name}: no subvolume named {which!r}")
        raise InvalidArgument(f"subvolume must be an id or a path, not {type(which).__name__}")

    def _subvol_ids(self) -> list[int]:
        return sorted(k for k in self.roots if is_subvolume(k))

    def subvolume_path(self, sid: int) -> str:
        """The subvolume's path from the top level (tree 5), '' for the top level."""
        parts: list[str] = []
        seen = set()
        while sid != S.FS_TREE_OBJECTID:
            if sid in seen or len(seen) > 4096:
                self.finding("error", "root tree", None, f"subvolume {sid}: backref loop")
                break
            seen.add(sid)
            ref = self.backrefs.get(sid)
            if ref is None:
                return "/".join(reversed(parts)) if parts else f"<unlinked {sid}>"
            parts.append(ref.name)
            parts.extend(reversed(self._dir_path(ref.parent, ref.dirid)))
            sid = ref.parent
        return "/".join(reversed(parts))

    def _dir_path(self, tree: int, ino: int) -> list[str]:
        """The names from the tree's top directory down to ``ino`` (via INODE_REFs)."""
        out: list[str] = []
        seen = set()
        while ino != ROOT_DIR_INO and ino not in seen and len(seen) < 4096:
            seen.add(ino)
            ref = self._first_ref(tree, ino)
            if ref is None:
                break
            parent, name = ref
            out.append(name)
            ino = parent
        return list(reversed(out))

    def _first_ref(self, tree: int, ino: int) -> tuple[int, str] | None:
        for node, i in self._items(tree, (ino, S.INODE_REF, 0), (ino, S.INODE_REF, KEY_MAX[2])):
            data = node.data(i)
            n = S.INODE_REF_FMT.size
            if len(data) >= n:
                _index, name_len = S.INODE_REF_FMT.unpack_from(data, 0)
                return node.keys[i][2], bytes(data[n:n + name_len]).decode(
                    "utf-8", "surrogateescape")
        return None

    def subvolumes(self) -> pd.DataFrame:
        """Every subvolume and snapshot: id, name, path, parent, generation, uuid,
        parent_uuid (set for snapshots), readonly, created, default."""
        import pandas as pd

        rows = []
        for sid in self._subvol_ids():
            r = self.roots[sid]
            ref = self.backrefs.get(sid)
            rows.append(dict(
                id=sid, name=ref.name if ref else ("<top level>" if sid == 5 else None),
                path="/" + self.subvolume_path(sid), parent=ref.parent if ref else pd.NA,
                generation=r.generation,
                uuid=fmt_uuid(r.uuid) if any(r.uuid) else None,
                parent_uuid=fmt_uuid(r.parent_uuid) if any(r.parent_uuid) else None,
                readonly=r.readonly, created=r.otime, default=sid == self.default_subvolume))
        df = pd.DataFrame(rows, columns=["id", "name", "path", "parent", "generation", "uuid",
                                         "parent_uuid", "readonly", "created", "default"])
        df["parent"] = df["parent"].astype("Int64")
        for c in ("name", "path", "uuid", "parent_uuid"):
            df[c] = df[c].astype("string")
        df["created"] = pd.to_datetime(df["created"], utc=True)
        return df

    def subvolume(self, which: int | str) -> BtrfsFileSystem:
        """A view of subvolume ``which`` (id, or path from the top level) as the root."""
        view = copy.copy(self)
        view.top = self._resolve_subvolume(which)
        return view

    # --- items ------------------------------------------------------------------------
    def _tree_root(self, tree) -> RootInfo:
        r = self.roots.get(tree) or self.old_roots.get(tree)
        if r is None:
            self.fail(NotFound, f"tree {tree} has no ROOT_ITEM", "root tree", self.sb.root)
        return r

    def _items(self, tree: int, lo, hi, missed: list | None = None):
        """Items of ``tree`` in ``[lo, hi]``; blocks that could not be read (salvage) are
        skipped, their addresses appended to ``missed`` when given."""
        r = self._tree_root(tree)
        get = self.node
        if missed is not None:
            def get(bytenr, level, _node=self.node):
                n = _node(bytenr, level)
                if n is None:
                    missed.append(bytenr)
                return n
        return self.search(r.bytenr, r.level, lo, hi, get=get)

    def tree_items(self, tree, lo, hi) -> Iterator[tuple[Node, int]]:
        """(leaf, index) of the items of ``tree`` (a tree id, or a key of ``old_roots``) in
        ``[lo, hi]``."""
        return self._items(tree, lo, hi)

    def tree_index(self, tree: int) -> TreeIndex | None:
        """A subvolume's inodes and directories from one pass over its tree (cached; None
        when its tree cannot be read in salvage mode)."""
        if tree not in self._indexes:
            try:
                self._indexes[tree] = idx = TreeIndex(self, tree)
                rescue(self, tree, idx)  # inodes no name reaches: names lost with a leaf
            except VDInspectError as e:
                if self.strict and not isinstance(e, CorruptImage):
                    raise
                self.finding("error", "FS tree", None, f"subvolume {tree} unreadable: {e}")
                self._indexes[tree] = None
        return self._indexes[tree]

    def deleted_index(self) -> Deleted:
        """Deleted entries found through older tree roots and orphan items (cached)."""
        if self._deleted is None:
            built = [ix.plain for ix in self._indexes.values() if ix is not None]
            self._deleted = find_deleted(self, self.tree_index, built)
        return self._deleted

    def deleted_entries(self, sid: int, dir_ino: int | None) -> list[Entry]:
        """The deleted children of directory ``dir_ino`` of subvolume ``sid`` (None: the
        subvolume's orphans)."""
        found = self.deleted_index()
        gone = (self.orphan_gone(sid) if dir_ino is None
                else found.children.get((sid, dir_ino), []))
        out = []
        for g in gone:
            e = self._entry(g.name, g.tree, g.ino, S.INODE_ITEM_FMT.unpack(g.rec), g.ftype)
            e.deleted, e.recoverable, e.found_by, e.note = (g.deleted, g.recoverable,
                                                            g.found_by, g.note)
            e.extra["subvolume"] = sid
            out.append(e)
        return out

    def orphan_gone(self, sid: int) -> list[Gone]:
        """What a subvolume's ``$OrphanFiles`` holds: orphan items' inodes, and inodes in
        use that no name reaches (known once its tree was read whole, as a damaged volume's
        is: see ``volume_damaged``)."""
        idx = self._indexes.get(sid)
        return self.deleted_index().orphans.get(sid, []) + (idx.unnamed if idx else [])

    def orphan_dir_entry(self, sid: int) -> Entry:
        """The virtual ``$OrphanFiles`` directory of a subvolume with orphan items."""
        return Entry(name=ORPHANS_NAME, kind=DIR, deleted=True, key=("orphans", sid),
                     found_by="inode-table", extra={"subvolume": sid},
                     note="virtual directory (The Sleuth Kit's $OrphanFiles): inodes "
                          "unlinked while open, kept by orphan items")

    def log_replay(self, tree) -> LogReplay | None:
        """What the tree log adds to subvolume ``tree`` (None: no log for it)."""
        if not self.sb.log_root or not isinstance(tree, int):
            return None
        if self._replays is None:
            self._replays = log_replays(self)
        return self._replays.get(tree)

    def inode_item(self, tree: int, ino: int) -> tuple | None:
        """The INODE_ITEM fields (INODE_FIELDS order) of ``ino`` in ``tree``, or None
        (the tree log's copy when it holds one: replayed)."""
        rp = self.log_replay(tree)
        if rp is not None and ino in rp.inodes:
            return S.INODE_ITEM_FMT.unpack(rp.inodes[ino])
        for node, i in self._items(tree, (ino, S.INODE_ITEM, 0), (ino, S.INODE_ITEM, 0)):
            data = node.data(i)
            if len(data) < S.INODE_ITEM_SIZE:
                self.problem(f"inode {ino}", node.bytenr, "INODE_ITEM cut short")
                return None
            return S.INODE_ITEM_FMT.unpack_from(data, 0)
        return None

    def dir_items(self, data: bytes, where: int) -> Iterator[tuple[bytes, tuple[int, int, int], int, bytes]]:
        """(name, location key, type, value) of each entry packed in a DIR_ITEM/INDEX or
        XATTR_ITEM's data."""
        pos, n = 0, len(data)
        hdr = S.DIR_ITEM_FMT.size
        while pos + hdr <= n:
            (lo, lt, loff, _transid, data_len, name_len,
             ftype) = S.DIR_ITEM_FMT.unpack_from(data, pos)
            end = pos + hdr + name_len + data_len
            if end > n or name_len > MAX_NAME:
                self.problem("directory item", where, "entry runs past its item")
                return
            name = bytes(data[pos + hdr:pos + hdr + name_len])
            yield name, (lo, lt, loff), ftype, bytes(data[pos + hdr + name_len:end])
            pos = end

    # --- entries ------------------------------------------------------------------------
    def root(self) -> Entry:
        tree = self.top
        r = self._tree_root(tree)
        ino = r.root_dirid or ROOT_DIR_INO
        rec = self.inode_item(tree, ino)
        if rec is None:
            self.fail(CorruptImage, f"subvolume {tree} has no root directory inode {ino}",
                      "FS tree", r.bytenr)
        e = self._entry("", tree, ino, rec, 2)
        e.path = "/"
        return e

    def _entry(self, name: str, tree: int, ino: int, rec: tuple | None, ftype: int) -> Entry:
        if rec is None:
            kind = _FT_KIND.get(ftype, OTHER)
            return Entry(name=name, kind=kind, inode=ino, key=(tree, ino),
                         note=None if kind == DIR else NO_INODE_NOTE,
                         extra={"subvolume": tree})
        mode = rec[_F["mode"]]
        kind = _MODE_KIND.get(statmod.S_IFMT(mode)) or (OTHER if mode else
                                                        _FT_KIND.get(ftype, OTHER))
        e = Entry(
            name=name, kind=kind, size=rec[_F["size"]], allocated=rec[_F["nbytes"]],
            mode=mode, uid=rec[_F["uid"]], gid=rec[_F["gid"]],
            created=timespec(rec[_F["otime_sec"]], rec[_F["otime_nsec"]]),
            modified=timespec(rec[_F["mtime_sec"]], rec[_F["mtime_nsec"]]),
            accessed=timespec(rec[_F["atime_sec"]], rec[_F["atime_nsec"]]),
            changed=timespec(rec[_F["ctime_sec"]], rec[_F["ctime_nsec"]]),
            inode=ino, links=rec[_F["nlink"]], key=(tree, ino), raw=rec,
            extra={"subvolume": tree})
        if kind == SYMLINK:
            try:
                src = self._content(tree, ino, min(e.size, 4096), f"inode {ino}")
                e.target = src.read(0, src.size).split(b"\0", 1)[0].decode(
                    "utf-8", "surrogateescape")
            except VDInspectError:
                if self.strict:
                    raise
        return e

    def list_dir(self, entry: Entry) -> list[Entry]:
        if entry.kind != DIR or not isinstance(entry.key, tuple):
            raise InvalidArgument(f"{self.name}: {entry.path or entry.name} is not a directory")
        tree, ino = entry.key
        if tree == "orphans":
            return self.deleted_entries(ino, None)
        if isinstance(tree, tuple):  # a deleted directory, read from an older tree
            return self.deleted_entries(tree[2], ino)
        out = self._live_children(tree, ino)
        if ino is not None and tree in self.roots:
            out += self.deleted_entries(tree, ino)
            if ino == (self.roots[tree].root_dirid or ROOT_DIR_INO) and \
                    self.orphan_gone(tree):
                out.append(self.orphan_dir_entry(tree))
        return out

    def _live_children(self, tree: int, ino: int) -> list[Entry]:
        out = []
        lo, hi = (ino, S.DIR_INDEX, 0), (ino, S.DIR_INDEX, KEY_MAX[2])
        missed: list[int] = []
        for node, i in self._items(tree, lo, hi, missed):
            for raw, loc, ftype, _v in self.dir_items(node.data(i), node.bytenr):
                name = raw.decode("utf-8", "surrogateescape")
                if not raw or b"/" in raw or raw in (b".", b".."):
                    self.problem("DIR_INDEX", node.bytenr, f"bad name {raw!r} in directory "
                                 f"{ino} of tree {tree}")
                    continue
                if loc[1] == S.ROOT_ITEM:  # a subvolume linked here
                    out.append(self._subvol_entry(name, loc[0]))
                    continue
                if loc[1] != S.INODE_ITEM:
                    self.problem("DIR_INDEX", node.bytenr, f"{name!r}: location type {loc[1]}")
                    continue
                rec = self.inode_item(tree, loc[0])
                if rec is None:
                    self.problem("DIR_INDEX", node.bytenr,
                                 f"{name!r} names inode {loc[0]} which has no INODE_ITEM")
                out.append(self._entry(name, tree, loc[0], rec, ftype))
        idx = self.tree_index(tree) if missed else None
        for raw, lobj, _t, ftype in (idx.dirs.get(ino, ()) if idx else ()):
            if (ino, raw) in idx.rescued:  # lost with the unreadable leaf: by back reference
                e = self._entry(raw.decode("utf-8", "surrogateescape"), tree, lobj,
                                S.INODE_ITEM_FMT.unpack(idx.inodes[lobj]), ftype)
                e.found_by, e.note = "backup", idx.rescued[(ino, raw)]
                out.append(e)
        for e in out:
            if e.kind == DIR and e.key[0] == tree and self._lost_dir(tree, e.key[1]):
                e.note = lost_dir_note(self._indexes[tree].lost_dirs[e.key[1]])
        rp = self.log_replay(tree)
        if rp is None:
            return out
        idx = self.tree_index(tree)  # names the log's replay removes: shown deleted
        gone = {} if idx is None else {
            (idx.names[i].decode("utf-8", "surrogateescape"), int(idx.loc[i])): idx.notes[i]
            for i in idx.children(ino, removed=True).tolist() if not idx.live[i]}
        for e in out:
            why = gone.get((e.name, e.inode))
            if why is not None:
                e.deleted, e.found_by, e.note = True, "journal", why
                e.recoverable = e.kind == FILE and e.raw is not None
        if ino in rp.dirs:  # names the tree log adds (replayed)
            have = {(e.name, e.inode) for e in out}
            for raw, lobj, ltype, ftype in rp.dirs[ino]:
                name = raw.decode("utf-8", "surrogateescape")
                if (name, lobj) in have or ltype != S.INODE_ITEM:
                    continue
                have.add((name, lobj))
                e = self._entry(name, tree, lobj, self.inode_item(tree, lobj), ftype)
                e.found_by, e.note = "journal", "replayed from the tree log (fsync'd)"
                out.append(e)
        return out

    def _lost_dir(self, tree: int, ino: int | None) -> bool:
        idx = self._indexes.get(tree)
        return idx is not None and ino in idx.lost_dirs

    def volume_damaged(self) -> bool:
        """Damaged ranges below, or (salvage mode) tree blocks of the shown subvolume that
        fail their checks: its tree is read whole once to know."""
        if super().volume_damaged():
            return True
        if not self.strict:
            self.tree_index(self.top)
        return bool(self.bad_blocks)

    def directory_damage(self, entry: Entry) -> int:
        """Bytes of unreadable tree blocks holding part of a directory's index."""
        if not isinstance(entry.key, tuple) or not isinstance(entry.key[0], int) or \
                entry.key[1] is None or entry.kind != DIR:
            return 0
        tree, ino = entry.key
        missed: list[int] = []
        for _x in self._items(tree, (ino, S.DIR_INDEX, 0), (ino, S.DIR_INDEX, KEY_MAX[2]),
                              missed):
            pass
        return self.nodesize * len(set(missed))

    def _subvol_entry(self, name: str, sid: int) -> Entry:
        r = self.roots.get(sid)
        if r is None:  # a deleted subvolume's stale entry: mount shows an empty directory
            return Entry(name=name, kind=DIR, key=(sid, None), extra={"subvolume": sid})
        ino = r.root_dirid or ROOT_DIR_INO
        try:
            rec = self.inode_item(sid, ino)
        except VDInspectError:
            if self.strict:
                raise
            rec = None
        return self._entry(name, sid, ino, rec, 2)

    def dir_id(self, entry: Entry) -> Hashable | None:
        return entry.key

    def files(self, path: str = "/", *, recursive: bool = True,
              deleted: bool = True) -> pd.DataFrame:
        """The ``files()`` frame; a recursive listing reads each FS tree once (see
        :mod:`.listing`). Extra column: ``subvolume`` (the tree id each entry lives in)."""
        top = self.lookup(path)
        if not recursive or top.kind != DIR or not isinstance(top.key, tuple) or (
                top.key[1] is None):
            return super().files(path, recursive=recursive, deleted=deleted)
        from ...frames import files_columns_frame

        cols, keys = files_columns(self, top)

        def entries() -> list[Entry]:  # only asked for when the volume has damaged ranges
            return [Entry(name=nm, kind=k, size=s or 0, path=p, inode=key[1], key=key)
                    for nm, k, s, p, key in zip(cols["name"], cols["kind"].tolist(),
                                                cols["size"].tolist(), cols["path"], keys)]
        cols["damaged"] = self.damaged_column(cols["kind"], entries)
        df = files_columns_frame(cols, {"subvolume": "Int64"})
        return self._with_deleted(df, top) if deleted else df

    def _with_deleted(self, df: pd.DataFrame, top: Entry) -> pd.DataFrame:
        """``df`` and, after it, the deleted entries below the directories it lists."""
        found = self.deleted_index()
        orphaned = [sid for sid in self.roots if self.orphan_gone(sid)]
        if not found.count and not orphaned:
            return df
        import pandas as pd

        from ...frames import entry_columns, files_columns_frame

        dirs = {top.key: "/" if top.path in ("", "/") else top.path}
        d = df[df.kind == "dir"]
        dirs.update(zip(zip(d.subvolume.tolist(), d.inode.tolist()), d.path.tolist()))
        starts = [(e, dirs[k]) for k in list(found.children) if k in dirs
                  for e in self.deleted_entries(*k)]
        starts += [(self.orphan_dir_entry(sid), dirs[(sid, self.roots[sid].root_dirid or
                                                      ROOT_DIR_INO)])
                   for sid in orphaned if (sid, self.roots[sid].root_dirid or
                                                ROOT_DIR_INO) in dirs]
        rows = self._deleted_walk(starts)
        if not rows:
            return df
        cols = entry_columns(rows, extra=False)
        cols["damaged"] = self.damaged_column(cols["kind"], lambda: rows)
        cols["subvolume"] = [e.extra.get("subvolume") for e in rows]
        extra = files_columns_frame(cols, {"subvolume": "Int64"})
        return pd.concat([df, extra[df.columns]], ignore_index=True)

    def _deleted_walk(self, starts: list[tuple[Entry, str]]) -> list[Entry]:
        """The deleted entries ``starts`` (each with its live parent's path) and what the
        deleted directories among them hold, through the one walk (:mod:`..walk`: loops,
        second names, depth and unlistable directories as for every listing)."""
        kids = []
        for e, parent in starts:
            e.parent, e.path = parent, ("/" if parent == "/" else parent + "/") + e.name
            kids.append(self.entry_child(e))
        top: Child = ("", True, None, False, None, None)  # stands above every start

        def children(d: Child):
            return kids if d is top else self.entry_children(d)
        rows: list[Entry] = []
        for _d, listed in Walk(self, top, children, listable=self.entry_listable,
                               note=note_entry):
            rows += [c[PAYLOAD] for c in listed]
            if len(rows) > MAX_DELETED_ROWS:
                self.finding("warning", "deleted entries", None, f"more than "
                             f"{MAX_DELETED_ROWS} deleted entries; the rest not listed")
                return rows[:MAX_DELETED_ROWS]
        return rows

    def hardlink_key(self, entry: Entry) -> Hashable | None:
        if entry.kind != FILE or not entry.links or entry.links < 2:
            return None
        return entry.key

    # --- content ------------------------------------------------------------------------
    def content(self, entry: Entry) -> ByteSource:
        if entry.kind == DIR:
            raise InvalidArgument(f"{self.name}: {entry.path} is a directory")
        if not isinstance(entry.key, tuple) or entry.key[1] is None:
            raise NotFound(f"{self.name}: {entry.path or entry.name} has no inode")
        tree, ino = entry.key
        if not entry.deleted and self.inode_item(tree, ino) is None:
            raise CorruptImage(f"{entry.path or entry.name}: {NO_INODE_NOTE}",
                               path=self.name, structure=f"inode {ino} of tree {tree}")
        return self._content(tree, ino, entry.size, entry.path or f"inode {ino}")

    def _content(self, tree: int, ino: int, size: int, name: str) -> ExtentSource:
        rec = self.inode_item(tree, ino)
        verify = not (rec is not None and rec[_F["flags"]] & S.INODE_NODATASUM)
        missed: list[int] = []
        src = ExtentSource(self, self.pieces(tree, ino, missed), size, f"{self.name}:{name}",
                           verify)
        if missed:  # part of the extent map is in an unreadable block: nothing is sure
            src.bad.append((0, size))
        return src

    def pieces(self, tree: int, ino: int, missed: list | None = None) -> list[Piece]:
        """The file's extent items as Pieces, in file order (with the extents the tree
        log holds laid over them: replayed)."""
        rp = self.log_replay(tree)
        if rp is not None and (ino in rp.extents or ino in rp.inodes):
            logged = self._tree_pieces(rp.key, ino, missed) if ino in rp.extents else []
            return replay_pieces(self._tree_pieces(tree, ino, missed), logged,
                                 rp.inodes.get(ino), self.sectorsize)
        return self._tree_pieces(tree, ino, missed)

    def _tree_pieces(self, tree, ino: int, missed: list | None = None) -> list[Piece]:
        out: list[Piece] = []
        lo, hi = (ino, S.EXTENT_DATA, 0), (ino, S.EXTENT_DATA, KEY_MAX[2])
        head = S.FILE_EXTENT_FMT.size
        for node, i in self._items(tree, lo, hi, missed):
            if len(out) >= MAX_EXTENT_ITEMS:
                self.problem(f"inode {ino}", node.bytenr, "too many extent items")
                break
            start = node.keys[i][2]
            data = node.data(i)
            if len(data) < head:
                self.problem(f"inode {ino}", node.bytenr, "EXTENT_DATA cut short")
                continue
            _gen, ram, codec, encr, other, etype = S.FILE_EXTENT_FMT.unpack_from(data, 0)
            if encr or other:
                self.problem(f"inode {ino}", node.bytenr, "encrypted or encoded extent; "
                             "read as zeros")
                continue
            if etype == 0:  # inline
                body = bytes(data[head:])
                if codec:
                    try:
                        body = decompress(codec, body, ram, self.sectorsize)
                    except DecompressError as e:
                        self.problem(f"inode {ino}", node.bytenr, f"inline extent: {e}")
                        body = b""
                else:
                    body = body[:ram] if ram else body
                out.append(Piece(start, max(ram, len(body)), INLINE, data=body,
                                 item=node.bytenr))
                continue
            if len(data) < S.FILE_EXTENT_SIZE:
                self.problem(f"inode {ino}", node.bytenr, "EXTENT_DATA cut short")
                continue
            addr, disk_len, off, num = S.FILE_EXTENT_REGULAR_FMT.unpack_from(data, head)
            if etype == 2 or addr == 0:
                out.append(Piece(start, num, HOLE, item=node.bytenr))
            elif etype != 1:
                self.problem(f"inode {ino}", node.bytenr, f"unknown extent type {etype}")
            elif codec:
                if off + num > ram:
                    self.problem(f"inode {ino}", node.bytenr, "extent range past the "
                                 "decompressed size")
                out.append(Piece(start, num, COMPRESSED, addr=addr, offset=off,
                                 disk_len=disk_len, ram=ram, codec=codec, item=node.bytenr))
            else:
                out.append(Piece(start, num, PLAIN, addr=addr + off, item=node.bytenr))
        return out

    # --- extended attributes -------------------------------------------------------------
    def xattrs(self, path: str | Entry) -> dict[str, bytes]:
        """Extended attributes of a file (XATTR_ITEMs; the tree log's for an inode it
        holds), name -> value."""
        e = path if isinstance(path, Entry) else self.lookup(path)
        if not isinstance(e.key, tuple) or e.key[1] is None:
            return {}
        tree, ino = e.key
        tree = log_xattr_tree(self.log_replay(tree), tree, ino)  # replayed
        out: dict[str, bytes] = {}
        lo, hi = (ino, S.XATTR_ITEM, 0), (ino, S.XATTR_ITEM, KEY_MAX[2])
        for node, i in self._items(tree, lo, hi):
            for name, _loc, _t, value in self.dir_items(node.data(i), node.bytenr):
                out.setdefault(name.decode("utf-8", "surrogateescape"), value)
        return out


def open_filesystem(source: ByteSource, *, name: str | None = None, strict: bool = True,
                    subvolume: int | str | None = None,
                    devices: list[ByteSource] | None = None) -> BtrfsFileSystem:
    """Open the Btrfs filesystem on ``source`` (plus ``devices`` for a multi-device one).

    ``subvolume`` (an id, or a path from the top level) picks the subvolume shown as the
    root; the default subvolume otherwise. ``fs.subvolume(x)`` opens another later.
    """
    return BtrfsFileSystem(source, name=name, strict=strict, subvolume=subvolume,
                           devices=devices)

