"""The bulk inode decode of XFS ``files()`` against xfs_db, and its CRC rule.

The rows of plain files and directories come from ``xfs/bulk.py`` (inode groups read
together, one numpy view, CRCs checked without zeroing); here every such row's inode
fields are compared with what ``xfs_db`` prints for the inode, and a damaged inode must
still be reported as the one-inode path reports it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import have
from tests.tools import run
from vdinspect.errors import CorruptImage
from vdinspect.filesystems import open_filesystem
from vdinspect.filesystems.xfs import bulk
from vdinspect.io import FileSource, crc32c, crc32c_records

needs_xfs = pytest.mark.skipif(not have("mkfs.xfs", "xfs_db"), reason="needs xfsprogs")
MiB = 1 << 20


def test_crc_good_is_the_v5_inode_rule():
    """CRC-32C of the record with its CRC field zeroed, stored little-endian at 100."""
    rnd = random.Random(5)
    recs = np.frombuffer(rnd.randbytes(7 * 512), dtype=np.uint8).reshape(7, 512).copy()
    for r in recs:
        z = bytearray(r.tobytes())
        z[100:104] = bytes(4)
        r[100:104] = np.frombuffer(crc32c(bytes(z)).to_bytes(4, "little"), dtype=np.uint8)
    recs[3, 300] ^= 1  # a changed byte
    recs[5, 101] ^= 0x80  # a changed CRC
    assert bulk.crc_good(recs, 100).tolist() == [True] * 3 + [False, True, False, True]


@pytest.mark.parametrize("isz", [256, 512, 2048])
def test_crc_good_runs_of_records(isz):
    """Runs of 64 records are checked by one CRC each; a bad record anywhere (first run,
    a later one, the short tail) is still found, and only it."""
    rnd = random.Random(isz)
    n = 3 * bulk.GROUP + 17
    recs = np.frombuffer(rnd.randbytes(n * isz), dtype=np.uint8).reshape(n, isz).copy()
    for r in recs:  # the spec's rule: CRC-32C of the record with the field zeroed, LE at 100
        z = bytearray(r.tobytes())
        z[100:104] = bytes(4)
        r[100:104] = np.frombuffer(crc32c(bytes(z)).to_bytes(4, "little"), dtype=np.uint8)
    assert bulk.crc_good(recs, 100).all()
    bad = [0, 70, 71, 127, 3 * bulk.GROUP + 5]
    for i in bad:
        recs[i, (i * 37) % isz if (i * 37) % isz not in range(100, 104) else 0] ^= 0x10
    want = np.ones(n, dtype=bool)
    want[bad] = False
    assert bulk.crc_good(recs, 100).tolist() == want.tolist()


def test_crc32c_records():
    """One CRC per record; the standard check value of CRC-32C is 0xE3069283."""
    assert crc32c_records(b"123456789" * 3, 9) == [0xE3069283] * 3
    assert crc32c_records(b"", 4) == []


def _tree(root: Path) -> Path:
    rnd = random.Random(18)
    for d in range(3):
        sub = root / f"d{d}"
        sub.mkdir(parents=True)
        for i in range(40 + 30 * d):
            (sub / f"file-{i:03d}").write_bytes(rnd.randbytes(i * 97 % 5000))
    return root


def _proto(src: Path, out: Path) -> Path:
    lines = ["x", "0 0", "d--755 0 0"]
    for d in sorted(src.iterdir()):
        lines.append(f"{d.name} d--750 12 34")
        for f in sorted(d.iterdir()):
            lines.append(f"{f.name} ---640 {1000 + len(f.name)} 77 {f}")
        lines.append("$")
    lines += ["$"]
    out.write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture(scope="module", params=["v5", "v4"])
def image(request, tmp_path_factory):
    if not have("mkfs.xfs", "xfs_db"):
        pytest.skip("needs xfsprogs")
    d = tmp_path_factory.mktemp("xfsbulk")
    img = d / "fs.img"
    with open(img, "wb") as f:
        f.truncate(64 * MiB)
    opts = ["-m", "crc=0"] if request.param == "v4" else ["-i", "size=1024"]
    run("mkfs.xfs", "--unsupported", "-q", *opts, "-p", _proto(_tree(d / "src"), d / "p"),
        img)
    return request.param, img


def _db_inodes(img: Path, inos: list[int]) -> dict[int, dict[str, str]]:
    args = ["xfs_db", "-r"]
    for i in inos:
        args += ["-c", f"echo @@ {i}", "-c", f"inode {i}", "-c", "print"]
    out: dict[int, dict[str, str]] = {}
    cur: dict[str, str] = {}
    for line in run(*args, img).splitlines():
        if line.startswith("@@ "):
            cur = out.setdefault(int(line.split()[1]), {})
            continue
        k, sep, v = line.partition(" = ")
        if sep:
            cur[k.strip()] = v.strip()
    return out


@needs_xfs
def test_rows_match_xfs_db(image):
    ver, img = image
    fs = open_filesystem(FileSource(img), "xfs")
    slow = []  # the one-inode path must not be needed for these rows
    fs.entry_of = lambda d, _f=fs.entry_of: slow.append(d) or _f(d)
    df = fs.files(deleted=False)
    assert not slow
    df = df[df.kind.isin(["file", "dir"])]
    assert len(df) == 3 + 40 + 70 + 100
    db = _db_inodes(img, [int(i) for i in df.inode])
    for r in df.itertuples():
        want = db[int(r.inode)]
        assert int(want["core.mode"], 8) == r.mode, r.path
        assert (int(want["core.uid"]), int(want["core.gid"])) == (r.uid, r.gid), r.path
        assert int(want["core.size"]) == r.size, r.path
        assert int(want["core.nblocks"]) * fs.block_size == r.allocated, r.path
        assert int(want.get("core.nlinkv2", want.get("core.onlink"))) == r.links, r.path
        for ours, theirs in (("mtime_ns", "mtime"), ("atime_ns", "atime"),
                             ("ctime_ns", "ctime")):
            assert getattr(r, ours) % 10**9 == int(want[f"core.{theirs}.nsec"]), r.path
        if ver == "v5":
            assert int(want["v3.crtime.nsec"]) == r.crtime_ns % 10**9, r.path
    assert fs.check().empty
    # a folder's own listing (decoded folder by folder, not volume-wide) agrees
    part = fs.files("/d2").reset_index(drop=True)
    whole = df[df.parent == "/d2"].reset_index(drop=True)
    cols = ["path", "size", "allocated", "mode", "uid", "gid", "inode", "links", "mtime_ns",
            "crtime_ns"]
    assert part[cols].equals(whole[cols]) and len(part) == 100


@needs_xfs
def test_volume_table_and_folder_path_agree(image, monkeypatch):
    """Past the table's bound the listing is decoded folder by folder: the same frame."""
    _ver, img = image
    whole = open_filesystem(FileSource(img), "xfs").files()
    monkeypatch.setattr(bulk.InodeTable, "LIMIT", 10)
    assert bulk.InodeTable.build(open_filesystem(FileSource(img), "xfs")) is None
    assert open_filesystem(FileSource(img), "xfs").files().equals(whole)


