"""Partitions and volumes against independent tools and samples.

Oracles: sfdisk --json and mmls (tables, gaps), blkid -p (filesystem TYPE/LABEL/UUID),
util-linux's expected blkid outputs for its sample images, lvm2's own lvs/pvs reports
(when lvm2 and loop devices are usable), and bytes placed by tests/volume_builder.py.
"""

from __future__ import annotations

import json
import lzma
import os
import re
import struct
import subprocess
from pathlib import Path

import pandas as pd
import pytest

import vdinspect
from tests import volume_builder as vb
from tests.conftest import SHARED_SAMPLES, have
from tests.tools import blkid_tags as blkid_probe
from tests.tools import (
    run,  # noqa: F401 (the one way the tests run a tool)
    sparse_copy,
    write_sparse,
)
from vdinspect import cli
from vdinspect.containers.registry import FORMATS
from vdinspect.errors import CorruptImage, InvalidArgument, NotFound, UnsupportedFeature
from vdinspect.io import MemorySource, Slice
from vdinspect.volumes import find_volume, scan

MiB = 1 << 20
UTIL_LINUX = SHARED_SAMPLES / "util-linux-2.38.1"
needs_util_linux = pytest.mark.skipif(not UTIL_LINUX.is_dir(), reason="util-linux samples absent")


def skip_unless(*tools):
    return pytest.mark.skipif(not have(*tools), reason=f"needs {', '.join(tools)}")


def sfdisk_json(path) -> dict:
    return json.loads(run("sfdisk", "--json", path))["partitiontable"]


MMLS_LINE = re.compile(r"^\d+:\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)(?:\s+(.*))?$")


def mmls(path, sector: int = 512) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(data partitions, unallocated gaps) from mmls, as (start, length) in bytes."""
    args = ["mmls"] + (["-b", str(sector)] if sector != 512 else []) + [str(path)]
    parts, gaps = [], []
    for line in run(*args).splitlines():
        m = MMLS_LINE.match(line.strip())
        if not m:
            continue
        slot, start, _end, length, _desc = m.groups()
        row = (int(start) * sector, int(length) * sector)
        if slot == "-------":
            gaps.append(row)
        elif slot != "Meta":
            parts.append(row)
    return parts, gaps


def ours(path, **kw):
    with vdinspect.open(path, **kw) as disk:
        return disk.partitions(), disk.volumes()


def data_rows(df):
    d = df[df["type"] != "unallocated"]
    return d


def spans(df, kind: str = "data", extended=("0x05", "0x0f", "0x85")):
    if kind == "gaps":
        d = df[df["type"] == "unallocated"]
    else:
        d = df[(df["type"] != "unallocated") & (df["scheme"] != "lvm2")]
        d = d[~d["type"].isin(extended)]
    return sorted(zip(d["start"].tolist(), d["length"].tolist()))


def blkid_expect(tags: dict) -> tuple[str | None, str | None, str | None]:
    """(filesystem, label, uuid) as vdinspect names them, from blkid's tags."""
    t = tags.get("TYPE")
    if t == "vfat":
        t = tags["VERSION"].lower()
    return t, tags.get("LABEL"), tags.get("UUID")


def na(v):
    return None if v is pd.NA or v is None else v


def convert(src: Path, fmt: str, tmp: Path) -> Path:
    out = tmp / f"{src.stem}.{fmt}"
    opts = ["-o", "force_size=on"] if fmt == "vpc" else []  # keep the size (no CHS rounding)
    run("qemu-img", "convert", "-f", "raw", "-O", fmt, *opts, src, out)
    return out


def container_formats() -> list[str]:
    return [
        f
        for f in ("qcow2", "vmdk", "vpc")
        if any(x.available and x.name == {"vpc": "vhd"}.get(f, f) for x in FORMATS)
    ]


# --- MBR ------------------------------------------------------------------------------

MBR_SCRIPT = """label: dos
label-id: 0x12345678
start=2048, size=2048, type=83, bootable
start=4096, size=2048, type=c
start=8192, size=16384, type=5
start=10240, size=1024, type=82
start=13312, size=1024, type=8e
start=16384, size=2048, type=7
start=20480, size=1024, type=a5
"""

GPT_SCRIPT = """label: gpt
label-id: 0A3C1D0E-1111-4222-8333-444455556666
start=2048, size=2048, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI system", attrs="RequiredPartition LegacyBIOSBootable"
start=4096, size=4096, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root fs", uuid=11111111-2222-3333-4444-555555555555
start=10240, size=2048, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="data", attrs="GUID:60,62,63"
start=14336, size=1024, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F
start=16384, size=2048, type=E6D6D379-F507-44C2-A23C-238F2A3DF928, name="lvm"
"""


@pytest.fixture(scope="module")
def mbr_disk(tmp_path_factory):
    if not have("sfdisk"):
        pytest.skip("needs sfdisk")
    p = tmp_path_factory.mktemp("mbr") / "mbr.img"
    with open(p, "wb") as f:
        f.truncate(12 * MiB)
    run("sfdisk", "-q", p, input=MBR_SCRIPT)
    return p


@pytest.fixture(scope="module")
def gpt_disk(tmp_path_factory):
    if not have("sfdisk"):
        pytest.skip("needs sfdisk")
    p = tmp_path_factory.mktemp("gpt") / "gpt.img"
    with open(p, "wb") as f:
        f.truncate(12 * MiB)
    run("sfdisk", "-q", p, input=GPT_SCRIPT)
    return p


def test_mbr_matches_sfdisk(mbr_disk):
    df, vols = ours(mbr_disk)
    table = sfdisk_json(mbr_disk)
    assert vols.scheme == "mbr"
    assert vols.disk_id == table["id"].removeprefix("0x")
    got = data_rows(df)
    expect = {int(re.search(r"(\d+)$", p["node"]).group(1)): p for p in table["partitions"]}
    assert sorted(got["index"].tolist()) == sorted(expect)
    for r in got.itertuples():
        p = expect[r.index]
        assert (r.start, r.length) == (p["start"] * 512, p["size"] * 512)
        assert int(r.type, 16) == int(p["type"], 16)
        assert bool(r.bootable) == bool(p.get("bootable", False))
    assert [v.part_uuid for v in vols if v.key == "5"] == ["12345678-05"]


