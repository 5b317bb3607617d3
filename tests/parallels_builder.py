"""Build Parallels expandable images from QEMU's docs/interop/parallels.txt, for what qemu-img
cannot write: v1 ("WithoutFreeSpace") images with the BAT in sectors and data_off 0, odd
data offsets, the Format Extension with dirty bitmaps (L1 entries 0, 1 and cluster offsets),
unknown features, the in_use and empty-image flags.

Everything is packed with ``struct`` from the document's field list, independently of
vdinspect's construct structs. What a disk must read as comes from :func:`expected_bytes`
(BAT entry 0 -> parent or zeros, else the stored cluster), and a bitmap's dirty granules are
the ones given here.
"""

from __future__ import annotations

import hashlib
import random
import struct
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

MAGIC_V1 = b"WithoutFreeSpace"
MAGIC_V2 = b"WithouFreSpacExt"
INUSE_OPEN, INUSE_CLOSED = 0x746F6E59, 0x312E3276
EXT_MAGIC = 0xAB234CEF23DCEA87
FEATURE_DIRTY_BITMAP = 0x20385FAE252CB34A

# magic[16], version, heads, cylinders, tracks, bat_entries, nb_sectors (u64), inuse,
# data_off, flags, ext_off (u64)
HEADER = struct.Struct("<16sIIIIIQIIIQ")
FEATURE = struct.Struct("<QQII")  # magic, flags, data_size, unused32
BITMAP = struct.Struct("<Q16sII")  # size, id, granularity, l1_size
assert HEADER.size == 64 and FEATURE.size == 24 and BITMAP.size == 32


@dataclass
class Bitmap:
    """A dirty bitmap: ``dirty`` granule indexes; whole bitmap clusters of ones may be
    written as L1 entry 1 (``ones_entries``)."""

    granularity: int = 128  # sectors per bit
    dirty: set = field(default_factory=set)
    id: uuidlib.UUID = field(default_factory=uuidlib.uuid4)
    ones_entries: bool = True


@dataclass
class Prl:
    """What to write. ``clusters`` maps a guest cluster number to its data (zero-padded)."""

    size: int  # bytes, a multiple of 512
    cluster: int = 64 << 10  # bytes
    v2: bool = True
    clusters: dict = field(default_factory=dict)
    shuffle: int | None = 1
    data_off: int | None = None  # sectors; None: right after the BAT (v2: cluster-aligned)
    data_gap: int = 0  # extra sectors before the first data cluster (v1 only)
    inuse: int = INUSE_CLOSED
    flags: int = 0
    heads: int = 16
    bitmaps: list = field(default_factory=list)
    extra_features: list = field(default_factory=list)  # (magic, flags, data) before bitmaps
    bad_checksum: bool = False
    bat_entries: int | None = None
    nb_sectors: int | None = None
    entries: dict = field(default_factory=dict)  # raw BAT overrides: guest cluster -> u32
    tail: bytes = b""

    @property
    def tracks(self) -> int:
        return self.cluster // 512

    @property
    def n_bat(self) -> int:
        return self.bat_entries if self.bat_entries is not None else -(-self.size // self.cluster)


def _up(x: int, a: int) -> int:
    return -(-x // a) * a


def bitmap_clusters(b: Bitmap, nb_sectors: int, cluster: int) -> list:
    """The L1 table's contents: per bitmap cluster None (all clear), 1 (all set) or bytes."""
    bits = -(-nb_sectors // b.granularity)
    nbytes = -(-bits // 64) * 8
    out = []
    per = cluster * 8
    for k in range(-(-nbytes // cluster)):
        lo, hi = k * per, min(bits, (k + 1) * per)
        mine = [g - lo for g in b.dirty if lo <= g < hi]
        if not mine:
            out.append(None)
        elif b.ones_entries and len(mine) == hi - lo:
            out.append(1)
        else:
            buf = bytearray(cluster)
            for g in mine:
                buf[g // 8] |= 1 << (g % 8)
            out.append(bytes(buf))
    return out


def build(p: Prl) -> bytes:
    """The image file's bytes."""
    cs, tr, nbat = p.cluster, p.tracks, p.n_bat
    bat_end = 64 + 4 * nbat
    if p.data_off is not None:
        data_start = p.data_off * 512 if p.data_off else _up(bat_end, 512)
    elif p.v2:
        data_start = _up(bat_end, cs)
    else:
        data_start = _up(bat_end, 512) + p.data_gap * 512
    order = sorted(p.clusters)
    if p.shuffle is not None:
        random.Random(p.shuffle).shuffle(order)
    bat = [0] * nbat
    body = bytearray()
    pos = data_start
    for g in order:
        bat[g] = pos // 512 // (tr if p.v2 else 1)
        body += p.clusters[g].ljust(cs, b"\0")
        pos += cs
    nb = p.nb_sectors if p.nb_sectors is not None else p.size // 512
    ext_off = 0
    ext_cluster = b""
    if p.bitmaps or p.extra_features:
        feats = bytearray()
        for magic, flags, data in p.extra_features:
            feats += FEATURE.pack(magic, flags, len(data), 0) + data.ljust(_up(len(data), 8), b"\0")
        for b in p.bitmaps:
            l1 = []
            for c in bitmap_clusters(b, nb, cs):
                if c is None:
                    l1.append(0)
                elif c == 1:
                    l1.append(1)
                else:
                    l1.append(pos // 512)
                    body += c
                    pos += cs
            data = BITMAP.pack(nb, b.id.bytes, b.granularity, len(l1)) + struct.pack(
                f"<{len(l1)}Q", *l1
            )
            feats += FEATURE.pack(FEATURE_DIRTY_BITMAP, 0, len(data), 0)
            feats += data.ljust(_up(len(data), 8), b"\0")
        feats += FEATURE.pack(0, 0, 0, 0)
        rest = bytes(feats).ljust(cs - 24, b"\0")
        digest = hashlib.md5(rest, usedforsecurity=False).digest()
        if p.bad_checksum:
            digest = bytes(16)
        ext_cluster = struct.pack("<Q", EXT_MAGIC) + digest + rest
        ext_off = pos // 512
        pos += cs
    for g, e in p.entries.items():
        bat[g] = e
    magic = MAGIC_V2 if p.v2 else MAGIC_V1
    data_off_field = p.data_off if p.data_off is not None else data_start // 512
    header = HEADER.pack(
        magic, 2, p.heads, nb // p.heads // 32 or 1, tr, nbat, nb, p.inuse, data_off_field,
        p.flags, ext_off,
    )  # fmt: skip
    out = bytearray(data_start)
    out[:64] = header
    out[64:bat_end] = struct.pack(f"<{nbat}I", *bat)
    return bytes(out) + bytes(body) + ext_cluster + p.tail


def write(path: Path, p: Prl) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build(p))
    return path


def expected_bytes(p: Prl, parent: bytes | None = None) -> bytes:
    """What the disk must read as."""
    out = bytearray(p.size)
    if parent is not None:
        n = min(p.size, len(parent))
        out[:n] = parent[:n]
    cs = p.cluster
    for g, d in p.clusters.items():
        a = g * cs
        if a >= p.size:
            continue
        b = min(p.size, a + cs)
        out[a:b] = d.ljust(cs, b"\0")[: b - a]
    return bytes(out)


def dirty_ranges(dirty: set) -> list[tuple[int, int]]:
    """Granule indexes as inclusive (first, last) ranges."""
    out: list[tuple[int, int]] = []
    for g in sorted(dirty):
        if out and out[-1][1] + 1 == g:
            out[-1] = (out[-1][0], g)
        else:
            out.append((g, g))
    return out
