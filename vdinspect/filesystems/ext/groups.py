"""Block groups: the group descriptor table, the inode tables and the inode and block
bitmaps that say what is in use.
"""

from __future__ import annotations

from functools import cache

from construct import FlagsEnum, Int16ul, Int32ul, Struct

from ...errors import CorruptImage
from ...io import LRUCache
from ...layout import flag_values, numpy_dtype, offset_of, size_of
from ...lazy import np
from ..base import free_runs
from . import superblock as S
from .inode import InodeRecord

# --- on-disk structures ----------------------------------------------------------------

BlockGroupFlags = FlagsEnum(Int16ul, inode_uninit=0x1, block_uninit=0x2, inode_zeroed=0x4)
BG_INODE_UNINIT = flag_values(BlockGroupFlags)["inode_uninit"]
BG_BLOCK_UNINIT = flag_values(BlockGroupFlags)["block_uninit"]

GroupDescriptor32 = Struct(
    "bg_block_bitmap_lo" / Int32ul * "block of the block (cluster) bitmap",
    "bg_inode_bitmap_lo" / Int32ul * "block of the inode bitmap",
    "bg_inode_table_lo" / Int32ul * "first block of the inode table",
    "bg_free_blocks_count_lo" / Int16ul * "free blocks",
    "bg_free_inodes_count_lo" / Int16ul * "free inodes",
    "bg_used_dirs_count_lo" / Int16ul * "directories",
    "bg_flags" / BlockGroupFlags * "INODE_UNINIT, BLOCK_UNINIT, ITABLE_ZEROED",
    "bg_exclude_bitmap_lo" / Int32ul * "snapshot exclusion bitmap",
    "bg_block_bitmap_csum_lo" / Int16ul * "block bitmap checksum, low 16 bits",
    "bg_inode_bitmap_csum_lo" / Int16ul * "inode bitmap checksum, low 16 bits",
    "bg_itable_unused_lo" / Int16ul * "unused inodes at the end of the table",
    "bg_checksum" / Int16ul * "crc16 (gdt_csum) or crc32c & 0xFFFF (metadata_csum)",
)  # 32 bytes

GroupDescriptor64 = Struct(
    *GroupDescriptor32.subcons,
    "bg_block_bitmap_hi" / Int32ul * "high 32 bits",
    "bg_inode_bitmap_hi" / Int32ul * "high 32 bits",
    "bg_inode_table_hi" / Int32ul * "high 32 bits",
    "bg_free_blocks_count_hi" / Int16ul * "high 16 bits",
    "bg_free_inodes_count_hi" / Int16ul * "high 16 bits",
    "bg_used_dirs_count_hi" / Int16ul * "high 16 bits",
    "bg_itable_unused_hi" / Int16ul * "high 16 bits",
    "bg_exclude_bitmap_hi" / Int32ul * "high 32 bits",
    "bg_block_bitmap_csum_hi" / Int16ul * "high 16 bits",
    "bg_inode_bitmap_csum_hi" / Int16ul * "high 16 bits",
    "bg_reserved" / Int32ul * "padding",
)  # 64 bytes (s_desc_size may be larger)

# the table is decoded with numpy, one row per group, each value with its high bits joined
_COMBINED = (
    "bg_block_bitmap",
    "bg_inode_bitmap",
    "bg_inode_table",
    "bg_free_blocks_count",
    "bg_free_inodes_count",
    "bg_used_dirs_count",
    "bg_flags",
    "bg_itable_unused",
    "bg_checksum",
)
_CSUM_AT = offset_of(GroupDescriptor32, "bg_checksum")


@cache
def _combined_dtype() -> np.dtype:
    """The decoded descriptor (built on first use: importing the driver needs no numpy)."""
    out = []
    for name in _COMBINED:
        try:
            size = size_of(GroupDescriptor64, name + "_lo") + size_of(
                GroupDescriptor64, name + "_hi"
            )
        except KeyError:
            size = size_of(GroupDescriptor64, name)
        out.append((name, f"<u{size}"))
    return np.dtype(out)


