"""The ext2/3/4 reader: the FileSystem protocol over superblock, inodes, maps and journal.

Read-only in every case: a filesystem that needs journal recovery is read through an
in-memory overlay of its committed journal blocks (``replay_journal=True``, the default),
or as it lies on disk (``replay_journal=False``); either way ``check()`` says the journal
was not clean. Deleted names come from directory slack and are marked ``deleted=True``;
``recoverable`` is True only when the inode still maps its blocks and none of them is
allocated again (a real ext4 deletion clears the extent tree, so usually it is False and
the ``note`` column says why). Inodes that no directory entry names are listed under
``/$OrphanFiles`` as ``OrphanFile-<inode>``, the way The Sleuth Kit's ``fls`` shows them.
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from ...errors import (
    CorruptImage,
    EncryptedImage,
    ImageError,
    InvalidArgument,
    NotFound,
    NotRecognized,
    UnsupportedFeature,
    VDInspectError,
)
from ...io import ByteSource, Concat, LRUCache, MemorySource, Zero
from ..base import DIR, FILE, MAX_DEPTH, OTHER, SYMLINK, Entry, FileSystem
from . import superblock as S
from .dirs import RawDirent, parse_dir_block, parse_dx_node, parse_dx_root
from .extents import DATA, BlockMap, FileSource, blockmap_map, extent_map
from .inode import (
    EPOCH,
    FL_CASEFOLD,
    FL_COMPRESSED_ANY,
    FL_EA_INODE,
    FL_ENCRYPT,
    FL_EXTENTS,
    FL_INDEX,
    XATTR_MAGIC,
    InodeRecord,
    XattrEntry,
    decode_times_bulk,
    ns_to_datetime,
    parse_xattr_entries,
)
from .journal import Journal, OverlaySource, Transaction

if TYPE_CHECKING:
    import pandas as pd

ROOT_INO = 2
ITABLE_CHUNK = 64 << 10  # inode table bytes read and cached at a time
_KIND_OF_TYPE = {
    0o100000: FILE,
    0o40000: DIR,
    0o120000: SYMLINK,
    0o20000: OTHER,
    0o60000: OTHER,
    0o10000: OTHER,
    0o140000: OTHER,
}
FT_KIND = {1: FILE, 2: DIR, 3: OTHER, 4: OTHER, 5: OTHER, 6: OTHER, 7: SYMLINK}
ORPHAN_DIR_NAME = "$OrphanFiles"
_FAST_FIELDS = struct.Struct("<H18xI2xH4xI")  # i_mode, i_dtime, i_links_count, i_flags
_FLAGS_NOTED = FL_ENCRYPT | FL_COMPRESSED_ANY
EXTRA_COLUMNS = ("mtime_ns", "atime_ns", "ctime_ns", "crtime_ns", "dtime", "flags", "note")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class ExtFileSystem(FileSystem):
    """An ext2, ext3 or ext4 volume on a ByteSource (a partition, LV or raw file)."""

    case_sensitive = True

    def __init__(
        self,
        source: ByteSource,
        *,
        name: str | None = None,
        strict: bool = True,
        replay_journal: bool = True,
    ) -> None:
        super().__init__(source, name=name, strict=strict)
        self.base = source
        self.dev: ByteSource = source
        self._lenient = 0
        self._defer = 0
        self._dircache: dict | None = None
        self.superblock_source = "primary"
        self.backup_group: int | None = None
        self.replay_journal = replay_journal
        self.journal: Journal | None = None
        self.journal_transactions_replayed: list[Transaction] = []
        self.journal_error: str | None = None
        self.external_journal = False
        self._itable = LRUCache(128)
        self._bitmaps = LRUCache(256)
        self._maps = LRUCache(256)
        self._listings = LRUCache(32)
        self._orphans: list[Entry] | None = None
        self._checked = False
        self.sb = self._open_superblock()
        self._init_geometry()
        self._load_descriptors()
        self._open_journal()

    @property
    def block_limit(self) -> int:
        """Blocks that can be read: the superblock's count, or fewer on a cut-off image."""
        return min(self.sb.blocks_count, self.base.size // self.block_size)

    # --- errors -----------------------------------------------------------------------
    def problem(
        self,
        structure: str,
        offset: int | None,
        message: str,
        *,
        exc_type: type[ImageError] = CorruptImage,
    ) -> None:
        """A metadata problem: raises when strict or while probing (lenient), else a finding."""
        if self._lenient:
            self.fail(exc_type, message, structure, offset)
        super().problem(structure, offset, message, exc_type=exc_type)

    def read_bytes(self, offset: int, length: int, structure: str) -> bytes:
        """Bytes of the volume (through the journal overlay), checked against its size."""
        if offset < 0 or offset + length > self.dev.size:
            raise CorruptImage(
                f"{length} bytes at {offset:#x} run past the end of the volume "
                f"({self.dev.size:#x})",
                path=self.name,
                structure=structure,
                offset=offset,
            )
        return self.dev.read(offset, length)

    def read_blocks(self, block: int, count: int, structure: str) -> bytes:
        if block < 0 or block + count > self.sb.blocks_count:
            raise CorruptImage(
                f"block {block} (+{count}) is outside the volume ({self.sb.blocks_count} blocks)",
                path=self.name,
                structure=structure,
                offset=block * self.block_size,
            )
        return self.read_bytes(block * self.block_size, count * self.block_size, structure)

    # --- opening ------------------------------------------------------------------
    def _read_sb(self, offset: int, src: ByteSource | None = None) -> S.SuperblockInfo | None:
        src = src or self.base
        if offset + S.SUPERBLOCK_SIZE > src.size:
            return None
        return S.SuperblockInfo(src.read(offset, S.SUPERBLOCK_SIZE), offset)

    def _find_backup(self) -> tuple[S.SuperblockInfo, int] | None:
        for off, bs, g in S.backup_candidates(self.base.size):
            head = self.base.read(off + 0x38, 2)
            if head != b"\x53\xef":
                continue
            sbi = self._read_sb(off)
            if (
                sbi is not None
                and not sbi.problems
                and sbi.block_size == bs
                and sbi.raw.s_block_group_nr == g
                and sbi.group_first_block(g) * bs == off
            ):
                return sbi, g
        return None

    def _open_superblock(self) -> S.SuperblockInfo:
        if self.base.size < 2048:
            raise NotRecognized(
                "too small for an ext2/3/4 filesystem",
                path=self.name,
                structure="superblock",
                offset=S.SUPERBLOCK_OFFSET,
            )
        sbi = self._read_sb(S.SUPERBLOCK_OFFSET)
        if sbi.magic_ok and sbi.incompat & S.INCOMPAT_JOURNAL_DEV:
            raise UnsupportedFeature(
                "this is an external journal device, not a filesystem",
                path=self.name,
                structure="superblock",
                offset=S.SUPERBLOCK_OFFSET + 0x60,
            )
        if not sbi.problems:
            if sbi.checksum_ok is False:
                self.finding(
                    "error",
                    "superblock",
                    S.SUPERBLOCK_OFFSET,
                    "superblock checksum mismatch (metadata_csum)",
                )
            return sbi
        backup = self._find_backup()
        why = "; ".join(sbi.problems)
        if backup is None:
            cls = NotRecognized if not sbi.magic_ok else CorruptImage
            raise cls(
                f"superblock unusable ({why}) and no backup superblock found",
                path=self.name,
                structure="superblock",
                offset=S.SUPERBLOCK_OFFSET,
            )
        bsb, g = backup
        where = f"the backup in group {g} at byte {bsb.offset:#x} (block {bsb.offset // bsb.block_size})"
        if self.strict:
            raise CorruptImage(
                f"primary superblock unusable ({why}); {where} looks good: "
                "open with strict=False to use it",
                path=self.name,
                structure="superblock",
                offset=S.SUPERBLOCK_OFFSET,
            )
        self.finding(
            "error",
            "superblock",
            S.SUPERBLOCK_OFFSET,
            f"primary superblock unusable ({why}); using {where}",
        )
        self.superblock_source = f"backup (group {g}, byte {bsb.offset})"
        self.backup_group = g
        return bsb

    def _init_geometry(self) -> None:
        sb = self.sb
        self.block_size = bs = sb.block_size
        self.inode_size = sb.inode_size
        self.inodes_per_group = sb.inodes_per_group
        self.group_count = sb.group_count
        self.label = sb.label
        self.uuid = sb.uuid
        self.huge_file = bool(sb.ro_compat & S.RO_COMPAT_HUGE_FILE)
        self.filetype = bool(sb.incompat & S.INCOMPAT_FILETYPE)
        self.fstype = _fs_kind(sb)
        # casefold: names are stored as given and compared case-insensitively in the
        # directories flagged for it; lookup prefers an exact match, then a casefold one
        self.case_sensitive = not sb.incompat & S.INCOMPAT_CASEFOLD
        self.itable_blocks = _ceil_div(sb.inodes_per_group * sb.inode_size, bs)
        if sb.incompat & S.INCOMPAT_JOURNAL_DEV:
            raise UnsupportedFeature(
                "this is an external journal device, not a filesystem",
                path=self.name,
                structure="superblock",
                offset=sb.offset,
            )
        unknown = sb.incompat & ~S.INCOMPAT_SUPPORTED
        if unknown:
            msg = (
                f"unsupported incompatible features "
                f"{', '.join(S.feature_names(0, unknown, 0))} ({unknown:#x})"
            )
            if self.strict:
                raise UnsupportedFeature(
                    msg + "; strict=False reads what it can",
                    path=self.name,
                    structure="superblock",
                    offset=sb.offset + 0x60,
                )
            self.finding("error", "superblock", sb.offset + 0x60, msg)
        if sb.incompat & S.INCOMPAT_COMPRESSION:
            self.finding(
                "warning",
                "superblock",
                sb.offset + 0x60,
                "compression feature (e2compr): compressed files' content is not "
                "read (UnsupportedFeature); their metadata is",
            )
        dev_blocks = self.base.size // bs
        if sb.blocks_count > dev_blocks:
            msg = (
                f"the superblock counts {sb.blocks_count} blocks of {bs} bytes but the "
                f"volume holds {dev_blocks}: the image is truncated"
            )
            if self.strict:
                raise CorruptImage(
                    msg, path=self.name, structure="superblock", offset=sb.offset + 4
                )
            self.finding("error", "superblock", sb.offset + 4, msg)
            if sb.blocks_count > 2 * dev_blocks + sb.blocks_per_group:
                # an absurd count (not a cut-off copy): read only the groups that exist
                sb.blocks_count = max(dev_blocks, sb.first_data_block + 1)
                sb.group_count = _ceil_div(
                    sb.blocks_count - sb.first_data_block, sb.blocks_per_group
                )
                self.group_count = sb.group_count
                self.finding(
                    "error",
                    "superblock",
                    sb.offset + 4,
                    f"block count taken as {sb.blocks_count} (the volume's size)",
                )
        if sb.problems:  # inode count vs groups (a backup is only used when it has none)
            for p in sb.problems:
                self.problem("superblock", sb.offset, p)

    def _load_descriptors(self) -> None:
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

    def _open_journal(self) -> None:
        sb = self.sb
        recover = bool(sb.incompat & S.INCOMPAT_RECOVER)
        self.needs_recovery = recover
        if not sb.compat & S.COMPAT_HAS_JOURNAL:
            if recover:
                self.finding(
                    "warning",
                    "superblock",
                    sb.offset + 0x60,
                    "needs_recovery is set but the filesystem has no journal",
                )
            return
        jino = sb.raw.s_journal_inum
        if jino == 0:
            self.external_journal = True
            dev = sb.raw.s_journal_dev
            if recover:
                self.finding(
                    "warning",
                    "journal",
                    None,
                    f"the external journal (device {dev:#x}, uuid "
                    f"{_uuid(sb.raw.s_journal_uuid)}) needs recovery; it is not "
                    "read here, so recent metadata changes may be missing",
                )
            return
        try:
            self.journal = self._load_journal(jino)
        except (VDInspectError, ValueError) as e:
            self.journal_error = str(e)
            self.finding(
                "error" if recover else "warning",
                "journal",
                None,
                f"journal inode {jino} unreadable: {e}",
            )
            return
        j = self.journal
        for off, msg in j.problems:
            self.finding("warning", "journal", off, msg)
        if not recover:
            if j.needs_recovery:
                self.finding(
                    "warning",
                    "journal",
                    j.offset_of(0),
                    "the journal superblock has a log start but the filesystem "
                    "is not flagged needs_recovery; the log was not replayed",
                )
            return
        txs = j.walk_log()
        committed = [t for t in txs if t.committed]
        pending = [t for t in txs if not t.committed]
        nblocks = sum(len(t.tags) for t in committed)
        seqs = (
            f" (sequences {committed[0].sequence}..{committed[-1].sequence})" if committed else ""
        )
        msg = (
            f"the journal was not clean (needs_recovery): {len(committed)} committed "
            f"transactions{seqs} logging {nblocks} blocks"
        )
        if pending:
            msg += f"; transaction {pending[0].sequence} never committed (ignored)"
        if self.replay_journal and committed:
            overlay = j.replay_map(committed)
            self.dev = OverlaySource(self.base, self.block_size, overlay)
            self.journal_transactions_replayed = committed
            msg += f"; replayed in memory over {len(overlay)} blocks (the image is not written)"
            self._reload_after_replay()
        elif committed:
            msg += "; not replayed (replay_journal=False): metadata on disk may be stale"
        self.finding("warning", "journal", j.offset_of(0), msg)

    def _reload_after_replay(self) -> None:
        """Superblock and descriptors as the replayed journal leaves them."""
        if self.backup_group is not None:
            return
        new = self._read_sb(S.SUPERBLOCK_OFFSET, self.dev)
        if new is None or new.problems:
            self.finding(
                "error",
                "journal",
                None,
                "the replayed superblock is unusable; keeping the one on disk",
            )
            return
        if (new.block_size, new.blocks_per_group, new.inodes_per_group, new.inode_size) != (
            self.sb.block_size,
            self.sb.blocks_per_group,
            self.sb.inodes_per_group,
            self.sb.inode_size,
        ):
            self.finding(
                "error",
                "journal",
                None,
                "the replayed superblock changes the geometry; keeping the one on disk",
            )
            return
        self.sb = new
        self.group_count = new.group_count
        self.label = new.label
        self._itable.clear()
        self._listings.clear()
        self._load_descriptors()

    def _load_journal(self, jino: int) -> Journal:
        rec = self.inode(jino)
        if rec.mode == 0 and rec.size == 0:
            raise ValueError("the journal inode is empty")
        nblocks = rec.size // self.block_size
        if nblocks <= 1 or nblocks > self.sb.blocks_count:
            raise ValueError(f"journal size {rec.size} is implausible")
        bmap = self.block_map(rec)
        jmap = np.full(nblocks, -1, dtype=np.int64)
        bs = self.block_size
        for lb, cnt, pb, st in zip(
            bmap.lblk.tolist(), bmap.count.tolist(), bmap.pblk.tolist(), bmap.state.tolist()
        ):
            if st != DATA or lb >= nblocks:
                continue
            n = min(cnt, nblocks - lb)
            jmap[lb : lb + n] = (pb + np.arange(n, dtype=np.int64)) * bs
        self._journal_map = bmap
        return Journal(self.base, jmap, bs, f"journal inode {jino}")

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
        raw, offset = self._inode_raw(g, idx)
        rec = InodeRecord(ino, raw, offset, self.huge_file, self.block_size)
        if rec.size_invalid is not None:
            self.finding("error", "inode", offset, f"inode {ino}: i_size {rec.size_invalid:#x} "
                         "is negative as Linux reads it (corrupt); its size is taken as 0")
        return rec

    def _inode_raw(self, g: int, idx: int) -> tuple[bytes, int]:
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

    def _bitmap(self, kind: str, g: int) -> np.ndarray | None:
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
        bm = self._bitmap("inode", g)
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
            bm = self._bitmap("block", g)
            if bm is not None:
                r = sb.cluster_ratio
                used += int(bm[off // r : (off + n - 1) // r + 1].sum()) * r
            b += n
        return min(used, count)

    # --- mapping -------------------------------------------------------------------
    def block_map(self, rec: InodeRecord) -> BlockMap:
        """Where ``rec``'s content lies (extent tree or block map), cached."""

        def load():
            if rec.inline or self._is_fast_symlink(rec):
                return BlockMap.empty()
            nblocks = _ceil_div(rec.size, self.block_size)
            if nblocks == 0:
                return BlockMap.empty()
            if rec.uses_extents:
                return extent_map(self, rec, nblocks)
            return blockmap_map(self, rec, nblocks)

        if self._lenient:
            return load()
        return self._maps.get((rec.number, rec.raw), load)

    def _is_fast_symlink(self, rec: InodeRecord) -> bool:
        if not rec.is_symlink or rec.inline:
            return False
        if rec.size >= 60 or rec.size == 0:
            return False
        if rec.uses_extents:
            # a slow symlink with an extent tree: the header magic is in i_block
            return rec.i_block[:2] != b"\x0a\xf3" or rec.blocks_raw == 0
        ea = self.block_size if rec.file_acl else 0
        return rec.blocks_raw - ea <= 0

    def inline_data(self, rec: InodeRecord) -> bytes:
        """The content of an inline-data inode: i_block, then the system.data xattr."""
        head = rec.i_block
        extra = b""
        for e in self._in_inode_xattrs(rec):
            if e.name == "system.data":
                extra = e.inline_value or b""
                break
        return head + extra

    # --- extended attributes ---------------------------------------------------------
    def _in_inode_xattrs(self, rec: InodeRecord) -> list[XattrEntry]:
        area = rec.in_inode_xattr_area()
        if area is None:
            return []
        data, off = area
        entries, problem = parse_xattr_entries(data, 0, 0, 1024)
        if problem:
            self.problem(f"inode {rec.number} xattrs", rec.offset, problem)
        return entries

    def _block_xattrs(self, rec: InodeRecord) -> list[XattrEntry]:
        if not rec.file_acl:
            return []
        where = f"inode {rec.number} xattr block"
        if rec.file_acl >= self.sb.blocks_count:
            self.problem(
                where, rec.offset + 0x68, f"xattr block {rec.file_acl} is outside the volume"
            )
            return []
        data = self.read_blocks(rec.file_acl, 1, where)
        if struct.unpack_from("<I", data, 0)[0] != XATTR_MAGIC:
            self.problem(where, rec.file_acl * self.block_size, "bad xattr block magic")
            return []
        entries, problem = parse_xattr_entries(data, 32, 0, 4096)
        if problem:
            self.problem(where, rec.file_acl * self.block_size, problem)
        return entries

    def xattrs(self, path: str | Entry) -> dict[str, bytes]:
        """Extended attributes of a file: in-inode ones, then the xattr block's."""
        rec = self._rec(path)
        out: dict[str, bytes] = {}
        for e in self._in_inode_xattrs(rec) + self._block_xattrs(rec):
            if e.name in out:
                continue
            if e.value_inum:
                out[e.name] = self._ea_inode_value(e)
            else:
                out[e.name] = e.inline_value or b""
        return out

    def _ea_inode_value(self, e: XattrEntry) -> bytes:
        vrec = self.inode(e.value_inum)
        if not vrec.flags & FL_EA_INODE:
            self.problem(
                f"inode {e.value_inum}",
                vrec.offset,
                f"xattr {e.name} points at inode {e.value_inum}, not an EA inode",
            )
        size = min(e.value_size, vrec.size)
        return self._content_of(vrec, size).read(0, size)

    # --- entries ------------------------------------------------------------------------
    def root(self) -> Entry:
        rec = self.inode(ROOT_INO)
        if not rec.is_dir:
            self.problem(
                "inode 2", rec.offset, f"the root inode is not a directory (mode {rec.mode:o})"
            )
        e = self._entry("", rec, False)
        e.path = "/"
        return e

    def _entry(
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
                extra=dict.fromkeys(EXTRA_COLUMNS) | {"note": note},
            )
        mode = rec.mode
        kind = _KIND_OF_TYPE.get(mode & 0o170000) or FT_KIND.get(ftype, OTHER)
        if self._defer:  # files() decodes the times itself, in bulk
            created = modified = accessed = changed = None
            extra = {"dtime": rec.dtime or None, "flags": rec.flags, "note": note}
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
                "note": note,
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
            extra=extra,
        )
        if kind == SYMLINK:
            try:
                e.target = self._link_target(rec)
            except VDInspectError as exc:
                if not deleted and self.strict:
                    raise
                e.extra["note"] = (note + "; " if note else "") + f"target unreadable: {exc}"
        return e

    def _link_target(self, rec: InodeRecord) -> str | None:
        if rec.encrypted:
            return None
        if self._is_fast_symlink(rec):
            raw = rec.i_block[: rec.size]
        else:
            size = min(rec.size, self.block_size * 16)
            raw = self._content_of(rec, size).read(0, size)
        return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")

    def _rec(self, path: str | Entry) -> InodeRecord:
        if isinstance(path, int):
            return self.inode(path)
        e = path if isinstance(path, Entry) else self.lookup(path, deleted=True)
        if isinstance(e.raw, InodeRecord):
            return e.raw
        if e.inode is None or e.key == ("orphans",):
            raise InvalidArgument(f"{self.name}: {e.path or e.name} has no inode")
        return self.inode(e.inode)

    def list_dir(self, entry: Entry) -> list[Entry]:
        if entry.key == ("orphans",):
            return [self._clone(o) for o in self.orphans()]
        rec = entry.raw if isinstance(entry.raw, InodeRecord) else self.inode(entry.inode)
        if not rec.is_dir:
            raise InvalidArgument(f"{self.name}: {entry.path or entry.name} is not a directory")
        is_root = rec.number == ROOT_INO and entry.path in ("/", "")
        if self._defer:  # files(): every directory is listed once, no need to keep it
            return self._list_dir(entry, rec, is_root)
        key = (rec.number, rec.raw, entry.deleted, is_root)
        cached = self._listings.get(key, lambda: self._list_dir(entry, rec, is_root))
        return [self._clone(e) for e in cached]

    def _list_dir(self, entry: Entry, rec: InodeRecord, is_root: bool) -> list[Entry]:
        if entry.deleted:
            self._lenient += 1
        try:
            raws = self.dir_entries(rec)
            out = [self._child(d, rec) for d in raws]
        except CorruptImage:
            if not entry.deleted:
                raise
            out = []
        finally:
            if entry.deleted:
                self._lenient -= 1
        if is_root:
            out.append(self._orphan_dir_entry())
        return out

    def _clone(self, e: Entry) -> Entry:
        return Entry(
            name=e.name,
            kind=e.kind,
            size=e.size,
            allocated=e.allocated,
            mode=e.mode,
            uid=e.uid,
            gid=e.gid,
            created=e.created,
            modified=e.modified,
            accessed=e.accessed,
            changed=e.changed,
            inode=e.inode,
            links=e.links,
            deleted=e.deleted,
            recoverable=e.recoverable,
            target=e.target,
            key=e.key,
            raw=e.raw,
            extra=dict(e.extra),
        )

    def _child(self, d: RawDirent, parent: InodeRecord) -> Entry:
        name = self._name(d.name, parent)
        if not d.deleted:
            try:
                rec = self.inode(d.inode)
            except CorruptImage as exc:
                if self.strict:
                    raise
                return self._entry(
                    name,
                    None,
                    False,
                    ftype=d.file_type,
                    ino=d.inode,
                    note=f"inode unreadable: {exc}",
                )
            note = None
            if rec.links == 0 or (rec.dtime and not self.inode_allocated(d.inode)):
                note = "the entry is live but its inode is not in use (deleted inode)"
            elif rec.mode == 0:
                note = "the entry is live but its inode is empty"
            elif rec.flags & FL_ENCRYPT:
                note = "encrypted (fscrypt): the content is not decrypted"
            elif rec.flags & FL_COMPRESSED_ANY and self.sb.incompat & S.INCOMPAT_COMPRESSION:
                note = "compressed (e2compr): the content is not read"
            return self._entry(name, rec, False, ftype=d.file_type, note=note)
        if d.inode == 0:
            return self._entry(
                name,
                None,
                True,
                ftype=d.file_type,
                ino=None,
                note="removed entry whose inode number was cleared",
            )
        return self._deleted_entry(name, d.inode, d.file_type)

    def _deleted_entry(self, name: str, ino: int, ftype: int) -> Entry:
        try:
            rec = self.inode(ino)
        except CorruptImage as exc:
            return self._entry(
                name, None, True, ftype=ftype, ino=ino, note=f"inode unreadable: {exc}"
            )
        recoverable, note = self.recoverability(rec)
        return self._entry(name, rec, True, ftype=ftype, note=note, recoverable=recoverable)

    def recoverability(self, rec: InodeRecord) -> tuple[bool, str]:
        """Whether a deleted file's content can still be read, and why (not)."""
        if rec.is_empty or rec.mode == 0:
            return False, "the inode is empty (never used or wiped)"
        if self.inode_allocated(rec.number) and rec.links > 0 and not rec.dtime:
            return False, (
                "the inode is in use again (reallocated, or another name still "
                "links it): its content belongs to the current file"
            )
        if not (rec.is_reg or rec.is_dir or rec.is_symlink):
            return False, "not a regular file, directory or symlink: no content"
        if rec.inline:
            return (rec.size > 0), "inline data kept in the inode"
        if rec.is_symlink and self._is_fast_symlink(rec):
            return True, "fast symlink: the target is kept in the inode"
        if rec.size == 0:
            return False, (
                "size is 0: the kernel truncates a file when it is deleted, so the content is gone"
            )
        if rec.uses_extents:
            ent = struct.unpack_from("<HH", rec.i_block, 0)
            if ent[0] == 0xF30A and ent[1] == 0:
                return False, (
                    "extent tree cleared on deletion (ext4): content not recoverable from the inode"
                )
        elif not any(rec.i_block):
            return False, "block pointers cleared on deletion (ext3): content not recoverable"
        self._lenient += 1
        try:
            bmap = self.block_map(rec)
        except CorruptImage as exc:
            return False, f"the block map is damaged: {exc.detail}"
        finally:
            self._lenient -= 1
        runs = bmap.data_runs()
        if not runs:
            return False, "no blocks mapped: content not recoverable"
        used = sum(self.blocks_allocated(p, c) for p, c in runs)
        if used:
            return False, (
                f"{used} of {bmap.mapped_blocks} blocks are allocated again: the "
                "content has been (partly) overwritten"
            )
        return True, "block map intact and its blocks unallocated: content likely recoverable"

    def _name(self, raw: bytes, parent: InodeRecord) -> str:
        if parent.encrypted and not parent.flags & FL_CASEFOLD:
            return "_" + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        return raw.decode("utf-8", "surrogateescape")

    def dir_entries(self, rec: InodeRecord, deleted: bool = True) -> list[RawDirent]:
        """The raw entries of a directory inode (live, and with ``deleted`` removed ones)."""
        cache = self._dircache
        if cache is None:
            return self._dir_entries(rec, deleted)
        key = (rec.number, deleted)
        got = cache.get(key)
        if got is not None and got[0] == rec.raw:
            return got[1]
        out = self._dir_entries(rec, deleted)
        if not self._lenient:  # a lenient read raises where a salvage read records findings
            cache[key] = (rec.raw, out)
        return out

    def _dir_entries(self, rec: InodeRecord, deleted: bool) -> list[RawDirent]:
        kw = dict(
            filetype=self.filetype,
            inodes_count=self.sb.inodes_count,
            block_size=self.block_size,
            deleted=deleted,
        )
        where = f"directory inode {rec.number}"
        problems: list = []
        out: list[RawDirent] = []
        if rec.inline:
            data = self.inline_data(rec)
            size = min(rec.size, len(data))
            out += parse_dir_block(data[4:60], 4, problems=problems, **kw)
            if size > 60:
                out += parse_dir_block(data[60:size], 60, problems=problems, **kw)
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
                    for i in range(n):
                        lblk = lb + k + i
                        if lblk in index_blocks:
                            continue
                        block = data[i * bs : (i + 1) * bs]
                        if rec.flags & FL_INDEX and lblk and parse_dx_node(block, bs):
                            continue  # an interior htree node the root did not list
                        out += parse_dir_block(
                            block,
                            lblk * bs,
                            problems=problems,
                            skip_slack_after=root_slack if lblk == 0 else -1,
                            **kw,
                        )
        for off, msg in problems[:8]:
            self.problem(where, None, f"{msg} (byte {off} of the directory)")
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

    def _can_list_deleted_dir(self, entry: Entry) -> bool:
        return entry.key == ("orphans",) or entry.recoverable

    # --- orphans -----------------------------------------------------------------------
    def _orphan_dir_entry(self) -> Entry:
        return Entry(
            name=ORPHAN_DIR_NAME,
            kind=DIR,
            size=0,
            inode=self.sb.inodes_count + 1,
            deleted=True,
            recoverable=False,
            key=("orphans",),
            extra=dict.fromkeys(EXTRA_COLUMNS)
            | {
                "note": "virtual directory (The Sleuth Kit's $OrphanFiles): inodes "
                "that no directory entry names"
            },
        )

    def orphans(self) -> list[Entry]:
        """Inodes no directory entry (live or deleted) names, as ``OrphanFile-<inode>``.

        As The Sleuth Kit: unallocated inodes with a change time; also allocated inodes
        past the reserved ones that nothing names (e2fsck would move them to lost+found).
        """
        if self._orphans is None:
            self._lenient += 1
            defer, self._defer = self._defer, 0
            try:
                self._orphans = self._find_orphans()
            finally:
                self._lenient -= 1
                self._defer = defer
        return self._orphans

    def _named_inodes(self, start: Iterable[int], seen_dirs: set[int]) -> set[int]:
        named: set[int] = set()
        stack = list(start)
        while stack:
            ino = stack.pop()
            if ino in seen_dirs:
                continue
            seen_dirs.add(ino)
            try:
                rec = self.inode(ino)
                if not rec.is_dir:
                    continue
                raws = self.dir_entries(rec)
            except (CorruptImage, InvalidArgument):
                continue
            for d in raws:
                if not d.inode:
                    continue
                named.add(d.inode)
                if d.file_type == 2 or (not self.filetype and self._maybe_dir(d.inode)):
                    if d.inode not in seen_dirs:
                        stack.append(d.inode)
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

    def _find_orphans(self) -> list[Entry]:
        seen_dirs: set[int] = set()
        named = self._named_inodes([ROOT_INO], seen_dirs)
        named |= seen_dirs
        special = self._special_inodes()
        first = self.sb.first_ino
        isz = self.inode_size
        ipg = self.inodes_per_group
        csum = self.sb.metadata_csum or self.sb.gdt_csum
        candidates: list[tuple[int, bool]] = []
        for g in range(self.group_count):
            if not self.itable_ok[g]:
                continue
            flags = int(self.gd["flags"][g])
            if csum and flags & S.BG_INODE_UNINIT:
                continue
            used = ipg - (int(self.gd["itable_unused"][g]) if csum else 0)
            used = max(0, min(used, ipg))
            if not used:
                continue
            table = int(self.gd["inode_table"][g]) * self.block_size
            try:
                raw = self.read_bytes(table, used * isz, f"inode table {g}")
            except CorruptImage:
                continue
            recs = np.frombuffer(raw, dtype=np.uint8).reshape(used, isz)
            ctime = recs[:, 0x0C:0x10].copy().view("<u4").ravel()
            mode = recs[:, 0:2].copy().view("<u2").ravel()
            links = recs[:, 0x1A:0x1C].copy().view("<u2").ravel()
            bm = self._bitmap("inode", g)
            alloc = np.zeros(used, dtype=bool) if bm is None else bm[:used]
            base = g * ipg + 1
            tsk = (~alloc) & (ctime != 0)
            unnamed_live = alloc & ((links > 0) | (mode != 0))
            for i in np.flatnonzero(tsk | unnamed_live).tolist():
                ino = base + i
                if ino < first or ino in named or ino in special:
                    continue
                candidates.append((ino, bool(alloc[i])))
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
                inside |= self._named_inodes([d], set(seen_dirs) - {d})
        out = []
        for ino, alloc in candidates:
            if ino in inside:
                continue
            rec = self.inode(ino)
            if rec.flags & FL_EA_INODE:
                continue
            if alloc:
                note = (
                    "allocated inode that no directory entry names (e2fsck would move it "
                    "to lost+found)"
                )
                e = self._entry(f"OrphanFile-{ino}", rec, False, note=note, recoverable=True)
            else:
                rcv, why = self.recoverability(rec)
                e = self._entry(
                    f"OrphanFile-{ino}", rec, True, note="unnamed inode; " + why, recoverable=rcv
                )
            out.append(e)
        return out

    # --- content --------------------------------------------------------------------
    def content(self, entry: Entry) -> ByteSource:
        if entry.key == ("orphans",):
            raise InvalidArgument(f"{self.name}: {entry.path} is a directory")
        if entry.raw is None and entry.inode is None:
            raise NotFound(
                f"{self.name}: {entry.path or entry.name}: deleted entry without "
                "an inode number: no content"
            )
        rec = self._rec(entry)
        where = f"inode {rec.number}"
        if rec.is_dir and entry.kind == DIR:
            raise InvalidArgument(f"{self.name}: {entry.path} is a directory")
        if rec.encrypted and (rec.is_reg or rec.is_symlink):
            raise EncryptedImage(
                "the file's content is encrypted (fscrypt); vdinspect does not decrypt",
                path=self.name,
                structure=where,
                offset=rec.offset,
            )
        if rec.flags & FL_COMPRESSED_ANY and self.sb.incompat & S.INCOMPAT_COMPRESSION:
            raise UnsupportedFeature(
                "the file is compressed (e2compr), which vdinspect does not read",
                path=self.name,
                structure=where,
                offset=rec.offset,
            )
        size = rec.size
        if not (rec.is_reg or rec.is_symlink or rec.is_dir):
            return Zero(0, name=entry.path or entry.name)
        if entry.deleted:
            self._lenient += 1
            try:
                return self._content_of(rec, size, name=entry.path)
            except CorruptImage as exc:
                raise NotFound(
                    f"{self.name}: {entry.path}: deleted, content not recoverable: {exc.detail}"
                ) from exc
            finally:
                self._lenient -= 1
        return self._content_of(rec, size, name=entry.path)

    def _content_of(self, rec: InodeRecord, size: int, name: str | None = None) -> ByteSource:
        name = name or f"{self.name}:inode {rec.number}"
        if rec.inline:
            data = self.inline_data(rec)
            if size > len(data):  # past the inline bytes a file reads as zeros (sparse)
                return Concat([MemorySource(data), Zero(size - len(data))], name=name)
            return MemorySource(data[:size], name=name)
        if self._is_fast_symlink(rec):
            return MemorySource(rec.i_block[:size], name=name)
        bmap = self.block_map(rec)
        return FileSource(self.dev, self.block_size, size, bmap, name)

    def readlink_entry(self, entry: Entry) -> str:
        if entry.kind != SYMLINK:
            raise InvalidArgument(f"{self.name}: {entry.path} is not a symbolic link")
        if entry.target is None:
            rec = self._rec(entry)
            if rec.encrypted:
                raise EncryptedImage(
                    "the symlink target is encrypted (fscrypt)",
                    path=self.name,
                    structure=f"inode {rec.number}",
                    offset=rec.offset,
                )
            raise CorruptImage(
                "symlink target unreadable",
                path=self.name,
                structure=f"inode {rec.number}",
                offset=rec.offset,
            )
        return entry.target

    def extents(self, path: str | Entry) -> list[dict]:
        """A file's mapping as rows: logical, physical (bytes on the volume), length, state."""
        rec = self._rec(path)
        bs = self.block_size
        names = {0: "data", 1: "uninitialized", 2: "damaged"}
        bmap = self.block_map(rec)
        return [
            dict(logical=lb * bs, physical=pb * bs, length=cnt * bs, state=names[st])
            for lb, cnt, pb, st in zip(
                bmap.lblk.tolist(), bmap.count.tolist(), bmap.pblk.tolist(), bmap.state.tolist()
            )
        ]

    # --- the files() frame --------------------------------------------------------------
    def files(
        self, path: str = "/", *, recursive: bool = True, deleted: bool = True
    ) -> pd.DataFrame:
        """The ``files()`` frame (same rows as the generic walk, built column-wise).

        Extra columns: ``mtime_ns``, ``atime_ns``, ``ctime_ns``, ``crtime_ns`` (full
        precision, nanoseconds since the epoch), ``dtime`` (deletion time, seconds),
        ``flags`` (i_flags) and ``note`` (why a deleted file is or is not recoverable).
        """
        self._defer += 1
        self._dircache = {}  # the orphan search reads every directory again
        try:
            order, fast, entries = self._walk_columns(path, recursive, deleted)
        finally:
            self._defer -= 1
            self._dircache = None
        df = assemble_files(order, fast, entries, self.huge_file, self.block_size)

        def all_entries() -> list[Entry]:  # only asked for when the volume has damage
            f, e = iter(fast), iter(entries)
            out = []
            for is_fast in order:
                if is_fast:
                    p, name, parent, ino, raw = next(f)
                    kind = DIR if _FAST_FIELDS.unpack_from(raw, 0)[0] & 0o170000 == 0o40000 else FILE
                    out.append(Entry(name=name, kind=kind, path=p, parent=parent, inode=ino,
                                     key=ino))
                else:
                    out.append(next(e))
            return out

        return self._add_damage(df, all_entries, lambda: self._sound_rows(order, fast))

    def _sound_rows(self, order: list[bool], fast: list[tuple]) -> list[bool]:
        """Per row of the column walk, True for a plain file whose extents (all in the
        inode: a depth-0 tree) lie inside the volume and miss every damaged range — its
        ``damaged`` value is 0 without building its content. Others are left to the
        exact path (False)."""
        from ...io import merge_ranges

        pairs = merge_ranges(self.dev._damage_pairs(0, self.dev.size))
        starts = [a for a, _b in pairs]
        ends = [b for _a, b in pairs]
        bs, limit = self.block_size, self.block_limit
        out = [False] * len(order)
        rows = (i for i, is_fast in enumerate(order) if is_fast)
        for row, (_p, _n, _d, _ino, raw) in zip(rows, fast):
            mode, _dt, _links, flags = _FAST_FIELDS.unpack_from(raw, 0)
            if mode & 0o170000 != 0o100000 or not flags & FL_EXTENTS:
                continue
            magic, count, _max, depth = struct.unpack_from("<4H", raw, 40)
            if magic != 0xF30A or depth or count > 4:
                continue
            ok = True
            for k in range(count):
                _lb, ln, hi, lo = struct.unpack_from("<IHHI", raw, 52 + 12 * k)
                ln = ln - 32768 if ln > 32768 else ln
                pb = (hi << 32) | lo
                if ln and (pb == 0 or pb + ln > limit):
                    ok = False  # outside the volume: the exact path reports it
                    break
                a, b = pb * bs, (pb + ln) * bs
                i = bisect.bisect_right(ends, a)
                if i < len(starts) and starts[i] < b:
                    ok = False
                    break
            out[row] = ok
        return out

    def _walk_columns(self, path: str, recursive: bool, deleted: bool):
        """The walk of ``FileSystem.iter_entries`` (same order, loop and depth rules), with
        plain live files and directories kept as raw inode records instead of Entries.

        Returns (order, fast, entries): ``order`` says for each row whether it comes from
        ``fast`` (path, name, parent, inode, record bytes) or ``entries`` (Entry objects).
        """
        top = self.lookup(path, deleted=deleted)
        order: list[bool] = []
        fast: list[tuple] = []
        entries: list[Entry] = []
        if top.kind != DIR:
            order.append(False)
            entries.append(top)
            return order, fast, entries
        ipg = self.inodes_per_group
        count = self.sb.inodes_count
        unpack = _FAST_FIELDS.unpack_from
        stack: list[tuple[Entry, tuple]] = [(top, (self._dir_id(top),))]
        listed = {(self._dir_id(top), top.deleted)}  # as FileSystem._walk: each dir once
        while stack:
            d, ancestors = stack.pop()
            try:
                kids = self._children_for_walk(d)
            except VDInspectError as e:
                if self.strict and not isinstance(e, CorruptImage):
                    raise
                self.finding(
                    "error", "directory", None, f"{d.path or '/'}: unreadable directory: {e}"
                )
                continue
            subdirs = []
            dpath = d.path
            prefix = "/" if dpath in ("", "/") else dpath + "/"
            parent_rec = d.raw if isinstance(d.raw, InodeRecord) else None
            for c in kids:
                if isinstance(c, Entry):
                    if c.deleted and not deleted:
                        continue
                    c.parent = dpath
                    c.path = prefix + c.name
                    order.append(False)
                    entries.append(c)
                    child_dir = c.kind == DIR
                    ident = self._dir_id(c)
                    node = c
                else:  # a live dirent: cheap when it is a plain file or directory
                    ino = c.inode
                    raw = None
                    if 1 <= ino <= count:
                        g = (ino - 1) // ipg
                        if g < len(self.itable_ok) and self.itable_ok[g]:
                            raw, off = self._inode_raw(g, ino - 1 - g * ipg)
                    mode = links = dtime = iflags = 0
                    if raw is not None:
                        mode, dtime, links, iflags = unpack(raw, 0)
                    ftype = mode & 0o170000
                    if (
                        raw is None
                        or not links
                        or dtime
                        or iflags & _FLAGS_NOTED
                        or ftype not in (0o100000, 0o40000)
                    ):
                        e = self._child(c, parent_rec)  # anything unusual: the full way
                        e.parent = dpath
                        e.path = prefix + e.name
                        order.append(False)
                        entries.append(e)
                        child_dir = e.kind == DIR
                        ident = self._dir_id(e)
                        node = e
                    else:
                        name = self._name(c.name, parent_rec)
                        p = prefix + name
                        order.append(True)
                        fast.append((p, name, dpath, ino, raw))
                        child_dir = ftype == 0o40000
                        if child_dir and recursive:
                            rec = InodeRecord(ino, raw, off, self.huge_file, self.block_size)
                            node = Entry(
                                name=name,
                                kind=DIR,
                                path=p,
                                parent=dpath,
                                inode=ino,
                                key=ino,
                                raw=rec,
                                size=rec.size,
                                links=links,
                            )
                        ident = ino
                if recursive and child_dir:
                    if ident is not None and ident in ancestors:
                        self.finding(
                            "error",
                            "directory",
                            None,
                            f"{node.path}: directory "
                            "loop (points back to an ancestor); not followed",
                        )
                        continue
                    if ident is not None and (ident, node.deleted) in listed:
                        self.finding(
                            "error",
                            "directory",
                            None,
                            f"{node.path}: directory already listed under another name "
                            "(a directory hard link); not followed",
                        )
                        continue
                    if len(ancestors) >= MAX_DEPTH:
                        self.finding(
                            "error",
                            "directory",
                            None,
                            f"{node.path}: deeper than {MAX_DEPTH} levels; not followed",
                        )
                        continue
                    if node.deleted and not self._can_list_deleted_dir(node):
                        continue
                    listed.add((ident, node.deleted))
                    subdirs.append((node, ancestors + (ident,)))
            stack.extend(reversed(subdirs))
        return order, fast, entries

    def _children_for_walk(self, d: Entry) -> list:
        """A directory's children for the column walk: live dirents stay raw, the rest
        (deleted entries, orphans, the virtual directory) are Entries."""
        if d.key == ("orphans",) or d.deleted or not isinstance(d.raw, InodeRecord):
            return self.list_dir(d)
        rec = d.raw
        if not rec.is_dir:
            raise InvalidArgument(f"{self.name}: {d.path or d.name} is not a directory")
        out: list = []
        for r in self.dir_entries(rec):
            if r.deleted or not r.inode:
                out.append(self._child(r, rec))
            else:
                out.append(r)
        if rec.number == ROOT_INO and d.path in ("/", ""):
            out.append(self._orphan_dir_entry())
        return out

    # --- reports ------------------------------------------------------------------------
    def info(self) -> dict:
        sb = self.sb
        r = sb.raw
        out = dict(
            fstype=self.fstype,
            label=self.label,
            uuid=self.uuid,
            block_size=self.block_size,
            blocks=sb.blocks_count,
            free_blocks=sb.free_blocks,
            size=sb.blocks_count * self.block_size,
            inodes=sb.inodes_count,
            free_inodes=r.s_free_inodes_count,
            inode_size=self.inode_size,
            groups=self.group_count,
            blocks_per_group=sb.blocks_per_group,
            inodes_per_group=sb.inodes_per_group,
            cluster_size=self.block_size * sb.cluster_ratio,
            features=S.feature_names(sb.compat, sb.incompat, sb.ro_compat),
            revision=f"{sb.rev_level}.{r.s_minor_rev_level}",
            state=_state_text(r.s_state),
            created=_sb_time(sb.time("mkfs_time")),
            mounted=_sb_time(sb.time("mtime")),
            written=_sb_time(sb.time("wtime")),
            last_checked=_sb_time(sb.time("lastcheck")),
            mount_count=r.s_mnt_count,
            last_mounted=r.s_last_mounted.split(b"\0", 1)[0].decode("utf-8", "replace") or None,
            superblock=self.superblock_source,
            needs_recovery=self.needs_recovery,
            journal=self._journal_text(),
            journal_replayed=bool(self.journal_transactions_replayed),
        )
        if sb.incompat & S.INCOMPAT_CASEFOLD:
            out["encoding"] = {1: "utf8-12.1"}.get(r.s_encoding, str(r.s_encoding))
        return out

    def _journal_text(self) -> str | None:
        if not self.sb.compat & S.COMPAT_HAS_JOURNAL:
            return None
        if self.external_journal:
            return f"external (uuid {_uuid(self.sb.raw.s_journal_uuid)})"
        if self.journal is None:
            return f"inode {self.sb.raw.s_journal_inum} (unreadable: {self.journal_error})"
        j = self.journal
        return (
            f"inode {self.sb.raw.s_journal_inum}, {j.maxlen} blocks, v{j.version}, "
            f"{', '.join(j.features()) or 'no features'}"
        )

    def journal_transactions(self) -> list[dict]:
        """Every transaction record in the journal's log area (like ``jls``/``logdump``):
        rows of sequence, type, journal block, host offset and the filesystem blocks."""
        if self.journal is None:
            return []
        rows = []
        for r in self.journal.scan_all():
            row = dict(
                sequence=r["sequence"],
                type=r["type"],
                journal_block=r["jblock"],
                host_offset=r["offset"],
            )
            if "tags" in r:
                row["blocks"] = [b for b, _f in r["tags"]]
                row["data_offsets"] = [self.journal.offset_of(j) for j in r["data"]]
            elif "revoked" in r:
                row["blocks"] = r["revoked"]
            else:
                row["blocks"] = []
                row["commit_time"] = r.get("commit_time")
            rows.append(row)
        return rows

    def structures(self) -> list[dict]:
        sb = self.sb
        bs = self.block_size
        rows = []

        def add(name, off, length, desc):
            rows.append(
                dict(
                    name=name, host_file=self.name, host_offset=off, length=length, description=desc
                )
            )

        add("boot area", 0, 1024, "unused by ext (boot loader space)")
        add(
            "superblock",
            1024,
            1024,
            f"{sb.blocks_count} blocks of {bs} bytes, {sb.inodes_count} inodes, "
            f"{self.group_count} groups; features "
            f"{' '.join(S.feature_names(sb.compat, sb.incompat, sb.ro_compat))}",
        )
        reserved = sb.raw.s_reserved_gdt_blocks
        for g in range(self.group_count):
            if g and sb.has_super(g):
                off = sb.group_first_block(g) * bs
                add("backup superblock", off, 1024, f"copy of the superblock in group {g}")
        for b in _runs(self.gdt_blocks):
            add(
                "group descriptors",
                b[0] * bs,
                b[1] * bs,
                f"{self.group_count} descriptors of {sb.desc_size} bytes",
            )
        if reserved and not sb.incompat & S.INCOMPAT_META_BG:
            start = self.gdt_blocks[-1] + 1 if self.gdt_blocks else 0
            add(
                "reserved GDT blocks",
                start * bs,
                reserved * bs,
                "room for the descriptor table to grow (resize_inode)",
            )
        for g in range(self.group_count):
            gd = self.gd[g]
            add("block bitmap", int(gd["block_bitmap"]) * bs, bs, f"group {g}")
            add("inode bitmap", int(gd["inode_bitmap"]) * bs, bs, f"group {g}")
            add(
                "inode table",
                int(gd["inode_table"]) * bs,
                self.itable_blocks * bs,
                f"group {g}: inodes {g * self.inodes_per_group + 1}.."
                f"{(g + 1) * self.inodes_per_group}",
            )
        if self.journal is not None:
            jm = getattr(self, "_journal_map", None)
            if jm is not None:
                for pb, cnt in jm.data_runs():
                    add("journal", pb * bs, cnt * bs, f"journal inode {sb.raw.s_journal_inum}")
            add(
                "journal superblock",
                self.journal.offset_of(0),
                bs,
                f"JBD2 v{self.journal.version}, sequence {self.journal.sequence}, start "
                f"{self.journal.start}",
            )
            for r in self.journal_transactions():
                desc = f"sequence {r['sequence']}"
                if r["type"] == "descriptor":
                    desc += (
                        f": {len(r['blocks'])} blocks logged: "
                        + ", ".join(map(str, r["blocks"][:32]))
                        + (" ..." if len(r["blocks"]) > 32 else "")
                    )
                elif r["type"] == "revoke":
                    desc += f": revokes {', '.join(map(str, r['blocks'][:32]))}"
                add(f"journal {r['type']}", r["host_offset"], bs, desc)
                for fsb, off in zip(r.get("blocks", []), r.get("data_offsets", [])):
                    add(
                        "journal data",
                        off,
                        bs,
                        f"sequence {r['sequence']}: logged copy of block {fsb}",
                    )
        if sb.incompat & S.INCOMPAT_MMP and sb.raw.s_mmp_block:
            add("MMP block", sb.raw.s_mmp_block * bs, bs, "multi-mount protection")
        return rows

    def check(self) -> list[dict]:
        if not self._checked:
            self._checked = True
            self._run_checks()
        return list(self.findings)

    def _run_checks(self) -> None:
        sb = self.sb
        r = sb.raw
        if not r.s_state & S.STATE_VALID:
            self.finding(
                "warning",
                "superblock",
                sb.offset + 0x3A,
                "not cleanly unmounted (state flag 'valid' is clear)",
            )
        if r.s_state & S.STATE_ERROR:
            self.finding(
                "warning",
                "superblock",
                sb.offset + 0x3A,
                "the kernel recorded errors (state flag 'errors')",
            )
        if r.s_error_count:
            self.finding(
                "warning",
                "superblock",
                sb.offset + 0x194,
                f"{r.s_error_count} errors recorded by the kernel",
            )
        if r.s_last_orphan:
            self.finding(
                "info",
                "superblock",
                sb.offset + 0xE8,
                f"orphan inode list starts at inode {r.s_last_orphan} (files unlinked while open)",
            )
        if sb.metadata_csum:
            self._check_inode_checksums()

    def _check_inode_checksums(self) -> None:
        sb = self.sb
        isz = self.inode_size
        bad = []
        for g in range(self.group_count):
            if not self.itable_ok[g] or int(self.gd["flags"][g]) & S.BG_INODE_UNINIT:
                continue
            bm = self._bitmap("inode", g)
            if bm is None:
                continue
            used = self.inodes_per_group - int(self.gd["itable_unused"][g])
            idx = np.flatnonzero(bm[: max(0, used)])
            if not len(idx):
                continue
            table = int(self.gd["inode_table"][g]) * self.block_size
            raw = self.read_bytes(table, int(idx[-1] + 1) * isz, f"inode table {g}")
            recs = np.frombuffer(raw, dtype=np.uint8).reshape(-1, isz)[idx].copy()
            stored = recs[:, 0x7C:0x7E].copy().view("<u2").ravel().astype(np.uint32)
            recs[:, 0x7C:0x7E] = 0
            if isz > 128:
                extra = recs[:, 0x80:0x82].copy().view("<u2").ravel()
                has_hi = extra >= 4
                hi = recs[:, 0x82:0x84].copy().view("<u2").ravel().astype(np.uint32)
                stored = np.where(has_hi, stored | (hi << 16), stored)
                recs[has_hi, 0x82:0x84] = 0
            else:
                has_hi = np.zeros(len(idx), dtype=bool)
            inos = (g * self.inodes_per_group + idx + 1).astype("<u4")
            head = np.concatenate([inos.view(np.uint8).reshape(-1, 4), recs[:, 0x64:0x68]], axis=1)
            rows = np.concatenate([head, recs], axis=1)
            seed = sb.csum_seed
            crc = np.array([S.ext4_chksum(seed, row.tobytes()) for row in rows], dtype=np.uint32)
            crc = np.where(has_hi, crc, crc & 0xFFFF)
            for i in np.flatnonzero(crc != stored).tolist():
                bad.append((int(inos[i]), table + int(idx[i]) * isz))
        for ino, off in bad[:16]:
            self.finding("error", f"inode {ino}", off, "inode checksum mismatch")
        if len(bad) > 16:
            self.finding("error", "inode table", None, f"{len(bad)} inodes have bad checksums")

    def _hardlink_key(self, entry: Entry):
        """Live names of one inode with more than one link are hard links."""
        if entry.deleted or entry.inode is None or not entry.links or entry.links < 2:
            return None
        return entry.inode

    def _dir_id(self, entry: Entry):
        return entry.inode if entry.inode is not None else entry.key


# --- helpers -----------------------------------------------------------------------------

_NAT = np.iinfo(np.int64).min
_TIME_COLS = (
    ("created", "crtime"),
    ("modified", "mtime"),
    ("accessed", "atime"),
    ("changed", "ctime"),
)


def _us_of(t: dt.datetime | None) -> int:
    if t is None:
        return _NAT
    d = t - EPOCH
    return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds


def _int_array(vals: list, pd):
    """A nullable Int64 array from Python ints and None, built through numpy."""
    mask = np.array([v is None for v in vals], dtype=bool)
    data = np.array([0 if v is None else v for v in vals], dtype=np.int64)
    return pd.arrays.IntegerArray(data, mask)


def files_table(entries: list[Entry]) -> pd.DataFrame:
    """Entries as the ``files()`` frame: the schema of ``frames.files_frame`` with the ext
    extra columns typed (nanosecond times and flags as Int64, note as string)."""
    import pandas as pd

    from ...frames import FILES_COLUMNS

    n = len(entries)
    # times: decoded in bulk from the inode records of the entries built by files()
    bulk = [
        i
        for i, e in enumerate(entries)
        if isinstance(e.raw, InodeRecord) and "mtime_ns" not in e.extra
    ]
    ns = {k: np.full(n, _NAT, dtype=np.int64) for _, k in _TIME_COLS}
    if bulk:
        by_size: dict[int, list[int]] = {}
        for i in bulk:
            by_size.setdefault(len(entries[i].raw.raw), []).append(i)
        for size, idx in by_size.items():
            recs = np.frombuffer(b"".join(entries[i].raw.raw for i in idx), dtype=np.uint8).reshape(
                len(idx), size
            )
            dec = decode_times_bulk(recs)
            for _, k in _TIME_COLS:
                ns[k][idx] = dec[k]
    bulk_set = set(bulk)
    others = [i for i in range(n) if i not in bulk_set] if len(bulk) != n else []
    for i in others:
        x = entries[i].extra
        for _, k in _TIME_COLS:
            v = x.get(f"{k}_ns")
            if v is not None:
                ns[k][i] = v
    us_cols = {}
    for col, k in _TIME_COLS:
        a = ns[k]
        us = np.where(a == _NAT, _NAT, a // 1000)
        for i in others:
            e = entries[i]
            if e.extra.get(f"{k}_ns") is None and getattr(e, col) is not None:
                us[i] = _us_of(getattr(e, col))  # an entry with a datetime but no ns column
        us_cols[col] = pd.Series(us.view("datetime64[us]")).dt.tz_localize("UTC").array

    def strings(vals):
        return pd.array(vals, dtype="string")

    cols: dict = {}
    cols["path"] = strings([e.path for e in entries])
    cols["name"] = strings([e.name for e in entries])
    cols["parent"] = strings([e.parent for e in entries])
    cols["kind"] = strings([e.kind for e in entries])
    cols["size"] = np.array([e.size for e in entries], dtype=np.int64)
    cols["allocated"] = _int_array([e.allocated for e in entries], pd)
    cols["mode"] = _int_array([e.mode for e in entries], pd)
    cols["uid"] = _int_array([e.uid for e in entries], pd)
    cols["gid"] = _int_array([e.gid for e in entries], pd)
    cols.update(us_cols)
    cols["inode"] = _int_array([e.inode for e in entries], pd)
    cols["links"] = _int_array([e.links for e in entries], pd)
    cols["deleted"] = np.array([e.deleted for e in entries], dtype=bool)
    cols["recoverable"] = np.array([e.recoverable for e in entries], dtype=bool)
    cols["target"] = strings([e.target for e in entries])
    cols = {c: cols[c] for c in FILES_COLUMNS}
    for col, k in (
        ("mtime_ns", "mtime"),
        ("atime_ns", "atime"),
        ("ctime_ns", "ctime"),
        ("crtime_ns", "crtime"),
    ):
        a = ns[k]
        cols[col] = pd.arrays.IntegerArray(np.where(a == _NAT, 0, a), a == _NAT)
    cols["dtime"] = _int_array([e.extra.get("dtime") for e in entries], pd)
    cols["flags"] = _int_array([e.extra.get("flags") for e in entries], pd)
    cols["note"] = strings([e.extra.get("note") for e in entries])
    return pd.DataFrame(cols)


def _sizes(recs: np.ndarray) -> np.ndarray:
    """i_size of every record; one Linux would read as negative (corrupt) counts as 0."""
    hi = _u(recs, 0x6C, 4)
    bad = hi >= 1 << 31
    return np.where(bad, 0, _u(recs, 4, 4) | (np.where(bad, 0, hi) << 32))


def _u(recs: np.ndarray, off: int, width: int) -> np.ndarray:
    """A little-endian unsigned field of every record, as int64."""
    return recs[:, off : off + width].copy().view(f"<u{width}").ravel().astype(np.int64)


def fast_table(fast: list[tuple], huge_file: bool, block_size: int) -> pd.DataFrame:
    """Rows of live plain files and directories, decoded column-wise from their records."""
    import pandas as pd

    n = len(fast)
    paths, names, parents, inos, raws = zip(*fast) if n else ((), (), (), (), ())
    isz = len(raws[0]) if n else 128
    recs = np.frombuffer(b"".join(raws), dtype=np.uint8).reshape(n, isz)
    mode = _u(recs, 0, 2)
    flags = _u(recs, 0x20, 4)
    blocks = _u(recs, 0x1C, 4)
    if huge_file:
        blocks = blocks | (_u(recs, 0x74, 2) << 32)
        allocated = blocks * np.where(flags & 0x40000, block_size, 512)
    else:
        allocated = blocks * 512
    times = decode_times_bulk(recs)
    nat = np.iinfo(np.int64).min

    def ints(a):
        return pd.arrays.IntegerArray(np.asarray(a, dtype=np.int64), np.zeros(n, dtype=bool))

    def tcol(a):
        us = np.where(a == nat, nat, a // 1000)
        return pd.Series(us.view("datetime64[us]")).dt.tz_localize("UTC").array

    def nsint(a):
        return pd.arrays.IntegerArray(np.where(a == nat, 0, a), a == nat)

    cols = {
        "path": pd.array(list(paths), dtype="string"),
        "name": pd.array(list(names), dtype="string"),
        "parent": pd.array(list(parents), dtype="string"),
        "kind": pd.array(np.where(mode & 0o170000 == 0o40000, DIR, FILE).tolist(), dtype="string"),
        "size": _sizes(recs),
        "allocated": ints(allocated),
        "mode": ints(mode),
        "uid": ints(_u(recs, 2, 2) | (_u(recs, 0x78, 2) << 16)),
        "gid": ints(_u(recs, 0x18, 2) | (_u(recs, 0x7A, 2) << 16)),
        "created": tcol(times["crtime"]),
        "modified": tcol(times["mtime"]),
        "accessed": tcol(times["atime"]),
        "changed": tcol(times["ctime"]),
        "inode": ints(inos),
        "links": ints(_u(recs, 0x1A, 2)),
        "deleted": np.zeros(n, dtype=bool),
        "recoverable": np.zeros(n, dtype=bool),
        "target": pd.array([None] * n, dtype="string"),
        "mtime_ns": nsint(times["mtime"]),
        "atime_ns": nsint(times["atime"]),
        "ctime_ns": nsint(times["ctime"]),
        "crtime_ns": nsint(times["crtime"]),
        "dtime": pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)),
        "flags": ints(flags),
        "note": pd.array([None] * n, dtype="string"),
    }
    return pd.DataFrame(cols)


def assemble_files(
    order: list[bool], fast: list[tuple], entries: list[Entry], huge_file: bool, block_size: int
) -> pd.DataFrame:
    """The files() frame from the column walk: fast rows and Entry rows, in walk order."""
    import pandas as pd

    if not fast:
        return files_table(entries)
    a = fast_table(fast, huge_file, block_size)
    if not entries:
        return a
    b = files_table(entries)
    flags = np.array(order, dtype=bool)
    a.index = np.flatnonzero(flags)
    b.index = np.flatnonzero(~flags)
    return pd.concat([a, b]).sort_index(kind="stable").reset_index(drop=True)


def _runs(blocks: list[int]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for b in blocks:
        if out and out[-1][0] + out[-1][1] == b:
            out[-1][1] += 1
        else:
            out.append([b, 1])
    return [(a, n) for a, n in out]


def _uuid(b: bytes) -> str:
    import uuid

    return str(uuid.UUID(bytes=bytes(b)))


def _sb_time(sec: int) -> dt.datetime | None:
    if not sec:
        return None
    return ns_to_datetime(sec * 1_000_000_000)


def _state_text(state: int) -> str:
    parts = ["clean" if state & S.STATE_VALID else "not clean"]
    if state & S.STATE_ERROR:
        parts.append("errors")
    if state & S.STATE_ORPHAN:
        parts.append("orphans being recovered")
    return ", ".join(parts)


def _fs_kind(sb: S.SuperblockInfo) -> str:
    """ext2, ext3 or ext4, decided from the features as blkid does."""
    ext2_ro = S.RO_COMPAT_SPARSE_SUPER | S.RO_COMPAT_LARGE_FILE | S.RO_COMPAT_BTREE_DIR
    ext2_inc = S.INCOMPAT_FILETYPE | S.INCOMPAT_META_BG
    ext3_inc = ext2_inc | S.INCOMPAT_RECOVER
    if sb.ro_compat & ~ext2_ro:
        return "ext4"
    if sb.compat & S.COMPAT_HAS_JOURNAL:
        return "ext3" if not sb.incompat & ~ext3_inc else "ext4"
    return "ext2" if not sb.incompat & ~ext2_inc else "ext4"
