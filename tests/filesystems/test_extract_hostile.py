"""Extraction from hostile ext2/3/4 and NTFS volumes (the FAT cases are in test_extract.py).

ext images start as real ``mke2fs -d`` output of a host tree (files, symlinks with any
target, hard links), are changed with ``debugfs -w`` (directory hard links and loops, sizes
of 2 TiB, a tree 4200 levels deep) and get the names no tool writes ("..", "/", NUL...)
patched into their directory blocks by tests/ext_builder.rename_dirent. ``debugfs ls -l``
and ``stat`` confirm each image is what was meant. NTFS volumes are ``mkntfs`` output with
records, indexes, hard links and reparse points written from the specification by
tests/ntfs_builder.Tree (no ntfs-3g mount needed); ``ntfsls``, ``ntfsinfo`` and The Sleuth
Kit's ``fls`` confirm them.

After every extraction: nothing new appears outside the destination (the folder above it
is snapshotted before and after), no link inside it resolves outside, no temporary file is
left, every file arrives with the bytes the builder wrote under a host-safe name, and every
entry not written is in ``ExtractReport.skipped`` with a reason.
"""

from __future__ import annotations

import os
import re
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import ext_builder as eb
from tests import ntfs_builder as nb
from tests.conftest import have, sha256_file
from tests.tools import fls_lines, run  # noqa: F401 (the one way the tests run a tool)
from vdinspect.errors import CorruptImage
from vdinspect.filesystems import ext as extmod
from vdinspect.filesystems import ntfs as ntfsmod
from vdinspect.filesystems.base import MAX_DEPTH, FileSystem, safe_name
from vdinspect.io import FileSource

MiB = 1 << 20
HUGE = 2 << 40  # 2 TiB
DAG_LEVELS = 32  # two names per level for the same directory: 2**32 paths if followed
DEEP = MAX_DEPTH + 104

needs_e2fs = pytest.mark.skipif(not have("mke2fs", "debugfs"), reason="needs e2fsprogs")
needs_ntfs = pytest.mark.skipif(
    not have("mkntfs", "ntfsls", "ntfsinfo", "fls"), reason="needs mkntfs, ntfs-3g tools, TSK"
)


def debugfs(img: Path, *commands: str, write: bool = False) -> str:
    return run(
        "debugfs", *(["-w"] if write else []), "-f", "-", img, input="\n".join(commands) + "\n"
    )


def snapshot(root: Path) -> set[str]:
    """Every path below ``root`` (iteratively: some trees here are thousands deep)."""
    out = set()
    cut = len(str(root)) + 1
    stack = [str(root)]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for x in it:
                out.add(x.path[cut:])
                if x.is_dir(follow_symlinks=False):
                    stack.append(x.path)
    return out


@dataclass
class Extraction:
    fs: FileSystem
    rep: object
    dest: Path
    root: Path  # the snapshotted folder
    new: set[str]  # paths that appeared below it, relative to it
    top: str  # dest relative to it


def extract(fs: FileSystem, path: str, tmp: Path, deep: bool = False) -> Extraction:
    """Extract into tmp/p/q/out: a link or name climbing two levels would land in tmp.
    ``deep`` puts q 3800 bytes down, so the host's PATH_MAX stops a deep tree early."""
    parent = tmp / "p" / "q"
    if deep:
        parent = parent.joinpath(*["L" * 250] * 15)
    parent.mkdir(parents=True, exist_ok=True)
    dest = parent / "out"
    before = snapshot(tmp)
    rep = fs.extract(path, dest)
    return Extraction(fs, rep, dest, tmp, snapshot(tmp) - before, os.path.relpath(dest, tmp))


def extract_traced(fs: FileSystem, path: str, tmp: Path, deep: bool = False
                   ) -> tuple[Extraction, int]:
    """``extract`` under tracemalloc: the extraction and its peak of traced bytes."""
    tracemalloc.start()
    try:
        return extract(fs, path, tmp, deep), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def assert_contained(x: Extraction) -> None:
    """Nothing outside dest; no link in it resolving outside; no temporary file left."""
    outside = [p for p in x.new if p != x.top and not p.startswith(x.top + os.sep)]
    assert not outside, outside
    real = os.path.realpath(x.dest)
    for rel in x.new:
        p = os.path.join(x.root, rel)
        assert ".vdinspect-part" not in rel, rel
        if os.path.islink(p):
            r = os.path.realpath(p)
            assert r == real or r.startswith(real + os.sep), f"{rel} -> {os.readlink(p)}"
    for path, why in x.rep.skipped:
        assert isinstance(why, str) and why, path
    for host in x.rep.written:
        assert os.path.realpath(os.path.dirname(host)).startswith(real), host
        assert os.path.lexists(host), host


def skipped(x: Extraction) -> dict[str, str]:
    out: dict[str, str] = {}
    for p, why in x.rep.skipped:
        out.setdefault(p, why)
    return out


def host_files(folder: Path) -> dict[bytes, str]:
    """content -> host name of the regular files in one extracted folder."""
    out = {}
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False):
            out[Path(entry.path).read_bytes()] = entry.name
    return out


