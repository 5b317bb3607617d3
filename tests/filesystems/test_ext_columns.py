"""The column walk of ext ``files()`` (filesystems/ext/walk.py) on folders big enough for
its bulk paths: a folder whose inodes span several pieces of the inode table, folders
mixing plain files with deleted entries and symlinks (rows built the full way, merged
back in order), inodes read in bulk (``inode_records``). Oracles: ``fls -r -p``,
``debugfs stat`` and ``debugfs imap`` (where each inode lies, read from the image)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import have
from tests.filesystems.test_ext import debugfs, debugfs_stats, fls, ours
from tests.tools import fls_lines
from vdinspect.filesystems.ext import open_filesystem
from vdinspect.io import FileSource

pytestmark = pytest.mark.skipif(not have("mke2fs", "debugfs"), reason="needs e2fsprogs")

BIG = 700  # files in /big: inodes over three 256-inode pieces of the table


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    top = tmp_path_factory.mktemp("extcols")
    src = top / "tree"
    big = src / "big"
    big.mkdir(parents=True)
    for i in range(BIG):
        (big / f"file {i:04d}.txt").write_bytes(b"x" * (i * 37 % 5000))
    mixed = src / "mixed"
    (mixed / "sub").mkdir(parents=True)
    for i in range(40):
        (mixed / f"m{i:02d}").write_bytes(b"y" * i)
    (mixed / "link").symlink_to("m01")
    (mixed / "sub" / "deep.txt").write_text("deep")
    img = top / "cols.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-N", "2048", "-d",
                    str(src), str(img), "16M"], check=True, capture_output=True)
    # removed entries among live ones (their names stay in the directory's slack)
    debugfs(img, "rm /mixed/m05", "rm /mixed/m20", "rm \"/big/file 0100.txt\"", write=True)
    return img


def test_listing_matches_fls(image):
    if not have("fls"):
        pytest.skip("needs sleuthkit")
    fs = open_filesystem(FileSource(image))
    mine = ours(fs)
    assert mine == fls(image)
    live = {p for p, _i, d in mine if not d}
    assert len([p for p in live if p.startswith("/big/")]) == BIG - 1
    assert "/mixed/link" in live and "/mixed/sub/deep.txt" in live
    gone = {p for p, _i, d in mine if d}
    assert {"/mixed/m05", "/mixed/m20", "/big/file 0100.txt"} <= gone  # the mixed way


def test_metadata_matches_debugfs_stat(image):
    fs = open_filesystem(FileSource(image))
    df = fs.files()
    live = df[~df["deleted"]].set_index("path")
    paths = (["/big/file 0000.txt", "/big/file 0299.txt", "/big/file 0512.txt",
              "/big/file 0699.txt", "/mixed/m00", "/mixed/m39", "/mixed/sub",
              "/mixed/link", "/big"])
    want = debugfs_stats(image, [f'"{p}"' for p in paths])  # quoted: names with spaces
    for p in paths:
        row, d = live.loc[p], want[f'"{p}"']
        assert int(row["inode"]) == d["inode"], p
        assert int(row["size"]) == d["size"], p
        assert int(row["mode"]) & 0o7777 == d["perm"], p
        assert (int(row["uid"]), int(row["gid"])) == (d["uid"], d["gid"]), p
        assert int(row["links"]) == d["links"], p
        assert int(row["flags"]) == d["flags"], p
        sec, extra, _text = d["mtime"]
        ns = int(row["mtime_ns"])
        assert ns // 10**9 == sec and (extra is None or ns % 10**9 == extra >> 2), p
    assert live.loc["/mixed/link", "target"] == "m01"
    assert live.loc["/big", "kind"] == "dir" and live.loc["/big/file 0001.txt", "kind"] == "file"


def _imap(image: Path, inos: list[int]) -> dict[int, int]:
    """Byte offset of each inode in the image, from ``debugfs imap``."""
    text = debugfs(image, *[f"imap <{i}>" for i in inos])
    bs = 4096
    found = re.findall(r"Inode (\d+) is part of block group \d+\s+located at block (\d+), "
                       r"offset 0x([0-9a-f]+)", text)
    return {int(i): int(b) * bs + int(o, 16) for i, b, o in found}


def test_inode_records_match_debugfs_imap(image):
    fs = open_filesystem(FileSource(image))
    isz = fs.inode_size
    data = image.read_bytes()
    for inos in (list(range(12, 40)), list(range(20, 700, 3)), [2, 11, 1500, 13, 2047],
                 list(range(1, 2049))):
        where = _imap(image, inos)
        got, ok = fs.inode_records(np.array(inos, dtype=np.int64))
        assert ok.all()
        for k, ino in enumerate(inos):
            assert got[k].tobytes() == data[where[ino] : where[ino] + isz], ino
    count = fs.sb.inodes_count
    got, ok = fs.inode_records(np.array([0, 5, count, count + 1], dtype=np.int64))
    assert ok.tolist() == [False, True, True, False]
    assert not got[0].any() and not got[3].any()


def _fls_rows(image: Path, *opts: str, inode: int | None = None,
              prefix: str = "/") -> set[tuple[str, int, bool]]:
    """(path, inode, deleted) of ``fls -p`` with ``opts`` (from directory ``inode``),
    paths under ``prefix``."""
    cmd = ["fls", "-p", *opts, str(image)] + ([str(inode)] if inode else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         errors="replace").stdout
    return {(prefix + r["path"], r["inode"], r["deleted"])
            for r in fls_lines(out, strict=True) if r["path"] != "$OrphanFiles"}


@pytest.mark.parametrize("how", ["live only", "one folder", "below a folder"])
def test_options_match_fls(image, how):
    """``deleted=False`` (fls -u), ``recursive=False`` and a start below the root (fls
    given the folder's inode) take the column walk too."""
    if not have("fls"):
        pytest.skip("needs sleuthkit")
    fs = open_filesystem(FileSource(image))
    mixed = int(fs.stat("/mixed").inode)
    if how == "live only":
        df, want = fs.files(deleted=False), _fls_rows(image, "-r", "-u")
    elif how == "one folder":
        df = fs.files("/mixed", recursive=False)
        want = _fls_rows(image, inode=mixed, prefix="/mixed/")
    else:
        df = fs.files("/mixed")
        want = _fls_rows(image, "-r", inode=mixed, prefix="/mixed/")
    got = {(r.path, int(r.inode), bool(r.deleted)) for r in df.itertuples()
           if r.path != "/$OrphanFiles"}
    assert got == want
    assert (how == "live only") == (not df["deleted"].any())
