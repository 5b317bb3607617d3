"""XFS: images made by ``mkfs.xfs -p`` (prototype files) in several geometries, read back
and compared with xfs_db (``ls``, ``inode``/``print``, ``bmap``, ``sb``) and with the source
files; the real kernel-written images of ../shared/samples/KhaledEmaraDev-xfuse against
their MANIFEST values; a dirty log patched from the log format description and checked
with xfs_logprint; hostile mutations bounded.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import vdinspect
from tests.conftest import SHARED_SAMPLES, have
from tests.tools import dig_holes, run, sparse_copy, write_sparse  # noqa: F401 (the one way the tests run a tool)
from vdinspect.cli import main as cli_main
from vdinspect.errors import CorruptImage, VDInspectError
from vdinspect.filesystems import open_filesystem
from vdinspect.filesystems.xfs import XfsFileSystem
from vdinspect.io import FileSource

needs_xfs = pytest.mark.skipif(not have("mkfs.xfs", "xfs_db"), reason="needs xfsprogs")
XFUSE = SHARED_SAMPLES / "KhaledEmaraDev-xfuse"
needs_xfuse = pytest.mark.skipif(not (XFUSE / "resources").is_dir() or not have("zstd"),
                                 reason="xfuse samples or zstd absent")
MiB = 1 << 20
LONG_TARGET = "/".join(f"segment{i:03d}" for i in range(80))  # 879 bytes: remote

CONFIGS = {
    "v5-4k": [],
    "v4-512": ["-m", "crc=0", "-b", "size=512"],
    "v5-1k-dir8k": ["-b", "size=1024", "-n", "size=8192"],
    "v5-isize512": ["-i", "size=512"],
    "v4-noftype": ["-m", "crc=0", "-n", "ftype=0"],
}
DIRS = {"sf": 3, "block": 30, "leaf": 200, "node": 1200}  # entries forcing each form
SLOW = ("v5-1k-dir8k", "v5-isize512", "v4-noftype")  # the default run keeps two geometries


# --- building images ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A source tree: small dirs to huge ones, files of several sizes, links, specials."""
    root = tmp_path_factory.mktemp("xfs_src")
    rnd = __import__("random").Random(18)
    for d, n in DIRS.items():
        (root / d).mkdir()
        for i in range(n):
            name = f"{d}-entry-{i:05d}" + ("-" + "x" * (i % 37) if d in ("leaf", "node") else "")
            (root / d / name).write_bytes(f"{d}/{i}\n".encode() * (i % 3))
    (root / "files").mkdir()
    (root / "files" / "random.bin").write_bytes(rnd.randbytes(3 * MiB + 123))
    (root / "files" / "text.txt").write_text("Hello, XFS!\n" * 1000)
    (root / "files" / "empty").write_bytes(b"")
    (root / "files" / "one").write_bytes(b"1")
    (root / "files" / "ünïcødé-名前").write_bytes(b"utf-8 name\n")
    return root


def protofile(src: Path, out: Path, long_link: bool = False) -> Path:
    """An mkfs.xfs prototype file for ``src``, plus symlinks, a fifo and device nodes
    (``long_link``: a remote symlink, which mkfs.xfs 6.1 writes without the v5 block
    header — so only on v4)."""
    lines = ["vdinspect-test", "0 0", "d--755 0 0"]

    def walk(d: Path, depth: int) -> None:
        for p in sorted(d.iterdir()):
            if p.is_dir():
                lines.append(f"{p.name} d--750 {depth} 7")
                walk(p, depth + 1)
                lines.append("$")
            else:
                lines.append(f"{p.name} ---640 1000 {100 + depth} {p}")
    walk(src, 0)
    if long_link:
        lines.append("long l--777 0 0 " + LONG_TARGET)
    lines += ["short l--777 0 0 files/text.txt",
              "fifo p--644 0 0", "bdev b--600 0 6 8 1", "cdev c--600 0 6 1 3", "$", "$"]
    out.write_text("\n".join(lines) + "\n")
    return out


def flat_proto(d: Path, content: dict[str, bytes]) -> Path:
    """A prototype file for mkfs.xfs -p: the files ``content`` (name -> bytes) in the root,
    written under ``d/src``; the proto is ``d/proto``."""
    src = d / "src"
    src.mkdir()
    lines = ["x", "0 0", "d--755 0 0"]
    for name, data in content.items():
        (src / name).write_bytes(data)
        lines.append(f"{name} ---644 0 0 {src / name}")
    (d / "proto").write_text("\n".join(lines + ["$", ""]))
    return d / "proto"


def mkxfs(path: Path, proto: Path, opts: list[str], size: int = 96 * MiB) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    run("mkfs.xfs", "--unsupported", "-q", *opts, "-p", proto, path)
    dig_holes(path)  # mkfs.xfs writes the zeros of its log and of the last AG in full
    return path


@pytest.fixture(scope="module", params=[
    pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in CONFIGS])
