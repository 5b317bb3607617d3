"""FAT ``files()`` built column-wise (fat/columns.py): rows as The Sleuth Kit lists them,
names as the specification spells them, times as fatgen103 packs them.

Trees are written by mtools (checked against ``fls``) or built from the specification
(``tests.fs_builder``: long-name entries, NT case bits, surrogate pairs), never with the
reader's own structs.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests import fs_builder as fb
from tests.conftest import have
from vdinspect.filesystems import fat as fatmod
from vdinspect.filesystems.base import FileSystem
from vdinspect.filesystems.fat.columns import dos_times
from vdinspect.io import FileSource, MemorySource

MKFS = {12: ("-F", "12"), 16: ("-F", "16"), 32: ("-F", "32")}
SIZE_KB = {12: "1440", 16: "16384", 32: "40000"}


def run(*cmd) -> None:
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True,
                   env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
                        "LC_ALL": "C.UTF-8"})


def mtools_tree(tmp: Path, bits: int) -> tuple[Path, dict[str, int]]:
    """A volume written by mtools: Unicode long names, NT-lowercase 8.3 names, a folder
    whose clusters are not contiguous (filled in two rounds around another folder), a
    deep path, deleted files and a deleted folder. Returns the image and the live
    files' sizes by path."""
    img = tmp / f"fat{bits}.img"
    run("mkfs.fat", *MKFS[bits], "-n", "COLS", "-C", img, SIZE_KB[bits])
    sizes: dict[str, int] = {}
    rounds = [0]

    def put(folder: str, files: dict[str, int]) -> None:  # one mcopy for many files
        rounds[0] += 1
        src = tmp / f"src{rounds[0]}"
        src.mkdir()
        for name, n in files.items():
            (src / name).write_bytes(bytes(range(256)) * (n // 256) + b"z" * (n % 256))
            sizes[f"{folder.rstrip('/')}/{name}"] = n
        run("mcopy", "-o", "-i", img, *sorted(src.iterdir()), f"::{folder}")

    put("/", {"café résumé.txt": 5, "日本語のファイル名.txt": 700, "lower.txt": 1,
              "MIXED.Txt": 2, "NOEXT": 3, "A long name with spaces.txt": 5000})
    run("mmd", "-i", img, "::/a", "::/b", "::/c", "::/a/deep", "::/a/deep/deeper", "::/gone")
    for lo, hi in ((0, 30), (30, 60)):  # /a and /c grow past the clusters /b took
        put("/a", {f"file number {i} with a long name.txt": i * 13 for i in range(lo, hi)})
        put("/c", {f"Ünïcödé file {i} with a long name.txt": i for i in range(lo, hi)})
        if lo == 0:
            put("/b", {f"b{i}.txt": i for i in range(20)})
    put("/a/deep/deeper", {"x.txt": 9})
    put("/gone", {"inside.txt": 4})
    put("/", {"short.txt": 6})
    run("mdel", "-i", img, "::/b/b3.txt", "::/a/file number 7 with a long name.txt",
        "::/short.txt")
    run("mdeltree", "-i", img, "::/gone")
    for p in ("/b/b3.txt", "/a/file number 7 with a long name.txt", "/short.txt",
              "/gone/inside.txt"):
        del sizes[p]
    return img, sizes


def count_plain(fs) -> list:
    """Folders the column decoder took (patched onto ``fs`` before its first listing)."""
    took: list = []
    decode = fs.plain_rows

    def counted(segs):
        got = decode(segs)
        if got is not None:
            took.append(got)
        return got
    fs.plain_rows = counted
    return took


def entry_frame(fs) -> pd.DataFrame:
    """The same listing through the Entry walk (``FileSystem.files``)."""
    return FileSystem.files(fs)


@pytest.mark.skipif(not have("mkfs.fat", "mcopy", "fls"), reason="dosfstools, mtools, sleuthkit")
@pytest.mark.parametrize("bits", [12, 16, 32])
def test_files_rows_match_fls_and_the_written_tree(bits, tmp_path):
    img, sizes = mtools_tree(tmp_path, bits)
    fs = fatmod.open_filesystem(FileSource(img))
    took = count_plain(fs)
    df = fs.files()
    # /c, /a/deep and /a/deep/deeper (the others hold deleted slots); /c in pieces
    assert len(took) == 3 and max(len(t.segs) for t in took) > 1
    theirs = {r.inode: r for r in fb.fls(img)}
    assert sorted(df["inode"]) == sorted(theirs)
    for row in df.itertuples():
        r = theirs[row.inode]
        assert row.path.lstrip("/") == r.path, (row.path, r.path)
        assert row.deleted == r.deleted
        assert row.kind == {"r": "file", "d": "dir"}[r.type]
    live = df[~df.deleted & (df.kind == "file")]
    assert dict(zip(live.path, live["size"])) == sizes
    assert (df.allocated[~df.deleted & (df.kind == "file")]
            == [-(-n // fs.cluster_size) * fs.cluster_size for n in live["size"]]).all()
    assert df.deleted.sum() == 5  # three files, the folder and the file inside it
    assert not fs.files(deleted=False).deleted.any()
    assert len(fs.files(deleted=False)) == len(df) - 5
    pd.testing.assert_frame_equal(df, entry_frame(fs))


def spec_image(bits: int) -> tuple[bytes, dict[str, int]]:
    """A folder of the names the column decoder must spell as the specification says."""
    img = fb.FatImage(bits=bits, sectors={16: 9000, 32: 70000}[bits])
    d = img.mkdir(img.root, "names")
    want: dict[str, int] = {}

    def add(name: str, expect: str, data: bytes, **kw) -> None:
        img.add_file(d, name, data, **kw)
        want[f"/names/{expect}"] = len(data)

    add("party 🎉 time.dat", "party 🎉 time.dat", b"1")  # a surrogate pair
    add("thirteen char", "thirteen char", b"22")  # 13 units: no NUL, no padding
    add("a" * 26, "a" * 26, b"333")  # two whole pieces
    add("lone \ud800 surrogate", "lone \ufffd surrogate", b"4")
    add("lower.txt", "lower.txt", b"5", short=fb.short11("LOWER", "TXT"), lfn=False,
        ntres=0x18)
    add("Mixed.TXT", "mixed.TXT", b"6", short=fb.short11("MIXED", "TXT"), lfn=False,
        ntres=0x08)
    add("NOEXT", "NOEXT", b"7", short=fb.short11("NOEXT"), lfn=False)
    sub = img.mkdir(d, "Ünïcödé dïr")
    img.add_file(sub, "naïve.txt", b"8")
    want["/names/Ünïcödé dïr/naïve.txt"] = 1
    return img.build(), want


@pytest.mark.parametrize("bits", [16, 32])
def test_long_and_short_names_as_the_specification_spells_them(bits):
    raw, want = spec_image(bits)
    fs = fatmod.open_filesystem(MemorySource(raw))
    took = count_plain(fs)
    df = fs.files()
    assert len(took) == 2
    files = df[df.kind == "file"]
    assert dict(zip(files.path, files["size"])) == want
    assert set(df.path[df.kind == "dir"]) == {"/names", "/names/Ünïcödé dïr"}
    assert [r for r in fs.check_rows() if r["severity"] != "info"] == []
    pd.testing.assert_frame_equal(df, entry_frame(fs))


def test_a_broken_long_name_lists_its_folder_the_full_way():
    img = fb.FatImage(bits=16, sectors=9000)
    d = img.mkdir(img.root, "mixed")
    img.add_file(d, "A sound long name.txt", b"x")
    short = fb.short11("ALONGN~1", "TXT")
    img.add_file(d, "A long name.txt", b"y", short=short,
                 lfn_checksum=fb.lfn_checksum(short) ^ 0x5A)
    img.add_file(d, "gone.txt", b"zz", deleted=True)
    fs = fatmod.open_filesystem(MemorySource(img.build()))
    df = fs.files()
    assert list(df.path) == ["/mixed", "/mixed/A sound long name.txt", "/mixed/ALONGN~1.TXT",
                             "/mixed/gone.txt"]
    assert list(df.deleted) == [False, False, False, True]
    assert any("checksum" in f["message"] for f in fs.check_rows())
    pd.testing.assert_frame_equal(df, entry_frame(fs))


def test_dos_times_as_fatgen103_packs_them():
    """Every day of two years (leap and not) and impossible dates, times at the limits:
    the vectorised decoding equals the spec's formula evaluated by ``datetime``."""
    dates, times, tenths = [], [], []
    for year in (1980, 2000, 2023, 2107):
        for month in range(16):
            for day in range(32):
                dates.append((year - 1980) << 9 | month << 5 | day)
    for hour, minute, sec2 in ((0, 0, 0), (23, 59, 29), (24, 0, 0), (12, 60, 0), (1, 2, 30)):
        times.append(hour << 11 | minute << 5 | sec2)
    tenths = [0, 199, 200, 255]
    d = np.repeat(np.array(dates), len(times) * len(tenths))
    t = np.tile(np.repeat(np.array(times), len(tenths)), len(dates))
    c = np.tile(np.array(tenths), len(dates) * len(times))
    got = dos_times(d.astype(np.uint16), t.astype(np.uint16), c.astype(np.uint8))

    def expect(date, time, tenth):
        if date == 0:
            return None
        try:
            base = dt.datetime(1980 + (date >> 9), date >> 5 & 15, date & 31, time >> 11,
                               time >> 5 & 63)
        except ValueError:
            return None
        if time & 31 > 29:
            return None
        return base + dt.timedelta(seconds=(time & 31) * 2,
                                   milliseconds=10 * (tenth if tenth < 200 else 0))

    for i in range(len(d)):
        e = expect(int(d[i]), int(t[i]), int(c[i]))
        g = got[i]
        assert (np.isnat(g) if e is None else g == np.datetime64(e, "us")), (d[i], t[i], c[i])
    acc = dos_times(np.array(dates, dtype=np.uint16))
    for i, date in enumerate(dates):
        e = expect(date, 0, 0)
        assert np.isnat(acc[i]) if e is None else acc[i] == np.datetime64(e, "us")


def ls(*argv) -> str:
    import contextlib
    import io

    from vdinspect.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([str(a) for a in argv]) == 0
    return out.getvalue()


@pytest.mark.skipif(not have("mkfs.fat", "mcopy", "fls"), reason="dosfstools, mtools, sleuthkit")
def test_ls_from_the_column_walk(tmp_path, monkeypatch):
    """``ls`` streams the column walk: the bytes the Entry walk writes (live, deleted,
    JSON and text), with a folder whose entry is gone (found by the scan: rows of other
    shapes among the plain ones), paths and inodes as fls lists them."""
    import json

    from vdinspect.cli import commands

    made, _sizes = mtools_tree(tmp_path, 32)
    fs = fatmod.open_filesystem(FileSource(made))
    at = (fs.lookup("/b").inode - 3) * 32 + fs.first_data_offset
    raw = bytearray(made.read_bytes())
    raw[at] = 0xE5  # /b's entry marked deleted: its clusters stay in use
    img = tmp_path / "lost.img"
    img.write_bytes(raw)
    for args in (["-r", "--json"], ["-r", "--deleted", "--json"], ["-r", "--deleted"]):
        with monkeypatch.context() as m:
            m.setattr(commands, "_column_walk", lambda fs, top, args: None)
            want = ls("ls", *args, img)
        assert ls("ls", *args, img) == want, args
    rows = json.loads(ls("ls", "-r", "--deleted", "--json", img))
    assert any(r["found_by"] == "scan" for r in rows)
    # the lost folder's files: ours under /lost_dir_<cluster>, TSK's under its entry "_"
    theirs = {("/" + r.path, r.inode) for r in fb.fls(img) if r.path.split("/")[0] != "_"}
    mine = {(r["path"], r["inode"]) for r in rows if r["found_by"] == "index"
            and r["path"].split("/")[1] != "_"
            and not r["path"].startswith("/lost_dir_")}
    assert mine == theirs, sorted(mine ^ theirs)[:6]
