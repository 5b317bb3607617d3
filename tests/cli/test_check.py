"""``check`` on the command line (issue 16 item 5): partition-table findings (a damaged
primary GPT read through its backup), encrypted volumes named, and ``check --part N``
checking that filesystem. Disks made by sfdisk and mkfs; the damage by dd-like writes at
the places ``sfdisk --json`` and the GPT specification give."""

from __future__ import annotations

import json
import shutil

import pytest

import vdinspect
from tests import tools
from vdinspect.cli import main

MIB = 1 << 20
pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("sfdisk", "mkfs.vfat")),
                                reason="needs sfdisk and dosfstools")


@pytest.fixture
def gpt_disk(tmp_path):
    raw = tmp_path / "gpt.raw"
    with open(raw, "wb") as f:
        f.truncate(16 * MIB)
    tools.run("sfdisk", "-q", raw, input="label: gpt\nstart=2048, size=8192\n")
    fat = tmp_path / "fat.img"
    with open(fat, "wb") as f:
        f.truncate(4 * MIB)
    tools.run("mkfs.vfat", fat)
    with open(raw, "r+b") as f, open(fat, "rb") as g:
        f.seek(2048 * 512)
        f.write(g.read())
    return raw


def test_damaged_primary_gpt_is_a_check_row(gpt_disk, capsys):
    with open(gpt_disk, "r+b") as f:  # the primary header at LBA 1 (the backup stays)
        f.seek(512)
        f.write(b"\0" * 92)
    assert "gpt" in tools.run("sfdisk", "--json", gpt_disk)  # sfdisk reads the backup too
    with vdinspect.open(gpt_disk) as d:
        assert 2048 * 512 in list(d.partitions()["start"])  # read through the backup
        rows = [r for r in d.check_rows() if r["layer"] is None]
    assert rows and any("GPT" in r["structure"] or "GPT" in r["message"] for r in rows)
    assert main(["check", "--json", str(gpt_disk)]) == 0
    got = json.loads(capsys.readouterr().out)
    assert any(r["layer"] is None and "GPT" in (r["structure"] + r["message"]) for r in got)
    assert main(["check", str(gpt_disk)]) == 0
    assert "partition table" in capsys.readouterr().out


def test_check_part_checks_that_filesystem(gpt_disk, capsys):
    fat_first = 2048 * 512 + 512  # the FAT16 volume's first FAT: a reserved sector in
    with open(gpt_disk, "r+b") as f:
        f.seek(fat_first)
        first = f.read(4)
        f.seek(fat_first)
        f.write(b"\x00\x00" + first[2:])  # entry 0 (the media byte) cleared
    with vdinspect.open(gpt_disk) as d:
        want = [r for r in d.filesystem(1).check_rows() if r["severity"] != "info"]
    assert want  # the driver itself names the damaged first FAT entry
    errors = any(r["severity"] == "error" for r in want)
    assert main(["check", "--json", "--part", "1", str(gpt_disk)]) == int(errors)
    got = [r for r in json.loads(capsys.readouterr().out) if r["severity"] != "info"]
    assert [(r["structure"], r["message"]) for r in got] == \
        [(r["structure"], r["message"]) for r in want]
    assert main(["check", "--part", "9", str(gpt_disk)]) == 2  # no such partition: a bad call


def test_bare_filesystem_image_is_checked_without_part(tmp_path, capsys):
    """A filesystem image with no partition table: ``check`` checks that filesystem, as
    ``ls`` lists it, without ``--part`` (before, it said "no problems found")."""
    import subprocess

    fat, hurt = tmp_path / "bare.img", tmp_path / "hurt.img"
    with open(fat, "wb") as f:
        f.truncate(16 * MIB)
    tools.run("mkfs.vfat", "-F", "16", fat)
    data = bytearray(fat.read_bytes())
    reserved = int.from_bytes(data[14:16], "little")  # BPB_RsvdSecCnt
    data[reserved * 512:(reserved + 1) * 512] = bytes(512)  # FAT 1's media entry gone
    hurt.write_bytes(data)
    if shutil.which("fsck.fat"):  # the independent reader sees the damage too
        assert subprocess.run(["fsck.fat", "-n", str(hurt)], capture_output=True).returncode
    assert main(["check", str(fat)]) == 0
    assert "no problems found (1 layer and the fat16 filesystem and its folders checked)" in (
        capsys.readouterr().out)
    assert main(["check", "--salvage", str(hurt)]) == 1  # an error found: not a success
    out = capsys.readouterr().out
    assert "(1 layer and the fat16 filesystem and its folders checked)" in out
    assert "FAT 1" in out and "media descriptor" in out


@pytest.mark.skipif(not all(shutil.which(t) for t in ("mke2fs", "debugfs", "e2fsck")),
                    reason="needs e2fsprogs")
def test_unreadable_folder_fails_ls_and_check(tmp_path, capsys):
    """A folder whose extent header debugfs overwrote (e2fsck: "corrupt extent header") is
    not a clean listing: ``ls -r`` (text and JSON) names it on stderr and exits 1, the
    JSON row's note says why, and ``check`` reads every folder, reports it and exits 1."""
    src = tmp_path / "src"
    (src / "d1").mkdir(parents=True)
    (src / "ok").mkdir()
    for i in range(3):
        (src / "d1" / f"f{i}").write_text(f"hi{i}\n")
    (src / "ok" / "kept").write_text("kept\n")
    img = tmp_path / "e.img"
    tools.run("mke2fs", "-q", "-F", "-t", "ext4", "-d", src, img, "8M")
    tools.run("debugfs", "-w", "-R", "sif /d1 block[0] 12345", img)
    fsck = tools.run("e2fsck", "-fn", img, check=False)
    assert "corrupt extent header" in fsck  # the independent reader sees the damage
    ino = int(tools.run("debugfs", "-R", "stat /d1", img).split("Inode:")[1].split()[0])

    assert main(["ls", "-r", str(img)]) == 1
    got = capsys.readouterr()
    assert "/ok/kept" in got.out and "/d1" in got.out
    assert "/d1: unreadable directory" in got.err and f"inode {ino}" in got.err

    assert main(["ls", "-r", "--json", str(img)]) == 1
    rows = {r["path"]: r for r in json.loads(capsys.readouterr().out)}
    assert "unreadable directory" in rows["/d1"]["note"] and rows["/ok/kept"]["size"] == 5

    assert main(["check", str(img)]) == 1
    out = capsys.readouterr().out
    assert "1 error" in out and "/d1: unreadable directory" in out
