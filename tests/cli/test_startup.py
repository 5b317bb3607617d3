"""The command line answers at once: ``info`` without numpy or pandas, ``ls`` written a
batch at a time from columns. Checked against qemu-img (sizes), The Sleuth Kit's ``fls``
(names and inode numbers) and rows built here from the API's Entries one by one."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import subprocess
import sys

import pytest

import vdinspect
from tests.conftest import ROOT, SAMPLE_IMAGES, have
from vdinspect.cli import commands, main
from vdinspect.filesystems.base import FILES_COLUMNS

GPT = SAMPLE_IMAGES / "gpt-fat32-ext4-ntfs.qcow2"


def _imported(argv: list[str]) -> tuple[set[str], str]:
    """The modules a ``python -m vdinspect`` process imports (``-X importtime``), and
    what it printed."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "vdinspect", *argv],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    mods = {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}
    assert "vdinspect.cli" in mods  # the report is there: an empty set would prove nothing
    return mods, r.stdout


@pytest.mark.skipif(not have("qemu-img"), reason="qemu-img missing")
@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_info_imports_neither_numpy_nor_pandas(tmp_path, fmt):
    """``vdinspect info`` reads a header: numpy and pandas are never imported (and the
    virtual size is qemu-img's)."""
    img = tmp_path / f"disk.{fmt}"
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(img), "4G"], check=True)
    mods, out = _imported(["info", str(img)])
    assert "numpy" not in mods and "pandas" not in mods, sorted(
        m for m in mods if m.split(".")[0] in ("numpy", "pandas"))[:5]
    # the filesystem probes are asked only whether a raw image is a disk at all
    assert ("vdinspect.volumes.probes" in mods) == (fmt == "raw")
    want = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(img)],
                                     check=True, capture_output=True, text=True).stdout)
    assert f"({want['virtual-size']} bytes)" in out


#: (qemu-img -O format, its -o options, file name): the formats whose tables are checked at
#: open without numpy and decoded on first use
LAZY_FORMATS = [("vmdk", [], "sparse.vmdk"),
                ("vmdk", ["-o", "subformat=streamOptimized"], "stream.vmdk"),
                ("vpc", [], "dynamic.vhd"), ("vpc", ["-o", "subformat=fixed"], "fixed.vhd"),
                ("vhdx", [], "dynamic.vhdx"), ("vhdx", ["-o", "subformat=fixed"], "fixed.vhdx"),
                ("vdi", [], "dynamic.vdi"), ("vdi", ["-o", "static=on"], "static.vdi"),
                ("parallels", [], "disk.hdd")]
#: the modules holding the limit below which a table is checked in Python at open
LIGHT_MODULES = ["vdinspect.containers.vhd.image", "vdinspect.containers.vdi.image",
                 "vdinspect.containers.parallels.image", "vdinspect.containers.vhdx.bat",
                 "vdinspect.containers.vmdk.sparse"]


def _converted(tmp_path, fmt: str, opts: list[str], name: str):
    """A 40 MiB disk with data in a few places (written by qemu-io), converted by qemu-img."""
    raw = tmp_path / "src.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(raw), "40M"], check=True)
    for off in ("0", "3M", "17M", "39M"):
        subprocess.run(["qemu-io", "-f", "raw", "-c", f"write -P 0x5a {off} 64k", str(raw)],
                       check=True, capture_output=True)
    img = tmp_path / name
    subprocess.run(["qemu-img", "convert", "-O", fmt, *opts, str(raw), str(img)], check=True)
    return img


