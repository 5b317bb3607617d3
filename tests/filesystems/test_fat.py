"""FAT12/16/32 against mkfs.fat + mtools images, The Sleuth Kit and spec-built variants.

Oracles: ``fls -r -p`` (names, types, deleted markers, inode numbers), ``icat`` (contents,
and TSK's recovery of deleted files), ``istat`` (times), mtools (``mcopy -s -m`` copies of
the tree, ``mattrib``), ``fsck.fat -n`` (FAT copies), ``blkid``-style expectations of the
util-linux samples, and the bytes written by tests/fs_builder.py.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import vdinspect
from tests import fs_builder as fb
from tests import tools
from tests.conftest import SHARED_SAMPLES, have
from vdinspect.errors import CorruptImage, NotFound, NotRecognized
from vdinspect.filesystems import fat as fatmod
from vdinspect.filesystems import open_filesystem
from vdinspect.io import FileSource, MemorySource

pytestmark = pytest.mark.skipif(
    not have("mkfs.fat", "mcopy", "fls", "icat"),
    reason="needs dosfstools, mtools and The Sleuth Kit",
)

ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1", TZ="UTC", LC_ALL="C.UTF-8")
UTIL_LINUX = SHARED_SAMPLES / "util-linux-2.38.1"


def run(*cmd, **kw):
    """The shared :func:`tests.tools.run` with this module's defaults (errors="replace", env=ENV)."""
    return tools.run(*cmd, **{'errors': "replace", 'env': ENV, **kw})


def blob(seed: int, n: int) -> bytes:
    out = bytearray()
    k = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{k}".encode()).digest()
        k += 1
    return bytes(out[:n])


# mkfs.fat arguments per type: small volumes that still have a legal cluster count
MKFS = {12: ["-F", "12", "-s", "1"], 16: ["-F", "16", "-s", "1"], 32: ["-F", "32", "-s", "1"]}
SIZE_KB = {12: 1440, 16: 8192, 32: 36000}


def make_mtools_image(path: Path, bits: int) -> Path:
    """A tree written by mtools: 8.3 and long names, lowercase 8.3 (NT flags), a deep tree,
    a fragmented file, empty files, attributes, deleted files and a removed directory."""
    run("mkfs.fat", *MKFS[bits], "-n", f"FAT{bits}VOL", "-i", "1234ABCD", "-C", path, SIZE_KB[bits])
    src = path.parent / f"src{bits}"
    src.mkdir()

    def put(name: str, data: bytes, dest: str) -> None:
        f = src / name
        f.write_bytes(data)
        run("mcopy", "-m", "-i", path, f, f"::{dest}")

    def mt(*args):
        run(args[0], "-i", path, *args[1:])

    put("a", blob(1, 700), "/lower.txt")
    put("b", blob(2, 3000), "/UPPER.TXT")
    put("c", blob(3, 5000), "/Mixed Case Long Name.dat")
    put("d", b"", "/empty.txt")
    put("e", b"", "/Empty Long Name")
    mt("mmd", "::/deep")
    p = "/deep"
    for i in range(6):
        p += f"/level {i}"
        mt("mmd", f"::{p}")
    put("f", blob(4, 100), f"{p}/leaf.txt")
    # fragmentation: small files, delete every other, then a file bigger than each gap
    for i in range(8):
        put(f"g{i}", blob(10 + i, 1024), f"/pad{i}.bin")
    for i in range(0, 8, 2):
        mt("mdel", f"::/pad{i}.bin")
    if bits == 32:
        # mtools allocates after FSInfo's next-free hint: point it back at the gaps
        with open(path, "r+b") as f:
            f.seek(512 + 492)
            f.write((2).to_bytes(4, "little"))
    put("h", blob(5, 6000), "/fragmented.bin")
    put("i", blob(6, 2600), "/to be deleted long.txt")
    put("j", blob(7, 1500), "/del83.txt")
    mt("mmd", "::/gone")
    put("k", blob(8, 900), "/gone/inside.txt")
    mt("mmd", "::/many")
    for i in range(40):
        put("m", blob(100 + i, 37 * i), f"/many/file number {i:02d}.txt")
    put("r", blob(9, 10), "/readonly.txt")
    mt("mattrib", "+r", "+h", "::/readonly.txt")
    mt("mattrib", "+s", "-a", "::/UPPER.TXT")
    # deletions last, so that no later entry reuses their slots
    mt("mdel", "::/to be deleted long.txt")
    mt("mdel", "::/del83.txt")
    mt("mdel", "::/gone/inside.txt")
    mt("mrd", "::/gone")
    return path


