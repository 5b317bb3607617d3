"""The ext2/3/4 reader: the FileSystem protocol over superblock, inodes, maps and journal.

Read-only in every case: a filesystem that needs journal recovery is read through an
in-memory overlay of its committed journal blocks (``replay_journal=True``, the default),
or as it lies on disk (``replay_journal=False``); either way ``check()`` says the journal
was not clean. Deleted names come from directory slack and are marked ``deleted=True``
(``found_by`` ``slack``; copies of live entries left by htree splits are not listed);
``recoverable`` is True only when the inode still maps its blocks and none of them is
allocated again, or the inode is on the orphan list (deleted while open: its blocks are
its own). A real ext4 deletion clears the extent tree: the newest older copy of the
inode in the journal is then used when there is one (``found_by`` ``journal``), else the
``note`` column says why not. Inodes that no directory entry names are listed under
``/$OrphanFiles`` as ``OrphanFile-<inode>``, the way The Sleuth Kit's ``fls`` shows them.
"""

from __future__ import annotations

from ...errors import (
    CorruptImage,
    EncryptedImage,
    InvalidArgument,
    NotFound,
    UnsupportedFeature,
    VDInspectError,
)
from ...io import ByteSource, Concat, LRUCache, MemorySource, Zero
from ..base import DIR, SYMLINK, Entry, FileSystem, inode_record
from . import superblock as S
from .extents import (
    DAMAGED,
    DATA,
    EXTENT_MAGIC,
    BlockMap,
    blockmap_map,
    extent_map,
    mapped_source,
)
from .groups import GroupsMixin
from .history import HistoryMixin
from .inode import FL_COMPRESSED_ANY, I_BLOCK_SIZE, InodeRecord
from .journal import Journal, Transaction
from .listing import ListingMixin
from .mount import MountMixin
from .recovery import RecoveryMixin
from .report import ReportMixin
from .walk import WalkMixin
from .xattrs import XattrsMixin


