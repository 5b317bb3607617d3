"""Build VDI files from VirtualBox's documented structures, for what qemu-img cannot write.

qemu-img writes normal (dynamic) and fixed VDIs with 1 MiB blocks and a 384-byte header
only. The builders here write differencing and undo images (uuidLinkage / uuidParentModify),
the 400-byte 1.1 header with LCHS geometry, the old version 0 header, other block sizes,
``cbBlockExtra`` areas, zero blocks (0xfffffffe) and blocks stored out of order. The layout
(pre-header, header, block map at ``offBlocks``, data at ``offData``) is packed here with
``struct`` straight from VDICore.h's field list, independently of vdinspect's construct
structs; what a disk must read as comes from :func:`expected_bytes`, which applies the read
rule (free -> parent or zeros, zero -> zeros, else the stored block) to the data given here.
"""

from __future__ import annotations

import random
import struct
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

SIGNATURE = 0xBEDA107F
BANNER = b"<<< Oracle VM VirtualBox Disk Image >>>\n"
FREE, ZERO = 0xFFFFFFFF, 0xFFFFFFFE
NORMAL, FIXED, UNDO, DIFF = 1, 2, 3, 4

# VDIPREHEADER: szFileInfo[64], u32Signature, u32Version
PREHEADER = struct.Struct("<64sII")
# VDIHEADER1: cbHeader, u32Type, fFlags, szComment[256], offBlocks, offData,
# LegacyGeometry (cCylinders, cHeads, cSectors, cbSector), u32Dummy, cbDisk (u64), cbBlock,
# cbBlockExtra, cBlocks, cBlocksAllocated, uuidCreate, uuidModify, uuidLinkage,
# uuidParentModify
HEADER1 = struct.Struct("<III256sII4IIQIIII16s16s16s16s")
GEOMETRY = struct.Struct("<4I")  # VDIHEADER1PLUS appends LCHSGeometry
# VDIHEADER0: u32Type, fFlags, szComment[256], LegacyGeometry, cbDisk (u64), cbBlock, cBlocks,
# cBlocksAllocated, uuidCreate, uuidModify, uuidLinkage
HEADER0 = struct.Struct("<II256s4IQIII16s16s16s")
assert PREHEADER.size == 72 and HEADER1.size == 384 and HEADER0.size == 348


