"""Dirty XFS logs built from the specification, for the log replay tests.

Written from "XFS Algorithms & Data Structures", chapter "Journaling Log" (record header,
operation header, transaction header, buffer and inode log items), never from the
reader's declarations: every layout here is typed from the document. A record is a
512-byte header (big-endian) followed by its operations; the first word of every 512-byte
block of the data is moved into the header's cycle data and replaced by the cycle number.
The items themselves are in the writing host's order (little-endian here), the buffer
contents they carry in disk order.
"""

from __future__ import annotations

import struct

from vdinspect.io import crc32c

BB = 512
XLOG_HEADER_MAGIC = 0xFEEDBABE
START, COMMIT, CONTINUE, WAS_CONT, END = 0x01, 0x02, 0x04, 0x08, 0x10
XFS_TRANSACTION = 0x69
TRAN_MAGIC = 0x5452414E
CHECKPOINT = 40
LI_INODE, LI_BUF = 0x123B, 0x123C
ILOG_CORE, ILOG_DDATA, ILOG_DEXT = 0x1, 0x2, 0x4
BLF_CANCEL = 0x2
CHUNK = 128

# the inode core as the document lists it: (name, bytes, kind) — "int" fields are
# big-endian on disk and host order in the log, "raw" fields are copied, "time" fields
# are two 32-bit halves (seconds, nanoseconds) or one 64-bit count with bigtime
CORE = [
    ("di_magic", 2, "int"), ("di_mode", 2, "int"), ("di_version", 1, "int"),
    ("di_format", 1, "int"), ("di_onlink", 2, "int"), ("di_uid", 4, "int"),
    ("di_gid", 4, "int"), ("di_nlink", 4, "int"), ("di_projid_lo", 2, "int"),
    ("di_projid_hi", 2, "int"), ("di_pad", 8, "pad"), ("di_atime", 8, "time"),
    ("di_mtime", 8, "time"), ("di_ctime", 8, "time"), ("di_size", 8, "int"),
    ("di_nblocks", 8, "int"), ("di_extsize", 4, "int"), ("di_nextents", 4, "int"),
    ("di_anextents", 2, "int"), ("di_forkoff", 1, "int"), ("di_aformat", 1, "int"),
    ("di_dmevmask", 4, "int"), ("di_dmstate", 2, "int"), ("di_flags", 2, "int"),
    ("di_gen", 4, "int"), ("di_next_unlinked", 4, "int"), ("di_crc", 4, "raw"),
    ("di_changecount", 8, "int"), ("di_lsn", 8, "int"), ("di_flags2", 8, "int"),
    ("di_cowextsize", 4, "int"), ("di_pad2", 12, "raw"), ("di_crtime", 8, "time"),
    ("di_ino", 8, "int"), ("di_uuid", 16, "raw"),
]


def field_at(name: str) -> tuple[int, int]:
    """(offset, size) of an inode core field."""
    off = 0
    for n, size, _k in CORE:
        if n == name:
            return off, size
        off += size
    raise KeyError(name)


def core_to_log(disk: bytes, v3: bool) -> bytearray:
    """The logged form of an on-disk inode core (v3: 176 bytes; v2: up to
    di_next_unlinked, 96 bytes)."""
    flags2 = int.from_bytes(disk[field_at("di_flags2")[0]:][:8], "big") if v3 else 0
    bigtime = bool(flags2 & 0x8)
    out = bytearray()
    off = 0
    for name, size, kind in CORE:
        if not v3 and name == "di_next_unlinked":
            break
        raw = disk[off:off + size]
        if kind == "int" or (kind == "pad" and v3) or (kind == "time" and bigtime):
            raw = raw[::-1]
        elif kind == "pad":  # v2: 6 bytes of padding, then di_flushiter (16 bits)
            raw = raw[:6] + raw[7:5:-1]
        elif kind == "time":
            raw = raw[3::-1] + raw[7:3:-1]
        out += raw
        off += size
    return out


def set_log_field(core: bytearray, name: str, value: int) -> None:
    off, size = field_at(name)
    core[off:off + size] = value.to_bytes(size, "little")


def extent(startoff: int, startblock: int, count: int, unwritten: bool = False) -> bytes:
    """One 16-byte extent record: flag (1 bit), startoff (54), startblock (52), count (21)."""
    v = (int(unwritten) << 127) | (startoff << 73) | (startblock << 21) | count
    return v.to_bytes(16, "big")