@pytest.fixture(scope="module", params=[12, 16, 32], ids=["fat12", "fat16", "fat32"])
def mtools_image(request, tmp_path_factory):
    bits = request.param
    d = tmp_path_factory.mktemp(f"fat{bits}")
    return bits, make_mtools_image(d / f"fat{bits}.img", bits)


def ours(fs):
    return {e.inode: e for e in fs.iter_entries("/")}


def compare_with_fls(fs, rows, *, deleted_content=True, image=None, offset=0, max_icat=12):
    """Our entries equal fls's (inode, type, deleted, path) and contents equal icat's.

    icat runs on every recoverable deleted file and the largest live ones (``max_icat``
    in all: each call reopens the volume); the other live files are compared with
    mtools' copy of the tree in another test.
    """
    mine = ours(fs)
    theirs = {r.inode: r for r in rows}
    assert set(mine) == set(theirs), sorted(set(mine) ^ set(theirs))
    for ino, r in theirs.items():
        e = mine[ino]
        assert e.path.lstrip("/") == r.path, (ino, e.path, r.path)
        assert e.deleted == r.deleted, r
        if r.type != "-":
            assert e.kind == {"r": "file", "d": "dir"}[r.type], r
    files = [e for e in mine.values() if e.kind == "file" and e.size]
    pick = [e for e in files if e.deleted and e.recoverable and deleted_content]
    pick += sorted((e for e in files if not e.deleted), key=lambda e: -e.size)
    for e in pick[:max_icat]:
        assert fs.read(e) == fb.icat(image, e.inode, offset), e.path
    return len(mine)


def test_listing_and_contents_match_sleuthkit(mtools_image):
    bits, img = mtools_image
    fs = fatmod.open_filesystem(FileSource(img))
    assert fs.fstype == f"fat{bits}"
    rows = fb.fls(img)
    assert compare_with_fls(fs, rows, image=img) >= 45
    names = {e.path for e in fs.iter_entries("/")}
    assert "/Mixed Case Long Name.dat" in names and "/lower.txt" in names
    assert "/deep/level 0/level 1/level 2/level 3/level 4/level 5/leaf.txt" in names
    deleted = {e.path: e for e in fs.iter_entries("/") if e.deleted}
    assert "/to be deleted long.txt" in deleted  # LFN of a deleted file recovered
    assert "/_el83.txt" in deleted  # 8.3 deleted name: first byte lost, as TSK shows it
    assert "/_one" in deleted and deleted["/_one"].kind == "dir"
    assert deleted["/to be deleted long.txt"].recoverable


def test_mcopy_tree_equals_extract(mtools_image, tmp_path):
    """mtools' own copy of the tree (mcopy -s -m) equals our extraction, times included."""
    bits, img = mtools_image
    theirs = tmp_path / "mcopy"
    theirs.mkdir()
    run("mcopy", "-s", "-m", "-n", "-i", img, "::/*", theirs)
    fs = fatmod.open_filesystem(FileSource(img))
    rep = fs.extract("/", tmp_path / "ours")
    assert not rep.skipped and not rep.incomplete
    mine = tmp_path / "ours"
    a = sorted(str(p.relative_to(theirs)) for p in theirs.rglob("*"))
    b = sorted(str(p.relative_to(mine)) for p in mine.rglob("*"))
    assert a == b
    for rel in a:
        pa, pb = theirs / rel, mine / rel
        if pa.is_file():
            assert pa.read_bytes() == pb.read_bytes(), rel
            assert int(pa.stat().st_mtime) == int(pb.stat().st_mtime), rel


