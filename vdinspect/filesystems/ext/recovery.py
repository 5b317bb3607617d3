"""Deleted files: whether a removed entry's content can still be read, and the inodes no
directory names (listed under ``/$OrphanFiles`` as The Sleuth Kit does).
"""

from __future__ import annotations

from collections.abc import Iterable

from construct import Int32ul, Struct

from ...errors import CorruptImage, InvalidArgument, VDInspectError
from ...layout import size_of
from ...lazy import np
from ..base import DIR, Entry
from . import superblock as S
from .dirs import FT_DIR
from .extents import EXTENT_HEADER, EXTENT_MAGIC
from .groups import BG_INODE_UNINIT
from .inode import FL_EA_INODE, ROOT_INO, InodeRecord, inode_dtype
from .listing import EXTRA_COLUMNS

ORPHAN_DIR_NAME = "$OrphanFiles"

OrphanBlockTail = Struct(
    "ob_magic" / Int32ul * "0x0b10ca04",
    "ob_checksum" / Int32ul * "crc32c of the block (metadata_csum)",
)  # the last 8 bytes of each orphan file block; __le32 inode numbers fill the rest
ORPHAN_BLOCK_MAGIC = 0x0B10CA04
_TAIL = OrphanBlockTail.sizeof()
_MAGIC_SIZE = size_of(OrphanBlockTail, "ob_magic")
MAX_ORPHANS = 1 << 16  # orphan list entries examined (a hostile chain is capped)
# the reasons recoverability() gives for a record whose mapping the deletion wiped
_WIPED = ("extent tree cleared", "block pointers cleared", "size is 0", "inode is empty",
          "no blocks mapped")


