"""``ls`` from a driver's column walk (ext, NTFS): the same bytes as the Entry walk,
streamed a batch at a time. Checked against images made by mke2fs -d (with symlinks,
hard links, empty and deep folders, odd names, a file deleted by debugfs), The Sleuth
Kit's ``fls -r -p`` and Python's own ``datetime.isoformat``."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SAMPLE_IMAGES, have
from vdinspect.cli import commands, main
from vdinspect.cli.columns import iso_time, plain_column

GPT = SAMPLE_IMAGES / "gpt-fat32-ext4-ntfs.qcow2"


def _run(*argv) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([str(a) for a in argv]) == 0
    return out.getvalue()


def _entry_walk(monkeypatch, *argv) -> str:
    """What ``ls`` writes through the Entry walk (the column walk turned off)."""
    with monkeypatch.context() as m:
        m.setattr(commands, "_column_walk", lambda fs, top, args: None)
        return _run(*argv)


def test_iso_times_from_numpy_are_isoformat():
    """A datetime64 column (many distinct values: formatted by numpy) is written as
    ``datetime.isoformat`` writes each time: the fraction left out when zero, before
    1970 too; NaT and times no datetime holds are None."""
    import numpy as np

    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    times = [epoch + dt.timedelta(microseconds=us) for us in (
        0, 1, 999_999, 1_000_000, -1, -1_000_000, -1_500_001, 1_733_600_000_123_456,
        1_733_600_000_000_000, 253_402_300_799_999_999, -62_135_596_800_000_000)]
    times += [epoch + dt.timedelta(days=d, microseconds=d * 7919) for d in range(-200, 200)]
    us = [(t - epoch) // dt.timedelta(microseconds=1) for t in times]
    beyond = [253_402_300_800_000_000, -62_135_596_800_000_001]  # after 9999, before 1
    col = np.array(us + beyond + [np.iinfo(np.int64).min], dtype=np.int64)
    got = plain_column(col.view("datetime64[us]"), iso_time)
    assert got == [t.isoformat() for t in times] + [None, None, None]
    # a masked column, and one of few distinct values (each formatted once), agree
    masked = np.ma.MaskedArray(col[:5].view("datetime64[us]"), [0, 1, 0, 0, 0])
    want = [times[0].isoformat(), None, *(t.isoformat() for t in times[2:5])]
    assert plain_column(masked, iso_time) == want


@pytest.mark.parametrize("args", [["-r", "--json"], ["-r", "--deleted", "--json"],
                                  ["-r", "--deleted"], ["--json"], []])
@pytest.mark.parametrize("part", [2, 3])
def test_column_walk_writes_what_the_entry_walk_writes(monkeypatch, part, args):
    """ext4 and NTFS (mke2fs, mkntfs): ``ls`` through the column walk is byte for byte
    ``ls`` through the Entry walk, in batches of any size."""
    want = _entry_walk(monkeypatch, "ls", *args, "--part", part, GPT)
    assert _run("ls", *args, "--part", part, GPT) == want
    monkeypatch.setattr(commands, "LS_BATCH", 3)
    assert _run("ls", *args, "--part", part, GPT) == want


@pytest.mark.parametrize("json_flag", [["--json"], []])
@pytest.mark.parametrize("part", [2, 3])
def test_column_walk_streams(monkeypatch, part, json_flag):
    """The column walk's first rows are written before it hands out its next batch."""
    monkeypatch.setattr(commands, "LS_BATCH", 2)
    out = io.StringIO()
    seen = []
    walk = commands._column_walk

    def watched(fs, top, args):
        batches = walk(fs, top, args)
        assert batches is not None  # the column walk, not the Entry walk
        for i, b in enumerate(batches):
            if i == 1:
                seen.append(out.getvalue().count("\n"))
            yield b

    monkeypatch.setattr(commands, "_column_walk", watched)
    with contextlib.redirect_stdout(out):
        assert main(["ls", "-r", "--part", str(part), *json_flag, str(GPT)]) == 0
    assert len(seen) == 1 and seen[0] >= 2


def _fls_paths(img) -> set[tuple[str, int]]:
    out = subprocess.run(["fls", "-r", "-p", "-d", str(img)], check=True,
                         capture_output=True, text=True).stdout
    out += subprocess.run(["fls", "-r", "-p", "-u", str(img)], check=True,
                          capture_output=True, text=True).stdout
    got = set()
    for line in out.splitlines():
        _kind, rest = line.split(" ", 1)
        addr, path = rest.split(":\t", 1)
        if not path.startswith("$OrphanFiles"):
            got.add(("/" + path, int(addr.lstrip("* ").split("-")[0])))
    return got