@skip_unless("mmls")
def test_mbr_matches_mmls(mbr_disk):
    df, _ = ours(mbr_disk)
    parts, gaps = mmls(mbr_disk)
    assert spans(df) == sorted(parts)
    assert spans(df, "gaps") == sorted(gaps)


def test_gpt_matches_sfdisk(gpt_disk):
    df, vols = ours(gpt_disk)
    table = sfdisk_json(gpt_disk)
    assert vols.scheme == "gpt" and vols.sector_size == 512
    assert vols.disk_id == table["id"].lower()
    assert vols.table.header.num_partition_entries == 128
    got = {v.index: v for v in vols if v.kind == "partition"}
    assert sorted(got) == [
        int(re.search(r"(\d+)$", p["node"]).group(1)) for p in table["partitions"]
    ]
    for p in table["partitions"]:
        v = got[int(re.search(r"(\d+)$", p["node"]).group(1))]
        assert (v.start, v.length) == (p["start"] * 512, p["size"] * 512)
        assert v.type == p["type"].lower()
        assert v.part_uuid == p["uuid"].lower()
        assert v.name == p.get("name")
    assert got[1].flags == ["required", "legacy_bios_bootable"] and got[1].bootable
    assert got[3].flags == ["read_only", "hidden", "no_automount"]
    assert got[1].type_name == "EFI System" and got[2].type_name == "Linux filesystem"
    assert got[4].type_name == "Linux swap" and got[5].type_name == "Linux LVM"
    assert vols.check_rows() == []


@skip_unless("mmls")
def test_gpt_matches_mmls(gpt_disk):
    df, _ = ours(gpt_disk)
    parts, gaps = mmls(gpt_disk)
    assert spans(df) == sorted(parts)
    assert spans(df, "gaps") == sorted(gaps)


@skip_unless("fdisk", "mmls")
def test_gpt_4096_byte_sectors(tmp_path):
    script = tmp_path / "s.sfd"
    script.write_text(
        "label: gpt\n"
        'start=256, size=1024, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="esp"\n'
        "start=1536, size=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
        "start=4096, size=1024, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n"
    )
    p = tmp_path / "g4k.img"
    with open(p, "wb") as f:
        f.truncate(24 * MiB)
    # sfdisk 2.38 has no --sector-size; fdisk -b 4096 imports the same script format
    run("fdisk", "-b", "4096", p, input=f"I\n{script}\nw\n")
    df, vols = ours(p)
    assert vols.scheme == "gpt" and vols.sector_size == 4096
    parts, gaps = mmls(p, 4096)
    assert len(parts) == 3
    assert spans(df) == sorted(parts)
    assert spans(df, "gaps") == sorted(gaps)
    assert vols.find(1).name == "esp"


@skip_unless("sfdisk")
def test_gpt_damaged_primary_uses_backup(gpt_disk, tmp_path):
    good, _ = ours(gpt_disk)
    for what in ("zero-lba1", "array-crc"):
        p = tmp_path / f"{what}.img"
        sparse_copy(gpt_disk, p)
        with open(p, "r+b") as f:
            if what == "zero-lba1":
                f.seek(512)
                f.write(bytes(512))
            else:
                f.seek(1024 + 41)  # a byte of entry 1's ending_lba in the primary array
                b = f.read(1)
                f.seek(1024 + 41)
                f.write(bytes([b[0] ^ 0x01]))
        df, vols = ours(p)
        pd.testing.assert_frame_equal(df, good)
        msgs = [r for r in vols.check_rows() if r["structure"] == "GPT primary header"]
        assert len(msgs) == 1 and "using the backup" in msgs[0]["message"]
        assert msgs[0]["severity"] == "warning"
        # sfdisk reads the same backup table
        table = sfdisk_json(p)
        assert [(x["start"] * 512, x["size"] * 512) for x in table["partitions"]] == spans(
            df, "data"
        )


@skip_unless("sfdisk")
def test_hybrid_mbr_reported(gpt_disk, tmp_path):
    p = tmp_path / "hybrid.img"
    sparse_copy(gpt_disk, p)
    with open(p, "r+b") as f:
        f.seek(446 + 16)
        f.write(vb.mbr_entry(0x0C, 10240, 2048))
    df, vols = ours(p)
    assert vols.scheme == "gpt"
    assert any("hybrid MBR" in r["message"] for r in vols.check_rows())
    assert len(spans(df)) == 5


@skip_unless("qemu-img", "sfdisk")
@pytest.mark.parametrize("fmt", container_formats())
def test_same_frame_in_every_container(mbr_disk, gpt_disk, fmt, tmp_path):
    for disk in (mbr_disk, gpt_disk):
        raw, _ = ours(disk)
        other, _ = ours(convert(disk, fmt, tmp_path))
        pd.testing.assert_frame_equal(raw, other)


def test_volume_source_reads_the_partition(gpt_disk):
    data = gpt_disk.read_bytes()
    with vdinspect.open(gpt_disk) as disk:
        src = disk.volume(2)
        assert src.size == 4096 * 512
        assert src.read(0, 4096) == data[4096 * 512 : 4096 * 512 + 4096]
        assert disk.volume("3").read(100, 7) == data[10240 * 512 + 100 : 10240 * 512 + 107]
        with pytest.raises(NotFound, match=r"1, 2, 3, 4, 5"):
            disk.volume(9)
        with pytest.raises(NotFound):
            disk.volume("vg/lv")
        with pytest.raises(InvalidArgument):
            find_volume(disk.volumes(), 2.5)


# --- filesystems inside partitions --------------------------------------------------------

FS_LAYOUT = [  # (index, start, size in sectors, mbr type, how)
    (1, 2048, 4096, "1", "fat12"),
    (2, 8192, 32768, "6", "fat16"),
    (3, 43008, 69632, "c", "fat32"),
    (5, 116736, 8192, "83", "ext2"),
    (6, 126976, 16384, "83", "ext3"),
    (7, 145408, 16384, "83", "ext4"),
    (8, 163840, 16384, "7", "ntfs"),
    (9, 182272, 4096, "82", "swap"),
    (10, 188416, 8192, "7", "exfat"),
]


def _copy_in(disk: Path, image: Path, sector: int) -> None:
    with open(image, "rb") as src, open(disk, "r+b") as dst:
        pos = 0
        while chunk := src.read(1 << 20):
            if chunk.count(0) != len(chunk):
                dst.seek(sector * 512 + pos)
                dst.write(chunk)
            pos += len(chunk)