def image(request, tree, tmp_path_factory):
    if not have("mkfs.xfs", "xfs_db"):
        pytest.skip("needs xfsprogs")
    d = tmp_path_factory.mktemp("xfs_" + request.param)
    v4 = "crc=0" in CONFIGS[request.param]
    img = mkxfs(d / "fs.img", protofile(tree, d / "proto", v4), CONFIGS[request.param])
    return request.param, img


def xfs_db(img: Path, *cmds: str) -> str:
    args = ["xfs_db", "-r"]
    for c in cmds:
        args += ["-c", c]
    return run(*args, img)


LS_LINE = re.compile(r"^\s*\d+\s+(\d+)\s+(\S+)\s+0x[0-9a-f]+\s+\d+\s+(.*) \((good|bad)\)$")


def db_ls(img: Path, path: str) -> dict[str, tuple[int, str]]:
    """name -> (inode, type) from xfs_db's ``ls`` of one directory ('.' and '..' left out)."""
    out = {}
    for line in xfs_db(img, f"ls {path}").splitlines():
        m = LS_LINE.match(line)
        if m and m.group(3) not in (".", ".."):
            out[m.group(3)] = (int(m.group(1)), m.group(2))
    return out


def db_print(img: Path, *cmds: str) -> dict[str, str]:
    out = {}
    for line in xfs_db(img, *cmds, "print").splitlines():
        k, sep, v = line.partition(" = ")
        if sep:
            out[k.strip()] = v.strip()
    return out


def db_bmap(img: Path, fs, ino: int) -> list[tuple[int, int, int, bool]]:
    """(logical, physical, length in bytes, unwritten) of a data fork, from xfs_db bmap."""
    g = fs.geo
    out = []
    text = xfs_db(img, f"inode {ino}", "bmap")
    for m in re.finditer(r"data offset (\d+) startblock \d+ \((\d+)/(\d+)\) count (\d+) "
                         r"flag (\d)", text):
        off, agno, agbno, cnt, flag = map(int, m.groups())
        out.append((off * g.block_size, (agno * g.agblocks + agbno) * g.block_size,
                    cnt * g.block_size, bool(flag)))
    return out


def open_xfs(img, strict: bool = True):
    return open_filesystem(FileSource(img), "xfs", strict=strict)


KINDS = {"regular": "file", "directory": "dir", "symlink": "symlink"}

# --- mkfs.xfs -p images against xfs_db and the sources -------------------------------------


@needs_xfs
def test_listing_matches_xfs_db(image):
    """Every directory form: names, inode numbers and types as xfs_db lists them."""
    _name, img = image
    fs = open_xfs(img)
    df = fs.files(deleted=False)
    for d in ["/", "/sf", "/block", "/leaf", "/node", "/files"]:
        want = db_ls(img, d)
        rows = df[df.parent == d]
        got = {r.name: (int(r.inode), r.kind) for r in rows.itertuples()}
        assert len(got) == len(want), d
        unknown = []
        for n, (ino, t) in want.items():
            assert got[n][0] == ino, (d, n)
            if t == "unknown":  # no file type in entries: xfs_db's inode says
                unknown.append((n, ino))
            else:
                assert got[n][1] == KINDS.get(t, "other"), (d, n)
        for n, ino in unknown[:6]:
            mode = int(db_print(img, f"inode {ino}")["core.mode"], 8)
            kind = {0o100000: "file", 0o40000: "dir", 0o120000: "symlink"}.get(
                mode & 0o170000, "other")
            assert got[n][1] == kind, (d, n)
    assert fs.check().empty


@needs_xfs
def test_content_matches_sources(image, tree):
    name, img = image
    fs = open_xfs(img)
    for p in sorted(tree.rglob("*")):
        if p.is_file():
            rel = "/" + str(p.relative_to(tree))
            assert hashlib.sha256(fs.read(rel)).digest() == hashlib.sha256(
                p.read_bytes()).digest(), rel
    assert fs.readlink("/short") == "files/text.txt"
    if name.startswith("v4"):
        assert fs.readlink("/long") == LONG_TARGET
    df = fs.files(deleted=False)
    kinds = dict(zip(df.path, df.kind))
    assert kinds["/fifo"] == kinds["/bdev"] == kinds["/cdev"] == "other"


@needs_xfs
def test_inode_fields_match_xfs_db(image):
    _name, img = image
    fs = open_xfs(img)
    for path in ["/files/random.bin", "/files/one", "/node", "/short", "/leaf"]:
        e = fs.stat(path)
        want = db_print(img, f"inode {e.inode}")
        assert int(want["core.mode"], 8) == e.mode
        assert int(want["core.uid"]) == e.uid and int(want["core.gid"]) == e.gid
        assert int(want["core.size"]) == e.size
        links = want.get("core.nlinkv2", want.get("core.onlink"))
        assert int(links) == e.links
        assert int(want["core.mtime.nsec"]) == e.extra["mtime_ns"] % 10**9
        assert int(want["core.nblocks"]) * fs.block_size == e.allocated


