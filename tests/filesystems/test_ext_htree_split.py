"""ext4 htree leaves split by libext2fs (issue 16): no phantom copies, the real deletions.

e2fsprogs >= 1.46 adds names to an indexed directory through the htree and splits full
leaves (lib/ext2fs/link.c). The directory is made by ``mke2fs -d`` with a pinned hash seed
(a fixed layout), indexed by ``e2fsck -D``, grown by 600 ``debugfs ln`` (the index grows
from its leaves: the splits), then names are removed with ``debugfs rm`` and ``unlink``.
The truth is those removals; debugfs ``ls -d`` and TSK's ``fls -r -d`` read the same image.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import have
from tests.tools import run
from vdinspect.filesystems.ext import open_filesystem
from vdinspect.io import FileSource

pytestmark = pytest.mark.skipif(not have("mke2fs", "debugfs", "e2fsck"),
                                reason="needs e2fsprogs")
SEED = "6d1c5a8e-3f4b-4c2a-9e7d-0123456789ab"
RM = ["file_with_a_long_name_007.txt", "file_with_a_long_name_150.txt",
      "added_name_number_333.txt"]  # their own inodes (the added ones: see below)
UNLINK = ["added_name_number_010.txt", "added_name_number_451.txt"]  # links of file 000


def _leaves(img: Path) -> int:
    out = run("debugfs", "-R", "htree_dump /d", img)
    return len(re.findall(r"^Entry #\d+: Hash 0x[0-9a-f]+, block \d+", out, re.M))


def test_libext2fs_split_leaves_list_only_real_deletions(tmp_path):
    src = tmp_path / "src" / "d"
    src.mkdir(parents=True)
    for i in range(200):
        (src / f"file_with_a_long_name_{i:03d}.txt").write_text(f"{i}\n")
    img = tmp_path / "h.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", "-b", "1024", "-O", "^metadata_csum", "-E",
        f"hash_seed={SEED}", "-d", tmp_path / "src", img, "32M")
    run("e2fsck", "-fyD", img, check=False)
    before = _leaves(img)
    cmds = tmp_path / "cmds"
    lines = [f"ln /d/file_with_a_long_name_000.txt /d/added_name_number_{i:03d}.txt"
             for i in range(600)]
    lines[333] = "write /dev/null /d/added_name_number_333.txt"  # one with its own inode
    cmds.write_text("\n".join(lines) + "\n")
    run("debugfs", "-w", "-f", cmds, img)
    after = _leaves(img)
    assert before and after > before  # leaves were split
    run("debugfs", "-w", "-f", "-", img, input="".join(
        [f"rm /d/{n}\n" for n in RM] + [f"unlink /d/{n}\n" for n in UNLINK]))
    gone = set(RM) | set(UNLINK)

    listing = run("debugfs", "-R", "ls -d -p /d", img)
    theirs = {f[5] for line in listing.splitlines() if (f := line.split("/"))[0] == ""
              and len(f) > 6 and f[1] == "0"}  # removed entries: inode shown as 0
    theirs |= {n for n in re.findall(r"<\d+>\s+\(\d+\)\s+(\S+)",
                                     run("debugfs", "-R", "ls -d /d", img))}
    assert theirs == gone  # debugfs sees exactly the removals

    fs = open_filesystem(FileSource(img))
    df = fs.files()
    dead = df[df.deleted & df.path.str.startswith("/d/")]
    assert set(dead.name) == gone  # no phantom copies left by the splits
    assert set(dead.found_by) == {"slack"}
    live = df[~df.deleted & df.path.str.startswith("/d/")]
    assert len(live) == 200 + 600 - len(gone)
    if have("fls"):
        tsk = {line.split(":\t", 1)[1] for line in run("fls", "-r", "-d", "-p", img)
               .splitlines() if ":\t" in line}
        # TSK adds a fake name read from an htree index node ("d/^")
        assert {p for p in tsk if p.startswith("d/") and p != "d/^"} == {
            f"d/{n}" for n in gone}