@pytest.fixture(scope="module")
def fs_disk(tmp_path_factory):
    """An MBR disk (primaries + logicals) with a filesystem made by a real tool in each."""
    if not have("sfdisk", "blkid"):
        pytest.skip("needs sfdisk and blkid")
    tmp = tmp_path_factory.mktemp("fs")
    p = tmp / "fs.img"
    with open(p, "wb") as f:
        f.truncate(100 * MiB)
    lines = ["label: dos", "label-id: 0xcafe0001"]
    for idx, start, size, t, _ in FS_LAYOUT:
        lines.append(f"start={start}, size={size}, type={t}")
        if idx == 3:
            lines.append("start=114688, type=5")
    run("sfdisk", "-q", p, input="\n".join(lines) + "\n")
    made = {}
    for idx, start, size, _, how in FS_LAYOUT:
        kib = size // 2
        try:
            if how.startswith("fat") and have("mkfs.fat"):
                bits = how[3:]
                extra = ["-s", "1"] if bits in ("12", "32") else []
                run(
                    "mkfs.fat",
                    "-F",
                    bits,
                    *extra,
                    "--offset",
                    start,
                    "-n",
                    f"{how.upper()}VOL",
                    "-i",
                    f"{0x1234ABC0 + idx:08X}",
                    p,
                    kib,
                )
            elif how.startswith("ext") and have("mke2fs"):
                run(
                    "mke2fs",
                    "-q",
                    "-F",
                    "-t",
                    how,
                    "-L",
                    f"{how}vol",
                    "-E",
                    f"offset={start * 512}",
                    p,
                    f"{kib}k",
                )
            elif how == "ntfs" and have("mkntfs"):
                img = tmp / "ntfs.part"
                with open(img, "wb") as f:
                    f.truncate(size * 512)
                run("mkntfs", "-F", "-Q", "-q", "-L", "NtfsVol", img)
                _copy_in(p, img, start)
            elif how == "swap" and have("mkswap"):
                img = tmp / "swap.part"
                with open(img, "wb") as f:
                    f.truncate(size * 512)
                run("mkswap", "-L", "swapvol", img)
                _copy_in(p, img, start)
            elif how == "exfat" and have("mkfs.exfat"):
                img = tmp / "exfat.part"
                with open(img, "wb") as f:
                    f.truncate(size * 512)
                run("mkfs.exfat", "-L", "ExVol", img)
                _copy_in(p, img, start)
            else:
                continue
        except RuntimeError:
            continue
        made[idx] = how
    return p, made


@pytest.mark.parametrize("idx,start,size,how", [(i, s, n, h) for i, s, n, _, h in FS_LAYOUT])
def test_filesystems_match_blkid(fs_disk, idx, start, size, how):
    p, made = fs_disk
    if idx not in made:
        pytest.skip(f"no tool to make {how}")
    df, vols = ours(p)
    v = vols.find(idx)
    assert (v.start, v.length) == (start * 512, size * 512)
    tags = blkid_probe(p, start * 512, size * 512)
    fs, label, uid = blkid_expect(tags)
    assert fs == how
    assert (v.filesystem, v.label, v.uuid) == (fs, label, uid)
    row = df[df["index"] == idx].iloc[0]
    assert (row["filesystem"], na(row["label"]), na(row["uuid"])) == (fs, label, uid)


@skip_unless("qemu-img")
def test_filesystem_disk_in_qcow2(fs_disk, tmp_path):
    p, _ = fs_disk
    raw, vols = ours(p)
    assert vols.check_rows() == []
    q, _ = ours(convert(p, "qcow2", tmp_path))
    pd.testing.assert_frame_equal(raw, q)


@skip_unless("mkfs.fat", "blkid")
def test_unpartitioned_filesystem_is_one_row(tmp_path):
    p = tmp_path / "floppy.img"
    with open(p, "wb") as f:
        f.truncate(1440 * 1024)
    run("mkfs.fat", "-F", "12", "-n", "FLOPPY", "-i", "0BADCAFE", p)
    df, vols = ours(p)
    assert vols.scheme == "none" and len(df) == 1
    row = df.iloc[0]
    assert row["type"] == "disk" and row["index"] is pd.NA
    assert (row["start"], row["length"]) == (0, 1440 * 1024)
    assert (row["filesystem"], row["label"], row["uuid"]) == blkid_expect(blkid_probe(p))
    assert find_volume(vols, 0) is vols[0] and find_volume(vols, "disk") is vols[0]


def test_empty_disk_is_one_row():
    vols = scan(MemorySource(bytes(1 << 20)))
    assert [(v.scheme, v.type, v.filesystem) for v in vols] == [("none", "disk", None)]


# --- util-linux samples ---------------------------------------------------------------------


def _xz(name: str, tmp: Path) -> Path:
    src = next(UTIL_LINUX.glob(f"images-*/{name}.img.xz"))
    with lzma.open(src) as f:
        return write_sparse(tmp / f"{name}.img", f)


def _lowprobe_pt(name: str) -> tuple[str, list[dict]]:
    text = (UTIL_LINUX / "expected" / f"lowprobe-pt-{name}").read_text()
    head, body = text.split("---", 1)
    rows = []
    for line in body.strip().splitlines():
        m = re.match(r"#(\d+):\s+(\d+)\s+(\d+)\s+(0x[0-9a-f]+)(.*)$", line.strip())
        attrs = dict(re.findall(r"(\w+)='([^']*)'", m.group(5)))
        rows.append(
            dict(
                index=int(m.group(1)),
                start=int(m.group(2)),
                size=int(m.group(3)),
                code=int(m.group(4), 16),
                **attrs,
            )
        )
    return head, rows


@needs_util_linux
@pytest.mark.parametrize("name", ["gpt", "dos+bsd", "bsd"])
def test_util_linux_partition_samples(name, tmp_path):
    img = _xz(name, tmp_path)
    head, rows = _lowprobe_pt(name)
    df, vols = ours(img)
    pt = re.search(r"PT: (\w+)", head).group(1)
    assert vols.scheme == {"dos": "mbr"}.get(pt, pt)
    ident = re.search(r"id=(\S+)", head).group(1)
    assert vols.disk_id == (None if ident == "(null)" else ident)
    parts = {v.index: v for v in vols if v.kind == "partition"}
    assert sorted(parts) == [r["index"] for r in rows]
    for r in rows:
        v = parts[r["index"]]
        assert (v.start, v.length) == (r["start"] * 512, r["size"] * 512)
        if "name" in r:
            assert v.name == r["name"]
        if "uuid" in r:
            assert v.part_uuid == r["uuid"]
        if "type" in r:
            assert v.type == r["type"]
        elif v.scheme in ("mbr", "bsd"):
            assert int(v.type, 16) == r["code"]
    if name == "bsd":  # entries reach past the end of this cut-out slice: reported
        assert sum("past the end" in f["message"] for f in vols.check_rows()) == 2


