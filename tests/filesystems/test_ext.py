"""ext2/3/4: images made by mke2fs -d and changed with debugfs, read back and compared with
The Sleuth Kit (fls, icat, istat) and e2fsprogs (debugfs ls/stat/blocks/ea_get/logdump,
e2fsck), never with vdinspect's own output. Variants no tool writes (loops, damaged
fields) are patched from the documented structures in tests/ext_builder.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import lzma
import os
import re
import socket
import stat
import subprocess
from pathlib import Path

import pandas as pd
import pytest

import vdinspect
from tests import ext_builder as eb
from tests import tools
from tests import volume_builder as vb
from tests.conftest import SHARED_SAMPLES, have
from vdinspect.errors import (
    CorruptImage,
    EncryptedImage,
    NotRecognized,
    UnsupportedFeature,
)
from vdinspect.filesystems.base import FileSystem
from vdinspect.filesystems.ext import open_filesystem
from vdinspect.io import FileSource, MemorySource

needs_e2fs = pytest.mark.skipif(not have("mke2fs", "debugfs"), reason="needs e2fsprogs")
needs_tsk = pytest.mark.skipif(not have("fls", "icat", "istat"), reason="needs sleuthkit")
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
MiB = 1 << 20


def run(*cmd, **kw):
    """The shared :func:`tests.tools.run` with this module's defaults (errors="replace")."""
    return tools.run(*cmd, **{'errors': "replace", **kw})


def debugfs(img, *commands: str, write: bool = False) -> str:
    args = ["debugfs"] + (["-w"] if write else []) + ["-f", "-", str(img)]
    return run(*args, input="\n".join(commands) + "\n")


# --- the source tree mke2fs copies ---------------------------------------------------

SPARSE_SIZE = 6 << 30
TAIL_AT = (5 << 30) + 123
DEEP = 40


def build_tree(root: Path, huge: bool = True) -> None:
    """Files of many shapes; mke2fs -d copies them, so they are the content oracle."""
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "tiny").write_bytes(b"tiny\n")
    (root / "empty").write_bytes(b"")
    (root / "inl").mkdir()
    (root / "inl" / "small40").write_bytes(b"x" * 40)
    (root / "inl" / "small100").write_bytes(b"y" * 100)
    (root / "inl" / "small300").write_bytes(b"z" * 300)
    (root / "onemeg").write_bytes(hashlib.sha256(b"seed").digest() * (MiB // 32))
    with open(root / "holes", "wb") as f:
        f.write(b"A" * 5000)
        f.seek(MiB)
        f.write(b"B" * 5000)
        f.seek(3 * MiB)
        f.write(b"C")
    if huge:
        with open(root / "huge_sparse", "wb") as f:
            f.truncate(SPARSE_SIZE)
    with open(root / "huge_tail", "wb") as f:
        f.seek(TAIL_AT)
        f.write(b"tail!")
    with open(root / "fragmented", "wb") as f:  # 32 extents: an extent tree of depth 1
        for i in range(32):
            f.seek(i * 65536)
            f.write(bytes([i + 1]) * 8192)
    with open(root / "frag400", "wb") as f:  # 400 extents with 1 KiB blocks: depth 2
        for i in range(400):
            f.seek(i * 2048)
            f.write(bytes([i % 251 + 1]) * 1024)
    deep = root / "deep" / "/".join(f"d{i}" for i in range(DEEP))
    deep.mkdir(parents=True)
    (deep / "leaf").write_bytes(b"leaf")
    os.symlink("tiny", root / "fast")
    os.symlink("/" + "s" * 200, root / "slow")
    os.link(root / "tiny", root / "tinylink")
    os.mkfifo(root / "fifo")
    (root / "ünïcødé名前").write_bytes(b"unicode")
    for i in range(150):
        (root / "dir" / f"f{i:03d}").write_bytes(str(i).encode() * i)
    (root / "owned").write_bytes(b"owned")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(root / "sock"))
    sock.close()
    if ROOT:
        os.chown(root / "owned", 100000, 200000)
        os.mknod(root / "chr", 0o20644, os.makedev(1, 3))


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ext-tree") / "src"
    root.mkdir()
    build_tree(root)
    return root


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory) -> Path:
    """The tree without the 6 GiB hole-only file (which The Sleuth Kit reads for seconds
    when inline_data makes it an inline file)."""
    root = tmp_path_factory.mktemp("ext-tree-small") / "src"
    root.mkdir()
    build_tree(root, huge=False)
    return root


VARIANTS = {
    "ext2-1k-128": ["-t", "ext2", "-b", "1024", "-I", "128"],
    "ext3-1k": ["-t", "ext3", "-b", "1024"],
    "ext3-4k-256": ["-t", "ext3", "-b", "4096", "-I", "256"],
    "ext4-4k": ["-t", "ext4", "-b", "4096"],
    "ext4-1k-128": ["-t", "ext4", "-b", "1024", "-I", "128"],
    "ext4-noextent": ["-t", "ext4", "-O", "^extent,^64bit", "-b", "4096"],
    "ext4-inline": ["-t", "ext4", "-O", "inline_data", "-b", "4096"],
    "ext4-bigalloc": ["-t", "ext4", "-O", "bigalloc", "-C", "16384", "-b", "4096"],
    "ext4-metabg": ["-t", "ext4", "-O", "meta_bg,^resize_inode", "-b", "1024"],
    "ext4-nocsum": ["-t", "ext4", "-O", "^metadata_csum,uninit_bg", "-b", "4096"],
    "ext4-casefold": ["-t", "ext4", "-O", "casefold", "-b", "4096"],
    "ext4-2k-512": ["-t", "ext4", "-b", "2048", "-I", "512"],
    "ext4-sparse2": ["-t", "ext4", "-O", "sparse_super2", "-b", "1024"],
    "ext4-64k": ["-t", "ext4", "-b", "65536"],  # rec_len of 65536 is stored as 0
}
# The Sleuth Kit 4.11 does not open bigalloc volumes, and spends tens of seconds on an
# inline-data inode with a 6 GiB size: those listings are compared with debugfs instead
TSK_CANNOT = {"ext4-bigalloc", "ext4-inline"}


def mkfs(
    path: Path, opts: list[str], src: Path | None, size: str = "24M", label: str = "vdtest"
) -> Path:
    args = ["mke2fs", "-q", "-F", "-L", label, *opts]
    if src is not None:
        args += ["-d", str(src)]
    run(*args, str(path), size)
    return path


@pytest.fixture(scope="module")
def images(tree, tmp_path_factory):
    """One image per variant, made once (tests copy before changing one)."""
    if not have("mke2fs"):
        pytest.skip("needs mke2fs")
    out = {}
    base = tmp_path_factory.mktemp("ext-images")
    for name, opts in VARIANTS.items():
        out[name] = mkfs(base / f"{name}.img", opts, tree)
    return out


# --- oracles ----------------------------------------------------------------------------

def fls(img, offset: int | None = None) -> set[tuple[str, int, bool]]:
    """(path, inode, deleted) of every line of ``fls -r -p``; $OrphanFiles left out."""
    args = ["fls", "-r", "-p"] + (["-o", str(offset)] if offset else []) + [str(img)]
    return {("/" + r["path"], r["inode"], r["deleted"])
            for r in tools.fls_lines(run(*args), strict=True) if r["path"] != "$OrphanFiles"}


