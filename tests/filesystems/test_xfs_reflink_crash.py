"""XFS crashed in the middle of a reflink or a copy-on-write: read as the kernel does.

Made by the kernel (root and loop mounts): two fragmented files, then ``FICLONERANGE`` of
one over the other (each extent: a BUI unmap, a CUI decrease, a BUI map, a CUI increase)
while another process forces the log (``syncfs``) over and over, and the filesystem shut
down (``xfs_io -x -c shutdown``, the log not flushed) partway. The oracle is the kernel's
recovery, a mount of a copy: what vdinspect reads from the dirty image and the free space
it shows equal what the kernel reads and what ``xfs_db freesp`` lists after it. Which
intents are left open depends on timing (an open CUI is common, an open BUI rare), so the
test asserts the match, not the intents.

A crash after a copy-on-write to a reflinked file leaves CoW staging extents in the
refcount btree (the rest of the CoW fork's preallocation); every mount frees them
(``xfs_reflink_recover_cow``), and vdinspect counts them as free.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import have
from tests.filesystems.test_xfs import db_print
from tests.filesystems.test_xfs_intents import kernel_reads, xfs_db_freesp
from tests.tools import dig_holes, run, sparse_copy
from vdinspect.filesystems.xfs import XfsFileSystem
from vdinspect.io import FileSource

pytestmark = pytest.mark.xdist_group("kernel-mounts")
BLOCKS = 6000  # of each file, every other one written: ~3000 extents
WRITE = ("import os, sys\n"
         "for name, seed in (('src', 1), ('dst', 2)):\n"
         "    fd = os.open(os.path.join(sys.argv[1], name), os.O_CREAT | os.O_WRONLY)\n"
         f"    for i in range(0, {BLOCKS}, 2):\n"
         "        os.pwrite(fd, bytes([(i * seed) & 255]) * 4096, (i + seed - 1) * 4096)\n"
         "    os.close(fd)\n")


def _crash(work: Path, delay: float) -> Path:
    img, mnt = work / "r.img", work / "mnt"
    with open(img, "wb") as f:
        f.truncate(400 << 20)
    run("mkfs.xfs", "--unsupported", "-q", "-f", "-m", "reflink=1", "-l", "size=10m", img)
    dig_holes(img)
    mnt.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-o", "loop", str(img), str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("loop mount refused here")
    try:
        subprocess.run(["python3", "-c", WRITE, str(mnt)], check=True)
        subprocess.run(["xfs_io", "-c", "syncfs", str(mnt / "src")], check=True)
        force = subprocess.Popen(["sh", "-c", f"for i in $(seq 2000); do xfs_io -c syncfs "
                                  f"{mnt}/src 2>/dev/null || break; done"])
        clone = subprocess.Popen(["xfs_io", "-c", f"reflink {mnt}/src 0 0 "
                                  f"{(BLOCKS - 2) * 4096}", str(mnt / "dst")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["sleep", str(delay)], check=True)
        subprocess.run(["xfs_io", "-x", "-c", "shutdown", str(mnt)], capture_output=True)
        clone.wait()
        force.wait()
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    return img


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.06, 0.15])
def test_reflink_crash_matches_the_kernel(tmp_path, delay):
    if os.geteuid() != 0 or not have("mkfs.xfs", "xfs_io", "xfs_db", "mount"):
        pytest.skip("needs root, xfsprogs and mount")
    img = _crash(tmp_path, delay)
    fs = XfsFileSystem(FileSource(img))
    if not fs.log.dirty:
        pytest.skip("the shutdown left a clean log")
    ours = {n: fs.read("/" + n) for n in ("src", "dst")}
    our_free = fs.free_ranges()
    kernel = tmp_path / "kernel.img"
    sparse_copy(img, kernel)
    mnt = tmp_path / "mnt"
    theirs = kernel_reads(kernel, mnt, ours)
    assert ours == theirs
    sb = db_print(kernel, "sb 0")
    assert our_free == xfs_db_freesp(kernel, int(sb["agblocks"]), int(sb["agcount"]))
    assert not (fs.check().severity == "error").any()


def test_cow_staging_extents_are_free_as_after_a_mount(tmp_path):
    if os.geteuid() != 0 or not have("mkfs.xfs", "xfs_io", "xfs_db", "mount", "cp"):
        pytest.skip("needs root, xfsprogs and mount")
    img, mnt = tmp_path / "c.img", tmp_path / "mnt"
    with open(img, "wb") as f:
        f.truncate(320 << 20)
    run("mkfs.xfs", "-q", "-f", "-m", "reflink=1", img)
    dig_holes(img)
    mnt.mkdir()
    if subprocess.run(["mount", "-o", "loop", str(img), str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("loop mount refused here")
    data = bytes((i * 37 + i // 4096) & 0xFF for i in range(1 << 20))
    try:
        (mnt / "a").write_bytes(data)
        run("cp", "--reflink=always", mnt / "a", mnt / "s")
        run("xfs_io", "-c", "syncfs", mnt / "a")
        # one block copied on write: the CoW fork holds a preallocation around it
        run("xfs_io", "-c", "pwrite -S 0x55 8192 4096", "-c", "fsync", mnt / "s")
        run("xfs_io", "-x", "-c", "shutdown -f", mnt)  # the log flushed, then a crash
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    fs = XfsFileSystem(FileSource(img))
    staged = sum(b - a for ag in range(int(db_print(img, "sb 0")["agcount"]))
                 for a, b in fs.ags.cow_staging(ag))
    if not staged:
        pytest.skip("no CoW staging extent was left")
    ours = {n: fs.read("/" + n) for n in ("a", "s")}
    assert ours["s"] == data[:8192] + b"\x55" * 4096 + data[12288:]
    our_free = fs.free_ranges()
    kernel = tmp_path / "kernel.img"
    sparse_copy(img, kernel)
    theirs = kernel_reads(kernel, mnt, ours)
    assert ours == theirs
    sb = db_print(kernel, "sb 0")
    assert our_free == xfs_db_freesp(kernel, int(sb["agblocks"]), int(sb["agcount"]))
