"""Kernel copies (``ByteSource.host_ranges`` then ``os.copy_file_range``) out of Btrfs and
striped LVM: Btrfs from ``mkfs.btrfs --rootdir`` (one device) and from a RAID0/RAID1 set
the kernel wrote (loop mounts), striped LVM placed by lvm2 (``tests/lvm_tools.py``) over
an ext4 that ``mke2fs -d`` made. Extracted files are compared with the source tree and
``btrfs restore``; every host range is read back from its host file with ``pread`` and
compared with the source file's bytes (not with our reader). Also: Btrfs ``block_size``
against ``dump-super`` and the ``host_file`` of ``structures()`` rows on every driver."""

from __future__ import annotations

import os
import random
import re
import subprocess
from pathlib import Path

import pytest

import vdinspect
from tests.conftest import have
from tests.filesystems.test_extract_copy import counting_copy
from tests.lvm_tools import striped_lvm_disk
from tests.tools import run, sparse_copy
from tests.volumes.test_volume_groups import two_pvs  # noqa: F401 (a fixture)
from vdinspect.filesystems.btrfs import open_filesystem
from vdinspect.io import Concat, FileSource, Zero

K, M = 1 << 10, 1 << 20
needs_btrfs = pytest.mark.skipif(not have("mkfs.btrfs", "btrfs"), reason="needs btrfs-progs")
needs_copy = pytest.mark.skipif(not hasattr(os, "copy_file_range"),
                                reason="needs os.copy_file_range")


def make_tree(root: Path) -> Path:
    """big.bin (3 MiB + a tail, random), holes.bin (data, a 1 MiB hole, data), an inline
    small.txt, and a folder of small files."""
    root.mkdir(parents=True)
    rnd = random.Random(23)
    (root / "big.bin").write_bytes(rnd.randbytes(3 * M + 4567))
    with open(root / "holes.bin", "wb") as f:
        f.write(rnd.randbytes(200 * K))
        f.seek(1224 * K)
        f.write(rnd.randbytes(300 * K + 11))
    (root / "small.txt").write_bytes(b"inline\n" * 20)
    (root / "d").mkdir()
    for i in range(20):
        (root / "d" / f"f{i}").write_bytes(rnd.randbytes(5000 + 997 * i))
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("hr") / "tree")


@pytest.fixture(scope="module")
def btrfs_img(tree, tmp_path_factory) -> Path:
    if not have("mkfs.btrfs", "btrfs"):
        pytest.skip("needs btrfs-progs")
    img = tmp_path_factory.mktemp("hrb") / "single.raw"
    with open(img, "wb") as f:
        f.truncate(128 * M)
    run("mkfs.btrfs", "-q", "-f", "--rootdir", tree, img)
    return img


def files_of(tree: Path) -> list[str]:
    return sorted("/" + str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())


def pread_ranges(pieces) -> bytes:
    """The bytes the host ranges name, read from the host files themselves."""
    return b"".join(bytes(k) if h is None else os.pread(h.fd, k, o) for h, o, k in pieces)


def assert_ranges_match_tree(fs, tree: Path, names, seed: int = 3) -> list:
    """host_ranges of whole files and random ranges read back from the host files equal
    the source tree's bytes; returns the whole-file pieces of the first name."""
    rnd = random.Random(seed)
    first = None
    for name in names:
        want = (tree / name.lstrip("/")).read_bytes()
        src = fs.content(fs.lookup(name))
        pieces = src.host_ranges(0, src.size)
        assert pieces is not None, name
        assert sum(k for _h, _o, k in pieces) == len(want)
        assert pread_ranges(pieces) == want, name
        first = first or pieces
        for _ in range(10):
            off = rnd.randrange(len(want))
            n = rnd.randrange(1, len(want) - off + 1)
            assert pread_ranges(src.host_ranges(off, n)) == want[off:off + n], (name, off, n)
    return first


def extract_and_compare(fs, tree: Path, dest: Path, monkeypatch) -> list:
    calls = counting_copy(monkeypatch)
    report = fs.extract("/", dest)
    assert not report.skipped and not report.incomplete and not report.damaged
    for name in files_of(tree):
        assert (dest / name.lstrip("/")).read_bytes() == (tree / name.lstrip("/")).read_bytes()
    return calls