class ExtFileSystem(
    MountMixin,
    GroupsMixin,
    XattrsMixin,
    ListingMixin,
    RecoveryMixin,
    HistoryMixin,
    WalkMixin,
    ReportMixin,
    FileSystem,
):
    """An ext2, ext3 or ext4 volume on a ByteSource (a partition, LV or raw file).

    The facade over the concept modules it is made of: :mod:`.mount` (opening),
    :mod:`.groups`, :mod:`.xattrs`, :mod:`.listing`, :mod:`.recovery`, :mod:`.history`
    (older block copies in the journal), :mod:`.walk` (the ``files()`` fast path) and
    :mod:`.report`; here: reads, block maps and content.
    ``lenient`` (a depth) makes problems raise while probing deleted data, whatever the
    mode; ``column_walk`` is set while ``files()`` walks.
    """

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
        self.lenient = 0
        self.column_walk = 0
        self.dirent_cache: dict | None = None
        self.superblock_source = "primary"
        self.backup_group: int | None = None
        self.descriptor_source = "primary"
        self.replay_journal = replay_journal
        self.journal: Journal | None = None
        self.journal_transactions_replayed: list[Transaction] = []
        self.journal_error: str | None = None
        self.external_journal = False
        self.journal_map: BlockMap | None = None
        self._maps = LRUCache(256)
        self._damaged: bool | None = None
        self.journal_inodes: dict[int, int] = {}  # inode -> journal transaction it came from
        self.unreadable_inodes: dict[int, int] = {}  # inode -> its unreadable table block
        self.mount()

    @property
    def block_limit(self) -> int:
        """Blocks that can be read: the superblock's count, or fewer on a cut-off image."""
        return min(self.sb.blocks_count, self.base.size // self.block_size)

    # --- errors -----------------------------------------------------------------------

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

    def record_of(self, path: str | Entry | int) -> InodeRecord:
        """The inode record of a path, an Entry or an inode number."""
        return inode_record(self, path, InodeRecord)

    def volume_damaged(self) -> bool:
        """Whether any byte of the volume cannot be read (asked once, then kept)."""
        if self._damaged is None:
            self._damaged = super().volume_damaged()
        return self._damaged

    def directory_damage(self, entry: Entry) -> int:
        """Bytes of a directory's blocks (and of its extent tree's blocks) that cannot be
        read: the entries stored there are lost unless the journal names them."""
        if entry.key == ("orphans",) or not self.volume_damaged():
            return 0
        try:
            rec = self.record_of(entry)
            if rec.inline:
                return 0
            with self.probing():
                bmap = self.block_map(rec)
        except (VDInspectError, ValueError):
            return 0
        bs = self.block_size
        lost = 0
        for _lb, cnt, pb, st in zip(
            bmap.lblk.tolist(), bmap.count.tolist(), bmap.pblk.tolist(), bmap.state.tolist()
        ):
            if st == DAMAGED:
                lost += cnt * bs
            elif st == DATA and (pb + cnt) * bs <= self.dev.size:
                lost += sum(n for _a, n in self.dev.damaged_ranges(pb * bs, cnt * bs))
        return lost

    # --- mapping -------------------------------------------------------------------
    def block_map(self, rec: InodeRecord) -> BlockMap:
        """Where ``rec``'s content lies (extent tree or block map), cached."""

        def load():
            if rec.inline or self.is_fast_symlink(rec):
                return BlockMap.empty()
            nblocks = -(-rec.size // self.block_size)
            if nblocks == 0:
                return BlockMap.empty()
            if rec.uses_extents:
                return extent_map(self, rec, nblocks)
            return blockmap_map(self, rec, nblocks)

        if self.lenient:
            return load()
        return self._maps.get((rec.number, rec.raw), load)

    def is_fast_symlink(self, rec: InodeRecord) -> bool:
        if not rec.is_symlink or rec.inline:
            return False
        if rec.size >= I_BLOCK_SIZE or rec.size == 0:
            return False
        if rec.uses_extents:
            # a slow symlink with an extent tree: the header magic is in i_block
            return rec.i_block[:2] != EXTENT_MAGIC.to_bytes(2, "little") or rec.blocks_raw == 0
        ea = self.block_size if rec.file_acl else 0
        return rec.blocks_raw - ea <= 0

    # --- content --------------------------------------------------------------------
    def content(self, entry: Entry) -> ByteSource:
        if entry.key == ("orphans",):
            raise InvalidArgument(f"{self.name}: {entry.path} is a directory")
        if entry.raw is None and entry.inode is None:
            raise NotFound(
                f"{self.name}: {entry.path or entry.name}: deleted entry without "
                "an inode number: no content"
            )
        rec = self.record_of(entry)
        where = f"inode {rec.number}"
        if rec.number in self.unreadable_inodes and rec.raw == bytes(len(rec.raw)):
            raise CorruptImage(
                f"the inode cannot be read: block {self.unreadable_inodes[rec.number]} of "
                "the inode table is damaged and the journal has no copy of it",
                path=self.name,
                structure=where,
                offset=rec.offset,
            )
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
            try:
                with self.probing():
                    return self.content_of(rec, size, name=entry.path)
            except CorruptImage as exc:
                raise NotFound(
                    f"{self.name}: {entry.path}: deleted, content not recoverable: {exc.detail}"
                ) from exc
        return self.content_of(rec, size, name=entry.path)

    def content_of(self, rec: InodeRecord, size: int, name: str | None = None) -> ByteSource:
        name = name or f"{self.name}:inode {rec.number}"
        if rec.inline:
            data = self.inline_data(rec)
            if size > len(data):  # past the inline bytes a file reads as zeros (sparse)
                return Concat([MemorySource(data), Zero(size - len(data))], name=name)
            return MemorySource(data[:size], name=name)
        if self.is_fast_symlink(rec):
            return MemorySource(rec.i_block[:size], name=name)
        bmap = self.block_map(rec)
        return mapped_source(self.dev, self.block_size, size, bmap, name)

    def readlink_entry(self, entry: Entry) -> str:
        if entry.kind != SYMLINK:
            raise InvalidArgument(f"{self.name}: {entry.path} is not a symbolic link")
        if entry.target is None:
            rec = self.record_of(entry)
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
        rec = self.record_of(path)
        bs = self.block_size
        names = {0: "data", 1: "uninitialized", 2: "damaged"}
        bmap = self.block_map(rec)
        return [
            dict(logical=lb * bs, physical=pb * bs, length=cnt * bs, state=names[st])
            for lb, cnt, pb, st in zip(
                bmap.lblk.tolist(), bmap.count.tolist(), bmap.pblk.tolist(), bmap.state.tolist()
            )
        ]