@pytest.mark.skipif(not have("qemu-img", "qemu-io"), reason="qemu-img or qemu-io missing")
@pytest.mark.parametrize("fmt, opts, name", LAZY_FORMATS, ids=[n for *_x, n in LAZY_FORMATS])
def test_info_of_table_formats_without_numpy(tmp_path, monkeypatch, fmt, opts, name):
    """VMDK, VHD, VHDX, VDI and Parallels images made by qemu-img: ``info`` imports neither
    numpy nor pandas, shows qemu-img's virtual size, and writes what it writes when every
    table is decoded and checked with numpy at open (the limit of the Python check set
    below zero), for the short and the ``--all`` listing."""
    import importlib

    img = _converted(tmp_path, fmt, opts, name)
    mods, out = _imported(["info", str(img)])
    assert "numpy" not in mods and "pandas" not in mods, sorted(
        m for m in mods if m.split(".")[0] in ("numpy", "pandas"))[:5]
    # the format named: probing, qemu-img takes a fixed VHD for raw (test_vhd_size_note)
    want = json.loads(subprocess.run(["qemu-img", "info", "-f", fmt, "--output=json",
                                      str(img)], check=True, capture_output=True,
                                     text=True).stdout)
    assert f"({want['virtual-size']} bytes)" in out
    lazy_all = _run("info", "--all", img)
    for mod in LIGHT_MODULES:
        monkeypatch.setattr(importlib.import_module(mod), "MAX_LIGHT_ENTRIES", -1)
    assert _but_disk_size(_run("info", img)) == _but_disk_size(out)
    assert _but_disk_size(_run("info", "--all", img)) == _but_disk_size(lazy_all)
    # the counts info takes from the check at open: qemu-io wrote four blocks (of 2 MiB
    # for VHD, 1 MiB for VDI and Parallels), none in the same one
    field = {"dynamic.vhd": "allocated blocks", "dynamic.vdi": "blocks in map",
             "disk.hdd": "allocated clusters"}.get(name)
    if field:
        assert f"\n{field}:" in lazy_all
        assert lazy_all.split(f"\n{field}:", 1)[1].split()[0] == "4"


def _but_disk_size(text: str) -> list[str]:
    """The lines of ``info`` but disk size (the host's blocks: a file just written by
    qemu-img may still be settling on the host filesystem between two stat calls)."""
    return [line for line in text.splitlines() if not line.startswith("disk size")]


def test_json_rows_from_columns_are_json_dumps():
    """JsonRows writes what json.dumps writes for each row, whatever the columns hold:
    numbers, booleans, None, text with quotes, commas, percent signs and non-ASCII, times
    and bytes (through json_default), numpy scalars."""
    import numpy

    from vdinspect.cli.output import JsonRows, json_default

    keys = ["n", "t", "x", "100% sure"]
    cols = [[1, None, True, 2.5, float("nan"), numpy.int64(7)],
            ['a, "b"', None, "%s", "\u00e9\udcff", "", "}, {"],
            [dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC), b"\x00\xff", None, [1, "a, b"],
             dt.datetime(2024, 5, 1, 12), 3]]
    cols.append(list(range(6)))
    out = io.StringIO()
    w = JsonRows(out)
    w.add(keys, [c[:4] for c in cols])
    w.add(keys, [c[4:] for c in cols])
    assert w.close() == 6
    rows = [dict(zip(keys, r)) for r in zip(*cols)]
    want = "[\n" + ",\n".join(json.dumps(r, default=json_default) for r in rows) + "\n]\n"
    assert out.getvalue() == want


def test_iso_column_is_json_default():
    """Times as text: mostly distinct UTC times (the C path), repeated ones, naive ones
    (taken as UTC), other zones (converted), None: each as json_default writes it."""
    from vdinspect.cli.output import iso_column, json_default

    base = dt.datetime(2024, 5, 1, 12, 0, 0, 250, tzinfo=dt.UTC)
    distinct = [base + dt.timedelta(microseconds=i * 7919) for i in range(50)]
    cest = dt.timezone(dt.timedelta(hours=2))
    for col in (distinct, distinct[:20] + [None] + distinct[20:], [base] * 30 + [None],
                [t.replace(tzinfo=None) for t in distinct],
                [t.astimezone(cest) for t in distinct] + [None]):
        assert iso_column(col) == [None if t is None else json_default(t) for t in col]
    assert iso_column(distinct)[0] == "2024-05-01T12:00:00.000250+00:00"


def test_lazy_numpy_stand_in():
    """``vdinspect.lazy.np`` is numpy once used: same functions, arrays, dtypes."""
    import numpy

    from vdinspect.lazy import LazyArray, np

    assert np.__version__ == numpy.__version__
    assert np.frombuffer(b"\1\0\2\0", dtype="<u2").tolist() == [1, 2]
    assert np.int64 is numpy.int64 and np.ndarray is numpy.ndarray
    assert np.testing is numpy.testing  # a submodule numpy itself loads lazily
    codes = LazyArray(lambda: numpy.array([5, 6, 7], dtype=numpy.int8))
    assert codes[numpy.array([2, 0])].tolist() == [7, 5] and len(codes) == 3
    assert numpy.asarray(codes).dtype == numpy.int8


