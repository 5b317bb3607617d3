"""exFAT set checksums and name hashes summed many at once (issue 23), against plain
loops written here from the specification, the checksums Windows wrote in the util-linux
sample, volumes fsck.exfat accepts, and damage made on purpose."""

from __future__ import annotations

import datetime as dt
import lzma
import random
import struct

import numpy as np
import pytest

from tests import fs_builder as fb
from tests.conftest import SHARED_SAMPLES, have
from tests.filesystems.test_exfat import blob, fsck_clean, mkfs
from vdinspect.filesystems import exfat as exmod
from vdinspect.filesystems.exfat.sets import name_hashes, set_checksums, slot_sums
from vdinspect.io import FileSource, MemorySource

UTIL_LINUX = SHARED_SAMPLES / "util-linux-2.38.1"
needs_mkfs = pytest.mark.skipif(not have("mkfs.exfat", "fsck.exfat"), reason="needs exfatprogs")


def spec_checksum(entries: bytes) -> int:
    """EntrySetChecksum as the specification's listing computes it: every byte of the set
    but bytes 2 and 3 of the first entry, rotate right by one then add, 16 bits."""
    c = 0
    for i, b in enumerate(entries):
        if i in (2, 3):
            continue
        c = (0x8000 if c & 1 else 0) + (c >> 1) + b & 0xFFFF
    return c


def spec_name_hash(units: list[int], upcase: np.ndarray) -> int:
    """NameHash: the same sum over the up-cased name's UTF-16-LE bytes."""
    h = 0
    for u in units:
        v = int(upcase[u])
        for b in (v & 0xFF, v >> 8):
            h = (0x8000 if h & 1 else 0) + (h >> 1) + b & 0xFFFF
    return h


@pytest.mark.parametrize("aligned", [False, True])
def test_set_checksums_against_the_specification(aligned):
    """Sets anywhere in a buffer, and sets on 32-byte entries (as in folders: whole
    entries are gathered then)."""
    rng = random.Random(23)
    buf = bytearray()
    starts, counts, want = [], [], []
    for _ in range(400):
        n = rng.randint(1, 19)
        data = bytearray(rng.randbytes(32 * n))
        deleted = rng.random() < 0.3
        for k in range(n):  # entry types: in use, or cleared as when deleted
            data[32 * k] = (rng.choice((0x85, 0xC0, 0xC1)) & (0x7F if deleted else 0xFF))
        buf += rng.randbytes(32 * rng.randint(0, 2) if aligned else rng.randint(0, 40))
        starts.append(len(buf))
        counts.append(n)
        fixed = bytearray(data)
        for k in range(n):
            fixed[32 * k] |= 0x80  # summed as it was written, in use
        want.append(spec_checksum(bytes(fixed)))
        buf += data
    got = set_checksums(np.frombuffer(bytes(buf), np.uint8), np.array(starts), np.array(counts))
    assert got.tolist() == want


