"""Btrfs tree log (fsync'd after the last commit): replayed in memory.

Made by the kernel (root and loop mounts): files fsync'd on a volume mounted with a long
commit interval, the backing file copied while still mounted (a crash image, ``log_root``
set). The kernel's own mount of a copy replays the log; what vdinspect lists and reads
equals it, the names the log adds marked ``found_by='journal'``.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import have
from tests.tools import run, sparse_copy, write_sparse
from vdinspect.filesystems.btrfs import open_filesystem
from vdinspect.io import FileSource

# kernel mounts and os.sync() (which commits every mounted filesystem) on one xdist
# worker: a sync from a parallel test must not commit a log being staged for a crash copy
pytestmark = pytest.mark.xdist_group("kernel-mounts")


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
    big = bytes(range(256)) * 256  # 64 KiB, committed, then partly rewritten and fsync'd
    try:
        (mnt / "d").mkdir()
        (mnt / "d" / "base").write_bytes(b"committed\n")
        (mnt / "d" / "big").write_bytes(big)
        os.sync()
        for i in range(5):
            with open(mnt / "d" / f"new{i}", "wb") as f:
                f.write(b"fsynced-%d\n" % i * 1000)
                f.flush()
                os.fsync(f.fileno())
        with open(mnt / "d" / "big", "r+b") as f:
            f.seek(8192)
            f.write(b"\xee" * 4096)
            f.flush()
            os.fsync(f.fileno())
        sparse_copy(img, crash)  # a crash right after the fsyncs
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    fs = open_filesystem(FileSource(crash))
    info = fs.info()
    if not info["dirty"]:
        pytest.skip("the fsyncs were committed before the copy")
    assert "replayed in memory" in info["log_state"]
    df = fs.files()
    ours = {r.path: (r.kind, hashlib.sha256(fs.read(r.path)).hexdigest() if r.kind == "file"
                     else None) for r in df.itertuples()}
    kernel_copy = tmp_path / "kernel.img"
    sparse_copy(crash, kernel_copy)
    if not _mount(kernel_copy, mnt):
        pytest.skip("the kernel refused to replay the log")
    try:
        theirs = {}
        for t, ds, fs_ in os.walk(mnt):
            for n in ds + fs_:
                p = Path(t, n)
                theirs["/" + str(p.relative_to(mnt))] = (
                    "dir", None) if p.is_dir() else ("file", hashlib.sha256(
                        p.read_bytes()).hexdigest())
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    assert ours == theirs
    assert fs.read("/d/big") == big[:8192] + b"\xee" * 4096 + big[12288:]
    journal = set(df[df.found_by == "journal"].path)
    assert journal == {f"/d/new{i}" for i in range(5)}
    rows = fs.check()
    logged = rows[rows.structure == "tree log"].message
    per_inode = [m for m in logged if m.startswith("subvolume ")]
    named = {"/" + m.split("(")[1].split(",")[0] for m in per_inode}
    assert journal <= named <= journal | {"/d/big"}
    assert not (rows.severity == "error").any()


@pytest.mark.skipif(not have("mkfs.btrfs", "btrfs"), reason="needs btrfs-progs")
@pytest.mark.parametrize("where", ["garbage", "root tree"])
def test_hostile_log_root(tmp_path, where):
    """``log_root`` (superblock offset 0x60, then the checksum over bytes 0x20..0x1000
    redone) pointing at garbage, or at a block that is not a log root tree: the volume
    still opens and lists in both modes, the log is reported as unreplayable or empty."""
    pytest.importorskip("crc32c")
    import crc32c

    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"data\n" * 100)
    img = tmp_path / "b.img"
    with open(img, "wb") as f:
        f.truncate(128 << 20)
    run("mkfs.btrfs", "-q", "-f", "--rootdir", src, img)
    text = run("btrfs", "inspect-internal", "dump-super", img)
    root = int(re.search(r"^root\s+(\d+)", text, re.M).group(1))
    data = bytearray(img.read_bytes())
    sb = 0x10000
    target = 0x12345000 if where == "garbage" else root
    data[sb + 0x60:sb + 0x68] = target.to_bytes(8, "little")
    data[sb:sb + 4] = crc32c.crc32c(bytes(data[sb + 0x20:sb + 0x1000])).to_bytes(4, "little")
    bad = tmp_path / "bad.img"
    write_sparse(bad, data)
    for strict in (True, False):
        fs = open_filesystem(FileSource(bad), strict=strict)
        info = fs.info()
        assert info["dirty"] is True and info["log_state"].startswith("tree log at")
        assert set(fs.files().path) == {"/d", "/d/f"}
        assert fs.read("/d/f") == b"data\n" * 100
        fs.check()
