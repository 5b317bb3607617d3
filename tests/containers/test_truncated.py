"""A migration cut short: every container format with its file missing its tail.

Each image is made with ``qemu-img create`` and filled with ``qemu-io`` (distinct random
data at offsets spread over the disk, written out of order so the data is spread over the
host file). Copies are then cut at several points: inside the header, inside the tables, in
the middle of the data, one byte short of the end and, for formats with a footer, just the
footer missing.

The oracle is the ORIGINAL image: ``qemu-img convert -O raw`` for the bytes and ``qemu-img
map --output=json`` for where each guest range lives in the host file; guest bytes whose host
bytes lie at or past the cut are lost. Two formats whose ``qemu-img map`` gives no host
offsets are located without vdinspect: VHDX blocks by searching the host file for the data
written into them, streamOptimized grains by walking the stream's grain markers (VMware's
Virtual Disk Format note: a 12-byte marker, LBA and compressed size, before each grain).

For every cut: strict mode raises a VDInspectError naming the file, or opens (and then
refuses to read what is lost); salvage mode opens whenever the header survives, shows
``damaged`` runs exactly where the lost bytes were (for cuts inside the tables, at least
there: a lost table entry may have mapped nothing), reads the oracle everywhere else and
zeros in damaged ranges, and ``check()`` names the truncation with a structure and a host
offset. The CLI's ``info``/``map``/``convert --salvage`` run on each cut without a traceback.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import vdinspect
from tests.conftest import needs_qemu
from tests.qemu_tools import create, qemu_img, qemu_map, run
from vdinspect import cli
from vdinspect.containers import vmdk
from vdinspect.errors import CorruptImage, NotRecognized, VDInspectError

K, M, G = 1 << 10, 1 << 20, 1 << 30

#: (guest offset, length) of the writes into a 16 MiB disk, in the order they are made
WRITES_16M = [
    (9 * M + 4 * K, 40 * K),
    (0, 64 * K),
    (15 * M + 512, 64 * K),
    (4 * M + 512, 8 * K),
    (1 * M, 192 * K),
    (12 * M, 128 * K),
]
#: the same for the 5 GiB split VMDK (three extents of at most 2 GiB); one write crosses
#: the boundary between the first two extents
WRITES_5G = [
    (2 * G + 1 * M, 128 * K),
    (0, 64 * K),
    (3 * G + 7 * M, 64 * K),
    (2 * G - 64 * K, 128 * K),
    (4 * G + 300 * M, 64 * K),
    (1 * G, 64 * K),
    (2 * G + 40 * M, 64 * K),
]


@dataclass(frozen=True)
class Variant:
    """One container format (and sub-format) and how to cut it."""

    name: str
    fmt: str  # qemu-img's format name
    opts: tuple[str, ...] = ()
    size: int = 16 * M
    cut_suffix: str = ""  # the file cut: the image itself, or the sibling ending so
    header_cut: int | None = None  # an offset inside the header, past the magic
    tables: str | None = None  # structures() row whose middle is the "tables" cut
    footer: int = 0  # bytes of footer at the end of the cut file
    locate: str = "map"  # where guest data lives: qemu-img map, "search" (VHDX), "markers"
    via_raw: bool = False  # written into a raw image and converted (qemu writes streams so)
    ours: str = ""  # vdinspect's format name (qemu-img's by default)
    #: cuts after which salvage mode may refuse (clearly): the disk's parameters are gone
    salvage_may_refuse: tuple[str, ...] = ("header",)

    def __post_init__(self):
        if not self.ours:
            object.__setattr__(self, "ours", {"vpc": "vhd"}.get(self.fmt, self.fmt))

    @property
    def writes(self):
        return WRITES_5G if self.size > 16 * M else WRITES_16M


VARIANTS = [
    Variant("qcow2", "qcow2", header_cut=72, tables="L2 table 0"),
    Variant("qcow", "qcow", header_cut=30, tables="L2 table"),
    Variant(
        "vmdk-sparse",
        "vmdk",
        ("subformat=monolithicSparse",),
        header_cut=100,
        tables="grain table 0",
    ),
    # qemu writes no VMware footer: the "footer" cut drops its end-of-stream marker (and the
    # zeros qemu pads after it); test_vmdk covers the VMware footer
    Variant(
        "vmdk-stream",
        "vmdk",
        ("subformat=streamOptimized",),
        header_cut=100,
        tables="grain table 0",
        footer=512,
        locate="markers",
        via_raw=True,
    ),
    # the second extent file is cut: the descriptor survives, so salvage always opens
    Variant(
        "vmdk-2gb",
        "vmdk",
        ("subformat=twoGbMaxExtentSparse",),
        size=5 * G,
        cut_suffix="-s002.vmdk",
        header_cut=100,
        tables="grain table 0",
        salvage_may_refuse=(),
    ),
    Variant("vmdk-flat", "vmdk", ("subformat=monolithicFlat",), cut_suffix="-flat.vmdk"),
    Variant("vhd-fixed", "vpc", ("subformat=fixed",), footer=512),
    Variant("vhd-dynamic", "vpc", header_cut=700, tables="BAT", footer=512),
    # qemu puts the BAT before the metadata region: a cut inside the BAT loses the disk size
    Variant(
        "vhdx",
        "vhdx",
        ("block_size=1M",),
        header_cut=70000,
        tables="BAT",
        locate="search",
        salvage_may_refuse=("header", "tables"),
    ),
    Variant("vdi-dynamic", "vdi", header_cut=200, tables="block map"),
    Variant("vdi-fixed", "vdi", ("static=on",), header_cut=200, tables="block map"),
    Variant("parallels", "parallels", header_cut=40, tables="BAT"),
]
BY_NAME = {v.name: v for v in VARIANTS}
CUTS = ["header", "tables", "metadata", "data", "short1", "footer"]


def cases():
    out = []
    for v in VARIANTS:
        for c in CUTS:
            if c == "header" and v.header_cut is None or c == "tables" and v.tables is None:
                continue
            if c == "footer" and not v.footer or c == "metadata" and v.name != "vhdx":
                continue
            out.append(pytest.param(v.name, c, id=f"{v.name}-{c}"))
    return out


# --- the originals ------------------------------------------------------------------------


@dataclass
class Original:
    """A qemu-made image, its oracle and where its guest data lives."""

    variant: Variant
    path: Path  # what vdinspect.open is given
    cut_file: Path  # the file whose copies are cut
    raw: Path  # qemu-img convert -O raw of the original
    size: int  # virtual size
    #: (guest start, guest length, host start in cut_file or None, host end needed, linear)
    places: list[tuple[int, int, int | None, int, bool]]
    cut_points: dict[str, int]


def _extent_ranges(descriptor: Path) -> list[tuple[int, int, str]]:
    """(guest start, guest end, file name) of a descriptor's extent lines."""
    out, pos = [], 0
    for line in descriptor.read_text(errors="replace").splitlines():
        m = re.match(r'\s*RW\s+(\d+)\s+\w+\s+"([^"]+)"', line)
        if m:
            n = int(m.group(1)) * 512
            out.append((pos, pos + n, m.group(2)))
            pos += n
    return out