# --- Btrfs, one device ----------------------------------------------------------------------

@needs_btrfs
@needs_copy
def test_btrfs_extract_copies_in_the_kernel(btrfs_img, tree, tmp_path, monkeypatch):
    fs = open_filesystem(FileSource(btrfs_img))
    calls = extract_and_compare(fs, tree, tmp_path / "out", monkeypatch)
    assert sum(calls) >= 3 * M  # big.bin at least went host file to host file
    restore = tmp_path / "restore"
    restore.mkdir()
    run("btrfs", "restore", btrfs_img, restore)
    for name in files_of(tree):
        rel = name.lstrip("/")
        assert (tmp_path / "out" / rel).read_bytes() == (restore / rel).read_bytes()


@needs_btrfs
def test_btrfs_host_ranges_point_at_the_files_bytes(btrfs_img, tree):
    fs = open_filesystem(FileSource(btrfs_img))
    names = ["/big.bin", "/holes.bin", "/d/f7"]
    pieces = assert_ranges_match_tree(fs, tree, names)
    assert {h.path for h, _o, _k in pieces if h is not None} == {str(btrfs_img)}
    small = fs.content(fs.lookup("/small.txt"))
    assert small.host_ranges(0, small.size) is None  # inline: not stored as itself


@needs_btrfs
@needs_copy
def test_btrfs_checksums_still_checked(btrfs_img, tree, tmp_path, monkeypatch):
    """A data sector of big.bin damaged (its place from btrfs-map-logical): no host range
    is claimed over it, strict extraction names the file unreadable, salvage extraction
    reports the damaged range, and the rest of the file still goes through the kernel."""
    img = sparse_copy(btrfs_img, tmp_path / "bad.raw")
    dump = run("btrfs", "inspect-internal", "dump-tree", "-t", "fs", img)
    ino = int(re.search(r"location key \((\d+) INODE_ITEM 0\) type FILE\n.*\n.*name: "
                        r"big\.bin", dump).group(1))
    addr = int(re.search(rf"key \({ino} EXTENT_DATA {2 * M}\).*?\n.*?\n\s+extent data disk "
                         r"byte (\d+)\s.*\n\s+extent data offset 0 ", dump).group(1))
    logical = addr + 4096  # file offset 2 MiB + 4 KiB
    phys = int(re.findall(r"physical (\d+)", run("btrfs-map-logical", "-l", logical, img))[0])
    with open(img, "r+b") as f:
        f.seek(phys + 100)
        f.write(b"\xba\xad")
    strict = open_filesystem(FileSource(img))
    src = strict.content(strict.lookup("/big.bin"))
    assert src.host_ranges(2 * M, 8192) is None
    assert strict.copy_refused == [logical]  # found once: later windows skip it unchecked
    assert pread_ranges(src.host_ranges(0, M)) == (tree / "big.bin").read_bytes()[:M]
    strict.copy_refused.clear()
    # the same answers where the stored checksums are looked up sector by sector
    strict._csum_run = lambda start, nsec: None
    assert src.host_ranges(2 * M, 8192) is None
    assert pread_ranges(src.host_ranges(0, M)) == (tree / "big.bin").read_bytes()[:M]
    del strict._csum_run
    report = strict.extract("/big.bin", tmp_path / "strict")
    assert [p for p, _why in report.skipped] == ["/big.bin"]
    assert "checksum" in report.skipped[0][1]
    fs = open_filesystem(FileSource(img), strict=False)
    calls = counting_copy(monkeypatch)
    report = fs.extract("/big.bin", tmp_path / "salvage")
    assert [(p, r) for p, _h, r in report.damaged] == [("/big.bin", [(2 * M + 4096, 4096)])]
    got = (tmp_path / "salvage" / "big.bin").read_bytes()
    want = bytearray((tree / "big.bin").read_bytes())
    want[2 * M + 4096:2 * M + 8192] = bytes(4096)
    assert got == bytes(want)
    # one host_pieces question for the file: the extent holding the bad sector (file
    # bytes [2 MiB, 3 MiB)) is read, the extents before and after it go through the kernel
    assert calls == [2 * M, len(want) - 3 * M]


