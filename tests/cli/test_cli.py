"""The command line as people and scripts use it: no pandas, exact JSON, readable tables,
clear messages, the README's commands and CI's test command."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import os
import re
import shlex
import struct
import subprocess
import sys

import pytest

import vdinspect
from tests.conftest import ROOT, SAMPLE_IMAGES, have
from vdinspect.cli import build_parser, main
from vdinspect.cli.output import human, write_rows

GPT = str(SAMPLE_IMAGES / "gpt-fat32-ext4-ntfs.qcow2")
CHAIN = str(SAMPLE_IMAGES / "chain-top.qcow2")


def run(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's usage errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


def run_json(*args):
    code, out, err = run(*args, "--json")
    assert code == 0, err
    return json.loads(out)


# --- no pandas ---------------------------------------------------------------------------


def test_commands_do_not_import_pandas():
    """info, map/parts/ls --json and the tables answer without importing pandas (or the
    readers of formats and filesystems the image does not use)."""
    calls = [["info", CHAIN], ["map", "--json", CHAIN], ["parts", "--json", GPT],
             ["ls", "--json", "--part", "2", GPT], ["ls", "-r", "--part", "3", GPT],
             ["check", CHAIN], ["layers", CHAIN], ["structures", CHAIN], ["snapshots", CHAIN]]
    code = (
        "import contextlib, io, sys\n"
        "from vdinspect.cli import main\n"
        f"for argv in {calls!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main(argv) == 0, argv\n"
        # (vdinspect.frames may load: the column walks of ext and NTFS that ls reads build
        # their columns with its helpers, which import pandas only to build a frame)
        "bad = [m for m in ('pandas', 'matplotlib', 'vdinspect.containers.vmdk',"
        " 'vdinspect.containers.vhdx', 'vdinspect.filesystems.fat', 'vdinspect.volumes.lvm2',"
        " 'vdinspect.machines') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_detection_imports_only_the_matching_reader(tmp_path):
    raw = tmp_path / "zeros.img"
    raw.write_bytes(bytes(1 << 20))
    code = (
        "import sys, vdinspect\n"
        f"d = vdinspect.open({str(raw)!r}); assert d.top.format == 'raw'\n"
        "shared = {'base', 'registry', 'runs', 'readplan'}  # what every reader uses\n"
        "mods = [m for m in sys.modules if m.startswith('vdinspect.containers.')\n"
        "        and m.split('.')[-1] not in shared]\n"
        "assert mods == ['vdinspect.containers.raw'], mods\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_magic_prechecks_agree_with_the_probes():
    """A format's cheap magic check never turns away a file its own probe accepts."""
    from vdinspect.containers.registry import FORMATS, HEAD_SIZE, detect
    from vdinspect.io import FileSource

    heads = [bytes(64), b"QFI\xfb" + bytes(60), b"# Disk DescriptorFile\nversion=1\n",
             b"\xef\xbb\xbf  version = 1\n", b"\n\n# comment\nversion=\"2\"\n"]
    for p in sorted(SAMPLE_IMAGES.iterdir()):
        if p.suffix in (".qcow2", ".qcow", ".vmdk", ".vdi", ".vhd", ".hds", ".raw", ".data"):
            with FileSource(str(p)) as src:
                heads.append(src.read(0, min(HEAD_SIZE, src.size)))
                assert detect(src).name != "raw" or p.suffix in (".raw", ".data"), p
    for head in heads:
        for f in FORMATS:
            if f.load().probe(head):
                assert f.magic(head), (f.name, head[:32])


# --- JSON: exact, the DataFrames' columns ---------------------------------------------------


def _frame_rows(df) -> list[dict]:
    """A DataFrame as JSON-ready rows the slow, obvious way (the reference)."""
    import pandas as pd

    def plain(v):
        if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
            return None
        if hasattr(v, "item") and not isinstance(v, pd.Timestamp | pd.Timedelta):
            return plain(v.item())
        if isinstance(v, pd.Timestamp):
            return v.isoformat()
        if isinstance(v, pd.Timedelta):
            return v.total_seconds()
        if isinstance(v, bytes):
            return v.hex()
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    return [{str(c): plain(v) for c, v in zip(df.columns, row)}
            for row in df.itertuples(index=False, name=None)]