@needs_xfs
def test_bmap_matches_xfs_db(image):
    _name, img = image
    fs = open_xfs(img)
    for path in ["/files/random.bin", "/node"]:
        e = fs.stat(path)
        want = [w[:3] for w in db_bmap(img, fs, e.inode)]
        got = [(r["logical"], r["physical"], r["length"]) for r in fs.extents(e)]
        assert got == want and want


@needs_xfs
def test_info_matches_superblock(image):
    name, img = image
    fs = open_xfs(img)
    sb = db_print(img, "sb 0")
    info = fs.info()
    assert info["block_size"] == int(sb["blocksize"])
    assert info["inode_size"] == int(sb["inodesize"])
    assert info["ag_count"] == int(sb["agcount"])
    assert info["root_ino"] == int(sb["rootino"])
    assert info["dir_block_size"] == int(sb["blocksize"]) << int(sb["dirblklog"])
    assert info["uuid"] == sb["uuid"]
    assert info["version"] == (4 if "v4" in name else 5)
    assert info["dirty"] is False
    assert ("FTYPE" in info["features"]) == ("noftype" not in name)


@needs_xfs
@pytest.mark.skipif(not have("xfs_logprint"), reason="needs xfs_logprint")
def test_dirty_log_reported(tmp_path, tree):
    """The unmount record's operation flags cleared (log format: op header flags, 9 bytes
    into the first data block after the record header) make the log dirty for
    xfs_logprint and for us."""
    img = mkxfs(tmp_path / "d.img", protofile(tree / "sf", tmp_path / "p"), [])
    sb = db_print(img, "sb 0")
    bs, agblocks = int(sb["blocksize"]), int(sb["agblocks"])
    logstart, agblklog = int(sb["logstart"]), int(sb["agblklog"])
    log = ((logstart >> agblklog) * agblocks + (logstart & ((1 << agblklog) - 1))) * bs
    data = bytearray(img.read_bytes())
    assert data[log:log + 4] == b"\xfe\xed\xba\xbe"  # mkfs writes an unmount record first
    assert data[log + 512 + 9] & 0x20
    data[log + 512 + 9] &= ~0x20
    bad = tmp_path / "dirty.img"
    write_sparse(bad, data)
    assert "<DIRTY>" in run("xfs_logprint", "-t", bad)
    assert "<CLEAN>" in run("xfs_logprint", "-t", img)
    fs = open_xfs(bad)
    assert fs.info()["dirty"] is True
    assert any(r["structure"] == "log" for r in fs.check_rows())
    assert open_xfs(img).info()["dirty"] is False


# --- end to end: a partitioned qcow2, the Disk API and the CLI -------------------------------


@needs_xfs
@pytest.mark.skipif(not have("sfdisk", "qemu-img"), reason="needs sfdisk and qemu-img")
def test_gpt_qcow2_end_to_end(tmp_path, tree, capsys):
    fsimg = mkxfs(tmp_path / "p.img", protofile(tree / "files", tmp_path / "proto"), [],
                  size=40 * MiB)
    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as f:
        f.truncate(48 * MiB)
    run("sfdisk", "-q", disk, input="label: gpt\n2048,81920,L\n")
    with open(disk, "r+b") as f, open(fsimg, "rb") as src:
        f.seek(2048 * 512)
        shutil.copyfileobj(src, f)
    dig_holes(disk)
    q = tmp_path / "disk.qcow2"
    run("qemu-img", "convert", "-O", "qcow2", disk, q)
    with vdinspect.open(q) as d:
        parts = d.partitions()
        assert "xfs" in set(parts.filesystem.dropna())
        fs = d.filesystem(1)
        assert fs.read("/random.bin") == (tree / "files" / "random.bin").read_bytes()
        assert fs.info()["fstype"] == "xfs"
    assert cli_main(["ls", "--part", "1", str(q)]) == 0
    out = capsys.readouterr().out
    assert "random.bin" in out and "text.txt" in out


# --- hostile input ------------------------------------------------------------------------


def _walk_all(img: Path, strict: bool) -> None:
    fs = open_xfs(img, strict)
    df = fs.files()
    fs.check_rows()
    fs.info()
    for p in df[df.kind == "file"].path.head(5):
        try:
            fs.read(p)
        except VDInspectError:
            if strict:
                raise


@pytest.fixture(scope="module")
def hostile_seed(tmp_path_factory):
    if not have("mkfs.xfs"):
        pytest.skip("needs xfsprogs")
    d = tmp_path_factory.mktemp("xfs_hostile")
    src = d / "src"
    src.mkdir()
    for i in range(60):
        (src / f"f{i:03d}").write_bytes(b"x" * i)
    return mkxfs(d / "h.img", protofile(src, d / "proto"), [], size=16 * MiB)