@pytest.mark.skipif(not have("mke2fs", "debugfs"), reason="mke2fs or debugfs missing")
def test_ext_tree_with_odd_entries(tmp_path, monkeypatch):
    """An ext4 made by mke2fs -d from a tree with symlinks, a hard link, empty and deep
    folders, names with quotes, percent signs and non-ASCII, then a file and a folder's
    file removed by debugfs: the column walk writes the Entry walk's bytes (live and
    with deleted entries), and its paths and inode numbers are fls's."""
    tree = tmp_path / "tree"
    for d in range(12):
        sub = tree / f"dir {d:02d}" / ("deep/" * (d % 4))
        sub.mkdir(parents=True)
        for i in range(150):
            (sub / f"f{i:03d} 'q' % é.txt").write_bytes(b"z" * (i * 31 % 5000))
    (tree / "empty").mkdir()
    os.symlink("dir 00/f000 'q' % é.txt", tree / "link")
    os.symlink("/nowhere/" + "x" * 200, tree / "dir 01" / "long link")
    os.link(tree / "dir 02" / "deep" / "deep" / "f001 'q' % é.txt", tree / "hard")
    img = tmp_path / "ext4.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(tree), str(img), "32M"],
                   check=True, capture_output=True)
    subprocess.run(["debugfs", "-w", "-R", "rm \"/dir 03/deep/deep/deep/f007 'q' % é.txt\"",
                    str(img)], check=True, capture_output=True)
    subprocess.run(["debugfs", "-w", "-R", "rm \"/dir 00/f149 'q' % é.txt\"", str(img)],
                   check=True, capture_output=True)
    for args in (["-r", "--json"], ["-r", "--deleted", "--json"], ["-r", "--deleted"]):
        want = _entry_walk(monkeypatch, "ls", *args, img)
        assert _run("ls", *args, img) == want, args
    rows = json.loads(_run("ls", "-r", "--deleted", "--json", img))
    assert len(rows) > 1800
    assert any(r["deleted"] for r in rows) and any(r["kind"] == "symlink" for r in rows)
    if have("fls"):
        got = {(r["path"], r["inode"]) for r in rows
               if not r["path"].startswith("/$OrphanFiles")}
        assert got == _fls_paths(img)


@pytest.mark.parametrize("n", [1, 3])
def test_constant_columns_written_into_the_template(n):
    """A column holding one value throughout a batch is written once into the batch's
    template: each line is still what json.dumps writes for the row, for 1 beside True,
    1.0 and 0.0 beside -0.0 (equal, written differently), percent signs in keys and
    values, and a batch of constant columns only."""
    from vdinspect.cli.output import JsonRows

    cols = {
        "one": [1] * n, "true": [True] * n, "mixed": [1, True, 1.0][:n],
        "zeros": [0.0, -0.0, 0.0][:n], "pct %s": ["%s %% %d"] * n, "none": [None] * n,
        "é": ["é\n\"q\""] * n, "vary": list(range(n)),
    }
    for keys in (list(cols), [k for k in cols if k not in ("vary", "mixed", "zeros")]):
        out = io.StringIO()
        w = JsonRows(out)
        w.add(keys, [cols[k] for k in keys])
        assert w.close() == n
        rows = [{k: cols[k][i] for k in keys} for i in range(n)]
        want = "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n"
        assert out.getvalue() == want


def test_extra_columns_as_the_entry_writer_keeps_them():
    """Rows whose extra columns change part way (an NTFS chunk cut where they change):
    each row has every extra column seen so far, in the order first seen, None where it
    lacks one; written as json.dumps writes each such row (times in ISO 8601 UTC)."""
    from vdinspect.cli.columns import row_batches
    from vdinspect.cli.output import JsonRows
    from vdinspect.filesystems.entry import Entry
    from vdinspect.frames import entry_columns
    from vdinspect.schemas import FILES_COLUMNS

    t = dt.datetime(2001, 2, 3, 4, 5, 6, 7000, tzinfo=dt.UTC)
    extras = [{"a": 1}, {"a": 2}, {"a": 3, "b": "x"}, {"b": "y"}, {"a": 5, "b": "z"},
              {"c": True}]
    entries = [Entry(name=f"n{i}", kind="dir" if i == 1 else "file", size=i, path=f"/n{i}",
                     parent="/", modified=t if i % 2 else None, inode=i + 10, extra=x)
               for i, x in enumerate(extras)]
    runs = [entries[:2], entries[2:3], entries[3:4], entries[4:5], entries[5:]]
    out = io.StringIO()
    w = JsonRows(out)
    for keys, cols in row_batches(((entry_columns(r), {}) for r in runs), 2):
        w.add(keys, cols)
    w.close()
    want, known = [], {}
    for e in entries:
        row = {c: getattr(e, c) for c in FILES_COLUMNS}
        for c in ("created", "modified", "accessed", "changed"):
            row[c] = row[c] and row[c].isoformat()
        row["damaged"] = None if e.kind == "dir" else 0
        known.update(dict.fromkeys(e.extra))
        want.append(json.dumps({**row, **dict.fromkeys(known), **e.extra}))
    assert out.getvalue() == "[\n" + ",\n".join(want) + "\n]\n"