@pytest.mark.parametrize("image", [CHAIN, GPT, str(SAMPLE_IMAGES / "vmdk-sparse.vmdk"),
                                   str(SAMPLE_IMAGES / "vdi-dynamic.vdi")])
def test_json_is_the_dataframes(image):
    with vdinspect.open(image) as disk:
        frames = dict(layers=disk.layers(), map=disk.allocation(), check=disk.check(),
                      structures=disk.structures(), snapshots=disk.snapshots(),
                      parts=disk.partitions())
        info = disk.info()
    for cmd, df in frames.items():
        assert run_json(cmd, image) == _frame_rows(df), cmd
    got = run_json("info", image)
    assert list(got) == list(info.index)
    assert got == _frame_rows(info.to_frame().T)[0]


@pytest.mark.parametrize("part", [1, 2, 3])
def test_ls_json_is_files(part):
    with vdinspect.open(GPT) as disk:
        fs = disk.filesystem(part)
        want = _frame_rows(fs.files("/", deleted=True))
        top = _frame_rows(fs.files("/", recursive=False, deleted=False))
    got = run_json("ls", "-r", "--deleted", "--part", part, GPT)
    assert got == want
    assert [r["path"] for r in run_json("ls", "--part", part, GPT)] == [r["path"] for r in top]


def test_rows_are_written_as_they_come():
    """Rows are written a batch at a time as they come: the first batch is out before the
    rows after it are made."""
    out = io.StringIO()

    def rows():
        yield {"path": "/a", "size": 1}
        yield {"path": "/b, \"c\"", "size": None}
        assert out.getvalue() == '[\n{"path": "/a", "size": 1},\n{"path": "/b, \\"c\\"", "size": null}'
        yield {"path": "/d", "size": 2, "extra": True}

    assert write_rows(out, rows(), batch=2) == 3
    assert json.loads(out.getvalue()) == [{"path": "/a", "size": 1},
                                          {"path": "/b, \"c\"", "size": None},
                                          {"path": "/d", "size": 2, "extra": True}]
    out = io.StringIO()
    write_rows(out, iter(()))
    assert json.loads(out.getvalue()) == []


def test_cat_json_is_base64():
    with vdinspect.open(GPT) as disk:
        want = disk.filesystem(2).read("/docs/notes.txt")
    got = run_json("cat", "--part", "2", GPT, "/docs/notes.txt")
    assert base64.b64decode(got["base64"]) == want and got["size"] == len(want)
    assert got["damaged"] == []


# --- tables for people ------------------------------------------------------------------------


def test_human_sizes():
    assert [human(n) for n in (0, 512, 1024, 1536, 4 << 20, 1212416, 3 << 40)] == \
        ["0 B", "512 B", "1 KiB", "1.5 KiB", "4 MiB", "1.16 MiB", "3 TiB"]
    assert human(1212416, exact=True) == "1212416"


def test_parts_table_is_readable():
    code, out, _ = run("parts", GPT)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(GPT) and "gpt" in lines[0] and "44 MiB" in lines[0]
    assert "<NA>" not in out and "None" not in out
    assert "Linux filesystem" in out and "0fc63daf" not in out  # names, not type GUIDs
    assert re.search(r"^2\s+35 MiB\s+39 MiB\s+4 MiB\s+Linux filesystem\s+ext4\s+vdext4", out,
                     re.M)
    code, out, _ = run("parts", "--bytes", GPT)
    assert re.search(r"^2\s+36700160\s+40894464\s+4194304\s", out, re.M)


def test_map_table_is_the_runs():
    rows = run_json("map", CHAIN)
    code, out, _ = run("map", CHAIN)
    lines = out.splitlines()
    assert code == 0 and "320 KiB data (5 runs)" in lines[0]
    table = [ln.split() for ln in lines[2:]]
    assert [(int(t[0], 16), int(t[1], 16), t[4]) for t in table] == [(r["start"], r["end"], r["state"]) for r in rows]
    code, out, _ = run("map", "--bytes", CHAIN)
    assert [ln.split()[:3] for ln in out.splitlines()[2:]] == \
        [[str(r["start"]), str(r["end"]), str(r["length"])] for r in rows]


