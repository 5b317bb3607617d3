"""Safe extraction under attack, and the ``ls``/``cat``/``extract`` commands.

Hostile FAT volumes come from tests/fs_builder.py (written from the FAT specification):
names with ``..``, separators, NUL, absolute paths and reserved Windows names, a directory
that points back at its ancestor, a looping cluster chain, a 4 GiB size on a short chain,
and trees deeper than the host (and vdinspect) will follow. After each extraction the
whole temporary tree is checked: nothing outside the destination, no links, and every
refusal named in the report. CLI results are compared with mtools and the builder's data.
"""

from __future__ import annotations

import json
import os
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from tests import fs_builder as fb
from tests.conftest import have
from vdinspect import cli
from vdinspect.filesystems import fat as fatmod
from vdinspect.filesystems.base import MAX_DEPTH, MAX_PATH, safe_name
from vdinspect.io import FileSource, MemorySource

MiB = 1 << 20


def snapshot(root: Path) -> set[str]:
    """Every path below ``root`` (iteratively: the trees here are thousands deep)."""
    out = set()
    stack = [str(root)]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for x in it:
                out.add(os.path.relpath(x.path, root))
                if x.is_dir(follow_symlinks=False):
                    stack.append(x.path)
    return out


def hostile_image() -> tuple[fb.FatImage, dict]:
    img = fb.FatImage(bits=16, sectors=16384)
    r = img.root
    evil = {
        "..": b"dotdot",
        ".": b"dot",
        "../../escape.txt": b"escape",
        "/etc/passwd_evil": b"absolute",
        "a\0b.txt": b"nul",
        "..\\..\\win.txt": b"backslash",
        "CON": b"con",
        "nul.txt": b"nul dev",
        "Aux.c": b"aux",
        "trail. . ": b"trailing",
        "a/b": b"slash 1",
        "a_b": b"slash 2",
    }
    for name, data in evil.items():
        img.add_file(r, name, data)
    d = img.mkdir(r, "dir")
    sub = img.mkdir(d, "sub")
    img.add_file(sub, "in sub.txt", b"in sub")
    img.dir_ref(sub, "back to dir", d)  # a loop: sub/back to dir == dir
    img.dir_ref(sub, "to root", r)  # cluster 0: the root itself
    img.add_file(r, "loop.bin", b"L" * 3000, loop=True, size=40000)
    img.add_file(r, "huge.bin", b"H" * 2000, size=0xFFFFFFFF)
    return img, evil


def check_contained(tmp: Path, dest: Path, before: set[str]) -> None:
    after = snapshot(tmp)
    top = os.path.relpath(dest, tmp)
    for rel in after - before:
        assert rel == top or rel.startswith(top + os.sep), f"{rel} is outside {dest}"
        assert not os.path.islink(os.path.join(tmp, rel))
    assert not any(".vdinspect-part" in x for x in after)


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "salvage"])
def test_hostile_names_loops_and_sizes(tmp_path, strict):
    img, evil = hostile_image()
    fs = fatmod.open_filesystem(MemorySource(img.build()), strict=strict)
    dest = tmp_path / "out"
    before = snapshot(tmp_path)
    rep = fs.extract("/", dest)
    check_contained(tmp_path, dest.resolve(), before)
    written = {Path(p).name: Path(p).read_bytes() for p in rep.written}
    for name, data in evil.items():  # every file arrives, under a safe name
        assert data in written.values(), name
    for host in written:
        assert host == safe_name(host) and host not in (".", "..")
    assert "CON" not in written and "_CON" in written
    assert (dest / "a_b").read_bytes() in (b"slash 1", b"slash 2")
    assert (dest / "a_b~1").exists()  # the two names that sanitise alike both survive
    reasons = dict(rep.skipped)
    assert any("directory loop" in why for why in reasons.values())
    if strict:
        assert "/loop.bin" in reasons and "/huge.bin" in reasons
        assert not rep.incomplete
    else:
        cut = dict(rep.incomplete)
        assert "/loop.bin" in cut and "/huge.bin" in cut
        assert (dest / "huge.bin").stat().st_size == 2048  # what the chain holds
        assert (dest / "loop.bin").stat().st_size == 3072
    assert len(rep.renamed) >= len(evil) - 2
    assert (dest / "dir" / "sub" / "in sub.txt").read_bytes() == b"in sub"