def test_attributes_match_mattrib(mtools_image):
    bits, img = mtools_image
    fs = fatmod.open_filesystem(FileSource(img))
    out = run("mattrib", "-/", "-i", img, "::/")
    seen = 0
    for line in out.splitlines():
        if "::/" not in line:
            continue
        flags, path = line.split("::", 1)
        if path == "/":
            continue
        letters = set(flags.replace(" ", ""))
        e = fs.lookup(path)
        want = set(e.extra["attributes"]) - {"D"}
        assert letters == want, (path, letters, want)
        seen += 1
    assert seen >= 50
    assert set(fs.lookup("/readonly.txt").extra["attributes"]) == {"R", "H", "A"}
    assert fs.lookup("/UPPER.TXT").extra["attributes"] == "S"


def test_times_match_istat(mtools_image):
    bits, img = mtools_image
    fs = fatmod.open_filesystem(FileSource(img))
    info = fs.info()
    assert info["tz_unknown"] is True
    for path in ("/lower.txt", "/Mixed Case Long Name.dat", "/many/file number 07.txt"):
        e = fs.lookup(path)
        out = run("istat", img, e.inode)
        times = dict(re.findall(r"^(Written|Accessed|Created):\t(\S+ \S+)", out, re.M))
        fmt = "%Y-%m-%d %H:%M:%S"
        assert e.modified.strftime(fmt) == times["Written"]
        assert e.accessed.strftime(fmt) == times["Accessed"]
        assert e.created.strftime(fmt) == times["Created"]
        # mcopy -m kept the host file's mtime (TZ=UTC) and FAT keeps 2 s steps
        assert e.modified.utcoffset().total_seconds() == 0


def test_names_and_lowercase_flags(mtools_image):
    bits, img = mtools_image
    fs = fatmod.open_filesystem(FileSource(img))
    low = fs.lookup("/lower.txt")
    assert low.name == "lower.txt" and low.extra["short_name"] == "lower.txt"
    nt = low.raw.parsed.DIR_NTRes
    assert nt.LOWER_BASE and nt.LOWER_EXT  # DIR_NTRes bits 0x08 and 0x10
    assert fs.lookup("/LOWER.TXT").inode == low.inode  # case-insensitive lookup
    longe = fs.lookup("/mixed case LONG name.DAT")
    assert longe.name == "Mixed Case Long Name.dat"
    assert longe.extra["short_name"].startswith("MIXEDC~")
    assert len(longe.raw.lfn) == 2


def test_fragmented_and_empty(mtools_image):
    bits, img = mtools_image
    fs = fatmod.open_filesystem(FileSource(img))
    e = fs.lookup("/fragmented.bin")
    runs, problem, ended = fs.fat.chain(e.key.cluster, 10**6, fs.max_cluster)
    assert problem is None and ended and len(runs) > 1
    assert fs.read(e) == blob(5, 6000)
    assert fs.read("/empty.txt") == b"" and fs.lookup("/Empty Long Name").size == 0
    with fs.open("/fragmented.bin") as f:
        f.seek(1000)
        assert f.read(3000) == blob(5, 6000)[1000:4000]


def test_info_label_and_flags(mtools_image):
    bits, img = mtools_image
    fs = fatmod.open_filesystem(FileSource(img))
    info = fs.info()
    assert info["label"] == f"FAT{bits}VOL" and info["uuid"] == "1234-ABCD"
    assert info["flags"] == []
    fsstat = run("fsstat", img)
    assert f"File System Type: FAT{bits}" in fsstat
    m = re.search(r"Cluster Size: (\d+)", fsstat)
    assert int(m[1]) == info["cluster_size"]
    assert not [f for f in fs.check_rows() if f["severity"] == "error"]
    names = [s["name"] for s in fs.structure_rows()]
    assert "FAT 1" in names and "FAT 2" in names and "boot sector" in names