@needs_xfs
def test_damaged_inode_still_reported(image, tmp_path):
    """An inode that fails its checks (v5: the CRC; v4: the magic) is left to the
    one-inode path. Strict mode too lists the folder's other children (as xfs_db ``ls``
    names them) and reports the bad one in its row and in ``check()``; only asking for that
    file itself raises. Salvage lists it with a note (v4) or reads it with a finding (v5)."""
    from tests.filesystems.test_xfs import db_ls

    ver, img = image
    fs = open_filesystem(FileSource(img), "xfs")
    victim = fs.stat("/d1/file-007")
    out = run("xfs_db", "-r", "-c", f"convert ino {victim.inode} byte", img)
    at = int(out.split("(")[1].split(")")[0])  # "0x... (decimal)"
    bad = tmp_path / "bad.img"
    data = bytearray(img.read_bytes())
    if ver == "v5":  # the inode core's layout (xfs_dinode): di_uid is a be32 at 8
        data[at + 8 + 3] ^= 0x01  # di_uid's low byte: only the CRC notices
    else:
        data[at:at + 2] = b"XX"  # no CRC on v4: break the magic ("IN")
    bad.write_bytes(bytes(data))
    # the folder's entries as xfs_db lists them (from the image as made: v4 xfs_db refuses
    # the whole inode cluster once one inode in it is bad; the edit left the entries alone)
    want = db_ls(img, "/d1")
    assert len(want) == 70 and want["file-007"][0] == victim.inode
    strict = open_filesystem(FileSource(bad), "xfs")
    df = strict.files()
    kids = df[df.parent == "/d1"]
    assert {n: int(i) for n, i in zip(kids.name, kids.inode)} == {
        n: i for n, (i, _t) in want.items()}
    row = kids[kids.name == "file-007"].iloc[0]
    assert "inode unreadable" in row.note and pd.isna(row.uid)
    good = kids[kids.name != "file-007"]
    assert len(good) == 69 and good.uid.notna().all() and good.note.isna().all()
    found = strict.check()
    assert (found.severity == "error").any()
    assert any(f"inode {victim.inode}" in str(s) for s in found.structure)
    assert not any("unreadable directory" in m for m in found.message)
    with pytest.raises(CorruptImage):
        strict.stat("/d1/file-007")
    assert len(strict.files("/d1")) == 70  # the folder alone: the one-inode path
    fs = open_filesystem(FileSource(bad), "xfs", strict=False)
    df = fs.files()
    row = df[df.path == "/d1/file-007"]
    assert len(row) == 1
    others = df[(df.parent == "/d1") & (df.path != "/d1/file-007")]
    assert len(others) == 69 and others.uid.notna().all()
    assert f"inode {victim.inode}" in set(fs.check().structure)
    if ver == "v4":  # unusable: the row says why
        assert "bad inode magic" in row.note.iloc[0]
    os.unlink(bad)


