"""Carving (vdinspect.recovery.carve): files made by real writers are copied into FAT and
ext4 images made by mtools and mke2fs, deleted with mdel and debugfs, and must come back
with their exact sha256; PhotoRec, run on the same image, is the peer whose exact
recoveries we must match. free_ranges() is checked against The Sleuth Kit's blkls."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import pytest

import vdinspect
from vdinspect.io import MemorySource
from vdinspect.recovery.carve import carve_source

from ..carve_builder import has_zero_block, make_files, write_fake_headers
from ..conftest import have
from ..tools import dig_holes, run

needs_mtools = pytest.mark.skipif(not have("mkfs.vfat", "mcopy", "mdel"), reason="mtools")
needs_e2fs = pytest.mark.skipif(not have("mke2fs", "debugfs"), reason="e2fsprogs missing")


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def carved_hashes(folder: Path) -> dict[str, str]:
    return {sha(p.read_bytes()): p.name for p in folder.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    folder = tmp_path_factory.mktemp("carve_files") / "files"
    return folder, make_files(folder)


@pytest.fixture(scope="module")
def fat_image(tmp_path_factory, files) -> Path:
    """A FAT16 volume holding every file, then all of them deleted with mdel."""
    if not have("mkfs.vfat", "mcopy", "mdel"):
        pytest.skip("mtools missing")
    img = tmp_path_factory.mktemp("carve_fat") / "fat.img"
    run("mkfs.vfat", "-C", "-F", "16", img, 16384)
    folder, made = files
    run("mcopy", "-i", img, *[folder / n for n in sorted(made)], "::/")
    run("mdel", "-i", img, *[f"::/{n}" for n in sorted(made)])
    return img


def test_fat_free_space_carve_gives_every_deleted_file_back(fat_image, files, tmp_path):
    """Each deleted file is found, validated, and written with its exact sha256."""
    _folder, made = files
    fs = vdinspect.open(fat_image).filesystem()
    res = fs.carve(tmp_path / "out")
    df = res.frame()
    got = carved_hashes(tmp_path / "out")
    for name, content in made.items():
        assert sha(content) in got, f"{name} not carved exactly"
        row = df[df["offset"] == int(got[sha(content)].split(".")[0])].iloc[0]
        assert row["validated"] and row["length"] == len(content)
    types = set(df["type"])
    assert {"docx", "odt", "pdf", "mp4", "zip", "sqlite", "gz", "bz2", "xz", "wav"} <= types
    assert not res.report.skipped and not res.report.incomplete


def test_free_ranges_agree_with_blkls(fat_image, tmp_path):
    """The free bytes are the unallocated data units The Sleuth Kit's blkls writes."""
    if not have("blkls"):
        pytest.skip("blkls missing")
    fs = vdinspect.open(fat_image).filesystem()
    ours = sum(n for _o, n in fs.free_ranges())
    assert ours == len(run("blkls", fat_image, binary=True))


@needs_e2fs
def test_ext4_deleted_files_carved(files, tmp_path):
    """mke2fs -d copies the files in; debugfs rm deletes them; carving finds them (files
    with a zero block are left out: mke2fs stores those blocks as holes)."""
    folder, made = files
    img = tmp_path / "ext.img"
    run("mke2fs", "-q", "-t", "ext4", "-b", "4096", "-d", folder, img, "16M")
    for n in made:
        run("debugfs", "-w", "-R", f"rm {n}", img)
    fs = vdinspect.open(img).filesystem()
    if have("blkls"):
        assert sum(n for _o, n in fs.free_ranges()) == len(run("blkls", img, binary=True))
    fs.carve(tmp_path / "out")
    got = carved_hashes(tmp_path / "out")
    for name, content in made.items():
        if not has_zero_block(content):
            assert sha(content) in got, f"{name} not carved exactly"