@pytest.mark.parametrize("fmt", ["raw", "qcow2", "vmdk", "vpc"])
def test_inside_partitioned_disk(fmt, tmp_path, mtools_image):
    bits, img = mtools_image
    if bits != 16:
        pytest.skip("one FAT type is enough for the container matrix")
    if fmt != "raw" and not have("qemu-img"):
        pytest.skip("qemu-img missing")
    disk = tmp_path / "disk.raw"
    size = img.stat().st_size + 2 * 1024 * 1024
    with open(disk, "wb") as f:
        f.truncate(size)
    subprocess.run(
        ["sfdisk", "-q", str(disk)],
        input=b"label: dos\nstart=2048, type=6\n",
        check=True,
        capture_output=True,
    )
    with open(disk, "r+b") as f, open(img, "rb") as g:
        f.seek(2048 * 512)
        shutil.copyfileobj(g, f)
    path = disk
    if fmt != "raw":
        path = tmp_path / f"disk.{fmt}"
        run("qemu-img", "convert", "-O", fmt, disk, path)
    try:
        d = vdinspect.open(path)
    except (NotRecognized, vdinspect.errors.UnsupportedFeature) as e:
        pytest.skip(f"{fmt} reader not available: {e}")
    with d:
        fs = d.filesystem()
        assert fs.fstype == "fat16"
        assert compare_with_fls(fs, fb.fls(disk, 2048), image=disk, offset=2048) >= 45
        fs2 = d.filesystem(1)
        assert fs2.info()["uuid"] == "1234-ABCD"


# --- variants built from the specification ------------------------------------------------


def built(bits: int, **kw) -> fb.FatImage:
    sectors = {12: 4000, 16: 9000, 32: 70000}[bits]
    return fb.FatImage(bits=bits, sectors=sectors, **kw)


@pytest.mark.parametrize("bits", [12, 16, 32])
def test_builder_images_fsck_fls_and_data(bits, tmp_path):
    img = built(bits)
    r = img.root
    files = {}
    files["/Hello World.txt"] = img.add_file(r, "Hello World.txt", blob(1, 1234)).data
    for i in range(12):  # interleaved: odd and even clusters in the 12-bit packing
        files[f"/frag{i}.bin"] = img.add_file(
            r, f"frag{i}.bin", blob(20 + i, 1500 + 97 * i), fragment=True
        ).data
    d = img.mkdir(r, "Ünïcödé dïr")
    files["/Ünïcödé dïr/naïve café.txt"] = img.add_file(d, "naïve café.txt", blob(2, 99)).data
    img.add_file(d, "lower.txt", b"lower", short=fb.short11("LOWER", "TXT"), lfn=False, ntres=0x18)
    img.add_file(d, "Mixed.TXT", b"mixed", short=fb.short11("MIXED", "TXT"), lfn=False, ntres=0x08)
    files["/Ünïcödé dïr/lower.txt"] = b"lower"
    files["/Ünïcödé dïr/mixed.TXT"] = b"mixed"
    gone = img.add_file(d, "gone file.txt", blob(3, 2000), deleted=True)
    path = tmp_path / "b.img"
    tools.write_sparse(path, img.build())
    assert "0 files" not in run("fsck.fat", "-n", path)  # clean: exit status 0
    fs = fatmod.open_filesystem(FileSource(path))
    assert fs.fstype == f"fat{bits}"
    for p, data in files.items():
        assert fs.read(p) == data, p
    g = fs.lookup("/Ünïcödé dïr/gone file.txt", deleted=True)
    assert g.deleted and g.recoverable and fs.read(g) == gone.data
    compare_with_fls(fs, fb.fls(path), image=path)
    # sound: no problem (an info row may say how far the scan for deleted entries went)
    assert [r for r in fs.check_rows() if r["severity"] != "info"] == []


