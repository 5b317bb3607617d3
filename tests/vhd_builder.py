"""Build VHD files from the specification's structures, for what qemu-img cannot write.

qemu-img writes fixed and dynamic VHDs only, always with 2 MiB blocks and all-ones sector
bitmaps. The builders here write differencing disks (parent UUID, Unicode name, W2ku / W2ru /
MacX locators), partly set sector bitmaps with garbage in the clear sectors, other block
sizes, 511-byte footers, and any creator / geometry. They lay the file out as the spec says
(footer copy, dynamic disk header, locator data, BAT, blocks, footer), packing each
structure with its own ``struct`` format typed here from the spec's field table (never the
reader's structs), and compute checksums themselves; what a disk must
read as comes from :func:`expected_bytes`, which follows the spec's read rule from the
bitmaps and data given here, never from vdinspect.
"""

from __future__ import annotations

import os
import struct
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

FOOTER = struct.Struct(">8sIIQI4sI4sQQHBBII16sB427s")  # 512 bytes
LOCATOR = struct.Struct(">4sIIIQ")  # 24 bytes
DYNAMIC_HEADER = struct.Struct(">8sQQIIII16sII512s192s256s")  # 1024 bytes


SECTOR = 512
EPOCH_UNIX = 946684800  # 2000-01-01 00:00:00 UTC in Unix seconds


def checksum(buf: bytes, at: int) -> int:
    """The spec's checksum: one's complement of the byte sum, the checksum field left out."""
    total = sum(buf[:at]) + sum(buf[at + 4 :])
    return ~total & 0xFFFFFFFF


def with_checksum(buf: bytes, at: int) -> bytes:
    b = bytearray(buf)
    b[at : at + 4] = bytes(4)
    b[at : at + 4] = checksum(bytes(b), at).to_bytes(4, "big")
    return bytes(b)


