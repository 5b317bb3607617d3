"""Btrfs tree log removals on a log tree built from the on-disk format.

``tests/btrfs_log_builder.py`` adds a log to a volume ``mkfs.btrfs --rootdir`` made: the
directory ``/d`` (entries b, c, a at DIR_INDEX 2, 3, 4) logged with a DIR_LOG_INDEX range
over b's index and no entry for it (b unlinked before the fsync), or with b's inode
under a new name at index 5 (renamed). ``btrfs inspect-internal dump-tree`` confirms the
built items; the kernel's own replay (a loop mount, root only) is the oracle for what
the directory holds afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.btrfs_log_builder import add_dir_log, facts
from tests.conftest import have
from tests.tools import run, sparse_copy
from vdinspect.filesystems.btrfs import open_filesystem
from vdinspect.io import FileSource

# kernel mounts and os.sync() (which commits every mounted filesystem) on one xdist
# worker: a sync from a parallel test must not commit a log being staged for a crash copy
pytestmark = [pytest.mark.skipif(not have("mkfs.btrfs", "btrfs"),
                                 reason="needs btrfs-progs"),
              pytest.mark.xdist_group("kernel-mounts")]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    pytest.importorskip("crc32c")
    work = tmp_path_factory.mktemp("btrfs-log-built")
    src = work / "src"
    (src / "d").mkdir(parents=True)
    for n in ("b", "c", "a"):  # --rootdir gives DIR_INDEX 2, 3, 4 in this order
        (src / "d" / n).write_bytes(f"{n} data\n".encode() * 40)
    img = work / "base.img"
    with open(img, "wb") as f:
        f.truncate(128 << 20)
    run("mkfs.btrfs", "-q", "-f", "--rootdir", src, img)
    f = facts(img)
    index = {m.group(3): (int(m.group(1)), int(m.group(2))) for m in re.finditer(
        r"key \((\d+) DIR_INDEX (\d+)\)[^\n]*\n[^\n]*\n[^\n]*\n\s+name: (\w+)", f["fs_tree"])}
    return work, img, index


def _kernel_view(img, work) -> set[str] | None:
    if os.geteuid() != 0 or not have("mount"):
        return None
    mnt = work / "mnt"
    mnt.mkdir(exist_ok=True)
    copy = work / "kernel.img"
    sparse_copy(img, copy)
    if subprocess.run(["mount", "-o", "loop", str(copy), str(mnt)],
                      capture_output=True).returncode:
        return None
    try:
        return set(os.listdir(mnt / "d"))
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.parametrize("how", ["unlinked", "renamed"])
def test_built_log_removes_names(base, tmp_path, how):
    work, img, index = base
    d_ino, b_idx = index["b"]
    b_ino = int(re.search(r"location key \((\d+) INODE_ITEM 0\)[^\n]*\n[^\n]*\n\s+name: b\n",
                          facts(img)["fs_tree"]).group(1))
    logged = [] if how == "unlinked" else [(5, b"b2", b_ino, 1)]
    ranges = [(b_idx, b_idx)] + ([] if how == "unlinked" else [(5, (1 << 64) - 1)])
    out = tmp_path / f"{how}.img"
    built = add_dir_log(img, out, 5, d_ino, ranges, logged)
    dump = run("btrfs", "inspect-internal", "dump-tree", "-b", str(built["log_at"]), out)
    assert f"key ({d_ino} DIR_LOG_INDEX {b_idx})" in dump and f"dir log end {b_idx}" in dump
    assert ("name: b2" in dump) == (how == "renamed")
    fs = open_filesystem(FileSource(out))
    assert fs.info()["dirty"]
    df = fs.files()
    live = set(df[~df.deleted].path)
    want = {"/d", "/d/a", "/d/c"} | ({"/d/b2"} if how == "renamed" else set())
    assert live == want
    row = df.set_index("path").loc["/d/b"]
    assert row.deleted and row.found_by == "journal" and row.recoverable
    assert ("orphan" in row.note) == (how == "unlinked")
    assert fs.read("/d/b") == b"b data\n" * 40
    if how == "renamed":
        assert fs.read("/d/b2") == b"b data\n" * 40
    assert not (fs.check().severity == "error").any()
    kernel = _kernel_view(out, tmp_path)
    if kernel is None:
        pytest.skip("no kernel mount here: checked against the built log only")
    assert {"/d/" + n for n in kernel} | {"/d"} == want  # the kernel's replay agrees