@needs_mtools
def test_fragmented_file_reassembled_from_free_space(tmp_path, files):
    """A file split around a live one (mtools takes the first free cluster) reads whole
    from the free ranges back to back, and is marked fragmented."""
    folder, made = files
    img = tmp_path / "frag.img"
    run("mkfs.vfat", "-C", "-F", "16", "-s", "1", img, 8192)
    gap = tmp_path / "gap.bin"
    keep = tmp_path / "keep.bin"
    gap.write_bytes(os.urandom(512))
    keep.write_bytes(os.urandom(512))
    run("mcopy", "-i", img, gap, keep, "::/")
    run("mdel", "-i", img, "::/gap.bin")
    run("mcopy", "-i", img, folder / "b.png", "::/")
    run("mdel", "-i", img, "::/b.png")
    fs = vdinspect.open(img).filesystem()
    res = fs.carve(tmp_path / "out", types=["png"])
    rows = res.frame()
    got = carved_hashes(tmp_path / "out")
    assert sha(made["b.png"]) in got
    row = rows[rows["validated"]].iloc[0]
    assert bool(row["fragmented"]) is True


def test_photorec_exact_recoveries_are_ours_too(fat_image, files, tmp_path):
    """Every original file PhotoRec recovers byte-exact from the same free space we recover
    byte-exact too (its other outputs, cut at a block end, match no original)."""
    if not have("photorec"):
        pytest.skip("photorec missing (apt-get install testdisk)")
    out = tmp_path / "pr"
    out.mkdir()
    subprocess.run(["photorec", "/log", "/d", str(out / "r"), "/cmd", str(fat_image),
                    "partition_none,options,paranoid,fileopt,everything,enable,freespace,"
                    "search"], cwd=tmp_path, capture_output=True, timeout=300)
    originals = {sha(c) for c in files[1].values()}
    theirs = {sha(p.read_bytes()) for p in out.glob("r.*/*") if p.suffix != ".xml"}
    assert theirs & originals, "PhotoRec recovered no original exactly"
    vdinspect.open(fat_image).filesystem().carve(tmp_path / "ours")
    ours = set(carved_hashes(tmp_path / "ours"))
    assert theirs & originals <= ours
    assert len(ours & originals) == len(originals)


def test_disk_carve_reads_only_allocated_runs(tmp_path, files):
    """A sparse qcow2 of 64 GiB holding a few files: the scan reads only what is stored."""
    if not have("qemu-img", "qemu-io"):
        pytest.skip("qemu-img missing")
    _folder, made = files
    img = tmp_path / "big.qcow2"
    run("qemu-img", "create", "-f", "qcow2", img, "64G")
    blob = tmp_path / "blob"
    blob.write_bytes(made["b.png"] + bytes(-len(made["b.png"]) % 512))
    at = 40 << 30
    run("qemu-io", "-f", "qcow2", "-c", f"write -s {blob} {at} {blob.stat().st_size}", img)
    disk = vdinspect.open(img)
    seen = []
    res = disk.carve(progress=lambda done, total: seen.append(total))
    df = res.frame()
    assert list(df["offset"]) == [at] and bool(df["validated"].iloc[0])
    assert seen and seen[-1] <= 1 << 20  # the searched bytes: the stored clusters only
    assert df["fragmented"].isna().all()


@contextlib.contextmanager
def peak_under(limit: int):
    """Fail if the body's traced allocations peak over ``limit`` bytes."""
    tracemalloc.start()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < limit, f"{peak >> 20} MB allocated at the peak"