class RecoveryMixin:
    """Deleted entries and orphan inodes of :class:`ExtFileSystem`."""

    _orphans: list[Entry] | None = None
    #: orphan candidates of the inode-table pieces the column walk read, by (group,
    #: piece); a dict only while a walk that lists $OrphanFiles runs
    piece_orphans: dict | None = None
    _orphan_list: dict[int, str] | None = None

    # --- the orphan list: files deleted while still open -----------------------------
    def orphan_list(self) -> dict[int, str]:
        """Inodes on the orphan list (unlinked while a process still had them open; the
        kernel frees them at the last close or at the next mount), and where each was
        found: the ``s_last_orphan`` chain (linked through ``i_dtime``) or the orphan file.
        Their blocks are still allocated, to them: their content is their own."""
        if self._orphan_list is None:
            with self.probing():
                self._orphan_list = self._read_orphan_list()
        return self._orphan_list

    def _read_orphan_list(self) -> dict[int, str]:
        out: dict[int, str] = {}
        sb = self.sb
        ino = sb.raw.s_last_orphan
        where = sb.offset + S.SB_AT["s_last_orphan"]
        while ino:
            if ino in out or not sb.first_ino <= ino <= sb.inodes_count:
                self.finding(
                    "warning",
                    "orphan list",
                    where,
                    f"the orphan chain reaches inode {ino} "
                    + ("again (a loop)" if ino in out else "(out of range)")
                    + "; not followed further",
                )
                break
            if len(out) >= MAX_ORPHANS:
                self.finding(
                    "warning", "orphan list", where,
                    f"more than {MAX_ORPHANS} inodes on the orphan chain; the rest not examined",
                )
                break
            try:
                rec = self.inode(ino)
            except CorruptImage:
                break
            # an inode with links is only being truncated (a live file): not deleted
            out[ino] = "s_last_orphan chain" if not rec.links else ""
            where = rec.offset
            ino = rec.dtime  # i_dtime of an orphan is the next orphan's number
        if sb.compat & S.COMPAT_ORPHAN_FILE and sb.raw.s_orphan_file_inum:
            self._read_orphan_file(sb.raw.s_orphan_file_inum, out)
        return out

    def _read_orphan_file(self, fino: int, out: dict[int, str]) -> None:
        bs = self.block_size
        magic = ORPHAN_BLOCK_MAGIC.to_bytes(_MAGIC_SIZE, "little")
        try:
            rec = self.inode(fino)
            size = min(rec.size, 1024 * bs)  # the kernel's orphan file is a few blocks
            data = self.content_of(rec, size).read(0, size)
        except (CorruptImage, InvalidArgument):
            return
        for b in range(size // bs):
            block = data[b * bs : (b + 1) * bs]
            if block[bs - _TAIL : bs - _TAIL + _MAGIC_SIZE] != magic:
                continue
            nums = np.frombuffer(block, dtype="<u4", count=(bs - _TAIL) // 4)
            for ino in nums[nums != 0].tolist():
                if len(out) >= MAX_ORPHANS:
                    return
                if self.sb.first_ino <= ino <= self.sb.inodes_count:
                    out.setdefault(ino, f"orphan file, inode {fino}")
        for ino in [i for i, why in out.items() if not why]:
            del out[ino]

    def deleted_entry(self, name: str, ino: int, ftype: int) -> Entry:
        try:
            rec = self.inode(ino)
        except CorruptImage as exc:
            return self.make_entry(
                name, None, True, ftype=ftype, ino=ino, note=f"inode unreadable: {exc}"
            )
        rec, recoverable, note, how = self.recover_record(rec)
        e = self.make_entry(name, rec, True, ftype=ftype, note=note, recoverable=recoverable)
        if how:
            e.found_by = how
        return e

    def recover_record(self, rec: InodeRecord) -> tuple[InodeRecord, bool, str, str | None]:
        """A deleted inode's record to recover from, whether its content can be read,
        why, and how it was found (None: the record itself; ``journal``: its wiped
        mapping restored from an older copy of its inode-table block in the journal,
        the method of extundelete and ext4magic)."""
        ok, why = self.recoverability(rec)
        if ok or self.journal is None or not any(w in why for w in _WIPED):
            return rec, ok, why, None
        got = self.inode_from_journal(rec.number)
        if got is None:
            return rec, ok, why + "; no older copy of the inode in the journal maps content", None
        old, seq = got
        if rec.mode and old.generation != rec.generation:
            return rec, ok, why + (
                f"; the journal's copy (transaction {seq}) is of an earlier file that "
                "used the same inode (another generation)"
            ), None
        ok2, why2 = self.recoverability(old)
        where = f"journal transaction {seq}"
        if not ok2:
            return rec, ok, f"{why}; the inode's copy in {where}: {why2}", None
        return old, True, (
            f"{why.split(':')[0]}; the inode as it was before, from the copy of its "
            f"inode-table block in {where}, maps its blocks and they are free"
        ), "journal"

    def recoverability(self, rec: InodeRecord) -> tuple[bool, str]:
        """Whether a deleted file's content can still be read, and why (not)."""
        if rec.is_empty or rec.mode == 0:
            return False, "the inode is empty (never used or wiped)"
        orphan = self.orphan_list().get(rec.number)
        if self.inode_allocated(rec.number) and rec.links > 0 and not rec.dtime:
            return False, (
                "the inode is in use again (reallocated, or another name still "
                "links it): its content belongs to the current file"
            )
        if not (rec.is_reg or rec.is_dir or rec.is_symlink):
            return False, "not a regular file, directory or symlink: no content"
        if rec.inline:
            return (rec.size > 0), "inline data kept in the inode"
        if rec.is_symlink and self.is_fast_symlink(rec):
            return True, "fast symlink: the target is kept in the inode"
        if rec.size == 0:
            return False, (
                "size is 0: the kernel truncates a file when it is deleted, so the content is gone"
            )
        if rec.uses_extents:
            magic, entries, _max, _depth, _gen = EXTENT_HEADER.unpack_from(rec.i_block, 0)
            if magic == EXTENT_MAGIC and entries == 0:
                return False, (
                    "extent tree cleared on deletion (ext4): content not recoverable from the inode"
                )
        elif not any(rec.i_block):
            return False, "block pointers cleared on deletion (ext3): content not recoverable"
        try:
            with self.probing():
                bmap = self.block_map(rec)
        except CorruptImage as exc:
            return False, f"the block map is damaged: {exc.detail}"
        runs = bmap.data_runs()
        if not runs:
            return False, "no blocks mapped: content not recoverable"
        if orphan is not None:
            return True, (
                f"on the orphan list ({orphan}): deleted while still open; its blocks are "
                "still allocated to it, so the content is its own"
            )
        used = sum(self.blocks_allocated(p, c) for p, c in runs)
        if used:
            return False, (
                f"{used} of {bmap.mapped_blocks} blocks are allocated again: the "
                "content has been (partly) overwritten"
            )
        return True, "block map intact and its blocks unallocated: content likely recoverable"

    # --- orphans -----------------------------------------------------------------------
    def orphan_dir_entry(self) -> Entry:
        return Entry(
            name=ORPHAN_DIR_NAME,
            kind=DIR,
            size=0,
            inode=self.sb.inodes_count + 1,
            deleted=True,
            recoverable=False,
            key=("orphans",),
            found_by="inode-table",
            note="virtual directory (The Sleuth Kit's $OrphanFiles): inodes "
            "that no directory entry names",
            extra=dict.fromkeys(EXTRA_COLUMNS),
        )

    @property
    def orphans_found(self) -> bool:
        """Whether the orphan search has run already (its answer is kept)."""
        return self._orphans is not None

    def orphans(self) -> list[Entry]:
        """Inodes no directory entry (live or deleted) names, as ``OrphanFile-<inode>``.

        As The Sleuth Kit: unallocated inodes with a change time; also allocated inodes
        past the reserved ones that nothing names (e2fsck would move them to lost+found).
        """
        if self._orphans is None:
            defer, self.column_walk = self.column_walk, 0
            try:
                with self.probing():
                    self._orphans = self._find_orphans()
            finally:
                self.column_walk = defer
        return self._orphans

    def _named_inodes(self, start: Iterable[int], seen_dirs: set[int]) -> list[int]:
        """The inode numbers (repeats and 0 included) the entries of the directories
        reachable from ``start`` name, adding those directories to ``seen_dirs``."""
        named: list[int] = []
        stack = list(start)
        typed = self.filetype
        while stack:
            ino = stack.pop()
            if ino in seen_dirs:
                continue
            seen_dirs.add(ino)
            try:
                rec = self.inode(ino)
                if not rec.is_dir:
                    continue
                inos, types = self.dir_inodes(rec)
            except (CorruptImage, InvalidArgument):
                continue
            named += inos
            if typed:  # the entries say which are directories
                if FT_DIR in types:
                    stack += [i for i, t in zip(inos, types)
                              if i and t == FT_DIR and i not in seen_dirs]
                continue
            for i in inos:
                if i and self._maybe_dir(i) and i not in seen_dirs:
                    stack.append(i)
        return named

    def _maybe_dir(self, ino: int) -> bool:
        try:
            return self.inode(ino).is_dir
        except CorruptImage:
            return False

    def _special_inodes(self) -> set[int]:
        r = self.sb.raw
        return {
            r.s_journal_inum,
            r.s_usr_quota_inum,
            r.s_grp_quota_inum,
            r.s_prj_quota_inum,
            r.s_orphan_file_inum,
            r.s_snapshot_inum,
        } - {0}

    def _orphan_group(self, g: int) -> int:
        """How many of group ``g``'s inode records the orphan search reads (0: none)."""
        if not self.itable_ok[g]:
            return 0
        csum = self.sb.metadata_csum or self.sb.gdt_csum
        if csum and int(self.gd["bg_flags"][g]) & BG_INODE_UNINIT:
            return 0
        ipg = self.inodes_per_group
        used = ipg - (int(self.gd["bg_itable_unused"][g]) if csum else 0)
        return max(0, min(used, ipg))

    def _pieces_reusable(self, g: int) -> bool:
        """Whether group ``g``'s table is read in the walk's pieces (a volume without
        damage, the whole table inside it), else in one read."""
        table = int(self.gd["bg_inode_table"][g]) * self.block_size
        return not self.volume_damaged() and (
            table + self.inodes_per_group * self.inode_size <= self.dev.size)

    def _piece_orphans(self, g: int, at: int, raw: bytes,
                       bm: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The inodes of records ``raw`` (from number ``at`` in group ``g``) that TSK
        (unallocated, with a change time) or e2fsck (allocated, in use) would list if
        nothing named them, and whether each is allocated."""
        isz = self.inode_size
        count = len(raw) // isz
        recs = np.frombuffer(raw, dtype=inode_dtype(isz), count=count)
        alloc = np.zeros(count, dtype=bool) if bm is None else bm[at : at + count]
        tsk = (~alloc) & (recs["i_ctime"] != 0)
        unnamed_live = alloc & ((recs["i_links_count"] > 0) | (recs["i_mode"] != 0))
        idx = np.flatnonzero(tsk | unnamed_live)
        return idx + (g * self.inodes_per_group + at + 1), alloc[idx]

    def note_piece(self, g: int, chunk: int, data: bytes) -> None:
        """A piece of an inode table the walk has just read: its orphan candidates
        worked out now (``piece_orphans``), so the orphan search does not read it again."""
        got = self.piece_orphans
        try:
            used = self._orphan_group(g)
            per, isz = self.itable_piece, self.inode_size
            if chunk * per >= used or not self._pieces_reusable(g):
                return
            n = min(per, used - chunk * per)
            got[(g, chunk)] = self._piece_orphans(g, chunk * per, data[: n * isz],
                                                  self.bitmap("inode", g))
        except VDInspectError:
            return  # left to the orphan search, which meets it as before

    def _find_orphans(self) -> list[Entry]:
        seen_dirs: set[int] = set()
        named = self._named_inodes([ROOT_INO], seen_dirs)
        special = self._special_inodes()
        first = self.sb.first_ino
        isz = self.inode_size
        per = self.itable_piece
        done, self.piece_orphans = self.piece_orphans or {}, None  # what we read: not noted
        found: list[np.ndarray] = []  # per piece: the inodes TSK or e2fsck would list
        allocated: list[np.ndarray] = []  # and whether each is allocated
        for g in range(self.group_count):
            used = self._orphan_group(g)
            if not used:
                continue
            if self._pieces_reusable(g):
                pieces = range(-(-used // per))
                try:  # the pieces the walk did not read (all of them, or none, are used)
                    todo = {c: self.itable_chunk(g, c)[1] for c in pieces
                            if (g, c) not in done}
                except CorruptImage:
                    continue
                bm = self.bitmap("inode", g) if todo else None
                for c in pieces:
                    got = done.get((g, c))
                    if got is None:
                        n = min(per, used - c * per)
                        got = self._piece_orphans(g, c * per, todo[c][: n * isz], bm)
                    found.append(got[0])
                    allocated.append(got[1])
                continue
            table = int(self.gd["bg_inode_table"][g]) * self.block_size
            try:
                raw = self.read_bytes(table, used * isz, f"inode table {g}")
            except CorruptImage:
                continue
            got = self._piece_orphans(g, 0, raw, self.bitmap("inode", g))
            found.append(got[0])
            allocated.append(got[1])
        # less the inodes a directory names, the special ones and the reserved ones (one
        # look-up in the sorted numbers for every group)
        inos = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
        alloc = np.concatenate(allocated) if allocated else np.zeros(0, dtype=bool)
        known = np.sort(np.array(named + list(seen_dirs) + list(special), dtype=np.int64))
        at = np.minimum(np.searchsorted(known, inos), max(len(known) - 1, 0))
        keep = inos >= first
        if len(known):
            keep &= known[at] != inos
        candidates: list[tuple[int, bool]] = list(zip(inos[keep].tolist(),
                                                      alloc[keep].tolist()))
        # directories among the orphans: what they name is reachable through them
        inside: set[int] = set()
        orphan_dirs = []
        for ino, _a in candidates:
            try:
                if self.inode(ino).is_dir:
                    orphan_dirs.append(ino)
            except CorruptImage:
                pass
        if orphan_dirs:
            for d in orphan_dirs:
                inside.update(self._named_inodes([d], set(seen_dirs) - {d}))
        out = []
        for ino, alloc in candidates:
            if ino in inside:
                continue
            rec = self.inode(ino)
            if rec.flags & FL_EA_INODE:
                continue
            how = None
            if alloc and rec.links == 0 and ino in self.orphan_list():
                rcv, why = self.recoverability(rec)
                e = self.make_entry(
                    f"OrphanFile-{ino}", rec, True, note="unnamed inode; " + why, recoverable=rcv
                )
            elif alloc:
                note = (
                    "allocated inode that no directory entry names (e2fsck would move it "
                    "to lost+found)"
                )
                e = self.make_entry(f"OrphanFile-{ino}", rec, False, note=note, recoverable=True)
            else:
                rec, rcv, why, how = self.recover_record(rec)
                e = self.make_entry(
                    f"OrphanFile-{ino}", rec, True, note="unnamed inode; " + why, recoverable=rcv
                )
            e.found_by = how or "inode-table"
            out.append(e)
        return out