def decode_descriptors(data: bytes, count: int, desc_size: int, is_64bit: bool) -> np.ndarray:
    """The group descriptor table as a numpy record array (64-bit fields combined)."""
    layout = GroupDescriptor64 if is_64bit and desc_size >= 64 else GroupDescriptor32
    raw = np.frombuffer(data, dtype=numpy_dtype(layout, desc_size), count=count)
    have = raw.dtype.names
    out = np.zeros(count, dtype=_combined_dtype())
    for name in _COMBINED:
        if name in have:
            out[name] = raw[name]
            continue
        lo = raw[name + "_lo"]
        out[name] = lo
        if name + "_hi" in have:
            out[name] |= raw[name + "_hi"].astype(out.dtype[name]) << (8 * lo.dtype.itemsize)
    return out


def _crc16_table() -> list[int]:
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1  # reflected 0x8005
        out.append(c)
    return out


_CRC16_TABLE = _crc16_table()


def crc16(seed: int, data: bytes) -> int:
    """The kernel's ``crc16`` (polynomial 0x8005 reflected, no final inversion)."""
    crc = seed
    t = _CRC16_TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def descriptor_checksum(sbi: S.SuperblockInfo, group: int, desc: bytes) -> int | None:
    """The checksum a group descriptor should carry (None when the volume has none)."""
    le_group = group.to_bytes(4, "little")
    if sbi.metadata_csum:
        body = desc[:_CSUM_AT] + b"\0\0" + desc[_CSUM_AT + 2 :]
        return S.ext4_chksum(S.ext4_chksum(sbi.csum_seed, le_group), body) & 0xFFFF
    if sbi.gdt_csum:
        crc = crc16(0xFFFF, bytes(sbi.raw.s_uuid))
        crc = crc16(crc, le_group)
        crc = crc16(crc, desc[:_CSUM_AT])
        if len(desc) > _CSUM_AT + 2:
            crc = crc16(crc, desc[_CSUM_AT + 2 :])
        return crc
    return None


ITABLE_CHUNK = 64 << 10  # inode table bytes read and cached at a time