def test_hostile_jpeg_and_zip_headers_stay_bounded(tmp_path):
    """A disk full of JPEG starts and fake ZIP local headers: rows are capped, the rest is
    a finding, every candidate is examined in one bounded pass (no quadratic reads), and
    memory stays within the fuzzers' bound."""
    img = tmp_path / "soi.raw"
    soi = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xda\x00\x02"
    write_fake_headers(img, 2 << 20, soi)
    with peak_under(64 << 20):
        res = vdinspect.open(img).carve(max_per_type=100)
    df = res.frame()
    assert len(df) == 100 and not df["validated"].any()
    messages = res.check()["message"]
    assert messages.str.contains("more jpg candidates not shown").any()
    assert not messages.str.contains("not examined").any()
    lfh = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(8) + b"\x00\x01\x00\x00" + bytes(4) \
        + b"\x01\x00\x00\x00x"
    zimg = tmp_path / "zip.raw"
    write_fake_headers(zimg, 2 << 20, lfh)
    src = vdinspect.open(zimg)
    with peak_under(64 << 20):
        res = src.carve(max_per_type=50)
    assert len(res.frame()) == 50
    messages = res.check()["message"]
    assert messages.str.contains("not shown").any()
    # every candidate was examined within the validators' read budget (a small multiple
    # of the disk): the end-of-central-directory search is shared, not repeated
    assert not messages.str.contains("not examined").any()


def test_truncated_and_corrupt_files_are_listed_unvalidated():
    """A PNG with a broken CRC and a JPEG cut before EOI: rows, not validated, with notes."""
    import random

    from ..carve_builder import png_from_spec

    png = bytearray(png_from_spec(40, 30, random.Random(2)))
    png[60] ^= 0xFF
    jpg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(100)
    data = bytes(png) + bytes(-len(png) % 512) + jpg + bytes(-len(jpg) % 512)
    df = carve_source(MemorySource(data)).frame()
    assert list(df["type"]) == ["png", "jpg"]
    assert not df["validated"].any()
    assert "CRC mismatch" in df["note"].iloc[0]


def test_cli_carve_json_and_exit_status(fat_image, tmp_path):
    """``vdinspect carve --json --part 0 IMAGE DEST``: rows with the frame's columns and
    the written file; exit 0 when everything validated and was written."""
    from vdinspect.cli import main

    out = tmp_path / "cli.json"
    dest = tmp_path / "dest"
    with open(out, "w") as f:
        import contextlib

        with contextlib.redirect_stdout(f):
            rc = main(["carve", "--json", "--part", "0", str(fat_image), str(dest)])
    rows = json.loads(out.read_text())
    assert rows and all(Path(r["file"]).is_file() for r in rows)
    assert list(rows[0])[:6] == ["offset", "length", "type", "validated", "fragmented", "note"]
    assert rc == (0 if all(r["validated"] for r in rows) else 1)
    for r in rows:
        assert Path(r["file"]).stat().st_size == r["length"]
        assert os.path.dirname(r["file"]) == os.path.realpath(dest)


def test_unknown_type_is_a_bad_call(fat_image):
    with pytest.raises(vdinspect.errors.InvalidArgument):
        vdinspect.open(fat_image).carve(types=["nope"])
    assert shutil.which("python3")


@pytest.mark.parametrize("kind", ["ntfs", "exfat"])
def test_free_ranges_ntfs_exfat_agree_with_blkls(kind, files, tmp_path):
    """NTFS ($Bitmap, files copied in with ntfscp) and exFAT (allocation bitmap): the free
    bytes equal what blkls writes as unallocated."""
    tool = {"ntfs": "mkntfs", "exfat": "mkfs.exfat"}[kind]
    if not have(tool, "blkls"):
        pytest.skip(f"{tool} or blkls missing")
    img = tmp_path / f"{kind}.img"
    with open(img, "wb") as f:
        f.truncate(32 << 20)
    if kind == "ntfs":
        run("mkntfs", "-q", "-F", "-f", img)
        if have("ntfscp"):
            for name in ("a.jpg", "e.sqlite", "j.wav"):
                if name in files[1]:
                    run("ntfscp", "-f", img, files[0] / name, name)
    else:
        run("mkfs.exfat", img)
    fs = vdinspect.open(img).filesystem()
    ranges = fs.free_ranges()
    assert all(a[0] + a[1] < b[0] for a, b in zip(ranges, ranges[1:]))
    assert sum(n for _o, n in ranges) == len(run("blkls", img, binary=True))


