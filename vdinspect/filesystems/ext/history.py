"""Older copies of metadata blocks kept in the journal, used to get back what the volume
itself no longer holds (the method of extundelete and ext4magic).

Every metadata change of ext3/ext4 is first written to the journal as a whole block (a
descriptor's tag names the filesystem block, the copy follows it). After a checkpoint the
log is only marked clean: the copies stay in the ring until newer transactions overwrite
them. Two uses here: an inode whose record was wiped on deletion (ext4 clears the extent
tree, ext3 the block pointers) is read from the newest copy of its inode-table block that
still maps its data; and a directory block that cannot be read is listed from its newest
copy. Only transactions whose commit block follows their descriptor with nothing of
another sequence between them are trusted (a partly overwritten transaction is not).
"""

from __future__ import annotations

import bisect

from ...errors import VDInspectError
from .dirs import RawDirent, parse_dir_block
from .extents import EXTENT_HEADER, EXTENT_MAGIC
from .inode import InodeRecord
from .journal import JBD2_MAGIC

MAX_COPIES_TRIED = 64  # older copies of one block examined for one inode


class HistoryMixin:
    """Journal copies of blocks, wiped inodes and unreadable directory blocks of
    :class:`ExtFileSystem`."""

    _copies: dict[int, list[tuple[int, int, bool]]] | None = None

    def journal_copies(self) -> dict[int, list[tuple[int, int, bool]]]:
        """Filesystem block -> copies of it in committed journal transactions, newest
        first: (transaction sequence, byte offset of the copy on the volume, escaped)."""
        if self._copies is not None:
            return self._copies
        out: dict[int, list[tuple[int, int, bool]]] = {}
        self._copies = out
        j = self.journal
        if j is None:
            return out
        try:
            rows = j.scan_all()
        except VDInspectError as exc:
            self.finding("warning", "journal", None, f"journal history not read: {exc}")
            return out
        pos = [r["jblock"] for r in rows]
        commits: dict[int, list[int]] = {}
        for r in rows:
            if r["type"] == "commit":
                commits.setdefault(r["sequence"], []).append(r["jblock"])
        for i, r in enumerate(rows):
            if r["type"] != "descriptor":
                continue
            seq = r["sequence"]
            if not self._intact(rows, pos, i, commits.get(seq, []), j.first, j.last):
                continue
            for (fs_block, flags), jb in zip(r["tags"], r["data"]):
                off = j.offset_of(jb)
                if off >= 0 and 0 <= fs_block < self.sb.blocks_count:
                    out.setdefault(fs_block, []).append((seq, off, bool(flags & 1)))
        for v in out.values():
            v.sort(key=lambda c: _seq_key(c[0], j.sequence), reverse=True)
        return out

    @staticmethod
    def _intact(rows, pos, i, commit_blocks, first, last) -> bool:
        """Whether the descriptor ``rows[i]`` reaches the nearest commit of its own
        sequence past its data blocks with no journal block of another sequence between
        them (walking the ring forward)."""
        jb, seq, ntags = rows[i]["jblock"], rows[i]["sequence"], len(rows[i]["tags"])
        ring = last - first
        ahead = [c for c in commit_blocks if (c - jb) % ring > ntags]
        if not ahead:
            return False
        c = min(ahead, key=lambda c: (c - jb) % ring)
        spans = [(jb + 1, c)] if c > jb else [(jb + 1, last), (first, c)]
        for a, b in spans:
            k = bisect.bisect_left(pos, a)
            while k < len(pos) and pos[k] < b:
                if rows[k]["sequence"] != seq:
                    return False
                k += 1
        return True

    def copy_of(self, offset: int, escaped: bool) -> bytes:
        """The block copy at ``offset`` in the journal, as it was logged."""
        data = self.base.read(offset, self.block_size)
        if escaped:  # the journal stored it with its first 4 bytes zeroed
            data = JBD2_MAGIC.to_bytes(4, "big") + data[4:]
        return data

    # --- wiped inodes --------------------------------------------------------------
    def inode_from_journal(self, ino: int) -> tuple[InodeRecord, int] | None:
        """The newest journal copy of inode ``ino`` that still maps content (a
        regular file or symlink with a size and a non-empty extent tree or block map),
        and the sequence of its transaction; None when the journal holds none."""
        g, idx = divmod(ino - 1, self.inodes_per_group)
        if g >= len(self.itable_ok) or not self.itable_ok[g]:
            return None
        byte = self._itable_starts[g] + idx * self.inode_size
        block, within = divmod(byte, self.block_size)
        copies = self.journal_copies().get(block)
        if not copies:
            return None
        for seq, off, esc in copies[:MAX_COPIES_TRIED]:
            try:
                raw = self.copy_of(off, esc)[within : within + self.inode_size]
            except VDInspectError:
                continue
            rec = InodeRecord(ino, raw, off + within, self.huge_file, self.block_size)
            if _maps_content(rec):
                return rec, seq
        return None

    # --- unreadable directory blocks ----------------------------------------------------
    def directory_from_journal(self, rec: InodeRecord, lblk: int, pblk: int) -> list[RawDirent]:
        """The live entries of directory block ``pblk`` (logical ``lblk`` of ``rec``) as
        its newest journal copy holds them, marked found_by ``journal``."""
        copies = self.journal_copies().get(pblk)
        if not copies:
            return []
        seq, off, esc = copies[0]
        try:
            data = self.copy_of(off, esc)
        except VDInspectError:
            return []
        raws = parse_dir_block(
            data,
            lblk * self.block_size,
            filetype=self.filetype,
            inodes_count=self.sb.inodes_count,
            block_size=self.block_size,
            deleted=False,
        )
        note = (
            f"named by the copy of directory block {pblk} in journal transaction {seq} "
            "(the block itself cannot be read)"
        )
        for r in raws:
            r.found_by = "journal"
            r.note = note
        return raws


def _seq_key(seq: int, head: int) -> int:
    """Order of a 32-bit sequence number in the ring: newer ones (counting back from the
    journal's next sequence ``head``) sort higher, across wrap-around."""
    return -((head - seq) & 0xFFFFFFFF)


def _maps_content(rec: InodeRecord) -> bool:
    if rec.mode == 0 or rec.size == 0 or not (rec.is_reg or rec.is_symlink or rec.is_dir):
        return False
    if rec.inline:
        return True
    if rec.uses_extents:
        magic, entries, _m, _d, _g = EXTENT_HEADER.unpack_from(rec.i_block, 0)
        return magic == EXTENT_MAGIC and entries > 0
    return any(rec.i_block)


__all__ = ["HistoryMixin"]
