"""ext hands a folder's entries out lazily: the first rows of a big folder read only the
inodes of those rows (issue 19), in debugfs's order, and the whole folder reads back the
same as the column walk of ``files()``; a second pass reads nothing."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import pytest

from tests import tools
from tests.conftest import have
from vdinspect.filesystems.ext import open_filesystem
from vdinspect.io import ByteSource, FileSource
from vdinspect.widgets import BrowserController

needs_e2fs = pytest.mark.skipif(not have("mke2fs", "debugfs"), reason="needs e2fsprogs")

N_FILES = 3000
TAKEN = 200


class CountingSource(ByteSource):
    """A source that records every (offset, length) read through it."""

    def __init__(self, inner: ByteSource) -> None:
        self.inner = inner
        self.size = inner.size
        self.name = inner.name
        self.reads: list[tuple[int, int]] = []

    def _read(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return self.inner.read(offset, length)


def debugfs_ls(img: Path, path: str) -> list[tuple[str, int, int]]:
    """(name, inode, mode) of the live entries of a folder, in debugfs's order."""
    out = tools.run("debugfs", "-R", f"ls -l {path}", str(img))
    rows = []
    for line in out.splitlines():
        f = line.split()
        if len(f) < 3 or not f[0].isdigit() or f[-1] in (".", ".."):
            continue
        rows.append((f[-1], int(f[0]), int(f[1], 8)))
    return rows


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory) -> Path:
    """/many: N_FILES files, a symlink and a subfolder; one file removed by debugfs (its
    name stays in the block's slack: a deleted entry built when the folder is listed)."""
    if not have("mke2fs", "debugfs"):
        pytest.skip("needs e2fsprogs")
    root = tmp_path_factory.mktemp("extlazy")
    many = root / "src" / "many"
    many.mkdir(parents=True)
    for i in range(N_FILES):
        (many / f"f{i:05d}.txt").write_bytes(b"x" * (i % 37))
    (many / "sub").mkdir()
    (many / "sub" / "inner.txt").write_text("inner\n")
    (many / "link").symlink_to("f00001.txt")
    img = root / "many.img"
    tools.run("mke2fs", "-q", "-F", "-t", "ext4", "-N", str(N_FILES + 500), "-d",
              root / "src", img, "32M")
    tools.run("debugfs", "-w", "-R", "rm /many/f00007.txt", img)
    return img


def _inode_ranges(img: Path, inodes) -> dict[int, tuple[int, int]]:
    fs = open_filesystem(FileSource(img))
    out = {}
    for ino in inodes:
        rec = fs.inode(ino)
        out[ino] = (rec.offset, len(rec.raw))
    return out


def _touched(reads, ranges: dict[int, tuple[int, int]]) -> set[int]:
    """The inodes whose record bytes some read covered."""
    return {ino for ino, (at, n) in ranges.items()
            if any(a < at + n and at < a + ln for a, ln in reads)}


@needs_e2fs
def test_first_entries_read_only_their_inodes(big_folder, monkeypatch):
    expected = debugfs_ls(big_folder, "/many")
    assert len(expected) == N_FILES + 2 - 1
    src = CountingSource(FileSource(big_folder))
    fs = open_filesystem(src)
    built: list[int] = []
    read_inode = fs.inode
    monkeypatch.setattr(fs, "inode", lambda ino: built.append(ino) or read_inode(ino))
    fs.lookup("/many")
    opened = list(src.reads)  # the superblock, the root's listing, /many's inode
    built.clear()
    src.reads.clear()

    first = list(islice(fs.iter_entries("/many", recursive=False, deleted=False), TAKEN))
    assert [e.name for e in first] == [n for n, _i, _m in expected[:TAKEN]]
    assert [e.inode for e in first] == [i for _n, i, _m in expected[:TAKEN]]
    # inodes decoded: the root's (the path lookup), those of the rows taken, and those of
    # the entries built when the folder is listed (the symlink: its target is read; the
    # removed name: its inode is examined)
    eager = {i for n, i, m in expected if m >> 12 not in (0o10, 0o04)}
    assert eager and set(built) >= {e.inode for e in first} | eager
    others = set(built) - {e.inode for e in first} - eager - {2}
    assert len(others) <= 1  # the removed file's inode
    assert len(set(built)) < TAKEN + 10
    # through the source: most of the folder's inode records were not read at all
    folder = {i for _n, i, _m in expected}
    ranges = _inode_ranges(big_folder, folder)
    unread = folder - _touched(opened + src.reads, ranges)
    assert len(unread) > len(folder) // 2

    # the rest: every entry, in order, as the column walk of files() has them
    rest = list(fs.iter_entries("/many", recursive=False, deleted=False))
    assert [e.name for e in rest] == [n for n, _i, _m in expected]
    assert not (folder - _touched(opened + src.reads, ranges))
    frame = fs.files("/many", recursive=False, deleted=False)
    assert list(frame["name"]) == [e.name for e in rest]
    assert list(frame["size"]) == [e.size for e in rest]
    assert list(frame["kind"]) == [e.kind for e in rest]
    assert list(frame["inode"]) == [e.inode for e in rest]

    # a second pass is free: nothing read, no inode decoded but the root's (the lookup)
    built.clear()
    src.reads.clear()
    again = list(fs.iter_entries("/many", recursive=False, deleted=False))
    assert [e.row() for e in again] == [e.row() for e in rest]
    assert set(built) <= {2} and not src.reads


@needs_e2fs
def test_lazy_listing_same_rows_and_findings_as_a_full_listing(big_folder):
    """Taken lazily or listed in one piece (list_dir, deleted entries too), a folder gives
    the same Entries and the same findings."""
    a = open_filesystem(FileSource(big_folder), strict=False)
    lazy = list(a.iter_entries("/many", recursive=True, deleted=True))
    b = open_filesystem(FileSource(big_folder), strict=False)
    whole = b.list_dir(b.lookup("/many", deleted=True))
    assert [e.row() for e in lazy[: len(whole)]] == [
        {**e.row(), "path": "/many/" + e.name, "parent": "/many"} for e in whole
    ]
    assert any(e.deleted and e.name == "f00007.txt" for e in whole)
    assert [e.path for e in lazy[len(whole):]] == ["/many/sub/inner.txt"]
    assert sorted(map(str, a.findings)) == sorted(map(str, b.findings))


@needs_e2fs
def test_browser_first_rows_leave_the_rest_unbuilt(big_folder):
    """The controller's first 1,000 rows of /many (the browser's first read) are in
    debugfs's order; the folder's other inodes are read only when it reads on."""
    expected = [n for n, _i, _m in debugfs_ls(big_folder, "/many")]
    src = CountingSource(FileSource(big_folder))
    c = BrowserController(open_filesystem(src))
    c.cd("/many")
    src.reads.clear()
    assert c.read_ahead(1000) == 1000
    assert [e.name for e in c.window(0, 1000)] == expected[:1000]
    first_bytes = sum(n for _a, n in src.reads)
    assert c.read_ahead() == len(expected)
    assert [e.name for e in c.window(0, len(expected))] == expected
    assert sum(n for _a, n in src.reads) > first_bytes