def ours(fs, *, drop_virtual: bool = True) -> set[tuple[str, int, bool]]:
    df = fs.files()
    rows = set()
    for r in df.itertuples():
        if drop_virtual and r.path == "/$OrphanFiles":
            continue
        rows.add((r.path, 0 if pd.isna(r.inode) else int(r.inode), bool(r.deleted)))
    return rows


def debugfs_tree(img) -> set[tuple[str, int]]:
    """(path, inode) of every live entry, from ``debugfs ls -p`` directory by directory."""
    out = set()
    todo = ["/"]
    while todo:
        d = todo.pop()
        for line in debugfs(img, f"ls -p {d}").splitlines():
            parts = line.split("/")
            if len(parts) < 7 or not re.match(r"/\d+/", line):
                continue
            ino, mode, name = int(parts[1]), int(parts[2], 8), parts[5]
            if name in (".", "..") or ino == 0:
                continue
            path = d.rstrip("/") + "/" + name
            out.add((path, ino))
            if stat.S_ISDIR(mode):
                todo.append(path)
    return out


def debugfs_stats(img, paths: list[str]) -> dict[str, dict]:
    """Fields of ``debugfs stat`` for many paths in one run."""
    text = debugfs(img, *[f"stat {p}" for p in paths])
    out = {}
    for chunk in text.split("debugfs: stat ")[1:]:
        path, _, body = chunk.partition("\n")
        d: dict = {}
        m = re.search(r"Inode: (\d+)\s+Type: (.+?)\s+Mode:\s+(\d+)\s+Flags: (0x[0-9a-f]+)", body)
        d["inode"], d["type"], d["perm"], d["flags"] = (
            int(m.group(1)),
            m.group(2),
            int(m.group(3), 8),
            int(m.group(4), 16),
        )
        m = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+).*Size: (\d+)", body)
        d["uid"], d["gid"], d["size"] = int(m.group(1)), int(m.group(2)), int(m.group(3))
        d["links"] = int(re.search(r"Links: (\d+)", body).group(1))
        for t in ("ctime", "atime", "mtime", "crtime"):
            m = re.search(rf"^\s*{t}: 0x([0-9a-f]+)(?::([0-9a-f]+))? -- (.*)$", body, re.M)
            if m:
                d[t] = (
                    int(m.group(1), 16),
                    None if m.group(2) is None else int(m.group(2), 16),
                    m.group(3).strip(),
                )
        out[path.strip()] = d
    return out


def inode_number(img, path: str) -> int:
    """The inode of ``path`` as debugfs sees it (used before an image is patched)."""
    return int(re.search(r"Inode: (\d+)", debugfs(img, f"stat {path}")).group(1))


def source_files(tree: Path):
    for dirpath, _dirs, files in os.walk(tree):
        for f in files:
            p = Path(dirpath) / f
            yield "/" + p.relative_to(tree).as_posix(), p


# --- listings and contents of every variant -----------------------------------------------


@needs_e2fs
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_listing_matches_fls(images, variant):
    img = images[variant]
    fs = open_filesystem(FileSource(img))
    assert fs.fstype == variant.split("-")[0]
    mine = ours(fs)
    if variant in TSK_CANNOT or not have("fls"):
        assert {(p, i) for p, i, _d in mine} == debugfs_tree(img)
    else:
        assert mine == fls(img)
    assert fs.check_rows() == []


@needs_e2fs
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_content_matches_source(images, tree, variant):
    fs = open_filesystem(FileSource(images[variant]))
    for path, host in source_files(tree):
        if host.is_symlink():
            assert fs.readlink(path) == os.readlink(host)
            continue
        if not host.is_file():
            continue
        size = host.stat().st_size
        with fs.open(path) as f:
            assert f.size == size, path
            if size > 64 * MiB:  # sparse giants: compare probes, never read it all
                with open(host, "rb") as h:
                    for off in (0, TAIL_AT - 7, TAIL_AT, size - 5):
                        h.seek(off)
                        f.seek(off)
                        assert f.read(64) == h.read(64), (path, off)
            else:
                assert f.read() == host.read_bytes(), path
    assert fs.stat("/tiny").links == 2 and fs.stat("/tinylink").inode == fs.stat("/tiny").inode


@needs_e2fs
@needs_tsk
@pytest.mark.parametrize("variant", sorted(set(VARIANTS) - TSK_CANNOT))
def test_content_matches_icat(images, variant):
    img = images[variant]
    fs = open_filesystem(FileSource(img))
    for path in ("/onemeg", "/holes", "/inl/small300", "/dir/f149", "/slow"):
        e = fs.stat(path)
        assert fs.read(path) == run("icat", img, e.inode, binary=True), (variant, path)


@needs_e2fs
@pytest.mark.parametrize(
    "variant",
    ["ext2-1k-128", "ext3-4k-256", "ext4-4k", "ext4-noextent", "ext4-bigalloc", "ext4-metabg"],
)
def test_block_mapping_matches_debugfs_blocks(images, variant):
    """Data and mapping blocks (indirect, extent nodes) equal debugfs 'blocks'."""
    img = images[variant]
    fs = open_filesystem(FileSource(img))
    for path in ("/onemeg", "/holes", "/huge_tail", "/dir", "/fragmented", "/frag400"):
        rec = fs.stat(path).raw
        bmap = fs.block_map(rec)
        mine = {p + k for p, c in bmap.data_runs() for k in range(c)} | set(bmap.meta)
        theirs = {int(x) for x in debugfs(img, f"blocks {path}").split() if x.isdigit()}
        assert mine == theirs, (variant, path)
        assert fs.extents(path)[0]["state"] == "data"


@needs_e2fs
@pytest.mark.parametrize("variant", ["ext2-1k-128", "ext4-4k", "ext4-2k-512", "ext4-inline"])
def test_metadata_matches_debugfs_stat(images, variant):
    img = images[variant]
    fs = open_filesystem(FileSource(img))
    df = fs.files(deleted=False).set_index("path")
    paths = [p for p in df.index if not p.startswith("/deep/")][:60]
    stats = debugfs_stats(img, paths)
    assert len(stats) == len(paths)
    for p, d in stats.items():
        row = df.loc[p]
        assert row["inode"] == d["inode"], p
        assert row["mode"] & 0o7777 == d["perm"], p
        assert (row["uid"], row["gid"], row["size"], row["links"]) == (
            d["uid"],
            d["gid"],
            d["size"],
            d["links"],
        ), p
        assert row["flags"] == d["flags"], p
        for col, t in (("mtime_ns", "mtime"), ("atime_ns", "atime"), ("ctime_ns", "ctime")):
            sec, extra, text = d[t]
            want = dt.datetime.strptime(text, "%a %b %d %H:%M:%S %Y").replace(tzinfo=dt.UTC)
            assert row[col] // 10**9 == int(want.timestamp()), (p, t)
            if extra is not None:
                assert row[col] % 10**9 == extra >> 2
        assert ("crtime" in d) == (not pd.isna(row["crtime_ns"]))
    kinds = df["kind"].to_dict()
    assert kinds["/fifo"] == "other" and kinds["/fast"] == "symlink" and kinds["/dir"] == "dir"
    assert kinds["/sock"] == "other" and stat.S_ISSOCK(int(df.loc["/sock", "mode"]))
    if ROOT:
        assert (df.loc["/owned", "uid"], df.loc["/owned", "gid"]) == (100000, 200000)
        assert kinds["/chr"] == "other"