@pytest.mark.parametrize("bits,clusters", [(12, 4084), (16, 4085)])
def test_fat12_fat16_boundary(bits, clusters, tmp_path):
    """FAT12 iff fewer than 4085 clusters (fatgen103), as fsck.fat and TSK decide too.

    blkid's VERSION says FAT16 at exactly 4084 clusters; the probe and the driver both
    follow the specification (one check, ``volumes.fat_layout.check_bpb``).
    """
    from vdinspect.volumes.probes import probe

    sectors = next(n for n in range(4100, 4200) if fb.FatImage(bits=bits, sectors=n).clusters
                   == clusters)
    img = fb.FatImage(bits=bits, sectors=sectors)
    img.add_file(img.root, "edge.txt", blob(7, 3000))
    path = tmp_path / "edge.img"
    tools.write_sparse(path, img.build())
    out = run("fsck.fat", "-n", "-v", path)  # exit status 0: clean for this entry width
    assert f"{bits} bit entries" in out
    assert f"File System Type: FAT{bits}" in run("fsstat", path)
    fs = fatmod.open_filesystem(FileSource(path))
    assert (fs.fstype, fs.clusters) == (f"fat{bits}", clusters)
    assert probe(FileSource(path)).type == f"fat{bits}"
    assert fs.read("/edge.txt") == blob(7, 3000) and fs.check_rows() == []


def test_created_tenths_and_timestamps(tmp_path):
    import datetime as dt

    img = built(16)
    c = dt.datetime(2019, 12, 31, 23, 59, 58)
    img.add_file(
        img.root,
        "t.txt",
        b"t",
        created=c,
        created_tenths=153,
        modified=dt.datetime(2020, 1, 2, 3, 4, 6),
        accessed=dt.datetime(2020, 5, 6),
    )
    fs = fatmod.open_filesystem(MemorySource(img.build()))
    e = fs.lookup("/t.txt")
    utc = dt.UTC
    assert e.created == dt.datetime(2019, 12, 31, 23, 59, 59, 530000, tzinfo=utc)
    assert e.modified == dt.datetime(2020, 1, 2, 3, 4, 6, tzinfo=utc)
    assert e.accessed == dt.datetime(2020, 5, 6, tzinfo=utc)
    df = fs.files()
    assert str(df["created"].dtype) == "datetime64[us, UTC]"


def test_lfn_checksum_mismatch_uses_short_name():
    img = built(16)
    short = fb.short11("ALONGN~1", "TXT")
    img.add_file(
        img.root, "A long name.txt", b"x", short=short, lfn_checksum=fb.lfn_checksum(short) ^ 0x5A
    )
    fs = fatmod.open_filesystem(MemorySource(img.build()))
    names = [e.name for e in fs.iter_entries("/")]
    assert names == ["ALONGN~1.TXT"]
    assert any("checksum" in f["message"] for f in fs.check_rows())


def test_volume_label_entry_wins_and_dirty_bits():
    img = built(16, label="BOOTLABEL")
    img.post.append(lambda b: b.buf.__setitem__(slice(43, 54), b"OTHERLABEL "))
    img.fat_overrides[1] = 0xFFFF & ~0x8000 & ~0x4000  # dirty and hard error
    fs = fatmod.open_filesystem(MemorySource(img.build()))
    info = fs.info()
    assert info["boot_label"] == "OTHERLABEL" and info["label"] == "BOOTLABEL"
    assert info["flags"] == ["dirty", "hard error"]
    msgs = " ".join(f["message"] for f in fs.check_rows())
    assert "not unmounted cleanly" in msgs and "I/O error" in msgs


def test_fat32_backup_boot_sector(tmp_path, mtools_image):
    bits, img = mtools_image
    if bits != 32:
        pytest.skip("FAT32 only")
    bad = tmp_path / "bad.img"
    data = bytearray(img.read_bytes())
    data[0:512] = bytes(512)
    tools.write_sparse(bad, data)
    fs = open_filesystem(FileSource(bad))  # the probe fails; the backup is found
    assert fs.info()["backup_boot_used"]
    assert any("backup" in f["message"] for f in fs.check_rows())
    good = fatmod.open_filesystem(FileSource(img))
    assert [(e.inode, e.path) for e in fs.iter_entries("/")] == [
        (e.inode, e.path) for e in good.iter_entries("/")
    ]
    assert fs.read("/fragmented.bin") == blob(5, 6000)


