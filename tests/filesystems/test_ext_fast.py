"""The lighter ext listing of ``files()`` (issue 23): live directory blocks scanned into
columns (``dirs.scan_live_block``), anything else parsed the full way; the orphan search
reusing the inode-table pieces the walk read; the driver imported without numpy.

Oracles: directory blocks built here from the kernel's ext4_dir_entry_2 layout
(Documentation/filesystems/ext4, "Directory Entries": __le32 inode, __le16 rec_len,
__u8 name_len, __u8 file_type, name; the 12-byte checksum tail) with ``struct``, never
with the reader's declarations; ``fls -r -p`` (every path, inode and deleted flag,
$OrphanFiles included) and ``debugfs ls`` on images mke2fs and debugfs wrote."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest

from tests.conftest import have
from tests.filesystems.test_ext import debugfs, debugfs_tree, fls, ours
from vdinspect.filesystems.ext import open_filesystem
from vdinspect.filesystems.ext.dirs import LiveColumns, parse_dir_block, scan_live_block
from vdinspect.io import FileSource

BS = 1024
COUNT = 5000  # inodes in the volume the blocks belong to


def entry(ino: int, name: bytes, ftype: int, rec_len: int | None = None) -> bytes:
    """One ext4_dir_entry_2, padded to 4 bytes, or to ``rec_len``."""
    size = (8 + len(name) + 3) & ~3
    rec_len = size if rec_len is None else rec_len
    return struct.pack("<IHBB", ino, rec_len, len(name), ftype) + name.ljust(rec_len - 8,
                                                                              b"\0")


def block(entries: list[tuple[int, bytes, int]], *, first: bool = False,
          tail: bool = True) -> bytes:
    """A directory block: ``entries`` in a chain, the last spanning to the end (or to the
    12-byte checksum tail: inode 0, rec_len 12, name_len 0, file_type 0xDE, crc)."""
    if first:
        entries = [(7, b".", 2), (2, b"..", 2)] + entries
    end = BS - (12 if tail else 0)
    out = b""
    for k, (ino, name, ft) in enumerate(entries):
        last = k == len(entries) - 1
        out += entry(ino, name, ft, end - len(out) if last else None)
    if tail:
        out += struct.pack("<IHBBI", 0, 12, 0, 0xDE, 0x12345678)
    assert len(out) == BS
    return out


def scanned(buf: bytes, base: int = 0, skip: int = -1) -> tuple[bool, list[tuple]]:
    cols = LiveColumns()
    ok = scan_live_block(buf, base, cols, inodes_count=COUNT, deleted=True,
                         skip_slack_after=skip)
    return ok, list(zip(cols.inodes, cols.names, cols.file_types, cols.offsets))


def full(buf: bytes, base: int = 0) -> tuple[list[tuple], list]:
    problems: list = []
    raws = parse_dir_block(buf, base, filetype=True, inodes_count=COUNT, block_size=BS,
                           deleted=True, problems=problems)
    return [(d.inode, d.name, d.file_type, d.offset, d.deleted) for d in raws], problems


NAMES = [(12 + i, f"file-{i:03d}.txt".encode(), 1) for i in range(30)] + [(99, b"sub", 2)]


@pytest.mark.parametrize("first, tail", [(True, True), (False, True), (False, False)])
def test_live_block_scanned_as_built(first, tail):
    """A block of live entries: the entries it was built from, in order, at their
    offsets ("." and ".." of block 0 left out), as the full parse finds them."""
    base = 0 if first else 3 * BS
    buf = block(NAMES, first=first, tail=tail)
    ok, got = scanned(buf, base)
    assert ok
    want, at = [], base + (24 if first else 0)
    for ino, name, ft in NAMES:
        want.append((ino, name, ft, at))
        at += (8 + len(name) + 3) & ~3
    assert got == want
    raws, problems = full(buf, base)
    assert not problems and raws == [w + (False,) for w in want]
    cols = LiveColumns()
    scan_live_block(buf, base, cols, inodes_count=COUNT, deleted=True)
    assert [(d.inode, d.name, d.file_type, d.offset, d.deleted) for d in cols.raws()] == raws


def removed_in_slack() -> bytes:
    """Entry 2 removed the kernel's way: its rec_len added to entry 1's, its bytes left."""
    buf = bytearray(block(NAMES))
    a = 0
    for _ino, name, _ft in NAMES[:1]:
        a += (8 + len(name) + 3) & ~3  # entry 1 starts at 0, entry 2 at ``a``
    second = (8 + len(NAMES[1][1]) + 3) & ~3
    struct.pack_into("<H", buf, 4, a + second)  # entry 1 now spans entry 2
    return bytes(buf)


def removed_first() -> bytes:
    buf = bytearray(block(NAMES))
    struct.pack_into("<I", buf, 0, 0)  # the first entry of a block: its inode cleared
    return bytes(buf)


def bad_rec_len() -> bytes:
    buf = bytearray(block(NAMES))
    struct.pack_into("<H", buf, 4, 6)  # shorter than a header
    return bytes(buf)


def past_count() -> bytes:
    return block([(COUNT + 1, b"far", 1)] + NAMES)


@pytest.mark.parametrize("make", [removed_in_slack, removed_first, bad_rec_len, past_count])
def test_anything_else_is_left_to_the_full_parse(make):
    """Blocks holding a removed entry (in slack, or a cleared first entry), a broken
    chain or an inode past the count: the scan declines; the full parse finds the
    removed entry or reports the problem."""
    buf = make()
    ok, _got = scanned(buf)
    assert not ok
    raws, problems = full(buf)
    assert problems or any(r[4] for r in raws)


def test_htree_root_slack_is_not_searched():
    """An htree root's ".." spans the block; its slack is index data (here bytes that
    look like an entry): skipped there, declined elsewhere."""
    dot = entry(7, b".", 2)
    fake = entry(40, b"looks-like-a-name", 1)
    dotdot = struct.pack("<IHBB", 2, BS - len(dot), 2, 2) + b"..\0\0"
    buf = (dot + dotdot + fake).ljust(BS, b"\0")
    assert scanned(buf, 0, skip=len(dot)) == (True, [])
    assert not scanned(buf, 0)[0]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    if not have("mke2fs", "debugfs"):
        pytest.skip("needs e2fsprogs")
    top = tmp_path_factory.mktemp("extfast")
    src = top / "tree"
    for d in range(6):
        (src / f"d{d}" / "sub").mkdir(parents=True)
        for i in range(150):
            (src / f"d{d}" / f"file {i:03d}.txt").write_bytes(b"z" * (i * 13 % 900))
        (src / f"d{d}" / "sub" / "x").write_text("x")
    img = top / "fast.img"
    # 1 KiB blocks, 512 inodes a group: the tree's inodes over several groups and pieces
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "1024", "-N", "3072", "-g",
                    "4096", "-d", str(src), str(img), "24M"], check=True, capture_output=True)
    debugfs(img, 'rm "/d1/file 010.txt"', 'rm "/d4/file 149.txt"', "rm /d2/sub/x",
            'unlink "/d3/file 020.txt"', 'kill_file "/d5/file 030.txt"',
            'unlink "/d5/file 030.txt"', write=True)
    return img


def test_listing_and_orphans_match_fls(image):
    """Every row, the removed names and the unnamed inodes ($OrphanFiles) as fls lists
    them."""
    if not have("fls"):
        pytest.skip("needs sleuthkit")
    fs = open_filesystem(FileSource(image))
    mine = ours(fs)
    assert mine == fls(image)
    orphans = {p for p, _i, _d in mine if p.startswith("/$OrphanFiles/")}
    assert orphans  # the inode unlinked with debugfs (allocated, nothing names it)
    assert {("/d1/file 010.txt", True), ("/d2/sub/x", True)} <= {(p, d) for p, _i, d in mine}


def test_orphan_search_reads_no_inode_table_twice(image, monkeypatch):
    """files() with its orphan search reads each piece of every inode table once: the
    pieces the walk read have their candidates worked out then (note_piece), the search
    reads the rest; the $OrphanFiles rows are those of an orphan search on its own."""
    from vdinspect.filesystems.ext.fs import ExtFileSystem

    alone = sorted(e.name for e in open_filesystem(FileSource(image)).orphans())
    reads: list[tuple[int, int]] = []  # (offset, length) of every inode-table read
    noted: list[tuple[int, int]] = []
    read, note = ExtFileSystem.read_bytes, ExtFileSystem.note_piece

    def counted_read(self, offset, length, structure):
        if structure.startswith("inode table"):
            reads.append((offset, length))
        return read(self, offset, length, structure)

    def counted_note(self, g, chunk, data):
        noted.append((g, chunk))
        return note(self, g, chunk, data)

    monkeypatch.setattr(ExtFileSystem, "read_bytes", counted_read)
    monkeypatch.setattr(ExtFileSystem, "note_piece", counted_note)
    df = open_filesystem(FileSource(image)).files()
    assert noted and reads
    reads.sort()
    assert all(a + n <= b for (a, n), (b, _m) in zip(reads, reads[1:]))  # no byte twice
    rows = df[df["parent"] == "/$OrphanFiles"]
    assert sorted(rows["name"]) == alone and alone


def test_live_entries_match_debugfs(image):
    """The live rows (folders with and without removed entries) as debugfs lists them."""
    fs = open_filesystem(FileSource(image))
    df = fs.files()
    live = df[~df["deleted"]]
    assert {(p, int(i)) for p, i in zip(live["path"], live["inode"])} == debugfs_tree(image)


def test_driver_imports_without_numpy():
    """Importing the ext driver reads no array: numpy (and numpy.ma) come with the first
    walk."""
    code = ("import sys, vdinspect.filesystems.ext; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'numpy')[:3])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


class _Inode:
    """What plain_extents reads of an inode: its 60-byte i_block."""

    def __init__(self, i_block: bytes) -> None:
        self.i_block = i_block


def i_block(extents: list[tuple[int, int, int]], *, depth: int = 0, emax: int = 4) -> bytes:
    """An inode's extent tree root built from the kernel's layout: ext4_extent_header
    (eh_magic 0xF30A, eh_entries, eh_max, eh_depth, eh_generation), then ext4_extent
    records (ee_block, ee_len, ee_start_hi, ee_start_lo)."""
    out = struct.pack("<HHHHI", 0xF30A, len(extents), emax, depth, 0)
    for lb, ln, pb in extents:
        out += struct.pack("<IHHI", lb, ln, pb >> 32, pb & 0xFFFFFFFF)
    return out.ljust(60, b"\0")


@pytest.mark.parametrize("extents, nblocks, want", [
    ([(0, 1, 500), (1, 2, 900)], 3, [(0, 1, 500), (1, 2, 900)]),
    ([(0, 4, 500)], 2, [(0, 2, 500)]),  # cut at the size
    ([(0, 1, 500), (5, 1, 600)], 3, [(0, 1, 500)]),  # past the size: left out
    ([(0, 0, 0), (0, 3, 700)], 3, [(0, 3, 700)]),  # an empty extent is nothing
])
def test_plain_extents_as_built(extents, nblocks, want):
    from vdinspect.filesystems.ext.extents import plain_extents

    assert plain_extents(_Inode(i_block(extents)), nblocks, 10_000) == want


@pytest.mark.parametrize("root", [
    i_block([(0, 1, 500)], depth=1),  # an index node: the full reader walks it
    i_block([(0, 32768 + 3, 500)]),  # uninitialised (ee_len > 32768)
    i_block([(0, 2, 9_999)]),  # runs past the volume's 10,000 blocks
    i_block([(0, 1, 0)]),  # physical block 0
    i_block([(4, 1, 500), (0, 1, 600)]),  # out of order
    i_block([(0, 3, 500), (2, 1, 600)]),  # overlapping
    i_block([(k, 1, 500 + k) for k in range(4)], emax=5),  # room claimed for 5: 4 fit
    b"\0" * 60,  # no extent header
])
def test_plain_extents_leaves_the_rest_to_extent_map(root):
    from vdinspect.filesystems.ext.extents import plain_extents

    assert plain_extents(_Inode(root), 8, 10_000) is None
