"""FAT: a deleted long name is glued to a deleted short entry only when it is sound (issue 16).

Built with mtools (mkfs.vfat, mcopy, mdel) and byte edits that follow the FAT
specification (fatgen103: the 32-byte entry, the LFN checksum over the 11-byte short name,
the root directory after the FATs); the checksum and the root's place are computed here
from the specification. Truth is what was written; The Sleuth Kit's ``fls -d`` and
``fsck.fat -n -l`` read the same image.
"""

from __future__ import annotations

import struct

import pytest

from tests.conftest import have
from tests.fs_builder import lfn_checksum
from tests.tools import run
from vdinspect.filesystems import fat as fatmod
from vdinspect.filesystems.fat.recovery import short_fits_long
from vdinspect.io import FileSource

pytestmark = pytest.mark.skipif(not have("mkfs.vfat", "mcopy", "mdel"),
                                reason="needs dosfstools and mtools")
LONG = "Report for customer.txt"  # mtools names it REPORT~1.TXT, with two LFN slots
SHORT = b"REPORT~1TXT"


def _root(d: bytes) -> tuple[int, int]:
    """(byte offset, entries) of a FAT16 root directory from the BPB (fatgen103)."""
    ss, rsvd = struct.unpack_from("<H", d, 11)[0], struct.unpack_from("<H", d, 14)[0]
    return (rsvd + d[16] * struct.unpack_from("<H", d, 22)[0]) * ss, struct.unpack_from(
        "<H", d, 17)[0]


def _first_bytes(rest: bytes, checksum: int) -> list[int]:
    """Every first byte that gives an 11-byte short name ``checksum`` (by trying all)."""
    return [b for b in range(256) if lfn_checksum(bytes([b]) + rest) == checksum]


def _other_name() -> bytes:
    """An 8.3 name whose checksum, with some capital letter (not R) as its lost first
    byte, equals REPORT~1.TXT's: the long name's checksum fits it."""
    chk = lfn_checksum(SHORT)
    for i in range(10000):
        name = f"X{i:05d}  BIN".encode()
        b = _first_bytes(name[1:], chk)
        if b and 0x41 <= b[0] <= 0x5A and b[0] != ord("R"):
            return name
    raise AssertionError("no name found")


def test_deleted_long_name_glued_only_when_sound(tmp_path):
    """REPORT~1.TXT and its two LFN slots, and X.BIN (8.3, no LFN), are written and
    deleted; X.BIN's deleted entry is then moved into REPORT~1's short slot, right after
    its deleted LFN slots (as when that slot is reused by a file deleted in turn). The LFN
    checksum fits X.BIN's entry with some first byte, but the long name is not its basis
    name: no "Report for customer.txt" row with X.BIN's size. A file deleted the ordinary
    way keeps its long name, as in TSK's listing."""
    img = tmp_path / "f.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    run("mkfs.vfat", "-F", "16", img)
    other = _other_name()
    files = {LONG: b"report " * 300, "Annual summary.docx": b"annual " * 200,
             (other[:6].decode().rstrip() + "." + other[8:].decode()): b"other " * 500,
             "KEEP.TXT": b"keep\n"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        run("mcopy", "-i", img, tmp_path / name, "::/" + name)
    x_name = next(n for n in files if n.startswith("X"))
    for name in (LONG, "Annual summary.docx", x_name):
        run("mdel", "-i", img, "::/" + name)
    d = bytearray(img.read_bytes())
    root, ents = _root(d)
    slots = [bytes(d[root + 32 * i:root + 32 * i + 32]) for i in range(ents)]
    short_at = next(i for i, s in enumerate(slots) if s[0] == 0xE5 and s[1:11] == SHORT[1:])
    assert slots[short_at - 1][11] == 0x0F and slots[short_at - 1][13] == lfn_checksum(SHORT)
    x_at = next(i for i, s in enumerate(slots) if s[0] == 0xE5 and s[1:11] == other[1:])
    d[root + 32 * short_at:root + 32 * short_at + 32] = slots[x_at]
    d[root + 32 * x_at] = 0xE5 if any(s[0] not in (0, 0xE5) for s in slots[x_at + 1:]) \
        else 0  # X.BIN's old slot: the end of the directory when nothing follows
    if d[root + 32 * x_at] == 0xE5:
        d[root + 32 * x_at + 11] = 0xC0  # reserved attribute bits: no entry
    img.write_bytes(bytes(d))

    fs = fatmod.open_filesystem(FileSource(img))
    df = fs.files()
    dead = df[df.deleted].set_index("name")
    assert LONG not in dead.index  # its short entry is gone: nothing sound names it
    x_row = dead.loc["_" + x_name[1:]]
    assert x_row["size"] == len(files[x_name])
    assert fs.read("/_" + x_name[1:]) == files[x_name]
    assert "Annual summary.docx" in dead.index  # the ordinary deletion keeps its name
    assert fs.read("/Annual summary.docx") == files["Annual summary.docx"]
    if have("fls"):
        tsk = run("fls", "-d", "-p", img)
        assert "Annual summary.docx" in tsk
        print("fls -d:", tsk.replace("\n", " | "))
    if have("fsck.fat"):
        out = run("fsck.fat", "-n", "-l", img)
        assert "KEEP.TXT" in out  # the edited volume is consistent (deleted slots unused)


NAMES = ["Report for customer.txt", "a.b.c.data", "verylongfilename_number_two.jpeg",
         "+plus,file.txt", ".hidden", "ÄÖÜ-umlaut.txt", "Mixed.Txt", "semi;colon=eq[1].tar.gz",
         "x", "no extension at all", "Ünïcödé dïr", "日本語のファイル.txt", "two  spaces .md",
         "trailing.dots...", "UPPER.TXT.BAK"]


def test_mtools_short_names_fit_their_long_names(tmp_path):
    """Every short name mcopy makes for a long name passes the basis-name test (so a
    deleted file's long name is kept whenever the checksum fits): the long name decoded
    here from its LFN slots (fatgen103: 13 UTF-16 units at bytes 1, 14 and 28)."""
    img = tmp_path / "n.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    run("mkfs.vfat", "-F", "16", img)
    for i, name in enumerate(NAMES):
        (tmp_path / f"src{i}").write_bytes(b"x")
        run("mcopy", "-i", img, tmp_path / f"src{i}", "::/" + name)
    d = img.read_bytes()
    root, ents = _root(d)
    pieces: list[bytes] = []
    seen = {}
    for i in range(ents):
        s = d[root + 32 * i:root + 32 * i + 32]
        if s[0] == 0:
            break
        if s[11] == 0x0F:
            pieces.append(s[1:11] + s[14:26] + s[28:32])
            continue
        if pieces:
            text = b"".join(reversed(pieces)).decode("utf-16-le").split("\0", 1)[0]
            seen[text] = bytes(s[:11])
            assert short_fits_long(bytes(s[:11]), text), (s[:11], text)
        pieces = []
    print(sorted(set(NAMES) - set(seen)), seen)
    assert set(seen) == set(NAMES) - {"x"}  # "x" is stored as an 8.3 name with case bits