def test_second_fat_used_in_salvage(tmp_path, mtools_image):
    bits, img = mtools_image
    fs0 = fatmod.open_filesystem(FileSource(img))
    e = fs0.lookup("/fragmented.bin")
    c = e.key.cluster
    data = bytearray(img.read_bytes())
    fat1 = fs0.fat.offset
    width = {12: None, 16: 2, 32: 4}[bits]
    if width is None:
        pytest.skip("byte-aligned entries keep this test simple")
    data[fat1 : fat1 + width] = bytes(width)  # entry 0: media byte gone
    data[fat1 + c * width : fat1 + (c + 1) * width] = bytes(width)  # chain broken
    bad = tmp_path / "bad.img"
    tools.write_sparse(bad, data)
    # FAT 1 is unusable: its mirror is used in strict mode too (issue 16), with an error
    strict = fatmod.open_filesystem(FileSource(bad))
    assert strict.read("/fragmented.bin") == blob(5, 6000)
    assert any(f["severity"] == "error" and "using FAT 2" in f["message"]
               for f in strict.check_rows())
    salvage = fatmod.open_filesystem(FileSource(bad), strict=False)
    assert salvage.info()["active_fat"] == 2
    assert salvage.read("/fragmented.bin") == blob(5, 6000)
    msgs = [f["message"] for f in salvage.check_rows()]
    assert any("differs from" in m for m in msgs)
    assert "differ" in run("fsck.fat", "-n", bad, check=False)  # fsck.fat agrees


def test_chain_loop_and_out_of_range(tmp_path):
    img = built(16)
    img.add_file(img.root, "loop.bin", blob(1, 5000), loop=True)
    f = img.add_file(img.root, "range.bin", blob(2, 3000))
    img.fat_overrides[f.clusters[1]] = 0xFFF0  # past the last cluster
    img.add_file(img.root, "ok.bin", blob(3, 100))
    raw = img.build()
    strict = fatmod.open_filesystem(MemorySource(raw))
    listed = list(strict.iter_entries("/"))
    assert [e.name for e in listed if e.found_by == "index"] == ["loop.bin", "range.bin",
                                                                 "ok.bin"]
    # range.bin's tail past the bad link is a chain no entry names: listed in /$Lost
    assert [e.name for e in listed if e.found_by == "scan"] == [
        "$Lost", f"lost_file_{f.clusters[2]}"]
    assert strict.read("/loop.bin") == blob(1, 5000)  # the loop starts after the size
    img2 = built(16)
    img2.add_file(img2.root, "loop.bin", blob(1, 5000), loop=True, size=50000)
    img2.add_file(img2.root, "range.bin", blob(2, 3000))
    img2.fat_overrides[img2.root.entries[1][5] + 1] = 0xFFF0
    raw = img2.build()
    strict = fatmod.open_filesystem(MemorySource(raw))
    for name in ("/loop.bin", "/range.bin"):
        with pytest.raises(CorruptImage):
            strict.read(name)
    salvage = fatmod.open_filesystem(MemorySource(raw), strict=False)
    assert salvage.read("/loop.bin") == blob(1, 5000) + bytes(120)  # 10 clusters, slack
    assert salvage.read("/range.bin") == blob(2, 3000)[:1024]  # 2 clusters before the bad link
    msgs = " ".join(f["message"] for f in salvage.check_rows())
    assert "loops back" in msgs and "out of range" in msgs


def test_deleted_file_with_reused_clusters_is_not_recoverable(tmp_path):
    img = built(16)
    g = img.add_file(img.root, "gone.txt", blob(1, 3000), deleted=True)
    img.next = g.clusters[0]  # the next file takes the same clusters
    img.add_file(img.root, "new.txt", blob(2, 3000))
    path = tmp_path / "r.img"
    tools.write_sparse(path, img.build())
    fs = fatmod.open_filesystem(FileSource(path))
    e = fs.lookup("/gone.txt", deleted=True)
    assert e.deleted and not e.recoverable
    with pytest.raises(NotFound):
        fs.read(e)
    assert fs.read("/new.txt") == blob(2, 3000)
    compare_with_fls(fs, fb.fls(path), image=path)