@needs_xfs
@pytest.mark.parametrize("where,width,value", [
    ("sb:4", 4, 0xFFFFFFFF), ("sb:84", 4, 0), ("sb:88", 4, 0xFFFFFFFF), ("sb:56", 8, 1 << 62),
    ("sb:124", 1, 31), ("sb:192", 1, 30), ("root:5", 1, 3), ("root:82", 1, 255),
    ("root:76", 4, 0xFFFFFFFF), ("root:56", 8, 1 << 62), ("root:0", 2, 0),
    ("dir:100", 8, 0xFFFFFFFFFFFF), ("dir:200", 2, 0xFFFF), ("dir:64", 4, 0),
])
def test_hostile_fields_bounded(hostile_seed, tmp_path, where, width, value):
    """Damaged superblock, root inode and directory block fields: strict mode raises a
    VDInspectError naming the file; salvage mode lists what it can with findings."""
    img = hostile_seed
    fs = open_xfs(img)
    g = fs.geo
    kind, off = where.split(":")
    base = {"sb": 0, "root": g.ino_offset(g.rootino)}.get(kind)
    if base is None:
        base = fs.extents("/")[0]["physical"] if fs.extents("/") else g.ino_offset(g.rootino)
    bad = tmp_path / "bad.img"
    sparse_copy(img, bad)
    with open(bad, "r+b") as f:
        f.seek(base + int(off))
        f.write(value.to_bytes(width, "big"))
    try:
        _walk_all(bad, True)
    except VDInspectError as e:
        assert "bad.img" in str(e)
    try:
        _walk_all(bad, False)
    except VDInspectError as e:  # salvage raises only when nothing can be read at all
        assert isinstance(e, (CorruptImage, vdinspect.errors.NotRecognized)), e


# --- the real images of ../shared/samples ----------------------------------------------------


@pytest.fixture(scope="session")
def xfuse(tmp_path_factory):
    if not (XFUSE / "resources").is_dir() or not have("zstd"):
        pytest.skip("xfuse samples or zstd absent")
    d = tmp_path_factory.mktemp("xfuse")

    def get(name: str) -> Path:
        out = d / name
        if not out.exists():
            run("zstd", "-q", "-d", XFUSE / "resources" / f"{name}.zst", "-o", out)
        return out
    return get


@needs_xfuse
def test_xfuse_v5_kernel_walk(xfuse):
    """Every entry of the kernel's walk: type, mode, owner, links, inode, size, mtime in
    nanoseconds, content sha256 or symlink target."""
    fs = open_xfs(xfuse("xfs4096.img"))
    df = fs.files(deleted=False)
    got = {r.path: r for r in df.itertuples()}
    want = {}
    with lzma.open(XFUSE / "expected" / "xfs4096.kernel-walk.tsv.xz", "rt") as f:
        for line in f:
            if not line.startswith("#"):
                p, t, mode, uid, gid, nl, ino, size, mt, last = line.rstrip("\n").split("\t")
                want[p] = (t, int(mode, 8), int(uid), int(gid), int(nl), int(ino), int(size),
                           int(mt), last)
    assert set(got) == set(want) - {"/"}
    kinds = {"f": "file", "d": "dir", "l": "symlink"}
    for p, (t, mode, uid, gid, nl, ino, size, mt, last) in want.items():
        if p == "/":
            continue
        r = got[p]
        assert (r.inode, r.size, r.uid, r.gid, r.links, r.mode & 0o7777, r.mtime_ns) == (
            ino, size, uid, gid, nl, mode, mt), p
        assert r.kind == kinds.get(t, "other"), p
        if t == "f" and size < 64 * MiB:
            assert hashlib.sha256(fs.read(p)).hexdigest() == last, p
        if t == "l":
            assert r.target == last, p
    big = fs.stat("/files/sparse.fully.txt")
    assert big.size == 1 << 40 and fs.extents(big) == []
    with fs.open(big) as f:
        f.seek((1 << 40) - 4096)
        assert f.read() == bytes(4096)
    assert fs.info()["dirty"] is False and fs.check().empty


@needs_xfuse
def test_xfuse_v5_xattrs_and_links(xfuse):
    fs = open_xfs(xfuse("xfs4096.img"))
    assert fs.xattrs("/xattrs/local") == {f"user.attr.{i:06d}": f"value.{i:06d}".encode()
                                          for i in range(4)}
    ext = fs.xattrs("/xattrs/extents")
    assert len(ext) == 64 and ext["user.attr.000063"] == b"value.000063"
    a, b = fs.stat("/files/hello.txt"), fs.stat("/files/hello2.txt")
    assert a.inode == b.inode == 142530 and a.links == 2
    assert fs.read("/files/hello.txt") == b"Hello, World!\n"
    assert fs.extents("/files/large_extent.txt")[0]["physical"] == 98578432