@dataclass
class Vdi:
    """What to write. ``blocks`` maps a block number to its data (``cbBlock`` bytes or
    shorter: zero-padded), or to ``"zero"`` for a zero block; other blocks are free."""

    size: int
    block_size: int = 1 << 20
    image_type: int = NORMAL
    blocks: dict = field(default_factory=dict)
    uuid_create: uuidlib.UUID = field(default_factory=uuidlib.uuid4)
    uuid_modify: uuidlib.UUID = field(default_factory=uuidlib.uuid4)
    uuid_linkage: uuidlib.UUID | None = None
    uuid_parent_modify: uuidlib.UUID | None = None
    header: str = "1.1+"  # "1.1+" (400 bytes, LCHS), "1.1" (384 bytes) or "0"
    block_extra: int = 0
    comment: bytes = b""
    banner: bytes = BANNER
    shuffle: int | None = 1  # seed for the order of blocks in the data area (None: in order)
    align: int = 512  # alignment of offBlocks / offData
    lchs: tuple[int, int, int, int] = (0, 0, 0, 512)
    flags: int = 0
    n_blocks: int | None = None  # cBlocks (default: enough for size)
    blocks_allocated: int | None = None  # cBlocksAllocated (default: what is stored)
    entries: dict = field(default_factory=dict)  # raw block map overrides: block -> u32
    tail: bytes = b""  # appended after the data

    @property
    def cblocks(self) -> int:
        return self.n_blocks if self.n_blocks is not None else -(-self.size // self.block_size)


def _up(x: int, a: int) -> int:
    return -(-x // a) * a


def build(v: Vdi) -> bytes:
    """The VDI file's bytes."""
    bs, nb = v.block_size, v.cblocks
    stored = sorted(k for k, d in v.blocks.items() if not isinstance(d, str))
    order = list(stored)
    if v.shuffle is not None:
        random.Random(v.shuffle).shuffle(order)
    index = {blk: i for i, blk in enumerate(order)}
    bmap = [FREE] * nb
    for k, d in v.blocks.items():
        bmap[k] = ZERO if isinstance(d, str) else index[k]
    for k, e in v.entries.items():
        bmap[k] = e
    if v.header == "0":
        off_blocks = PREHEADER.size + HEADER0.size
        off_data = off_blocks + 4 * nb
    else:
        hsize = HEADER1.size + (GEOMETRY.size if v.header == "1.1+" else 0)
        off_blocks = _up(PREHEADER.size + hsize, v.align)
        off_data = _up(off_blocks + 4 * nb, v.align)
    link = v.uuid_linkage.bytes_le if v.uuid_linkage else bytes(16)
    pmod = v.uuid_parent_modify.bytes_le if v.uuid_parent_modify else bytes(16)
    allocated = len(stored) if v.blocks_allocated is None else v.blocks_allocated
    if v.header == "0":
        pre = PREHEADER.pack(v.banner, SIGNATURE, 0x00000002)
        hdr = HEADER0.pack(
            v.image_type, v.flags, v.comment, 0, 0, 0, 512, v.size, bs, nb, allocated,
            v.uuid_create.bytes_le, v.uuid_modify.bytes_le, link,
        )  # fmt: skip
    else:
        pre = PREHEADER.pack(v.banner, SIGNATURE, 0x00010001)
        hdr = HEADER1.pack(
            HEADER1.size + (GEOMETRY.size if v.header == "1.1+" else 0), v.image_type, v.flags,
            v.comment, off_blocks, off_data, 0, 0, 0, 512, 0, v.size, bs, v.block_extra, nb,
            allocated, v.uuid_create.bytes_le, v.uuid_modify.bytes_le, link, pmod,
        )  # fmt: skip
        if v.header == "1.1+":
            hdr += GEOMETRY.pack(*v.lchs)
    out = bytearray(off_data + len(order) * (v.block_extra + bs))
    out[: len(pre)] = pre
    out[len(pre) : len(pre) + len(hdr)] = hdr
    out[off_blocks : off_blocks + 4 * nb] = struct.pack(f"<{nb}I", *bmap)
    for blk, i in index.items():
        at = off_data + i * (v.block_extra + bs)
        out[at : at + v.block_extra] = bytes([0xEE]) * v.block_extra  # never guest data
        d = v.blocks[blk]
        out[at + v.block_extra : at + v.block_extra + len(d)] = d
    return bytes(out) + v.tail


def write(path: Path, v: Vdi) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build(v))
    return path


def expected_bytes(v: Vdi, parent: bytes | None = None) -> bytes:
    """What the disk must read as (VirtualBox rounds an odd cbDisk down to whole sectors)."""
    size = v.size & ~511
    bs = v.block_size
    out = bytearray(size)
    if parent is not None and v.image_type in (DIFF, UNDO):
        n = min(size, len(parent))
        out[:n] = parent[:n]
    for k, d in v.blocks.items():
        a = k * bs
        if a >= size:
            continue
        b = min(size, a + bs)
        if isinstance(d, str):
            out[a:b] = bytes(b - a)
        else:
            block = d.ljust(bs, b"\0")
            out[a:b] = block[: b - a]
    return bytes(out)


def header_uuids(path: Path) -> tuple[uuidlib.UUID, uuidlib.UUID]:
    """(uuidCreate, uuidModify) of a version 1.1 VDI file, read with ``struct``."""
    data = Path(path).read_bytes()[: PREHEADER.size + HEADER1.size]
    f = HEADER1.unpack(data[PREHEADER.size :])
    return uuidlib.UUID(bytes_le=f[-4]), uuidlib.UUID(bytes_le=f[-3])


def random_blocks(
    rng: random.Random, n_blocks: int, bs: int, *, p_data=0.5, p_zero=0.15, partial=True
) -> dict:
    """Random block contents: some data (some shorter than a block), some zero, rest free."""
    out: dict = {}
    for k in range(n_blocks):
        r = rng.random()
        if r < p_data:
            n = bs if not partial or rng.random() < 0.6 else rng.randrange(1, bs)
            out[k] = rng.randbytes(n)
        elif r < p_data + p_zero:
            out[k] = "zero"
    return out
