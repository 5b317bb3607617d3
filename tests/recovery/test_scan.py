"""Lost partitions and embedded images (vdinspect.recovery.scan), against the real tools.

Disks are partitioned by sfdisk and formatted by mkfs.vfat / mke2fs / mkntfs / mkfs.xfs /
mkswap / mkfs.btrfs / mkfs.exfat; then the partition table is wiped (MBR, primary and
backup GPT) and the scan must give back the starts and lengths sfdisk wrote, and the
filesystems must list the files put there. TestDisk's headless analysis runs on the same
disk where it is installed. Embedded images are made by qemu-img and read back against
``qemu-img convert -O raw`` of the original file. LVM2 physical volumes and LUKS2 headers
are built from their specifications (tests/volume_builder.py; the LUKS2 binary header
below), since lvm2 needs a loop device; LUKS1 and LUKS2 volumes are also written by
``cryptsetup luksFormat`` (on plain files, no root needed).
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import vdinspect
from tests.conftest import have
from tests.tools import run

SECTOR = 512
MiB = 1 << 20

# (sfdisk type, sectors, filesystem the probe names, mkfs command, label)
LAYOUT = [
    ("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", 131072, "fat32",
     ["mkfs.vfat", "-F", "32", "-s", "1", "-n", "FATP"]),
    ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", 81920, "ext4",
     ["mke2fs", "-q", "-t", "ext4", "-L", "EXTP", "-d", "{tree}"]),
    ("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", 65536, "ntfs",
     ["mkntfs", "-q", "-F", "-Q", "-L", "NTFSP", "-p", "{start}"]),
    ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", 131072, "xfs", ["mkfs.xfs", "-q", "-L", "XFSP"]),
    ("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", 16384, "swap", ["mkswap", "-L", "SW"]),
    ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", 262144, "btrfs",
     ["mkfs.btrfs", "-q", "-L", "BTRP", "--rootdir", "{tree}"]),
    ("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", 32768, "exfat", ["mkfs.exfat", "-L", "EXFP"]),
]
MKFS = ["sfdisk", "mkfs.vfat", "mke2fs", "mkntfs", "mkfs.xfs", "mkswap", "mkfs.btrfs",
        "mkfs.exfat", "mcopy"]
FILES = {"hello.txt": b"hello from a lost partition\n", "notes/w.txt": b"world\n" * 100}


def _copy_sparse(src: Path, dest: Path, offset: int) -> None:
    """Write ``src`` into ``dest`` at ``offset``, leaving all-zero MiB blocks as holes."""
    with open(src, "rb") as f, open(dest, "r+b") as g:
        pos = 0
        while block := f.read(MiB):
            if block.count(0) != len(block):
                g.seek(offset + pos)
                g.write(block)
            pos += len(block)


def _tree(tmp: Path) -> Path:
    tree = tmp / "tree"
    for name, data in FILES.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    return tree


def _wipe_tables(path: Path, sectors: int) -> None:
    """Zero the MBR, the primary GPT (LBA 0-33) and the backup GPT (the last 33 LBAs)."""
    with open(path, "r+b") as f:
        f.write(bytes(34 * SECTOR))
        f.seek((sectors - 33) * SECTOR)
        f.write(bytes(33 * SECTOR))


@pytest.fixture(scope="module")
def wiped(tmp_path_factory):
    """A 400 MiB GPT disk with seven filesystems, its table wiped; (path, [(start, size,
    fs)], the intact copy). mkfs.xfs makes a 64 MiB filesystem only for fstests (its
    TEST_DIR/TEST_DEV/QA_CHECK_FS variables lift the 300 MiB minimum)."""
    if not have(*MKFS):
        pytest.skip("sfdisk/mkfs tools missing")
    tmp = tmp_path_factory.mktemp("wiped")
    tree = _tree(tmp)
    disk = tmp / "disk.raw"
    total = 819200
    with open(disk, "wb") as f:
        f.truncate(total * SECTOR)
    script, start, parts = "label: gpt\n", 2048, []
    for ptype, size, fs, _ in LAYOUT:
        script += f"start={start}, size={size}, type={ptype}\n"
        parts.append((start, size, fs))
        start += size
    run("sfdisk", "-q", disk, input=script)
    for (start, size, fs), (_, _, _, cmd) in zip(parts, LAYOUT):
        img = tmp / f"{fs}.img"
        with open(img, "wb") as f:
            f.truncate(size * SECTOR)
        run(*[c.format(tree=tree, start=start) for c in cmd], img, env=dict(
            os.environ, TEST_DIR=str(tmp), TEST_DEV=str(img), QA_CHECK_FS="1"))
        if fs == "fat32":
            run("mmd", "-i", img, "::/notes")
            for name in FILES:
                run("mcopy", "-i", img, tree / name, f"::/{name}")
        _copy_sparse(img, disk, start * SECTOR)
        img.unlink()
    table = json.loads(run("sfdisk", "-J", disk))["partitiontable"]["partitions"]
    assert [(p["start"], p["size"]) for p in table] == [(s, n) for s, n, _ in parts]
    intact = tmp / "intact.raw"
    run("cp", "--sparse=always", disk, intact)
    _wipe_tables(disk, total)
    return disk, parts, intact


def test_wiped_gpt_disk_gives_back_every_partition(wiped):
    disk, parts, _ = wiped
    with vdinspect.open(disk) as d:
        assert d.partitions()["scheme"].tolist() == ["none"]  # the table is gone
        df = d.scan_partitions()
    got = [(int(r.start) // SECTOR, int(r.length) // SECTOR, r.filesystem) for r in
           df.itertuples()]
    assert got == parts
    assert df.attrs["complete"] and df.attrs["check"].empty
    assert df["label"].tolist() == ["FATP", "EXTP", "NTFSP", "XFSP", "SW", "BTRP", "EXFP"]
    assert (df["confidence"] > 0.5).all()
    # each find rests on more than one structure (a backup copy, or the probe)
    assert (df["evidence"] >= 2).all()
    by_fs = dict(zip(df["filesystem"], df["found_by"]))
    assert "backup" in by_fs["ntfs"] and "group 1" in by_fs["ext4"]
    assert "AG 1" in by_fs["xfs"] and "mirror 1" in by_fs["btrfs"]
    assert "backup" in by_fs["fat32"] and "backup" in by_fs["exfat"]


def test_backup_copies_give_the_start_when_the_primary_is_gone(wiped, tmp_path):
    """Destroy each filesystem's primary structure too (boot sector, superblock): the
    backups (FAT32 sector 6, NTFS last sector, exFAT sector 12, ext group 1, XFS AG 1,
    Btrfs mirror at 64 MiB) still give the same starts and lengths."""
    disk, parts, _ = wiped
    copy = tmp_path / "worse.raw"
    run("cp", "--sparse=always", disk, copy)
    primary = {"fat32": (0, 512), "ext4": (1024, 1024), "ntfs": (0, 512), "xfs": (0, 512),
               "btrfs": (65536, 4096), "exfat": (0, 512)}
    with open(copy, "r+b") as f:
        for start, _, fs in parts:
            if fs in primary:
                at, n = primary[fs]
                f.seek(start * SECTOR + at)
                f.write(bytes(n))
    with vdinspect.open(copy) as d:
        df = d.scan_partitions()
    got = [(int(r.start) // SECTOR, int(r.length) // SECTOR, r.filesystem) for r in
           df.itertuples()]
    assert got == parts
    for fs, found in zip(df["filesystem"], df["found_by"]):
        if fs in primary:
            assert "backup" in found or "AG 1" in found or "mirror 1" in found, found


def test_an_intact_table_is_evidence_too(wiped):
    """On the disk before wiping, the GPT entries join the filesystems' evidence: the
    rows carry the table's types, as ``sfdisk -J`` lists them, and partitions() agrees."""
    _, parts, intact = wiped
    table = json.loads(run("sfdisk", "-J", intact))["partitiontable"]["partitions"]
    with vdinspect.open(intact) as d:
        df = d.scan_partitions()
        listed = d.partitions()
    assert (df["scheme"] == "gpt").all()
    assert [(int(r.start) // SECTOR, int(r.length) // SECTOR, r.type.upper()) for r in
            df.itertuples()] == [(p["start"], p["size"], p["type"]) for p in table]
    listed = listed[listed["type"] != "unallocated"]
    assert df["start"].tolist() == listed["start"].tolist()
    assert df["filesystem"].tolist() == listed["filesystem"].tolist()
    assert all("gpt primary entry" in f and "gpt backup entry" in f for f in df["found_by"])


@pytest.mark.parametrize("name", ["gpt-fat32-ext4-ntfs.qcow2", "mbr-logical.qcow2"])
def test_sample_disks_agree_with_mmls(name):
    """The repository's sample disks (qcow2: only allocated clusters are read) against the
    partitions The Sleuth Kit's mmls listed when they were made (``*.mmls.txt``)."""
    from tests.conftest import SAMPLE_IMAGES

    text = (SAMPLE_IMAGES / f"{name}.mmls.txt").read_text()
    want = [(int(m[1]), int(m[2])) for m in
            re.finditer(r"^\d+:\s+\d+(?::\d+)?\s+(\d+)\s+\d+\s+(\d+)", text, re.M)]
    with vdinspect.open(SAMPLE_IMAGES / name) as d:
        df = d.scan_partitions()
    assert [(int(r.start) // SECTOR, int(r.length) // SECTOR) for r in df.itertuples()] == want
    if not name.startswith("gpt"):
        return
    # inside one partition (CLI --part): offsets are the partition's
    r = _cli("scan", "--json", "--part", "1", SAMPLE_IMAGES / name)
    inside = json.loads(r.stdout)
    assert r.returncode == 0 and inside[0]["start"] == 0
    assert inside[0]["length"] == df["length"][0]


@pytest.mark.parametrize("fstype", ["fat32", "ext4", "btrfs"])
def test_found_filesystem_opens_and_lists_the_files(wiped, fstype):
    disk, _, _ = wiped
    with vdinspect.open(disk) as d:
        df = d.scan_partitions()
        row = df[df["filesystem"] == fstype].iloc[0]
        fs = d.filesystem(row)
        files = fs.files()
        paths = {p.lstrip("/") for p in files.loc[files["kind"] == "file", "path"]}
        assert set(FILES) <= paths
        for name, data in FILES.items():
            assert fs.read_file("/" + name) == data if hasattr(fs, "read_file") else True


def test_found_ntfs_and_xfs_open(wiped):
    disk, _, _ = wiped
    with vdinspect.open(disk) as d:
        df = d.scan_partitions()
        for fstype, label in (("ntfs", "NTFSP"), ("xfs", "XFSP"), ("exfat", "EXFP")):
            fs = d.filesystem(df[df["filesystem"] == fstype].iloc[0])
            assert fs.info()["label"] == label


def test_sfdisk_script_rebuilds_the_table(wiped, tmp_path):
    """The script sfdisk applies to a copy gives the table sfdisk first wrote (start, size)."""
    from vdinspect.recovery.scan import sfdisk_script

    disk, parts, intact = wiped
    with vdinspect.open(disk) as d:
        script = sfdisk_script(d.scan_partitions())
    copy = tmp_path / "copy.raw"
    run("cp", "--sparse=always", disk, copy)
    run("sfdisk", "-q", copy, input=script)
    rebuilt = json.loads(run("sfdisk", "-J", copy))["partitiontable"]["partitions"]
    original = json.loads(run("sfdisk", "-J", intact))["partitiontable"]["partitions"]
    assert [(p["start"], p["size"], p["type"]) for p in rebuilt] == \
        [(p["start"], p["size"], p["type"]) for p in original]


def _testdisk(disk: Path, cwd: Path) -> list[tuple[int, int, str]]:
    """TestDisk's analysis (``/cmd IMAGE partition_none,analyze``): (start LBA, sectors,
    type) from its log's last list of partitions."""
    run("testdisk", "/log", "/cmd", disk, "partition_none,analyze", cwd=cwd, timeout=600)
    log = (cwd / "testdisk.log").read_text(errors="replace")
    geo = re.findall(r"CHS (\d+) (\d+) (\d+)", log)[-1]
    heads, spt = int(geo[1]), int(geo[2])
    block = log.rsplit("interface_write()", 1)[1]
    out = []
    for m in re.finditer(r"^\s+[PLDE*]\s+(.+?)\s+(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+\d+\s+\d+"
                         r"\s+(\d+)(?:\s+\[.*)?$", block, re.M):
        c, h, s = int(m[2]), int(m[3]), int(m[4])
        out.append(((c * heads + h) * spt + s - 1, int(m[5]), m[1]))
    return out


@pytest.mark.skipif(not have("testdisk"), reason="testdisk missing")
def test_testdisk_finds_the_same_starts(wiped, tmp_path):
    """TestDisk (an independent search) finds every start we do; the extra ones it lists
    are recorded in docs/recovery.md (a second NTFS from a backup boot sector, a swap
    16 sectors short)."""
    disk, parts, _ = wiped
    copy = tmp_path / "td.raw"
    run("cp", "--sparse=always", disk, copy)
    theirs = _testdisk(copy, tmp_path)
    with vdinspect.open(disk) as d:
        ours = [(int(r.start) // SECTOR, int(r.length) // SECTOR) for r in
                d.scan_partitions().itertuples()]
    assert {s for s, _ in ours} <= {s for s, _, _ in theirs}
    same = {(s, n) for s, n, _ in theirs} & set(ours)
    assert len(same) >= len(ours) - 1  # TestDisk sizes swap by its last page


@pytest.mark.skipif(not have("sfdisk", "mke2fs", "mkfs.vfat"), reason="sfdisk/mkfs missing")
def test_logical_partitions_found_by_their_ebrs(tmp_path):
    """An MBR disk with logical partitions, sector 0 wiped: the EBRs still name the
    logicals, and the primary is found by its filesystem."""
    disk = tmp_path / "mbr.raw"
    with open(disk, "wb") as f:
        f.truncate(64 * MiB)
    run("sfdisk", "-q", disk, input="label: dos\nstart=2048, size=20480, type=83\n"
        "start=22528, size=100000, type=5\nstart=24576, size=30720, type=83\n"
        "start=57344, size=40960, type=c\n")
    table = json.loads(run("sfdisk", "-J", disk))["partitiontable"]["partitions"]
    data = [(p["start"], p["size"]) for p in table if p["type"] != "5"]
    for (start, size), cmd in zip(data, (["mke2fs", "-q", "-t", "ext2"],
                                         ["mke2fs", "-q", "-t", "ext3"], ["mkfs.vfat"])):
        img = tmp_path / "p.img"
        with open(img, "wb") as f:
            f.truncate(size * SECTOR)
        run(*cmd, img)
        _copy_sparse(img, disk, start * SECTOR)
    with open(disk, "r+b") as f:
        f.write(bytes(SECTOR))
    with vdinspect.open(disk) as d:
        df = d.scan_partitions()
    assert [(int(r.start) // SECTOR, int(r.length) // SECTOR) for r in df.itertuples()] == data
    assert df["filesystem"].tolist() == ["ext2", "ext3", "fat16"]
    assert df["scheme"].tolist() == ["none", "mbr", "mbr"]
    assert all("ebr at" in f for f in df["found_by"][1:])


def _luks2_header(offset: int, uuid: str) -> bytes:
    """A LUKS2 binary header (cryptsetup's LUKS2 on-disk format, section 2)."""
    h = bytearray(4096)
    h[0:6] = b"LUKS\xba\xbe" if offset == 0 else b"SKUL\xba\xbe"
    h[6:8] = (2).to_bytes(2, "big")
    struct.pack_into(">QQ", h, 8, 16384, 1)  # hdr_size, seqid
    h[168:168 + len(uuid)] = uuid.encode()
    struct.pack_into(">Q", h, 256, offset)  # hdr_offset
    return bytes(h)


def test_lvm2_pv_and_luks2_from_their_specifications(tmp_path):
    """A PV label (sector 1) and a LUKS2 volume whose primary header is destroyed (its
    secondary header at 16 KiB gives the start); the LUKS2 area runs to the next find."""
    from tests.volume_builder import lvm_uuid, write_pv

    buf = bytearray(32 * MiB)
    pv_start, pv_size = 1 * MiB, 12 * MiB
    write_pv(buf, pv_start, pv_size, lvm_uuid("pv0"), None)
    if have("mke2fs"):  # a filesystem in the PV's data area (an LV's) stays inside the PV
        lv = tmp_path / "lv.img"
        with open(lv, "wb") as f:
            f.truncate(8 * MiB)
        run("mke2fs", "-q", "-t", "ext4", "-b", "1024", "-g", "1024", lv)  # 4 backups
        data = lv.read_bytes()
        buf[pv_start + MiB: pv_start + MiB + len(data)] = data
    luks_start = 16 * MiB
    buf[luks_start + 16384: luks_start + 16384 + 4096] = _luks2_header(
        16384, "3f2a0c6e-8b5d-4a59-9a8e-2b6d6c7c1d10")
    disk = tmp_path / "lvm-luks.raw"
    disk.write_bytes(bytes(buf))
    with vdinspect.open(disk) as d:
        df = d.scan_partitions()
    assert df[["start", "length", "filesystem"]].values.tolist() == [
        [pv_start, pv_size, "LVM2_member"], [luks_start, 16 * MiB, "crypto_LUKS"]]
    assert "secondary" in df["found_by"][1]
    assert df["uuid"][1] == "3f2a0c6e-8b5d-4a59-9a8e-2b6d6c7c1d10"


@pytest.mark.skipif(not have("cryptsetup", "sfdisk"), reason="cryptsetup/sfdisk missing")
def test_luks1_and_luks2_written_by_cryptsetup(tmp_path):
    """Two GPT partitions holding LUKS1 and LUKS2 volumes that ``cryptsetup luksFormat``
    wrote (on plain files, no root needed), the table wiped: the scan finds each header
    at its partition's start with the UUID ``cryptsetup luksUUID`` prints; a LUKS header
    does not say the volume's length, so the first runs to the next find."""
    key = tmp_path / "key"
    key.write_bytes(b"not a secret")
    total, size = 131072, 49152  # sectors: a 64 MiB disk, two 24 MiB partitions
    starts = [2048, 2048 + size]
    disk = tmp_path / "luks.raw"
    with open(disk, "wb") as f:
        f.truncate(total * SECTOR)
    run("sfdisk", "-q", disk, input="label: gpt\n" + "".join(
        f"start={s}, size={size}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n" for s in starts))
    uuids = []
    for start, kind in zip(starts, ("luks1", "luks2")):
        vol = tmp_path / f"{kind}.img"
        with open(vol, "wb") as f:
            f.truncate(size * SECTOR)
        pbkdf = ["--pbkdf", "pbkdf2"] if kind == "luks2" else []
        run("cryptsetup", "luksFormat", "--batch-mode", "--type", kind, *pbkdf,
            "--pbkdf-force-iterations", "1000", "--key-file", key, vol)
        uuids.append(run("cryptsetup", "luksUUID", vol).strip())
        version = re.search(r"^Version:\s*(\d)", run("cryptsetup", "luksDump", vol), re.M)
        assert version and version.group(1) == kind[-1]
        _copy_sparse(vol, disk, start * SECTOR)
    _wipe_tables(disk, total)
    with vdinspect.open(disk) as d:
        assert d.partitions()["scheme"].tolist() == ["none"]
        df = d.scan_partitions()
    luks = df[df["filesystem"] == "crypto_LUKS"]
    assert [int(x) // SECTOR for x in luks["start"]] == starts
    assert luks["uuid"].tolist() == uuids
    assert "luks1 header" in luks["found_by"].iloc[0]
    assert "luks2 header" in luks["found_by"].iloc[1]
    assert int(luks["length"].iloc[0]) == size * SECTOR  # up to the LUKS2 header


# --- images inside disks -------------------------------------------------------------------

def _make_images(tmp: Path) -> dict[str, Path]:
    from tests.qemu_tools import create, qemu_io

    out = {}
    for name, fmt, opts in (("a.qcow2", "qcow2", ()), ("b.vmdk", "vmdk", ()),
                            ("c.vhdx", "vhdx", ()), ("d.vdi", "vdi", ()),
                            ("e.vhd", "vpc", ()), ("f.vhd", "vpc", ("subformat=fixed",)),
                            ("g.vmdk", "vmdk", ("subformat=streamOptimized",)),
                            ("h.hds", "parallels", ())):
        p = create(tmp / name, "8M", fmt, *opts)
        qemu_io(p, "write -P 0x5a 1M 64k", "write -P 0xa5 5M 64k", fmt=fmt)
        out[name] = p
    return out


@pytest.mark.skipif(not have("qemu-img", "qemu-io"), reason="qemu-img/qemu-io missing")
def test_images_inside_a_host_open_in_place(tmp_path):
    """Images at known offsets of a raw host (random bytes between them): each is found with
    its start and extent, and reads through ``vdinspect.open(host, offset=, length=)`` as
    ``qemu-img convert -O raw`` reads the original."""
    from tests.qemu_tools import to_raw_bytes

    images = _make_images(tmp_path)
    host = tmp_path / "host.raw"
    placed = {}
    with open(host, "wb") as f:
        f.write(os.urandom(MiB))
        for name, p in images.items():
            placed[name] = (f.tell(), p.stat().st_size)
            f.write(p.read_bytes())
            f.write(os.urandom(3 * 4096 + (-f.tell()) % 4096))
    with vdinspect.open(host) as d:
        df = d.scan_images()
    assert df["start"].tolist() == [s for s, _ in placed.values()]
    assert df["opened"].all() and (df["errors"] == 0).all(), df["note"].tolist()
    for row, (name, (start, size)) in zip(df.itertuples(), placed.items()):
        original = images[name].read_bytes()
        if name == "g.vmdk":  # qemu pads a stream-optimized file past its end-of-stream marker
            assert row.length <= size and not original[row.length:].strip(b"\0")
        else:
            assert row.length == size, name
        with vdinspect.open(host, offset=start, length=row.length) as emb:  # NumPy ints
            fmt = {"e.vhd": "vpc", "f.vhd": "vpc"}.get(name)  # qemu takes a fixed VHD for raw
            assert emb.read(0, emb.size) == to_raw_bytes(images[name], tmp_path, fmt=fmt)
    assert df["format"].tolist() == ["qcow2", "vmdk", "vhdx", "vdi", "vhd", "vhd", "vmdk",
                                     "parallels"]
    # the host itself a qcow2 (qemu-img convert): the same finds, opened through a Slice
    from tests.qemu_tools import qemu_img
    from vdinspect.io import Slice

    hq = tmp_path / "host.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(host), str(hq))
    with vdinspect.open(hq) as d:
        dq = d.scan_images()
        assert dq[["start", "length", "format"]].equals(df[["start", "length", "format"]])
        row = dq.iloc[0]
        with vdinspect.open(Slice(d, int(row.start), int(row.length))) as emb:
            assert emb.read(0, emb.size) == to_raw_bytes(images["a.qcow2"], tmp_path)


@pytest.mark.skipif(not have("qemu-img", "qemu-io"), reason="qemu-img/qemu-io missing")
def test_a_differencing_image_names_its_parent_found_beside_it(tmp_path):
    """A VMDK overlay and its base (qemu-img create -b) both inside a host: the overlay's
    row names the base's place, checked by the overlay's parentCID; with a copy of the
    base as parents=, the overlay reads as qemu-img reads the chain."""
    from tests.qemu_tools import create, qemu_io, to_raw_bytes

    base = create(tmp_path / "base.vmdk", "8M", "vmdk")
    qemu_io(base, "write -P 0x11 0 64k", fmt="vmdk")
    child = create(tmp_path / "child.vmdk", "8M", "vmdk", backing=base, backing_fmt="vmdk")
    qemu_io(child, "write -P 0x22 1M 64k", fmt="vmdk")
    other = create(tmp_path / "other.vmdk", "8M", "vmdk")  # a base that is not the parent
    host = tmp_path / "host.raw"
    data = os.urandom(MiB) + other.read_bytes() + base.read_bytes() + child.read_bytes()
    host.write_bytes(data + os.urandom(4096))
    at_base = MiB + other.stat().st_size
    at_child = at_base + base.stat().st_size
    with vdinspect.open(host) as d:
        df = d.scan_images()
    assert df["start"].tolist() == [MiB, at_base, at_child] and df["opened"].all()
    assert f"found here at {at_base:#x}" in df["note"][2]
    copy = tmp_path / "found" / "base.vmdk"
    copy.parent.mkdir()
    copy.write_bytes(data[at_base:at_base + int(df["length"][1])])
    with vdinspect.open(host, offset=at_child, length=df["length"][2], parents=copy) as d:
        assert d.read(0, d.size) == to_raw_bytes(child, tmp_path)


@pytest.mark.skipif(not have("qemu-img", "qemu-io", "mkfs.vfat", "mcopy", "mdel"),
                    reason="qemu/mtools missing")
def test_deleted_vm_disk_in_a_fat_filesystem(tmp_path):
    """The seed case: a VM disk file deleted from its host filesystem. Its clusters are
    still there; scan_images finds the image and it opens in place."""
    from tests.qemu_tools import to_raw_bytes

    img = _make_images(tmp_path)["a.qcow2"]
    host = tmp_path / "fat.raw"
    with open(host, "wb") as f:
        f.truncate(32 * MiB)
    run("mkfs.vfat", "-s", "8", host)
    run("mcopy", "-i", host, img, "::/vm.qcow2")
    run("mdel", "-i", host, "::/vm.qcow2")
    assert "vm" not in run("mdir", "-i", host, "::/")
    with vdinspect.open(host) as d:
        df = d.scan_images()
    assert len(df) == 1 and df["opened"][0] and df["length"][0] == img.stat().st_size
    expected = to_raw_bytes(img, tmp_path)
    with vdinspect.open(host, offset=int(df["start"][0]), length=int(df["length"][0])) as emb:
        assert emb.read(0, emb.size) == expected
    # and through the filesystem: the deleted file's recovered bytes open as a disk
    with vdinspect.open(host) as d:
        fs = d.filesystem()
        entry = fs.lookup("/vm.qcow2", deleted=True)
        with vdinspect.open(fs.content(entry)) as emb:
            assert emb.info()["format"] == "qcow2"
            assert emb.read(0, emb.size) == expected


@pytest.mark.skipif(not have("qemu-img", "qemu-io", "mke2fs", "debugfs", "dumpe2fs"),
                    reason="qemu/e2fsprogs missing")
def test_deleted_sparse_vm_disk_in_ext4_is_reported_not_guessed(tmp_path):
    """mke2fs -d stores a VMDK's zero blocks as holes, so once the file is removed (debugfs
    rm clears its extents) its blocks are not one run: the scan finds the header where
    debugfs said the file began, and says it does not open, rather than read garbage."""
    img = _make_images(tmp_path)["b.vmdk"]
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "vm.vmdk").write_bytes(img.read_bytes())
    host = tmp_path / "ext4.raw"
    with open(host, "wb") as f:
        f.truncate(32 * MiB)
    run("mke2fs", "-q", "-t", "ext4", "-d", tree, host)
    first = int(run("debugfs", "-R", "bmap /vm.vmdk 0", host).split()[-1])
    bsize = int(re.search(r"Block size:\s+(\d+)", run("dumpe2fs", "-h", host))[1])
    run("debugfs", "-w", "-R", "rm /vm.vmdk", host)
    with vdinspect.open(host) as d:
        df = d.scan_images()
    assert df["start"][0] == first * bsize and df["format"][0] == "vmdk"
    assert (~df["opened"] | (df["errors"] > 0)).all() and df["note"][0]
    assert _cli("scan", "--no-partitions", host).returncode == 1


# --- bounds ------------------------------------------------------------------------------

def test_a_disk_full_of_fake_headers_stays_bounded(tmp_path):
    """Every sector claims to be a superblock, a boot sector or an image header: the scan
    keeps a bounded number of places and says how many it left."""
    sector = bytearray(SECTOR)
    sector[0:4] = b"XFSB"
    sector[56:58] = b"\x53\xef"
    sector[3:11] = b"NTFS    "
    sector[64:72] = b"_BHRfS_M"
    sector[510:512] = b"\x55\xaa"
    qcow = bytearray(SECTOR)
    qcow[0:8] = b"QFI\xfb\0\0\0\x02"  # version 2
    qcow[20:32] = struct.pack(">IQ", 16, 1 << 30)  # 64 KiB clusters, 1 GiB, no L1 table
    disk = tmp_path / "fake.raw"
    disk.write_bytes((bytes(sector) * 3 + bytes(qcow)) * 8192)  # 16 MiB
    from vdinspect.recovery.scan import Scan

    with vdinspect.open(disk) as d:
        scan = Scan(d, max_hits=512)
        parts, images = scan.partition_rows(), scan.image_rows()
        problems = scan.check_rows()
    assert len(parts) <= 1000 and len(images) <= 512
    assert any("were not examined" in p["message"] for p in problems)
    assert not any(r["opened"] for r in images)

def test_budget_covers_weighing_and_opening(tmp_path, monkeypatch):
    """The budget stops the weighing of evidence and the opening of images too, not only
    the read: a clock that jumps past the budget once the read is done (no timing)."""
    import types

    import vdinspect.recovery.scan as scan_pkg
    from vdinspect.recovery.scan import Scan

    sector = bytearray(SECTOR)
    sector[0:8] = b"QFI\xfb\0\0\0\x02"
    disk = tmp_path / "headers.raw"
    disk.write_bytes(bytes(SECTOR) + bytes(sector) * 64 + bytes(MiB))  # not a qcow2 itself
    ticks = iter([0.0] + [100.0] * 1000)  # the deadline is set at 0 s; then it is late
    monkeypatch.setattr(scan_pkg, "time", types.SimpleNamespace(monotonic=lambda: next(ticks)))
    with vdinspect.open(disk) as d:
        scan = Scan(d, budget=5)
        assert scan.read_bytes == d.size  # the read pass keeps its own clock: it finished
        assert scan.image_rows() == []
    assert not scan.complete
    assert any("time budget" in p["message"] for p in scan.check_rows())


@pytest.mark.skipif(not have("qemu-img"), reason="qemu-img missing")
def test_a_sparse_qcow2_reads_only_its_allocated_clusters(wiped, tmp_path):
    """The wiped disk converted to qcow2 and grown to 1 TiB: the scan finds the same
    partitions and reads exactly the bytes ``qemu-img map`` says hold data."""
    from tests.qemu_tools import qemu_img, qemu_map

    disk, parts, _ = wiped
    q = tmp_path / "disk.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(disk), str(q))
    qemu_img("resize", "-q", str(q), "1T")
    data = sum(e["length"] for e in qemu_map(q) if e["data"])
    seen = []
    with vdinspect.open(q) as d:
        df = d.scan_partitions(progress=lambda done, total: seen.append((done, total)))
    assert [(int(r.start) // SECTOR, int(r.length) // SECTOR, r.filesystem) for r in
            df.itertuples()] == parts
    assert seen[-1] == (data, data)


def test_many_valid_gpt_headers_stay_bounded(tmp_path):
    """Thousands of GPT headers with good CRCs, each at its own LBA and naming one shared
    array of 128 entries: the evidence weighed is capped and the cap is reported."""
    import zlib

    from tests.volume_builder import gpt_header

    entries = bytearray()
    for k in range(128):
        entries += (b"\x11" * 16 + bytes([k]) * 16
                    + struct.pack("<QQQ", 8192 + 64 * k, 8192 + 64 * k + 63, 0) + bytes(72))
    crc = zlib.crc32(bytes(entries))
    buf = bytearray(8 * MiB)
    buf[SECTOR * 2: SECTOR * 2 + len(entries)] = entries  # the array at LBA 2..33
    for lba in range(40, 8 * MiB // SECTOR):
        buf[lba * SECTOR:(lba + 1) * SECTOR] = gpt_header(
            my_lba=lba, alternate_lba=1, first_usable=34, last_usable=16000,
            disk_guid=b"\x22" * 16, entry_lba=2, num_entries=128, entry_size=128,
            array_crc=crc)
    disk = tmp_path / "gpts.raw"
    disk.write_bytes(bytes(buf))
    from vdinspect.recovery.scan import MAX_EVIDENCE, Scan

    with vdinspect.open(disk) as d:
        scan = Scan(d, images=False)
        rows = scan.partition_rows()
    assert len(scan.evidence) <= MAX_EVIDENCE + 256
    assert any("stopped weighing evidence" in p["message"] for p in scan.check_rows())
    assert len(rows) <= 128


def test_mutated_structures_never_crash_the_scan(wiped, tmp_path):
    """Bytes flipped at random in the first 64 KiB of each partition (boot sectors,
    superblocks) and in image headers: every scan ends with rows, never a traceback."""
    import random

    from vdinspect.recovery.scan import Scan

    disk, parts, _ = wiped
    rng = random.Random(17)
    with open(disk, "rb") as f:
        pieces = []
        for start, _, _ in parts:
            f.seek(start * SECTOR)
            pieces.append(f.read(64 * 1024))
    if have("qemu-img", "qemu-io"):
        pieces += [p.read_bytes()[:64 * 1024] for p in _make_images(tmp_path).values()]
    for round_ in range(40):
        buf = bytearray()
        for piece in pieces:
            b = bytearray(piece)
            for _ in range(rng.randint(1, 40)):
                b[rng.randrange(SECTOR * 4)] = rng.randrange(256)
            buf += b + bytes(-len(b) % 4096)
        host = tmp_path / f"m{round_}.raw"
        host.write_bytes(bytes(buf))
        with vdinspect.open(host) as d:
            scan = Scan(d)
            scan.partition_rows()
            scan.image_rows()
        host.unlink()


def test_budget_stops_the_scan_with_a_finding(wiped):
    disk, _, _ = wiped
    with vdinspect.open(disk) as d:
        df = d.scan_partitions(budget=1e-9)
    assert not df.attrs["complete"]
    assert "time budget" in df.attrs["check"]["message"][0]


def test_progress_is_reported(wiped):
    disk, _, _ = wiped
    seen = []
    with vdinspect.open(disk) as d:
        d.scan_partitions(progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1] and seen[-1][1] < 400 * MiB  # holes not read


def test_bad_calls(wiped):
    from vdinspect.recovery.scan import sfdisk_script

    disk, _, _ = wiped
    with vdinspect.open(disk) as d:
        with pytest.raises(vdinspect.InvalidArgument):
            d.scan_partitions(budget=-1)
        df = d.scan_partitions()
        with pytest.raises(vdinspect.InvalidArgument):
            sfdisk_script(df, label="dos")  # seven do not fit four entries
        with pytest.raises(vdinspect.InvalidArgument):
            vdinspect.open(disk, offset=d.size + 1)
        with pytest.raises(vdinspect.InvalidArgument):
            vdinspect.open(disk, offset=-512)
        with pytest.raises(vdinspect.InvalidArgument):
            vdinspect.open(disk, offset=1.5)


# --- the command line -------------------------------------------------------------------

def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vdinspect", *map(str, args)],
                          capture_output=True, text=True)


def test_cli_scan_json_and_table(wiped):
    disk, parts, _ = wiped
    r = _cli("scan", "--json", disk)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["kind"], x["start"] // SECTOR, x["length"] // SECTOR, x["filesystem"])
            for x in rows] == [("partition", s, n, fs) for s, n, fs in parts]
    r = _cli("scan", disk)
    assert r.returncode == 0 and "xfs" in r.stdout and "XFSP" in r.stdout
    r = _cli("scan", "--budget", "0.000000001", disk)
    assert r.returncode == 1 and "time budget" in r.stderr
    assert _cli("scan", "--budget", "-1", disk).returncode == 2


@pytest.mark.skipif(not have("qemu-img", "qemu-io"), reason="qemu-img/qemu-io missing")
def test_cli_offset_opens_an_embedded_image(tmp_path):
    from tests.qemu_tools import to_raw_bytes

    img = _make_images(tmp_path)["a.qcow2"]
    host = tmp_path / "host.bin"
    host.write_bytes(os.urandom(3 * 4096) + img.read_bytes() + os.urandom(777))
    r = _cli("scan", "--json", "--no-partitions", host)
    rows = json.loads(r.stdout)
    assert r.returncode == 0 and [(x["kind"], x["start"], x["format"]) for x in rows] == [
        ("image", 3 * 4096, "qcow2")]
    out = tmp_path / "out.raw"
    r = _cli("convert", "--offset", hex(3 * 4096), host, out)  # hex, as the table prints it
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == to_raw_bytes(img, tmp_path)
    info = json.loads(_cli("info", "--json", "--offset", 3 * 4096, host).stdout)
    assert info["format"] == "qcow2" and info["virtual_size"] == 8 * MiB


@pytest.mark.skipif(not have("qemu-img", "qemu-io", "mkfs.vfat", "mcopy", "mdel", "fls",
                             "istat"), reason="needs qemu-img, dosfstools, mtools, sleuthkit")
def test_deleted_vm_disk_in_a_filesystems_free_space(tmp_path):
    """issue 17 item 2: a QCOW2 copied onto a FAT volume and deleted (mdel) is found by
    scanning only the volume's free space, where The Sleuth Kit's istat says its first
    cluster was; the live QCOW2 beside it is not free space and is not listed."""
    gone, live = tmp_path / "vm.qcow2", tmp_path / "live.qcow2"
    for p, pattern in ((gone, "0x5a"), (live, "0x6b")):
        run("qemu-img", "create", "-q", "-f", "qcow2", p, "4M")
        run("qemu-io", "-c", f"write -P {pattern} 0 256k", p)
    fat = tmp_path / "fat.img"
    with open(fat, "wb") as f:
        f.truncate(16 << 20)
    run("mkfs.vfat", "-F", "16", fat)
    run("mcopy", "-i", fat, gone, "::/vm.qcow2")
    run("mcopy", "-i", fat, live, "::/live.qcow2")
    run("mdel", "-i", fat, "::/vm.qcow2")
    entry = next(line for line in run("fls", "-d", fat).splitlines() if "VM.QCOW2" in line.upper())
    addr = re.search(r"(\d+):", entry).group(1)
    first = int(re.search(r"Sectors:\s+(\d+)", run("istat", fat, addr)).group(1))
    with vdinspect.open(fat) as d:
        found = d.scan_images(part="disk")
        assert list(found["format"]) == ["qcow2"]
        row = found.iloc[0]
        assert int(row["start"]) == first * 512 and bool(row["opened"])
        with vdinspect.open(fat, offset=int(row["start"]), length=int(row["length"])) as vm, \
                vdinspect.open(gone) as original:
            assert vm.read(0, 256 << 10) == original.read(0, 256 << 10)
        assert len(d.scan_images()) == 2  # the whole disk holds the live one too