def test_info_shows_the_main_facts():
    code, out, _ = run("info", CHAIN)
    assert code == 0
    assert out.splitlines()[0] == f"{CHAIN}: qcow2 v3 image, 4 MiB virtual, 3 layers"
    assert "virtual size: 4 MiB (4194304 bytes)" in out
    assert "refcount bits" not in out and "compression type" not in out
    fields = run_json("info", CHAIN)
    code, out, _ = run("info", "--all", CHAIN)
    names = [ln.split(":")[0] for ln in out.splitlines()[1:]]
    assert names == [k.replace("_", " ") for k in fields]
    code, out, _ = run("info", "--exact", "--bytes", CHAIN)
    assert f"allocated:    {fields['allocated']}" in out


def test_ls_table_and_streaming_order():
    code, out, _ = run("ls", "-r", "--part", "2", GPT)
    assert code == 0
    lines = out.splitlines()
    assert "ext4" in lines[0] and lines[1].split() == ["KIND", "SIZE", "MODIFIED", "INODE",
                                                       "PATH"]
    assert any(ln.startswith("file") and "6.25 KiB" in ln and ln.endswith("/docs/notes.txt")
               for ln in lines)


# --- messages -------------------------------------------------------------------------------


def test_several_filesystems_name_the_part_choices():
    code, out, err = run("ls", GPT)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert all(f"--part {n}" in err for n in (1, 2, 3)) and "part=" not in err


def test_check_says_once_that_all_is_well():
    code, out, _ = run("check", CHAIN)
    assert code == 0
    assert out == f"{CHAIN}: no problems found (3 layers and the partition table checked)\n"


@pytest.mark.parametrize("cmd", ["ls", "cat", "extract"])
def test_usage_lines_show_part(cmd):
    code, out, _ = run(cmd, "--help")
    assert code == 0 and "--part" in out.split("\n\n")[0]
    assert build_parser().parse_args([cmd, "--part", "2", "x.img", "/a", "b"][: 6 if cmd ==
                                     "extract" else 5]).part == "2"


def test_explain_command():
    code, out, _ = run("explain", CHAIN)
    assert code == 0
    assert "l1_table_offset" in out and "196608" in out
    code, _, err = run("explain", CHAIN, "nosuch")
    assert code == 2 and err.count("\n") == 1 and "nosuch" in err
    got = run_json("explain", CHAIN)
    assert {"offset": 24, "size": 8, "field": "size", "raw": "0000000000400000",
            "value": 4194304} .items() <= next(f for f in got["fields"]
                                               if f["field"] == "size").items()


@pytest.mark.skipif(not have("mmls"), reason="The Sleuth Kit missing")
def test_sector_size_for_4k_raw_disks(tmp_path):
    """An MBR disk with 4096-byte sectors: its partition is where ``mmls -b 4096`` puts it
    only when --sector-size says so (512-byte sectors are assumed otherwise)."""
    img = tmp_path / "4kn.img"
    disk = bytearray(16 << 20)
    disk[446:462] = struct.pack("<B3sB3sII", 0, bytes(3), 0x83, bytes(3), 256, 1024)
    disk[510:512] = b"\x55\xaa"
    img.write_bytes(bytes(disk))
    mmls = subprocess.run(["mmls", "-b", "4096", str(img)], capture_output=True, text=True,
                          check=True).stdout
    m = re.search(r"^\d+:\s+\d+:\d+\s+(\d+)\s+(\d+)\s+(\d+)", mmls, re.M)
    start, length = int(m[1]), int(m[3])
    [got] = [r for r in run_json("parts", "--sector-size", "4096", img) if r["index"] == 1]
    assert (got["start"], got["length"]) == (start * 4096, length * 4096)
    [guess] = [r for r in run_json("parts", img) if r["index"] == 1]
    assert guess["start"] == start * 512
    code, _, err = run("parts", "--sector-size", "1000", img)
    assert code == 2 and "Traceback" not in err