@needs_xfuse
def test_xfuse_v4_512_byte_blocks(xfuse):
    fs = open_xfs(xfuse("xfsv4.img"))
    df = fs.files()
    live = df[~df.deleted]
    counts = {"sf": 2, "block": 4, "leaf": 128, "node": 512, "btree2.2": 2048, "btree3": 16384,
              "btree_with_single_leaf": 204, "sparse_leaf": 4, "sparse_btree": 10, "files": 6,
              "xattrs": 2, "links": 2}
    for d, n in counts.items():
        assert (live.parent == "/" + d).sum() == n, d
    sums = {"large_extent.txt": "8d6f2c70", "btree2.2.txt": "f24e37f3",
            "btree3.txt": "8d6f2c70", "btree3.3.txt": "f78b7066"}
    for f, h in sums.items():
        assert hashlib.sha256(fs.read("/files/" + f)).hexdigest().startswith(h), f
    e = fs.stat("/files/hello.txt")
    assert (e.inode, e.uid, e.gid, e.mode) == (100551, 1234, 5678, 0o101234)
    assert hashlib.sha256(fs.readlink("/links/max").encode()).hexdigest() == (
        "78ba9dbdb2a95361dc70d90227f7c37df9ec3cbc8478175e3577609fc08f548d")
    assert len(fs.xattrs("/xattrs/local")) == 4
    # removed names survive in the sparse directories' free space: deleted, not recoverable
    gone = df[df.deleted & (df.parent == "/sparse_leaf")]
    assert len(gone) and not gone.recoverable.any()


@needs_xfuse
def test_xfuse_noftype_and_unwritten(xfuse):
    fs = open_xfs(xfuse("xfs_noftype.img"))
    assert "FTYPE" not in fs.info()["features"]
    sf = {e.name: e.inode for e in fs.iter_entries("/sf")}
    assert sf == {"frame000000": 36, "frame000001": 37}
    blk = sorted(e.inode for e in fs.iter_entries("/block") if not e.deleted)
    assert blk == [65569, 65570, 65571, 65572]
    fs = open_xfs(xfuse("xfs_preallocated.img"))
    e = fs.stat("/files/preallocated")
    assert e.inode == 11076 and e.size == 8 * MiB
    assert fs.extents(e)[0]["state"] == "unwritten"
    assert fs.read(e) == bytes(8 * MiB)


@needs_xfuse
def test_xfuse_damaged_bmbt_salvage(xfuse, tmp_path):
    """A bmbt leaf with a bad CRC: strict raises; salvage reads its extents as zeros and
    reports them in the damaged column."""
    img = xfuse("xfs4096.img")
    fs = open_xfs(img)
    e = fs.stat("/files/btree3.txt")
    meta = fs.fork_map(fs.inode(e.inode)).meta
    leaf = meta[-1] * fs.block_size
    data = bytearray(img.read_bytes())
    data[leaf + 100] ^= 0xFF  # inside the records: only the CRC notices
    bad = tmp_path / "bad.img"
    write_sparse(bad, data)
    with pytest.raises(CorruptImage):
        open_xfs(bad).read("/files/btree3.txt")
    fs = open_xfs(bad, strict=False)
    assert fs.damaged("/files/btree3.txt") > 0
    assert any("CRC" in r["message"] for r in fs.check_rows())


def test_no_tools_needed_for_structs():
    """The declared structures have the sizes of the on-disk format."""
    from vdinspect.filesystems.xfs import structs as S

    assert (S.Superblock.sizeof(), S.AGF.sizeof(), S.AGI.sizeof(), S.Dinode.sizeof()) == (
        264, 224, 344, 176)
    assert (S.SB_CRC_OFF, S.AGF_CRC_OFF, S.AGI_CRC_OFF, S.DINODE_CRC_OFF) == (224, 216, 312, 100)
    assert (S.LONG_HDR_V5, S.SHORT_HDR_V5, S.DIR3_DATA_HDR_V5, S.ATTR3_LEAF_HDR_V5) == (
        72, 56, 64, 80)


# --- written by the kernel: a loop mount (root only; skipped where mounting is refused) -----


def _mount(img: Path, mnt: Path) -> bool:
    mnt.mkdir(exist_ok=True)
    r = subprocess.run(["mount", "-t", "xfs", "-o", "loop", str(img), str(mnt)],
                       capture_output=True, text=True)
    return r.returncode == 0