# --- ls: the rows ---------------------------------------------------------------------------


def _run(*argv) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([str(a) for a in argv]) == 0
    return out.getvalue()


def _iso(t):
    if t is None:
        return None
    t = t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)
    return t.isoformat()


def _rows_one_by_one(fs, entries) -> list[dict]:
    """What ``ls -r --json`` means, entry by entry: the files() fields, times in ISO 8601
    UTC, ``damaged`` (None for folders), then the extra columns seen so far."""
    rows, known = [], {}
    for e in entries:
        row = {c: getattr(e, c) for c in FILES_COLUMNS}
        for c in ("created", "modified", "accessed", "changed"):
            row[c] = _iso(row[c])
        row["damaged"] = fs.damaged(e) if fs.volume_damaged() else (
            None if e.kind == "dir" else 0)
        known.update(dict.fromkeys(e.extra))
        row.update(dict.fromkeys(known))
        row.update(e.extra)
        rows.append(row)
    return rows


@pytest.mark.parametrize("batch", [1, 3, 1024])
@pytest.mark.parametrize("part", [1, 2, 3])
def test_ls_json_rows_in_batches(monkeypatch, part, batch):
    """``ls -r --deleted --json`` in batches of any size is the rows built one by one
    from the Entries (keys in order, values exact), one row a line."""
    monkeypatch.setattr(commands, "LS_BATCH", batch)
    text = _run("ls", "-r", "--deleted", "--json", "--part", part, GPT)
    got = json.loads(text)
    with vdinspect.open(str(GPT)) as disk:
        fs = disk.filesystem(part)
        want = _rows_one_by_one(fs, fs.iter_entries("/", recursive=True, deleted=True))
    assert [list(r) for r in got] == [list(r) for r in want]
    assert got == want
    assert text.count("\n") == len(want) + 2  # "[", a line a row, "]"


@pytest.mark.parametrize("json_flag", [["--json"], []])
def test_ls_streams_batches_before_the_walk_ends(monkeypatch, json_flag):
    """The first batch is written before the walk hands out the entries after it (the
    Entry walk, taken here by turning the driver's column walk off: FAT has one now; the
    column walk: tests/cli/test_ls_columns.py)."""
    monkeypatch.setattr(commands, "LS_BATCH", 2)
    monkeypatch.setattr(commands, "_column_walk", lambda fs, top, args: None)
    out = io.StringIO()
    seen = []
    walk = commands._entries

    def watched(fs, top, args):
        for i, e in enumerate(walk(fs, top, args)):
            if i == 4:  # two batches taken: both written
                seen.append(out.getvalue().count("\n"))
            yield e

    monkeypatch.setattr(commands, "_entries", watched)
    with contextlib.redirect_stdout(out):
        assert main(["ls", "-r", "--part", "1", *json_flag, str(GPT)]) == 0
    # 4 rows out: "[\n" and 3 ",\n" (the 4th row's comes with the 5th) / 2 heading lines
    assert seen == [4 if json_flag else 2 + 4]


@pytest.mark.parametrize("part", [1, 2, 3])
def test_ls_text_in_batches(monkeypatch, part):
    """The table of ``ls -r`` is the same whatever the batch size."""
    whole = _run("ls", "-r", "--deleted", "--part", part, GPT)
    monkeypatch.setattr(commands, "LS_BATCH", 2)
    assert _run("ls", "-r", "--deleted", "--part", part, GPT) == whole
    assert len(whole.splitlines()) > 5


# --- ls against The Sleuth Kit ----------------------------------------------------------------

#: what fls lists that is not a file of the volume (TSK's virtual files)
TSK_VIRTUAL = ("/$OrphanFiles", "/$MBR", "/$FAT1", "/$FAT2")


def _fls(raw, sector: int) -> set[tuple[str, int]]:
    out = subprocess.run(["fls", "-r", "-p", "-o", str(sector), str(raw)], check=True,
                         capture_output=True, text=True).stdout
    got = set()
    for line in out.splitlines():
        _kind, rest = line.split(" ", 1)
        addr, path = rest.split(":\t", 1)
        path = "/" + path
        if path.startswith(TSK_VIRTUAL) or path.endswith("(Volume Label Entry)"):
            continue
        got.add((path, int(addr.lstrip("* ").split("-")[0])))
    return got


