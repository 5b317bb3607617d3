"""Btrfs tree log: punched holes, truncations and extended attributes replayed.

Made by the kernel (root and loop mounts, a long commit interval): a file committed, then
a hole punched into it (``fallocate --punch-hole``), or cut short (``truncate``, and
extended again), or its extended attributes changed, and the file fsync'd; the backing
file copied while mounted (a crash image with ``log_root`` set). The oracles: the bytes
and attributes the file had at the fsync (read through the mount before the copy), and
the kernel's own replay (a mount of a copy of the crash image). Before the replay rules
for these were added, a punched range or a cut-off tail read the committed bytes, and a
removed attribute was still listed.
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
from vdinspect.filesystems.btrfs.content import COMPRESSED, PLAIN
from vdinspect.io import FileSource

# kernel mounts and os.sync() (which commits every mounted filesystem) on one xdist
# worker: a sync from a parallel test must not commit a log being staged for a crash copy
pytestmark = pytest.mark.xdist_group("kernel-mounts")

FSYNC = ("import os, sys\n"
         "for p in sys.argv[1:]:\n"
         "    fd = os.open(p, os.O_RDONLY); os.fsync(fd); os.close(fd)\n")
BODY = bytes((i * 7 + i // 251) & 0xFF for i in range(256 << 10))  # 256 KiB, no runs


def _punch(f: Path) -> None:
    run("fallocate", "--punch-hole", "--offset", 64 << 10, "--length", 64 << 10, f)


def _punch_tail(f: Path) -> None:  # a hole not on a sector boundary, and the last 4 KiB
    run("fallocate", "--punch-hole", "--offset", 5000, "--length", 20000, f)
    run("fallocate", "--punch-hole", "--offset", (252 << 10), "--length", 4096, f)


def _truncate(f: Path) -> None:
    os.truncate(f, 10_000)


def _truncate_extend(f: Path) -> None:  # cut short, then longer again: the tail is zeros
    os.truncate(f, 4096)
    os.truncate(f, 200_000)


def _truncate_inline(f: Path) -> None:  # emptied, then 500 bytes: an inline extent
    os.truncate(f, 0)
    with open(f, "r+b") as h:
        h.write(b"inline " * 71 + b"end")


def _xattrs(f: Path) -> None:
    os.removexattr(f, "user.gone")
    os.setxattr(f, "user.changed", b"new value")
    os.setxattr(f, "user.added", b"x" * 300)


def _xattrs_all_gone(f: Path) -> None:
    for n in ("user.gone", "user.changed", "user.kept"):
        os.removexattr(f, n)


def _link_and_xattr(f: Path) -> None:  # a new name, the directory fsync'd (not the file)
    os.removexattr(f, "user.gone")
    os.link(f, f.parent / "f2")


# name: (change, what is fsync'd, whether the fsync makes the change durable: otherwise
# only the kernel's replay is the oracle)
CASES = {"punch": (_punch, "d/f", True), "punch-unaligned": (_punch_tail, "d/f", True),
         "truncate": (_truncate, "d/f", True),
         "truncate-extend": (_truncate_extend, "d/f", True),
         "truncate-inline": (_truncate_inline, "d/f", True),
         "xattrs": (_xattrs, "d/f", True), "xattrs-all-gone": (_xattrs_all_gone, "d/f", True),
         "link-fsync-dir": (_link_and_xattr, "d", False),
         # compressed extents (mount -o compress-force): a punch or a cut inside one
         "punch-zlib": (_punch_tail, "d/f", True), "truncate-zlib": (_truncate, "d/f", True)}


def _mount(img: Path, mnt: Path, opts: str = "loop") -> bool:
    mnt.mkdir(exist_ok=True)
    return subprocess.run(["mount", "-t", "btrfs", "-o", opts, str(img), str(mnt)],
                          capture_output=True).returncode == 0


def _state(f: Path) -> tuple[bytes, dict[str, bytes]]:
    return f.read_bytes(), {n: os.getxattr(f, n) for n in os.listxattr(f)}


def _fiemap(f: Path) -> list[tuple[int, int, int]]:
    """The file's written extents as the kernel maps them (``xfs_io fiemap``, 512-byte
    units; holes, unwritten and inline ones left out): (file start, file end, address) in
    bytes, contiguous runs merged (a compressed one's address: its extent's)."""
    out = []
    for a, b, p, flags in re.findall(r"\[(\d+)\.\.(\d+)\]:\s+(\d+)\.\.\d+\s+\d+\s+(0x[0-9a-f]+)",
                                     run("xfs_io", "-r", "-c", "fiemap -v", f)):
        if not int(flags, 16) & 0xA00:  # FIEMAP_EXTENT_UNWRITTEN, _DATA_INLINE
            out.append((int(a) * 512, (int(b) + 1) * 512, int(p) * 512))
    return _merged(out)


def _merged(runs: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for a, b, p in sorted(runs):
        if out and out[-1][1] == a and out[-1][2] + (a - out[-1][0]) == p:
            out[-1] = (out[-1][0], b, out[-1][2])
        else:
            out.append((a, b, p))
    return out


def _committed_size(crash: Path) -> int | None:
    """The size of /d/f (inode 258) in the committed FS tree (dump-tree), or None."""
    text = run("btrfs", "inspect-internal", "dump-tree", "-t", "5", crash, check=False)
    m = re.search(r"item \d+ key \(258 INODE_ITEM 0\).*?\n\s+generation \d+ transid \d+ "
                  r"size (\d+)", text)
    return int(m.group(1)) if m else None


def _stage(work: Path, name: str, change, synced: str) -> tuple[Path, tuple]:
    """One crash image: /d/f committed (256 KiB, three attributes), then ``change`` and an
    fsync of ``synced``, the backing file copied while still mounted. Returns the copy and
    the file's bytes and attributes at the fsync."""
    img, mnt = work / f"{name}.img", work / "mnt"
    with open(img, "wb") as f:
        f.truncate(256 << 20)
    run("mkfs.btrfs", "-q", "-f", img)
    opts = ",compress-force=zlib" if name.endswith("-zlib") else ""
    if not _mount(img, mnt, "loop,commit=300" + opts):
        pytest.skip("loop mount refused here")
    try:
        (mnt / "d").mkdir()
        f = mnt / "d" / "f"
        f.write_bytes(BODY)
        for n, v in (("user.gone", b"old"), ("user.changed", b"old value"),
                     ("user.kept", b"kept")):
            os.setxattr(f, n, v)
        os.sync()
        change(f)
        subprocess.run(["python3", "-c", FSYNC, str(mnt / synced)], check=True)
        want = _state(f)
        sparse_copy(img, work / f"{name}.crash")  # a crash right after the fsync
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    return work / f"{name}.crash", want