@needs_e2fs
def test_times_past_2038_and_nanoseconds(images, tmp_path):
    img = tmp_path / "t.img"
    tools.sparse_copy(images["ext4-4k"], img)
    debugfs(
        img,
        "sif /tiny mtime 21000301123456",
        "sif /tiny mtime_extra 0x75bcd151",
        "sif /tiny atime 19500101000000",
        "sif /tiny crtime 20400101000000",
        "sif /tiny crtime_extra 0x6",
        write=True,
    )
    d = debugfs_stats(img, ["/tiny"])["/tiny"]
    fs = open_filesystem(FileSource(img))
    e = fs.stat("/tiny")
    for attr, key in (("modified", "mtime"), ("accessed", "atime"), ("created", "crtime")):
        want = dt.datetime.strptime(d[key][2], "%a %b %d %H:%M:%S %Y").replace(tzinfo=dt.UTC)
        assert getattr(e, attr).replace(microsecond=0) == want, key
    assert e.modified.year == 2100 and e.accessed.year == 1950
    assert e.extra["mtime_ns"] % 10**9 == 0x75BCD151 >> 2
    assert e.created.microsecond == (0x6 >> 2) // 1000
    row = fs.files().set_index("path").loc["/tiny"]
    assert row["modified"] == pd.Timestamp(e.modified)


@needs_e2fs
def test_fast_files_equals_generic_walk(images, tmp_path):
    """The column-wise files() gives the same rows as the base class's generic walk."""
    img = tmp_path / "d.img"
    tools.sparse_copy(images["ext4-1k-128"], img)
    debugfs(img, "rm /dir/f001", "rm /tiny", "unlink /dir/f002", write=True)
    fs = open_filesystem(FileSource(img))
    fast = fs.files()
    generic = FileSystem.files(open_filesystem(FileSource(img)))
    cols = list(generic.columns[:18])
    pd.testing.assert_frame_equal(fast[cols], generic[cols])
    assert str(fast["mtime_ns"].dtype) == "Int64" and fast["mtime_ns"].notna().sum() > 100


@needs_e2fs
def test_extract_tree(images, tree, tmp_path):
    fs = open_filesystem(FileSource(images["ext4-4k"]))
    report = fs.extract("/dir", tmp_path / "out")
    assert len(report.written) == 150
    for i in (0, 7, 149):
        assert (tmp_path / "out" / f"f{i:03d}").read_bytes() == (
            tree / "dir" / f"f{i:03d}"
        ).read_bytes()


# --- htree directories ------------------------------------------------------------------------


@needs_e2fs
@needs_tsk
def test_htree_two_levels(tmp_path):
    src = tmp_path / "src"
    (src / "big").mkdir(parents=True)
    names = [f"{i:05d}_" + "n" * 240 for i in range(500)]  # 3 per 1 KiB leaf: > 124 leaves
    for n in names:
        (src / "big" / n).write_bytes(b"")
    img = mkfs(tmp_path / "h.img", ["-t", "ext4", "-b", "1024", "-N", "1000"], src, "8M")
    subprocess.run(["e2fsck", "-fyD", str(img)], capture_output=True)  # builds the htree
    assert "Indirect levels: 1" in debugfs(img, "htree_dump /big")
    debugfs(img, f"rm /big/{names[5]}", f"rm /big/{names[499]}", write=True)
    fs = open_filesystem(FileSource(img))
    mine = ours(fs)
    theirs = fls(img)
    # The Sleuth Kit may list fake names read from htree interior nodes; vdinspect skips
    # those blocks, so everything it lists is also in fls and nothing it lacks is real
    assert mine <= theirs
    assert all(p[5:] not in names for p, _i, _d in theirs - mine)
    assert {p for p, _i, d in mine if d and p.startswith("/big/")} == {
        f"/big/{names[5]}",
        f"/big/{names[499]}",
    }
    assert fs.check_rows() == []


# --- extended attributes ------------------------------------------------------------------


@needs_e2fs
@pytest.mark.parametrize("variant", ["ext4-4k", "ext4-1k-128", "ext3-4k-256"])
def test_xattrs_match_debugfs(images, tmp_path, variant):
    img = tmp_path / "x.img"
    tools.sparse_copy(images[variant], img)
    big = tmp_path / "v.bin"
    big.write_bytes(bytes(range(256)) * 3)
    debugfs(
        img,
        "ea_set /tiny user.small hello",
        "ea_set /tiny trusted.t2 world",
        f"ea_set -f {big} /tiny user.big",
        "ea_set /dir security.selinux sys_u:obj_r:t",
        write=True,
    )
    fs = open_filesystem(FileSource(img))
    got = fs.xattrs("/tiny")
    listed = re.findall(r"^\s+(\S+) \((\d+)\)", debugfs(img, "ea_list /tiny"), re.M)
    assert sorted(got) == sorted(n for n, _ in listed)
    for name, size in listed:
        out = tmp_path / f"{name}.val"
        debugfs(img, f"ea_get -f {out} /tiny {name}")
        assert got[name] == out.read_bytes() and len(got[name]) == int(size)
    assert fs.xattrs("/dir") == {"security.selinux": b"sys_u:obj_r:t"}
    assert fs.xattrs("/onemeg") == {}


@needs_e2fs
def test_xattr_value_in_ea_inode(tree, tmp_path):
    """An xattr whose value lives in its own inode (ea_inode), patched from the spec."""
    img = mkfs(
        tmp_path / "ea.img",
        ["-t", "ext4", "-O", "ea_inode,^metadata_csum", "-b", "4096", "-I", "256"],
        tree,
    )
    owner = inode_number(img, "/tiny")
    value_ino = inode_number(img, "/dir/f149")
    debugfs(img, "unlink /dir/f149", write=True)
    eb.add_ea_inode_xattr(img, owner, value_ino, b"bigvalue", 400)
    fs = open_filesystem(FileSource(img))
    assert fs.xattrs("/tiny") == {"user.bigvalue": (tree / "dir" / "f149").read_bytes()[:400]}
    assert all(r.name != f"OrphanFile-{value_ino}" for r in fs.orphans())


# --- deleted files and orphans ------------------------------------------------------------


DELETE_SCRIPT = [
    "rm /dir/f010",
    "rm /dir/f011",
    "rm /onemeg",
    "kill_file /dir/f020",
    "unlink /dir/f030",
    "rm /deep/d0/d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11/d12/d13/d14/d15/d16/"
    "d17/d18/d19/d20/d21/d22/d23/d24/d25/d26/d27/d28/d29/d30/d31/d32/d33/d34/d35/d36/d37/d38"
    "/d39/leaf",
    "rm /inl/small300",
    "rm /holes",
]