def _base(path: str) -> str:
    """An NTFS path without its stream or index name (fls lists ``$Secure:$SDH``)."""
    head, _sep, name = path.rpartition("/")
    return head + "/" + name.split(":", 1)[0]


@pytest.mark.skipif(not have("fls", "qemu-img"), reason="fls or qemu-img missing")
@pytest.mark.parametrize("part, fs", [(1, "fat32"), (2, "ext4"), (3, "ntfs")])
def test_ls_json_names_what_fls_names(tmp_path, part, fs):
    """FAT32, ext4 and NTFS (made by mkfs.fat, mke2fs and mkntfs): the paths and inode
    numbers of ``ls -r --deleted --json`` are those ``fls -r -p`` lists, TSK's virtual
    files aside; NTFS streams and index names are compared by file."""
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(GPT), str(raw)], check=True)
    with vdinspect.open(str(GPT)) as disk:
        vol = disk.volumes().find(part)
        assert vol.filesystem == fs
        sector = vol.start // 512
    got = {(r["path"], r["inode"]) for r in json.loads(
        _run("ls", "-r", "--deleted", "--json", "--part", part, GPT))
        if not r["path"].startswith(TSK_VIRTUAL)}
    want = _fls(raw, sector)
    if fs == "ntfs":
        got, want = {(_base(p), i) for p, i in got}, {(_base(p), i) for p, i in want}
    assert got == want
    assert len(want) >= 7  # a sample with folders, deleted names and streams


# --- ls of a raw volume: the probe family that answers, nothing else ------------------------

#: the probe families and the layouts each declares (volumes/probes/<family>.py)
FAMILY_MODULES = {
    "linux": ["vdinspect.volumes.probes.linux", "vdinspect.volumes.ext_layout",
              "vdinspect.volumes.xfs_layout", "vdinspect.volumes.btrfs_layout"],
    "media": ["vdinspect.volumes.probes.media", "vdinspect.volumes.optical_layout",
              "vdinspect.volumes.hfs_layout", "vdinspect.volumes.apfs_layout"],
    "windows": ["vdinspect.volumes.probes.windows", "vdinspect.volumes.fat_layout"],
}


def _mkfs(tmp_path, fs: str):
    """A 16 MiB volume formatted by the real tool (ext4 with a few files by mke2fs -d)."""
    img = tmp_path / f"{fs}.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    if fs == "ext4":
        tree = tmp_path / "tree"
        (tree / "docs").mkdir(parents=True)
        (tree / "docs" / "a.txt").write_text("a\n")
        (tree / "b.bin").write_bytes(b"\1" * 5000)
        cmd = ["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(tree), str(img)]
    elif fs == "ntfs":
        cmd = ["mkntfs", "-q", "-F", "-f", str(img)]
    else:
        cmd = ["mkfs.exfat", str(img)]
    subprocess.run(cmd, check=True, capture_output=True)
    return img


@pytest.mark.parametrize("fs, tool, family", [("ext4", "mke2fs", "linux"),
                                              ("ntfs", "mkntfs", "windows"),
                                              ("exfat", "mkfs.exfat", "windows")])
def test_ls_of_a_raw_volume_imports_one_probe_family(tmp_path, fs, tool, family):
    """``ls -r --json`` of a raw volume made by mke2fs, mkntfs or mkfs.exfat imports the
    probe family that names it and none of the others' probes or layouts (NTFS and exFAT
    by their OEM name, before any other probe), never pandas; blkid names the same type."""
    if not have(tool, "blkid"):
        pytest.skip(f"{tool} or blkid missing")
    img = _mkfs(tmp_path, fs)
    mods, out = _imported(["ls", "-r", "--json", str(img)])
    assert "pandas" not in mods
    assert set(FAMILY_MODULES[family]) & mods, "the answering family is imported"
    others = {m for f, ms in FAMILY_MODULES.items() if f != family for m in ms}
    assert not others & mods, sorted(others & mods)
    if family != "windows":
        assert not {"vdinspect.volumes.ntfs_layout", "vdinspect.volumes.exfat_layout"} & mods
    blkid = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", str(img)],
                           capture_output=True, text=True).stdout.strip()
    assert blkid == fs
    paths = {r["path"] for r in json.loads(out)}
    if fs == "ext4":  # what mke2fs -d copied in
        assert {"/docs", "/docs/a.txt", "/b.bin", "/lost+found"} <= paths