def test_time_budget_stop_is_a_finding_and_exit_1(fat_image, tmp_path):
    """Stopping early is never silent: a finding, and the CLI exits 1."""
    from vdinspect.cli import main

    res = vdinspect.open(fat_image).carve(budget=0)
    assert res.check()["message"].str.contains("time budget").any()
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["carve", "--budget", "0", str(fat_image)]) == 1


def test_mutated_files_never_crash_the_validators(files):
    """Every test file with bytes flipped, cut or spliced: candidates or nothing, never an
    exception other than VDInspectError, and no row longer than what is there."""
    import random

    rng = random.Random(7)
    for name, content in sorted(files[1].items()):
        for _ in range(8):
            data = bytearray(content[:rng.randrange(1, len(content) + 1)])
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.3:
                cut = rng.randrange(len(data))
                data[cut:cut] = rng.randbytes(rng.randrange(1, 600))
            data += bytes(-len(data) % 512)
            rows = carve_source(MemorySource(bytes(data))).rows
            assert all(0 < r["length"] <= len(data) - r["offset"] for r in rows), name


def test_a_driver_without_free_ranges_searches_the_whole_volume(fat_image):
    """The protocol's default: the whole volume, and a finding saying so."""
    from vdinspect.filesystems.base import FileSystem

    fs = vdinspect.open(fat_image).filesystem()
    assert FileSystem.free_ranges(fs) == [(0, fs.source.size)]
    assert any("whole volume" in f["message"] for f in fs.findings)


