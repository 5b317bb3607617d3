"""Build VHDX files from the [MS-VHDX] structures, for variants no tool here writes.

Deliberately independent of ``vdinspect.containers.vhdx``: its own field packing (``struct``),
its own GUID constants and its own CRC-32C, so a mistake in the reader is not repeated here.
The builder also answers what the virtual disk should read (:meth:`VhdxBuilder.expected`).

Layout of a built file: 1 MiB header section, the log (``log_length``), a 1 MiB metadata
region, the BAT region, then sector bitmap and payload blocks in the order given by
``placement`` (a shuffled order makes host offsets non-monotonic).
"""

from __future__ import annotations

import random
import struct
import uuid
from dataclasses import dataclass, field

K, M = 1 << 10, 1 << 20

NOT_PRESENT, UNDEFINED, ZERO, UNMAPPED, FULLY_PRESENT, PARTIALLY_PRESENT = 0, 1, 2, 3, 6, 7
SB_PRESENT = 6


def ms_guid(text: str) -> bytes:
    """The 16 on-disk bytes of a Microsoft GUID written as text."""
    return uuid.UUID(text).bytes_le


G_BAT = ms_guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
G_METADATA = ms_guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
G_FILE_PARAMS = ms_guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
G_VIRTUAL_SIZE = ms_guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
G_PAGE83 = ms_guid("BECA12AB-B2E6-4523-93EF-C309E000C746")
G_LOGICAL = ms_guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
G_PHYSICAL = ms_guid("CDA348C7-445D-4471-9CC9-E9885251C556")
G_PARENT_LOCATOR = ms_guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
G_VHDX_LOCATOR_TYPE = ms_guid("B04AEFB7-D19E-4A81-B789-25B8E9445913")


def _table() -> list[int]:
    out = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        out.append(c)
    return out


_T = _table()


def crc32c(data: bytes) -> int:
    """Plain byte-at-a-time CRC-32C."""
    c = 0xFFFFFFFF
    for b in data:
        c = _T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def with_crc(block: bytes, at: int = 4) -> bytes:
    """``block`` with the CRC-32C of itself (field zeroed) stored at ``at``."""
    b = bytearray(block)
    b[at : at + 4] = bytes(4)
    b[at : at + 4] = struct.pack("<I", crc32c(bytes(b)))
    return bytes(b)


def header_block(
    seq: int, fwg: bytes, dwg: bytes, log_guid: bytes, log_len: int, log_off: int
) -> bytes:
    body = struct.pack(
        "<4sIQ16s16s16sHHIQ", b"head", 0, seq, fwg, dwg, log_guid, 0, 1, log_len, log_off
    )
    return with_crc(body + bytes(4 * K - len(body)))


def region_table(entries: list[tuple[bytes, int, int, int]]) -> bytes:
    b = struct.pack("<4sIII", b"regi", 0, len(entries), 0)
    for g, off, length, req in entries:
        b += struct.pack("<16sQII", g, off, length, req)
    return with_crc(b + bytes(64 * K - len(b)))


def parent_locator(pairs: dict[str, str]) -> bytes:
    n = len(pairs)
    head = struct.pack("<16sHH", G_VHDX_LOCATOR_TYPE, 0, n)
    strings = b""
    entries = b""
    base = 20 + 12 * n
    for k, v in pairs.items():
        kb, vb = k.encode("utf-16-le"), v.encode("utf-16-le")
        ko = base + len(strings)
        strings += kb
        vo = base + len(strings)
        strings += vb
        entries += struct.pack("<IIHH", ko, vo, len(kb), len(vb))
    return head + entries + strings


