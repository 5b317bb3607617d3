"""Btrfs tree log (fsync'd after the last commit): reported, not replayed.

Made by the kernel (root and loop mounts): files fsync'd on a volume mounted with a long
commit interval, the backing file copied while still mounted (a crash image, ``log_root``
set). The kernel's own mount of a copy replays the log; the names it shows and we do not
are exactly those ``check()`` reports as held by the tree log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import have
from tests.tools import run
from vdinspect.filesystems.btrfs import open_filesystem
from vdinspect.io import FileSource


def _mount(img: Path, mnt: Path, opts: str = "loop") -> bool:
    mnt.mkdir(exist_ok=True)
    r = subprocess.run(["mount", "-t", "btrfs", "-o", opts, str(img), str(mnt)],
                       capture_output=True, text=True)
    return r.returncode == 0


def test_kernel_tree_log_reported(tmp_path):
    if os.geteuid() != 0 or not have("mkfs.btrfs", "mount"):
        pytest.skip("needs root, btrfs-progs and mount")
    img, mnt = tmp_path / "b.img", tmp_path / "mnt"
    with open(img, "wb") as f:
        f.truncate(256 << 20)
    run("mkfs.btrfs", "-q", img)
    if not _mount(img, mnt, "loop,commit=300"):
        pytest.skip("loop mount refused here")
    crash = tmp_path / "crash.img"
    try:
        (mnt / "d").mkdir()
        (mnt / "d" / "base").write_bytes(b"committed\n")
        os.sync()
        for i in range(5):
            with open(mnt / "d" / f"new{i}", "wb") as f:
                f.write(b"fsynced-%d\n" % i * 1000)
                f.flush()
                os.fsync(f.fileno())
        shutil.copyfile(img, crash)  # a crash right after the fsyncs
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    fs = open_filesystem(FileSource(crash))
    info = fs.info()
    if not info["dirty"]:
        pytest.skip("the fsyncs were committed before the copy")
    assert "not replayed" in info["log_state"]
    ours = set(fs.files().path)
    kernel_copy = tmp_path / "kernel.img"
    shutil.copyfile(crash, kernel_copy)
    if not _mount(kernel_copy, mnt):
        pytest.skip("the kernel refused to replay the log")
    try:
        theirs = {"/" + str(Path(t, n).relative_to(mnt)) for t, ds, fs_ in os.walk(mnt)
                  for n in ds + fs_}
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    only_in_log = theirs - ours
    assert only_in_log == {f"/d/new{i}" for i in range(5)}
    rows = fs.check()
    logged = rows[rows.structure == "tree log"].message
    per_inode = [m for m in logged if m.startswith("subvolume ")]
    named = {"/" + m.split("(")[1].split(",")[0] for m in per_inode}
    assert named == only_in_log
    assert all("10000 bytes" in m for m in per_inode)
