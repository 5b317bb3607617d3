"""Build VMDK variants no tool here writes, from the specification's structures.

Written with ``struct.pack`` from VMware's "Virtual Disk Format" notes (and QEMU's vmdk.c for
seSparse), independently of the reader's construct definitions. Each builder takes the
guest data as ``{grain index: bytes}`` and returns the file bytes; :func:`expected_disk`
gives the raw disk the reads must equal.
"""

from __future__ import annotations

import random
import struct
import zlib

SECTOR = 512


def grain_data(indices, grain_bytes: int, seed: int = 1) -> dict[int, bytes]:
    """Distinct pseudo-random contents for each grain index (some compressible, some not)."""
    rng = random.Random(seed)
    out = {}
    for i in indices:
        if rng.random() < 0.5:
            out[i] = rng.randbytes(grain_bytes)
        else:  # a repeated pattern, so deflate has something to do
            out[i] = bytes([rng.randrange(256)]) * 64 * (grain_bytes // 64)
    return out


def expected_disk(capacity: int, grains: dict[int, bytes], grain_bytes: int) -> bytes:
    """The raw disk: the grains at their places, zeros elsewhere."""
    buf = bytearray(capacity)
    for i, data in grains.items():
        start = i * grain_bytes
        n = min(len(data), capacity - start)
        buf[start : start + n] = data[:n]
    return bytes(buf)


def descriptor(
    extents: list[str],
    *,
    create_type: str,
    cid: int = 0x12345678,
    parent_cid: int = 0xFFFFFFFF,
    parent_hint: str | None = None,
    extra: str = "",
    encoding: str = "UTF-8",
) -> str:
    """A descriptor file's text (extents are whole lines, e.g. 'RW 2048 SPARSE "x.vmdk"')."""
    lines = [
        "# Disk DescriptorFile",
        "version=1",
        f'encoding="{encoding}"',
        f"CID={cid:08x}",
        f"parentCID={parent_cid:08x}",
        f'createType="{create_type}"',
    ]
    if parent_hint is not None:
        lines.append(f'parentFileNameHint="{parent_hint}"')
    lines += ["", "# Extent description", *extents, "", "# The Disk Data Base", "#DDB", ""]
    lines += [
        'ddb.adapterType = "lsilogic"',
        'ddb.geometry.cylinders = "16"',
        'ddb.geometry.heads = "255"',
        'ddb.geometry.sectors = "63"',
        'ddb.virtualHWVersion = "14"',
        'ddb.uuid = "60 00 C2 11 22 33 44 55-66 77 88 99 aa bb cc dd"',
    ]
    if extra:
        lines.append(extra)
    return "\n".join(lines) + "\n"


# --- hosted sparse ("KDMV") ---------------------------------------------------------------

FLAG_NL, FLAG_RGD, FLAG_ZERO, FLAG_COMP, FLAG_MARK = 1, 2, 4, 1 << 16, 1 << 17
GD_AT_END = 0xFFFFFFFFFFFFFFFF


def sparse_header(
    *,
    version: int,
    flags: int,
    capacity: int,
    grain: int,
    desc_off: int,
    desc_size: int,
    gtes: int,
    rgd: int,
    gd: int,
    overhead: int,
    compress: int = 0,
    unclean: int = 0,
) -> bytes:
    """The 512-byte SparseExtentHeader (sizes in sectors)."""
    h = b"KDMV" + struct.pack(
        "<IIQQQQIQQQB4sH",
        version,
        flags,
        capacity,
        grain,
        desc_off,
        desc_size,
        gtes,
        rgd,
        gd,
        overhead,
        unclean,
        b"\n \r\n",
        compress,
    )
    return h + bytes(SECTOR - len(h))


def hosted_sparse(
    capacity_sectors: int,
    grains: dict[int, bytes],
    *,
    grain_sectors: int = 128,
    gtes: int = 512,
    zeroed: set[int] = frozenset(),
    embedded: str | None = None,
    version: int | None = None,
    unclean: int = 0,
    preallocate: bool = True,
) -> tuple[bytes, dict]:
    """A monolithic hosted sparse extent laid out like VMware's: header, descriptor,
    redundant GD + GTs, GD + GTs, grains. Returns (bytes, layout offsets in bytes).

    With ``preallocate=False`` only the grain tables that map something are stored (the
    others have GD entries of 0), so huge capacities stay small files."""
    gb = grain_sectors * SECTOR
    n_grains = -(-capacity_sectors // grain_sectors)
    n_gt = -(-n_grains // gtes)
    gt_sectors = -(-gtes * 4 // SECTOR)
    gd_sectors = -(-n_gt * 4 // SECTOR)
    used = sorted({i // gtes for i in [*grains, *zeroed]}) if not preallocate else range(n_gt)
    slot = {k: j for j, k in enumerate(used)}
    desc_off, desc_size = (1, 20) if embedded is not None else (0, 0)
    rgd = 1 + desc_size
    gd = rgd + gd_sectors + len(used) * gt_sectors
    meta_end = gd + gd_sectors + len(used) * gt_sectors
    overhead = -(-meta_end // grain_sectors) * grain_sectors
    flags = FLAG_NL | FLAG_RGD | (FLAG_ZERO if zeroed else 0)
    version = version or (2 if zeroed else 1)
    out = bytearray(overhead * SECTOR)
    out[:SECTOR] = sparse_header(
        version=version,
        flags=flags,
        capacity=capacity_sectors,
        grain=grain_sectors,
        desc_off=desc_off,
        desc_size=desc_size,
        gtes=gtes,
        rgd=rgd,
        gd=gd,
        overhead=overhead,
        unclean=unclean,
    )
    if embedded is not None:
        text = embedded.encode()
        out[SECTOR : SECTOR + len(text)] = text
    gte: dict[int, int] = {}  # grain index -> sector
    pos = overhead
    for i in sorted(grains):
        gte[i] = pos
        out += grains[i].ljust(gb, b"\0")
        pos += grain_sectors
    for i in zeroed:
        gte[i] = 1
    for base in (rgd, gd):
        gts = base + gd_sectors
        gdv = [gts + slot[k] * gt_sectors if k in slot else 0 for k in range(n_gt)]
        out[base * SECTOR : base * SECTOR + 4 * n_gt] = struct.pack(f"<{n_gt}I", *gdv)
        for k in used:
            t = struct.pack(f"<{gtes}I", *(gte.get(j, 0) for j in range(k * gtes, (k + 1) * gtes)))
            o = (gts + slot[k] * gt_sectors) * SECTOR
            out[o : o + len(t)] = t
    layout = dict(
        rgd=rgd * SECTOR,
        gd=gd * SECTOR,
        gt=(gd + gd_sectors) * SECTOR,
        rgt=(rgd + gd_sectors) * SECTOR,
        overhead=overhead * SECTOR,
        n_gt=n_gt,
        gt_bytes=gtes * 4,
    )
    return bytes(out), layout


def stream_optimized(
    capacity_sectors: int,
    grains: dict[int, bytes],
    *,
    grain_sectors: int = 128,
    embedded: str | None = None,
    footer: bool = True,
    raw_deflate: bool = False,
) -> bytes:
    """A stream-optimized extent as VMware's exporter writes it: compressed grains behind
    grain markers in LBA order, then per grain table a GT marker + GT, a GD marker + GD,
    a footer marker + footer (a copy of the header with the real gdOffset) and an
    end-of-stream marker. The header's gdOffset is GD_AT_END."""
    gtes = 512
    gb = grain_sectors * SECTOR
    n_grains = -(-capacity_sectors // grain_sectors)
    n_gt = -(-n_grains // gtes)
    desc_off, desc_size = (1, 1) if embedded is not None else (0, 0)
    overhead = 128
    flags = FLAG_NL | FLAG_COMP | FLAG_MARK

    def header(gd_offset: int) -> bytes:
        """The header, or its footer copy, with this gdOffset."""
        return sparse_header(
            version=3,
            flags=flags,
            capacity=capacity_sectors,
            grain=grain_sectors,
            desc_off=desc_off,
            desc_size=desc_size,
            gtes=gtes,
            rgd=0,
            gd=gd_offset,
            overhead=overhead,
            compress=1,
        )

    out = bytearray(overhead * SECTOR)
    out[:SECTOR] = header(GD_AT_END)
    if embedded is not None:
        text = embedded.encode()
        out[SECTOR : SECTOR + len(text)] = text
    gte = [0] * (n_gt * gtes)
    for i in sorted(grains):
        data = grains[i].ljust(gb, b"\0")[: min(gb, capacity_sectors * SECTOR - i * gb)]
        if raw_deflate:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            comp = c.compress(data) + c.flush()
        else:
            comp = zlib.compress(data)
        gte[i] = len(out) // SECTOR
        rec = struct.pack("<QI", i * grain_sectors, len(comp)) + comp
        out += rec.ljust(-(-len(rec) // SECTOR) * SECTOR, b"\0")
    gd = []
    for k in range(n_gt):
        t = gte[k * gtes : (k + 1) * gtes]
        if not any(t):
            gd.append(0)
            continue
        out += struct.pack("<QII", gtes * 4 // SECTOR, 0, 1).ljust(SECTOR, b"\0")
        gd.append(len(out) // SECTOR)
        out += struct.pack(f"<{gtes}I", *t)
    gd_sectors = -(-n_gt * 4 // SECTOR)
    out += struct.pack("<QII", gd_sectors, 0, 2).ljust(SECTOR, b"\0")
    gd_offset = len(out) // SECTOR
    out += struct.pack(f"<{n_gt}I", *gd).ljust(gd_sectors * SECTOR, b"\0")
    if footer:
        out += struct.pack("<QII", 1, 0, 3).ljust(SECTOR, b"\0")
        out += header(gd_offset)
        out += struct.pack("<QII", 0, 0, 0).ljust(SECTOR, b"\0")
    return bytes(out)


# --- ESX sparse ("COWD") ------------------------------------------------------------------


def cowd_extent(
    capacity_sectors: int, grains: dict[int, bytes], *, grain_sectors: int = 1, unclean: int = 0
) -> bytes:
    """An ESX COWD extent: 2048-byte header, GD at sector 4, 4096-entry GTs, then grains."""
    gtes = 4096
    gb = grain_sectors * SECTOR
    n_grains = -(-capacity_sectors // grain_sectors)
    n_gt = -(-n_grains // gtes)
    gd_off = 4
    gd_sectors = -(-n_gt * 4 // SECTOR)
    used_gts = sorted({i // gtes for i in grains})
    gt_sectors = gtes * 4 // SECTOR
    gt_at = {k: gd_off + gd_sectors + j * gt_sectors for j, k in enumerate(used_gts)}
    pos = gd_off + gd_sectors + len(used_gts) * gt_sectors
    gte = {}
    body = bytearray()
    for i in sorted(grains):
        gte[i] = pos + len(body) // SECTOR
        body += grains[i].ljust(gb, b"\0")
    free = pos + len(body) // SECTOR
    root = struct.pack("<III", 16, 255, 63).ljust(1028, b"\0")
    hdr = b"COWD" + struct.pack(
        "<IIIIIII", 1, 3, capacity_sectors, grain_sectors, gd_off, n_gt, free
    )
    hdr += root + struct.pack("<I", 7) + b"builder".ljust(60, b"\0")
    hdr += b"made by vmdk_builder".ljust(512, b"\0") + struct.pack("<I", 7) + bytes(8)
    hdr += struct.pack("<I", unclean) + bytes(396)
    assert len(hdr) == 2048
    out = bytearray(hdr)
    out += bytes(gd_off * SECTOR - len(out))
    gd = [gt_at.get(k, 0) for k in range(n_gt)]
    out += struct.pack(f"<{n_gt}I", *gd).ljust(gd_sectors * SECTOR, b"\0")
    for k in used_gts:
        t = [gte.get(k * gtes + j, 0) for j in range(gtes)]
        out += struct.pack(f"<{gtes}I", *t)
    out += body
    return bytes(out)


# --- seSparse -----------------------------------------------------------------------------


def sesparse_extent(
    capacity_sectors: int,
    grains: dict[int, bytes],
    *,
    zero: set[int] = frozenset(),
    unmapped: set[int] = frozenset(),
) -> bytes:
    """An seSparse extent (4 KiB grains, 4096-entry 64-bit grain tables) as QEMU reads it."""
    grain_sectors, gt_size_sectors = 8, 64
    gtes = gt_size_sectors * SECTOR // 8
    gb = grain_sectors * SECTOR
    n_grains = -(-capacity_sectors // grain_sectors)
    n_gt = -(-n_grains // gtes)
    volatile_off, journal_hdr, journal = 1, 2, 3
    gd_off = 8
    gd_size = max(1, -(-n_gt * 8 // SECTOR))
    gts_off = gd_off + gd_size
    tables = sorted({i // gtes for i in list(grains) + list(zero) + list(unmapped)})
    gts_size = max(1, len(tables)) * gt_size_sectors
    grains_off = gts_off + gts_size
    order = sorted(grains)
    index_of = {g: n for n, g in enumerate(order)}
    const = struct.pack(
        "<26Q",
        0xCAFEBABE,
        0x0000000200000001,
        capacity_sectors,
        grain_sectors,
        gt_size_sectors,
        0,
        0,
        0,
        0,
        0,
        volatile_off,
        1,
        journal_hdr,
        1,
        journal,
        1,
        gd_off,
        gd_size,
        gts_off,
        gts_size,
        0,
        0,
        0,
        0,
        grains_off,
        len(order) * grain_sectors,
    ).ljust(SECTOR, b"\0")
    volatile = struct.pack("<4Q", 0xCAFECAFE, len(tables), 1, 0).ljust(SECTOR, b"\0")
    out = bytearray(grains_off * SECTOR)
    out[:SECTOR] = const
    out[volatile_off * SECTOR : (volatile_off + 1) * SECTOR] = volatile
    gd = [0] * n_gt
    for slot, k in enumerate(tables):
        gd[k] = (0x10000000 << 32) | slot
        entries = []
        for j in range(gtes):
            g = k * gtes + j
            if g in index_of:
                c = index_of[g]  # grain index split: low 12 bits at 48..59, the rest at 0..47
                entries.append((0x3 << 60) | ((c & 0xFFF) << 48) | (c >> 12))
            elif g in zero:
                entries.append(0x2 << 60)
            elif g in unmapped:
                entries.append(0x1 << 60)
            else:
                entries.append(0)
        o = (gts_off + slot * gt_size_sectors) * SECTOR
        out[o : o + gtes * 8] = struct.pack(f"<{gtes}Q", *entries)
    out[gd_off * SECTOR : gd_off * SECTOR + 8 * n_gt] = struct.pack(f"<{n_gt}Q", *gd)
    for g in order:
        out += grains[g].ljust(gb, b"\0")
    return bytes(out)