@pytest.fixture(scope="module")
def kernel_image(tmp_path_factory):
    """An XFS written through the kernel: a btree-format sparse file, an unwritten extent,
    xattrs in every form, hard links, removed files; then a shutdown leaving the log dirty
    (xfs_io's godown) on a copy."""
    if os.geteuid() != 0 or not have("mkfs.xfs", "xfs_db", "xfs_io", "mount"):
        pytest.skip("needs root, xfsprogs and mount")
    d = tmp_path_factory.mktemp("xfs_kernel")
    img = d / "k.img"
    with open(img, "wb") as f:
        f.truncate(320 * MiB)
    run("mkfs.xfs", "-q", img)
    mnt = d / "mnt"
    if not _mount(img, mnt):
        pytest.skip("loop mount refused here")
    want: dict = {"xattrs": {}}
    try:
        (mnt / "dir").mkdir()
        run("xfs_io", "-f", *sum((["-c", f"pwrite -S 0x{k % 250 + 1:02x} {k * 8192} 4096"]
                                  for k in range(300)), []), mnt / "sparse")
        run("xfs_io", "-f", "-c", "falloc 0 1m", "-c", "pwrite -S 0x41 0 4096", mnt / "prealloc")
        for n, count, size in (("sf", 2, 8), ("leaf", 40, 20), ("node", 600, 30),
                               ("remote", 2, 20000)):
            p = mnt / "dir" / f"attrs-{n}"
            p.write_bytes(b"x")
            vals = {}
            for i in range(count):
                v = bytes([65 + i % 26]) * size
                os.setxattr(p, f"user.{n}.{i:04d}", v)
                vals[f"user.{n}.{i:04d}"] = v
            want["xattrs"][f"/dir/attrs-{n}"] = vals
        (mnt / "dir" / "orig").write_bytes(b"linked\n")
        os.link(mnt / "dir" / "orig", mnt / "dir" / "second")
        for i in range(200):
            (mnt / "dir" / f"gone-{i:03d}").write_bytes(b"g" * 5000)
        os.sync()
        for i in range(0, 200, 2):
            (mnt / "dir" / f"gone-{i:03d}").unlink()
        want["sparse"] = (mnt / "sparse").read_bytes()
        os.sync()
    finally:
        run("umount", mnt)
    dirty = d / "dirty.img"
    sparse_copy(img, dirty)
    if _mount(dirty, mnt):
        try:
            # committed to the log by fsync, then a shutdown: no unmount record is written
            run("xfs_io", "-f", "-c", "pwrite 0 4k", "-c", "fsync", mnt / "after-checkpoint")
            run("xfs_io", "-x", "-c", "shutdown", mnt)
        finally:
            run("umount", mnt)
    return img, dirty, want


@pytest.mark.slow
@pytest.mark.xdist_group("kernel-mounts")  # see test_btrfs_log.py
def test_kernel_written_forms(kernel_image):
    img, _dirty, want = kernel_image
    fs = open_xfs(img)
    rec = fs.inode(fs.stat("/sparse").inode)
    assert rec.format == 3  # the 300 extents do not fit in the inode: a bmbt
    assert fs.read("/sparse") == want["sparse"]
    assert db_bmap(img, fs, rec.number) == [
        (r["logical"], r["physical"], r["length"], r["state"] == "unwritten")
        for r in fs.extents("/sparse")]
    assert sum(r["state"] == "data" for r in fs.extents("/sparse")) == 300
    ext = fs.extents("/prealloc")
    assert {r["state"] for r in ext} == {"data", "unwritten"}
    assert fs.read("/prealloc") == b"A" * 4096 + bytes(MiB - 4096)  # unwritten: zeros
    for path, vals in want["xattrs"].items():
        got = {k: v for k, v in fs.xattrs(path).items() if k.startswith("user.")}
        assert got == vals, path
    a, b = fs.stat("/dir/orig"), fs.stat("/dir/second")
    assert a.inode == b.inode and a.links == 2
    df = fs.files()
    live = df[~df.deleted & (df.parent == "/dir")]
    assert set(db_ls(img, "/dir")) == set(live.name)
    gone = df[df.deleted & df.name.str.startswith("gone-")]
    # removed names in the directory's free space: XFS freed their inodes, nothing to read
    assert len(gone) and not gone.recoverable.any()
    assert set(gone.name) <= {f"gone-{i:03d}" for i in range(0, 200, 2)}
    assert fs.check().empty and fs.info()["dirty"] is False


@pytest.mark.slow
@pytest.mark.skipif(not have("xfs_logprint"), reason="needs xfs_logprint")
@pytest.mark.xdist_group("kernel-mounts")  # see test_btrfs_log.py
def test_kernel_dirty_log(kernel_image):
    _img, dirty, _want = kernel_image
    if "<DIRTY>" not in run("xfs_logprint", "-t", dirty):
        pytest.skip("the shutdown left a clean log here")
    fs = open_xfs(dirty)
    assert fs.info()["dirty"] is True and fs.info()["log_replayed"] > 0
    assert any(r["structure"] == "log" for r in fs.check_rows())
    # the fsync'd file is in the log only: there after replay (test_xfs_log.py compares
    # a replay with the kernel's), not on disk
    assert "after-checkpoint" in set(fs.files("/", recursive=False, deleted=False).name)
    # read as it lies on disk, without replaying the log: what xfs_db sees too
    flat = XfsFileSystem(FileSource(dirty), replay_log=False)
    root = flat.files("/", recursive=False, deleted=False)
    assert set(root.name) == set(db_ls(dirty, "/"))