def log_entry(
    seq: int,
    tail: int,
    log_guid: bytes,
    descs: list[tuple],
    flushed: int,
    last: int,
    pad_sectors: int = 0,
) -> bytes:
    """One log entry: descs are ("data", file_offset, 4096 bytes) or ("zero", offset, len)."""
    ndesc = len(descs)
    desc_sectors = -(-(ndesc + 2) // 128)
    data_sectors = [d for d in descs if d[0] == "data"]
    length = (desc_sectors + len(data_sectors) + pad_sectors) * 4 * K
    hdr = struct.pack(
        "<4sIIIQII16sQQ", b"loge", 0, length, tail, seq, ndesc, 0, log_guid, flushed, last
    )
    dbytes = b""
    sectors = b""
    for d in descs:
        if d[0] == "zero":
            dbytes += struct.pack("<4sIQQQ", b"zero", 0, d[2], d[1], seq)
        else:
            sec = d[2]
            assert len(sec) == 4 * K
            dbytes += struct.pack("<4s4s8sQQ", b"desc", sec[4092:], sec[:8], d[1], seq)
            sectors += (
                struct.pack("<4sI", b"data", seq >> 32)
                + sec[8:4092]
                + struct.pack("<I", seq & 0xFFFFFFFF)
            )
    head = hdr + dbytes
    head += bytes(desc_sectors * 4 * K - len(head))
    body = head + sectors + bytes(pad_sectors * 4 * K)
    return with_crc(body)


@dataclass
class Block:
    state: int
    data: bytes | None = None  # block_size bytes for FULLY/PARTIALLY_PRESENT
    present: list[bool] | None = None  # per logical sector, PARTIALLY_PRESENT only


@dataclass
class VhdxBuilder:
    """Describe a VHDX, then ``build()`` its bytes and ask ``expected()`` what it reads."""

    virtual_size: int
    block_size: int = 1 * M
    logical_sector: int = 512
    physical_sector: int = 4096
    has_parent: bool = False
    leave_blocks_allocated: bool = False
    creator: str = "vdinspect vhdx_builder"
    log_length: int = 1 * M
    seed: int = 1
    blocks: dict[int, Block] = field(default_factory=dict)
    locator: dict[str, str] = field(default_factory=dict)
    data_write_guid: bytes = field(default_factory=lambda: uuid.uuid4().bytes)
    file_write_guid: bytes = field(default_factory=lambda: uuid.uuid4().bytes)
    page83: bytes = field(default_factory=lambda: uuid.uuid4().bytes)
    header_seq: int = 7
    bat_overrides: dict[int, int] = field(default_factory=dict)  # BAT index -> raw entry

    # --- geometry ---------------------------------------------------------------------
    @property
    def chunk_ratio(self) -> int:
        return (1 << 23) * self.logical_sector // self.block_size

    @property
    def nblocks(self) -> int:
        return -(-self.virtual_size // self.block_size)

    @property
    def bat_entries(self) -> int:
        cr, n = self.chunk_ratio, self.nblocks
        if self.has_parent:
            return -(-n // cr) * (cr + 1)
        return n + (n - 1) // cr

    def payload_index(self, k: int) -> int:
        return k + k // self.chunk_ratio

    def bitmap_index(self, chunk: int) -> int:
        return chunk * (self.chunk_ratio + 1) + self.chunk_ratio

    # --- describing blocks ------------------------------------------------------------
    def put(self, k: int, data: bytes) -> None:
        """Block ``k`` FULLY_PRESENT with ``data`` (padded with zeros to the block size)."""
        self.blocks[k] = Block(FULLY_PRESENT, data + bytes(self.block_size - len(data)))

    def partial(self, k: int, data: bytes, present: list[bool]) -> None:
        """Block ``k`` PARTIALLY_PRESENT: sectors marked present come from ``data``."""
        assert len(present) == self.block_size // self.logical_sector
        self.blocks[k] = Block(
            PARTIALLY_PRESENT, data + bytes(self.block_size - len(data)), list(present)
        )

    def state(self, k: int, state: int) -> None:
        self.blocks[k] = Block(state)

    # --- what it reads ----------------------------------------------------------------
    def expected(self, offset: int, length: int, parent=None) -> bytes:
        """The virtual disk bytes ``[offset, offset+length)``; ``parent(off, n)`` below."""
        out = bytearray()
        bs, lss = self.block_size, self.logical_sector
        pos, end = offset, offset + length
        while pos < end:
            k = pos // bs
            stop = min(end, (k + 1) * bs)
            b = self.blocks.get(k)
            inb = pos - k * bs
            if b is None or b.state == NOT_PRESENT:
                out += (
                    parent(pos, stop - pos) if (parent and self.has_parent) else bytes(stop - pos)
                )
            elif b.state == FULLY_PRESENT:
                out += b.data[inb : inb + stop - pos]
            elif b.state == PARTIALLY_PRESENT:
                p = pos
                while p < stop:
                    s = (p - k * bs) // lss
                    e = min(stop, k * bs + (s + 1) * lss)
                    if b.present[s]:
                        out += b.data[p - k * bs : e - k * bs]
                    else:
                        out += parent(p, e - p) if parent else bytes(e - p)
                    p = e
            else:  # ZERO, UNDEFINED, UNMAPPED read as zeros
                out += bytes(stop - pos)
            pos = stop
        return bytes(out)

    # --- building ---------------------------------------------------------------------
    def layout(self) -> dict:
        log_off = 1 * M
        meta_off = log_off + self.log_length
        bat_off = meta_off + 1 * M
        bat_len = -(-(self.bat_entries * 8) // M) * M
        pos = bat_off + bat_len
        chunks = sorted(
            {k // self.chunk_ratio for k, b in self.blocks.items() if b.state == PARTIALLY_PRESENT}
        )
        units = [("sb", c) for c in chunks] + [
            ("pb", k)
            for k, b in sorted(self.blocks.items())
            if b.state in (FULLY_PRESENT, PARTIALLY_PRESENT)
        ]
        random.Random(self.seed).shuffle(units)
        where = {}
        for kind, n in units:
            where[(kind, n)] = pos
            pos += 1 * M if kind == "sb" else self.block_size
        return dict(log=log_off, meta=meta_off, bat=bat_off, bat_len=bat_len, where=where, end=pos)

    def metadata_region(self) -> bytes:
        items = [
            (
                G_FILE_PARAMS,
                struct.pack(
                    "<II",
                    self.block_size,
                    int(self.leave_blocks_allocated) | int(self.has_parent) << 1,
                ),
                4,
            ),
            (G_VIRTUAL_SIZE, struct.pack("<Q", self.virtual_size), 6),
            (G_PAGE83, self.page83, 6),
            (G_LOGICAL, struct.pack("<I", self.logical_sector), 6),
            (G_PHYSICAL, struct.pack("<I", self.physical_sector), 6),
        ]
        if self.has_parent:
            items.append((G_PARENT_LOCATOR, parent_locator(self.locator), 4))
        table = struct.pack("<8sHH20x", b"metadata", 0, len(items))
        body = b""
        for g, data, flags in items:
            table += struct.pack("<16sIIII", g, 64 * K + len(body), len(data), flags, 0)
            body += data + bytes(-len(data) % 8)
        region = table + bytes(64 * K - len(table)) + body
        return region + bytes(1 * M - len(region))

    def build(
        self,
        *,
        log_guid: bytes = bytes(16),
        corrupt_header: int | None = None,
        corrupt_region_table: int | None = None,
    ) -> bytes:
        """The file's bytes (log empty unless ``with_log`` adds one)."""
        lay = self.layout()
        f = bytearray(lay["end"])
        ident = b"vhdxfile" + self.creator.encode("utf-16-le")
        f[: len(ident)] = ident
        for i, off in enumerate((64 * K, 128 * K)):
            h = header_block(
                self.header_seq + i,
                self.file_write_guid,
                self.data_write_guid,
                log_guid,
                self.log_length,
                lay["log"],
            )
            if corrupt_header == i + 1:
                h = h[:200] + b"\x01" + h[201:]
            f[off : off + 4 * K] = h
        rt = region_table(
            [(G_BAT, lay["bat"], lay["bat_len"], 1), (G_METADATA, lay["meta"], 1 * M, 1)]
        )
        for i, off in enumerate((192 * K, 256 * K)):
            t = rt
            if corrupt_region_table == i + 1:
                t = t[:100] + bytes([t[100] ^ 0xFF]) + t[101:]
            f[off : off + 64 * K] = t
        f[lay["meta"] : lay["meta"] + 1 * M] = self.metadata_region()
        bat = [0] * self.bat_entries
        bs, lss = self.block_size, self.logical_sector
        for k, b in self.blocks.items():
            off = lay["where"].get(("pb", k), 0)
            bat[self.payload_index(k)] = b.state | (off >> 20) << 20
            if b.state in (FULLY_PRESENT, PARTIALLY_PRESENT):
                f[off : off + bs] = b.data
            if b.state == PARTIALLY_PRESENT:
                c = k // self.chunk_ratio
                sb = lay["where"][("sb", c)]
                bat[self.bitmap_index(c)] = SB_PRESENT | (sb >> 20) << 20
                spb = bs // lss
                bits = bytearray(spb // 8)
                for s, p in enumerate(b.present):
                    if p:
                        bits[s // 8] |= 1 << (s % 8)
                at = sb + (k % self.chunk_ratio) * (spb // 8)
                f[at : at + len(bits)] = bits
        for i, v in self.bat_overrides.items():
            bat[i] = v
        f[lay["bat"] : lay["bat"] + 8 * len(bat)] = struct.pack(f"<{len(bat)}Q", *bat)
        return bytes(f)

    def with_log(
        self,
        sequences: list[dict],
        *,
        stale: int = 0xEE,
        truncate_to: int | None = None,
        log_guid: bytes | None = None,
    ) -> bytes:
        """The file as it is before replaying a log; ``sequences`` lay out entries.

        Each sequence: ``start`` (log offset of its first entry), ``seq`` (first sequence
        number), ``entries`` (a list of descriptor lists: ("data", file_offset) takes the
        final bytes of that 4 KiB sector, ("zero", file_offset, length) zeroes a range),
        ``tail_index`` (which entry the head's Tail points at; default 0), ``apply`` (True:
        the on-disk file shows stale bytes there; False: a stale older sequence whose
        writes must not be applied, given as explicit ("raw", off, bytes) descriptors),
        ``pad`` (extra padding sectors per entry).
        """
        log_guid = log_guid or uuid.uuid4().bytes
        final = self.build(log_guid=log_guid)
        lay = self.layout()
        g = bytearray(final)
        log = bytearray(self.log_length)
        for sq in sequences:
            pos = sq["start"]
            offsets = []
            built = []
            for i, descs in enumerate(sq["entries"]):
                real = []
                for d in descs:
                    if d[0] == "data":
                        sec = final[d[1] : d[1] + 4 * K]
                        sec += bytes(4 * K - len(sec))
                        real.append(("data", d[1], sec))
                        if sq.get("apply", True) and d[1] < len(g):
                            n = min(4 * K, len(g) - d[1])
                            g[d[1] : d[1] + n] = bytes([stale]) * n
                    elif d[0] == "raw":
                        real.append(("data", d[1], d[2]))
                    else:
                        real.append(("zero", d[1], d[2]))
                        if sq.get("apply", True):
                            a, b = d[1], min(len(g), d[1] + d[2])
                            g[a:b] = bytes([stale]) * max(0, b - a)
                offsets.append(pos)
                built.append((sq["seq"] + i, real))
                nd = len(real)
                pos = (
                    pos
                    + (
                        -(-(nd + 2) // 128)
                        + sum(1 for r in real if r[0] == "data")
                        + sq.get("pad", 0)
                    )
                    * 4
                    * K
                ) % self.log_length
            tail = offsets[sq.get("tail_index", 0)]
            last_size = len(final)
            flushed = truncate_to if truncate_to is not None else len(final)
            for (seq, real), at in zip(built, offsets):
                e = log_entry(
                    seq, sq.get("tail", tail), log_guid, real, flushed, last_size, sq.get("pad", 0)
                )
                for j in range(0, len(e), 4 * K):  # write circularly
                    p = (at + j) % self.log_length
                    log[p : p + 4 * K] = e[j : j + 4 * K]
        g[lay["log"] : lay["log"] + self.log_length] = log
        if truncate_to is not None:
            del g[truncate_to:]
        return bytes(g)


def read_data_write_guid(path) -> bytes:
    """The DataWriteGuid of an existing VHDX (current header: valid one, higher sequence)."""
    with open(path, "rb") as f:
        best = None
        for off in (64 * K, 128 * K):
            f.seek(off)
            blk = f.read(4 * K)
            sig, _, seq, _, dwg = struct.unpack_from("<4sIQ16s16s", blk)
            if sig == b"head" and with_crc(blk) == blk and (best is None or seq > best[0]):
                best = (seq, dwg)
    assert best is not None
    return best[1]
