"""Btrfs tree log: the names a replay removes are removed from the view.

Made by the kernel (root and loop mounts, a long commit interval): files committed, then
unlinked or renamed and their directory or the file fsync'd, the backing file copied
while mounted (a crash image with ``log_root`` set). The oracle is the kernel's own
replay: a mount of a copy. What vdinspect lists as live equals what the mount shows; the
names the replay removes are listed as deleted rows (``found_by='journal'``, a note
saying why), their bytes still readable; the log's items dumped by ``btrfs
inspect-internal dump-tree`` hold the DIR_LOG_INDEX ranges the removal rests on.
"""

from __future__ import annotations

import os
import re
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

FSYNC = ("import os, sys\n"
         "for p in sys.argv[1:]:\n"
         "    fd = os.open(p, os.O_RDONLY); os.fsync(fd); os.close(fd)\n")

# name: (what is done after the commit, what is fsync'd, names the replay removes)
CASES = {
    "unlink": (lambda m: (m / "d/gone").unlink() or (m / "d/fresh").write_bytes(b"new\n"),
               ["d/fresh", "d"], {"/d/gone"}),  # fresh's data made durable too
    "rename-fsync-file": (lambda m: (m / "d/old").rename(m / "d/new"), ["d/new"], {"/d/old"}),
    "rename-fsync-dir": (lambda m: (m / "d/old").rename(m / "d/new"), ["d"], {"/d/old"}),
    "unlink-hard-link": (lambda m: (m / "d/hard2").unlink(), ["d"], {"/d/hard2"}),
}


def _mount(img: Path, mnt: Path, opts: str = "loop") -> bool:
    mnt.mkdir(exist_ok=True)
    return subprocess.run(["mount", "-t", "btrfs", "-o", opts, str(img), str(mnt)],
                          capture_output=True).returncode == 0


def _walk(mnt: Path) -> dict[str, tuple[str, bytes | None]]:
    out = {}
    for top, dirs, files in os.walk(mnt):
        for n in dirs + files:
            p = Path(top, n)
            out["/" + str(p.relative_to(mnt))] = ("dir", None) if p.is_dir() else (
                "file", p.read_bytes())
    return out


def _stage(work: Path, name: str, change, synced: list[str]) -> Path:
    """One crash image: names committed, then ``change`` and an fsync of ``synced``, the
    backing file copied while still mounted."""
    img, mnt = work / f"{name}.img", work / "mnt"
    with open(img, "wb") as f:
        f.truncate(256 << 20)
    run("mkfs.btrfs", "-q", "-f", img)
    if not _mount(img, mnt, "loop,commit=300"):
        pytest.skip("loop mount refused here")
    try:
        (mnt / "d").mkdir()
        for n in ("keep", "gone", "old", "hard"):
            (mnt / "d" / n).write_bytes(f"{n} committed\n".encode() * 50)
        os.link(mnt / "d/hard", mnt / "d/hard2")
        os.sync()
        change(mnt)
        subprocess.run(["python3", "-c", FSYNC, *[str(mnt / s) for s in synced]], check=True)
        sparse_copy(img, work / f"{name}.crash")  # a crash right after the fsync
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    return work / f"{name}.crash"


def _committed_names(crash: Path) -> set[str]:
    """The names in the committed FS tree of a crash image, as btrfs-progs dumps them."""
    text = run("btrfs", "inspect-internal", "dump-tree", "-t", "5", crash, check=False)
    return set(re.findall(r"\bname: (\S+)", text))


@pytest.fixture(scope="module")
def crashes(tmp_path_factory):
    if os.geteuid() != 0 or not have("mkfs.btrfs", "mount", "btrfs"):
        pytest.skip("needs root, btrfs-progs and mount")
    work = tmp_path_factory.mktemp("btrfs-log-removals")
    out = {}
    for name, (change, synced, gone) in CASES.items():
        for _attempt in range(3):  # a sync() elsewhere (sfdisk calls one) may commit first
            crash = _stage(work, name, change, synced)
            if _committed_names(crash) >= {p.rsplit("/", 1)[1] for p in gone}:
                break  # the committed tree still holds the names only the log removes
        out[name] = crash
    return work, out


@pytest.mark.parametrize("case", list(CASES))
def test_replay_removals_match_the_kernel(crashes, case):
    work, images = crashes
    crash = images[case]
    text = run("btrfs", "inspect-internal", "dump-super", crash)
    if int(re.search(r"^log_root\s+(\d+)", text, re.M).group(1)) == 0:
        pytest.skip("the kernel committed instead of logging")
    if not _committed_names(crash) >= {p.rsplit("/", 1)[1] for p in CASES[case][2]}:
        pytest.skip("a sync() elsewhere committed the change before the fsync (3 tries)")
    fs = open_filesystem(FileSource(crash))
    df = fs.files()
    live = df[~df.deleted]
    ours = {r.path: (r.kind, fs.read(r.path) if r.kind == "file" else None)
            for r in live.itertuples()}
    gone = df[df.deleted & (df.found_by == "journal")]
    kernel = work / f"{case}.kernel"
    sparse_copy(crash, kernel)
    mnt = work / "mnt"
    if not _mount(kernel, mnt):
        pytest.skip("the kernel refused to replay the log")
    try:
        theirs = _walk(mnt)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    assert ours == theirs
    assert set(gone.path) == CASES[case][2]
    for r in gone.itertuples():  # still readable: the replay has not run on the image
        assert r.note.startswith("removed by the tree log's replay")
        assert r.recoverable
        name = r.path.rsplit("/", 1)[1]
        assert fs.read(r.path) == f"{name} committed\n".encode() * 50 or \
            name == "hard2"
    # the generic walk (list_dir) agrees with the bulk listing
    kids = {e.name: e.deleted for e in fs.list_dir(fs.lookup("/d"))}
    assert {f"/d/{n}" for n, d in kids.items() if d} == CASES[case][2]
    assert {f"/d/{n}" for n, d in kids.items() if not d} == {
        p for p in theirs if p.startswith("/d/")}


def test_unlinked_last_name_is_an_orphan(crashes):
    _work, images = crashes
    fs = open_filesystem(FileSource(images["unlink"]))
    if not fs.info()["dirty"] or "gone" not in _committed_names(images["unlink"]):
        pytest.skip("the kernel committed instead of logging")
    row = fs.files().set_index("path").loc["/d/gone"]
    assert row.deleted and "orphan" in row.note
    hard = open_filesystem(FileSource(images["unlink-hard-link"]))
    if hard.info()["dirty"]:
        row = hard.files().set_index("path").loc["/d/hard2"]
        assert row.deleted and "orphan" not in row.note  # /d/hard still names it