@needs_e2fs
@needs_tsk
@pytest.mark.parametrize("variant", ["ext2-1k-128", "ext3-1k", "ext4-4k", "ext4-inline"])
def test_deleted_entries_match_fls_and_icat(images, small_tree, tmp_path, variant):
    tree = small_tree
    img = mkfs(tmp_path / "del.img", VARIANTS[variant], tree)
    debugfs(img, *DELETE_SCRIPT, write=True)
    fs = open_filesystem(FileSource(img))
    mine = ours(fs)
    assert mine == fls(img)
    df = fs.files().set_index("path")
    assert df.loc["/dir/f010", "deleted"] and df.loc["/onemeg", "deleted"]
    assert not df.loc["/dir/f020", "deleted"]  # kill_file leaves the name
    assert "not in use" in df.loc["/dir/f020", "note"]
    assert not df.loc["/dir/f030", "recoverable"]  # unlinked only: the inode is in use
    # debugfs frees blocks but keeps the block map, so the content is still there
    for path in ("/dir/f010", "/onemeg", "/holes", "/inl/small300"):
        row = df.loc[path]
        assert row["deleted"] and row["recoverable"], (path, row["note"])
        want = run("icat", img, int(row["inode"]), binary=True)
        assert fs.read(fs.stat(path)) == want == (tree / path[1:]).read_bytes()
    assert fs.lookup("/onemeg", deleted=True).deleted
    with pytest.raises(vdinspect.errors.NotFound):
        fs.lookup("/onemeg")


@needs_e2fs
def test_kernel_style_deletion_is_not_recoverable(images, tmp_path):
    """A kernel deletion zeroes i_size and clears the extent tree: say so, honestly."""
    img = tmp_path / "k.img"
    tools.sparse_copy(images["ext4-4k"], img)
    ino = inode_number(img, "/dir/f100")
    # what ext4_evict_inode leaves: size 0, an empty extent root (magic, 0 entries, max 4)
    debugfs(
        img,
        "rm /dir/f100",
        f"sif <{ino}> size 0",
        f"sif <{ino}> block[0] 0x0000f30a",
        f"sif <{ino}> block[1] 4",
        f"sif <{ino}> block[2] 0",
        f"sif <{ino}> block[3] 0",
        f"sif <{ino}> block[4] 0",
        f"sif <{ino}> block[5] 0",
        write=True,
    )
    fs = open_filesystem(FileSource(img))
    e = fs.stat("/dir/f100")
    assert e.deleted and not e.recoverable and e.inode == ino
    assert "size is 0" in e.note
    assert fs.read(e) == b""
    img2 = tmp_path / "k2.img"
    tools.sparse_copy(img, img2)
    debugfs(img2, f"sif <{ino}> size 100", write=True)
    e = open_filesystem(FileSource(img2)).stat("/dir/f100")
    assert not e.recoverable and "extent tree cleared" in e.note


@needs_e2fs
@needs_tsk
def test_orphans_like_tsk(images, tmp_path):
    img = tmp_path / "o.img"
    tools.sparse_copy(images["ext4-1k-128"], img)
    debugfs(img, "rm /dir/f003", "rm /dir/f004", "zap_block -f /dir -p 0 0", write=True)
    fs = open_filesystem(FileSource(img), strict=False)
    mine = ours(fs)
    theirs = fls(img)
    assert {r for r in theirs if r[0].startswith("/$OrphanFiles/")}
    # The Sleuth Kit lists unallocated unnamed inodes; vdinspect also lists allocated ones
    extra = mine - theirs
    assert all(p.startswith("/$OrphanFiles/OrphanFile-") and not d for p, _i, d in extra)
    assert theirs <= mine
    allocated = {i for _p, i, _d in extra}
    for i in list(allocated)[:5]:
        assert "Allocated" in run("istat", img, i).splitlines()[1]
    orphan = fs.stat(sorted(p for p, _i, _d in theirs if "OrphanFile-" in p)[0])
    assert fs.read(orphan) == run("icat", img, orphan.inode, binary=True)
    assert any("directory inode" in f["structure"] for f in fs.check_rows())
    # live views do not show the virtual directory
    assert "/$OrphanFiles" not in set(fs.files(deleted=False)["path"])


@needs_e2fs
@needs_tsk
def test_deleted_directory_contents_listed(images, tmp_path):
    img = tmp_path / "dd.img"
    tools.sparse_copy(images["ext2-1k-128"], img)
    debugfs(img, "rm /dir/sub/../f005", "rmdir /dir/sub", write=True)
    fs = open_filesystem(FileSource(img))
    assert ours(fs) == fls(img)


# --- journal ----------------------------------------------------------------------------------


def _journal_blocks(img) -> set[int]:
    return {int(x) for x in debugfs(img, "blocks <8>").split() if x.isdigit()}