FS_SAMPLES = [
    "fat",
    "small-fat32",
    "fat16_noheads",
    "exfat",
    "ext2",
    "ext3",
    "ntfs",
    "xfs",
    "xfs-v5",
    "hfs",
    "hfsplus",
    "iso",
    "iso-joliet",
    "udf-cd-mkudfiso-20100208",
]


def _expected_fs(name: str) -> dict:
    out = {}
    for line in (UTIL_LINUX / "expected" / f"low-probe-{name}").read_text().splitlines():
        k, _, v = line.partition("=")
        out[k.removeprefix("ID_FS_")] = re.sub(
            r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), v
        )
    return out


@needs_util_linux
@pytest.mark.parametrize("name", FS_SAMPLES)
def test_util_linux_filesystem_samples(name, tmp_path):
    img = _xz(name, tmp_path)
    exp = _expected_fs(name)
    df, vols = ours(img)
    assert vols.scheme == "none" and len(vols) == 1
    v = vols[0]
    fs = exp["TYPE"] if exp["TYPE"] != "vfat" else exp["VERSION"].lower()
    assert v.filesystem == fs
    assert v.label == exp.get("LABEL_ENC")
    assert v.uuid == exp.get("UUID_ENC")


# --- LVM2 (builder) ---------------------------------------------------------------------------

EXT = 2048  # extent size, sectors (1 MiB)
PE_START = 2048
LVM_PARTS = [(2048, 20480), (22528, 12288), (34816, 16384)]  # (start, size) sectors


def _lvs(older: bool = False) -> list:
    L = vb.LV
    lvs = [
        L(
            "lin",
            [
                dict(
                    start_extent=0,
                    extent_count=2,
                    type="striped",
                    stripe_count=1,
                    stripes=["pv0", 0],
                ),
                dict(
                    start_extent=2,
                    extent_count=1,
                    type="striped",
                    stripe_count=1,
                    stripes=["pv1", 3],
                ),
            ],
        ),
        L(
            "str",
            [
                dict(
                    start_extent=0,
                    extent_count=4,
                    type="striped",
                    stripe_count=2,
                    stripe_size=128,
                    stripes=["pv0", 2, "pv2", 0],
                )
            ],
        ),
        L("nothing", [dict(start_extent=0, extent_count=1, type="zero")]),
        L(
            "pool_tmeta",
            [
                dict(
                    start_extent=0,
                    extent_count=1,
                    type="striped",
                    stripe_count=1,
                    stripes=["pv2", 2],
                )
            ],
            visible=False,
        ),
        L(
            "pool_tdata",
            [
                dict(
                    start_extent=0,
                    extent_count=2,
                    type="striped",
                    stripe_count=1,
                    stripes=["pv2", 3],
                )
            ],
            visible=False,
        ),
        L(
            "pool",
            [
                dict(
                    start_extent=0,
                    extent_count=2,
                    type="thin-pool",
                    metadata="pool_tmeta",
                    pool="pool_tdata",
                    transaction_id=1,
                )
            ],
        ),
        L(
            "thin1",
            [
                dict(
                    start_extent=0,
                    extent_count=8,
                    type="thin",
                    thin_pool="pool",
                    transaction_id=0,
                    device_id=1,
                )
            ],
        ),
        L(
            "origin",
            [
                dict(
                    start_extent=0,
                    extent_count=2,
                    type="striped",
                    stripe_count=1,
                    stripes=["pv0", 4],
                )
            ],
        ),
        L(
            "snap",
            [
                dict(
                    start_extent=0,
                    extent_count=1,
                    type="striped",
                    stripe_count=1,
                    stripes=["pv1", 0],
                )
            ],
        ),
        L(
            "snapshot0",
            [
                dict(
                    start_extent=0,
                    extent_count=2,
                    type="snapshot",
                    chunk_size=8,
                    origin="origin",
                    cow_store="snap",
                )
            ],
            visible=False,
        ),
    ]
    if not older:
        lvs.append(
            L(
                "mirr",
                [
                    dict(
                        start_extent=0,
                        extent_count=1,
                        type="raid1",
                        device_count=2,
                        region_size=1024,
                        raids=["mirr_rmeta_0", "mirr_rimage_0"],
                    )
                ],
            )
        )
    return lvs


PV_UUIDS = [vb.lvm_uuid(f"pv{i}") for i in range(3)]