def trans_header(tid: int, nitems: int) -> bytes:
    return struct.pack("<IIiI", TRAN_MAGIC, CHECKPOINT, tid, nitems)


def buf_item(blkno: int, nbb: int, chunks: dict[int, bytes], flags: int = 0) -> list[bytes]:
    """A buffer item: the format (dirty bitmap of 128-byte chunks) and one region per run
    of consecutive chunks (``chunks``: chunk index -> 128 bytes)."""
    words = -(-(nbb * BB // CHUNK) // 32)
    bitmap = [0] * words
    for c in chunks:
        bitmap[c // 32] |= 1 << (c % 32)
    runs: list[bytes] = []
    prev = None
    for c in sorted(chunks):
        if prev is not None and c == prev + 1:
            runs[-1] += chunks[c]
        else:
            runs.append(chunks[c])
        prev = c
    if flags & BLF_CANCEL:
        runs = []
    fmt = struct.pack("<HHHHqI", LI_BUF, 1 + len(runs), flags, nbb, blkno, words)
    fmt += struct.pack(f"<{words}I", *bitmap)
    return [fmt, *runs]


def inode_item(ino: int, blkno: int, nbb: int, boffset: int, fields: int, core: bytes,
               dfork: bytes | None = None, packed: bool = False) -> list[bytes]:
    """An inode log item; ``packed``: xfs_inode_log_format_32 (no ilf_pad after
    ilf_dsize), as 32-bit x86 kernels write it."""
    regions = [bytes(core)] + ([dfork] if dfork is not None else [])
    head = (LI_INODE, 1 + len(regions), fields, 0, len(dfork or b""))
    tail = (ino, bytes(16), blkno, nbb, boffset)
    if packed:
        fmt = struct.pack("<HHIHHQ16sqii", *head, *tail)
    else:
        fmt = struct.pack("<HHIHHIQ16sqii", *head, 0, *tail)
    return [fmt, *regions]


LI_EFI, LI_EFD, LI_RUI, LI_RUD, LI_BUI, LI_BUD = 0x1236, 0x1237, 0x1240, 0x1241, 0x1244, 0x1245
LI_CUI, LI_CUD = 0x1242, 0x1243
BMAP_MAP, BMAP_UNMAP, BMAP_UNWRITTEN = 1, 2, 1 << 30
REFCOUNT_INCREASE, REFCOUNT_DECREASE = 1, 2


def efi_item(ident: int, extents: list[tuple[int, int]], packed: bool = False,
             done: bool = False) -> list[bytes]:
    """An extent-free intent (or with ``done`` its EFD): type, size (1), nextents, id,
    then xfs_extent_64_t records (start fsblock, length, pad) or, ``packed``,
    xfs_extent_32_t (start, length)."""
    head = struct.pack("<HHIQ", LI_EFD if done else LI_EFI, 1, len(extents), ident)
    rec = "<QI" if packed else "<QII"
    return [head + b"".join(struct.pack(rec, a, n, *([] if packed else [0]))
                            for a, n in extents)]


def bui_item(ident: int, owner: int, startblock: int, startoff: int, length: int,
             flags: int) -> list[bytes]:
    """A file mapping update intent: type, size (1), nextents (1), id, then one
    xfs_map_extent (owner, startblock, startoff, len, flags)."""
    return [struct.pack("<HHIQQQQII", LI_BUI, 1, 1, ident, owner, startblock, startoff,
                        length, flags)]


def rui_item(ident: int, owner: int, startblock: int, startoff: int, length: int,
             flags: int) -> list[bytes]:
    """A reverse-mapping update intent: the same head, one xfs_map_extent."""
    return [struct.pack("<HHIQQQQII", LI_RUI, 1, 1, ident, owner, startblock, startoff,
                        length, flags)]


def cui_item(ident: int, extents: list[tuple[int, int, int]]) -> list[bytes]:
    """A refcount update intent: type, size (1), nextents, id, then xfs_phys_extent
    records (start fsblock, length, flags: 1 increase, 2 decrease, 3/4 CoW)."""
    head = struct.pack("<HHIQ", LI_CUI, 1, len(extents), ident)
    return [head + b"".join(struct.pack("<QII", a, n, f) for a, n, f in extents)]


def done_item(kind: int, ident: int) -> list[bytes]:
    """A BUD or RUD: type, size (1), padding, the id of the intent it closes."""
    return [struct.pack("<HHIQ", kind, 1, 0, ident)]


def transaction(tid: int, items: list[list[bytes]], commit: bool = True
                ) -> list[tuple[int, int, bytes]]:
    """The operations of one transaction: start, header, every region, commit."""
    ops = [(tid, START, b""), (tid, 0, trans_header(tid, len(items)))]
    ops += [(tid, 0, r) for it in items for r in it]
    if commit:
        ops.append((tid, COMMIT, b""))
    return ops


class LogWriter:
    """Records laid one after the other from ``start`` (basic block) in cycle ``cycle``,
    in a log of ``size`` basic blocks: at its end the writing wraps to block 0 and the
    cycle number goes up by one (a record's blocks past the end carry the next cycle)."""

    def __init__(self, uuid: bytes, start: int, cycle: int = 1, prev: int = 0,
                 tail: int | None = None, size: int = 1 << 30, h_size: int = 32768) -> None:
        # h_size: the log buffer size, the same for every record of a mount; above 32 KiB
        # each record has h_size / 32 KiB header blocks (the extended ones hold the first
        # words of the data blocks past the 64th)
        self.h_size = h_size
        self.uuid, self.block, self.cycle, self.prev = uuid, start, cycle, prev
        self.tail = start if tail is None else tail
        self.tail_cycle = cycle
        self.size = size
        self.blocks: dict[int, bytes] = {}  # basic block in the log -> its 512 bytes
        self.first = start

    def record(self, ops: list[tuple[int, int, bytes]], short_len: bool = False) -> int:
        """Write one record of ``ops`` (tid, flags, region); returns its block.
        ``short_len``: h_len without the padding while the CRC covers the padded data
        (no writer does this: a record the kernel takes as torn)."""
        data = b"".join(struct.pack(">IIBBH", tid, len(r), XFS_TRANSACTION, fl, 0) + r
                        for tid, fl, r in ops)
        unpadded = len(data)
        data = bytearray(data + bytes(-len(data) % BB))
        # h_len: the data with its padding to a basic block, as a v2 log's writer counts
        # it (xlog_sync adds the round-off); the record's CRC covers h_len bytes
        length = unpadded if short_len else len(data)
        nbb = len(data) // BB
        hdr_bbs = max(1, -(-self.h_size // 32768))
        assert nbb <= 64 * hdr_bbs, "a record holds at most h_size bytes"
        cycle_data = []
        for j in range(nbb):
            cycle_data.append(int.from_bytes(data[j * BB:j * BB + 4], "big"))
            past_end = self.block + hdr_bbs + j >= self.size  # wrapped: the next cycle
            data[j * BB:j * BB + 4] = (self.cycle + past_end).to_bytes(4, "big")
        cycle_data += [0] * (64 * hdr_bbs - nbb)
        head = struct.pack(">IIIIQQIII64II16sI", XLOG_HEADER_MAGIC, self.cycle, 2, length,
                           (self.cycle << 32) | self.block,
                           (self.tail_cycle << 32) | self.tail,
                           0, self.prev, len(ops), *cycle_data[:64], 1, self.uuid,
                           self.h_size)
        head = bytearray(head + bytes(BB - len(head)))
        ext = b""
        for i in range(1, hdr_bbs):  # xh_cycle, xh_cycle_data[64], reserved
            past_end = self.block + i >= self.size  # as every block past the log's end
            e = struct.pack(">I64I", self.cycle + past_end, *cycle_data[64 * i:64 * (i + 1)])
            ext += e + bytes(BB - len(e))
        # h_crc covers the header to h_pad0, each extended header's first 260 bytes, data
        crc = crc32c(bytes(head[:328]) + b"".join(ext[i:i + 260] for i in range(
            0, len(ext), BB)) + bytes(data))
        head[32:36] = crc.to_bytes(4, "little")
        record = bytes(head) + ext + bytes(data)
        nbb += hdr_bbs - 1
        at = self.block
        for j in range(nbb + 1):
            self.blocks[(at + j) % self.size] = record[j * BB:(j + 1) * BB]
        self.prev = at
        self.block += 1 + nbb
        if self.block >= self.size:
            self.block -= self.size
            self.cycle += 1
        return at

    def apply(self, image: bytearray, log_at: int) -> None:
        """Write the records into ``image`` whose log starts at byte ``log_at``."""
        for blk, data in self.blocks.items():
            image[log_at + blk * BB:log_at + (blk + 1) * BB] = data

    @property
    def head(self) -> int:
        return self.block
