"""Btrfs deleted entries go through the one walk (filesystems/walk.py) and its rules.

A volume made by ``mkfs.btrfs --rootdir``; its index of deleted entries is replaced by
one describing a hostile older tree (what no tool writes: a deleted directory whose
entries name itself, an ancestor, and one directory under two names). The walk's rules
must hold for the deleted pass as for every listing: each row listed once, a loop or a
second name for a directory reported as a finding and not followed, the listing bounded.
"""

from __future__ import annotations

import pytest

from tests.conftest import have
from tests.tools import run
from vdinspect.filesystems.btrfs import open_filesystem
from vdinspect.filesystems.btrfs import structs as S
from vdinspect.filesystems.btrfs.recovery import Deleted, Gone
from vdinspect.io import FileSource


@pytest.mark.skipif(not have("mkfs.btrfs"), reason="needs btrfs-progs")
def test_deleted_directories_follow_the_walk_rules(tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"live\n")
    img = tmp_path / "b.img"
    with open(img, "wb") as f:
        f.truncate(128 << 20)
    run("mkfs.btrfs", "-q", "-f", "--rootdir", src, img)
    fs = open_filesystem(FileSource(img), strict=False)
    sid, dino = fs.lookup("/d").key
    rec = S.INODE_ITEM_FMT.pack(*fs.inode_item(sid, dino))  # a directory's inode item
    old = ("backup", 1, sid)

    def gone(ino: int, name: str) -> Gone:
        return Gone(old, sid, ino, name, rec, 2, "backup", False, "from an older tree")
    found = Deleted(count=6)
    found.children[(sid, dino)] = [gone(900, "x")]
    found.children[(sid, 900)] = [gone(900, "self"), gone(901, "sub"), gone(902, "h1"),
                                  gone(902, "h2")]
    found.children[(sid, 901)] = [gone(900, "up")]
    monkeypatch.setattr(fs, "deleted_index", lambda: found)
    df = fs.files()
    gone_rows = sorted(df[df.deleted].path)
    assert gone_rows == ["/d/x", "/d/x/h1", "/d/x/h2", "/d/x/self", "/d/x/sub", "/d/x/sub/up"]
    assert sorted(df[~df.deleted].path) == ["/d", "/d/f"]
    rows = fs.check()
    msgs = rows[rows.structure == "directory"].message.tolist()
    assert sorted(m.split(":")[0] for m in msgs if "loop" in m) == ["/d/x/self",
                                                                    "/d/x/sub/up"]
    assert [m.split(":")[0] for m in msgs if "another name" in m] == ["/d/x/h2"]