def _pv_defs():
    return [
        dict(uuid=PV_UUIDS[i], dev_size=size, pe_start=PE_START, pe_count=(size - PE_START) // EXT)
        for i, (_, size) in enumerate(LVM_PARTS)
    ]


def build_lvm_disk(*, text_new=None, text_old=None, dup_label=False, whole=False) -> bytearray:
    """Three PVs in MBR partitions (the third without metadata); pv1 holds the newest
    metadata, wrapped around its ring buffer; pv0 an older copy."""
    buf = bytearray(26 * MiB)
    vb.stamp_sectors(buf, 0, len(buf))
    vb.write_mbr(buf, [(0x8E, s, n) for s, n in LVM_PARTS])
    vg_id = vb.lvm_uuid("vg0")
    new = text_new or vb.vg_text(
        "vg0", vg_id=vg_id, seqno=7, extent_size=EXT, pvs=_pv_defs(), lvs=_lvs()
    )
    old = text_old or vb.vg_text(
        "vg0", vg_id=vg_id, seqno=6, extent_size=EXT, pvs=_pv_defs(), lvs=_lvs(older=True)
    )
    (s0, n0), (s1, n1), (s2, n2) = LVM_PARTS
    mda_size = PE_START * 512 - 4096
    vb.write_pv(buf, s0 * 512, n0 * 512, PV_UUIDS[0], old, pe_start=PE_START)
    vb.write_pv(
        buf,
        s1 * 512,
        n1 * 512,
        PV_UUIDS[1],
        new,
        pe_start=PE_START,
        text_at=mda_size - 700,
        label_sector=2,
    )
    vb.write_pv(buf, s2 * 512, n2 * 512, PV_UUIDS[1 if dup_label else 2], None, pe_start=PE_START)
    return buf


def _pv_data(i: int) -> int:
    return LVM_PARTS[i][0] * 512 + PE_START * 512


def expected_lv_bytes(buf: bytes, name: str) -> bytes:
    """What the LV holds, from the layout above (per extent / per 64 KiB chunk)."""
    ext = EXT * 512
    if name == "lin":
        return bytes(
            buf[_pv_data(0) : _pv_data(0) + 2 * ext]
            + buf[_pv_data(1) + 3 * ext : _pv_data(1) + 4 * ext]
        )
    if name == "str":
        areas = [_pv_data(0) + 2 * ext, _pv_data(2)]
        chunk = 128 * 512
        out = bytearray()
        for c in range(4 * ext // chunk):
            base = areas[c % 2] + (c // 2) * chunk
            out += buf[base : base + chunk]
        return bytes(out)
    if name == "origin":
        return bytes(buf[_pv_data(0) + 4 * ext : _pv_data(0) + 6 * ext])
    if name == "nothing":
        return bytes(ext)
    raise KeyError(name)


def test_lvm_builder_disk():
    buf = build_lvm_disk()
    vols = scan(MemorySource(bytes(buf), name="lvm.img"))
    lvs = {v.name: v for v in vols if v.scheme == "lvm2"}
    assert list(lvs) == [
        "vg0/lin",
        "vg0/str",
        "vg0/nothing",
        "vg0/pool",
        "vg0/thin1",
        "vg0/origin",
        "vg0/snap",
        "vg0/mirr",
    ]  # hidden LVs are not listed
    assert [v.filesystem for v in vols if v.kind == "partition"] == ["LVM2_member"] * 3
    assert [v.uuid for v in vols if v.kind == "partition"] == [vb.dashed(u) for u in PV_UUIDS]
    assert lvs["vg0/lin"].type == "linear" and lvs["vg0/str"].type == "striped"
    for name in ("lin", "str", "origin", "nothing"):
        v = lvs[f"vg0/{name}"]
        want = expected_lv_bytes(buf, name)
        assert v.length == len(want)
        assert v.source.read(0, v.length) == want
        assert v.source.read(70000, 200000) == want[70000:270000]  # unaligned, crosses chunks
        assert v.index is None and v.row()["index"] is None
    assert lvs["vg0/lin"].start == _pv_data(0)
    for name, why in (
        ("pool", "thin-pool"),
        ("thin1", "thin"),
        ("snap", "snapshot"),
        ("mirr", "raid1"),
    ):
        v = lvs[f"vg0/{name}"]
        assert v.filesystem == f"unsupported: {why}"
        with pytest.raises(UnsupportedFeature, match=why):
            v.source  # noqa: B018
    assert lvs["vg0/thin1"].length == 8 * EXT * 512
    # the newest copy (seqno 7, on pv1, wrapped in its ring buffer) was used
    assert vols.volume_groups[0].seqno == 7
    assert any("older metadata" in f["message"] for f in vols.check_rows())
    assert find_volume(vols, "vg0/str") is lvs["vg0/str"]
    with pytest.raises(NotFound, match="vg0/lin"):
        find_volume(vols, "vg0/none")


@skip_unless("mke2fs", "blkid")
def test_lvm_lv_filesystem_matches_blkid(tmp_path):
    """An ext4 made by mke2fs, scattered into the LV's extents, probes as blkid says."""
    buf = build_lvm_disk()
    fs = tmp_path / "lv.ext4"
    with open(fs, "wb") as f:
        f.truncate(3 * MiB)
    run("mke2fs", "-q", "-F", "-t", "ext4", "-L", "inside-lv", fs)
    data = fs.read_bytes()
    ext = EXT * 512
    buf[_pv_data(0) : _pv_data(0) + 2 * ext] = data[: 2 * ext]
    buf[_pv_data(1) + 3 * ext : _pv_data(1) + 4 * ext] = data[2 * ext :]
    vols = scan(MemorySource(bytes(buf)))
    v = find_volume(vols, "vg0/lin")
    assert (v.filesystem, v.label, v.uuid) == blkid_expect(blkid_probe(fs))
    assert v.source.read(0, v.length) == data


def test_lvm_pv_on_whole_disk():
    buf = bytearray(8 * MiB)
    vb.stamp_sectors(buf, 0, len(buf))
    uid = vb.lvm_uuid("solo")
    text = vb.vg_text(
        "solo",
        vg_id=vb.lvm_uuid("solovg"),
        seqno=1,
        extent_size=EXT,
        pvs=[dict(uuid=uid, dev_size=len(buf) // 512, pe_start=PE_START, pe_count=3)],
        lvs=[
            vb.LV(
                "a",
                [
                    dict(
                        start_extent=0,
                        extent_count=2,
                        type="striped",
                        stripe_count=1,
                        stripes=["pv0", 1],
                    )
                ],
            )
        ],
    )
    vb.write_pv(buf, 0, len(buf), uid, text, pe_start=PE_START)
    vols = scan(MemorySource(bytes(buf)))
    assert [(v.scheme, v.filesystem) for v in vols] == [("none", "LVM2_member"), ("lvm2", None)]
    lv = find_volume(vols, "solo/a")
    assert lv.source.read(0, lv.length) == bytes(buf[2 * MiB : 4 * MiB])


def _bad_text(**changes) -> str:
    lvs = changes.pop("lvs", None) or _lvs()
    pvs = changes.pop("pvs", None) or _pv_defs()
    return vb.vg_text("vg0", vg_id=vb.lvm_uuid("vg0"), seqno=9, extent_size=EXT, pvs=pvs, lvs=lvs)


@pytest.mark.parametrize(
    "case",
    [
        "huge-extent-count",
        "pv-listed-twice",
        "pv-label-twice",
        "nesting-bomb",
        "bad-syntax",
        "unknown-pv",
        "size-overflow",
    ],
)
def test_lvm_bad_metadata(case):
    kw = {}
    if case == "huge-extent-count":
        lvs = _lvs()
        lvs[0].segments[0]["extent_count"] = 10**15
        lvs[0].segments[1]["start_extent"] = 10**15
        kw["text_new"] = _bad_text(lvs=lvs)
    elif case == "pv-listed-twice":
        pvs = _pv_defs()
        pvs[2] = dict(pvs[0])
        kw["text_new"] = _bad_text(pvs=pvs)
    elif case == "pv-label-twice":
        kw["dup_label"] = True
    elif case == "nesting-bomb":
        kw["text_new"] = "vg0 {" * 200
    elif case == "bad-syntax":
        kw["text_new"] = 'vg0 {\nid = "unterminated\n'
    elif case == "unknown-pv":
        lvs = _lvs()
        lvs[0].segments[0]["stripes"] = ["pv7", 0]
        kw["text_new"] = _bad_text(lvs=lvs)
    elif case == "size-overflow":
        lvs = _lvs()
        lvs[6].segments[0]["extent_count"] = 1 << 60
        kw["text_new"] = _bad_text(lvs=lvs)
    buf = build_lvm_disk(**kw)
    src = MemorySource(bytes(buf), name="bad-lvm.img")
    with pytest.raises(CorruptImage) as e:
        scan(src)
    assert "bad-lvm.img" in str(e.value)
    vols = scan(src, strict=False)  # salvage: the partitions are still listed
    assert [v.index for v in vols if v.kind == "partition"] == [1, 2, 3]
    assert any(f["severity"] == "error" for f in vols.check_rows())


# --- LVM2 (real lvm2 tools, when they can run here) ------------------------------------------

LVM_CONF = """devices { use_devicesfile = 0 hints = "none" obtain_device_list_from_udev = 0 }
activation { udev_sync = 0 udev_rules = 0 }
backup { backup = 0 archive = 0 }
global { use_lvmpolld = 0 }
"""


@pytest.mark.skipif(
    not (
        hasattr(os, "geteuid")
        and os.geteuid() == 0
        and have("losetup", "pvcreate", "vgcreate", "lvcreate", "lvs", "pvs", "sfdisk")
    ),
    reason="needs root, losetup, sfdisk and lvm2's tools",
)
def test_lvm_made_by_lvm2(tmp_path):
    """PVs/VG/LVs made by lvm2 (on loop devices, activation off); compared with lvs' map."""
    disk = tmp_path / "lvm2.img"
    buf = bytearray(12 * MiB)
    vb.stamp_sectors(buf, 0, len(buf))
    disk.write_bytes(bytes(buf))
    parts = [(2048, 8192), (12288, 8192)]  # 4 MiB PVs: 1 MiB metadata, 6 extents of 512 KiB
    run(
        "sfdisk",
        "-q",
        disk,
        input="label: gpt\n"
        + "".join(
            f"start={s}, size={n}, type=E6D6D379-F507-44C2-A23C-238F2A3DF928\n" for s, n in parts
        ),
    )
    etc = tmp_path / "lvmetc"
    etc.mkdir()
    (etc / "lvm.conf").write_text(LVM_CONF)
    env = dict(os.environ, LVM_SYSTEM_DIR=str(etc), LVM_SUPPRESS_FD_WARNINGS="1")
    loops = []

    def lvm(*args):
        r = subprocess.run(list(args), capture_output=True, text=True, env=env)
        if r.returncode:
            raise RuntimeError(f"{args[0]}: {r.stderr}")
        return r.stdout

    try:
        for s, n in parts:
            r = subprocess.run(
                [
                    "losetup",
                    "--show",
                    "-f",
                    "-o",
                    str(s * 512),
                    "--sizelimit",
                    str(n * 512),
                    str(disk),
                ],
                capture_output=True,
                text=True,
            )
            if r.returncode:
                pytest.skip(f"losetup failed: {r.stderr.strip()}")
            loops.append(r.stdout.strip())
        dev = ["--devices", ",".join(loops)]
        off = ["--driverloaded", "n", *dev]
        try:
            lvm("pvcreate", "-q", "-y", *dev, *loops)
        except RuntimeError as e:
            pytest.skip(str(e))
        lvm("vgcreate", "-q", *dev, "-s", "512k", "tvg", *loops)
        lvm("lvcreate", "-q", *off, "-an", "-Zn", "-Wn", "-l", "2", "-n", "lin", "tvg", loops[0])
        lvm(
            "lvcreate",
            "-q",
            *off,
            "-an",
            "-Zn",
            "-Wn",
            "-i2",
            "-I64k",
            "-l",
            "4",
            "-n",
            "str",
            "tvg",
        )
        lvm(
            "lvcreate",
            "-q",
            *off,
            "-an",
            "-Zn",
            "-Wn",
            "-l",
            "4",
            "-n",
            "two",
            "tvg",
            f"{loops[0]}:4-5",
            f"{loops[1]}:2-3",
        )
        segs = json.loads(
            lvm(
                "lvs",
                *off,
                "--reportformat",
                "json",
                "--segments",
                "--units",
                "b",
                "-o",
                "lv_name,seg_start_pe,seg_size_pe,stripes,stripe_size,seg_pe_ranges,lv_size",
            )
        )["report"][0]["seg"]
        pvs = json.loads(
            lvm(
                "pvs",
                *off,
                "--reportformat",
                "json",
                "--units",
                "b",
                "-o",
                "pv_name,pe_start,pv_uuid,vg_extent_size",
            )
        )["report"][0]["pv"]
    finally:
        for lo in loops:
            subprocess.run(["losetup", "-d", lo], capture_output=True)
    pv_base = {
        p["pv_name"]: (parts[loops.index(p["pv_name"])][0] * 512 + int(p["pe_start"].rstrip("B")))
        for p in pvs
    }
    ext = int(pvs[0]["vg_extent_size"].rstrip("B"))
    data = disk.read_bytes()
    expect: dict[str, bytearray] = {}
    for s in segs:
        ranges = [r.rsplit(":", 1) for r in s["seg_pe_ranges"].split()]
        areas = [pv_base[name] + int(rng.split("-")[0]) * ext for name, rng in ranges]
        n = int(s["stripes"])
        size = int(s["seg_size_pe"]) * ext
        out = expect.setdefault(s["lv_name"], bytearray())
        if n == 1:
            out += data[areas[0] : areas[0] + size]
        else:
            chunk = int(s["stripe_size"].rstrip("B"))
            for c in range(size // chunk):
                base = areas[c % n] + (c // n) * chunk
                out += data[base : base + chunk]
    with vdinspect.open(disk) as d:
        vols = d.volumes()
        assert sorted(v.uuid for v in vols if v.filesystem == "LVM2_member") == sorted(
            p["pv_uuid"] for p in pvs
        )
        for name, want in expect.items():
            v = d.volumes().find(f"tvg/{name}")
            assert v.length == len(want)
            assert d.volume(f"tvg/{name}").read(0, v.length) == bytes(want)


# --- bad tables ------------------------------------------------------------------------------


def _ebr_loop_disk() -> bytes:
    buf = bytearray(16 * MiB)
    vb.write_mbr(buf, [(0x83, 2048, 2048), (0x05, 8192, 20480)])
    vb.write_ebr(buf, 8192, (0x83, 2048, 2048), (0x05, 4096, 4096))
    vb.write_ebr(buf, 12288, (0x82, 2048, 1024), (0x05, 0, 4096))  # back to the first EBR
    return bytes(buf)


def test_ebr_loop():
    src = MemorySource(_ebr_loop_disk(), name="loop.img")
    with pytest.raises(CorruptImage, match="loop") as e:
        scan(src)
    assert "loop.img" in str(e.value) and "EBR chain" in str(e.value)
    vols = scan(src, strict=False)
    got = [(v.index, v.start // 512, v.length // 512) for v in vols if v.index]
    assert got == [(1, 2048, 2048), (2, 8192, 20480), (5, 10240, 2048), (6, 14336, 1024)]
    assert [f["structure"] for f in vols.check_rows()] == ["EBR chain"]


@skip_unless("sfdisk")
def test_ebr_chain_made_by_sfdisk_then_looped(mbr_disk, tmp_path):
    p = tmp_path / "looped.img"
    sparse_copy(mbr_disk, p)
    table = sfdisk_json(p)
    ext = next(x for x in table["partitions"] if x["type"] == "5")["start"]
    with open(p, "r+b") as f:  # find the last EBR sfdisk wrote; link it back to the first
        ebr = ext
        for _ in range(16):
            f.seek(ebr * 512 + 462)
            link = struct.unpack("<B3sB3sII", f.read(16))
            if link[2] == 0:
                break
            ebr = ext + link[4]
        f.seek(ebr * 512 + 462)
        f.write(vb.mbr_entry(0x05, 0, 1024))
    with pytest.raises(CorruptImage, match="loop"):
        ours(p)
    df, vols = ours(p, strict=False)
    assert sorted(df["index"].dropna().tolist()) == [1, 2, 3, 5, 6, 7, 8]
    assert [f["structure"] for f in vols.check_rows()] == ["EBR chain"]


@skip_unless("sfdisk")
@pytest.mark.parametrize(
    "field,value",
    [
        ("num_partition_entries", 0xFFFFFFFF),
        ("size_of_partition_entry", 0x7FFFFFFF),
        ("size_of_partition_entry", 100),
        ("partition_entry_lba", 1 << 60),
    ],
)
def test_gpt_absurd_header(gpt_disk, tmp_path, field, value):
    good, _ = ours(gpt_disk)
    p = tmp_path / "absurd.img"
    sparse_copy(gpt_disk, p)
    vb.patch_gpt_header_file(p, 512, **{field: value})
    df, vols = ours(p)  # the backup is sound: used, and the damage reported
    pd.testing.assert_frame_equal(df, good)
    assert any("using the backup" in f["message"] for f in vols.check_rows())
    p2 = tmp_path / "absurd-both.img"
    sparse_copy(p, p2)
    vb.patch_gpt_header_file(p2, p2.stat().st_size - 512, **{field: value})
    p = p2
    with pytest.raises(CorruptImage, match="GPT header"):
        ours(p)
    df, vols = ours(p, strict=False)
    assert any(f["severity"] == "error" for f in vols.check_rows())


def test_partition_past_the_end():
    buf = bytearray(4 * MiB)
    vb.write_mbr(buf, [(0x83, 2048, 2048), (0x83, 6144, 8192)])
    buf[2048 * 512 : 2048 * 512 + 4] = b"abcd"
    src = MemorySource(bytes(buf), name="short.img")
    vols = scan(src)
    assert [f["message"] for f in vols.check_rows()] == [
        "partition 2 [0x300000, 0x700000) extends past the end of the disk (0x400000 bytes)"
    ]
    with pytest.raises(CorruptImage, match="past the end"):
        find_volume(vols, 2).source  # noqa: B018
    assert find_volume(vols, 1).source.read(0, 4) == b"abcd"
    salvaged = find_volume(scan(src, strict=False), 2).source
    assert salvaged.size == 8192 * 512
    assert salvaged.read(1 * MiB - 2, 4) == bytes(4)


def test_not_a_partition_table():
    # a boot sector with 55 AA but bad boot flags is not an MBR; nor is garbage
    buf = bytearray(1 * MiB)
    buf[446] = 0x42
    buf[510:512] = b"\x55\xaa"
    assert scan(MemorySource(bytes(buf))).scheme == "none"
    with pytest.raises(InvalidArgument):
        scan(MemorySource(bytes(buf)), sector_size=700)


# --- CLI -----------------------------------------------------------------------------------


def test_cli_parts(gpt_disk, capsys):
    assert cli.main(["parts", str(gpt_disk), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    table = sfdisk_json(gpt_disk)
    got = [(r["start"], r["length"]) for r in rows if r["type"] != "unallocated"]
    assert got == [(x["start"] * 512, x["size"] * 512) for x in table["partitions"]]
    assert cli.main(["parts", str(gpt_disk), "--part", "2", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["name"] == "root fs" and row["index"] == 2
    assert cli.main(["parts", str(gpt_disk)]) == 0
    assert "Linux filesystem" in capsys.readouterr().out
    assert cli.main(["parts", str(gpt_disk), "--part", "42"]) == 2  # a bad call, as ls --part
    assert "no volume '42'" in capsys.readouterr().err
    args = cli.build_parser().parse_args(["info", "x.img", "--part", "vg/lv"])
    assert args.part == "vg/lv"


def test_volume_repr_and_row(gpt_disk):
    from vdinspect.schemas import PARTITION_COLUMNS

    with vdinspect.open(gpt_disk) as disk:
        v = disk.volumes().find(2)
        assert repr(v).startswith("<Volume 2 gpt Linux filesystem 'root fs'")
        assert set(v.row()) == set(PARTITION_COLUMNS)
        assert isinstance(v.raw.starting_lba, int)
        assert isinstance(disk.volume(2), Slice)


def test_lvm_text_parser_units():
    from vdinspect.volumes.lvm2 import TextError, parse_text

    t = parse_text('a { b = 1 c = "x\\"y" # comment\n d = [1, "two", 3.5] e { } }\nf = -2\n')
    assert t == {"a": {"b": 1, "c": 'x"y', "d": [1, "two", 3.5], "e": {}}, "f": -2}
    for bad in ("a {", "}", "a = [1 2]", "a = ", "a b", "a = 1 a = 2", 'a = "x'):
        with pytest.raises(TextError):
            parse_text(bad)


def test_builder_crc_matches_zlib_form():
    """The test builder's bitwise CRC and vdinspect's zlib-based one agree (and lvm2's)."""
    from vdinspect.volumes.lvm2 import lvm_crc

    for data in (b"", b"abc", bytes(range(256)) * 3):
        assert vb.lvm_crc(data) == lvm_crc(data)


# --- signatures no installed tool makes: placed from the formats' specifications -----------------

_U = bytes.fromhex("0123456789abcdef0011223344556677")
_U_STR = "01234567-89ab-cdef-0011-223344556677"


def _sig_image(kind: str) -> tuple[bytes, tuple]:
    buf = bytearray(1 * MiB)
    if kind == "btrfs":  # superblock at 64 KiB: fsid at +0x20, magic at +0x40, label at +0x12b
        sb = 0x10000
        buf[sb + 0x20 : sb + 0x30] = _U
        buf[sb + 0x40 : sb + 0x48] = b"_BHRfS_M"
        buf[sb + 0x12B : sb + 0x12B + 6] = b"btrlbl"
        return bytes(buf), ("btrfs", "btrlbl", _U_STR)
    if kind in ("luks1", "luks2"):  # magic, version (BE16), LUKS2 label at 24, uuid at 168
        v = int(kind[-1])
        buf[0:6] = b"LUKS\xba\xbe"
        buf[6:8] = v.to_bytes(2, "big")
        if v == 2:
            buf[24:30] = b"cryptl"
        buf[168 : 168 + 36] = _U_STR.encode()
        return bytes(buf), ("crypto_LUKS", "cryptl" if v == 2 else None, _U_STR)
    if kind == "bitlocker":
        buf[0:11] = b"\xeb\x58\x90-FVE-FS-"
        return bytes(buf), ("BitLocker", None, None)
    if kind == "refs":
        buf[0:11] = b"\x00\x00\x00ReFS\x00\x00\x00\x00"
        return bytes(buf), ("refs", None, None)
    if kind == "apfs":  # NX superblock: magic at 32, nx_uuid at 72
        buf[32:36] = b"NXSB"
        buf[72:88] = _U
        return bytes(buf), ("apfs", None, _U_STR)
    if kind == "zfs":  # an uberblock (magic 0x00bab10c, little-endian) at 128 KiB of label 0
        buf[0x20000:0x20008] = struct.pack("<Q", 0x00BAB10C)
        return bytes(buf), ("zfs_member", None, None)
    if kind == "md":  # md superblock 1.2 at 4 KiB: magic, major 1, set uuid at 16, name at 32
        buf[4096:4104] = struct.pack("<II", 0xA92B4EFC, 1)
        buf[4096 + 16 : 4096 + 32] = _U
        buf[4096 + 32 : 4096 + 38] = b"host:0"
        return bytes(buf), ("linux_raid_member", "host:0", "01234567:89abcdef:00112233:44556677")
    if kind == "swap0":  # old-style swap: signature at the end of the first 4 KiB page
        buf[4086:4096] = b"SWAP-SPACE"
        return bytes(buf), ("swap", None, None)
    raise KeyError(kind)


@pytest.mark.parametrize(
    "kind", ["btrfs", "luks1", "luks2", "bitlocker", "refs", "apfs", "zfs", "md", "swap0"]
)
def test_signatures_placed_by_spec(kind):
    data, want = _sig_image(kind)
    vols = scan(MemorySource(data))
    assert len(vols) == 1 and vols[0].scheme == "none"
    assert (vols[0].filesystem, vols[0].label, vols[0].uuid) == want
    # and inside a partition of an MBR disk
    disk = bytearray(4 * MiB)
    vb.write_mbr(disk, [(0x83, 2048, 2048)])
    disk[1 * MiB : 2 * MiB] = data
    v = find_volume(scan(MemorySource(bytes(disk))), 1)
    assert (v.filesystem, v.label, v.uuid) == want


def test_mutated_metadata_raises_only_vdinspect_errors():
    """Random token changes in LVM text and byte flips in MBR/EBRs: clean errors or results."""
    import random

    from vdinspect.errors import VDInspectError

    rng = random.Random(5)
    base = _bad_text()
    toks = re.split(r"(\s+)", base)
    disk = build_lvm_disk()
    s1, n1 = LVM_PARTS[1]
    loop = _ebr_loop_disk()
    choices = [
        "0",
        "-1",
        str(1 << 70),
        '"x"',
        "[",
        "]",
        "{",
        "}",
        "=",
        '"pv9"',
        "1e400",
        '"thin"',
        "2",
        '""',
    ]
    for _ in range(20):
        t = list(toks)
        for _ in range(rng.randint(1, 5)):
            t[rng.randrange(len(t))] = rng.choice(choices)
        buf = bytearray(disk)
        vb.write_pv(
            buf, s1 * 512, n1 * 512, PV_UUIDS[1], "".join(t), pe_start=PE_START, label_sector=2
        )
        mbr = bytearray(loop)
        for _ in range(rng.randint(1, 8)):
            at = rng.choice([446, 8192 * 512 + 446, 12288 * 512 + 446]) + rng.randrange(64)
            mbr[at] = rng.randrange(256)
        for data in (bytes(buf), bytes(mbr)):
            for strict in (True, False):
                try:
                    vols = scan(MemorySource(data, name="fuzz.img"), strict=strict)
                except VDInspectError:
                    continue
                for v in vols:
                    if v.readable and v.kind != "container" and v.length:
                        try:
                            v.source.read(0, min(v.length, 4096))
                        except VDInspectError:
                            pass