@needs_btrfs
@needs_copy
@pytest.mark.skipif(not have("qemu-img", "sfdisk"), reason="needs qemu-img and sfdisk")
def test_btrfs_in_an_unaligned_partition_of_a_qcow2(btrfs_img, tree, tmp_path, monkeypatch):
    """The volume at sector 63 of a QCOW2 (64 KiB clusters): Btrfs sectors straddle cluster
    boundaries, and the zeros mkfs stored for holes.bin's hole are clusters qemu-img left
    unallocated; the checksums are still checked over both before the kernel copies."""
    raw = tmp_path / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(130 * M)
    run("sfdisk", "-q", raw, input=f"label: dos\nstart=63, size={128 * M // 512}, type=83\n")
    with open(btrfs_img, "rb") as src, open(raw, "r+b") as dst:
        for at in range(0, 128 * M, M):
            block = src.read(M)
            if block.strip(b"\0"):
                os.pwrite(dst.fileno(), block, 63 * 512 + at)
    qcow = tmp_path / "disk.qcow2"
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow)
    with vdinspect.open(qcow) as d:
        fs = d.filesystem(d.filesystem_volumes()[0].key)
        pieces = assert_ranges_match_tree(fs, tree, ["/big.bin", "/d/f11"])
        assert {h.path for h, _o, _k in pieces} == {str(qcow)}
        holes = fs.content(fs.lookup("/holes.bin")).host_ranges(0, 1524 * K)
        assert any(h is None for h, _o, _k in holes)  # unallocated clusters inside the extent
        assert any(k % 4096 for _h, _o, k in holes)  # and sectors split between pieces
        assert pread_ranges(holes) == (tree / "holes.bin").read_bytes()[:1524 * K]
        calls = extract_and_compare(fs, tree, tmp_path / "out", monkeypatch)
    assert sum(calls) >= 3 * M


@needs_btrfs
@pytest.mark.parametrize("csum", ["xxhash", "sha256", "blake2"])
def test_btrfs_other_checksums(tree, tmp_path, csum):
    img = tmp_path / "c.raw"
    with open(img, "wb") as f:
        f.truncate(128 * M)
    try:
        run("mkfs.btrfs", "-q", "-f", "--csum", csum, "--rootdir", tree, img)
    except RuntimeError as e:
        pytest.skip(f"mkfs.btrfs --csum {csum}: {e}")
    fs = open_filesystem(FileSource(img))
    assert_ranges_match_tree(fs, tree, ["/big.bin", "/d/f5"])


# --- Btrfs, two devices written by the kernel ------------------------------------------------

def _mounted_raid(tree: Path, work: Path, profile: list[str], count: int) -> list[Path]:
    """``count`` 256 MiB image files made one Btrfs by mkfs.btrfs (``profile``), the tree
    copied in by the kernel through loop devices; skips where loop mounts are refused."""
    if os.geteuid() != 0 or not have("mkfs.btrfs", "losetup", "mount", "umount"):
        pytest.skip("needs root, btrfs-progs, losetup and mount")
    imgs = [work / f"dev{i}.img" for i in range(count)]
    for p in imgs:
        with open(p, "wb") as f:
            f.truncate(256 * M)
    try:
        run("mkfs.btrfs", "-q", "-f", *profile, *imgs)
    except RuntimeError as e:
        pytest.skip(f"mkfs.btrfs {' '.join(profile)}: {e}")
    loops: list[str] = []
    mnt = work / "mnt"
    mnt.mkdir()
    try:
        for p in imgs:
            r = subprocess.run(["losetup", "--show", "-f", str(p)], capture_output=True,
                               text=True)
            if r.returncode:
                pytest.skip(f"losetup failed: {r.stderr.strip()}")
            loops.append(r.stdout.strip())
        run("btrfs", "device", "scan", *loops, check=False)
        opts = ",".join(f"device={lo}" for lo in loops[1:])
        r = subprocess.run(["mount", "-t", "btrfs", "-o", opts, loops[0], str(mnt)],
                           capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"mount refused: {r.stderr.strip()}")
        try:
            run("cp", "-a", f"{tree}/.", mnt)
        finally:
            subprocess.run(["umount", str(mnt)], capture_output=True, check=True)
    finally:
        for lo in loops:
            subprocess.run(["losetup", "-d", lo], capture_output=True)
    return imgs


