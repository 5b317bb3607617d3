"""Block groups: the group descriptor table, the inode tables and the inode and block
bitmaps that say what is in use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...errors import (
    CorruptImage,
)
from ...io import LRUCache
from . import superblock as S
from .inode import (
    InodeRecord,
)

if TYPE_CHECKING:
    pass

ITABLE_CHUNK = 64 << 10  # inode table bytes read and cached at a time


class GroupsMixin:
    """Group descriptors, inode table reads and bitmaps of :class:`ExtFileSystem`."""

    def load_descriptors(self) -> None:
        sb = self.sb
        bs = self.block_size
        blocks = sb.descriptor_blocks(self.backup_group)
        for b in blocks:
            if b >= sb.blocks_count:
                raise CorruptImage(
                    f"group descriptor block {b} is outside the volume",
                    path=self.name,
                    structure="group descriptors",
                    offset=b * bs,
                )
        parts = []
        run = None
        for b in blocks + [None]:
            if run and b == run[0] + run[1]:
                run[1] += 1
                continue
            if run:
                parts.append(self.read_blocks(run[0], run[1], "group descriptors"))
            run = [b, 1] if b is not None else None
        data = b"".join(parts)
        self.gdt_blocks = blocks
        count = sb.group_count
        self.gd_raw = data
        self.gd = S.decode_descriptors(data, count, sb.desc_size, sb.is_64bit)
        # which groups' inode tables can be read at all
        table = self.gd["inode_table"].astype(np.int64)
        ok = (table > 0) & (table + self.itable_blocks <= sb.blocks_count)
        self.itable_ok = ok.tolist()
        self._itable_starts = (table * self.block_size).tolist()
        self._per_chunk = max(1, ITABLE_CHUNK // self.inode_size)
        self._itable = LRUCache(128)  # anew: a journal replay changes what the tables hold
        self._bitmaps = LRUCache(256)
        self._last_key = None
        self._last_chunk = None
        for g in np.flatnonzero(~ok)[:16].tolist():
            self.finding(
                "error",
                "group descriptors",
                self._gd_offset(g),
                f"group {g}: inode table at block {int(table[g])} is outside the volume",
            )
        # checksums
        bad = []
        if sb.metadata_csum or sb.gdt_csum:
            ds = sb.desc_size
            for g in range(count):
                want = S.descriptor_checksum(sb, g, data[g * ds : (g + 1) * ds])
                if want is not None and want != int(self.gd["checksum"][g]):
                    bad.append(g)
        self.gd_bad_checksum = bad
        for g in bad[:16]:
            self.finding(
                "error",
                "group descriptors",
                self._gd_offset(g),
                f"group {g}: descriptor checksum mismatch",
            )
        if len(bad) > 16:
            self.finding(
                "error",
                "group descriptors",
                None,
                f"{len(bad)} group descriptors have bad checksums",
            )

    def _gd_offset(self, g: int) -> int | None:
        per = self.sb.desc_per_block
        i = g // per
        if i >= len(self.gdt_blocks):
            return None
        return self.gdt_blocks[i] * self.block_size + (g % per) * self.sb.desc_size

    # --- inodes ------------------------------------------------------------------------
    def inode(self, ino: int) -> InodeRecord:
        """The inode record ``ino`` (1-based), decoded."""
        sb = self.sb
        if not 1 <= ino <= sb.inodes_count:
            raise CorruptImage(
                f"inode {ino} is outside 1..{sb.inodes_count}", path=self.name, structure="inode"
            )
        g, idx = divmod(ino - 1, self.inodes_per_group)
        if g >= len(self.itable_ok) or not self.itable_ok[g]:
            raise CorruptImage(
                f"inode {ino}: group {g}'s inode table is outside the volume",
                path=self.name,
                structure="group descriptors",
                offset=self._gd_offset(g),
            )
        raw, offset = self.inode_bytes(g, idx)
        rec = InodeRecord(ino, raw, offset, self.huge_file, self.block_size)
        if rec.size_invalid is not None:
            self.finding(
                "error",
                "inode",
                offset,
                f"inode {ino}: i_size {rec.size_invalid:#x} "
                "is negative as Linux reads it (corrupt); its size is taken as 0",
            )
        return rec

    def inode_bytes(self, g: int, idx: int) -> tuple[bytes, int]:
        """The bytes of record ``idx`` of group ``g``'s inode table, and their offset."""
        isz = self.inode_size
        per_chunk = self._per_chunk
        chunk = idx // per_chunk
        key = (g, chunk)
        if key == self._last_key:
            start, data = self._last_chunk
        else:
            start = self._itable_starts[g] + chunk * per_chunk * isz
            n = min(per_chunk, self.inodes_per_group - chunk * per_chunk)
            data = self._itable.get(
                key, lambda: self.read_bytes(start, n * isz, f"inode table {g}")
            )
            self._last_key = key
            self._last_chunk = (start, data)
        pos = (idx - chunk * per_chunk) * isz
        return data[pos : pos + isz], start + pos

    def bitmap(self, kind: str, g: int) -> np.ndarray | None:
        """Group ``g``'s inode or block bitmap as a bool array (None when uninitialised)."""

        def load():
            flags = int(self.gd["flags"][g])
            csum = self.sb.metadata_csum or self.sb.gdt_csum
            if csum and flags & (S.BG_INODE_UNINIT if kind == "inode" else S.BG_BLOCK_UNINIT):
                return None
            b = int(self.gd["inode_bitmap" if kind == "inode" else "block_bitmap"][g])
            if not 0 < b < self.sb.blocks_count:
                return None
            raw = self.read_blocks(b, 1, f"{kind} bitmap {g}")
            return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little").astype(bool)

        return self._bitmaps.get((kind, g), load)

    def inode_allocated(self, ino: int) -> bool:
        g, idx = divmod(ino - 1, self.inodes_per_group)
        bm = self.bitmap("inode", g)
        return bool(bm is not None and idx < len(bm) and bm[idx])

    def blocks_allocated(self, pblk: int, count: int) -> int:
        """How many of the blocks [pblk, pblk+count) the block bitmaps mark in use."""
        sb = self.sb
        used = 0
        b = pblk
        end = pblk + count
        while b < end:
            rel = b - sb.first_data_block
            if rel < 0:
                used += 1
                b += 1
                continue
            g, off = divmod(rel, sb.blocks_per_group)
            n = min(end - b, sb.blocks_per_group - off)
            if g >= self.group_count:
                break
            bm = self.bitmap("block", g)
            if bm is not None:
                r = sb.cluster_ratio
                used += int(bm[off // r : (off + n - 1) // r + 1].sum()) * r
            b += n
        return min(used, count)