@pytest.mark.parametrize("fs, tool", [("vfat", "mkfs.fat"), ("ntfs", "mkntfs")])
def test_info_of_a_raw_boot_sector_volume_declares_no_layout(tmp_path, fs, tool):
    """``info`` of a raw FAT32 or NTFS volume (mkfs.fat, mkntfs): the disk probe sees the
    55 AA of sector 0 through signatures.py, so construct and the partition-table layouts
    are never imported; blkid agrees there is a filesystem, and qemu-img on the size."""
    if not have(tool, "blkid", "qemu-img"):
        pytest.skip(f"{tool}, blkid or qemu-img missing")
    img = tmp_path / "vol.img"
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    cmd = ["mkfs.fat", "-F", "32", str(img)] if fs == "vfat" else ["mkntfs", "-q", "-F", "-f",
                                                                  str(img)]
    subprocess.run(cmd, check=True, capture_output=True)
    mods, out = _imported(["info", str(img)])
    assert not {m for m in mods if m.split(".")[0] in ("construct", "numpy", "pandas")}
    assert not {"vdinspect.layout", "vdinspect.volumes.gpt", "vdinspect.volumes.mbr"} & mods
    blkid = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", str(img)],
                           capture_output=True, text=True).stdout.strip()
    assert blkid == fs
    want = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(img)],
                                     check=True, capture_output=True, text=True).stdout)
    assert f"({want['virtual-size']} bytes)" in out


# --- the parser declares only the sub-command asked for ---------------------------------------

COMMAND_LINES = [["ls", "-r", "--json", "--part", "2", "disk.img", "/etc"],
                 ["info", "--all", "--salvage", "--offset", "0x200", "disk.img"],
                 ["extract", "--deleted", "disk.img", "/", "out"],
                 ["diff", "--files", "--layer", "-1", "old.qcow2", "new.qcow2"],
                 ["carve", "--types", "jpg,png", "--budget", "2.5", "disk.img", "out"],
                 ["explain", "--in-layer", "0", "--offset", "512", "disk.img", "l1_table"],
                 ["scan", "--no-images", "-p", "disk.img"], ["map", "--start", "7", "d.img"]]


@pytest.mark.parametrize("argv", COMMAND_LINES, ids=[a[0] for a in COMMAND_LINES])
def test_parser_of_one_command_is_the_whole_parser(argv, capsys):
    """``build_parser(command)`` declares only that sub-command: what it parses and the
    sub-command's ``--help`` are those of the parser with every sub-command."""
    from vdinspect.cli import build_parser

    assert vars(build_parser(argv[0]).parse_args(argv)) == vars(build_parser().parse_args(argv))
    helps = []
    for parser in (build_parser(argv[0]), build_parser()):
        with pytest.raises(SystemExit):
            parser.parse_args([argv[0], "--help"])
        helps.append(capsys.readouterr().out)
    assert helps[0] == helps[1] and f"vdinspect {argv[0]}" in helps[0]


def test_mistyped_command_lists_every_command(capsys):
    """A first word that is no command gets the whole parser's error naming them all."""
    with pytest.raises(SystemExit) as e:
        main(["lss", "disk.img"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    for name in ("info", "ls", "extract", "carve", "diff"):
        assert f"'{name}'" in err


def test_json_columns_whose_first_cell_misleads():
    """Columns that start like numbers or text and are not all that: a tuple or an empty
    dict after a number (no quotes in their JSON), a None or a number after text, NaN
    and infinities, 1 beside True: each line is what json.dumps writes for the row."""
    from vdinspect.cli.output import JsonRows, json_default

    cols = {"a": [1, (2, 3), None, {}, [], 2.5], "b": ["x", None, "y\\\"", 3, "", "é"],
            "c": [float("nan"), float("inf"), -float("inf"), 0.0, -0.0, None],
            "d": [1, True, 1, 1, 1, 1], "e": [None, "a, b", '", "', None, None, None]}
    out = io.StringIO()
    w = JsonRows(out)
    w.add(list(cols), list(cols.values()))
    assert w.close() == 6
    rows = [dict(zip(cols, r)) for r in zip(*cols.values())]
    want = "[\n" + ",\n".join(json.dumps(r, default=json_default) for r in rows) + "\n]\n"
    assert out.getvalue() == want