class GroupsMixin:
    """Group descriptors, inode table reads and bitmaps of :class:`ExtFileSystem`."""

    def load_descriptors(self) -> None:
        """Read the group descriptor table: the primary, or in salvage mode a backup copy
        when the primary is unusable (as ``e2fsck -b`` does)."""
        sb = self.sb
        data, blocks, why, bad = self._read_descriptors(self.backup_group)
        if why and self.backup_group is None:
            found = self._backup_descriptors()
            if found is not None:
                g, bdata, bblocks, bad = found
                where = f"the backup in group {g} (block {bblocks[0]})"
                msg = f"primary group descriptors unusable ({why}); {where} looks good"
                if self.strict:
                    raise CorruptImage(
                        msg + ": open with strict=False to use it",
                        path=self.name,
                        structure="group descriptors",
                        offset=blocks[0] * self.block_size if blocks else None,
                    )
                self.finding(
                    "error",
                    "group descriptors",
                    blocks[0] * self.block_size if blocks else None,
                    msg + "; using it",
                )
                self.backup_group = g
                self.descriptor_source = f"backup (group {g}, block {bblocks[0]})"
                data, blocks = bdata, bblocks
        self.gdt_blocks = blocks
        count = sb.group_count
        self.gd_raw = data
        self.gd = decode_descriptors(data, count, sb.desc_size, sb.is_64bit)
        if self.backup_group is not None:
            self._distrust_backup_flags()
        # which groups' inode tables can be read at all
        table = self.gd["bg_inode_table"].astype(np.int64)
        ok = (table > 0) & (table + self.itable_blocks <= sb.blocks_count)
        self.itable_ok = ok.tolist()
        self._itable_starts = (table * self.block_size).tolist()
        self.itable_piece = max(1, ITABLE_CHUNK // self.inode_size)
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
        self.gd_bad_checksum = bad  # checksums (of the table as read, before any change)
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

    def _read_descriptors(
        self, backup_group: int | None
    ) -> tuple[bytes, list[int], str, list[int]]:
        """The descriptor table's bytes and blocks at the primary place or in
        ``backup_group``, why it is unusable ('' when it looks good) and the groups whose
        descriptor checksum is wrong."""
        sb = self.sb
        bs = self.block_size
        blocks = sb.descriptor_blocks(backup_group)
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
        return (data, blocks, *self._descriptors_unusable(data))

    def _descriptors_unusable(self, data: bytes) -> tuple[str, list[int]]:
        """Why a descriptor table cannot be the volume's ('' if it can): an inode table
        or bitmap outside the volume, or (with checksums) most descriptors failing."""
        sb = self.sb
        count = sb.group_count
        gd = decode_descriptors(data, count, sb.desc_size, sb.is_64bit)
        limit = sb.blocks_count
        outside = 0
        for name in ("bg_inode_table", "bg_block_bitmap", "bg_inode_bitmap"):
            v = gd[name].astype(np.int64)
            outside += int(((v <= 0) | (v >= limit)).sum())
        bad = []
        if sb.metadata_csum or sb.gdt_csum:
            ds = sb.desc_size
            sums = gd["bg_checksum"].tolist()
            for g in range(count):
                if descriptor_checksum(sb, g, data[g * ds : (g + 1) * ds]) != sums[g]:
                    bad.append(g)
        if outside:
            return f"{outside} inode table or bitmap locations outside the volume", bad
        if len(bad) * 2 > count:
            return f"{len(bad)} of {count} descriptor checksums wrong", bad
        return "", bad

    def _backup_descriptors(self) -> tuple[int, bytes, list[int], list[int]] | None:
        """The first backup descriptor table that looks good: (group, bytes, blocks,
        groups with a wrong checksum)."""
        tried = 0
        for g in range(1, self.sb.group_count):
            if not self.sb.has_super(g):
                continue
            tried += 1
            if tried > 8:
                break
            try:
                data, blocks, why, bad = self._read_descriptors(g)
            except CorruptImage:
                continue
            if not why:
                return g, data, blocks, bad
        return None

    def _distrust_backup_flags(self) -> None:
        """A backup table is as old as the last resize or mkfs: its 'not initialised'
        flags and unused-inode counts may hide what was written since. Cleared, as e2fsck
        does when it opens from a backup (libext2fs ext2fs_open2), so every inode table and
        bitmap is read."""
        flags = self.gd["bg_flags"]
        uninit = BG_INODE_UNINIT | BG_BLOCK_UNINIT
        if (flags & uninit).any() or self.gd["bg_itable_unused"].any():
            self.gd["bg_flags"] = flags & (0xFFFF ^ uninit)
            self.gd["bg_itable_unused"] = 0
            self.finding(
                "info",
                "group descriptors",
                None,
                "descriptors read from a backup: their uninitialised flags and unused "
                "inode counts are ignored (they may be older than the volume's contents)",
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
        chunk = idx // self.itable_piece
        start, data = self.itable_chunk(g, chunk)
        pos = (idx - chunk * self.itable_piece) * isz
        return data[pos : pos + isz], start + pos

    def itable_chunk(self, g: int, chunk: int) -> tuple[int, bytes]:
        """Piece ``chunk`` of group ``g``'s inode table (kept in an LRU), and its offset."""
        key = (g, chunk)
        if key == self._last_key:
            return self._last_chunk
        isz, per_chunk = self.inode_size, self.itable_piece
        start = self._itable_starts[g] + chunk * per_chunk * isz
        n = min(per_chunk, self.inodes_per_group - chunk * per_chunk)
        data = self._itable.get(key, lambda: self._new_piece(g, chunk, start, n * isz))
        self._last_key = key
        self._last_chunk = (start, data)
        return start, data

    def _new_piece(self, g: int, chunk: int, start: int, length: int) -> bytes:
        data = self._read_itable(g, start, length)
        if self.piece_orphans is not None:  # a walk whose orphan search will want it
            self.note_piece(g, chunk, data)
        return data

    def inode_records(self, inos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The records of many inodes at once (1-based numbers, an int64 array), for the
        column walk: an (n, inode_size) uint8 array, and a mask of those read (number in
        range, group's table inside the volume; the others are zero rows)."""
        isz, ipg, per = self.inode_size, self.inodes_per_group, self.itable_piece
        if len(inos):  # a folder's inodes are mostly near each other: a few table pieces
            lo, hi = int(inos.min()) - 1, int(inos.max()) - 1
            g = lo // ipg
            c0, c1 = (lo - g * ipg) // per, (hi - g * ipg) // per
            if (0 <= lo and hi < self.sb.inodes_count and hi // ipg == g and c1 - c0 < 16
                    and g < len(self.itable_ok) and self.itable_ok[g]):
                rel = inos - (g * ipg + 1)  # in the group's table
                if c0 == c1:
                    table = np.frombuffer(self.itable_chunk(g, c0)[1], dtype=np.uint8)
                    return (table.reshape(-1, isz)[rel - c0 * per],
                            np.ones(len(inos), dtype=bool))
                out = np.empty((len(inos), isz), dtype=np.uint8)
                piece = rel // per
                for c in range(c0, c1 + 1):
                    sel = np.flatnonzero(piece == c)
                    if len(sel):
                        table = np.frombuffer(self.itable_chunk(g, c)[1], dtype=np.uint8)
                        out[sel] = table.reshape(-1, isz)[rel[sel] - c * per]
                return out, np.ones(len(inos), dtype=bool)
        out = np.zeros((len(inos), isz), dtype=np.uint8)
        ok = (inos >= 1) & (inos <= self.sb.inodes_count)
        i0 = np.where(ok, inos - 1, 0)
        g = i0 // ipg
        table_ok = np.asarray(self.itable_ok, dtype=bool)
        ok &= g < len(table_ok)
        ok[ok] = table_ok[g[ok]]
        idx = i0 - g * ipg
        chunk = idx // per
        key = g * (ipg // per + 1) + chunk
        keys = np.sort(key[ok])  # the pieces to read, each once (np.unique without numpy.ma)
        for k in keys[np.flatnonzero(np.diff(keys, prepend=-1))].tolist():
            sel = np.flatnonzero(ok & (key == k))
            c = int(chunk[sel[0]])
            _start, data = self.itable_chunk(int(g[sel[0]]), c)
            out[sel] = np.frombuffer(data, dtype=np.uint8).reshape(-1, isz)[idx[sel] - c * per]
        return out, ok

    def _read_itable(self, g: int, start: int, length: int) -> bytes:
        """Inode table bytes; in salvage mode, blocks that cannot be read are taken from
        their newest copy in the journal when it has one (``journal_inodes`` says which
        inodes, and from which transaction)."""
        data = self.read_bytes(start, length, f"inode table {g}")
        if not self.volume_damaged():
            return data
        bs = self.block_size
        lost = {
            b
            for a, n in self.dev.damaged_ranges(start, length)
            for b in range(a // bs, (a + n - 1) // bs + 1)
        }
        if not lost:
            return data
        buf = bytearray(data)
        isz = self.inode_size
        for b in sorted(lost):
            at = b * bs - start
            first = g * self.inodes_per_group + at // isz + 1
            copies = self.journal_copies().get(b) if self.journal is not None else None
            if not copies:
                self.finding(
                    "error",
                    f"inode table {g}",
                    b * bs,
                    f"block {b} of the inode table cannot be read and the journal has no "
                    f"copy of it: inodes {first}-{first + bs // isz - 1} are lost",
                )
                for ino in range(first, first + bs // isz):
                    self.unreadable_inodes[ino] = b
                continue
            seq, off, esc = copies[0]
            buf[at : at + bs] = self.copy_of(off, esc)
            for ino in range(first, first + bs // isz):
                self.journal_inodes[ino] = seq
            self.finding(
                "error",
                f"inode table {g}",
                b * bs,
                f"block {b} of the inode table cannot be read; its inodes are taken from "
                f"its copy in journal transaction {seq}",
            )
        return bytes(buf)

    def bitmap(self, kind: str, g: int) -> np.ndarray | None:
        """Group ``g``'s inode or block bitmap as a bool array (None when uninitialised)."""

        def load():
            flags = int(self.gd["bg_flags"][g])
            csum = self.sb.metadata_csum or self.sb.gdt_csum
            if csum and flags & (BG_INODE_UNINIT if kind == "inode" else BG_BLOCK_UNINIT):
                return None
            b = int(self.gd["bg_inode_bitmap" if kind == "inode" else "bg_block_bitmap"][g])
            if not 0 < b < self.sb.blocks_count:
                return None
            raw = self.read_blocks(b, 1, f"{kind} bitmap {g}")
            return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little").astype(bool)

        return self._bitmaps.get((kind, g), load)

    def free_ranges(self) -> list[tuple[int, int]]:
        """The blocks the block bitmaps mark free, as (offset, length) byte ranges (a group
        never initialised holds no data, live or deleted, and is left out)."""
        sb = self.sb
        unit = sb.cluster_ratio * self.block_size
        per = sb.blocks_per_group // sb.cluster_ratio

        def masks():
            for g in range(self.group_count):
                bm = self.bitmap("block", g)
                if bm is not None:
                    yield (sb.first_data_block + g * sb.blocks_per_group) * self.block_size, ~bm[:per]

        size = min(self.source.size, sb.blocks_count * self.block_size)
        return free_runs(masks(), unit, size)

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