def rm_tree(path: Path) -> None:
    """Remove a tree too deep for shutil.rmtree's recursion (pytest's cleanup uses it)."""
    subprocess.run(["rm", "-rf", str(path)], check=True)


def test_deep_tree(tmp_path):
    """A chain of directories deeper than MAX_DEPTH: the walk stops and says so, the host
    refuses paths past PATH_MAX, and both refusals are in the report."""
    depth = MAX_DEPTH + 5
    img = fb.FatImage(bits=16, sectors=16384)
    d = img.root
    for _ in range(depth):  # 7 characters a level: the host stops near 585 levels
        d = img.mkdir(d, "DDDDDD", short=fb.short11("DDDDDD"), lfn=False)
    img.add_file(d, "bottom.txt", b"bottom")
    fs = fatmod.open_filesystem(MemorySource(img.build()))
    dest = tmp_path / "out"
    before = snapshot(tmp_path)
    try:
        rep = fs.extract("/", dest)
        check_contained(tmp_path, dest.resolve(), before)
    finally:
        rm_tree(dest)
    whys = [w for _, w in rep.skipped]
    assert any(f"deeper than {MAX_DEPTH}" in w for w in whys)
    assert any("could not write" in w for w in whys)  # ENAMETOOLONG from the host
    assert not rep.written
    assert any("deeper than" in f["message"] for f in fs.findings)


def test_long_paths(tmp_path):
    """Long names: the host gives up first (PATH_MAX), the walk stops at MAX_PATH."""
    img = fb.FatImage(bits=16, sectors=8192)
    d = img.root
    for i in range(200):
        d = img.mkdir(d, f"{i:03d}" + "x" * 200)
    img.add_file(d, "leaf.txt", b"leaf")
    fs = fatmod.open_filesystem(MemorySource(img.build()))
    try:
        rep = fs.extract("/", tmp_path / "out")
    finally:
        rm_tree(tmp_path / "out")
    whys = [w for _, w in rep.skipped]
    assert any("could not write" in w for w in whys)
    assert any("its folder was not extracted" in w for w in whys)
    assert any(f"longer than {MAX_PATH}" in w for w in whys)
    assert max(len(e.path) for e in fs.iter_entries("/")) < MAX_PATH + 300


def test_memory_stays_bounded(tmp_path):
    img = fb.FatImage(bits=16, sectors=32768, spc=4)
    data = os.urandom(6 * MiB)
    img.add_file(img.root, "big.bin", data, fragment=True)
    fs = fatmod.open_filesystem(MemorySource(img.build()))
    tracemalloc.start()
    rep = fs.extract("/big.bin", tmp_path / "out")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (tmp_path / "out" / "big.bin").read_bytes() == data
    assert rep.bytes_written == len(data)
    assert peak < 2 * MiB, peak  # one 1 MiB buffer, not the file


