"""Btrfs on real images from ../shared/samples (MANIFEST.md sections 13 and 14): the
btrfs-progs test images (zlib/LZO/zstd files, 66 subvolumes and snapshots checked against
a kernel walk and ``dump-tree -t root``, a damaged leaf) and the go-filesystems RAID sets
(SINGLE, RAID0/1/10/5/6 across 1-4 device images, expected hashes from the manifest).
Decompressed into a temporary folder once per session; skipped when the folder is absent.
"""

from __future__ import annotations

import glob
import lzma
import re
from pathlib import Path

import pandas as pd
import pytest

import vdinspect
from tests.filesystems.test_btrfs import SAMPLES, have, run, sha
from tests.tools import dig_holes, write_sparse
from vdinspect.errors import CorruptImage, NotFound
from vdinspect.filesystems.btrfs import open_filesystem
from vdinspect.io import FileSource

MiB = 1 << 20
KDAVE = SAMPLES / "kdave-btrfs-progs" / "tests"
GOFS = SAMPLES / "go-filesystems-btrfs" / "testdata" / "raid"


# --- real samples -------------------------------------------------------------------------

@pytest.fixture(scope="session")
def kdave(tmp_path_factory):
    if not KDAVE.is_dir():
        pytest.skip("../shared/samples absent")
    d = tmp_path_factory.mktemp("kdave")
    out = {}
    for rel in ("misc-tests/025-zstd-compression/compress.raw",
                "fsck-tests/020-extent-ref-cases/shared_block_ref_only.raw",
                "misc-tests/032-bad-item-ptr/bad_item_ptr.raw"):
        dest = d / Path(rel).name
        with lzma.open(KDAVE / (rel + ".xz")) as src:
            write_sparse(dest, src)
        out[dest.stem] = dest
    return out


ZEROS_200K = "8eafc7bd411c1f02b9e972a83d2b0a4164eefc5ef51e6b63ad7acc78be4ad44f"


def test_sample_compressed(kdave):
    fs = open_filesystem(FileSource(kdave["compress"]))
    for name, ino, codec, addrs in (("zlib", 257, 1, [12582912, 12587008]),
                                    ("lzo", 258, 2, [12591104, 12595200]),
                                    ("zstd", 259, 3, [12599296, 12603392])):
        e = fs.lookup("/" + name)
        assert e.inode == ino and e.size == 204800
        src = fs.content(e)
        assert [(p.codec, p.addr, p.disk_len) for p in src.pieces] == [
            (codec, a, 4096) for a in addrs]
        assert sha(fs.read(e)) == ZEROS_200K
    assert fs.check_rows() == []
    assert fs.info()["generation"] == 14


def test_sample_subvolumes_and_snapshots(kdave):
    fs = open_filesystem(FileSource(kdave["shared_block_ref_only"]))
    subs = fs.subvolumes()
    assert sorted(subs.id) == [5] + list(range(256, 322))  # TREE_RELOC roots skipped
    assert set(subs[subs.id == 257].path) == {"/snapshot_00"}
    if have("btrfs"):  # each ROOT_ITEM's uuid, parent_uuid, generation as dump-tree prints
        text = run("btrfs", "inspect-internal", "dump-tree", "-t", "root",
                   kdave["shared_block_ref_only"])
        want_roots = {int(m[0]): (int(m[1]), m[2], m[3]) for m in re.findall(
            r"key \((\d+) ROOT_ITEM \d+\).*?\n\s+generation (\d+) .*?\n.*?\n.*?\n.*?\n"
            r"\s+uuid (\S+)\n\s+parent_uuid (\S+)", text)}
        zero = "00000000-0000-0000-0000-000000000000"
        assert set(want_roots) == set(subs.id) - {5}  # dump-tree names tree 5 FS_TREE
        for r in subs[subs.id != 5].itertuples():
            gen, uuid, parent = want_roots[r.id]
            got = [zero if pd.isna(u) else u for u in (r.uuid, r.parent_uuid)]
            assert (r.generation, *got) == (gen, uuid, parent), r.id
        assert sum(1 for v in want_roots.values() if v[2] != zero) == 65  # the snapshots
    with lzma.open(SAMPLES / "kdave-btrfs-progs" / "expected"
                   / "shared_block_ref_only.kernel-walk.tsv.xz", "rt") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if not line.startswith("#")]
    want = {r[0]: r for r in rows}
    df = fs.files()
    got = {r.path: r for r in df.itertuples()}
    assert set(got) == set(want) - {"/"}
    for path, r in want.items():
        if path == "/":
            continue
        g = got[path]
        assert g.inode == int(r[6]) and g.size == int(r[7]) and g.mode & 0o7777 == int(r[2], 8)
        assert g.links == int(r[5])
        assert g.modified == pd.Timestamp(int(r[8]), tz="UTC").floor("us")
    files = df[df.kind == "file"]
    assert len(files) == 8579
    digest = "0ca3bfdeda1ef5036bfa5dad078a9f15724e79cf296bd4388cf786bfaf4195d0"
    for path in ("/src/file_000", "/snapshot_64/file_128"):
        assert sha(fs.read(path)) == digest
    snap = fs.subvolume("snapshot_03")
    assert snap.top == 260 and len(snap.files()) == 130
    assert fs.subvolume(256).read("/file_005") == fs.read("/src/file_005")
    with pytest.raises(NotFound):
        fs.subvolume("nope")