# --- README and CI --------------------------------------------------------------------------


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.*?)\n```", text, re.S)


def test_ci_runs_exactly_the_readme_test_command():
    setup, tests = _readme_commands()[:2]
    assert "python3 -m venv .venv && . .venv/bin/activate && pip install -q" in setup
    assert tests.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install -q")
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines()


def test_readme_demo_commands_work():
    setup = _readme_commands()[0]
    demo = [shlex.split(part) for part in setup.split(" && ") if part.startswith("vdinspect ")]
    assert [d[1] for d in demo] == ["info", "parts", "ls", "cat"]
    for argv in demo:
        argv = [str(ROOT / a) if a.startswith("sample_images/") else a for a in argv[1:]]
        if argv[0] == "cat":  # bytes to the real stdout
            r = subprocess.run([sys.executable, "-m", "vdinspect", *argv], capture_output=True,
                               cwd=ROOT)
            assert r.returncode == 0 and r.stdout == b"three levels down\n", r.stderr
            continue
        code, out, err = run(*argv)
        assert code == 0 and out and not err, argv


def test_tables_fit_the_terminal():
    """On a terminal, the chosen column is cut to its width; into a pipe nothing is cut."""
    import fcntl
    import pty
    import termios

    from vdinspect.cli.output import write_table

    rows = [("1", "x" * 100), ("2", "short")]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 40, 0, 0))
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST  # no \r added to the newlines
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    with open(slave, "w", closefd=True) as tty:
        write_table(tty, ("N", "TEXT"), rows, right=(0,), shrink=1)
    got = os.read(master, 4096).decode()
    os.close(master)
    assert max(len(ln) for ln in got.splitlines()) == 40 and "…" in got
    out = io.StringIO()
    write_table(out, ("N", "TEXT"), rows, right=(0,), shrink=1)
    assert "x" * 100 in out.getvalue()


@pytest.mark.skipif(not have("mke2fs"), reason="e2fsprogs missing")
def test_names_that_are_not_utf8(tmp_path):
    """An ext name in Latin-1 is listed with its bytes (as ls does), not a traceback, even
    when stdout is strict UTF-8; --json escapes it."""
    tree = tmp_path / "tree"
    tree.mkdir()
    with open(bytes(tree) + b"/caf\xe9.txt", "wb") as f:
        f.write(b"x")
    img = tmp_path / "ext.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(tree), str(img), "8M"],
                   check=True, capture_output=True)
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    r = subprocess.run([sys.executable, "-m", "vdinspect", "ls", str(img)], cwd=ROOT, env=env,
                       capture_output=True)
    assert r.returncode == 0 and b"/caf\xe9.txt\n" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-m", "vdinspect", "ls", "--json", str(img)], cwd=ROOT,
                       env=env, capture_output=True)
    assert r.returncode == 0
    assert "/caf\udce9.txt" in [row["path"] for row in json.loads(r.stdout)]


# --- the listing against The Sleuth Kit ----------------------------------------------------------


@pytest.mark.skipif(not have("mke2fs", "fls"), reason="mke2fs or fls missing")
def test_ls_r_json_of_a_tree_is_fls_listing(tmp_path):
    """``ls -r --json`` of an ext4 made by ``mke2fs -d`` lists the paths and inode numbers
    The Sleuth Kit's ``fls -r -p`` lists; times are ISO 8601 UTC (each distinct time is
    formatted once)."""
    tree = tmp_path / "tree"
    for d in range(12):
        (tree / f"d{d:02}" / "sub").mkdir(parents=True)
        for f in range(25):
            (tree / f"d{d:02}" / f"f{f:02}.txt").write_text("x" * (f * 37))
        (tree / f"d{d:02}" / "sub" / "deep.bin").write_bytes(bytes(5000))
    img = tmp_path / "ext4.img"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(tree), str(img), "16M"],
                   check=True, capture_output=True)
    fls = subprocess.run(["fls", "-r", "-p", str(img)], check=True, capture_output=True,
                         text=True).stdout
    want = set()
    for line in fls.splitlines():
        kind, rest = line.split(" ", 1)
        addr, path = rest.split(":\t", 1)
        if "$OrphanFiles" not in path:
            want.add(("/" + path, int(addr.lstrip("* ").split("-")[0])))
    got = run_json("ls", "-r", str(img))
    assert {(r["path"], r["inode"]) for r in got} == want
    assert all(r["modified"].endswith("+00:00") for r in got)