def test_progress_callback(tmp_path):
    img = fb.FatImage(bits=16, sectors=16384)
    for i in range(5):
        img.add_file(img.root, f"f{i}", bytes([i]) * 100_000)
    fs = fatmod.open_filesystem(MemorySource(img.build()))
    calls = []
    fs.extract("/", tmp_path / "o", progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (500_000, 500_000)
    assert all(a <= b for (a, _), (b, _) in zip(calls, calls[1:]))


# --- the commands ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_image(tmp_path_factory):
    if not have("mkfs.fat", "mcopy"):
        pytest.skip("needs dosfstools and mtools")
    d = tmp_path_factory.mktemp("cli")
    img = d / "disk.img"
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1", TZ="UTC")
    subprocess.run(
        ["mkfs.fat", "-F", "16", "-s", "1", "-C", str(img), "8192"], check=True, capture_output=True
    )
    (d / "bin").write_bytes(bytes(range(256)) * 4000)
    (d / "txt").write_bytes(b"text\n")
    for src, dst in (("bin", "::/binary data.bin"), ("txt", "::/notes.txt")):
        subprocess.run(["mcopy", "-i", str(img), str(d / src), dst], check=True, env=env)
    subprocess.run(["mmd", "-i", str(img), "::/folder"], check=True, env=env)
    subprocess.run(
        ["mcopy", "-i", str(img), str(d / "txt"), "::/folder/inner.txt"], check=True, env=env
    )
    subprocess.run(
        ["mcopy", "-i", str(img), str(d / "txt"), "::/folder/old.txt"], check=True, env=env
    )
    subprocess.run(["mdel", "-i", str(img), "::/folder/old.txt"], check=True, env=env)
    return img


def test_cli_ls(cli_image, capsys):
    assert cli.main(["ls", "--json", str(cli_image)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["path"] for r in rows} == {"/binary data.bin", "/notes.txt", "/folder"}
    assert {"path", "kind", "size", "deleted", "target", "inode", "attributes"} <= set(rows[0])
    assert cli.main(["ls", "-r", "--deleted", "--json", str(cli_image)]) == 0
    rows = {r["path"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["/folder/_ld.txt"]["deleted"] is True  # first letter lost, as fls shows
    assert rows["/binary data.bin"]["size"] == 1024000
    assert cli.main(["ls", str(cli_image), "/folder"]) == 0
    out = capsys.readouterr().out
    assert "inner.txt" in out and "old.txt" not in out and "modified" in out.lower()
    fls = {r.path for r in fb.fls(cli_image)} if have("fls") else None
    if fls is not None:
        assert fls == {p.lstrip("/") for p in rows}


def test_cli_cat_is_binary_safe(cli_image, capsysbinary):
    assert cli.main(["cat", str(cli_image), "/BINARY DATA.BIN"]) == 0
    out = capsysbinary.readouterr().out
    assert out == bytes(range(256)) * 4000
    mtype = subprocess.run(
        ["mtype", "-i", str(cli_image), "::/binary data.bin"],
        capture_output=True,
        env=dict(os.environ, MTOOLS_SKIP_CHECK="1"),
    )
    if mtype.returncode == 0:
        assert mtype.stdout == out


def test_cli_extract_and_errors(cli_image, tmp_path, capsys):
    dest = tmp_path / "x"
    assert cli.main(["extract", "--deleted", str(cli_image), "/folder", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "2 files" in out
    assert (dest / "inner.txt").read_bytes() == b"text\n"
    assert (dest / "_ld.txt").read_bytes() == b"text\n"  # recovered, named as TSK does
    assert cli.main(["cat", str(cli_image), "/nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err
    assert cli.main(["ls", "--part", "3", str(cli_image)]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\x01" * 100000)
    assert cli.main(["ls", str(junk)]) == 2  # no filesystem to choose: a bad call
    # one line says the file has no known signature (issue 20), one why ls stops
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "no known image format" in lines[0]
    assert "no filesystem found" in lines[1]


def test_cli_bad_chain_exits_1(tmp_path, capsys):
    img = fb.FatImage(bits=16, sectors=8192)
    img.add_file(img.root, "loop.bin", b"L" * 3000, loop=True, size=40000)
    p = tmp_path / "bad.img"
    p.write_bytes(img.build())
    assert cli.main(["cat", str(p), "/loop.bin"]) == 1
    err = capsys.readouterr().err
    assert "loops" in err and len(err.splitlines()) == 1
    assert cli.main(["cat", "--salvage", str(p), "/loop.bin"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("L" * 3000)
    dest = tmp_path / "o"
    # the unreadable file is lost to this extraction: said, and the exit status is 1
    assert cli.main(["extract", str(p), "/", str(dest)]) == 1
    assert "skipped: /loop.bin" in capsys.readouterr().out


def test_fat_volume_on_file(tmp_path):
    """The same checks through FileSource (O_RDONLY), so the evidence fixture hashes it."""
    img, _ = hostile_image()
    p = tmp_path / "h.img"
    p.write_bytes(img.build())
    fs = fatmod.open_filesystem(FileSource(p), strict=False)
    rep = fs.extract("/", tmp_path / "out")
    assert rep.written and rep.skipped
