"""Files whose data lies in damaged ranges: the ``damaged`` column, ``damaged_ranges`` and
extraction reports (issue 10, salvage of filesystems).

A partitioned disk (FAT16, ext4, NTFS made by mkfs.vfat/mcopy, mke2fs -d and
mkntfs/ntfscp) is converted to a QCOW2 with 4 KiB clusters; chosen guest clusters are then
broken by pointing their L2 entries past the end of the file. Where each file lives comes
from The Sleuth Kit (``istat`` block/sector/cluster lists), so the damaged byte ranges each
file should report are computed independently of vdinspect.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import struct
from pathlib import Path

import pytest

import vdinspect
from tests import tools
from vdinspect.errors import VDInspectError
from vdinspect.io import Concat, MemorySource, Slice, Zero

MIB = 1 << 20
CLUSTER = 4096
PART_SECTORS = 16 * MIB // 512
PARTS = {1: ("fat16", 2048), 2: ("ext4", 2048 + PART_SECTORS), 3: ("ntfs", 2048 + 2 * PART_SECTORS),
         4: ("exfat", 2048 + 3 * PART_SECTORS)}
FILES = {"big.bin": 300_000, "mid.bin": 60_000, "small.txt": 100, "other.bin": 123_457}

TOOLS = ("qemu-img", "sfdisk", "mkfs.vfat", "mcopy", "mke2fs", "mkntfs", "ntfscp", "mkfs.exfat",
         "istat", "fls", "fsstat")
pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in TOOLS),
                                reason="needs qemu-img, sfdisk, dosfstools, mtools, e2fsprogs, "
                                "ntfs-3g and sleuthkit")


def run(*cmd, **kw):
    """The shared :func:`tests.tools.run` with this module's defaults (timeout=120)."""
    return tools.run(*cmd, **{'timeout': 120, **kw})


def file_data(name: str) -> bytes:
    rnd = random.Random(name)
    return bytes(rnd.getrandbits(8) | 1 for _ in range(FILES[name]))  # no zero bytes


