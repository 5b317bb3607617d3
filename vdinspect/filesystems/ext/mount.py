"""Opening a volume: which superblock (the primary, or a backup in salvage mode), the
geometry and features it declares, and the journal (replayed in memory when the volume
needs recovery; the image is never written).
"""

from __future__ import annotations

from ...errors import CorruptImage, NotRecognized, UnsupportedFeature, VDInspectError
from ...io import ByteSource
from ...lazy import np
from . import superblock as S
from .extents import DATA
from .journal import Journal, replayed


class MountMixin:
    """Superblock choice, geometry checks and journal replay of :class:`ExtFileSystem`."""

    def mount(self) -> None:
        """Read the superblock, the group descriptors and the journal (at open)."""
        self.sb = self._open_superblock()
        self._init_geometry()
        self.load_descriptors()
        self._open_journal()
        if self.journal is not None and self.volume_damaged():
            self._itable.clear()  # read again: unreadable blocks may be in the journal
            self._last_key = None

    def _read_sb(self, offset: int, src: ByteSource | None = None) -> S.SuperblockInfo | None:
        src = src or self.base
        if offset + S.SUPERBLOCK_SIZE > src.size:
            return None
        return S.SuperblockInfo(src.read(offset, S.SUPERBLOCK_SIZE), offset)

    def _find_backup(self) -> tuple[S.SuperblockInfo, int] | None:
        for off, bs, g in S.backup_candidates(self.base.size):
            head = self.base.read(off + S.SB_AT["s_magic"], 2)
            if head != S.EXT_MAGIC.to_bytes(2, "little"):
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
                offset=S.SUPERBLOCK_OFFSET + S.SB_AT["s_feature_incompat"],
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
        self.descriptor_source = f"backup (group {g})"
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
        self.fstype = S.fs_kind(sb)
        # casefold: names are stored as given and compared case-insensitively in the
        # directories flagged for it; lookup prefers an exact match, then a casefold one
        self.case_sensitive = not sb.incompat & S.INCOMPAT_CASEFOLD
        self.itable_blocks = -(-sb.inodes_per_group * sb.inode_size // bs)
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
                    offset=sb.offset + S.SB_AT["s_feature_incompat"],
                )
            self.finding("error", "superblock", sb.offset + S.SB_AT["s_feature_incompat"], msg)
        if sb.incompat & S.INCOMPAT_COMPRESSION:
            self.finding(
                "warning",
                "superblock",
                sb.offset + S.SB_AT["s_feature_incompat"],
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
                    msg,
                    path=self.name,
                    structure="superblock",
                    offset=sb.offset + S.SB_AT["s_blocks_count_lo"],
                )
            self.finding("error", "superblock", sb.offset + S.SB_AT["s_blocks_count_lo"], msg)
            if sb.blocks_count > 2 * dev_blocks + sb.blocks_per_group:
                # an absurd count (not a cut-off copy): read only the groups that exist
                sb.blocks_count = max(dev_blocks, sb.first_data_block + 1)
                sb.group_count = -(-(sb.blocks_count - sb.first_data_block) // sb.blocks_per_group)
                self.group_count = sb.group_count
                self.finding(
                    "error",
                    "superblock",
                    sb.offset + S.SB_AT["s_blocks_count_lo"],
                    f"block count taken as {sb.blocks_count} (the volume's size)",
                )
        if sb.problems:  # inode count vs groups (a backup is only used when it has none)
            for p in sb.problems:
                self.problem("superblock", sb.offset, p)

    def _open_journal(self) -> None:
        sb = self.sb
        recover = bool(sb.incompat & S.INCOMPAT_RECOVER)
        self.needs_recovery = recover
        if not sb.compat & S.COMPAT_HAS_JOURNAL:
            if recover:
                self.finding(
                    "warning",
                    "superblock",
                    sb.offset + S.SB_AT["s_feature_incompat"],
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
                    f"{S.uuid_text(sb.raw.s_journal_uuid)}) needs recovery; it is not "
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
            self.dev = replayed(self.base, self.block_size, overlay)
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
        self.load_descriptors()

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
        self.journal_map = bmap
        return Journal(self.base, jmap, bs, f"journal inode {jino}")