RAID = {"raid0": (["-d", "raid0", "-m", "raid1"], 2), "raid1": (["-d", "raid1"], 2),
        "raid10": (["-d", "raid10", "-m", "raid10"], 4), "raid5": (["-d", "raid5"], 3)}


@pytest.mark.xdist_group("kernel-mounts")
@needs_copy
@pytest.mark.parametrize("profile", [pytest.param(p, marks=pytest.mark.slow) if p == "raid10"
                                     else p for p in RAID])
def test_btrfs_several_devices(tree, tmp_path, monkeypatch, profile):
    """RAID0/10/5 data in 64 KiB stripe units taken from each device in turn, RAID1 one
    whole copy; with a RAID5 device gone no range on it is claimed (parity rebuilds it)
    and extraction still gives the tree's bytes."""
    opts, count = RAID[profile]
    imgs = _mounted_raid(tree, tmp_path, opts, count)
    fs = open_filesystem(FileSource(imgs[0]), devices=[FileSource(p) for p in imgs[1:]])
    pieces = assert_ranges_match_tree(fs, tree, ["/big.bin", "/holes.bin", "/d/f19"])
    hosts = [h.path for h, _o, _k in pieces if h is not None]
    if profile == "raid1":  # one copy: a whole extent from one device
        assert len(set(hosts)) == 1
    else:
        assert len(set(hosts)) == (2 if profile == "raid10" else count)
        # RAID5 rotates parity: a row's last unit and the next row's first are one piece
        unit = 128 * K if profile == "raid5" else 64 * K
        assert len(hosts) >= 3 * M // unit and all(k <= unit for _h, _o, k in pieces)
    # the kernel's copy kept the hole (mkfs --rootdir stores zeros): named as zeros
    holes = fs.content(fs.lookup("/holes.bin")).host_ranges(0, 1524 * K)
    assert (None, 0, 1024 * K) in holes
    calls = extract_and_compare(fs, tree, tmp_path / "out", monkeypatch)
    assert sum(calls) >= 3 * M
    fd = os.open(tmp_path / "out" / "holes.bin", os.O_RDONLY)
    try:  # and it stays a hole on the host
        assert os.lseek(fd, 200 * K, os.SEEK_DATA) >= 1224 * K
    finally:
        os.close(fd)
    if profile == "raid5":
        rest = [FileSource(p) for p in imgs[1:]]
        degraded = open_filesystem(rest[0], devices=rest[1:], strict=False)
        src = degraded.content(degraded.lookup("/big.bin"))
        assert src.host_ranges(0, src.size) is None
        extract_and_compare(degraded, tree, tmp_path / "degraded", monkeypatch)


# --- LVM: striped (lvm2 places the bytes) and linear across two images -------------------------

@needs_copy
@pytest.mark.skipif(not have("mke2fs"), reason="needs mke2fs")
def test_striped_lvm_extract_copies_in_the_kernel(tree, tmp_path, monkeypatch):
    def payload(size: int) -> Path:
        img = tmp_path / "ext4.img"
        run("mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", tree, img,
            f"{size // K}K")
        return img

    disk = striped_lvm_disk(tmp_path / "disk.img", 24 * M, payload, tmp_path)
    with vdinspect.open(disk) as d:
        fs = d.filesystem("hrvg/str")
        pieces = assert_ranges_match_tree(fs, tree, ["/big.bin", "/holes.bin", "/d/f3"])
        starts = sorted(o for h, o, _k in pieces if h is not None)
        part2 = d.volumes().find("2").start
        # 64 KiB chunks from both PVs (both partitions of the one disk image)
        assert starts[0] < part2 <= starts[-1] and all(k <= 64 * K for *_x, k in pieces)
        calls = extract_and_compare(fs, tree, tmp_path / "out", monkeypatch)
    assert sum(calls) >= 3 * M


