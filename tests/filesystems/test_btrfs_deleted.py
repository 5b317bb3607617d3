"""Btrfs deleted files: older tree roots (superblock backups) and orphan items.

Made by the kernel (root and loop mounts; skipped elsewhere: no tool writes older
generations without a mount): files written and committed, then some removed and
committed again, and one file unlinked while still open (an orphan item), the image
copied while mounted. The oracle for what the older trees hold is ``btrfs restore -t``
from each backup root tree; the contents are checked against what was written.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import subprocess
from pathlib import Path

import pytest

from tests.conftest import have
from tests.tools import run, sparse_copy
from vdinspect.filesystems.btrfs import open_filesystem
from vdinspect.io import FileSource

# kernel mounts and os.sync() (which commits every mounted filesystem) on one xdist
# worker: a sync from a parallel test must not commit a log being staged for a crash copy
pytestmark = pytest.mark.xdist_group("kernel-mounts")

WRITTEN = {f"/d/gone{i}": bytes([65 + i]) * (5000 * (i + 1)) for i in range(3)}
WRITTEN.update({"/d/small": b"tiny inline\n", "/d/sub/inner": b"inner\n" * 10,
                "/d/keep": b"keep\n" * 100})
ORPHAN = b"orphan data\n" * 1000


@pytest.fixture(scope="module")
def crash(tmp_path_factory):
    if os.geteuid() != 0 or not have("mkfs.btrfs", "btrfs", "mount"):
        pytest.skip("needs root, btrfs-progs and mount")
    d = tmp_path_factory.mktemp("btrfs_deleted")
    img, mnt = d / "b.img", d / "mnt"
    with open(img, "wb") as f:
        f.truncate(256 << 20)
    run("mkfs.btrfs", "-q", img)
    mnt.mkdir()
    r = subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], capture_output=True)
    if r.returncode:
        pytest.skip("loop mount refused here")
    out = d / "crash.img"
    try:
        (mnt / "d" / "sub").mkdir(parents=True)
        for p, data in WRITTEN.items():
            (mnt / p.lstrip("/")).write_bytes(data)
        os.sync()
        for p in [p for p in WRITTEN if p != "/d/keep"]:
            (mnt / p.lstrip("/")).unlink()
        (mnt / "d" / "sub").rmdir()
        os.sync()
        with open(mnt / "orph", "wb") as f:
            f.write(ORPHAN)
            f.flush()
            os.fsync(f.fileno())
            (mnt / "orph").unlink()
            os.sync()
            sparse_copy(img, out)  # a crash while the unlinked file is still open
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    return out


def _restore(img: Path, root: int, dest: Path) -> dict[str, bytes]:
    dest.mkdir()
    subprocess.run(["btrfs", "restore", "-t", str(root), str(img), str(dest)],
                   capture_output=True)
    return {"/" + str(p.relative_to(dest)): p.read_bytes()
            for p in dest.rglob("*") if p.is_file()}


def test_backup_roots_against_btrfs_restore(crash, tmp_path):
    fs = open_filesystem(FileSource(crash))
    df = fs.files()
    live = set(df[~df.deleted].path)
    assert live == {"/d", "/d/keep"}
    backup = df[df.deleted & (df.found_by == "backup")]
    # what btrfs restore recovers from the backup root trees and the live tree lacks
    text = run("btrfs", "inspect-internal", "dump-super", "-f", crash)
    roots = {int(x) for x in re.findall(r"backup_tree_root:\s+(\d+)", text)}
    theirs: dict[str, bytes] = {}
    for k, root in enumerate(sorted(roots)):
        for p, data in _restore(crash, root, tmp_path / f"r{k}").items():
            if p not in live:
                theirs.setdefault(p, data)
    files = backup[backup.kind == "file"]
    assert set(files.path) == set(theirs) == set(WRITTEN) - {"/d/keep"}
    assert set(backup[backup.kind == "dir"].path) == {"/d/sub"}
    for r in files.itertuples():
        got = fs.read(r.path)
        assert got == theirs[r.path]  # the same bytes as btrfs restore
        # recoverable: none of its extents is allocated again, and then the bytes are
        # those written; an extent allocated again (here to the orphan) was overwritten
        assert r.recoverable == (got == WRITTEN[r.path]), r.path
    assert files.recoverable.sum() >= 3
    assert not (fs.check().severity == "error").any()
    assert set(fs.files(deleted=False).path) == live


def test_orphan_item(crash):
    fs = open_filesystem(FileSource(crash))
    df = fs.files()
    orph = df[df.path.str.startswith("/$OrphanFiles/")]
    assert len(orph) == 1 and orph.found_by.iloc[0] == "inode-table"
    assert bool(orph.recoverable.iloc[0]) and bool(orph.deleted.iloc[0])
    assert fs.read(orph.path.iloc[0]) == ORPHAN
    text = run("btrfs", "inspect-internal", "dump-tree", "-t", "5", crash)
    assert f"ORPHAN ORPHAN_ITEM {orph.inode.iloc[0]}" in text
    assert hashlib.sha256(fs.read(orph.path.iloc[0])).hexdigest() == hashlib.sha256(
        ORPHAN).hexdigest()
    # the listing of one directory and lookups see the same deleted entries
    kids = fs.files("/d", recursive=False)
    assert {"/d/gone0", "/d/sub"} <= set(kids[kids.deleted].path)
    assert fs.lookup("/d/sub/inner", deleted=True).deleted


def test_scanned_root_trees_against_btrfs_find_root(tmp_path):
    """Files removed more than four commits ago: no backup root names a tree that holds
    them, but older root tree leaves are still in the metadata chunks. The roots found
    by scanning equal those btrfs-find-root finds, and the files read from them equal
    what btrfs restore -t recovers from each."""
    if os.geteuid() != 0 or not have("mkfs.btrfs", "btrfs", "btrfs-find-root", "mount"):
        pytest.skip("needs root, btrfs-progs and mount")
    img, mnt = tmp_path / "b.img", tmp_path / "mnt"
    with open(img, "wb") as f:
        f.truncate(256 << 20)
    run("mkfs.btrfs", "-q", img)
    mnt.mkdir()
    if subprocess.run(["mount", "-o", "loop", str(img), str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("loop mount refused here")
    old = {f"/d/old{i}": bytes([97 + i]) * (3000 * (i + 1)) for i in range(4)}
    try:
        (mnt / "d").mkdir()
        for p, data in old.items():
            (mnt / p.lstrip("/")).write_bytes(data)
        os.sync()
        for p in old:
            (mnt / p.lstrip("/")).unlink()
        os.sync()
        for k in range(6):  # six more commits: the backup roots all postdate the removal
            (mnt / "d" / f"later{k}").write_bytes(b"later\n" * 10)
            os.sync()
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    text = run("btrfs", "inspect-internal", "dump-super", "-f", img)
    backups = {int(x) for x in re.findall(r"backup_tree_root:\s+(\d+)", text)}
    r = subprocess.run(["btrfs-find-root", str(img)], capture_output=True, text=True)
    found = {int(x) for x in re.findall(r"Well block (\d+)\(gen", r.stdout + r.stderr)}
    from vdinspect.filesystems.btrfs.recovery import scan_root_leaves
    fs = open_filesystem(FileSource(img))
    assert {a for a, _g in scan_root_leaves(fs)} == found
    theirs: dict[str, bytes] = {}
    for k, root in enumerate(sorted(found - backups)):
        for p, data in _restore(img, root, tmp_path / f"r{k}").items():
            if p in old:
                theirs.setdefault(p, data)
    assert theirs == old
    df = fs.files()
    gone = df[df.deleted]
    assert set(gone.path) == set(old) and set(gone.found_by) == {"scan"}
    assert gone.recoverable.all()
    assert {p: fs.read(p) for p in gone.path} == old


def test_scan_passes_over_the_live_leaves_read(tmp_path):
    """The scan for older root tree leaves passes over the FS tree leaves the listing
    read (their headers name the FS tree as owner) and the holes of a sparse image file
    and finds the same roots; a live leaf
    whose header is made to name the root tree (and an older generation) is not passed
    over, and the scan still finds it."""
    if not have("mkfs.btrfs"):
        pytest.skip("needs btrfs-progs")
    crc32c = pytest.importorskip("crc32c")
    from vdinspect.filesystems.btrfs.recovery import scan_root_leaves
    from vdinspect.io import MemorySource
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(600):
        (src / "d" / f"file {i:03d} with a long name").write_bytes(b"x" * (i % 50))
    img = tmp_path / "b.img"
    with open(img, "wb") as f:
        f.truncate(128 << 20)
    run("mkfs.btrfs", "-q", "-f", "-m", "single", "--rootdir", src, img)
    fs = open_filesystem(FileSource(img))
    fs.files(deleted=False)
    ix = fs.tree_index(5)
    plain = set(ix.plain.tolist())
    assert len(plain) > 2 and plain <= ix.blocks
    assert scan_root_leaves(fs, plain) == scan_root_leaves(fs)
    # the same from the bytes in memory (no holes to pass over: every header read)
    assert scan_root_leaves(open_filesystem(MemorySource(img.read_bytes()))) == \
        scan_root_leaves(fs)
    leaf = min(plain)
    c = fs.chunks.find(leaf)
    phys = c.place(leaf - c.logical)[1]
    raw = bytearray(img.read_bytes())
    # header: csum 32, fsid 16, bytenr 8, flags 8, chunk tree uuid 16, generation, owner
    struct.pack_into("<QQ", raw, phys + 80, 1, 1)
    struct.pack_into("<I", raw, phys, crc32c.crc32c(bytes(raw[phys + 32:phys + fs.nodesize])))
    bad = open_filesystem(MemorySource(bytes(raw)))
    assert set(bad.files(deleted=False).path) == set(fs.files(deleted=False).path)
    ix = bad.tree_index(5)
    assert leaf in ix.blocks and leaf not in set(ix.plain.tolist())
    found = scan_root_leaves(bad, set(ix.plain.tolist()))
    assert (leaf, 1) in found and found == scan_root_leaves(bad)
    bad.files()