def check_names(x: Extraction, folder: str, expect: dict[str, bytes]) -> None:
    """Each name's bytes arrived in ``folder`` under safe_name(name) (or a ~N twin), and
    every name that changed is in ``renamed``."""
    got = host_files(x.dest / folder)
    renamed = dict(x.rep.renamed)
    for name, data in expect.items():
        assert data in got, (name, "not extracted", skipped(x).get(f"/{folder}/{name}"))
        host = got[data]
        assert host.split("~")[0] == safe_name(name).split("~")[0], (name, host)
        assert len(host.encode("utf-8", "surrogateescape")) <= 255
        assert host not in (".", "..") and "/" not in host and "\0" not in host
        if host != name:
            assert renamed.get(f"/{folder}/{name}") == str(x.dest / folder / host), name


def case_twins(x: Extraction, d: Path) -> None:
    """Names that differ only in case never share a host file, on any host: the second
    becomes ``~1`` (compared without case everywhere, so macOS and Windows get the same
    names as Linux) and is listed in ``renamed``."""
    names = sorted(p.name for p in d.iterdir() if p.name.casefold().startswith("readme.txt"))
    assert len(names) == 2 and sum(n.endswith("~1") for n in names) == 1, names
    assert {(d / n).read_bytes().lower() for n in names} == {b"readme.txt"}
    assert (d / names[0]).read_bytes() != (d / names[1]).read_bytes()
    assert any(h.endswith("~1") for _p, h in x.rep.renamed)


def check_links(x: Extraction, folder: str, expect: dict[str, tuple[str, bool]]) -> None:
    """Links that stay inside are recreated with their target; the others are skipped."""
    why = skipped(x)
    for name, (target, kept) in expect.items():
        host = x.dest / folder / name
        if kept:
            assert os.readlink(host) == target, name
        else:
            assert not host.is_symlink(), name
            assert f"/{folder}/{name}" in why, name


def check_through(x: Extraction, folder: str) -> None:
    """A link and a real folder with the same name: the folder's files never go through
    the link (``through`` points out and is skipped, ``inside`` points at ``sub``)."""
    base = x.dest / folder
    for name in ("through", "through~1"):
        assert not (base / name).is_symlink()
    evil = [
        p for p in (base / "through" / "evil.txt", base / "through~1" / "evil.txt") if p.exists()
    ]
    assert len(evil) == 1 and evil[0].read_bytes() == b"evil"
    links = [n for n in ("inside", "inside~1") if (base / n).is_symlink()]
    dirs = [n for n in ("inside", "inside~1") if (base / n).is_dir() and n not in links]
    assert len(links) == 1 and os.readlink(base / links[0]) == "sub"
    assert len(dirs) == 1 and (base / dirs[0] / "f.txt").read_bytes() == b"f"
    assert not (base / "sub" / "f.txt").exists()