@pytest.fixture(scope="module")
def crashes(tmp_path_factory):
    """A crash image per case, staged when a test first asks for it."""
    if os.geteuid() != 0 or not have("mkfs.btrfs", "mount", "btrfs", "fallocate",
                                     "xfs_io"):
        pytest.skip("needs root, btrfs-progs, xfs_io, fallocate and mount")
    work = tmp_path_factory.mktemp("btrfs-log-truncate")
    out: dict[str, tuple] = {}

    def get(name: str) -> tuple[Path, tuple]:
        if name not in out:
            change, synced, _durable = CASES[name]
            for _attempt in range(3):  # a sync() elsewhere (sfdisk calls one) may commit
                crash, want = _stage(work, name, change, synced)
                if _committed_size(crash) == len(BODY):
                    break  # the committed tree still holds the file as it was before
            out[name] = (crash, want)
        return out[name]
    return work, get


SLOW = {"punch-unaligned", "link-fsync-dir", "punch-zlib", "truncate-zlib"}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW
                                  else c for c in CASES])
def test_replay_matches_the_fsync_and_the_kernel(crashes, case):
    work, get = crashes
    crash, (data, attrs) = get(case)
    text = run("btrfs", "inspect-internal", "dump-super", crash)
    if int(re.search(r"^log_root\s+(\d+)", text, re.M).group(1)) == 0:
        pytest.skip("the kernel committed instead of logging")
    if _committed_size(crash) != len(BODY):
        pytest.skip("a sync() elsewhere committed the change before the fsync (3 tries)")
    fs = open_filesystem(FileSource(crash))
    if not fs.info()["dirty"]:  # a superblock mirror copied after a commit elsewhere
        pytest.skip("a sync() elsewhere committed while the image was copied")
    e = fs.lookup("/d/f")
    ours = (fs.read("/d/f"), fs.xattrs("/d/f"))
    if CASES[case][2]:
        assert e.size == len(data)
        assert ours == (data, attrs)
    kernel = work / f"{case}.kernel"
    sparse_copy(crash, kernel)
    mnt = work / "mnt"
    if not _mount(kernel, mnt):
        pytest.skip("the kernel refused to replay the log")
    try:
        theirs = _state(mnt / "d" / "f")
        kernel_map = _fiemap(mnt / "d" / "f")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    assert ours == theirs
    # the extents left after the replay, past the end of file too: the kernel's fiemap
    ext = _merged([(p.start, p.start + p.length, p.addr) for p in fs.pieces(*e.key)
                   if p.kind in (PLAIN, COMPRESSED)])  # compressed: the extent's address
    assert ext == kernel_map
    assert not (fs.check().severity == "error").any()