def test_linear_lv_across_two_images_host_ranges(two_pvs):  # noqa: F811 (the fixture)
    """An LV of two segments on two disk images (volume_builder writes the PVs from the
    LVM2 format; the fixture of tests/volumes/test_volume_groups.py): Concat's host ranges
    cross from one host file to the other."""
    from tests.volumes.test_volume_groups import PE_START

    a_img, b_img, want = two_pvs
    data = PE_START * 512
    with vdinspect.open([a_img, b_img]) as group:
        src = group.volume("vg/span")
        assert isinstance(src, Concat)
        pieces = src.host_ranges(M, 3 * M)
        assert [(os.path.basename(h.path), o, k) for h, o, k in pieces] == [
            ("a.img", data + 2 * M, M), ("b.img", data, 2 * M)]
        assert pread_ranges(pieces) == want[M:4 * M]
    assert Concat([Zero(5), Zero(7)]).host_ranges(2, 8) == [(None, 0, 8)]


# --- block_size and structures() host_file -----------------------------------------------------

@needs_btrfs
@pytest.mark.parametrize("sectorsize", [4096, 16384])
def test_btrfs_block_size_is_the_sectorsize(tree, tmp_path, sectorsize):
    img = tmp_path / "b.raw"
    with open(img, "wb") as f:
        f.truncate(128 * M)
    try:
        run("mkfs.btrfs", "-q", "-f", "-s", sectorsize, "--nodesize", 16384, img)
    except RuntimeError as e:
        pytest.skip(f"mkfs.btrfs refuses sector size {sectorsize}: {e}")
    super_ = run("btrfs", "inspect-internal", "dump-super", img)
    want = int(re.search(r"^sectorsize\s+(\d+)", super_, re.M).group(1))
    fs = open_filesystem(FileSource(img))
    assert want == sectorsize and fs.block_size == want
    assert fs.info()["block_size"] == want


def _fat(img: Path) -> None:
    run("mkfs.vfat", "-C", img, 16 * K)


def _exfat(img: Path) -> None:
    with open(img, "wb") as f:
        f.truncate(16 * M)
    run("mkfs.exfat", img)


def _ntfs(img: Path) -> None:
    with open(img, "wb") as f:
        f.truncate(16 * M)
    run("mkntfs", "-q", "-F", "-f", img)


def _ext4(img: Path) -> None:
    run("mke2fs", "-q", "-F", "-t", "ext4", img, "16M")


def _xfs(img: Path) -> None:
    with open(img, "wb") as f:
        f.truncate(300 * M)
    run("mkfs.xfs", "-q", "-f", img)


def _btrfs(img: Path) -> None:
    with open(img, "wb") as f:
        f.truncate(128 * M)
    run("mkfs.btrfs", "-q", "-f", img)


MAKERS = {"fat": ("mkfs.vfat", _fat), "exfat": ("mkfs.exfat", _exfat),
          "ntfs": ("mkntfs", _ntfs), "ext4": ("mke2fs", _ext4), "xfs": ("mkfs.xfs", _xfs),
          "btrfs": ("mkfs.btrfs", _btrfs)}


@pytest.mark.parametrize("kind", list(MAKERS))
def test_structures_name_their_volume(tmp_path, kind):
    """Every driver's structures() rows say where they lie (the volume's name, as ext and
    XFS did), with offsets inside it."""
    tool, make = MAKERS[kind]
    if not have(tool):
        pytest.skip(f"needs {tool}")
    img = tmp_path / f"{kind}.img"
    make(img)
    with vdinspect.open(img) as d:
        fs = d.filesystem(d.filesystem_volumes()[0].key)
        df = fs.structures()
        assert len(df) and df["host_file"].notna().all(), kind
        assert set(df["host_file"]) == {fs.name}
        assert ((df["host_offset"] >= 0) & (df["host_offset"] + df["length"]
                                            <= fs.source.size)).all()


def test_btrfs_structure_host_file_names_each_device(btrfs_img):
    fs = open_filesystem(FileSource(btrfs_img))
    assert set(fs.structures()["host_file"]) == {str(btrfs_img)}