def make_fs(kind: str, path: Path, src: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(16 * MIB)
    if kind == "fat16":
        run("mkfs.vfat", "-F", "16", path)
        for name in FILES:
            run("mcopy", "-i", path, src / name, f"::/{name}")
    elif kind == "ext4":
        run("mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", src, path)
    elif kind == "exfat":  # mkfs.exfat, then the test builder writes the files (big.bin
        # fragmented, so its content is a Concat of slices of the volume)
        from tests.fs_builder import ExfatImage

        run("mkfs.exfat", "-c", "4096", path)
        img = ExfatImage(path.read_bytes())
        for name in FILES:
            img.add(img.root, name, (src / name).read_bytes(), fragment=name == "big.bin")
        tools.write_sparse(path, img.buf)
    else:
        run("mkntfs", "-q", "-F", "-Q", "-c", "4096", path)
        for name in FILES:
            run("ntfscp", path, src / name, f"/{name}")


def block_list(raw: Path, kind: str, sector: int, inode: int) -> tuple[int, list[int]]:
    """(unit size, the file's units in order) from ``istat``: FAT sectors, ext blocks or
    NTFS clusters, all counted from the start of the filesystem."""
    if kind in ("fat16", "exfat"):
        unit = 512  # istat lists sectors (fsstat on exFAT never returns in TSK 4.12)
    else:
        fs = run("fsstat", "-o", sector, raw)
        unit = int(re.search(r"Cluster Size: (\d+)" if kind == "ntfs" else
                             r"Block Size: (\d+)", fs).group(1))
    out = run("istat", "-o", sector, raw, inode).splitlines()
    head = max(i for i, line in enumerate(out)
               if line.startswith(("Sectors:", "Direct Blocks:", "Type: $DATA")))
    units = [int(x) for line in out[head + 1:] for x in line.split() if x.isdigit()]
    return unit, units


def fls_inodes(raw: Path, sector: int) -> dict[str, int]:
    return {r["path"]: r["inode"] for r in tools.fls_lines(run("fls", "-o", sector, raw), strict=True)}


def break_clusters(qcow: Path, out: Path, clusters: list[int]) -> None:
    """A copy of ``qcow`` whose L2 entries for the guest ``clusters`` point past its end."""
    data = bytearray(qcow.read_bytes())
    cluster_bits = struct.unpack_from(">I", data, 20)[0]
    assert 1 << cluster_bits == CLUSTER
    l1_size, l1_off = struct.unpack_from(">IQ", data, 36)
    per_l2 = CLUSTER // 8
    beyond = (len(data) + 64 * MIB) // CLUSTER * CLUSTER
    for c in clusters:
        i1, i2 = divmod(c, per_l2)
        assert i1 < l1_size
        l2 = struct.unpack_from(">Q", data, l1_off + 8 * i1)[0] & 0x00FFFFFFFFFFFE00
        where = l2 + 8 * i2
        entry = struct.unpack_from(">Q", data, where)[0]
        assert entry & 0x00FFFFFFFFFFFE00, f"guest cluster {c} is not allocated"
        struct.pack_into(">Q", data, where, (1 << 63) | beyond)
        beyond += CLUSTER
    out.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def damaged_disk(tmp_path_factory):
    """(original raw, damaged qcow2, {part: {file: expected ranges}}, damaged clusters)."""
    tmp = tmp_path_factory.mktemp("damaged")
    src = tmp / "src"
    src.mkdir()
    for name in FILES:
        (src / name).write_bytes(file_data(name))
    raw = tmp / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate((2048 + 4 * PART_SECTORS + 2048) * 512)
    table = "label: dos\n" + "".join(
        f"start={s}, size={PART_SECTORS}, type={t}\n"
        for (_k, s), t in zip(PARTS.values(), ("6", "83", "7", "7")))
    run("sfdisk", "-q", raw, input=table)
    for _n, (kind, sector) in PARTS.items():
        part = tmp / f"{kind}.img"
        make_fs(kind, part, src)
        with open(raw, "r+b") as f:
            f.seek(sector * 512)
            f.write(part.read_bytes())
    tools.dig_holes(raw)
    qcow = tmp / "disk.qcow2"
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", f"cluster_size={CLUSTER}",
        raw, qcow)
    # break the cluster holding the middle of big.bin on every filesystem, and the first
    # cluster of mid.bin on ext4; every other file must come out whole
    layout: dict[int, dict[str, tuple[int, list[int]]]] = {}
    broken: set[int] = set()
    for n, (kind, sector) in PARTS.items():
        inodes = fls_inodes(raw, sector)
        layout[n] = {name: block_list(raw, kind, sector, inodes[name]) for name in FILES
                     if name != "small.txt" or kind != "ntfs"}  # NTFS keeps it resident
        targets = [("big.bin", 0.5)] + ([("mid.bin", 0.0)] if kind == "ext4" else [])
        for name, where in targets:
            unit, units = layout[n][name]
            k = int(len(units) * where)
            broken.add((sector * 512 + units[k] * unit) // CLUSTER)
    expected: dict[int, dict[str, list[tuple[int, int]]]] = {}
    for n, (_kind, sector) in PARTS.items():
        expected[n] = {}
        for name, (unit, units) in layout[n].items():
            ranges = []
            for i, u in enumerate(units):
                g = sector * 512 + u * unit
                for c in broken:
                    a, b = max(g, c * CLUSTER), min(g + unit, (c + 1) * CLUSTER)
                    if a < b:
                        lo, hi = i * unit + a - g, min(FILES[name], i * unit + b - g)
                        if lo < hi:
                            ranges.append((lo, hi - lo))
            expected[n][name] = _merge(ranges)
    bad = tmp / "bad.qcow2"
    break_clusters(qcow, bad, sorted(broken))
    return raw, bad, expected, sorted(broken)


def _merge(ranges):
    out: list[list[int]] = []
    for a, n in sorted(ranges):
        if out and a <= out[-1][0] + out[-1][1]:
            out[-1][1] = max(out[-1][1], a + n - out[-1][0])
        else:
            out.append([a, n])
    return [tuple(r) for r in out]


def test_allocation_shows_the_broken_clusters(damaged_disk):
    _raw, bad, _exp, broken = damaged_disk
    with vdinspect.open(bad, strict=False) as disk:
        runs = disk.allocation()
        dam = runs[runs.state == "damaged"]
        got = sorted(c for s, n in zip(dam.start, dam.length)
                     for c in range(s // CLUSTER, (s + n) // CLUSTER))
        assert got == broken
        assert disk.damaged_ranges() == [(c * CLUSTER, CLUSTER) for c in broken]


@pytest.mark.parametrize("part", sorted(PARTS))
def test_files_frame_and_ranges(damaged_disk, part):
    raw, bad, expected, _ = damaged_disk
    with vdinspect.open(bad, strict=False) as disk:
        fs = disk.filesystem(part)
        df = fs.files().set_index("path")
        assert df.columns.get_loc("damaged") == df.columns.get_loc("target") + 1
        assert any(expected[part].values())  # the test really damages this volume
        for name, ranges in expected[part].items():
            assert fs.damaged_ranges(f"/{name}") == ranges, name
            assert df.loc[f"/{name}", "damaged"] == sum(n for _a, n in ranges), name
            with fs.open(f"/{name}") as f:
                assert f.damaged_ranges() == ranges
                got = f.read()
            want = bytearray(file_data(name))
            for a, n in ranges:
                want[a:a + n] = bytes(n)
            assert got == bytes(want), name
        if part == 3:  # NTFS's resident small file: no clusters, never damaged
            assert df.loc["/small.txt", "damaged"] == 0
    # the same volume on the intact raw disk: no damage anywhere
    with vdinspect.open(raw) as disk:
        df = disk.filesystem(part).files()
        assert (df[df.kind == "file"].damaged == 0).all()
        assert df[df.kind == "dir"].damaged.isna().all()


def test_strict_mode_refuses_the_damaged_file(damaged_disk):
    _raw, bad, expected, _ = damaged_disk
    with vdinspect.open(bad) as disk:
        fs = disk.filesystem(2)
        with pytest.raises(VDInspectError):
            fs.read("/big.bin")
        assert fs.read("/other.bin") == file_data("other.bin")
        # the listing still works in strict mode, and says which bytes cannot be read
        # (there, reading them raises): the mapping errors are narrowed down to the entry
        df = fs.files().set_index("path")
        for name, ranges in expected[2].items():
            assert df.loc[f"/{name}", "damaged"] == sum(n for _a, n in ranges), name
            assert fs.damaged_ranges(f"/{name}") == ranges, name


@pytest.mark.parametrize("part", sorted(PARTS))
def test_extraction_reports_damaged_files(damaged_disk, tmp_path, part):
    _raw, bad, expected, _ = damaged_disk
    with vdinspect.open(bad, strict=False) as disk:
        rep = disk.filesystem(part).extract("/", tmp_path / "out")
    want_bad = {f"/{k}": v for k, v in expected[part].items() if v}
    assert {p: r for p, _h, r in rep.damaged} == want_bad
    assert "unreadable ranges" in rep.summary()
    for name in FILES:
        host = tmp_path / "out" / name
        want = bytearray(file_data(name))
        for a, n in expected[part].get(name, []):
            want[a:a + n] = bytes(n)
        assert host.read_bytes() == bytes(want), name


def test_cli_reports_damage(damaged_disk, tmp_path, capsysbinary):
    from vdinspect.cli import main

    _raw, bad, expected, _ = damaged_disk
    dest = tmp_path / "cli"
    assert main(["extract", "--salvage", "--part", "2", str(bad), "/", str(dest)]) == 1
    out = capsysbinary.readouterr().out.decode()
    lines = [line for line in out.splitlines() if line.startswith("damaged: ")]
    assert sorted(line.split(":")[1].strip() for line in lines) == ["/big.bin", "/mid.bin"]
    assert main(["extract", "--salvage", "--json", "--part", "2", str(bad), "/small.txt",
                 str(dest / "s")]) == 0
    rep = json.loads(capsysbinary.readouterr().out)
    assert rep["damaged"] == []
    assert main(["cat", "--salvage", "--part", "1", str(bad), "/big.bin"]) == 1
    assert b"could not read" in capsysbinary.readouterr().err
    assert main(["ls", "--salvage", "--part", "1", str(bad), "/"]) == 0
    listing = capsysbinary.readouterr().out.decode()
    assert "damaged" in listing.splitlines()[0]
    assert main(["ls", "--salvage", "--json", "--part", "3", str(bad), "/"]) == 0
    rows = {r["path"]: r for r in json.loads(capsysbinary.readouterr().out)}
    assert rows["/big.bin"]["damaged"] == sum(n for _a, n in expected[3]["big.bin"])
    assert rows["/mid.bin"]["damaged"] == 0


def test_missing_parent_is_damage_and_the_volume_says_so(tmp_path):
    """A child whose raw parent is gone: all but the cluster the child stores is damaged
    (from ``qemu-img map`` of the child before the parent went), and looking for files
    there fails with a VDInspectError, not a traceback."""
    base = tmp_path / "base.raw"
    make_fs("ext4", base, tmp_path)
    child = tmp_path / "child.qcow2"
    run("qemu-img", "create", "-f", "qcow2", "-b", base.name, "-F", "raw", child)
    run("qemu-io", "-f", "qcow2", "-c", "write -P 7 65536 65536", child)
    mapped = json.loads(run("qemu-img", "map", "--output=json", child))
    own = [(m["start"], m["length"]) for m in mapped if m["depth"] == 0 and m["data"]]
    os.unlink(base)
    with vdinspect.open(child, strict=False) as disk:
        assert disk.check().message.str.contains("missing").any()
        gaps, pos = [], 0
        for s, n in own:
            if s > pos:
                gaps.append((pos, s - pos))
            pos = s + n
        gaps.append((pos, disk.size - pos))
        assert disk.damaged_ranges() == gaps
        with pytest.raises(VDInspectError):
            disk.filesystem(None).files()


def test_sources_map_damage_through_slices_concats_and_stripes():
    """Each composing source maps its parent's damage into its own offsets."""
    from vdinspect.volumes.lvm2 import StripedSource

    class Damaged(MemorySource):
        def __init__(self, data, bad):
            super().__init__(data)
            self.bad = bad

        def _damage_pairs(self, start, end):
            return [(max(a, start), min(b, end)) for a, b in self.bad if a < end and b > start]

    d = Damaged(bytes(1000), [(100, 200), (900, 1000)])
    assert d.damaged_ranges() == [(100, 100), (900, 100)]
    assert Slice(d, 150, 800).damaged_ranges() == [(0, 50), (750, 50)]
    c = Concat([Zero(10), Slice(d, 150, 100), MemorySource(b"x" * 5), Slice(d, 950, 50)])
    assert c.damaged_ranges() == [(10, 50), (115, 50)]
    assert c.damaged_ranges(20, 100) == [(20, 40), (115, 5)]
    # two stripes of 100 bytes in chunks of 10: logical chunk 2k is stripe 0's chunk k
    s = StripedSource([Damaged(bytes(100), [(15, 25)]), Damaged(bytes(100), [])], 10, "s")
    assert s.damaged_ranges() == [(25, 5), (40, 5)]
    assert MemorySource(b"abc").damaged_ranges() == []


def test_browser_controller_shows_and_reports_damage(damaged_disk, tmp_path):
    from vdinspect.widgets.controller import BrowserController

    _raw, bad, expected, _ = damaged_disk
    with vdinspect.open(bad, strict=False) as disk:
        c = BrowserController(disk, part=2)
        assert c.preview("big.bin")["damaged"] == expected[2]["big.bin"]
        assert "damaged" not in c.preview("other.bin")
        c.select(["big.bin", "other.bin"])
        rep = c.extract(tmp_path / "sel")
        assert [(p, r) for p, _h, r in rep.damaged] == [("/big.bin", expected[2]["big.bin"])]


class _DamagedVolume(MemorySource):
    """A volume whose listed (start, end) byte ranges are damaged (built by the test)."""

    def __init__(self, size: int, bad: list[tuple[int, int]]) -> None:
        super().__init__(bytes(size))
        self.bad = bad

    def _damage_pairs(self, start, end):
        return [(max(a, start), min(b, end)) for a, b in self.bad if a < end and b > start]


def test_ntfs_streams_round_damage_to_what_they_decode():
    """A plain runlist maps damage cluster for cluster; an LZNT1 stream loses the whole
    compression unit a damaged cluster is in; a gap in the runlist is damaged too."""
    from vdinspect.filesystems.ntfs.runlist import Run, RunSource
    from vdinspect.filesystems.ntfs.stream import CompressedSource

    cs = 512
    vol = _DamagedVolume(64 * cs, [(5 * cs, 5 * cs + 1), (40 * cs, 41 * cs)])
    plain = RunSource(vol, [Run(0, 0, 16), Run(20, 32, 16)], cs, 36 * cs, name="plain")
    # clusters 16-19 are covered by no run (a damaged runlist); lcn 40 is vcn 28
    assert plain.damaged_ranges() == [(5 * cs, 1), (16 * cs, 4 * cs), (28 * cs, cs)]
    # two compression units of 16 clusters: unit 0 stored whole on lcn 0-15 (cluster 5 is
    # hit), unit 1 compressed into lcn 30-33 and then sparse (not hit)
    comp = CompressedSource(vol, [Run(0, 0, 16), Run(16, 30, 4), Run(20, None, 12)], cs, 16,
                            32 * cs, 32 * cs, "comp", fs=None)
    assert comp.damaged_ranges() == [(0, 16 * cs)]
    comp2 = CompressedSource(vol, [Run(0, 38, 4), Run(4, None, 12)], cs, 16, 16 * cs,
                             16 * cs, "comp2", fs=None)
    assert comp2.damaged_ranges() == [(0, 16 * cs)]  # lcn 40 is inside the compressed data
    sound = CompressedSource(vol, [Run(0, 50, 4), Run(4, None, 12)], cs, 16, 16 * cs,
                             16 * cs, "sound", fs=None)
    assert sound.damaged_ranges() == []


def test_wof_chunks_are_damaged_whole():
    """A WOF stream stored as is (each chunk's compressed size equals its size): damage in
    a chunk's bytes spoils that chunk; damage in the chunk table spoils all."""
    from vdinspect.filesystems.ntfs.wof import WofSource

    chunk = 4096
    table = struct.pack("<II", chunk, 2 * chunk)
    stream = table + bytes(range(256)) * (3 * chunk // 256)

    class Stream(MemorySource):
        bad: list = []

        def _damage_pairs(self, start, end):
            return [(max(a, start), min(b, end)) for a, b in self.bad if a < end and b > start]

    s = Stream(stream)
    s.bad = [(8 + chunk + 10, 8 + chunk + 11)]
    assert WofSource(s, 3 * chunk, 0).damaged_ranges() == [(chunk, chunk)]
    s.bad = [(4, 5)]
    assert WofSource(s, 3 * chunk, 0).damaged_ranges() == [(0, 3 * chunk)]


def test_ntfs_names_of_unusable_records_are_listed_and_reported(tmp_path):
    """A file whose MFT record is damaged (update sequence broken): ntfsls still names it
    from the directory index, and so do we — listed with a note, its read refused with
    CorruptImage naming the record, and extraction says it was skipped and why."""
    vol = tmp_path / "n.img"
    with open(vol, "wb") as f:
        f.truncate(16 * MIB)
    run("mkntfs", "-q", "-F", "-Q", vol)
    keep, lost = os.urandom(20_000), os.urandom(30_000)
    for name, data in (("keep.bin", keep), ("lost.bin", lost)):
        (tmp_path / name).write_bytes(data)
        run("ntfscp", vol, tmp_path / name, f"/{name}")
    ino = fls_inodes(vol, 0)["lost.bin"]
    img = bytearray(vol.read_bytes())
    cluster = struct.unpack_from("<H", img, 11)[0] * img[13]
    mft = struct.unpack_from("<Q", img, 0x30)[0] * cluster
    rec = mft + ino * 1024
    assert img[rec:rec + 4] == b"FILE"
    img[rec + 510] ^= 0xFF  # the first sector's update sequence no longer matches
    vol.write_bytes(bytes(img))
    assert "lost.bin" in run("ntfsls", vol).split()  # the index still names it
    fs = vdinspect.open(vol, format="raw", strict=False).filesystem()
    df = fs.files().set_index("path")
    assert df.loc["/lost.bin", "kind"] == "file" and df.loc["/lost.bin", "inode"] == ino
    assert "unusable" in df.loc["/lost.bin", "note"]
    with pytest.raises(VDInspectError, match=f"MFT record {ino}"):
        fs.read("/lost.bin")
    assert fs.read("/keep.bin") == keep
    rep = fs.extract("/", tmp_path / "out")
    why = dict(rep.skipped)
    assert "unusable" in why["/lost.bin"] and (tmp_path / "out" / "keep.bin").read_bytes() == keep
    assert not (tmp_path / "out" / "lost.bin").exists()
    assert any(f"record {ino}" in f["message"] for f in fs.check_rows())


def test_ext_bulk_prefilter_agrees_with_each_files_extents(tmp_path):
    """ext's files() skips building the content of files whose in-inode extents miss the
    damage; on 300 files with 12 broken clusters it must give, row for row, what each
    file's own extent map gives (fs.damaged(path)), and what istat's block lists give for
    a sample of the hit files."""
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(7)
    for i in range(300):
        (src / f"f{i:03d}.bin").write_bytes(rnd.randbytes(rnd.randrange(1, 20000)))
    part = tmp_path / "e.img"
    with open(part, "wb") as f:
        f.truncate(16 * MIB)
    run("mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", src, part)
    qcow = tmp_path / "e.qcow2"
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", f"cluster_size={CLUSTER}",
        part, qcow)
    inodes = fls_inodes(part, 0)
    hit_blocks = {}
    for name in ("f010.bin", "f100.bin", "f200.bin"):
        unit, units = block_list(part, "ext4", 0, inodes[name])
        hit_blocks[name] = units[len(units) // 2]
    others = [c * 37 % 4000 + 600 for c in range(9)]  # more clusters, wherever they fall
    broken = sorted(set(hit_blocks.values()) | set(others))
    allocated = json.loads(run("qemu-img", "map", "--output=json", qcow))
    data = {c for m in allocated if m["data"]
            for c in range(m["start"] // CLUSTER, (m["start"] + m["length"]) // CLUSTER)}
    broken = [c for c in broken if c in data]
    bad = tmp_path / "bad.qcow2"
    break_clusters(qcow, bad, broken)
    with vdinspect.open(bad, strict=False) as disk:
        fs = disk.filesystem()
        df = fs.files()
        exact = [fs.damaged(p) for p in df.path]
        got = df.damaged.astype(object).where(df.damaged.notna(), None).tolist()
        assert got == exact
        for name in hit_blocks:  # istat says the file's middle block is a broken cluster
            assert df.set_index("path").loc[f"/{name}", "damaged"] > 0, name
