"""exFAT against the util-linux sample, mkfs.exfat volumes filled by tests/fs_builder.py,
fsck.exfat and The Sleuth Kit (fls/icat read exFAT since 4.x).

The builder writes entry sets, the allocation bitmap and FAT chains from the spec; every
clean image it makes is first checked by ``fsck.exfat -n`` (exfatprogs), then our
listings and contents are compared with the data it wrote and with fls/icat.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import lzma
import subprocess
import uuid as uuidlib

import pytest

import vdinspect
from tests import fs_builder as fb
from tests.conftest import SHARED_SAMPLES, have
from vdinspect.errors import CorruptImage, NotFound, NotRecognized
from vdinspect.filesystems import exfat as exmod
from vdinspect.io import FileSource, MemorySource

UTIL_LINUX = SHARED_SAMPLES / "util-linux-2.38.1"
needs_mkfs = pytest.mark.skipif(not have("mkfs.exfat", "fsck.exfat"), reason="needs exfatprogs")
needs_tsk = pytest.mark.skipif(not have("fls", "icat"), reason="needs The Sleuth Kit")
UTC = dt.UTC


def blob(seed: int, n: int) -> bytes:
    out = bytearray()
    k = 0
    while len(out) < n:
        out += hashlib.sha256(f"x{seed}:{k}".encode()).digest()
        k += 1
    return bytes(out[:n])


def mkfs(tmp_path, size_mb: int = 8, cluster: int = 4096, label: str = "ExLabel") -> bytes:
    p = tmp_path / "mkfs.img"
    with open(p, "wb") as f:
        f.truncate(size_mb << 20)
    subprocess.run(
        ["mkfs.exfat", "-c", str(cluster), "-L", label, str(p)], check=True, capture_output=True
    )
    data = p.read_bytes()
    p.unlink()
    return data


def fsck_clean(path) -> bool:
    r = subprocess.run(["fsck.exfat", "-n", str(path)], capture_output=True, text=True)
    return r.returncode == 0 and "clean" in r.stdout


def compare_with_fls(fs, path, offset: int = 0, max_icat: int = 10) -> int:
    mine = {e.inode: e for e in fs.iter_entries("/")}
    rows = {r.inode: r for r in fb.fls(path, offset)}
    assert set(mine) == set(rows), sorted(set(mine) ^ set(rows))
    for ino, r in rows.items():
        e = mine[ino]
        assert e.path.lstrip("/") == r.path and e.deleted == r.deleted, (e, r)
        if r.type != "-":
            assert e.kind == {"r": "file", "d": "dir"}[r.type]
    # icat reads past ValidDataLength (the spec says those bytes read as zeros)
    files = [
        e for e in mine.values() if e.kind == "file" and e.size and e.extra["valid_size"] == e.size
    ]
    pick = [e for e in files if e.deleted and e.recoverable]
    pick += sorted((e for e in files if not e.deleted), key=lambda e: -e.size)
    for e in pick[:max_icat]:
        assert fs.read(e) == fb.icat(path, e.inode, offset), e.path
    return len(mine)


@pytest.fixture(scope="module")
def built_volume(tmp_path_factory):
    """A mkfs.exfat volume with files written by the builder, and what was written."""
    if not have("mkfs.exfat", "fsck.exfat"):
        pytest.skip("needs exfatprogs")
    tmp = tmp_path_factory.mktemp("exfat")
    img = fb.ExfatImage(mkfs(tmp))
    r = img.root
    want: dict[str, bytes] = {}
    img.add(
        r,
        "Hello World.txt",
        b"hello world\n",
        utc_offset_min=120,
        created=dt.datetime(2022, 6, 7, 8, 9, 11, 370000),
    )
    want["/Hello World.txt"] = b"hello world\n"
    want["/frag.bin"] = img.add(
        r, "frag.bin", blob(1, 30000), fragment=True, utc_offset_min=-300
    ).data
    d = img.add(r, "A Directory", is_dir=True, dir_clusters=2)
    long_name = "inner file with a very long name that spans several name entries.txt"
    want[f"/A Directory/{long_name}"] = img.add(d, long_name, blob(2, 9000)).data
    sub = img.add(d, "sub", is_dir=True)
    want["/A Directory/sub/deeper.txt"] = img.add(sub, "deeper.txt", blob(3, 100)).data
    want["/A Directory/empty"] = img.add(d, "empty", b"").data
    gone = img.add(d, "gone.txt", blob(4, 6000))
    want["/älpha.txt"] = img.add(r, "älpha.txt", b"umlaut").data
    want["/straße"] = img.add(r, "straße", b"street").data
    want["/Ωμέγα.txt"] = img.add(r, "Ωμέγα.txt", blob(5, 5000), fragment=True).data
    img.add(r, "valid.bin", blob(6, 10000), valid=4000)
    want["/valid.bin"] = blob(6, 10000)[:4000] + bytes(6000)
    for i in range(30):  # the root grows past one cluster
        want[f"/many {i:02d}.txt"] = img.add(r, f"many {i:02d}.txt", blob(100 + i, 50 * i)).data
    img.delete(gone)  # last: nothing takes its clusters again
    path = tmp / "built.img"
    path.write_bytes(img.image())
    assert fsck_clean(path), "the builder wrote a volume fsck.exfat does not accept"
    return path, want, gone


@needs_mkfs
def test_built_volume_contents(built_volume):
    path, want, gone = built_volume
    fs = exmod.open_filesystem(FileSource(path))
    got = {e.path: e for e in fs.iter_entries("/")}
    for p, data in want.items():
        assert fs.read(p) == data, p
    assert {p for p, e in got.items() if not e.deleted and e.kind == "file"} == set(want)
    g = got["/A Directory/gone.txt"]
    assert g.deleted and g.recoverable and fs.read(g) == gone.data
    assert got["/frag.bin"].extra["no_fat_chain"] is False
    assert got["/A Directory"].extra["no_fat_chain"] is True
    assert got["/valid.bin"].extra["valid_size"] == 4000
    info = fs.info()
    assert info["label"] == "ExLabel" and not info["flags"]
    assert fs.check_rows() == []


@needs_mkfs
def test_times_and_offsets(built_volume):
    path, _, _ = built_volume
    fs = exmod.open_filesystem(FileSource(path))
    h = fs.lookup("/Hello World.txt")
    # written as 08:09:11.37 local at UTC+2: stored as UTC 06:09:11.37
    assert h.created == dt.datetime(2022, 6, 7, 6, 9, 11, 370000, tzinfo=UTC)
    assert h.extra["created_utc_offset"] == 120
    f = fs.lookup("/frag.bin")
    assert f.modified == dt.datetime(2021, 3, 4, 10, 6, 8, tzinfo=UTC)  # UTC-5
    assert f.extra["modified_utc_offset"] == -300
    e = fs.lookup("/A Directory/empty")
    assert e.modified == dt.datetime(2021, 3, 4, 5, 6, 8, tzinfo=UTC)  # no offset: as is
    assert e.extra["modified_utc_offset"] is None


@needs_mkfs
def test_upcase_table_lookup(built_volume):
    path, _, _ = built_volume
    fs = exmod.open_filesystem(FileSource(path))
    assert fs.upcase is not None
    assert fs.read("/ÄLPHA.TXT") == b"umlaut"
    assert fs.read("/ΩΜΈΓΑ.TXT") == fs.read("/Ωμέγα.txt")
    assert fs.read("/STRAßE") == b"street"
    with pytest.raises(NotFound):  # Unicode case folding would say ß == SS; exFAT does not
        fs.lookup("/STRASSE")
    assert fs.lookup("/a directory/SUB/DEEPER.TXT").size == 100


@needs_mkfs
@needs_tsk
def test_built_volume_matches_sleuthkit(built_volume):
    path, _, _ = built_volume
    fs = exmod.open_filesystem(FileSource(path))
    assert compare_with_fls(fs, path) >= 38


@needs_mkfs
@needs_tsk
def test_inside_partitioned_qcow2(built_volume, tmp_path):
    if not have("qemu-img", "sfdisk"):
        pytest.skip("needs qemu-img and sfdisk")
    path, want, _ = built_volume
    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as f:
        f.truncate(path.stat().st_size + (2 << 20))
    subprocess.run(
        ["sfdisk", "-q", str(disk)],
        input=b"label: gpt\nstart=2048, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n",
        check=True,
        capture_output=True,
    )
    with open(disk, "r+b") as f:
        f.seek(2048 * 512)
        f.write(path.read_bytes())
    q = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(disk), str(q)], check=True)
    with vdinspect.open(q) as d:
        fs = d.filesystem()
        assert fs.fstype == "exfat"
        assert fs.read("/frag.bin") == want["/frag.bin"]
        compare_with_fls(fs, disk, 2048, max_icat=3)


@needs_mkfs
def test_backup_boot_region_and_dirty(tmp_path):
    raw = bytearray(mkfs(tmp_path))
    raw[120] ^= 0xFF  # boot code byte: the main checksum no longer matches
    fs = exmod.open_filesystem(MemorySource(bytes(raw)))
    assert fs.backup_used and fs.info()["backup_boot_used"]
    assert any("checksum" in f["message"] for f in fs.check_rows())
    raw = bytearray(mkfs(tmp_path))
    raw[106] |= 0x02  # VolumeDirty (not covered by the checksum)
    fs = exmod.open_filesystem(MemorySource(bytes(raw)))
    assert fs.info()["flags"] == ["dirty"]
    assert any("dirty" in f["message"] for f in fs.check_rows())
    raw = bytearray(mkfs(tmp_path))
    ss = 512
    raw[12 * ss + 120] ^= 0xFF  # backup boot region damaged
    fs = exmod.open_filesystem(MemorySource(bytes(raw)))
    assert not fs.backup_used
    assert any(f["structure"] == "backup boot region" for f in fs.check_rows())
    raw[120] ^= 0xFF  # both damaged
    with pytest.raises(CorruptImage):
        exmod.open_filesystem(MemorySource(bytes(raw)))
    with pytest.raises(NotRecognized):
        exmod.open_filesystem(MemorySource(bytes(65536)))


@needs_mkfs
def test_set_checksum_guid_and_reused_clusters(tmp_path):
    img = fb.ExfatImage(mkfs(tmp_path))
    r = img.root
    a = img.add(r, "a.txt", b"aaaa")
    img.buf[a.slot + 2] ^= 0xFF  # SetChecksum damaged
    gone = img.add(r, "gone.bin", blob(7, 8000))
    img.delete(gone)
    img.add(r, "new.bin", blob(8, 8000))  # takes gone.bin's clusters
    g = uuidlib.UUID("12345678-9abc-def0-1234-56789abcdef0")
    img.add_guid(r, g)
    fs = exmod.open_filesystem(MemorySource(img.image()))
    assert fs.read("/a.txt") == b"aaaa"
    assert any("set checksum" in f["message"] for f in fs.check_rows())
    e = fs.lookup("/gone.bin", deleted=True)
    assert e.deleted and not e.recoverable
    with pytest.raises(NotFound):
        fs.read(e)
    assert fs.info()["guid"] == str(g)


@needs_mkfs
def test_truncated_volume(tmp_path):
    img = fb.ExfatImage(mkfs(tmp_path))
    img.add(img.root, "big.bin", blob(9, 200000))
    raw = img.image()
    cut = raw[: len(raw) // 2]
    with pytest.raises(CorruptImage):
        exmod.open_filesystem(MemorySource(cut))
    fs = exmod.open_filesystem(MemorySource(cut), strict=False)
    assert fs.read("/big.bin") == blob(9, 200000)
    assert any("cut short" in f["message"] for f in fs.check_rows())


@pytest.mark.skipif(not UTIL_LINUX.is_dir(), reason="util-linux samples absent")
def test_util_linux_sample(tmp_path):
    p = tmp_path / "exfat.img"
    p.write_bytes(lzma.decompress((UTIL_LINUX / "images-fs" / "exfat.img.xz").read_bytes()))
    fs = exmod.open_filesystem(FileSource(p))
    assert (fs.label, fs.uuid, fs.info()["revision"]) == ("Новый том", "9C23-8877", "1.00")
    files = [e for e in fs.iter_entries("/") if not e.deleted]
    assert [e.name for e in files] == [f"test.{i:02d}" for i in range(100)]
    for e in files:
        assert fs.read(e) == f"{e.name}\n".encode()
    # written in Windows at UTC+4: the offset is recorded, so times are true UTC
    assert files[0].extra["modified_utc_offset"] == 240
    if have("fls", "icat"):
        compare_with_fls(fs, p, max_icat=5)
    assert not [f for f in fs.check_rows() if f["severity"] == "error"]


def test_layouts_match_the_specification_offsets():
    """Field offsets of the declared layouts are the exFAT specification's."""
    from vdinspect.filesystems.exfat import structs
    from vdinspect.layout import offset_of

    spec = {  # Microsoft exFAT specification: byte offsets of the fields
        structs.BootSector: {"PartitionOffset": 64, "VolumeLength": 72, "FatOffset": 80,
                             "ClusterHeapOffset": 88, "FirstClusterOfRootDirectory": 96,
                             "VolumeFlags": 106, "BytesPerSectorShift": 108,
                             "NumberOfFats": 110, "PercentInUse": 112, "BootSignature": 510},
        structs.FileEntry: {"SetChecksum": 2, "FileAttributes": 4, "CreateTimestamp": 8,
                            "Create10msIncrement": 20, "CreateUtcOffset": 22},
        structs.StreamExtensionEntry: {"NameLength": 3, "NameHash": 4, "ValidDataLength": 8,
                                       "FirstCluster": 20, "DataLength": 24},
        structs.FileNameEntry: {"FileName": 2},
        structs.AllocationBitmapEntry: {"FirstCluster": 20, "DataLength": 24},
        structs.UpcaseTableEntry: {"TableChecksum": 4, "FirstCluster": 20},
    }
    for layout, fields in spec.items():
        for name, off in fields.items():
            assert offset_of(layout, name) == off, name
    assert structs.BOOT_CHECKSUM_SKIP == {106, 107, 112}
    assert structs.SET_CHECKSUM_SKIP == {2, 3}
    assert structs.FILE_ENTRY.size == structs.STREAM_ENTRY.size == 32