@needs_xfs
def test_v5_remote_symlink_without_header(tmp_path, tree):
    """mkfs.xfs 6.1 -p writes a v5 remote symlink block without its XSLM header; xfs_db
    calls that block bad, and so do we: strict raises, salvage records a finding."""
    img = mkxfs(tmp_path / "s.img", protofile(tree / "sf", tmp_path / "p", long_link=True),
                [], size=40 * MiB)
    ino = db_ls(img, "/")["long"][0]
    db = subprocess.run(["xfs_db", "-r", "-c", f"inode {ino}", "-c", "dblock 0", "-c",
                         "type symlink", "-c", "print", str(img)], capture_output=True,
                        text=True)
    if "XSLM" in db.stdout or "(bad)" not in db.stdout + db.stderr:
        pytest.skip("this mkfs.xfs writes a proper remote symlink header")
    fs = open_xfs(img)
    with pytest.raises(CorruptImage):
        fs.readlink("/long")
    fs = open_xfs(img, strict=False)
    fs.files()
    assert any("symlink" in r["message"] for r in fs.check_rows())


@needs_xfs
@pytest.mark.skipif(not have("qemu-img"), reason="needs qemu-img")
def test_damaged_container_reaches_the_files(tmp_path, tree):
    """A QCOW2 (4 KiB clusters) of an XFS whose L2 entry for one cluster of a file points
    past the end (tests/test_damaged_files.py): salvage mode reads zeros there, and the
    ``damaged`` column and ``damaged_ranges`` name exactly that cluster, found from xfs_db's
    bmap of the file; the frame keeps the files() schema."""
    from tests.filesystems.test_damaged_files import break_clusters
    from vdinspect.frames import FILES_COLUMNS, FILES_DTYPES

    img = mkxfs(tmp_path / "fs.img", protofile(tree / "files", tmp_path / "p"), [],
                size=40 * MiB)
    q = tmp_path / "fs.qcow2"
    run("qemu-img", "convert", "-O", "qcow2", "-o", "cluster_size=4096", img, q)
    fs = open_xfs(img)
    ino = db_ls(img, "/")["random.bin"][0]
    logical, physical, length, _u = db_bmap(img, fs, ino)[0]
    assert length >= 3 * 4096
    cluster = physical // 4096 + 1
    bad = tmp_path / "bad.qcow2"
    break_clusters(q, bad, [cluster])
    with vdinspect.open(bad, strict=False) as d:
        fs = d.filesystem(d.volumes()[0].name)
        df = fs.files()
        assert [c for c in df.columns[:len(FILES_COLUMNS) + 1] if c != "damaged"] == FILES_COLUMNS
        for c, t in FILES_DTYPES.items():
            assert str(df[c].dtype) == t, c
        dmg = dict(zip(df.path, df.damaged))
        assert dmg["/random.bin"] == 4096
        assert all(v == 0 for p, v in dmg.items() if p.endswith((".txt", "one", "empty")))
        at = logical + cluster * 4096 - physical
        assert fs.damaged_ranges("/random.bin") == [(at, 4096)]
        data = fs.read("/random.bin")
        want = (tree / "files" / "random.bin").read_bytes()
        assert data[at:at + 4096] == bytes(4096)
        assert data[:at] == want[:at] and data[at + 4096:] == want[at + 4096:]


@needs_xfs
@pytest.mark.slow
def test_64k_blocks(tmp_path, tree):
    """The largest block size (64 KiB; the volume must be large enough for its log)."""
    img = mkxfs(tmp_path / "b.img", protofile(tree, tmp_path / "p"), ["-b", "size=65536"],
                size=1 << 30)
    fs = open_xfs(img)
    assert fs.info()["block_size"] == 65536
    df = fs.files(deleted=False)
    for d in ["/", "/leaf", "/node"]:
        want = db_ls(img, d)
        got = {r.name: int(r.inode) for r in df[df.parent == d].itertuples()}
        assert got == {n: ino for n, (ino, _t) in want.items()}, d
    for p in sorted((tree / "files").iterdir()):
        assert fs.read(f"/files/{p.name}") == p.read_bytes()
    assert fs.check().empty


@needs_xfs
def test_name_that_is_not_utf8(tmp_path):
    """A Latin-1 name (bytes mkfs.xfs copies as they are): listed with a \\xNN escape that
    lookup accepts back; xfs_db sees the same raw bytes."""
    src = tmp_path / "content"
    src.write_bytes(b"latin-1 name\n")
    proto = tmp_path / "p"
    proto.write_bytes(b"x\n0 0\nd--755 0 0\ncaf\xe9 ---644 0 0 " + bytes(src) + b"\n$\n$\n")
    img = mkxfs(tmp_path / "n.img", proto, [], size=40 * MiB)
    out = subprocess.run(["xfs_db", "-r", "-c", "ls /", str(img)], capture_output=True
                         ).stdout
    assert b" caf\xe9 (good)" in out
    fs = open_xfs(img)
    df = fs.files(deleted=False)
    assert "/caf\\xe9" in set(df.path)
    assert fs.read("/caf\\xe9") == src.read_bytes()