def spec_geometry(total_sectors: int) -> tuple[int, int, int]:
    """CHS for a sector count, as the spec's appendix computes it (rounds down)."""
    total = min(total_sectors, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total // spt
    else:
        spt = 17
        cth = total // spt
        heads = max(4, (cth + 1023) // 1024)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = total // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = total // spt
    return cth // heads, heads, spt


def footer(
    *,
    disk_type: int,
    size: int,
    geometry: tuple[int, int, int] | None = None,
    creator: bytes = b"win ",
    creator_version: int = 0x00050003,
    host_os: bytes = b"Wi2k",
    unique_id: bytes | None = None,
    timestamp: int = 0x2A000000,
    data_offset: int = 0xFFFFFFFFFFFFFFFF,
    saved_state: int = 0,
    features: int = 2,
    original_size: int | None = None,
) -> bytes:
    """A 512-byte hard disk footer with a correct checksum."""
    c, h, s = geometry or spec_geometry(size // SECTOR)
    # the footer's fields in the specification's order (big-endian): cookie, features,
    # file format version, data offset, time stamp, creator application, creator version,
    # creator host OS, original size, current size, geometry (cylinders u16, heads u8,
    # sectors per track u8), disk type, checksum, unique id, saved state, 427 reserved bytes
    raw = FOOTER.pack(
        b"conectix", features, 0x00010000, data_offset, timestamp, creator, creator_version,
        host_os, size if original_size is None else original_size, size, c, h, s, disk_type,
        0, unique_id or uuidlib.uuid4().bytes, saved_state, bytes(427),
    )
    return with_checksum(raw, 64)


# --- parent locators ---------------------------------------------------------------------------


def w2ku(path: str) -> tuple[bytes, bytes]:
    return b"W2ku", path.encode("utf-16-le")


def w2ru(path: str) -> tuple[bytes, bytes]:
    return b"W2ru", path.encode("utf-16-le")


def macx(path: str) -> tuple[bytes, bytes]:
    return b"MacX", b"file://localhost" + quote(path).encode("utf-8")


@dataclass
class Parent:
    """What a differencing disk records about its parent."""

    unique_id: bytes
    name: str = ""
    time_stamp: int = 0
    locators: list[tuple[bytes, bytes]] = field(default_factory=list)
    space_in_sectors: bool = False  # the spec's unit; Virtual PC and Hyper-V write bytes


# --- dynamic and differencing disks ----------------------------------------------------------


@dataclass
class Block:
    """One block: which sectors are present (bool per sector) and its full data area."""

    bitmap: np.ndarray
    data: bytes


@dataclass
class Layout:
    """Where things went in a built file (for tests that damage a part on purpose)."""

    header_offset: int
    bat_offset: int
    block_offsets: dict[int, int]
    footer_offset: int
    locator_offsets: list[int]
    file_size: int


def build_dynamic(
    path: str | os.PathLike,
    *,
    size: int,
    blocks: dict[int, Block],
    block_size: int = 2 << 20,
    parent: Parent | None = None,
    max_table_entries: int | None = None,
    host_order: list[int] | None = None,
    **footer_kw,
) -> Layout:
    """Write a dynamic (or, with ``parent``, differencing) VHD; blocks in ``host_order``."""
    spb = block_size // SECTOR
    bitmap_size = -(-spb // 8 // SECTOR) * SECTOR
    mte = max_table_entries if max_table_entries is not None else -(-size // block_size)
    out = bytearray()
    out += bytes(SECTOR)  # footer copy, filled in at the end
    header_offset = len(out)
    out += bytes(1024)
    locator_entries = []
    locator_offsets = []
    if parent is not None:
        for code, data in parent.locators:
            space = -(-max(len(data), 1) // SECTOR) * SECTOR
            locator_offsets.append(len(out))
            locator_entries.append(LOCATOR.pack(
                code, space // SECTOR if parent.space_in_sectors else space, len(data), 0,
                len(out)))
            out += data + bytes(space - len(data))
    while len(locator_entries) < 8:
        locator_entries.append(bytes(LOCATOR.size))
    bat_offset = len(out)
    bat = np.full(mte, 0xFFFFFFFF, dtype=">u4")
    out += bytes(-(-mte * 4 // SECTOR) * SECTOR)
    block_offsets = {}
    for i in host_order if host_order is not None else sorted(blocks):
        b = blocks[i]
        assert len(b.bitmap) == spb and len(b.data) == block_size
        block_offsets[i] = len(out)
        bat[i] = len(out) // SECTOR
        bm = np.packbits(np.asarray(b.bitmap, dtype=bool), bitorder="big").tobytes()
        out += bm + bytes(bitmap_size - len(bm)) + b.data
    out[bat_offset : bat_offset + mte * 4] = bat.tobytes()
    name = (parent.name if parent else "").encode("utf-16-be")
    # the dynamic disk header's fields in the specification's order: cookie, data offset,
    # table offset, header version, max table entries, block size, checksum, parent unique
    # id, parent time stamp, reserved, parent unicode name (512 bytes), 8 parent locator
    # entries (24 bytes each), 256 reserved bytes
    header = DYNAMIC_HEADER.pack(
        b"cxsparse", 0xFFFFFFFFFFFFFFFF, bat_offset, 0x00010000, mte, block_size, 0,
        parent.unique_id if parent else bytes(16), parent.time_stamp if parent else 0, 0,
        name + bytes(512 - len(name)), b"".join(locator_entries), bytes(256),
    )
    out[header_offset : header_offset + 1024] = with_checksum(header, 36)
    ft = footer(
        disk_type=3 if parent is None else 4, size=size, data_offset=header_offset, **footer_kw
    )
    out[0:SECTOR] = ft
    footer_offset = len(out)
    out += ft
    Path(path).write_bytes(bytes(out))
    return Layout(
        header_offset, bat_offset, block_offsets, footer_offset, locator_offsets, len(out)
    )


def build_fixed(
    path: str | os.PathLike, data: bytes, *, old_footer: bool = False, **footer_kw
) -> int:
    """Write a fixed VHD of ``data`` (a 511-byte footer with ``old_footer``); returns its offset."""
    ft = footer(disk_type=2, size=len(data), **footer_kw)
    Path(path).write_bytes(data + (ft[:511] if old_footer else ft))
    return len(data)


# --- what the disk must read as ---------------------------------------------------------------


def expected_bytes(
    size: int, blocks: dict[int, Block], block_size: int, parent: bytes | None = None
) -> bytes:
    """The virtual disk by the spec's rule: a set bit reads this file, a clear bit the parent
    (zeros without one); unallocated blocks read the parent (or zeros)."""
    out = bytearray(parent[:size] if parent is not None else bytes(size))
    out += bytes(size - len(out))
    for i, b in blocks.items():
        base = i * block_size
        for s in np.flatnonzero(b.bitmap).tolist():
            off = base + s * SECTOR
            if off >= size:
                break
            n = min(SECTOR, size - off)
            out[off : off + n] = b.data[s * SECTOR : s * SECTOR + n]
    return bytes(out)


def random_block(rng: np.random.Generator, block_size: int, kind: str) -> Block:
    """A block with random data (also in clear sectors) and a bitmap of the given kind:
    "full", "empty", "runs" (a few stretches), "sparse" (scattered sectors)."""
    spb = block_size // SECTOR
    data = rng.integers(0, 256, block_size, dtype=np.uint8).tobytes()
    if kind == "full":
        bits = np.ones(spb, dtype=bool)
    elif kind == "empty":
        bits = np.zeros(spb, dtype=bool)
    elif kind == "runs":
        bits = np.zeros(spb, dtype=bool)
        for _ in range(int(rng.integers(1, 6))):
            a = int(rng.integers(0, spb))
            bits[a : a + int(rng.integers(1, max(2, spb // 4)))] = True
    else:
        bits = rng.random(spb) < 0.3
    return Block(bits, data)


def bit_runs(bits: np.ndarray) -> int:
    """Number of stretches of set bits (how many data runs a block should give)."""
    b = np.concatenate(([False], np.asarray(bits, dtype=bool), [False]))
    return int((b[1:] & ~b[:-1]).sum())
