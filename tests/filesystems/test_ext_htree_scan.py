"""Hashed (htree) folders listed by the light block scan of ``files()`` (issue 23): the
root and the interior index nodes passed over as the kernel's dx layout places them, the
leaves scanned as ordinary entry blocks.

Oracles: ``debugfs htree_dump`` (the folder is indexed, one or two levels), ``fls -r -p``
(every path, inode and deleted flag; it cannot read the two-level folder's extent
tree) and ``debugfs ls -p`` (the live names) on images
mke2fs -d wrote and ``e2fsck -D`` indexed; names removed with ``debugfs rm``."""

from __future__ import annotations

import re

import pytest

from tests.conftest import have
from tests.filesystems.test_ext import debugfs, debugfs_tree, fls, ours
from tests.tools import run
from vdinspect.filesystems.ext import listing as ext_listing
from vdinspect.filesystems.ext import open_filesystem
from vdinspect.io import FileSource

pytestmark = pytest.mark.skipif(not have("mke2fs", "debugfs", "e2fsck"),
                                reason="needs e2fsprogs")
SEED = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
FOLDERS = {"one": 600, "two": 5000, "removed": 600}  # files a folder


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    top = tmp_path_factory.mktemp("htree")
    src = top / "src"
    for d, n in FOLDERS.items():
        (src / d).mkdir(parents=True)
        for i in range(n):
            (src / d / f"a file with a long name {i:05d}.dat").write_bytes(b"h" * (i % 97))
    (src / "one" / "sub").mkdir()
    (src / "one" / "sub" / "inner.txt").write_text("x")
    img = top / "h.img"
    # 1 KiB blocks: 5000 names need more leaves than the root holds (two levels)
    run("mke2fs", "-q", "-F", "-t", "ext4", "-b", "1024", "-N", "8000", "-E",
        f"hash_seed={SEED}", "-d", src, img, "48M")
    run("e2fsck", "-fyD", img, check=False)
    debugfs(img, *[f'rm "/removed/a file with a long name {i:05d}.dat"'
                   for i in (3, 250, 599)], write=True)
    return img


def levels(img, folder: str) -> int | None:
    """The htree's indirect levels as debugfs reads them (None: not indexed)."""
    m = re.search(r"Indirect levels: (\d+)", run("debugfs", "-R", f"htree_dump /{folder}",
                                                  img))
    return int(m.group(1)) if m else None


def test_htree_folders_scanned_light_and_listed_as_fls(image, monkeypatch):
    assert levels(image, "one") == 0 and levels(image, "two") == 1
    assert levels(image, "removed") == 0
    scans: list[tuple[int, bool]] = []  # (inode, light scan answered) per folder read
    light = ext_listing.ListingMixin._scan_blocks

    def counted(self, rec, live, deleted):
        got = light(self, rec, live, deleted)
        scans.append((rec.number, got is not None))
        return got

    monkeypatch.setattr(ext_listing.ListingMixin, "_scan_blocks", counted)
    fs = open_filesystem(FileSource(image))
    df = fs.files()
    number = {p: int(i) for p, i in zip(df["path"], df["inode"]) if p.count("/") == 1}
    answered = dict(scans)
    assert answered[number["/one"]] and answered[number["/two"]]  # indexed: scanned light
    assert not answered[number["/removed"]]  # removed names in slack: the full parse
    if have("fls"):  # TSK cannot read /two's blocks (its extent tree: "No filler entry
        # for 0"), so it lists nothing below it; debugfs (below) does
        theirs = fls(image)
        assert not {r for r in theirs if r[0].startswith("/two/")}
        assert {r for r in ours(fs) if not r[0].startswith("/two/")} == theirs
    live = df[~df["deleted"]]
    assert {(p, int(i)) for p, i in zip(live["path"], live["inode"])} == debugfs_tree(image)
    dead = df[df["deleted"] & df["path"].str.startswith("/removed/")]
    assert sorted(dead["name"]) == [f"a file with a long name {i:05d}.dat"
                                    for i in (3, 250, 599)]
    assert len(df[df["parent"] == "/two"]) == FOLDERS["two"]