def test_foremost_exact_recoveries_are_ours_too(fat_image, files, tmp_path):
    """foremost (sector-aligned headers, as we search) on the whole image: every original
    it writes byte-exact, disk.carve() writes too."""
    if not have("foremost"):
        pytest.skip("foremost missing (apt-get install foremost)")
    out = tmp_path / "fm"
    subprocess.run(["foremost", "-q", "-t", "all", "-i", str(fat_image), "-o", str(out)],
                   capture_output=True, timeout=300)
    originals = {sha(c) for c in files[1].values()}
    theirs = {sha(p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    vdinspect.open(fat_image).carve(tmp_path / "ours")
    ours = set(carved_hashes(tmp_path / "ours"))
    assert theirs & originals <= ours
    assert originals <= ours


def test_virtual_disk_headers_found_in_a_host_disk(tmp_path):
    """qemu-img writes a qcow2, a dynamic VHD, a sparse VMDK and a VDI; copied into a raw
    host disk at sector offsets, each header is found and named (extent: the image scan)."""
    if not have("qemu-img"):
        pytest.skip("qemu-img missing")
    host = bytearray(4 << 20)
    at = {}
    for i, (fmt, kind, opts) in enumerate([("qcow2", "qcow2", []), ("vpc", "vhd", []),
                                           ("vmdk", "vmdk", []), ("vdi", "vdi", [])]):
        img = tmp_path / f"d.{kind}"
        run("qemu-img", "create", "-f", fmt, *opts, img, "64M")
        data = img.read_bytes()[:65536]
        pos = (i + 1) << 20
        host[pos : pos + len(data)] = data
        at[pos] = kind
    raw = tmp_path / "host.raw"
    raw.write_bytes(bytes(host))
    df = vdinspect.open(raw, format="raw").carve(types=list(at.values())).frame()
    found = dict(zip(df["offset"], df["type"]))
    assert found == at
    assert not df["validated"].any() and df["note"].str.contains("virtual").all()


def test_cli_carve_table(fat_image):
    """The table for people: a heading, one line a file, the summary; exit 0 when all
    validated."""
    import contextlib
    import io

    from vdinspect.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["carve", "--bytes", "--part", "0", "--types", "png,jpg", str(fat_image)])
    lines = buf.getvalue().splitlines()
    assert lines[0].split() == ["OFFSET", "LENGTH", "TYPE", "VALID", "FRAG", "NOTE"]
    assert {ln.split()[2] for ln in lines[1:-1]} <= {"png", "jpg"} and len(lines) >= 3
    assert "validated" in lines[-1] and rc == 0


def test_xfs_free_ranges_agree_with_xfs_db(tmp_path):
    """XFS: the free space btrees' extents; xfs_db's freesp counts the same blocks plus
    each AG's free list (AGFL, blocks kept for the btrees' own growth)."""
    if not have("mkfs.xfs", "xfs_db"):
        pytest.skip("xfsprogs missing")
    img = tmp_path / "x.img"
    with open(img, "wb") as f:
        f.truncate(320 << 20)
    run("mkfs.xfs", "-q", img)
    dig_holes(img)  # mkfs.xfs writes some of its zeros in full
    fs = vdinspect.open(img).filesystem()
    ours = sum(n for _o, n in fs.free_ranges()) // fs.block_size
    total = int(run("xfs_db", "-r", "-c", "freesp -s", img).split("total free blocks")[1]
                .split()[0])
    agfl = 0
    for agno in range(fs.info()["ag_count"]):
        out = run("xfs_db", "-r", "-c", f"agf {agno}", "-c", "print flcount", img)
        agfl += int(out.split("=")[1])
    assert ours + agfl == total


def test_plot_marks_each_carved_file(fat_image):
    """plot(ax=None) returns the Axes: the searched band, then one mark per file."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = vdinspect.open(fat_image).filesystem().carve()
    fig, ax = plt.subplots()
    assert res.plot(ax=ax) is ax
    assert len(ax.collections) == 1 + len(res)
    marks = [c.get_paths()[0].get_extents().x0 for c in ax.collections[1:]]
    assert marks == pytest.approx([r["offset"] for r in res.rows])
    plt.close(fig)


def _merge(ranges):
    out = []
    for o, n in sorted(ranges):
        if n <= 0:
            continue
        if out and out[-1][0] + out[-1][1] >= o:
            out[-1] = (out[-1][0], max(out[-1][1], o + n - out[-1][0]))
        else:
            out.append((o, n))
    return out


def test_btrfs_free_ranges_agree_with_dump_tree(files, tmp_path):
    """Btrfs (mkfs.btrfs --rootdir: data single, metadata DUP): the free ranges are what
    ``btrfs inspect-internal dump-tree`` says — the data chunks' stretches no EXTENT_ITEM
    covers, placed by the chunk's stripe, and the device space no chunk stripe uses."""
    import re

    if not have("mkfs.btrfs", "btrfs"):
        pytest.skip("btrfs-progs missing")
    img = tmp_path / "b.img"
    with open(img, "wb") as f:
        f.truncate(200 << 20)
    run("mkfs.btrfs", "-q", "--rootdir", files[0], img)
    chunks = run("btrfs", "inspect-internal", "dump-tree", "-t", "chunk", img)
    extents = run("btrfs", "inspect-internal", "dump-tree", "-t", "extent", img)
    used = sorted((int(a), int(a) + int(n)) for a, n in
                  re.findall(r"key \((\d+) EXTENT_ITEM (\d+)\)", extents))
    expected, stripes = [], []
    for block in re.split(r"\n\titem \d+ key ", chunks):
        head = re.match(r"\(FIRST_CHUNK_TREE CHUNK_ITEM (\d+)\).*?length (\d+) owner \d+ "
                        r"stripe_len \d+ type (\S+)", block, re.S)
        if not head:
            continue
        logical, length, kind = int(head[1]), int(head[2]), head[3]
        assert kind.endswith(("|single", "|DUP")), kind  # what mkfs.btrfs makes alone
        offs = [int(o) for o in re.findall(r"stripe \d+ devid 1 offset (\d+)", block)]
        stripes += [(o, length) for o in offs]
        if kind.startswith("DATA"):
            pos, end = logical, logical + length
            for a, b in used:
                if b <= pos or a >= end:
                    continue
                expected += [(o + pos - logical, a - pos) for o in offs]
                pos = b
            expected += [(o + pos - logical, end - pos) for o in offs]
    pos = 1 << 20
    for o, n in sorted(stripes) + [(img.stat().st_size, 0)]:
        expected.append((pos, o - pos))
        pos = max(pos, o + n)
    fs = vdinspect.open(img).filesystem()
    assert fs.free_ranges() == _merge(expected)


def test_types_name_signatures_or_the_types_they_find(fat_image):
    """types=["docx"] searches ZIP archives and keeps the docx; "zip" keeps the family."""
    fs = vdinspect.open(fat_image).filesystem()
    assert set(fs.carve(types=["docx"]).frame()["type"]) == {"docx"}
    assert {"zip", "docx", "odt"} <= set(fs.carve(types="zip").frame()["type"])
    assert set(fs.carve(types=["mov"]).frame()["type"]) == {"mov"}


def test_zip64_end_records_are_followed(monkeypatch):
    """Python's zipfile writes the zip64 end record and locator once an archive has more
    entries than ZIP_FILECOUNT_LIMIT (lowered here, so three entries do): the carved
    length is the whole archive and it validates."""
    import io
    import zipfile

    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        for i in range(3):
            z.writestr(f"f{i}.txt", f"file {i} " * 100)
    data = b.getvalue()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    rows = carve_source(MemorySource(data + bytes(-len(data) % 512) + data)).rows
    assert [(r["offset"], r["length"], r["validated"]) for r in rows] == [
        (0, len(data), True), (len(data) + (-len(data) % 512), len(data), True)]


@needs_mtools
def test_file_wrapping_past_the_end_of_free_space(files, tmp_path):
    """mtools goes on from FAT32's next-free hint and wraps to the volume's start: a file
    begun in the last free clusters ends in the first ones. The free space read again
    after its end gives it back whole (fragmented)."""
    import re

    folder, made = files
    img = tmp_path / "wrap.img"
    run("mkfs.vfat", "-C", "-F", "32", "-s", "1", img, 40 * 1024)
    free = int(re.search(r"([\d ]+) bytes free", run("mdir", "-i", img, "::/"))[1]
               .replace(" ", ""))
    noise = tmp_path / "noise.bin"
    noise.write_bytes(os.urandom(free - 20 * 1024))
    run("mcopy", "-i", img, noise, "::/")
    run("mdel", "-i", img, "::/noise.bin")
    run("mcopy", "-i", img, folder / "b.png", "::/")
    run("mdel", "-i", img, "::/b.png")
    fs = vdinspect.open(img).filesystem()
    res = fs.carve(tmp_path / "out", types=["png"])
    assert sha(made["b.png"]) in carved_hashes(tmp_path / "out")
    row = res.frame().iloc[0]
    assert row["validated"] and bool(row["fragmented"])


def test_free_space_pieces_read_and_map_damage():
    """The free ranges back to back read the volume's bytes, and a damaged range of the
    volume shows at its place in them (extraction reports it, nothing silently zero)."""
    from vdinspect.recovery.carve import pieces_source

    class Damaged(MemorySource):
        def _damage_pairs(self, start, end):
            return [(max(start, 1000), min(end, 1024))] if start < 1024 and end > 1000 else []

    vol = Damaged(bytes(range(256)) * 32)
    src = pieces_source(vol, [(0, 512, 1024), (1024, 4096, 512)], "free")
    assert src.size == 1536
    assert src.read(1000, 48) == vol.read(1512, 24) + vol.read(4096, 24)
    assert src.damaged_ranges() == [(488, 24)]