def _places_from_map(v: Variant, path: Path, cut_file: Path):
    extents = _extent_ranges(path) if v.fmt == "vmdk" and v.cut_suffix else None
    out = []
    for e in qemu_map(path, v.fmt):
        if not e.get("data"):
            continue
        s, n = e["start"], e["length"]
        assert "offset" in e, e
        in_cut = True
        if extents is not None:
            ext = [x for x in extents if x[0] <= s < x[1]]
            assert ext and s + n <= ext[0][1], (e, extents)  # entries never span two files
            in_cut = cut_file.name == ext[0][2]
        h = e["offset"] if in_cut else None
        out.append((s, n, h, (h + n) if in_cut else 0, True))
    return out


def _places_from_search(v: Variant, path: Path, data: dict[int, bytes], block: int):
    """VHDX: find each written block in the host file by its data (no format parsing)."""
    blob = path.read_bytes()
    blocks: dict[int, int] = {}
    for goff, chunk in data.items():
        for b in range(goff // block, (goff + len(chunk) - 1) // block + 1):
            at = max(goff, b * block)
            probe = chunk[at - goff : at - goff + 64]
            h = blob.find(probe)
            assert h > 0 and blob.find(probe, h + 1) < 0
            hb = h - at % block
            assert blocks.setdefault(b, hb) == hb
    return [(b * block, block, hb, hb + block, True) for b, hb in sorted(blocks.items())]


def _places_from_markers(path: Path, disk_size: int):
    """streamOptimized: each grain behind its 12-byte marker (LBA u64, compressed size u32)."""
    blob = path.read_bytes()
    grain = struct.unpack_from("<Q", blob, 20)[0] * 512
    pos = struct.unpack_from("<Q", blob, 64)[0] * 512  # overHead
    out = []
    while pos + 16 <= len(blob):
        lba, csize = struct.unpack_from("<QI", blob, pos)
        if csize:
            g = lba * 512
            out.append((g, min(grain, disk_size - g), pos, pos + 12 + csize, False))
            pos = -(-(pos + 12 + csize) // 512) * 512
            continue
        mtype = struct.unpack_from("<I", blob, pos + 12)[0]
        if mtype == 0:  # end of stream
            return out, pos
        pos += 512 + lba * 512  # a metadata marker: lba counts the sectors that follow
    raise AssertionError("no end-of-stream marker")


def _cut_points(v: Variant, path: Path, cut_file: Path, places) -> dict[str, int]:
    fsize = cut_file.stat().st_size
    pts = {"short1": fsize - 1}
    if v.footer:
        pts["footer"] = fsize - v.footer
    if v.header_cut is not None:
        pts["header"] = v.header_cut
    if v.tables is not None:  # our structures() only choose where to cut, never the answer
        with vdinspect.open(path) as disk:
            rows0 = rows = disk.structures()
        rows = rows[rows["host_file"].map(lambda f: os.path.basename(f) == cut_file.name)]
        rows = rows[rows["name"] == v.tables].sort_values("host_offset")
        r = rows.iloc[0]
        pts["tables"] = int(r["host_offset"]) + max(1, int(r["length"]) // 2)
        if v.name == "vhdx":  # inside the metadata region, past its table and items
            items = rows0[rows0["name"].str.startswith("metadata: ")]
            pts["metadata"] = int((items["host_offset"] + items["length"]).max()) + 1000
    spans = sorted((h, he) for _, _, h, he, _ in places if h is not None)
    total = sum(he - h for h, he in spans)
    half = total // 2
    for h, he in spans:  # the byte half way through the data, plus a little
        if half < he - h:
            pts["data"] = h + half + min(77, he - h - half - 1)
            break
        half -= he - h
    return pts


def _random_writes(v: Variant) -> dict[int, bytes]:
    rng = random.Random(sum(map(ord, v.name)))
    return {off: rng.randbytes(n) for off, n in v.writes}


def make_original(v: Variant, where: Path) -> Original:
    path = where / f"t.{'vmdk' if v.fmt == 'vmdk' else v.fmt}"
    target, fmt = (where / "src.img", "raw") if v.via_raw else (path, v.fmt)
    create(target, v.size, fmt, *([] if v.via_raw else v.opts))
    data = _random_writes(v)
    cmds = []
    for i, (off, chunk) in enumerate(data.items()):
        src = where / f"w{i}.bin"
        src.write_bytes(chunk)
        cmds.append(f"write -s {src} {off} {len(chunk)}")
    args = ["qemu-io", "-f", fmt]
    for c in cmds:
        args += ["-c", c]
    run(*args, str(target))
    if v.via_raw:
        qemu_img(
            "convert", "-f", "raw", "-O", v.fmt, *[f"-o{o}" for o in v.opts], str(target), str(path)
        )
        target.unlink()
    info = json.loads(qemu_img("info", "--output=json", "-f", v.fmt, str(path)))
    size = info["virtual-size"]
    cut_file = path.with_name(path.stem + v.cut_suffix) if v.cut_suffix else path
    raw = where / "oracle.raw"
    qemu_img("convert", "-f", v.fmt, "-O", "raw", str(path), str(raw))
    if v.locate == "search":
        places = _places_from_search(v, path, data, 1 * M)
    elif v.locate == "markers":
        places, eos = _places_from_markers(path, size)
    else:
        places = _places_from_map(v, path, cut_file)
    pts = _cut_points(v, path, cut_file, places)
    if v.locate == "markers":  # qemu pads a stream with zeros after its end-of-stream marker
        pts["footer"] = eos
    return Original(v, path, cut_file, raw, size, places, pts)


_ORIGINALS: dict[str, Original] = {}


@pytest.fixture
def original(request, tmp_path_factory) -> Original:
    name = request.param
    if name not in _ORIGINALS:
        _ORIGINALS[name] = make_original(BY_NAME[name], tmp_path_factory.mktemp(name))
    return _ORIGINALS[name]


def cut_copy(o: Original, n: int, dest: Path) -> Path:
    """Copy the original's files into ``dest`` with the cut file keeping ``n`` bytes."""
    for f in o.path.parent.iterdir():
        if f.name.startswith(o.path.stem) and f.suffix != ".raw":
            shutil.copyfile(f, dest / f.name)
    with open(dest / o.cut_file.name, "r+b") as f:
        f.truncate(n)
    return dest / o.path.name


# --- expected ranges ----------------------------------------------------------------------


def lost_ranges(o: Original, cut: int) -> list[tuple[int, int]]:
    """Guest ranges whose host bytes are at or past ``cut`` in the cut file."""
    out = []
    for g, n, h, hend, linear in o.places:
        if h is None or hend <= cut:
            continue
        if linear:
            out.append((g + max(0, cut - h), g + n))
        else:
            out.append((g, g + n))
    return merge(out)


def lost_tables(o: Original, cut: int) -> list[tuple[int, int]]:
    """Guest spans whose mapping table lies at or past ``cut`` (QCOW v1 writes its L2
    tables between the data clusters): read from the header and L1 table as the QCOW
    specification lays them out (big-endian; cluster_bits at 32, l2_bits at 33, the L1
    table's offset at 40)."""
    if o.variant.fmt != "qcow":
        return []
    blob = o.cut_file.read_bytes()
    cluster_bits, l2_bits = blob[32], blob[33]
    shift = cluster_bits + l2_bits
    l1_off = struct.unpack_from(">Q", blob, 40)[0]
    n = -(-o.size >> shift)  # L1 entries in use
    out = []
    for i in range(n):
        e = struct.unpack_from(">Q", blob, l1_off + 8 * i)[0]
        if e and e + (8 << l2_bits) > cut:
            out.append((i << shift, min(o.size, (i + 1) << shift)))
    return merge(out)


def surviving_data(o: Original, cut: int) -> list[tuple[int, int]]:
    """Guest ranges of stored data whose host bytes are all before ``cut``."""
    out = []
    for g, n, h, hend, linear in o.places:
        if h is None or hend <= cut:
            out.append((g, g + n))
        elif linear and cut > h:
            out.append((g, g + cut - h))
    return merge(out)


def merge(rs):
    out: list[list[int]] = []
    for s, e in sorted(rs):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [tuple(x) for x in out]


def intersect(a, b):
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a, b):
    out = []
    for s, e in a:
        pos = s
        for bs, be in b:
            if be <= pos or bs >= e:
                continue
            if bs > pos:
                out.append((pos, bs))
            pos = max(pos, be)
        if pos < e:
            out.append((pos, e))
    return out


# --- the checks ---------------------------------------------------------------------------

TRUNCATION_WORDS = re.compile(
    r"truncat|past the end|end of the file|outside the file|cut short|file ends|ended early|"
    r"file is \d+ bytes|too short|missing|outside image",
    re.IGNORECASE,
)


def read_ranges(o: Original, damaged) -> list[tuple[int, int]]:
    """The guest ranges to compare: everything for a small disk; data and damage otherwise."""
    if o.size <= 64 * M:
        return [(0, o.size)]
    near = [(max(0, g - 4 * K), min(o.size, g + n + 4 * K)) for g, n, *_ in o.places]
    edges = [x for s, e in damaged for x in ((s, min(e, s + 64 * K)), (max(s, e - 64 * K), e))]
    return merge(near + edges + [(o.size - 64 * K, o.size)])


def compare_reads(o: Original, disk, damaged) -> None:
    """``disk`` (anything with ``read(offset, length)``) reads qemu's bytes outside
    ``damaged`` and zeros inside it."""
    with open(o.raw, "rb") as raw:
        for s, e in read_ranges(o, damaged):
            for pos in range(s, e, 16 * M):
                n = min(16 * M, e - pos)
                got = np.frombuffer(disk.read(pos, n), dtype=np.uint8)
                raw.seek(pos)
                want = np.frombuffer(raw.read(n), dtype=np.uint8)
                bad = np.zeros(n, dtype=bool)
                for ds, de in intersect([(pos, pos + n)], damaged):
                    bad[ds - pos : de - pos] = True
                assert not got[bad].any(), "damaged ranges must read as zeros"
                diff = np.flatnonzero((got != want) & ~bad)
                assert not len(diff), f"differs from qemu at {pos + int(diff[0]):#x}"


class RawFile:
    """A raw output file read like a disk, without vdinspect (so without the evidence
    fixture's sha256 of a 5 GiB sparse file); zeros past its end."""

    def __init__(self, path: Path):
        self.f = open(path, "rb")  # closed by __exit__

    def read(self, pos: int, n: int) -> bytes:
        self.f.seek(pos)
        return self.f.read(n).ljust(n, b"\0")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def damaged_of(disk) -> list[tuple[int, int]]:
    return merge((r.start, r.end) for r in disk.runs() if r.state == "damaged")


def run_cli(*argv) -> int:
    return cli.main([str(a) for a in argv])


def strict_view(o: Original, path: Path, cut_file: Path, cut: int) -> str:
    """Strict mode refuses the cut file naming it, or opens it and then refuses each lost
    range naming it (QEMU reads a short last cluster as zeros; strict mode does not invent
    bytes the file does not hold). Returns a summary."""
    try:
        disk = vdinspect.open(path)
    except VDInspectError as e:
        assert cut_file.name in str(e), e
        return f"refused: {type(e).__name__}"
    with disk:
        assert disk.top.format == o.variant.ours
        lost = lost_ranges(o, cut)
        if not lost:
            compare_reads(o, disk, [])
            return "opens, reads equal"
        for s, e in lost:
            with pytest.raises(VDInspectError, match=re.escape(cut_file.name)):
                disk.read(s, e - s)
    return "opens, refuses every lost range"


def salvage_view(o: Original, path: Path, cut_file: Path, cut: int, cut_name: str):
    """Salvage mode: (summary, damaged ranges, exact?) after checking its answers."""
    v = o.variant
    try:
        disk = vdinspect.open(path, strict=False)
    except VDInspectError as e:
        assert cut_name in v.salvage_may_refuse, f"salvage must open: {e}"
        assert cut_file.name in str(e), e
        return f"refused: {type(e).__name__}: {e.detail}", None, None
    with disk:
        assert disk.info()["format"] == v.ours
        lost = lost_ranges(o, cut)
        damaged = damaged_of(disk)
        assert not subtract(lost, damaged), f"lost {lost} not all damaged: {damaged}"
        want = merge(lost + lost_tables(o, cut))
        exact = damaged == want
        if cut_name not in ("header", "tables"):  # the mapping survived: exactly the loss
            assert exact, f"damaged {damaged} != lost {want}"
        # a lost table entry may have mapped nothing, but never data that survived
        assert not intersect(damaged, surviving_data(o, cut)) or cut_name in ("header", "tables")
        compare_reads(o, disk, damaged)
        rows = disk.check()
        if lost or cut_name == "footer":
            hits = rows[
                rows["message"].str.contains(TRUNCATION_WORDS)
                & rows["host_offset"].notna()
                & rows["structure"].str.len().gt(0)
            ]
            assert len(hits), rows.to_string()
    return "opens", damaged, exact


@needs_qemu
@pytest.mark.parametrize(
    "original, cut_name",
    [p.values for p in cases()],
    indirect=["original"],
    ids=[p.id for p in cases()],
)
def test_truncated(original, cut_name, tmp_path, capsys):
    o = original
    cut = o.cut_points[cut_name]
    path = cut_copy(o, cut, tmp_path)
    cut_file = tmp_path / o.cut_file.name
    if o.variant.name == "vhd-fixed":  # without its footer a fixed VHD is raw data
        return check_fixed_vhd(o, path, cut)
    strict_view(o, path, cut_file, cut)
    _, damaged, _ = salvage_view(o, path, cut_file, cut, cut_name)
    # the command line: no traceback; 0, or 1 with a one-line message naming the file
    if damaged is None:
        assert run_cli("info", "--salvage", path) == 1
        assert cut_file.name in capsys.readouterr().err
        return
    assert run_cli("info", "--salvage", path) == 0
    capsys.readouterr()
    assert run_cli("map", "--salvage", "--json", path) == 0
    rows = json.loads(capsys.readouterr().out)
    assert merge((r["start"], r["end"]) for r in rows if r["state"] == "damaged") == damaged
    out = tmp_path / "out.raw"
    assert run_cli("convert", "--salvage", path, out) == 0
    assert os.path.getsize(out) == o.size
    with RawFile(out) as f:
        compare_reads(o, f, damaged)


def check_fixed_vhd(o: Original, path: Path, cut: int) -> None:
    """A fixed VHD is raw data plus a 512-byte footer. Cut one byte short it is an old
    511-byte-footer VHD and reads whole; cut shorter it is raw data (by magic) reading as
    the data that is left, and asked for as VHD it is refused naming the file."""
    fsize = o.cut_file.stat().st_size
    if cut == fsize - 1:
        for strict in (True, False):
            with vdinspect.open(path, strict=strict) as disk:
                assert disk.info()["format"] == "vhd"
                compare_reads(o, disk, [])
        return
    for strict in (True, False):
        with pytest.raises(NotRecognized, match=re.escape(path.name)):
            vdinspect.open(path, format="vhd", strict=strict)
    with vdinspect.open(path, strict=False) as disk:
        assert disk.info()["format"] == "raw"
        n = min(cut, o.size)
        with open(o.raw, "rb") as raw:
            assert disk.read(0, n) == raw.read(n)


# --- regressions: one per defect these cuts found ----------------------------------------


def _strict_refuses(path: Path, words: str, start: int, length: int) -> None:
    with vdinspect.open(path) as disk, pytest.raises(VDInspectError, match=words):
        disk.read(start, length)


def _salvage_row(path: Path, structure: str, words: str) -> pd.Series:
    with vdinspect.open(path, strict=False) as disk:
        disk.allocation()
        rows = disk.check()
    hit = rows[(rows["structure"] == structure) & rows["message"].str.contains(words)]
    assert len(hit) and hit["host_offset"].notna().all(), rows.to_string()
    return hit.iloc[0]


def reg_qcow2_cluster_tail(o: Original, path: Path, cut: int) -> None:
    """qcow2._runs: the missing tail of a data cluster cut by the end of the file read as
    zeros (strict and salvage alike)."""
    ((s, e),) = lost_ranges(o, cut)
    _strict_refuses(path, "cut short by the end of the file", s, e - s)
    row = _salvage_row(path, "data cluster", "cut short")
    assert row["host_offset"] == cut - cut % (64 * K)


def reg_qcow2_cut_l2_table(o: Original, path: Path, cut: int) -> None:
    """qcow2._runs/_decode_l2: an L2 table cut short made its whole span damaged in salvage
    mode, though the entries the disk needs were in the file."""
    with vdinspect.open(path, strict=False) as disk:
        assert damaged_of(disk) == lost_ranges(o, cut)
    _salvage_row(path, "L2 table", "cut short by the end of the file")


def reg_qcow_partial_cluster(o: Original, path: Path, cut: int) -> None:
    """qcow._table_runs: a cluster cut by the end of the file was damaged whole, though its
    first bytes are in the file."""
    s = next(g + cut - h for g, n, h, he, _ in o.places if h is not None and h < cut < he)
    with vdinspect.open(path, strict=False) as disk:
        before, after = disk.runs(s - 1, 2)
        assert (before.state, before.host_offset + 1, after.state) == ("data", cut, "damaged")


def reg_vhd_partial_sector(o: Original, path: Path, cut: int) -> None:
    """vhd._block_runs: the sector the file ends in was damaged whole."""
    reg_qcow_partial_cluster(o, path, cut)


def reg_vhdx_block_tail(o: Original, path: Path, cut: int) -> None:
    """vhdx._data_run: the missing tail of a payload block read as zeros."""
    ((s, e),) = lost_ranges(o, cut)
    _strict_refuses(path, "cut short", s, e - s)
    _salvage_row(path, "payload block", "past the end of the file")


def reg_vhdx_region_cut(o: Original, path: Path, cut: int) -> None:
    """vhdx._parse_region_tables/_read_bat: a file cut inside a region refused to open in
    salvage mode even when everything the disk needs survived."""
    with pytest.raises(VDInspectError, match="metadata region"):
        vdinspect.open(path)
    _salvage_row(path, "metadata region", "runs past the end of the file")


def reg_parallels_header(o: Original, path: Path, cut: int) -> None:
    """parallels.probe: a file cut inside its 64-byte header was taken for a raw disk."""
    for strict in (True, False):
        with pytest.raises(CorruptImage, match="shorter than the header"):
            vdinspect.open(path, strict=strict)


def reg_stream_grain_cut(o: Original, path: Path, cut: int) -> None:
    """vmdk sparse._decode: a compressed grain cut by the end of the file mapped as data
    (its reads gave zeros with a finding)."""
    grain = next((g, n) for g, n, h, he, _ in o.places if h < cut < he)
    with vdinspect.open(path, strict=False) as disk:
        assert [r.state for r in disk.runs(*grain)] == ["damaged"]
    _salvage_row(path, "grain table", "compressed grain .* runs past the end of the file")


def reg_stream_no_eos(o: Original, path: Path, cut: int) -> None:
    """vmdk sparse.walk_markers: a stream without its end-of-stream marker was not reported."""
    with vdinspect.open(path, strict=False) as disk:
        rows = disk.check()
    hit = rows[(rows["structure"] == "stream") & rows["message"].str.contains("end-of-stream")]
    assert list(hit["host_offset"]) == [cut]


def reg_split_extent_header(o: Original, path: Path, cut: int) -> None:
    """vmdk image._open_extent: one extent file cut inside its header made salvage mode
    refuse the whole disk; its range is damaged now and the other extents read."""
    with vdinspect.open(path, strict=False) as disk:
        damaged = damaged_of(disk)
        start, end, _ = _extent_ranges(o.path)[1]
        assert damaged == [(start, end)]
    _salvage_row(path, "sparse header", "extent 1 cannot be read")


REGRESSIONS = [
    ("qcow2", "short1", reg_qcow2_cluster_tail),
    ("qcow2", "tables", reg_qcow2_cut_l2_table),
    ("qcow", "data", reg_qcow_partial_cluster),
    ("vhd-dynamic", "data", reg_vhd_partial_sector),
    ("vhdx", "short1", reg_vhdx_block_tail),
    ("vhdx", "metadata", reg_vhdx_region_cut),
    ("parallels", "header", reg_parallels_header),
    ("vmdk-stream", "data", reg_stream_grain_cut),
    ("vmdk-stream", "footer", reg_stream_no_eos),
    ("vmdk-2gb", "header", reg_split_extent_header),
]


@needs_qemu
@pytest.mark.parametrize(
    "original, cut_name, check",
    REGRESSIONS,
    indirect=["original"],
    ids=[f"{c.__name__[4:]}" for _, _, c in REGRESSIONS],
)
def test_regression(original, cut_name, check, tmp_path):
    cut = original.cut_points[cut_name]
    check(original, cut_copy(original, cut, tmp_path), cut)


# --- a VMDK whose descriptor file is lost -------------------------------------------------


def _without_descriptor(o: Original, dest: Path) -> list[Path]:
    """Copies of the original's extent files (not its descriptor) in ``dest``, in order."""
    names = [name for _, _, name in _extent_ranges(o.path)]
    for n in names:
        shutil.copyfile(o.path.parent / n, dest / n)
    return [dest / n for n in names]


class _Shifted:
    """The original disk seen from ``start``: to compare one extent with its slice."""

    def __init__(self, o: Original, start: int, end: int):
        self.places = [
            (g - start, n, h, he, lin) for g, n, h, he, lin in o.places if start <= g < end
        ]
        self.raw, self.size, self.start = o.raw, end - start, start


def compare_slice(o: Original, disk, start: int) -> None:
    """``disk`` reads the original's guest bytes from ``start`` on (qemu's convert)."""
    view = _Shifted(o, start, start + disk.size)
    with open(o.raw, "rb") as raw:
        for s, e in read_ranges(view, []):
            raw.seek(start + s)
            assert disk.read(s, e - s) == raw.read(e - s), f"differs in {s:#x}..{e:#x}"


def _qemu_reads_descriptor(o: Original, text: str, dest: Path) -> None:
    """QEMU reads the synthesised descriptor (written to a scratch copy) as the original."""
    desc = dest / "qemu-check.vmdk"
    desc.write_text(text)
    out = dest / "qemu-check.raw"
    qemu_img("convert", "-f", "vmdk", "-O", "raw", str(desc), str(out))
    with RawFile(out) as f:
        compare_reads(o, f, [])


@needs_qemu
@pytest.mark.parametrize("original", ["vmdk-2gb"], indirect=True)
def test_split_sparse_extents_without_descriptor(original, tmp_path):
    """Each -s00K extent opens alone (QEMU writes an empty embedded descriptor region into
    them) with an info row saying what it stands for; all of them reassemble through a
    synthesised descriptor that QEMU reads as the original too."""
    o = original
    paths = _without_descriptor(o, tmp_path)
    spans = _extent_ranges(o.path)
    assert len(paths) == 3
    for k, (p, (start, end, _)) in enumerate(zip(paths, spans)):
        head = p.read_bytes()[: 64 * K]
        doff, dsize = struct.unpack_from("<QQ", head, 28)  # descriptorOffset, descriptorSize
        assert doff and not head[doff * 512 : (doff + dsize) * 512].strip(b"\0")  # empty
        with vdinspect.open(p) as disk:
            info = disk.info()
            assert (info["format"], info["virtual_size"]) == ("vmdk", end - start)
            assert info["descriptor"] == "none (extent opened alone)"
            note = disk.check()
            note = note[note["structure"] == "descriptor"]["message"].iloc[0]
            assert note.startswith("descriptor lost") and f"suggests k = {k}" in note
            assert f"[{k * (end - start):#x}, {(k + 1) * (end - start):#x})" in note
            compare_slice(o, disk, start)
            data = merge((r.start + start, r.end + start) for r in disk.runs() if r.state == "data")
            assert data == merge((g, g + n) for g, n, *_ in o.places if start <= g < end)
    text = vmdk.synthesize_descriptor(paths)
    lines = [ln for ln in text.splitlines() if ln.startswith("RW ")]
    assert lines == [f'RW {(e - s) // 512} SPARSE "{n}"' for s, e, n in spans]
    assert 'createType="twoGbMaxExtentSparse"' in text
    with vdinspect.open_vmdk_extents(paths) as disk:
        assert disk.size == o.size and disk.info()["descriptor"] == "synthesised (in memory)"
        compare_reads(o, disk, [])
        assert merge((r.start, r.end) for r in disk.runs() if r.state == "data") == merge(
            (g, g + n) for g, n, *_ in o.places
        )
        assert disk.check().empty
    img = vmdk.open_descriptor_text(text, tmp_path)
    assert img.size == o.size and img.read(0, 64 * K) == disk_bytes(o, 0, 64 * K)
    img.close()
    # an extent lost too: its line kept by hand, salvage mode reads around it
    gone = vmdk.open_descriptor_text(text.replace(spans[1][2], "gone.vmdk"), tmp_path, strict=False)
    assert [(r.start, r.end) for r in gone.runs() if r.state == "damaged"] == [spans[1][:2]]
    gone.close()
    _qemu_reads_descriptor(o, text, tmp_path)
    # a gap or a wrong order would shift every later extent: refused
    for bad in ([paths[1], paths[0], paths[2]], [paths[0], paths[2]], paths[1:]):
        with pytest.raises(vdinspect.InvalidArgument, match="in order"):
            vmdk.synthesize_descriptor(bad)


def disk_bytes(o: Original, start: int, n: int) -> bytes:
    with open(o.raw, "rb") as f:
        f.seek(start)
        return f.read(n)


@needs_qemu
@pytest.mark.parametrize("original", ["vmdk-flat"], indirect=True)
def test_flat_extents_without_descriptor(original, tmp_path):
    """A flat extent without its descriptor is raw data: detected as raw (or opened with
    ``format="raw"``) it reads as the disk. A split flat set (the monolithicFlat file cut in
    two at a sector boundary, as twoGbMaxExtentFlat splits at 2 GiB) reassembles too."""
    o = original
    (flat,) = _without_descriptor(o, tmp_path)
    for fmt in (None, "raw"):
        with vdinspect.open(flat, format=fmt) as disk:
            assert disk.info()["format"] == "raw" and disk.size == o.size
            compare_reads(o, disk, [])
    with vdinspect.open_vmdk_extents([flat]) as disk:
        assert disk.info()["subformat"] == "monolithicFlat"
        compare_reads(o, disk, [])
    data = flat.read_bytes()
    split = tmp_path / "split"
    split.mkdir()
    parts = [split / "t-f001.vmdk", split / "t-f002.vmdk"]
    parts[0].write_bytes(data[: 9 * M + 512])  # inside the write at 9 MiB + 4 KiB
    parts[1].write_bytes(data[9 * M + 512 :])
    text = vmdk.synthesize_descriptor(parts)
    assert 'createType="twoGbMaxExtentFlat"' in text
    assert f'RW {(9 * M + 512) // 512} FLAT "t-f001.vmdk" 0' in text
    with vdinspect.open_vmdk_extents(parts) as disk:
        compare_reads(o, disk, [])
    _qemu_reads_descriptor(o, text, split)