def check_sparse(
    x: Extraction, folder: str, name: str, size: int, head: bytes, tail: bytes = b""
) -> None:
    """A sparse file: its full size, the bytes as built at both ends, zeros between, and
    the holes left as holes (a few host blocks, not the size)."""
    p = x.dest / folder / name
    st = p.stat()
    assert st.st_size == size, name
    assert st.st_blocks * 512 < 4 * MiB, (name, st.st_blocks)
    with open(p, "rb") as f:
        assert f.read(len(head)) == head
        f.seek(size // 2)
        assert f.read(4096) == bytes(4096)
        f.seek(size - len(tail) - 4096)
        assert f.read() == bytes(4096) + tail


def empty_or_absent(p: Path) -> bool:
    """A directory entry that is not followed is not made (no empty folder stands in
    for it: it is in the report's ``skipped``)."""
    return not p.exists() and not p.is_symlink()


def check_loops(x: Extraction) -> None:
    why = skipped(x)
    for p in ("/loops/self", "/loops/a/back", "/loops/a/root"):
        assert "directory loop" in why[p], p
    assert (x.dest / "loops" / "a" / "in_a.txt").read_bytes() == b"a"
    for p in ("self", "a/back", "a/root"):
        assert empty_or_absent(x.dest / "loops" / p), p


def check_dag(x: Extraction) -> None:
    """Each level names the next directory twice: it is extracted once, the second name
    is refused, and the tree does not double at every level."""
    why = skipped(x)
    d = x.dest / "dag"
    path = "/dag"
    for _ in range(DAG_LEVELS):
        assert (d / "x").is_dir() and empty_or_absent(d / "y")
        assert "already" in why[path + "/y"]
        d, path = d / "x", path + "/x"
    assert (d / "leaf.txt").read_bytes() == b"leaf"
    assert sum(1 for p in x.new if p.endswith("leaf.txt")) == 1


def check_hard(x: Extraction) -> None:
    why = skipped(x)
    h = x.dest / "hard"
    assert (h / "orig.txt").read_bytes() == b"orig"
    assert (h / safe_name("../../hl.txt")).read_bytes() == b"orig"
    assert (h / "sub" / "in.txt").read_bytes() == b"in"
    assert "already" in why["/hard/sublink"]
    assert "directory loop" in why["/hard/sub/up"]
    assert empty_or_absent(h / "sublink") and empty_or_absent(h / "sub" / "up")


# --- ext --------------------------------------------------------------------------------

EXT_NAMES = [
    b"..",
    b".",
    b"../../escape.txt",
    b"/etc/passwd_evil",
    b"a\0b.txt",
    b"..\\..\\win.txt",
    b"a/b",
    b"CON",
    b"aux.txt",
    b"NUL",
    b"com1.log",
    b"trail. . ",
    b"\x1b[31mred",
    b"L" * 255,
    "é".encode() * 127,
    b"bad\xff\xfename",
]
PLAIN_NAMES = [b"a_b", b"Readme.txt", b"README.TXT"]
LINKS = {  # name in /links: (target, recreated?) for a whole-volume extraction
    "abs": ("/etc/passwd", False),
    "up": ("../../x", False),
    "chain1": ("chain2", True),
    "chain2": ("chain3", True),
    "chain3": ("/etc", False),
    "rc1": ("rc2", True),
    "rc2": ("../../../outside", False),
    "dot": (".", True),
    "dotdot_via": ("dot/..", False),
    "dot2": ("./../..", False),
    "bs": ("..\\..\\x", False),
    "long": ("../" * 40 + "etc/passwd", False),
    "ok": ("sub/file.txt", True),
    "okdir": ("sub", True),
    "to_names": ("../names", True),
    "sub/up": ("..", True),
    "sub/up2": ("../../..", False),
}


def ext_name_data(i: int) -> bytes:
    return b"name %d" % i


def placeholder(i: int, length: int) -> str:
    """A plain name of ``length`` bytes, unique per i (the hostile bytes replace it)."""
    return {1: "q", 2: "qq"}.get(length) or (f"p{i:02d}" + "z" * 300)[:length]


def ext_ino(img: Path, path: str) -> int:
    return int(re.search(r"Inode: (\d+)", debugfs(img, f"stat {path}")).group(1))


def debugfs_ls(img: Path, path: str) -> list[tuple[int, int, bytes]]:
    """(inode, mode, name bytes) of every entry ``debugfs ls -l`` shows, "." and ".."
    included (it escapes unprintable bytes as \\xNN)."""
    rows = []
    for line in debugfs(img, f"ls -l {path}").splitlines():
        m = re.match(r"\s*(\d+)\s+(\d+)\s+\(\d+\)\s+\d+\s+\d+\s+\d+\s+\S+ \S+ (.*)$", line)
        if m:
            raw = m.group(3).encode("utf-8", "surrogateescape")
            name = re.sub(rb"\\x([0-9a-f]{2})", lambda g: bytes([int(g.group(1), 16)]), raw)
            rows.append((int(m.group(1)), int(m.group(2), 8), name))
    return rows


def build_ext(tmp: Path, kind: str) -> Path:
    """The hostile ext2/3/4 image (4 KiB blocks so each directory is one block)."""
    src = tmp / "src"
    (src / "names").mkdir(parents=True)
    for i, name in enumerate(EXT_NAMES):
        (src / "names" / placeholder(i, len(name))).write_bytes(ext_name_data(i))
    for name in PLAIN_NAMES:
        (src / "names" / name.decode()).write_bytes(name)
    links = src / "links"
    (links / "sub").mkdir(parents=True)
    (links / "sub" / "file.txt").write_bytes(b"file")
    for name, (target, _kept) in LINKS.items():
        os.symlink(target, links / name)
    os.symlink("/tmp", links / "through")
    (links / "throuGH").mkdir()  # renamed "through" below: a folder named like the link
    (links / "throuGH" / "evil.txt").write_bytes(b"evil")
    os.symlink("sub", links / "inside")
    (links / "insidE").mkdir()
    (links / "insidE" / "f.txt").write_bytes(b"f")
    (src / "hard" / "sub").mkdir(parents=True)
    (src / "hard" / "orig.txt").write_bytes(b"orig")
    os.link(src / "hard" / "orig.txt", src / "hard" / "hl_placehold")
    (src / "hard" / "sub" / "in.txt").write_bytes(b"in")
    (src / "loops" / "a").mkdir(parents=True)
    (src / "loops" / "a" / "in_a.txt").write_bytes(b"a")
    (src / "huge").mkdir()
    (src / "huge" / "empty").write_bytes(b"")
    (src / "huge" / "few").write_bytes(b"F" * 5000)
    (src / "dag").mkdir()
    (tmp / "leaf").write_bytes(b"leaf")
    img = tmp / f"hostile.{kind}"
    features = ["-O", "^metadata_csum"] if kind == "ext4" else []
    run("mke2fs", "-q", "-t", kind, *features, "-b", "4096", "-N", "512", "-d", src, img, "8M")
    dag = ["cd /dag"]
    for _ in range(DAG_LEVELS):
        dag += ["mkdir x", "ln x y", "cd x"]
    debugfs(
        img,
        "ln /hard/sub /hard/sublink",
        "ln /hard /hard/sub/up",
        "ln /loops /loops/self",
        "ln /loops /loops/a/back",
        "ln / /loops/a/root",
        f"sif /huge/empty size {HUGE:#x}",
        f"sif /huge/few size {HUGE:#x}",
        *dag,
        f"write {tmp / 'leaf'} leaf.txt",
        write=True,
    )
    names = ext_ino(img, "/names")
    for i, name in enumerate(EXT_NAMES):
        eb.rename_dirent(img, names, placeholder(i, len(name)).encode(), name)
    eb.rename_dirent(img, ext_ino(img, "/links"), b"throuGH", b"through")
    eb.rename_dirent(img, ext_ino(img, "/links"), b"insidE", b"inside")
    eb.rename_dirent(img, ext_ino(img, "/hard"), b"hl_placehold", b"../../hl.txt")
    return img


@pytest.fixture(scope="module", params=["ext2", "ext3", "ext4"])
def ext_image(tmp_path_factory, request) -> Path:
    """ext2 and ext3 map blocks with indirect blocks, ext4 with extents."""
    if not have("mke2fs", "debugfs"):
        pytest.skip("needs e2fsprogs")
    return build_ext(tmp_path_factory.mktemp("ext_hostile"), request.param)


@pytest.fixture(scope="module", params=[True, False], ids=["strict", "salvage"])
def ext_out(ext_image, tmp_path_factory, request) -> Extraction:
    tmp = tmp_path_factory.mktemp("ext_out")
    digest = sha256_file(ext_image)
    fs = extmod.open_filesystem(FileSource(ext_image), strict=request.param)
    x = extract(fs, "/", tmp)
    assert sha256_file(ext_image) == digest
    return x


@needs_e2fs
def test_ext_image_is_as_built(ext_image):
    """debugfs sees the hostile entries: the names, the shared inodes, the loops, the sizes."""
    names = debugfs_ls(ext_image, "/names")
    got = Counter(n for _i, _m, n in names[2:])  # the first two are the real "." and ".."
    assert got == Counter(EXT_NAMES + PLAIN_NAMES)
    assert all(m & 0o170000 == 0o100000 for _i, m, _n in names[2:])  # files, even "." ".."
    hard = {n: i for i, _m, n in debugfs_ls(ext_image, "/hard")}
    assert hard[b"../../hl.txt"] == hard[b"orig.txt"]
    assert hard[b"sublink"] == hard[b"sub"]
    loops = ext_ino(ext_image, "/loops")
    assert {n: i for i, _m, n in debugfs_ls(ext_image, "/loops")}[b"self"] == loops
    a = {n: i for i, _m, n in debugfs_ls(ext_image, "/loops/a")}
    assert a[b"back"] == loops and a[b"root"] == 2
    assert {n: i for i, _m, n in debugfs_ls(ext_image, "/hard/sub")}[b"up"] == hard[b"."]
    links = [(m & 0o170000, n) for _i, m, n in debugfs_ls(ext_image, "/links")]
    for name in (b"through", b"inside"):
        assert sorted(k for k, n in links if n == name) == [0o040000, 0o120000]
    dag = {n: i for i, _m, n in debugfs_ls(ext_image, "/dag")}
    assert dag[b"x"] == dag[b"y"]
    for f, blocks in (("/huge/empty", 0), ("/huge/few", 16)):
        st = debugfs(ext_image, f"stat {f}")
        assert f"Size: {HUGE}" in st
        assert int(re.search(r"Blockcount: (\d+)", st).group(1)) <= blocks * 8


def test_safe_name_fits_the_host():
    """NAME_MAX counts bytes: a 255-character name of 3-byte characters is cut."""
    for name in ("\u65e5" * 255, "\u00e9" * 200, "L" * 300, "a" * 254 + "\u65e5", "aux"):
        n = safe_name(name)
        assert n and len(n.encode("utf-8", "surrogateescape")) <= 255, name
        assert name.startswith(n) or n == "_aux"


@needs_e2fs
def test_ext_nothing_outside(ext_out):
    assert_contained(ext_out)
    assert ext_out.rep.written


@needs_e2fs
def test_ext_names(ext_out):
    expect = {
        n.decode("utf-8", "surrogateescape"): ext_name_data(i) for i, n in enumerate(EXT_NAMES)
    }
    expect |= {n.decode(): n for n in PLAIN_NAMES}
    check_names(ext_out, "names", expect)
    d = ext_out.dest / "names"
    case_twins(ext_out, d)
    assert {safe_name("a/b"), safe_name("a_b")} == {"a_b"}
    assert (d / "a_b").exists() and (d / "a_b~1").exists()


@needs_e2fs
def test_ext_symlinks(ext_out):
    check_links(ext_out, "links", LINKS)
    check_through(ext_out, "links")
    assert not (ext_out.dest / "links" / "through" / "evil.txt").is_symlink()


@needs_e2fs
def test_ext_hard_links_loops_and_dag(ext_out):
    check_hard(ext_out)
    check_loops(ext_out)
    check_dag(ext_out)


@needs_e2fs
def test_ext_huge_files(ext_out):
    check_sparse(ext_out, "huge", "empty", HUGE, b"")
    check_sparse(ext_out, "huge", "few", HUGE, b"F" * 5000)
    assert not ext_out.rep.incomplete and not ext_out.rep.damaged


@needs_e2fs
def test_ext_listing_is_bounded(ext_image):
    """files() and iter_entries() take each directory once: no 2**32 rows from the DAG."""
    fs = extmod.open_filesystem(FileSource(ext_image))
    df = fs.files()
    assert len(df) < 400
    assert len(list(fs.iter_entries("/"))) == len(df)
    msgs = " ".join(f["message"] for f in fs.check_rows())
    assert "directory loop" in msgs and "already" in msgs


@needs_e2fs
def test_ext_inline_data_huge(tmp_path):
    """An inline-data file claiming 2 TiB: the bytes in the inode, then a hole."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "small").write_bytes(b"inline bytes")
    img = tmp_path / "inline.ext4"
    run(
        "mke2fs",
        "-q",
        "-t",
        "ext4",
        "-O",
        "inline_data,^metadata_csum",
        "-N",
        "64",
        "-d",
        src,
        img,
        "4M",
    )
    assert "Size of inline data: 60" in debugfs(img, "stat /small")  # it is inline
    debugfs(img, f"sif /small size {HUGE:#x}", write=True)
    fs = extmod.open_filesystem(FileSource(img))
    x, peak = extract_traced(fs, "/", tmp_path)
    assert_contained(x)
    check_sparse(x, ".", "small", HUGE, b"inline bytes")
    assert peak < 8 * MiB, peak


def deep_check(x: Extraction, fs: FileSystem, peak: int) -> None:
    """The host refuses paths past PATH_MAX, the walk stops at MAX_DEPTH, both reported."""
    assert_contained(x)
    whys = [w for _p, w in x.rep.skipped]
    assert any(f"deeper than {MAX_DEPTH}" in w for w in whys)
    assert any("could not write" in w for w in whys)  # ENAMETOOLONG from the host
    assert any("its folder was not extracted" in w for w in whys)
    assert any(f"deeper than {MAX_DEPTH}" in f["message"] for f in fs.findings)
    assert not any(p.endswith("leaf") for p in x.new)
    assert peak < 64 * MiB, peak


@needs_e2fs
def test_ext_deep_tree(tmp_path):
    """4200 nested directories made by debugfs (mke2fs -d cannot copy a tree that deep)."""
    img = tmp_path / "deep.ext4"
    run(
        "mke2fs",
        "-q",
        "-t",
        "ext4",
        "-O",
        "^metadata_csum,^has_journal",
        "-b",
        "1024",
        "-N",
        str(DEEP + 200),
        img,
        "16M",
    )
    (tmp_path / "leaf").write_bytes(b"leaf")
    debugfs(img, *["mkdir d\ncd d"] * DEEP, f"write {tmp_path / 'leaf'} leaf", write=True)
    below = "/" + "/".join(["d"] * 40)
    assert debugfs_ls(img, below)[2][2] == b"d"  # debugfs follows it down
    fs = extmod.open_filesystem(FileSource(img))
    x, peak = extract_traced(fs, "/", tmp_path, deep=True)
    deep_check(x, fs, peak)


def count_reads(monkeypatch, cls, method: str) -> list[int]:
    """Record the length of every ``cls.method(offset, buffer-or-length)`` call."""
    sizes: list[int] = []
    real = getattr(cls, method)

    def counting(self, offset, what, *a, **kw):
        sizes.append(what if isinstance(what, int) else len(what))
        return real(self, offset, what, *a, **kw)

    monkeypatch.setattr(cls, method, counting)
    return sizes


@needs_e2fs
def test_ext_huge_files_bounded(ext_image, tmp_path, monkeypatch):
    """2 TiB in a few reads and one buffer: holes are skipped, not read as zeros."""
    from vdinspect.io.mapped import MappedSource as ExtFile  # what ext file contents are

    reads = count_reads(monkeypatch, ExtFile, "_fill")
    fs = extmod.open_filesystem(FileSource(ext_image))
    x, peak = extract_traced(fs, "/huge", tmp_path)
    assert_contained(x)
    check_sparse(x, ".", "empty", HUGE, b"")
    check_sparse(x, ".", "few", HUGE, b"F" * 5000)
    assert peak < 4 * MiB, peak  # one 1 MiB buffer, not the file
    assert len(reads) < 10 and sum(reads) < 4 * MiB, reads


# --- NTFS ---------------------------------------------------------------------------------

NTFS_NAMES = [
    "..",
    ".",
    "../../escape.txt",
    "/etc/passwd_evil",
    "a\0b.txt",
    "..\\..\\win.txt",
    "a/b",
    "CON",
    "aux.txt",
    "NUL",
    "com1.log",
    "trail. . ",
    "x:stream",
    "L" * 255,
    "\u65e5" * 255,
    "bad\ud800name",
]
NTFS_PLAIN = ["a_b", "Readme.txt", "README.TXT"]
NTFS_LINKS = {  # name: (substitute name, print name, relative, junction?, expected link)
    "abs_sym": ("\\??\\C:\\Windows\\System32", "C:\\Windows\\System32", False, False, None),
    "rel_bs": ("..\\..\\x", "..\\..\\x", True, False, None),
    "rel_up": ("../../x", "../../x", True, False, None),
    "posix_abs": ("/etc/passwd", "/etc/passwd", True, False, None),
    "chain1": ("chain2", "chain2", True, False, "chain2"),
    "chain2": ("chain3", "chain3", True, False, "chain3"),
    "chain3": ("/etc", "/etc", True, False, None),
    "dot": (".", ".", True, False, "."),
    "dotdot_via": ("dot/..", "dot/..", True, False, None),
    "mismatch": ("\\??\\C:\\Windows", "sub/file.txt", False, False, "sub/file.txt"),
    "nul": ("a\0b", "a\0b", True, False, None),
    "empty": ("", "", True, False, None),
    "junction": ("\\??\\C:\\Users", "C:\\Users", False, True, None),
    "junction_up": ("\\??\\C:\\..\\..", "../..", False, True, None),
}


COMP_HEAD = bytes(range(256)) * 256  # one 64 KiB compression unit, stored as is
MID = 12 * MiB  # sparse runs the volume's cluster count allows (16 MiB volume)


def ntfs_name_data(i: int) -> bytes:
    return b"ntfs name %d" % i


@dataclass
class NtfsImage:
    path: Path
    rec: dict[str, int]  # record number of some built paths


def build_ntfs(tmp: Path) -> NtfsImage:
    img = nb.mkntfs(tmp / "hostile.ntfs", 16 * MiB)
    t = nb.Tree(img, 512)
    rec: dict[str, int] = {}
    root = t.ROOT
    names = rec["names"] = t.mkdir(root, "names")
    for i, name in enumerate(NTFS_NAMES):
        t.add_file(names, name, ntfs_name_data(i))
    for name in NTFS_PLAIN:
        t.add_file(names, name, name.encode())
    t.add_file(names, "big.bin", bytes(range(256)) * 40)  # non-resident
    links = rec["links"] = t.mkdir(root, "links")
    sub = t.mkdir(links, "sub")
    t.add_file(sub, "file.txt", b"file")
    for name, (subst, prn, rel, junction, _keep) in NTFS_LINKS.items():
        rp = nb.symlink_reparse(subst, prn, relative=rel, junction=junction)
        rec[f"links/{name}"] = (
            t.mkdir(links, name, reparse=rp) if junction else t.add_file(links, name, reparse=rp)
        )
    t.add_file(sub, "up", reparse=nb.symlink_reparse("..", ".."))
    t.add_file(sub, "up2", reparse=nb.symlink_reparse("../../..", "../../.."))
    through = t.mkdir(links, "through", reparse=nb.symlink_reparse("/tmp", junction=True))
    t.add_file(through, "evil.txt", b"evil")  # inside a junction: never listed
    t.add_file(links, "inside", reparse=nb.symlink_reparse("sub", "sub"))
    inside = t.mkdir(links, "inside")  # the same name again, a real folder
    t.add_file(inside, "f.txt", b"f")
    through2 = t.mkdir(links, "through")  # a folder named like the junction
    t.add_file(through2, "evil.txt", b"evil")
    hard = rec["hard"] = t.mkdir(root, "hard")
    orig = rec["hard/orig.txt"] = t.add_file(hard, "orig.txt", b"orig")
    t.add_name(orig, hard, "../../hl.txt")
    hsub = rec["hard/sub"] = t.mkdir(hard, "sub")
    t.add_file(hsub, "in.txt", b"in")
    t.link(hard, "sublink", hsub)
    t.link(hsub, "up", hard)
    loops = rec["loops"] = t.mkdir(root, "loops")
    t.link(loops, "self", loops)
    a = rec["loops/a"] = t.mkdir(loops, "a")
    t.add_file(a, "in_a.txt", b"a")
    t.link(a, "back", loops)
    t.link(a, "root", root)
    d = rec["dag"] = t.mkdir(root, "dag")
    for _ in range(DAG_LEVELS):
        x = t.mkdir(d, "x")
        t.add_name(x, d, "y")  # a second $FILE_NAME: the MFT scan sees both names too
        d = x
    t.add_file(d, "leaf.txt", b"leaf")
    huge = rec["huge"] = t.mkdir(root, "huge")
    rec["huge/huge.bin"] = t.add_file(huge, "huge.bin", b"H" * 4096, sparse_to=HUGE)
    rec["huge/short.bin"] = t.add_file(huge, "short.bin", b"S" * 4096, size=HUGE)
    rec["huge/comp.bin"] = t.add_file(huge, "comp.bin", COMP_HEAD, sparse_to=HUGE, compressed=True)
    t.add_file(huge, "mid.bin", b"M" * 4096, sparse_to=MID, tail=b"T" * 4096)
    t.add_file(huge, "comp_mid.bin", COMP_HEAD, sparse_to=MID, compressed=True)
    t.save()
    return NtfsImage(img, rec)


@pytest.fixture(scope="module")
def ntfs_image(tmp_path_factory) -> NtfsImage:
    if not have("mkntfs"):
        pytest.skip("needs mkntfs")
    return build_ntfs(tmp_path_factory.mktemp("ntfs_hostile"))


@pytest.fixture(scope="module", params=[True, False], ids=["strict", "salvage"])
def ntfs_out(ntfs_image, tmp_path_factory, request) -> Extraction:
    tmp = tmp_path_factory.mktemp("ntfs_out")
    digest = sha256_file(ntfs_image.path)
    fs = ntfsmod.open_filesystem(FileSource(ntfs_image.path), strict=request.param)
    x = extract(fs, "/", tmp)
    assert sha256_file(ntfs_image.path) == digest
    return x


def fls_dir(img: Path, rec: int) -> list[tuple[str, str]]:
    """(address, name) of one directory's entries, from ``fls -p img <record>``."""
    return [(r["addr"], r["path"]) for r in fls_lines(run("fls", img, rec))]


@needs_ntfs
def test_ntfs_image_is_as_built(ntfs_image):
    """ntfsls and fls list the hostile names (both cut a name at NUL); fls shows the
    hard link, the loops and the double names; ntfsinfo shows the 2 TiB streams."""
    img, rec = ntfs_image.path, ntfs_image.rec
    bad = "bad\ud800name"  # a lone surrogate: each tool shows its own replacement
    built = Counter(n.split("\0")[0] for n in NTFS_NAMES + NTFS_PLAIN + ["big.bin"] if n != bad)
    ls = Counter(run("ntfsls", "-a", "-p", "/names", img).splitlines()[1:])  # after its "."
    odd = [n for n in ls if n.startswith("bad") and n.endswith("name")]
    assert len(odd) == 1 and ls - Counter(odd) == built
    fls = {n for _a, n in fls_dir(img, rec["names"])}
    assert set(built) - {"\u65e5" * 255} <= fls  # fls cuts that one in two
    hard = fls_dir(img, rec["hard"])
    addr = {n: a.split("-")[0] for a, n in hard}
    assert addr["../../hl.txt"] == addr["orig.txt"] == str(rec["hard/orig.txt"])
    assert addr["sublink"] == addr["sub"] == str(rec["hard/sub"])
    loops = {n: a.split("-")[0] for a, n in fls_dir(img, rec["loops"])}
    assert loops["self"] == str(rec["loops"])
    a = {n: a.split("-")[0] for a, n in fls_dir(img, rec["loops/a"])}
    assert a["back"] == str(rec["loops"]) and a["root"] == "5"
    assert Counter(n for _a, n in fls_dir(img, rec["links"]))["through"] == 2
    dag = {n: a.split("-")[0] for a, n in fls_dir(img, rec["dag"])}
    assert dag["x"] == dag["y"]
    for name in ("huge.bin", "short.bin", "comp.bin"):
        info = run("ntfsinfo", "-i", rec[f"huge/{name}"], img)
        assert f"Data size:\t\t {HUGE} " in info, name
    info = run("ntfsinfo", "-i", rec["links/abs_sym"], img)
    assert "$REPARSE_POINT" in info


@needs_ntfs
def test_ntfs_nothing_outside(ntfs_out):
    assert_contained(ntfs_out)
    assert ntfs_out.rep.written


@needs_ntfs
def test_ntfs_names(ntfs_out):
    expect = {
        n.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace"): ntfs_name_data(i)
        for i, n in enumerate(NTFS_NAMES)
    }
    expect |= {n: n.encode() for n in NTFS_PLAIN}
    check_names(ntfs_out, "names", expect)
    d = ntfs_out.dest / "names"
    assert (d / "big.bin").read_bytes() == bytes(range(256)) * 40
    assert (d / "a_b").exists() and (d / "a_b~1").exists()
    case_twins(ntfs_out, d)


@needs_ntfs
def test_ntfs_reparse_points(ntfs_out):
    expect = {n: (v[4], v[4] is not None) for n, v in NTFS_LINKS.items()}
    expect["sub/up"] = ("..", True)
    expect["sub/up2"] = ("../../..", False)
    check_links(ntfs_out, "links", expect)
    check_through(ntfs_out, "links")
    why = skipped(ntfs_out)
    assert "points outside" in why["/links/junction"]
    assert "points outside" in why["/links/through"]


@needs_ntfs
def test_ntfs_hard_links_loops_and_dag(ntfs_out):
    check_hard(ntfs_out)
    check_loops(ntfs_out)
    check_dag(ntfs_out)


@needs_ntfs
def test_ntfs_huge_streams(ntfs_out):
    x = ntfs_out
    why = skipped(x)
    check_sparse(x, "huge", "mid.bin", MID, b"M" * 4096, b"T" * 4096)
    check_sparse(x, "huge", "comp_mid.bin", MID, COMP_HEAD)
    # a sparse run longer than the volume is valid (a sparse file may be larger than its
    # volume; The Sleuth Kit refuses it, ntfsinfo reads it): 2 TiB of holes in both modes
    check_sparse(x, "huge", "huge.bin", HUGE, b"H" * 4096)
    check_sparse(x, "huge", "comp.bin", HUGE, COMP_HEAD)
    damaged = {p: r for p, _h, r in x.rep.damaged}
    assert "/huge/huge.bin" not in damaged and "/huge/comp.bin" not in damaged
    if x.fs.strict:  # a size past what the runlist covers is unreadable: skipped
        assert "larger than" in why["/huge/short.bin"]
        assert not (x.dest / "huge" / "short.bin").exists()
    else:  # salvage: what can be read, and the rest reported
        assert (x.dest / "huge" / "short.bin").read_bytes() == b"S" * 4096
        assert "4096 of" in dict(x.rep.incomplete)["/huge/short.bin"]


@needs_ntfs
def test_ntfs_listing_is_bounded(ntfs_image):
    fs = ntfsmod.open_filesystem(FileSource(ntfs_image.path))
    assert len(fs.files()) < 400
    rows = list(FileSystem.iter_entries(fs, "/"))  # the index walk extraction uses
    assert len(rows) < 400
    msgs = " ".join(f["message"] for f in fs.check_rows())
    assert "directory loop" in msgs and "already" in msgs


@needs_ntfs
def test_ntfs_huge_streams_bounded(ntfs_image, tmp_path, monkeypatch):
    """Salvage mode writes the 2 TiB streams: a few reads, one buffer, holes skipped."""
    from vdinspect.filesystems.ntfs.runlist import RunSource
    from vdinspect.filesystems.ntfs.stream import CompressedSource

    reads = count_reads(monkeypatch, RunSource, "_fill")
    reads += count_reads(monkeypatch, CompressedSource, "_read")
    fs = ntfsmod.open_filesystem(FileSource(ntfs_image.path), strict=False)
    list(fs.iter_entries("/huge"))  # the MFT scan (bounded by the MFT) before measuring
    x, peak = extract_traced(fs, "/huge", tmp_path)
    assert_contained(x)
    check_sparse(x, ".", "huge.bin", HUGE, b"H" * 4096)
    check_sparse(x, ".", "comp.bin", HUGE, COMP_HEAD)
    check_sparse(x, ".", "mid.bin", MID, b"M" * 4096, b"T" * 4096)
    assert peak < 8 * MiB, peak  # a few 1 MiB buffers and decoded units, not the file
    assert len(reads) < 20 and sum(reads) < 8 * MiB, reads


@needs_ntfs
def test_ntfs_strict_open_of_short_stream(ntfs_image):
    fs = ntfsmod.open_filesystem(FileSource(ntfs_image.path))
    with pytest.raises(CorruptImage, match="larger than"):
        fs.read("/huge/short.bin")


@needs_ntfs
def test_ntfs_deep_tree(tmp_path):
    """4200 directories, one inside the other, each record written by hand."""
    img = nb.mkntfs(tmp_path / "deep.ntfs", 24 * MiB)
    t = nb.Tree(img, DEEP + 64)
    recs = [t.mkdir(t.ROOT, "deep")]
    for _ in range(DEEP):
        recs.append(t.mkdir(recs[-1], "d"))
    t.add_file(recs[-1], "leaf", b"leaf")
    t.save()
    for k in (0, DEEP // 2, DEEP - 1):  # TSK reads each level's index: the next level
        assert fls_dir(img, recs[k]) == [(f"{recs[k + 1]}-144-3", "d")]
    fs = ntfsmod.open_filesystem(FileSource(img))
    x, peak = extract_traced(fs, "/", tmp_path, deep=True)
    deep_check(x, fs, peak)


@needs_e2fs
def test_ext_hard_links_are_linked_not_copied(tmp_path):
    """A file with three names (mke2fs -d keeps hard links: debugfs shows one inode with
    three links) is written once and linked twice on the host: a thousand names for one
    big file cost one copy. A different file of the same size stays separate."""
    from vdinspect.filesystems.ext import open_filesystem
    from vdinspect.io import FileSource

    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    data = os.urandom(300_000)
    (src / "a" / "one.bin").write_bytes(data)
    os.link(src / "a" / "one.bin", src / "b" / "two.bin")
    os.link(src / "a" / "one.bin", src / "three.bin")
    (src / "other.bin").write_bytes(os.urandom(300_000))
    img = tmp_path / "hl.ext4"
    with open(img, "wb") as f:
        f.truncate(8 * MiB)
    run("mke2fs", "-q", "-F", "-t", "ext4", "-d", str(src), str(img))
    stat = run("debugfs", "-R", "stat /a/one.bin", str(img))
    assert re.search(r"Links: 3\b", stat), stat
    fs = open_filesystem(FileSource(img))
    x = extract(fs, "/", tmp_path)
    assert_contained(x)
    hosts = [x.dest / "a" / "one.bin", x.dest / "b" / "two.bin", x.dest / "three.bin"]
    assert {h.read_bytes() for h in hosts} == {data}
    assert len({os.stat(h).st_ino for h in hosts}) == 1 and os.stat(hosts[0]).st_nlink == 3
    assert os.stat(x.dest / "other.bin").st_ino != os.stat(hosts[0]).st_ino
    assert len(x.rep.linked) == 2 and "2 hard links" in x.rep.summary()