#: names no tool would type: quotes, backslashes, control characters, bytes that are not
#: UTF-8 (and an encoded surrogate), a percent sign, characters outside the BMP
ODD_NAMES = [b'quote " q', b"back \\ slash", b"ctl \x01\x02\x1f", b"tab\there", b"nl\nline",
             b"bad \xff\xfe utf8", b"lat1 \xe9t\xe9", b"\xc3\xa9 utf8", b"pct %s %d %%",
             b"emoji \xf0\x9f\x98\x80", b"del \x7f", b"lone \xed\xa0\x80 surrogate"]


@pytest.mark.skipif(not have("mke2fs", "debugfs"), reason="mke2fs or debugfs missing")
def test_odd_names_as_mke2fs_stored_them(tmp_path, monkeypatch):
    """An ext4 made by mke2fs -d from a tree of odd names (in the root and in a folder whose
    own name has a quote and a backslash), one removed by debugfs: ``--json`` names are
    the names made here (bytes that are not UTF-8 as surrogate escapes, as os.fsdecode
    gives them), the table writes each name's own bytes, and both are the Entry walk's."""
    tree = tmp_path / "tree"
    sub = b'dir "q" \\ back'
    os.makedirs(os.path.join(bytes(tree), sub))
    for i, name in enumerate(ODD_NAMES):
        for d in (b"", sub):
            with open(os.path.join(bytes(tree), d, name), "wb") as f:
                f.write(b"x" * (i * 100))
    os.symlink(b"target \xff \" \\", os.path.join(bytes(tree), b"link \xff"))
    img = tmp_path / "ext4.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(tree), str(img), "16M"],
                   check=True, capture_output=True)
    subprocess.run(["debugfs", "-w", "-R", "rm \"/pct %s %d %%\"", str(img)], check=True,
                   capture_output=True)
    for args in (["-r", "--json"], ["-r", "--deleted", "--json"], ["-r", "--deleted"],
                 ["-r", "--bytes"]):
        assert _run("ls", *args, img) == _entry_walk(monkeypatch, "ls", *args, img), args
    rows = json.loads(_run("ls", "-r", "--deleted", "--json", img))
    live = {os.fsdecode(b"/" + n) for n in ODD_NAMES if n != b"pct %s %d %%"}
    live |= {os.fsdecode(b"/" + sub + b"/" + n) for n in ODD_NAMES}
    live |= {os.fsdecode(b"/" + sub), "/lost+found", os.fsdecode(b"/link \xff")}
    assert {r["path"] for r in rows if not r["deleted"]} == live
    gone = [r["path"] for r in rows if r["deleted"] and r["kind"] != "dir"]
    assert gone == ["/pct %s %d %%"]  # (beside the /$OrphanFiles folder, as fls lists)
    link = next(r for r in rows if r["kind"] == "symlink")
    assert link["target"] == os.fsdecode(b"target \xff \" \\")
    # the table, as a program reading standard output gets it: each name's own bytes
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    text = subprocess.run([sys.executable, "-m", "vdinspect", "ls", "-r", "--bytes", str(img)],
                          check=True, capture_output=True, env=env).stdout
    for n in ODD_NAMES:
        assert b"  /" + sub + b"/" + n + b"\n" in text, n
    assert b"  /link \xff -> target \xff \" \\\n" in text


def test_plain_columns_of_one_value_are_the_values():
    """Columns of one value throughout (taken once and repeated), fully masked, partly
    masked, booleans beside integers, one time throughout: each is the Python values
    they were made from (None where masked; times as datetime.isoformat writes them)."""
    import numpy as np

    cases = [
        ([7] * 5, None), ([7] * 5, [0] * 5), ([7] * 5, [1] * 5), ([7, 7, 8, 7, 7], None),
        ([3, 3, 3, 3], [0, 1, 0, 0]), ([2**62] * 3, None), ([1, 1], None), ([5], [1]),
    ]
    for vals, mask in cases:
        arr = np.array(vals, dtype=np.int64)
        col = arr if mask is None else np.ma.MaskedArray(arr, mask)
        want = [None if mask and mask[i] else v for i, v in enumerate(vals)]
        got = plain_column(col)
        assert got == want and all(type(v) is int for v in got if v is not None), vals
    flags = plain_column(np.array([True] * 4))
    assert flags == [True] * 4 and all(v is True for v in flags)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    t = epoch + dt.timedelta(microseconds=1_733_600_000_123_456)
    one = np.full(70, 1_733_600_000_123_456, dtype=np.int64).view("datetime64[us]")
    assert plain_column(one, iso_time) == [t.isoformat()] * 70
    assert plain_column(np.ma.MaskedArray(one, True), iso_time) == [None] * 70