def test_decode_names_as_each_name_alone():
    """Names decoded together (joined by NUL, split after) are what decoding each alone
    with surrogateescape gives: broken UTF-8 at a name's end, NUL or '/' in a name (a
    hostile image)."""
    from vdinspect.filesystems.entry import decode_names

    rnd = random.Random(18)
    alphabet = [b"a", b"\xe2", b"\x82", b"\xac", b"\xff", b"\xc3", b"\xa9", b"\xf0", b"\x9f",
                b"\x98", b"\x80", b"\x00", b"/", b"\xed", b"\xa0"]
    for _ in range(3000):
        raw = [b"".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 6)))
               for _ in range(rnd.randint(0, 5))]
        assert decode_names(raw) == [n.decode("utf-8", "surrogateescape") for n in raw]


def test_data_block_ending_in_a_partial_entry_head():
    """A data-form block (built from the spec: magic, a v4 header, one free region with
    its tag) whose last 8 bytes are no free region and too short for an entry head: a
    problem, not an IndexError (hostile input)."""
    from vdinspect.filesystems.xfs import dirs
    from vdinspect.filesystems.xfs import structs as S

    bs, hdr = 4096, 16  # xfs_dir2_data_hdr: magic + 3 bestfree (offset, length) pairs
    blk = bytearray(bs)
    blk[0:4] = (0x58443244).to_bytes(4, "big")  # "XD2D"
    assert S.XFS_DIR2_DATA_MAGIC == 0x58443244 and S.DIR2_DATA_HDR_V4 == hdr
    length = bs - 8 - hdr  # free region: tag 0xffff, length, ..., tag = its offset
    blk[hdr:hdr + 4] = b"\xff\xff" + length.to_bytes(2, "big")
    blk[hdr + length - 2:hdr + length] = hdr.to_bytes(2, "big")
    blk[bs - 8:] = (1).to_bytes(8, "big")
    problems: list = []
    got = dirs.parse_data_block(bytes(blk), 0, v5=False, ftype=True, problems=problems)
    assert len(got) == 0 and problems == [(bs - 8, "entry of name length 0 runs past the block")]


def _spec_entry(ino: int, name: bytes, ftype: int | None, tag: int) -> bytes:
    """One xfs_dir2_data_entry as the spec lays it out: be64 inumber, u8 namelen, name,
    [u8 ftype], zero padding to 8 bytes with the be16 tag in the last two."""
    body = ino.to_bytes(8, "big") + bytes([len(name)]) + name
    body += b"" if ftype is None else bytes([ftype])
    size = (len(body) + 2 + 7) // 8 * 8
    return body + bytes(size - len(body) - 2) + tag.to_bytes(2, "big")


