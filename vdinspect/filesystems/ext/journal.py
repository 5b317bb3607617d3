"""The JBD2 journal of ext3/ext4 (and the ext2-compatible JBD v1 layout).

Facts from the kernel's "ext4 Data Structures and Algorithms" (Journal section) and
include/linux/jbd2.h, checked against ``debugfs logdump`` and The Sleuth Kit's ``jls``.
Everything in the journal is **big-endian**. The journal is a ring of blocks (inode 8's
content, or an external device): block 0 is the journal superblock; the log runs from
``s_first`` to ``s_maxlen`` (less the fast-commit area). A transaction is a descriptor
block (tags naming the filesystem blocks whose new contents follow it), the data blocks,
optional revoke blocks (filesystem blocks whose earlier copies must not be replayed), and
a commit block; each block's header carries the transaction's sequence number.

Replay (what the kernel does at mount when the needs_recovery flag is set) starts at
``s_start`` expecting sequence ``s_sequence`` and follows the ring while the sequence
numbers match; only transactions that reach their commit block count. Here the result is
an in-memory overlay: the image is never written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from construct import (
    Array,
    Bytes,
    Enum,
    FlagsEnum,
    Int8ub,
    Int16ub,
    Int32sb,
    Int32ub,
    Int64ub,
    Struct,
)

from ...io import ByteSource, OverlaySource
from ...layout import flag_values, numpy_dtype, plain, size_of, struct_format
from ...lazy import np

JBD2_MAGIC = 0xC03B3998

# --- codes and flags (feature names as e2fsprogs spells them) --------------------------

BlockType = Enum(Int32ub, descriptor=1, commit=2, superblock_v1=3, superblock_v2=4, revoke=5)
JournalCompat = FlagsEnum(Int32ub, journal_checksum=0x1)
JournalIncompat = FlagsEnum(
    Int32ub,
    journal_incompat_revoke=0x1,
    journal_64bit=0x2,
    journal_async_commit=0x4,
    journal_checksum_v2=0x8,
    journal_checksum_v3=0x10,
    journal_fast_commit=0x20,
)
ChecksumType = Enum(Int8ub, crc32=1, md5=2, sha1=3, crc32c=4)
_TAG_FLAGS = dict(escape=0x1, same_uuid=0x2, deleted=0x4, last_tag=0x8)

_T = flag_values(BlockType)
DESCRIPTOR, COMMIT, REVOKE = _T["descriptor"], _T["commit"], _T["revoke"]
SUPERBLOCK_V1, SUPERBLOCK_V2 = _T["superblock_v1"], _T["superblock_v2"]
BLOCK_TYPES = {v: k for k, v in _T.items()}
_J = flag_values(JournalIncompat)
INCOMPAT_64BIT, INCOMPAT_CSUM_V2 = _J["journal_64bit"], _J["journal_checksum_v2"]
INCOMPAT_CSUM_V3, INCOMPAT_FAST_COMMIT = _J["journal_checksum_v3"], _J["journal_fast_commit"]
FLAG_ESCAPE, FLAG_SAME_UUID = _TAG_FLAGS["escape"], _TAG_FLAGS["same_uuid"]
FLAG_LAST_TAG = _TAG_FLAGS["last_tag"]

# --- on-disk structures ----------------------------------------------------------------

JournalHeader = Struct(
    "h_magic" / Int32ub * "0xC03B3998",
    "h_blocktype" / BlockType * "1 descriptor, 2 commit, 3 sb v1, 4 sb v2, 5 revoke",
    "h_sequence" / Int32ub * "transaction sequence number",
)  # 12 bytes at the start of every journal metadata block

JournalSuperblock = Struct(
    "s_header" / JournalHeader,
    "s_blocksize" / Int32ub * "journal block size, bytes",
    "s_maxlen" / Int32ub * "blocks in the journal",
    "s_first" / Int32ub * "first block of the log",
    "s_sequence" / Int32ub * "first expected transaction sequence",
    "s_start" / Int32ub * "block where the log starts; 0 = clean (nothing to replay)",
    "s_errno" / Int32sb * "error recorded by the journal",
    "s_feature_compat" / JournalCompat * "1 = data block checksums (v1)",
    "s_feature_incompat" / JournalIncompat * "1 revoke, 2 64bit, 4 async commit, 8 csum v2, "
    "0x10 csum v3, 0x20 fast commit",
    "s_feature_ro_compat" / Int32ub * "none defined",
    "s_uuid" / Bytes(16) * "journal UUID",
    "s_nr_users" / Int32ub * "filesystems sharing the journal",
    "s_dynsuper" / Int32ub * "location of a dynamic superblock copy",
    "s_max_transaction" / Int32ub * "limit of blocks per transaction",
    "s_max_trans_data" / Int32ub * "limit of data blocks per transaction",
    "s_checksum_type" / ChecksumType * "4 = crc32c",
    "s_padding2" / Bytes(3) * "zero",
    "s_num_fc_blks" / Int32ub * "fast commit blocks at the end of the journal",
    "s_head" / Int32ub * "block of the oldest transaction (clean journal)",
    "s_padding" / Array(40, Int32ub) * "zero",
    "s_checksum" / Int32ub * "crc32c of this superblock",
    "s_users" / Bytes(16 * 48) * "UUIDs of the filesystems sharing the journal",
)  # 1024 bytes

CommitBlock = Struct(
    "h_header" / JournalHeader,
    "h_chksum_type" / ChecksumType * "checksum type of the transaction's blocks",
    "h_chksum_size" / Int8ub * "bytes",
    "h_padding" / Bytes(2) * "zero",
    "h_chksum" / Array(8, Int32ub) * "checksum",
    "h_commit_sec" / Int64ub * "commit time, seconds since the epoch",
    "h_commit_nsec" / Int32ub * "nanoseconds",
)

JournalBlockTag3 = Struct(
    "t_blocknr" / Int32ub * "filesystem block, low 32 bits",
    "t_flags" / FlagsEnum(Int32ub, **_TAG_FLAGS) * "1 escaped, 2 same UUID, 4 deleted, 8 last tag",
    "t_blocknr_high" / Int32ub * "filesystem block, high 32 bits",
    "t_checksum" / Int32ub * "crc32c of the data block",
)  # 16 bytes (csum v3)

JournalBlockTag = Struct(
    "t_blocknr" / Int32ub * "filesystem block, low 32 bits",
    "t_checksum" / Int16ub * "crc of the data block (csum v2), 16 bits",
    "t_flags" / FlagsEnum(Int16ub, **_TAG_FLAGS) * "1 escaped, 2 same UUID, 4 deleted, 8 last tag",
    "t_blocknr_high" / Int32ub * "high 32 bits (64bit feature only)",
)  # 8, 10, 12 or 14 bytes depending on 64bit and csum v2

RevokeHeader = Struct(
    "r_header" / JournalHeader,
    "r_count" / Int32ub * "bytes used in the block, header included",
)  # then block numbers of 4 bytes (8 with 64bit)

JournalBlockTail = Struct(
    "t_checksum" / Int32ub * "crc32c of the descriptor or revoke block (csum v2/v3)",
)  # the last 4 bytes of a descriptor or revoke block

RevokeRecord32 = Struct("r_blocknr" / Int32ub * "a revoked filesystem block")
RevokeRecord64 = Struct("r_blocknr" / Int64ub * "a revoked filesystem block (64bit)")

# fast decoders, generated from the layouts above
_HDR = struct_format(JournalHeader)
_TAG3 = struct_format(JournalBlockTag3)
_TAG = struct_format(JournalBlockTag, "t_blocknr", "t_checksum", "t_flags")
_TAG_HIGH = struct_format(JournalBlockTag, "t_blocknr_high")
_TAG_HIGH_SIZE = size_of(JournalBlockTag, "t_blocknr_high")
_CSUM_V2_SIZE = 2  # csum v2 tags carry 2 more bytes than the struct (kernel: tag_bytes)
_UUID_SIZE = 16  # follows a tag without the same_uuid flag
_REVOKE = struct_format(RevokeHeader)
_REVOKE_RECORDS = {False: RevokeRecord32, True: RevokeRecord64}  # numpy_dtype() at use
_COMMIT_SEC = struct_format(CommitBlock, "h_commit_sec")
JOURNAL_VALUES = plain(JournalSuperblock)  # codes and flags read as integers


@dataclass
class Transaction:
    """One transaction found in the log: its blocks and whether it committed."""

    sequence: int
    descriptors: list[int] = field(default_factory=list)  # journal blocks
    revokes: list[int] = field(default_factory=list)  # journal blocks of revoke records
    tags: list[tuple[int, int, int]] = field(default_factory=list)  # (fs block, jblock, flags)
    revoked: list[int] = field(default_factory=list)  # fs blocks revoked
    commit: int | None = None  # journal block of the commit record
    commit_time: int | None = None  # seconds since the epoch

    @property
    def committed(self) -> bool:
        return self.commit is not None


class Journal:
    """The journal's superblock and log, read through ``jmap`` (journal block -> byte
    offset on ``dev``). ``problems`` collects what is inconsistent."""

    def __init__(self, dev: ByteSource, jmap: np.ndarray, block_size: int, where: str) -> None:
        self.dev = dev
        self.jmap = jmap
        self.bs = block_size
        self.where = where
        self.problems: list[tuple[int | None, str]] = []
        raw = self._block(0)
        size = JournalSuperblock.sizeof()
        self.raw = JOURNAL_VALUES.parse(raw[:size].ljust(size, b"\0"))
        sb = self.raw
        h = sb.s_header
        if h.h_magic != JBD2_MAGIC or h.h_blocktype not in (SUPERBLOCK_V1, SUPERBLOCK_V2):
            raise ValueError("no journal superblock (bad magic or block type)")
        self.version = 2 if h.h_blocktype == SUPERBLOCK_V2 else 1
        self.incompat = sb.s_feature_incompat if self.version == 2 else 0
        self.compat = sb.s_feature_compat if self.version == 2 else 0
        if sb.s_blocksize != block_size:
            raise ValueError(f"journal block size {sb.s_blocksize} != filesystem block size")
        self.maxlen = min(sb.s_maxlen, len(jmap))
        if sb.s_maxlen > len(jmap):
            self.problems.append(
                (None, f"journal claims {sb.s_maxlen} blocks; its inode holds {len(jmap)}")
            )
        self.first = sb.s_first
        self.last = self.maxlen
        if self.incompat & INCOMPAT_FAST_COMMIT:
            self.last = self.maxlen - (sb.s_num_fc_blks or 256)
        if not 0 < self.first < self.last:
            raise ValueError(f"journal log area [{self.first}, {self.last}) is empty")
        self.start = sb.s_start
        self.sequence = sb.s_sequence
        self.is_64bit = bool(self.incompat & INCOMPAT_64BIT)
        self.csum_v3 = bool(self.incompat & INCOMPAT_CSUM_V3)
        self.csum_v2 = bool(self.incompat & INCOMPAT_CSUM_V2)
        if self.csum_v3:
            self.tag_size = _TAG3.size
        else:
            self.tag_size = (
                JournalBlockTag.sizeof()
                + (_CSUM_V2_SIZE if self.csum_v2 else 0)
                - (0 if self.is_64bit else _TAG_HIGH_SIZE)
            )
        self.tail = JournalBlockTail.sizeof() if (self.csum_v2 or self.csum_v3) else 0

    @property
    def needs_recovery(self) -> bool:
        return self.start != 0

    def features(self) -> list[str]:
        out = []
        for value, flags, kind in (
            (self.compat, flag_values(JournalCompat), "compat"),
            (self.incompat, flag_values(JournalIncompat), "incompat"),
        ):
            names = {v: k for k, v in flags.items()}
            for bit in range(32):
                if value >> bit & 1:
                    out.append(names.get(1 << bit, f"{kind} bit {bit}"))
        return out

    def offset_of(self, jblock: int) -> int:
        return int(self.jmap[jblock])

    def _block(self, jblock: int) -> bytes:
        off = int(self.jmap[jblock])
        if off < 0:
            return bytes(self.bs)
        return self.dev.read(off, self.bs)

    def _next(self, jblock: int) -> int:
        jblock += 1
        return self.first if jblock >= self.last else jblock

    # --- parsing one metadata block ---------------------------------------------------
    def parse_tags(self, block: bytes, jblock: int) -> list[tuple[int, int]]:
        """(fs block, flags) of each tag in a descriptor block."""
        out = []
        pos = _HDR.size
        end = self.bs - self.tail
        ts = self.tag_size
        while pos + ts <= end:
            if self.csum_v3:
                lo, flags, hi, _c = _TAG3.unpack_from(block, pos)
            else:  # t_blocknr, t_checksum (16 bits), t_flags (16 bits), t_blocknr_high
                lo, _c, flags = _TAG.unpack_from(block, pos)
                hi = _TAG_HIGH.unpack_from(block, pos)[0] if self.is_64bit else 0
            out.append((hi << 32 | lo, flags))
            pos += ts
            if not flags & FLAG_SAME_UUID:
                pos += _UUID_SIZE
            if flags & FLAG_LAST_TAG:
                break
        else:
            self.problems.append(
                (self.offset_of(jblock), f"descriptor at journal block {jblock} has no last tag")
            )
        return out

    def parse_revoke(self, block: bytes, jblock: int) -> list[int]:
        count = _REVOKE.unpack_from(block, 0)[-1]
        first = _REVOKE.size
        if count < first or count > self.bs - self.tail:
            self.problems.append(
                (self.offset_of(jblock), f"revoke block at journal block {jblock}: r_count {count}")
            )
            count = max(first, min(count, self.bs - self.tail))
        rec = numpy_dtype(_REVOKE_RECORDS[self.is_64bit])
        n = (count - first) // rec.itemsize
        return np.frombuffer(block, dtype=rec, count=n, offset=first)["r_blocknr"].tolist()

    # --- the log -------------------------------------------------------------------
    def walk_log(self) -> list[Transaction]:
        """The transactions a replay would consider, from ``s_start`` (empty if clean)."""
        if not self.start:
            return []
        if not self.first <= self.start < self.last:
            self.problems.append((None, f"journal start {self.start} outside the log"))
            return []
        out: list[Transaction] = []
        seq = self.sequence
        jb = self.start
        cur: Transaction | None = None
        steps = 0
        limit = self.last - self.first
        while steps < limit:
            block = self._block(jb)
            magic, btype, bseq = _HDR.unpack_from(block, 0)
            if magic != JBD2_MAGIC or bseq != seq:
                break
            if cur is None:
                cur = Transaction(seq)
            if btype == DESCRIPTOR:
                cur.descriptors.append(jb)
                tags = self.parse_tags(block, jb)
                for fs_block, flags in tags:
                    jb = self._next(jb)
                    steps += 1
                    cur.tags.append((fs_block, jb, flags))
                jb = self._next(jb)
                steps += 1
            elif btype == REVOKE:
                cur.revokes.append(jb)
                cur.revoked.extend(self.parse_revoke(block, jb))
                jb = self._next(jb)
                steps += 1
            elif btype == COMMIT:
                cur.commit = jb
                cur.commit_time = _COMMIT_SEC.unpack_from(block, 0)[0]
                out.append(cur)
                cur = None
                seq = (seq + 1) & 0xFFFFFFFF
                jb = self._next(jb)
                steps += 1
            else:
                break
        if cur is not None:
            out.append(cur)  # never committed: not replayed
        return out

    def replay_map(self, transactions: list[Transaction]) -> dict[int, tuple[int, bool]]:
        """fs block -> (byte offset on the device of its newest copy, escaped)."""
        revoked: dict[int, int] = {}
        for t in transactions:
            if t.committed:
                for b in t.revoked:
                    revoked[b] = max(revoked.get(b, -1), t.sequence)
        out: dict[int, tuple[int, bool]] = {}
        for t in transactions:
            if not t.committed:
                continue
            for fs_block, jb, flags in t.tags:
                if revoked.get(fs_block, -1) >= t.sequence:
                    continue
                off = self.offset_of(jb)
                if off >= 0:
                    out[fs_block] = (off, bool(flags & FLAG_ESCAPE))
        return out

    def scan_all(self, chunk_blocks: int = 256) -> list[dict]:
        """Every journal metadata block in the log area, like ``jls``: rows of journal
        block, type, sequence (and tags / revoked blocks)."""
        rows = []
        jb = self.first
        while jb < self.last:
            n = min(chunk_blocks, self.last - jb)
            offs = self.jmap[jb : jb + n]
            contiguous = (
                bool(np.all(offs >= 0)) and bool(np.all(np.diff(offs) == self.bs))
                if n > 1
                else offs[0] >= 0
            )
            if contiguous:
                data = self.dev.read(int(offs[0]), n * self.bs)
                blocks = [data[i * self.bs : (i + 1) * self.bs] for i in range(n)]
            else:
                blocks = [self._block(jb + i) for i in range(n)]
            for i, block in enumerate(blocks):
                magic, btype, bseq = _HDR.unpack_from(block, 0)
                if magic != JBD2_MAGIC or btype not in (DESCRIPTOR, COMMIT, REVOKE):
                    continue
                j = jb + i
                row = dict(
                    jblock=j, type=BLOCK_TYPES[btype], sequence=bseq, offset=self.offset_of(j)
                )
                if btype == DESCRIPTOR:
                    row["tags"] = self.parse_tags(block, j)
                    data_blocks = []
                    jd = j
                    for _ in row["tags"]:
                        jd = self._next(jd)
                        data_blocks.append(jd)
                    row["data"] = data_blocks
                elif btype == REVOKE:
                    row["revoked"] = self.parse_revoke(block, j)
                else:
                    row["commit_time"] = _COMMIT_SEC.unpack_from(block, 0)[0]
                rows.append(row)
            jb += n
        return rows


def replayed(base: ByteSource, block_size: int, blocks: dict[int, tuple[int, bool]]
             ) -> OverlaySource:
    """The volume with each replayed block read from its committed copy in the journal
    (``blocks``: block -> (byte offset of the copy, escaped magic)), in memory only."""
    dev = OverlaySource(base, name=base.name + " (journal replayed)")
    magic = JBD2_MAGIC.to_bytes(4, "big")
    for b in sorted(blocks):
        if (b + 1) * block_size > base.size:
            continue
        src, escaped = blocks[b]
        dev.copy(b * block_size, block_size, src)
        if escaped:  # the journal stored the block with its first 4 bytes zeroed
            dev.write(b * block_size, magic)
    return dev