def _journal_diff(a: Path, b: Path, bs: int, revoked: int) -> None:
    """Log the blocks where ``b`` differs from ``a`` into ``a``'s journal (debugfs jw), in
    two transactions; before them, one that logs junk for block ``revoked`` and a revoke
    record that cancels it."""
    da, db = a.read_bytes(), b.read_bytes()
    skip = _journal_blocks(a)
    diff = [
        i
        for i in range(len(da) // bs)
        if da[i * bs : (i + 1) * bs] != db[i * bs : (i + 1) * bs] and i not in skip
    ]
    half = len(diff) // 2
    first, second = diff[:half], diff[half:]
    first_data = a.parent / "j1.bin"
    first_data.write_bytes(b"".join(db[i * bs : (i + 1) * bs] for i in first))
    second_data = a.parent / "j2.bin"
    second_data.write_bytes(b"".join(db[i * bs : (i + 1) * bs] for i in second))
    junk = a.parent / "junk.bin"
    junk.write_bytes(b"JUNK" * (bs // 4))
    debugfs(
        a,
        "jo",
        f"jw -b {revoked} {junk}",
        f"jw -r {revoked}",
        f"jw -b {','.join(map(str, first))} {first_data}",
        f"jw -b {','.join(map(str, second))} {second_data}",
        "jc",
        write=True,
    )


@needs_e2fs
@needs_tsk
def test_journal_needing_recovery(images, tmp_path):
    """debugfs writes B's changes into A's journal: A then needs recovery; replayed in
    memory, A reads as B (fls of B and of e2fsck's recovered copy agree)."""
    a = tmp_path / "a.img"
    b = tmp_path / "b.img"
    tools.sparse_copy(images["ext4-4k"], a)
    tools.sparse_copy(a, b)
    services = tmp_path / "services"
    services.write_bytes(b"some new file\n" * 500)
    debugfs(
        b,
        "mkdir /newdir",
        f"write {services} /newdir/new",
        "rm /dir/f005",
        "symlink /newdir/ln /tiny",
        write=True,
    )
    revoked = int(re.search(r"Free blocks: (\d+)", run("dumpe2fs", a)).group(1)) + 7
    _journal_diff(a, b, 4096, revoked)
    assert "needs_recovery" in run("dumpe2fs", "-h", a)
    before = fls(a)
    fs = open_filesystem(FileSource(a))
    assert ours(fs) == fls(b)
    assert fs.read("/newdir/new") == services.read_bytes()
    assert fs.info()["needs_recovery"] and fs.info()["journal_replayed"]
    msgs = [f["message"] for f in fs.check_rows() if f["structure"] == "journal"]
    assert msgs and "not clean" in msgs[0] and "replayed in memory" in msgs[0]
    raw = open_filesystem(FileSource(a), replay_journal=False)
    assert ours(raw) == before
    assert "not replayed" in raw.check_rows()[0]["message"]
    # transactions as debugfs logdump sees them
    dump = debugfs(a, "logdump")
    want = [
        (int(s), {"1": "descriptor", "2": "commit", "5": "revoke"}[t], int(blk))
        for s, t, blk in re.findall(
            r"Found expected sequence (\d+), type (\d) \(\w+"
            r"[\w ]*\) at block (\d+)",
            dump,
        )
    ]
    got = [(r["sequence"], r["type"], r["journal_block"]) for r in fs.journal_transactions()]
    assert got == want
    tags = re.findall(r"FS block (\d+) logged at journal block (\d+)", debugfs(a, "logdump -a"))
    logged = [
        b for r in fs.journal_transactions() if r["type"] == "descriptor" for b in r["blocks"]
    ]
    assert logged == [int(x) for x, _ in tags]
    # where the logged copies are: journal blocks (logdump) through the journal inode's map
    jblocks = sorted(_journal_blocks(a))
    copies = [
        off
        for r in fs.journal_transactions()
        if r["type"] == "descriptor"
        for off in r["data_offsets"]
    ]
    assert copies == [jblocks[int(j)] * 4096 for _, j in tags]
    names = {r["name"] for r in fs.structure_rows()}
    assert {
        "journal superblock",
        "journal descriptor",
        "journal commit",
        "journal revoke",
        "journal data",
    } <= names
    rec = tmp_path / "r.img"
    tools.sparse_copy(a, rec)
    subprocess.run(["e2fsck", "-fy", str(rec)], capture_output=True)
    assert fls(rec) == ours(fs)
    # the revoked junk is not replayed, by e2fsck or by vdinspect
    original = b.read_bytes()[revoked * 4096 : (revoked + 1) * 4096]
    assert rec.read_bytes()[revoked * 4096 : (revoked + 1) * 4096] == original
    assert fs.dev.read(revoked * 4096, 4096) == original
    assert not any(a <= revoked * 4096 < b for a, b, _zero in fs.dev.segments)  # not replaced
    assert fs.journal.raw.s_start == 1


@needs_e2fs
def test_clean_journal_listed(images):
    fs = open_filesystem(FileSource(images["ext3-1k"]))
    assert fs.journal is not None and not fs.journal.needs_recovery
    assert "inode 8" in fs.info()["journal"]
    assert fs.journal_transactions() == []
    assert any(r["name"] == "journal" for r in fs.structure_rows())


# --- containers, partitions, volumes ---------------------------------------------------


@needs_e2fs
@needs_tsk
@pytest.mark.skipif(not have("sfdisk", "qemu-img"), reason="needs sfdisk and qemu-img")
def test_partitioned_disk_in_containers(tree, tmp_path):
    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as f:
        f.truncate(72 * MiB)
    run("sfdisk", "-q", disk, input="label: dos\n2048,40960,83\n45056,,83\n")
    run(
        "mke2fs",
        "-q",
        "-F",
        "-t",
        "ext2",
        "-b",
        "1024",
        "-E",
        f"offset={2048 * 512}",
        "-d",
        tree,
        disk,
        "20M",
    )
    run(
        "mke2fs",
        "-q",
        "-F",
        "-t",
        "ext4",
        "-E",
        f"offset={45056 * 512}",
        "-d",
        tree / "dir",
        disk,
        "30M",
    )
    want1, want2 = fls(disk, 2048), fls(disk, 45056)
    outs = {"raw": disk}
    for fmt in ("qcow2", "vmdk", "vpc", "vhdx"):
        out = tmp_path / f"disk.{fmt}"
        run("qemu-img", "convert", "-O", fmt, disk, out)
        outs[fmt] = out
    for fmt, path in outs.items():
        try:
            d = vdinspect.open(path)
        except UnsupportedFeature:
            continue  # that container's reader is not there yet
        with d:
            assert ours(d.filesystem(1)) == want1, fmt
            fs2 = d.filesystem(2)
            assert ours(fs2) == want2, fmt
            assert fs2.read("/f077") == (tree / "dir" / "f077").read_bytes()


@needs_e2fs
def test_inside_lvm(tree, tmp_path):
    """An LV whose two segments lie on the PV in reverse order (volume_builder)."""
    fsimg = mkfs(tmp_path / "lv.img", ["-t", "ext4", "-b", "1024"], tree / "dir", "4M")
    data = fsimg.read_bytes()
    ext = 2 * MiB
    buf = bytearray(12 * MiB)
    uid = vb.lvm_uuid("extpv")
    pe_start = 2048
    text = vb.vg_text(
        "vg",
        vg_id=vb.lvm_uuid("extvg"),
        seqno=1,
        extent_size=ext // 512,
        pvs=[dict(uuid=uid, dev_size=len(buf) // 512, pe_start=pe_start, pe_count=5)],
        lvs=[
            vb.LV(
                "data",
                [
                    dict(
                        start_extent=0,
                        extent_count=1,
                        type="striped",
                        stripe_count=1,
                        stripes=["pv0", 3],
                    ),
                    dict(
                        start_extent=1,
                        extent_count=1,
                        type="striped",
                        stripe_count=1,
                        stripes=["pv0", 0],
                    ),
                ],
            )
        ],
    )
    vb.write_pv(buf, 0, len(buf), uid, text, pe_start=pe_start)
    base = pe_start * 512
    buf[base + 3 * ext : base + 4 * ext] = data[:ext]
    buf[base : base + ext] = data[ext:]
    raw = tmp_path / "pv.raw"
    tools.write_sparse(raw, buf)
    with vdinspect.open(raw) as d:
        fs = d.filesystem("vg/data")
        assert {r[0] for r in ours(fs)} == {f"/f{i:03d}" for i in range(150)} | {
            "/lost+found",
            "/sub",
        }
        assert fs.read("/f123") == (tree / "dir" / "f123").read_bytes()
        if have("fls"):
            assert ours(fs) == fls(fsimg)


# --- real samples ----------------------------------------------------------------------

DFVFS = SHARED_SAMPLES / "dfvfs" / "test_data"
PASSWORDS = (
    b"place,user,password\nbank,joesmith,superrich\nalarm system,-,1234\n"
    b"treasure chest,-,1111\nuber secret laire,admin,admin\n"
)


@pytest.mark.skipif(not DFVFS.is_dir(), reason="../shared/samples absent")
@pytest.mark.parametrize("name", ["ext2.qcow2", "ext2.vmdk", "ext2.vhd"])
def test_dfvfs_ext2(name):
    try:
        d = vdinspect.open(DFVFS / name)
    except UnsupportedFeature:
        pytest.skip(f"no reader for {name}")
    with d:
        fs = d.filesystem()
        e = fs.stat("/passwords.txt")
        assert (e.inode, e.size) == (14, 116)
        data = fs.read("/passwords.txt")
        assert data == PASSWORDS
        assert hashlib.sha256(data).hexdigest() == (
            "02a2a6af2f1ecf4720d7d49d640f0d0a269a7ec733e41973bdd34f09dad0e252"
        )
        assert fs.stat("/a_directory/another_file").inode == 15
        assert (
            fs.stat("/a_directory/a_file").inode == 13 and fs.stat("/a_directory/a_file").size == 53
        )
        with fs.open("/a_directory/another_file") as f:
            assert f.size == 22
            f.seek(10)
            assert f.read(5) == b"other"
            f.seek(-10, os.SEEK_END)
            assert f.read(5) == b"her f"
        link = fs.stat("/a_link")
        assert (link.inode, link.kind) == (16, "symlink")
        assert fs.readlink("/a_link") == "a_directory/another_file"
        assert fs.label == "ext2_test"
        # the manifest prints TSK's byte-reversed form of the UUID
        assert fs.uuid == "f00050bb-07ee-46a3-83a6-a405ee0db51f"
        assert bytes.fromhex(fs.uuid.replace("-", ""))[::-1].hex() == (
            "1fb50dee05a4a683a346ee07bb5000f0"
        )


@pytest.mark.skipif(
    not (SHARED_SAMPLES / "strozfriedberg-vmdk-rs").is_dir(), reason="../shared/samples absent"
)
def test_vmfs_thick_ext4():
    path = SHARED_SAMPLES / "strozfriedberg-vmdk-rs" / "data" / "vmfs_thick.vmdk"
    try:
        d = vdinspect.open(path)
    except UnsupportedFeature:
        pytest.skip("no vmdk reader")
    with d:
        fs = d.filesystem(1)
        assert fs.fstype == "ext4"
        assert bytes.fromhex(fs.uuid.replace("-", ""))[::-1].hex() == (
            "7f9116ce8b3f649acd46e9a3f5c03076"
        )
        assert [p for p, _i, _d in ours(fs)] == ["/lost+found"]
        assert fs.stat("/lost+found").inode == 11


UTIL_LINUX = SHARED_SAMPLES / "util-linux-2.38.1"


@pytest.mark.skipif(not UTIL_LINUX.is_dir(), reason="../shared/samples absent")
@pytest.mark.parametrize("name", ["ext2", "ext3"])
def test_util_linux_probe_images(name, tmp_path):
    raw = tmp_path / f"{name}.img"
    raw.write_bytes(lzma.decompress((UTIL_LINUX / "images-fs" / f"{name}.img.xz").read_bytes()))
    expected = dict(
        line.split("=", 1)
        for line in (UTIL_LINUX / "expected" / f"low-probe-{name}").read_text().splitlines()
    )
    fs = open_filesystem(FileSource(raw))
    assert fs.fstype == expected["ID_FS_TYPE"]
    assert fs.label == expected["ID_FS_LABEL"]
    assert fs.uuid == expected["ID_FS_UUID"]
    assert fs.block_size == int(expected["ID_FS_BLOCK_SIZE"])
    if have("fls"):
        assert ours(fs) == fls(raw)
    for r in fs.files(deleted=False).itertuples():
        if r.kind == "file" and have("icat"):
            assert fs.read(r.path) == run("icat", raw, int(r.inode), binary=True)


# --- features refused or flagged ---------------------------------------------------------


@needs_e2fs
def test_encrypted_and_compressed_files_flagged(tree, tmp_path):
    img = mkfs(
        tmp_path / "e.img", ["-t", "ext4", "-O", "encrypt", "-b", "4096"], tree / "dir", "8M"
    )
    debugfs(
        img,
        "sif /f010 flags 0x80800",
        "mkdir /secret",
        "sif /secret flags 0x80800",
        "write /dev/null /secret/name",
        "feature compression",
        "sif /f011 flags 0x80004",
        write=True,
    )
    fs = open_filesystem(FileSource(img))
    with pytest.raises(EncryptedImage):
        fs.read("/f010")
    with pytest.raises(UnsupportedFeature):
        fs.read("/f011")
    assert fs.stat("/f010").size == 20 and fs.read("/f012") == b"12" * 12
    # names in an encrypted directory are shown encoded, never as if they were plain text
    assert [e.name for e in fs.list_dir(fs.stat("/secret"))] == ["_bmFtZQ"]
    assert any("compression" in f["message"] for f in fs.check_rows())


@needs_e2fs
def test_unknown_incompat_feature_refused(images, tmp_path):
    img = tmp_path / "u.img"
    tools.sparse_copy(images["ext4-4k"], img)
    eb.patch_superblock(img, {0x60: ("<I", 0x800 | 0x2 | 0x40 | 0x80 | 0x200)})
    with pytest.raises(UnsupportedFeature, match="FEATURE_I11"):
        open_filesystem(FileSource(img))
    fs = open_filesystem(FileSource(img), strict=False)
    assert fs.read("/tiny") == b"tiny\n"
    assert any("FEATURE_I11" in f["message"] for f in fs.check_rows())


# --- damaged and hostile images ---------------------------------------------------------


@needs_e2fs
@needs_tsk
@pytest.mark.parametrize("variant,backup", [("ext2-1k-128", 8193), ("ext4-4k", 32768)])
def test_primary_superblock_destroyed_uses_backup(tree, tmp_path, variant, backup):
    size = "16M" if backup == 8193 else "136M"  # just past group 1
    img = mkfs(
        tmp_path / "b.img",
        VARIANTS[variant] + ["-N", "2048", "-E", "lazy_itable_init=1,lazy_journal_init=1"],
        tree / "dir",
        size,
    )
    want = fls(img)
    eb.zero_primary_superblock(img)
    with pytest.raises(CorruptImage, match=f"block {backup}"):
        open_filesystem(FileSource(img))
    fs = open_filesystem(FileSource(img), strict=False)
    assert ours(fs) == want
    assert f"block {backup}" in fs.check_rows()[0]["message"]
    assert fs.info()["superblock"].startswith("backup")
    # with no backup either: not an ext filesystem at all
    with pytest.raises(NotRecognized):
        open_filesystem(MemorySource(bytes(4 * MiB)))


@needs_e2fs
def test_truncated_image(images, tmp_path):
    data = images["ext4-4k"].read_bytes()
    src = MemorySource(data[: 12 * MiB], name="cut.img")
    with pytest.raises(CorruptImage, match="truncated"):
        open_filesystem(src)
    fs = open_filesystem(src, strict=False)
    assert fs.read("/tiny") == b"tiny\n"
    assert any("truncated" in f["message"] for f in fs.check_rows())
    # every file reads to its size, or fails with a VDInspectError; nothing else escapes
    cut = open_filesystem(MemorySource(data[: 3 * MiB], name="cut3.img"), strict=False)
    for r in cut.files(deleted=False).itertuples():
        if r.kind == "file" and r.size < 64 * MiB:
            try:
                assert len(cut.read(r.path)) == r.size
            except vdinspect.errors.VDInspectError:
                pass


@needs_e2fs
def test_directory_loop_made_with_debugfs(images, tmp_path):
    img = tmp_path / "l.img"
    tools.sparse_copy(images["ext4-4k"], img)
    debugfs(img, "ln /deep/d0 /deep/d0/d1/loop", write=True)
    fs = open_filesystem(FileSource(img))
    df = fs.files()
    assert "/deep/d0/d1/loop" in set(df["path"])
    assert not any(p.startswith("/deep/d0/d1/loop/") for p in df["path"])
    assert any("loop" in f["message"] for f in fs.check_rows())


@needs_e2fs
def test_extent_tree_pointing_at_itself(images, tmp_path):
    img = tmp_path / "x.img"
    tools.sparse_copy(images["ext4-nocsum"], img)
    ino = inode_number(img, "/onemeg")
    blk = eb.make_extent_loop(img, ino)
    fs = open_filesystem(FileSource(img))
    assert fs.stat("/onemeg").size == MiB  # metadata still reads
    with pytest.raises(CorruptImage, match=f"block {blk}|depth"):
        fs.read("/onemeg")
    salv = open_filesystem(FileSource(img), strict=False)
    assert salv.read("/onemeg") == bytes(MiB)  # unreadable parts read as zeros
    assert any(f["structure"] == f"inode {ino} extent tree" for f in salv.check_rows())


@needs_e2fs
def test_extent_outside_volume(images, tmp_path):
    img = tmp_path / "o.img"
    tools.sparse_copy(images["ext4-nocsum"], img)
    ino = inode_number(img, "/holes")
    eb.make_extent_outside(img, ino)
    with pytest.raises(CorruptImage, match="outside the volume"):
        open_filesystem(FileSource(img)).read("/holes")
    salv = open_filesystem(FileSource(img), strict=False)
    data = salv.read("/holes")
    assert len(data) == 3 * MiB + 1 and data[:5000] == bytes(5000)


@needs_e2fs
def test_indirect_block_reached_twice(images, tmp_path):
    img = tmp_path / "i.img"
    tools.sparse_copy(images["ext2-1k-128"], img)
    ino = inode_number(img, "/onemeg")
    blk = eb.make_indirect_loop(img, ino)
    with pytest.raises(CorruptImage, match=f"indirect block {blk} reached twice"):
        open_filesystem(FileSource(img)).read("/onemeg")
    salv = open_filesystem(FileSource(img), strict=False)
    assert len(salv.read("/onemeg")) == salv.stat("/onemeg").size
    assert any("reached twice" in f["message"] for f in salv.check_rows())


@needs_e2fs
def test_broken_directory_entry(images, tmp_path):
    img = tmp_path / "d.img"
    tools.sparse_copy(images["ext2-1k-128"], img)
    ino = inode_number(img, "/dir")
    eb.break_dir_rec_len(img, ino, 3)
    fs = open_filesystem(FileSource(img))
    with pytest.raises(CorruptImage, match="bad directory entry"):
        fs.list_dir(fs.stat("/dir"))
    df = fs.files()  # the walk records the broken directory and goes on
    assert "/tiny" in set(df["path"])
    assert any("bad directory entry" in f["message"] for f in fs.check_rows())


@pytest.mark.parametrize(
    "field,value,match",
    [
        (0x00, 0xFFFFFFFF, "inode count"),  # s_inodes_count
        (0x28, 0, "inodes per group"),  # s_inodes_per_group
        (0x18, 30, "block size"),  # s_log_block_size
        (0x20, 0x7FFFFFFF, "blocks per group"),  # s_blocks_per_group
    ],
)
@needs_e2fs
def test_absurd_superblock_counts(images, tmp_path, field, value, match):
    img = tmp_path / "a.img"
    data = images["ext2-1k-128"].read_bytes()[: 2 * MiB]  # no backups in reach
    img.write_bytes(data)
    eb.patch_superblock(img, {field: ("<I", value)})
    with pytest.raises((CorruptImage, NotRecognized), match=match):
        open_filesystem(FileSource(img), strict=False)


@needs_e2fs
def test_inode_table_outside_volume(images, tmp_path):
    img = tmp_path / "t.img"
    tools.sparse_copy(images["ext2-1k-128"], img)
    eb.set_inode_table(img, 0, 0xFFFFFF0)
    with pytest.raises(CorruptImage, match="inode table"):
        open_filesystem(FileSource(img)).root()
    fs = open_filesystem(FileSource(img), strict=False)
    assert any("inode table" in f["message"] for f in fs.check_rows())


def test_not_ext():
    with pytest.raises(NotRecognized):
        open_filesystem(MemorySource(bytes(1024)))


# --- reports: info, structures, check ----------------------------------------------------


def dumpe2fs(img) -> tuple[dict[str, str], list[dict]]:
    """dumpe2fs's header fields and, per group, where its structures are (block numbers)."""
    text = run("dumpe2fs", img)
    head = dict(re.findall(r"^([A-Z][\w #/-]+):\s+(.*)$", text.split("\n\n")[0], re.M))
    groups = []
    for chunk in re.split(r"^Group \d+:", text, flags=re.M)[1:]:
        g = {}
        m = re.search(r"(Primary|Backup) superblock at (\d+)", chunk)
        if m:
            g["superblock"] = int(m.group(2))
        for key, pat in (
            ("block bitmap", r"Block bitmap at (\d+)"),
            ("inode bitmap", r"Inode bitmap at (\d+)"),
            ("inode table", r"Inode table at (\d+)-(\d+)"),
        ):
            m = re.search(pat, chunk)
            g[key] = tuple(int(x) for x in m.groups())
        groups.append(g)
    return head, groups


@needs_e2fs
@pytest.mark.parametrize(
    "variant", ["ext2-1k-128", "ext4-4k", "ext4-metabg", "ext4-sparse2", "ext4-bigalloc"]
)
def test_info_and_structures_match_dumpe2fs(images, variant):
    img = images[variant]
    head, groups = dumpe2fs(img)
    fs = open_filesystem(FileSource(img))
    info = fs.info()
    bs = info["block_size"]
    assert bs == int(head["Block size"])
    assert info["blocks"] == int(head["Block count"])
    assert info["inodes"] == int(head["Inode count"])
    assert info["uuid"] == head["Filesystem UUID"] and info["label"] == "vdtest"
    assert info["features"] == head["Filesystem features"].split()
    assert info["state"] == head["Filesystem state"]
    assert info["groups"] == len(groups)
    rows = fs.structure_rows()
    by = {}
    for r in rows:
        by.setdefault(r["name"], []).append(r)
    supers = sorted(r["host_offset"] // bs for r in by.get("backup superblock", []))
    assert supers == [g["superblock"] for g in groups[1:] if "superblock" in g]
    assert [r["host_offset"] // bs for r in by["block bitmap"]] == [
        g["block bitmap"][0] for g in groups
    ]
    assert [r["host_offset"] // bs for r in by["inode bitmap"]] == [
        g["inode bitmap"][0] for g in groups
    ]
    assert [
        (r["host_offset"] // bs, (r["host_offset"] + r["length"]) // bs - 1)
        for r in by["inode table"]
    ] == [g["inode table"] for g in groups]
    assert by["superblock"][0]["host_offset"] == 1024


@needs_e2fs
def test_checksum_mismatches_reported_like_e2fsck(images, tmp_path):
    img = tmp_path / "c.img"
    tools.sparse_copy(images["ext4-4k"], img)
    ino = inode_number(img, "/dir/f033")
    eb.patch_inode(img, ino, 0x64, b"\x99\x99\x99\x99")  # i_generation: checksum now wrong
    fsck = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True, text=True).stdout
    assert re.search(rf"Inode {ino} passes checks, but checksum does not match", fsck)
    fs = open_filesystem(FileSource(img))
    assert fs.read("/dir/f033") == b"33" * 33  # reading does not depend on it
    bad = [f for f in fs.check_rows() if "checksum" in f["message"]]
    assert [f["structure"] for f in bad] == [f"inode {ino}"]
    # and a superblock whose checksum no longer matches
    img2 = tmp_path / "c2.img"
    tools.sparse_copy(images["ext4-4k"], img2)
    data = bytearray(img2.read_bytes())
    data[1024 + 0x3FC] ^= 0xFF
    tools.write_sparse(img2, data)
    fs2 = open_filesystem(FileSource(img2))
    assert any(f["structure"] == "superblock" and "checksum" in f["message"] for f in fs2.check_rows())


@needs_e2fs
def test_external_journal_reported(images, tmp_path):
    jdev = tmp_path / "journal.dev"
    mkfs(jdev, ["-O", "journal_dev", "-b", "4096"], None, "8M")
    with pytest.raises(UnsupportedFeature, match="external journal device"):
        open_filesystem(FileSource(jdev))
    img = tmp_path / "x.img"
    tools.sparse_copy(images["ext4-4k"], img)
    eb.patch_superblock(
        img, {0xE0: ("<I", 0), 0xE4: ("<I", 0x0801), 0x60: ("<I", 0x2C6)}
    )  # s_journal_inum, s_journal_dev, +recover
    fs = open_filesystem(FileSource(img))
    assert fs.info()["journal"].startswith("external")
    assert any("external journal" in f["message"] for f in fs.check_rows())
    assert fs.read("/tiny") == b"tiny\n"


@needs_e2fs
def test_absurd_block_count_in_salvage_mode(tree, tmp_path):
    """Block and inode counts that agree with each other but not with the volume."""
    img = mkfs(tmp_path / "n.img", ["-t", "ext2", "-b", "1024"], tree / "dir", "4M")
    geo = eb.geometry(img.read_bytes())
    assert len(geo.inode_tables) == 1  # no backup superblock to fall back on
    blocks = 0xFFFFFFF0
    groups = -(-(blocks - geo.first_data_block) // 8192)
    eb.patch_superblock(img, {0x04: ("<I", blocks), 0x00: ("<I", groups * geo.inodes_per_group)})
    with pytest.raises(CorruptImage, match="truncated"):
        open_filesystem(FileSource(img))
    fs = open_filesystem(FileSource(img), strict=False)
    assert fs.read("/f005") == b"5" * 5
    assert len(fs.files(deleted=False)) > 150
    assert any("block count taken as" in f["message"] for f in fs.check_rows())


@needs_e2fs
@needs_tsk
def test_first_entry_of_a_block_deleted(images, tmp_path):
    """Removing the first entry of a block zeroes its inode number (fls shows inode 0)."""
    img = tmp_path / "f.img"
    tools.sparse_copy(images["ext4-1k-128"], img)
    fs0 = open_filesystem(MemorySource(img.read_bytes()))
    first = [d for d in fs0.dir_entries(fs0.stat("/dir").raw) if d.offset == 1024][0]
    victim = first.name.decode()
    debugfs(img, f"rm /dir/{victim}", write=True)
    fs = open_filesystem(FileSource(img))
    assert ours(fs) == fls(img)
    e = fs.stat(f"/dir/{victim}")
    assert e.deleted and e.inode is None and not e.recoverable
    assert any(r.name == f"OrphanFile-{first.inode}" for r in fs.orphans())


@needs_e2fs
@needs_tsk
def test_casefold_directory(images, tmp_path):
    img = tmp_path / "cf.img"
    tools.sparse_copy(images["ext4-casefold"], img)
    src = tmp_path / "v.txt"
    src.write_bytes(b"value\n")
    debugfs(
        img, "mkdir /cf", "sif /cf flags 0x40080000", f"write {src} /cf/MixedCase.TXT", write=True
    )
    fs = open_filesystem(FileSource(img))
    assert ours(fs) == fls(img)
    assert fs.info()["encoding"].startswith("utf8")
    assert fs.stat("/cf/mixedcase.txt").name == "MixedCase.TXT"
    assert fs.read("/CF/MIXEDCASE.txt") == b"value\n"


@needs_e2fs
@pytest.mark.parametrize("variant", ["ext4-4k", "ext4-1k-128"])
def test_extent_tree_depths_and_uninitialized_extents(images, tree, tmp_path, variant):
    img = tmp_path / "u.img"
    tools.sparse_copy(images[variant], img)
    bs = 4096 if "4k" in variant else 1024
    # debugfs fallocate: allocated but uninitialised blocks inside the hole of /holes
    debugfs(img, f"fallocate /holes {8192 // bs} {(MiB - 8192) // bs}", write=True)
    fs = open_filesystem(FileSource(img))
    ex = fs.extents("/holes")
    assert any(e["state"] == "uninitialized" for e in ex)
    assert fs.read("/holes") == (tree / "holes").read_bytes()
    # the tree of /frag400 is two levels deep with 1 KiB blocks (debugfs stat shows it)
    if bs == 1024:
        assert re.search(r"Level Entries.*\n\s*0/ 2", debugfs(img, "ex /frag400"))
    assert fs.read("/frag400") == (tree / "frag400").read_bytes()
    assert fs.read("/fragmented") == (tree / "fragmented").read_bytes()


@needs_e2fs
@pytest.mark.parametrize("fstype", ["ext2", "ext4"])
def test_random_metadata_damage_raises_only_vdinspect_errors(tree, tmp_path, fstype):
    """Bytes flipped in the metadata area: every failure is a VDInspectError, in both modes,
    and every walk ends (loops and counts are bounded)."""
    import random

    img = mkfs(tmp_path / "z.img", ["-t", fstype, "-b", "1024"], tree / "dir", "2M")
    base = img.read_bytes()
    for seed in range(25):
        rnd = random.Random(seed)
        data = bytearray(base)
        for _ in range(rnd.choice([1, 5, 20, 80])):
            data[rnd.randrange(1024, 200 * 1024)] = rnd.randrange(256)
        for strict in (True, False):
            try:
                fs = open_filesystem(MemorySource(bytes(data), name=f"z{seed}"), strict=strict)
                fs.files()
                for e in fs.iter_entries("/"):
                    if e.kind == "file" and e.size < MiB:
                        try:
                            assert len(fs.read(e)) == e.size
                        except vdinspect.errors.VDInspectError:
                            pass
                fs.check_rows()
                fs.structure_rows()
            except vdinspect.errors.VDInspectError:
                pass


@needs_e2fs
def test_superblock_state_findings_name_their_fields(tmp_path):
    """What debugfs sets in the superblock (state 'not clean' + 'errors', an error count, an
    orphan list head) is named in check(), each row at its field's byte: s_state at 0x3A,
    s_error_count at 0x194, s_last_orphan at 0xE8 of the superblock at byte 1024 (kernel
    "ext4 Data Structures and Algorithms", written here again from the document)."""
    img = tmp_path / "s.img"
    with open(img, "wb") as f:
        f.truncate(8 * MiB)
    run("mke2fs", "-q", "-F", "-t", "ext4", img)
    debugfs(img, "ssv state 2", "ssv error_count 5", "ssv last_orphan 12", write=True)
    assert "not clean with errors" in run("dumpe2fs", "-h", img)
    fs = open_filesystem(FileSource(img))
    rows = fs.check()
    rows = rows[rows["structure"] == "superblock"]
    got = {(r.severity, int(r.host_offset), r.message.split(" (")[0]) for r in rows.itertuples()}
    assert got == {
        ("warning", 1024 + 0x3A, "not cleanly unmounted"),
        ("warning", 1024 + 0x3A, "the kernel recorded errors"),
        ("warning", 1024 + 0x194, "5 errors recorded by the kernel"),
        ("info", 1024 + 0xE8, "orphan inode list starts at inode 12"),
    }
    assert fs.info()["dirty"] is True