def test_bad_boot_sectors():
    with pytest.raises(NotRecognized):
        fatmod.open_filesystem(MemorySource(bytes(4096)))
    img = built(16)
    raw = bytearray(img.build())
    raw[11:13] = (700).to_bytes(2, "little")  # bytes per sector
    with pytest.raises(NotRecognized):
        fatmod.open_filesystem(MemorySource(bytes(raw)))
    raw = bytearray(img.build())
    raw[0x20:0x24] = (10**9).to_bytes(4, "little")
    raw[0x13:0x15] = bytes(2)
    fs = fatmod.open_filesystem(MemorySource(bytes(raw)), strict=False)
    assert any("claims" in f["message"] for f in fs.check_rows())
    cut = img.build()[: 40 * 512]  # the FATs are cut short
    with pytest.raises(CorruptImage):
        fatmod.open_filesystem(MemorySource(cut))


# --- real samples ------------------------------------------------------------------------------


@pytest.mark.skipif(not UTIL_LINUX.is_dir(), reason="util-linux samples absent")
@pytest.mark.parametrize(
    "name,fstype,label,uuid",
    [
        ("fat", "fat12", "TEST-FAT", "DEAD-BEEF"),
        ("fat16_noheads", "fat16", "VTech 1070", "2004-1014"),
        ("small-fat32", "fat32", "TESTVFAT", "1423-AAE1"),
    ],
)
def test_util_linux_samples(name, fstype, label, uuid, tmp_path):
    img = tmp_path / f"{name}.img"
    tools.write_sparse(img, lzma.decompress((UTIL_LINUX / "images-fs" / f"{name}.img.xz").read_bytes()))
    fs = fatmod.open_filesystem(FileSource(img))
    assert (fs.fstype, fs.label, fs.uuid) == (fstype, label, uuid)
    try:
        rows = fb.fls(img)
    except subprocess.CalledProcessError:
        rows = None  # TSK refuses a FAT32 with this few clusters
    if rows is not None:
        compare_with_fls(fs, rows, image=img)
    assert not [f for f in fs.check_rows() if f["severity"] == "error"]


def test_layouts_match_the_specification_offsets():
    """Field offsets of the declared layouts are fatgen103's, and the fast paths agree."""
    from vdinspect.filesystems.fat import structs
    from vdinspect.layout import numpy_dtype, offset_of

    spec = {  # fatgen103: byte offsets of the fields
        structs.BootSector: {"BPB_BytsPerSec": 11, "BPB_RsvdSecCnt": 14, "BPB_RootEntCnt": 17,
                             "BPB_FATSz16": 22, "BPB_HiddSec": 28, "BPB_TotSec32": 32},
        structs.Fat16Ext: {"BS_VolID": 39 - 36, "BS_VolLab": 43 - 36, "BS_FilSysType": 54 - 36},
        structs.Fat32Ext: {"BPB_RootClus": 44 - 36, "BPB_BkBootSec": 50 - 36,
                           "BS_VolID": 67 - 36, "BS_VolLab": 71 - 36, "BS_FilSysType": 82 - 36},
        structs.FSInfo: {"FSI_StrucSig": 484, "FSI_Free_Count": 488, "FSI_TrailSig": 508},
        structs.DirEntry: {"DIR_Attr": 11, "DIR_NTRes": 12, "DIR_CrtTime": 14,
                           "DIR_FstClusHI": 20, "DIR_FstClusLO": 26, "DIR_FileSize": 28},
        structs.LfnEntry: {"LDIR_Attr": 11, "LDIR_Chksum": 13, "LDIR_Name2": 14,
                           "LDIR_Name3": 28},
    }
    for layout, fields in spec.items():
        for name, off in fields.items():
            assert offset_of(layout, name) == off, name
    assert structs.DIRENT.size == 32 and structs.FSInfo.sizeof() == 512
    assert [(s.start, s.stop) for s in structs.LFN_NAME_PARTS] == [(1, 11), (14, 26), (28, 32)]
    assert structs.ATTR_LONG_NAME == 0x0F and structs.FAT32_DTYPE.itemsize == 4
    rec = numpy_dtype(structs.DirEntry)  # the numpy form of the same declaration
    assert rec.itemsize == 32 and rec.fields["DIR_FstClusLO"][1] == 26