@needs_xfs
def test_ascii_ci_and_realtime_flag(tmp_path, tree):
    """``-n version=ci`` names match without case; a file xfs_db marks realtime (its data
    would be on the realtime device) is refused, not read from the data device."""
    img = mkxfs(tmp_path / "ci.img", protofile(tree / "files", tmp_path / "p"),
                ["-n", "version=ci"], size=24 * MiB)
    fs = open_xfs(img)
    assert "BORG" in fs.info()["features"]
    assert fs.read("/TEXT.TXT") == (tree / "files" / "text.txt").read_bytes()
    ino = db_ls(img, "/")["one"][0]
    rt = tmp_path / "rt.img"
    sparse_copy(img, rt)
    run("xfs_db", "-x", "-c", f"inode {ino}", "-c", "write core.realtime 1", rt)
    assert "core.realtime = 1" in xfs_db(rt, f"inode {ino}", "print core.realtime")
    with pytest.raises(vdinspect.errors.UnsupportedFeature):
        open_xfs(rt).read("/one")


@needs_xfs
@pytest.mark.skipif(not have("qemu-img"), reason="needs qemu-img")
def test_unreadable_directory_block_is_reported(tmp_path, tree):
    """Nothing lost silently (issue 16): the first directory block of ``/leaf`` (where
    xfs_db's bmap puts it) broken in a QCOW2: its row says so, check() has the error, its
    entries' inodes are still listed (under /$OrphanFiles), and an extraction names the
    folder as incomplete (CLI exit 1)."""
    from tests.filesystems.test_damaged_files import break_clusters

    img = mkxfs(tmp_path / "fs.img", protofile(tree, tmp_path / "p"), [])
    q = tmp_path / "fs.qcow2"
    run("qemu-img", "convert", "-O", "qcow2", "-o", "cluster_size=4096", img, q)
    fs = open_xfs(img)
    ino = db_ls(img, "/")["leaf"][0]
    _logical, physical, _length, _u = db_bmap(img, fs, ino)[0]
    bad = tmp_path / "bad.qcow2"
    break_clusters(q, bad, [physical // 4096])
    with vdinspect.open(bad, strict=False) as d:
        fs = d.filesystem()
        df = fs.files()
        note = df.set_index("path").loc["/leaf", "note"]
        assert "could not be read" in note
        rows = fs.check_rows()
        assert any(r["severity"] == "error" and "/leaf" in r["message"] for r in rows), rows
        # the names of the broken block are gone, their inodes are not: each is listed
        # (under /$OrphanFiles when no readable block names it), as xfs_db numbers them
        assert {i for i, _k in db_ls(img, "/leaf").values()} <= set(df["inode"].dropna())
        report = fs.extract("/leaf", tmp_path / "out")
        assert any("could not be read" in why for _p, why in report.incomplete)
    assert cli_main(["extract", "--salvage", str(bad), "/", str(tmp_path / "out2")]) == 1


@pytest.mark.parametrize("block", [b"", b"XD", b"XD2"])
def test_directory_block_shorter_than_its_magic(block):
    """A directory data block too short to hold its 4-byte magic is a problem named at
    offset 0, never a struct.error from the fast path."""
    from vdinspect.filesystems.xfs.dirs import parse_data_block

    problems: list = []
    got = parse_data_block(block, 0, v5=False, ftype=True, problems=problems)
    assert len(got) == 0
    assert problems and problems[0][0] == 0 and "shorter than its magic" in problems[0][1]


@needs_xfs
def test_device_inode_rdev_matches_xfs_db(tmp_path):
    """Device inodes made by mkfs.xfs from a protofile: each one's di_dev (the data fork
    of format DEV) reads as xfs_db prints ``u3.dev`` for it."""
    proto = tmp_path / "proto"
    proto.write_text("dummy\n0 0\nd--755 0 0\nnull c--666 0 0 1 3\nsda b--660 0 0 8 17\n$\n")
    img = tmp_path / "x.img"
    with open(img, "wb") as f:
        f.truncate(300 << 20)
    run("mkfs.xfs", "-q", "-p", str(proto), str(img))
    dig_holes(img)
    fs = XfsFileSystem(FileSource(str(img)))
    for name in ("null", "sda"):
        out = run("xfs_db", "-r", "-c", f"path /{name}", "-c", "p u3.dev", str(img))
        want = int(re.search(r"u3\.dev = (0x[0-9a-f]+|\d+)", out).group(1), 0)
        assert fs.inode(fs.lookup(f"/{name}").inode).rdev == want, name
    assert fs.inode(fs.lookup("/null").inode).rdev == 1 << 18 | 3  # major << 18 | minor