@pytest.mark.parametrize("ftype", [True, False])
def test_data_block_entries_offsets_and_tags(ftype):
    """A v4 data block built from the spec: ".", "..", live entries, one whose tag is not
    its offset (a problem; its offset is still where it lies), and a free region holding
    a removed entry (listed as deleted, at its offset). Every value is checked against
    what the block was built from."""
    from vdinspect.filesystems.xfs import dirs

    bs, hdr, base = 4096, 16, 3 * 4096
    blk = bytearray(bs)
    blk[0:4] = (0x58443244).to_bytes(4, "big")  # "XD2D"
    ft = 1 if ftype else None
    want = []  # (name, ino, offset, deleted)
    pos = hdr
    plan = [(b".", 128, False), (b"..", 128, False), (b"alpha", 131, False),
            (b"bad_tag_here", 132, True), (b"gone", 133, "free"), (b"zeta.txt", 134, False)]
    for name, ino, how in plan:
        if how == "free":  # a removed entry: its first 4 bytes now the free tag and length
            e = bytearray(_spec_entry(ino, name, ft, pos))
            length = len(e)
            e[0:4] = b"\xff\xff" + length.to_bytes(2, "big")
            blk[pos:pos + length] = e
            want.append((name, ino, base + pos, True))
            pos += length
            continue
        e = _spec_entry(ino, name, ft, pos + 8 if how else pos)
        blk[pos:pos + len(e)] = e
        if name not in (b".", b".."):
            want.append((name, ino, base + pos, False))
        if how is True:
            bad_at = pos
        pos += len(e)
    rest = bs - pos  # the rest of the block: one free region, its tag its offset
    blk[pos:pos + 4] = b"\xff\xff" + rest.to_bytes(2, "big")
    blk[bs - 2:] = pos.to_bytes(2, "big")
    problems: list = []
    got = dirs.parse_data_block(bytes(blk), base, v5=False, ftype=ftype, problems=problems)
    assert [(d.name, d.ino, d.offset, d.deleted) for d in got] == want
    assert [d.ftype for d in got] == [1 if ftype else 0] * len(want)
    assert problems == [(bad_at, "entry tag is not its offset")]
    live = dirs.parse_data_block(bytes(blk), base, v5=False, ftype=ftype, problems=[],
                                 deleted=False)
    assert [d.name for d in live] == [w[0] for w in want if not w[3]]


@pytest.mark.parametrize("ftype", [True, False])
def test_data_block_runs_of_one_name_length(ftype):
    """Long runs of names of one length (read column-wise by the parser) built from the
    spec, broken by a bad tag, a removed entry, an inode number whose first byte is 0xff
    and other name lengths: every entry, offset and problem is what was built."""
    from vdinspect.filesystems.xfs import dirs

    bs, hdr, base = 4096, 16, 8192
    blk = bytearray(bs)
    blk[0:4] = (0x58443244).to_bytes(4, "big")  # "XD2D"
    ft = 2 if ftype else None
    rnd = random.Random(5)
    want, bad = [], []
    pos, i = hdr, 0
    while True:
        name = b"n%03d" % i if i % 97 < 90 else b"other_%d" % i  # runs of 4-byte names
        ino = (0xFF << 56) | i if i == 10 else 1000 + i
        e = bytearray(_spec_entry(ino, name, ft, pos))
        if pos + len(e) + 64 > bs:
            break
        if i in (140, 230):  # a tag that is not the offset, inside a run
            e[-2:] = (pos + 8).to_bytes(2, "big")
            bad.append((pos, "entry tag is not its offset"))
        removed = i == 120 or (i > 100 and rnd.random() < 0.02)
        if removed:  # the free tag and length over its first 4 bytes
            e[0:4] = b"\xff\xff" + len(e).to_bytes(2, "big")
            ino &= 0xFFFFFFFF
        blk[pos:pos + len(e)] = e
        want.append((name, ino, base + pos, removed))
        pos += len(e)
        i += 1
    rest = bs - pos
    blk[pos:pos + 4] = b"\xff\xff" + rest.to_bytes(2, "big")
    blk[bs - 2:] = pos.to_bytes(2, "big")
    problems: list = []
    got = dirs.parse_data_block(bytes(blk), base, v5=False, ftype=ftype, problems=problems)
    assert len(want) > 2 * dirs.RUN
    assert [(d.name, d.ino, d.offset, d.deleted) for d in got] == want
    assert [d.ftype for d in got] == [2 if ftype else 0] * len(want)
    assert problems == bad