def test_name_hashes_against_the_specification():
    rng = random.Random(5)
    upcase = np.arange(65536, dtype=np.uint16)
    upcase[ord("a") : ord("z") + 1] -= 32
    upcase[0xE4], upcase[0x3C9] = 0xC4, 0x3A9  # ä -> Ä, ω -> Ω
    alphabet = [ord(c) for c in "abcXYZ09 .äωΩ"] + [0x4E2D, 0xD83D, 0xDE00]
    buf, starts, want = bytearray(), [], []
    for _ in range(300):
        length = rng.randint(1, 255)
        units = [rng.choice(alphabet) for _ in range(length)]
        nnames = -(-length // 15)
        ent = bytearray(32 * (2 + nnames))
        ent[0], ent[1], ent[32], ent[35] = 0x85, 1 + nnames, 0xC0, length
        for k in range(nnames):
            ent[32 * (2 + k)] = 0xC1
            for j, u in enumerate(units[15 * k : 15 * k + 15]):
                ent[32 * (2 + k) + 2 + 2 * j : 32 * (2 + k) + 4 + 2 * j] = u.to_bytes(2, "little")
        starts.append(len(buf))
        buf += ent
        want.append(spec_name_hash(units, upcase))
    got = name_hashes(np.frombuffer(bytes(buf), np.uint8), np.array(starts), upcase)
    assert got.tolist() == want
    odd = np.frombuffer(b"\x00" + bytes(buf), np.uint8)  # units on odd bytes: read bytewise
    assert name_hashes(odd, np.array(starts) + 1, upcase).tolist() == want
    # a name entry missing where the units should be: left to the one-at-a-time sum
    bad = bytearray(buf[starts[0] : starts[1]])
    bad[64] = 0x41
    assert name_hashes(np.frombuffer(bytes(bad), np.uint8), np.array([0]), upcase)[0] == -1


@pytest.mark.skipif(not UTIL_LINUX.is_dir(), reason="util-linux samples absent")
def test_checksums_windows_wrote(tmp_path):
    """The util-linux sample was filled by Windows: every set's stored SetChecksum and
    NameHash equal the ones summed together."""
    p = tmp_path / "exfat.img"
    p.write_bytes(lzma.decompress((UTIL_LINUX / "images-fs" / "exfat.img.xz").read_bytes()))
    fs = exmod.open_filesystem(FileSource(p))
    root = fs.root()
    segs = fs._dir_raw(root)  # noqa: SLF001 - the root's bytes as the reader reads them
    raw = np.frombuffer(b"".join(b for _o, b in segs), np.uint8)
    (sums, hashes), = slot_sums(raw, [0], [len(raw) // 32], fs.upcase)
    files = np.flatnonzero(raw[::32] == 0x85)
    assert len(files) == 100
    stored = raw[files[:, None] * 32 + [2, 3]].astype(int)
    assert sums[files].tolist() == (stored[:, 0] | stored[:, 1] << 8).tolist()
    stored = raw[files[:, None] * 32 + [32 + 4, 32 + 5]].astype(int)
    assert hashes[files].tolist() == (stored[:, 0] | stored[:, 1] << 8).tolist()


@needs_mkfs
def test_damaged_sets_in_a_folder_read_ahead(tmp_path):
    """A subfolder read ahead with its sums: a broken SetChecksum, a broken NameHash, a
    deleted set, a set with its name entry gone are reported as the builder broke them,
    and the sound ones listed with the names written."""
    img = fb.ExfatImage(mkfs(tmp_path))
    d = img.add(img.root, "Ünïcode dir", is_dir=True, dir_clusters=2)
    names = [f"ßfile {i} {'x' * (i * 7)}.txt" for i in range(12)]
    nodes = [img.add(d, nm, blob(i, 100 + i)) for i, nm in enumerate(names)]
    img.buf[nodes[2].slot + 26] ^= 0x01  # a reserved byte of the File entry: SetChecksum wrong
    img.buf[nodes[4].slot + 36] ^= 0x01  # NameHash (the set checksum is left wrong too)
    img.delete(nodes[6])
    img.buf[nodes[8].slot + 64] = 0x41  # its first name entry marked deleted
    path = tmp_path / "damaged.img"
    path.write_bytes(img.image())
    fs = exmod.open_filesystem(MemorySource(path.read_bytes()), strict=False)
    rows = fs.files()
    live = rows[~rows["deleted"] & (rows["parent"] == "/Ünïcode dir")]
    assert sorted(live["name"]) == sorted(n for i, n in enumerate(names) if i not in (6, 8))
    gone = rows[rows["deleted"]]
    assert gone["name"].tolist() == [names[6]]
    msgs = sorted(f["message"] for f in fs.check_rows() if f["structure"] == "directory")
    where = "/Ünïcode dir"
    assert msgs == sorted([
        f"{where}: set checksum mismatch for {names[2]!r}",
        f"{where}: set checksum mismatch for {names[4]!r}",
        f"{where}: name hash mismatch for {names[4]!r}",
        f"{where}: entry set without file name entries",
    ])
    assert fs.read(f"{where}/{names[2]}") == blob(2, 102)


@needs_mkfs
def test_listing_is_the_same_read_ahead_or_not(tmp_path):
    """A folder listed from the scan's read-ahead and the same folder listed alone (its
    sums computed for it) give the same Entries, as the builder wrote them."""
    img = fb.ExfatImage(mkfs(tmp_path))
    d = img.add(img.root, "d", is_dir=True)
    want = {f"n{i:02d} Ωμέγα": blob(i, 50 * i) for i in range(20)}
    for nm, data in want.items():
        img.add(d, nm, data)
    raw = img.image()
    fs = exmod.open_filesystem(MemorySource(raw))
    fs.lost_directories()  # the scan reads ahead and keeps its listings
    assert fs.listings
    walked = {e.name: e.size for e in fs.iter_entries("/d")}
    alone = exmod.open_filesystem(MemorySource(raw))
    alone._lost = []  # noqa: SLF001 - no scan: the folder is listed on its own
    listed = {e.name: e.size for e in alone.list_dir(alone.lookup("/d"))}
    assert walked == listed == {nm: len(v) for nm, v in want.items()}


@needs_mkfs
def test_plain_folders_as_columns_match_what_was_written(tmp_path):
    """Folders decoded as columns (``files()``, ``ls``): names, sizes, UTC times with
    their offsets, NoFatChain and valid sizes as the builder wrote them, inodes as fls
    numbers them, and a zero or impossible timestamp shown as none."""
    import pandas as pd

    from vdinspect.filesystems.fat.columns import DirRows

    img = fb.ExfatImage(mkfs(tmp_path, size_mb=16))
    d = img.add(img.root, "mixed ß", is_dir=True, dir_clusters=4)
    want = {}
    base = dt.datetime(2005, 6, 7, 8, 9, 10)
    for i, off in enumerate([None, 120, -300, 345, -720, 840]):
        created = base + dt.timedelta(days=i, milliseconds=10 * 13 * i)
        name = f"tz {off} ü Ωμέγα {'x' * 20 * i}"
        img.add(d, name, blob(i, 700 * i), utc_offset_min=off, created=created)
        utc = created - dt.timedelta(minutes=off or 0)
        want[name] = (700 * i, utc.replace(tzinfo=dt.UTC), off, True if i else None)
    want["frag"] = (20000, None, None, False)
    img.add(d, "frag", blob(9, 20000), fragment=True)
    sub = img.add(d, "sub", is_dir=True)
    img.add(sub, "inner", b"in")
    zero = img.add(sub, "zero time", b"z")
    struct.pack_into("<I", img.buf, zero.slot + 8, 0)  # CreateTimestamp: none
    n = img.buf[zero.slot + 1] + 1
    data = bytes(img.buf[zero.slot : zero.slot + 32 * n])
    struct.pack_into("<H", img.buf, zero.slot + 2, fb.exfat_set_checksum(data))
    path = tmp_path / "mixed.img"
    path.write_bytes(img.image())
    assert fsck_clean(path)
    fs = exmod.open_filesystem(FileSource(path))
    fs.lost_directories()
    assert all(isinstance(v, DirRows) for v in fs.listings.values())  # both as columns
    rows = fs.files().set_index("path")
    for name, (size, created, off, contiguous) in want.items():
        r = rows.loc[f"/mixed ß/{name}"]
        assert r["size"] == size
        if contiguous is not None:  # (an empty file has no clusters to be contiguous)
            assert bool(r["no_fat_chain"]) == contiguous
        if created is not None:
            assert r["created"] == pd.Timestamp(created)
            assert (None if pd.isna(r["created_utc_offset"]) else r["created_utc_offset"]) == off
    assert pd.isna(rows.loc["/mixed ß/sub/zero time", "created"])
    if have("fls"):
        tsk = {"/" + r.path: r.inode for r in fb.fls(path)}
        assert {p: int(i) for p, i in rows["inode"].items()} == tsk