def test_sample_bad_leaf(kdave):
    img = kdave["bad_item_ptr"]
    strict = open_filesystem(FileSource(img))
    with pytest.raises(CorruptImage, match="outside the leaf"):
        strict.read("/file2")
    fs = open_filesystem(FileSource(img), strict=False)
    assert sha(fs.read("/file1")) == (
        "0ca3bfdeda1ef5036bfa5dad078a9f15724e79cf296bd4388cf786bfaf4195d0")
    assert any("outside the leaf" in r["message"] for r in fs.check_rows())
    # file2's extent items are in the bad leaf: btrfs restore writes it empty, we read
    # zeros and say that none of its 2048 bytes is sure
    assert fs.lookup("/file2").size == 2048
    assert fs.damaged_ranges("/file2") == [(0, 2048)]
    dmg = dict(zip(fs.files().path, fs.files().damaged))
    assert dmg == {"/file1": 0, "/file2": 2048}


RAID = {
    "single": "4e045bbb284ff5137eb32e6c5ec9eb857d8ee1e9696a8097768a3c2ec21ef44e",
    "raid0": "23e1303f1811321b4fb78028fd9ed423598395155db35d5a4f6a81c41ffae8d6",
    "raid1": "72757f4976a74b44b95547de87587ec46afd4e74f312e89d62de9baef382d5ff",
    "raid10": "540320678ebe814eaaebccd7841d735c3dd121a6cb5604ffa8d8dae3d2b9a1e3",
    "raid5": "ac36acce1a2da647ad8241c5a591884d589583cfc30625748d02a18e803973e1",
    "raid6": "54e0175152175165a69915a60456fdac8b7e987b3ef01db8e397caea8412cf08",
}


@pytest.fixture(scope="session")
def raid_sets(tmp_path_factory):
    if not GOFS.is_dir():
        pytest.skip("../shared/samples absent")
    pytest.importorskip("zstandard")
    import tarfile

    import zstandard

    d = tmp_path_factory.mktemp("raid")
    for name in RAID:
        with open(GOFS / f"{name}.tar.zst", "rb") as f:
            with zstandard.ZstdDecompressor().stream_reader(f) as r:
                with tarfile.open(fileobj=r, mode="r|") as t:
                    t.extractall(d / name, filter="data")
    dig_holes(*d.rglob("*.img"))
    return d


@pytest.mark.slow
@pytest.mark.parametrize("profile", list(RAID))
def test_sample_raid_sets(raid_sets, profile):
    paths = sorted(glob.glob(str(raid_sets / profile / "d*.img")))
    devs = [FileSource(p) for p in paths]
    fs = open_filesystem(devs[0], devices=devs[1:])
    assert fs.read("/hello.txt") == f"hello-from-{profile}\n".encode()
    assert sha(fs.read("/sub/blob.bin")) == RAID[profile]
    assert [fs.lookup(p).inode for p in ("/hello.txt", "/sub", "/sub/blob.bin")] == [
        257, 258, 259]
    assert fs.check_rows() == []
    info = fs.info()
    assert info["label"] == profile and len(info["devices"]) == len(paths)
    with vdinspect.open(paths) as group:  # the devices as disks of a DiskGroup
        assert set(group.partitions().filesystem) == {"btrfs"}
        gfs = group.filesystem("0:0")
        assert sha(gfs.read("/sub/blob.bin")) == RAID[profile]
        assert len(gfs.info()["devices"]) == len(paths)
    if profile in ("raid5", "raid6"):  # any one device missing: rebuilt from P parity
        for gone in range(len(devs)):
            rest = [d for i, d in enumerate(devs) if i != gone]
            degraded = open_filesystem(rest[0], devices=rest[1:])
            assert sha(degraded.read("/sub/blob.bin")) == RAID[profile]
            assert degraded.read("/hello.txt") == f"hello-from-{profile}\n".encode()
            assert [r["severity"] for r in degraded.check_rows()] == ["warning"]  # the missing one
    if profile == "raid1":  # one device of a mirror holds everything
        one = open_filesystem(devs[1])
        assert sha(one.read("/sub/blob.bin")) == RAID[profile]
        assert [d["present"] for d in one.info()["devices"]] == [False, True]
