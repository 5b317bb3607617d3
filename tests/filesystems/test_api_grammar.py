"""One API grammar on all six filesystems (issue 15 item 5), each volume made by its own
mkfs tool with a label, a block size and one file chosen here:

- ``info()`` is a Series starting with the shared keys; ``label``, ``block_size`` and
  ``uuid`` are what the tool was told / what blkid (libblkid, independent of us) reads;
  ``size`` lies within the image the volume was made in; a fresh volume is not dirty;
- ``check()`` and ``structures()`` are DataFrames in the documented schemas, with no
  problem rows for a fresh volume;
- the methods that take a file accept its path or its Entry alike, with the same answer
  (the bytes are the ones the tool copied in).
"""

from __future__ import annotations

import os
import shutil
import uuid as uuidlib
from pathlib import Path

import pytest

import vdinspect
from tests.tools import run
from vdinspect.filesystems.base import Entry
from vdinspect.schemas import CHECK_COLUMNS, FS_INFO_FIELDS, STRUCTURE_COLUMNS

MiB = 1 << 20
LABEL = "GRAMMAR"
DATA = b"one API grammar\n" * 300  # 4800 bytes: more than one block on every volume


def _fat(img: Path, src: Path) -> None:
    run("mkfs.fat", "-F", "32", "-s", "4", "-n", LABEL, img)  # 2 KiB clusters
    run("mcopy", "-i", img, src, "::/hello.txt", env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))


def _exfat(img: Path, src: Path) -> None:
    from tests import fs_builder as fb

    run("mkfs.exfat", "-c", "8K", "-L", LABEL, img)
    built = fb.ExfatImage(img.read_bytes())
    built.add(built.root, "hello.txt", src.read_bytes())
    img.write_bytes(built.image())


def _ext4(img: Path, src: Path) -> None:
    root = src.parent / "root"
    root.mkdir()
    shutil.copy(src, root / "hello.txt")
    run("mke2fs", "-q", "-F", "-t", "ext4", "-b", "1024", "-L", LABEL, "-d", root, img)


def _ntfs(img: Path, src: Path) -> None:
    run("mkntfs", "-q", "-F", "-Q", "-c", "8192", "-L", LABEL, img)
    run("ntfscp", "-q", img, src, "/hello.txt")


def _xfs(img: Path, src: Path) -> None:
    proto = src.parent / "proto"
    proto.write_text(f"/dev/null\n0 0\nd--755 0 0\nhello.txt ---644 0 0 {src}\n$\n")
    run("mkfs.xfs", "-q", "-f", "-b", "size=2048", "-L", LABEL, "-p", proto, img)


def _btrfs(img: Path, src: Path) -> None:
    root = src.parent / "root"
    root.mkdir()
    shutil.copy(src, root / "hello.txt")
    run("mkfs.btrfs", "-q", "-f", "-s", "4096", "-L", LABEL, "--rootdir", root, img)


# fstype: (tools, image size, builder, the block size the tool was told)
VOLUMES = {
    "fat32": (("mkfs.fat", "mcopy"), 160 * MiB, _fat, 2048),  # FAT32: >= 65525 clusters
    "exfat": (("mkfs.exfat",), 32 * MiB, _exfat, 8192),
    "ext4": (("mke2fs",), 16 * MiB, _ext4, 1024),
    "ntfs": (("mkntfs", "ntfscp"), 32 * MiB, _ntfs, 8192),
    "xfs": (("mkfs.xfs",), 320 * MiB, _xfs, 2048),
    "btrfs": (("mkfs.btrfs",), 128 * MiB, _btrfs, 4096),
}


def _blkid(img: Path, tag: str) -> str:
    return run("blkid", "-p", "-o", "value", "-s", tag, img, check=False).strip()


def _plain(uuid: str | None) -> str:
    """A volume id as hex digits (FAT's XXXX-XXXX and GUIDs alike), for comparison."""
    return (uuid or "").replace("-", "").lower()


@pytest.fixture(scope="module", params=sorted(VOLUMES))
def volume(request, tmp_path_factory):
    fstype = request.param
    tools, size, build, block = VOLUMES[fstype]
    if not all(shutil.which(t) for t in (*tools, "blkid")):
        pytest.skip(f"needs {', '.join(tools)} and blkid")
    tmp = tmp_path_factory.mktemp(fstype)
    src = tmp / "hello.txt"
    src.write_bytes(DATA)
    img = tmp / f"{fstype}.img"
    with open(img, "wb") as f:
        f.truncate(size)
    try:
        build(img, src)
    except RuntimeError as exc:  # an old tool without an option used here
        pytest.skip(f"{fstype}: {exc}")
    disk = vdinspect.open(img)
    yield fstype, img, block, disk.filesystem()
    disk.close()


def test_info_is_a_series_with_the_shared_keys(volume):
    import pandas as pd

    fstype, img, block, fs = volume
    info = fs.info()
    assert isinstance(info, pd.Series)
    assert list(info.index[: len(FS_INFO_FIELDS)]) == FS_INFO_FIELDS
    assert info["fstype"] == fstype
    assert info["label"] == LABEL == _blkid(img, "LABEL")
    assert info["block_size"] == block
    assert img.stat().st_size - 2 * MiB < info["size"] <= img.stat().st_size
    assert info["dirty"] is False
    want = _blkid(img, "UUID")
    assert want and _plain(info["uuid"]) == _plain(want)
    if fstype not in ("fat32", "exfat", "ntfs"):  # serial numbers, not UUIDs
        uuidlib.UUID(info["uuid"])


def test_check_and_structures_are_frames(volume):
    import pandas as pd

    _fstype, _img, _block, fs = volume
    check = fs.check()
    assert isinstance(check, pd.DataFrame) and list(check.columns) == CHECK_COLUMNS
    assert check[check["severity"].isin(["error", "leak", "warning"])].empty, check
    assert fs.check().equals(check)  # asked again: the checks are not run twice
    st = fs.structures()
    assert isinstance(st, pd.DataFrame) and not st.empty
    assert list(st.columns[: len(STRUCTURE_COLUMNS)]) == STRUCTURE_COLUMNS
    assert (st["length"] > 0).all() and (st["host_offset"] >= 0).all()


def test_methods_take_a_path_or_an_entry(volume, tmp_path):
    _fstype, _img, _block, fs = volume
    path = "/hello.txt"
    entry = fs.lookup(path)
    assert isinstance(entry, Entry) and entry.size == len(DATA)
    assert fs.read(path) == fs.read(entry) == DATA
    with fs.open(entry) as f:
        assert f.read() == DATA
    assert fs.stat(entry).path == fs.stat(path).path == path
    assert fs.damaged(path) == fs.damaged(entry) == 0
    assert fs.damaged_ranges(path) == fs.damaged_ranges(entry) == []
    assert fs.xattrs(path) == fs.xattrs(entry)
    a = fs.extract(path, tmp_path / "by_path")
    b = fs.extract(entry, tmp_path / "by_entry")
    assert (tmp_path / "by_path" / "hello.txt").read_bytes() == DATA
    assert (tmp_path / "by_entry" / "hello.txt").read_bytes() == DATA
    assert len(a.written) == len(b.written) == 1 and not a.skipped and not b.skipped
