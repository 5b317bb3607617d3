"""XFS log replay: dirty logs read as the kernel reads them after mounting.

Two oracles. Where the kernel can mount loop images (root), a volume written through the
kernel and shut down with its log dirty is read by vdinspect (the log replayed in memory)
and compared with the kernel's own mount of a copy (which replays the log). Everywhere,
logs built from the specification by tests/xfs_log_builder.py are parsed by
``xfs_logprint -t`` (an independent reader of the builder's output) and the replayed
volume is checked against the changes the builder made.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from tests import xfs_log_builder as B
from tests.conftest import have
from tests.filesystems.test_xfs import MiB, db_bmap, db_ls, db_print, flat_proto, mkxfs
from tests.tools import dig_holes, run, sparse_copy, write_sparse
from vdinspect.errors import VDInspectError
from vdinspect.filesystems.xfs import XfsFileSystem
from vdinspect.io import FileSource

# kernel mounts and os.sync() (which commits every mounted filesystem) on one xdist
# worker: a sync from a parallel test must not commit a log being staged for a crash copy
pytestmark = pytest.mark.xdist_group("kernel-mounts")

needs_logprint = pytest.mark.skipif(not have("mkfs.xfs", "xfs_db", "xfs_logprint"),
                                    reason="needs xfsprogs")


def open_xfs(img: Path, **kw) -> XfsFileSystem:
    return XfsFileSystem(FileSource(img), **kw)


# --- logs built from the specification ------------------------------------------------------


@pytest.fixture(scope="module", params=["v5", "v4", "v5-wrapped", "v5-64k-records"])
def built(request, tmp_path_factory):
    """An mkfs.xfs -p image and a copy with a dirty log built over it: what it changes."""
    if not have("mkfs.xfs", "xfs_db", "xfs_logprint"):
        pytest.skip("needs xfsprogs")
    d = tmp_path_factory.mktemp("xfslog_" + request.param)
    content = {"a": b"A" * 5000, "b": bytes(range(256)) * 80, "c": b"C" * 8192,
               "d": b"D" * 4096, "e": b"E" * 40960}
    flat_proto(d, content)
    opts = ["-m", "crc=0"] if request.param == "v4" else []
    wrapped = request.param == "v5-wrapped"
    big = request.param == "v5-64k-records"
    img = mkxfs(d / "clean.img", d / "proto", opts, size=32 * MiB)
    sb = db_print(img, "sb 0")
    bs, agblocks, agblklog = int(sb["blocksize"]), int(sb["agblocks"]), int(sb["agblklog"])
    isize, inopblog = int(sb["inodesize"]), int(sb["inopblog"])
    logstart = int(sb["logstart"])
    log_at = ((logstart >> agblklog) * agblocks + (logstart & ((1 << agblklog) - 1))) * bs
    uuid = bytes.fromhex(sb["uuid"].replace("-", ""))
    ino = {n: i for n, (i, _t) in db_ls(img, "/").items()}
    root = int(sb["rootino"])
    fs = open_xfs(img)
    blocks = {n: db_bmap(img, fs, ino[n]) for n in content}
    raw = bytearray(img.read_bytes())
    v3 = request.param != "v4"

    def where(i: int) -> tuple[int, int, int]:
        """(daddr of the inode's block, basic blocks per block, offset in the block)."""
        agno = i >> (agblklog + inopblog)
        agino = i & ((1 << (agblklog + inopblog)) - 1)
        blk = agno * agblocks + (agino >> inopblog)
        return blk * bs // B.BB, bs // B.BB, (agino & ((1 << inopblog) - 1)) * isize

    def core(i: int) -> bytearray:
        daddr, _n, boff = where(i)
        return B.core_to_log(bytes(raw[daddr * B.BB + boff:][:isize]), v3)

    # 1: /a points at /b's first block, 3000 bytes long (core + extent list)
    ca = core(ino["a"])
    B.set_log_field(ca, "di_size", 3000)
    B.set_log_field(ca, "di_nextents", 1)
    b_block = blocks["b"][0][1] // bs
    b_fsb = ((b_block // agblocks) << agblklog) | (b_block % agblocks)
    # (v4: in the packed 32-bit inode log format a 32-bit kernel writes)
    it_a = B.inode_item(ino["a"], *where(ino["a"]), B.ILOG_CORE | B.ILOG_DEXT, ca,
                        B.extent(0, b_fsb, 1), packed=request.param == "v4")
    # 2: chunks 1 and 2 of /c's first block rewritten (a buffer item)
    c_daddr = blocks["c"][0][1] // B.BB
    new_c = bytes(range(128)) + bytes(range(128, 256))
    it_c = B.buf_item(c_daddr, bs // B.BB, {1: new_c[:128], 2: new_c[128:]})
    # 3: the root directory (short form) with "a" renamed "renamed-a"
    ftype = not request.param == "v4" or "ftype=1" in run("xfs_info", img)
    entries = [("renamed-a" if n == "a" else n, ino[n]) for n in sorted(content)]
    sf = bytes([len(entries), 0]) + root.to_bytes(4, "big")
    off = 0x60 if v3 else 0x30
    for name, i in entries:
        sf += bytes([len(name)]) + off.to_bytes(2, "big") + name.encode()
        sf += (b"\x01" if ftype else b"") + i.to_bytes(4, "big")
        off += (8 + 1 + len(name) + int(ftype) + 2 + 7) // 8 * 8
    cr = core(root)
    B.set_log_field(cr, "di_size", len(sf))
    it_root = B.inode_item(root, *where(root), B.ILOG_CORE | B.ILOG_DDATA, cr,
                           sf + bytes(-len(sf) % 8))
    # 4: /d's block rewritten, then the buffer cancelled by a later transaction
    d_daddr = blocks["d"][0][1] // B.BB
    it_d = B.buf_item(d_daddr, bs // B.BB, {0: b"\xee" * 128})
    it_cancel = B.buf_item(d_daddr, bs // B.BB, {0: b""}, flags=B.BLF_CANCEL)
    # 5: /b truncated, never committed
    cb = core(ino["b"])
    B.set_log_field(cb, "di_size", 0)
    it_b = B.inode_item(ino["b"], *where(ino["b"]), B.ILOG_CORE, cb)

    nbb = int(sb["logblocks"]) * bs // B.BB
    start = nbb - 1 if wrapped else 2  # wrapped: the first record crosses the log's end
    if wrapped:  # an older pass filled the log: every block carries cycle 1
        for blk in range(nbb):
            at = log_at + blk * B.BB
            raw[at:at + B.BB] = (1).to_bytes(4, "big") + bytes(B.BB - 4)
    w = B.LogWriter(uuid, start=start, size=nbb, h_size=65536 if big else 32768)
    t1 = B.transaction(0x1001, [it_a, it_c, it_root])
    split = next(k for k, (_t, _f, r) in enumerate(t1) if r == new_c)
    region = t1[split][2]  # /c's run of two chunks, split over two records
    w.record(t1[:split] + [(0x1001, B.CONTINUE, region[:100])])
    second = w.record([(0x1001, B.WAS_CONT | B.END, region[100:])] + t1[split + 1:])
    # 64k-records variant: /e rewritten whole (a 40 KiB record: an extended header)
    e_daddr, e_len = blocks["e"][0][1] // B.BB, blocks["e"][0][2]
    new_e = bytes(range(251)) * 164
    it_e = B.buf_item(e_daddr, e_len // B.BB, {k: new_e[k * 128:(k + 1) * 128]
                                               for k in range(e_len // 128)})
    w.record(B.transaction(0x1002, [it_d, it_e] if big else [it_d]))
    w.record(B.transaction(0x1003, [it_cancel]) + B.transaction(0x1004, [it_b], commit=False))
    w.apply(raw, log_at)
    assert not wrapped or 0 < second < start  # the first record crossed the log's end
    dirty = d / "dirty.img"
    write_sparse(dirty, raw)
    want = dict(content)
    want["renamed-a"] = content["b"][:3000]
    del want["a"]
    want["c"] = content["c"][:128] + new_c + content["c"][384:]
    if big:
        assert e_len == 40960  # one extent: the buffer covers the whole file
        want["e"] = new_e[:40960]
    return dict(clean=img, dirty=dirty, want=want, head=w.head, ino=ino, c_daddr=c_daddr,
                d_daddr=d_daddr, tail=start, log_at=log_at, nbb=nbb,
                **({"e_daddr": e_daddr} if big else {}))


@needs_logprint
def test_builder_matches_xfs_logprint(built):
    """xfs_logprint reads the built log as built: dirty, tail 2, our head, the items."""
    out = run("xfs_logprint", "-t", built["dirty"])
    assert "<DIRTY>" in out
    m = re.search(r"log tail: (\d+) head: (\d+)", out)
    assert m and (int(m.group(1)), int(m.group(2))) == (built["tail"], built["head"])
    tids = [int(x, 16) for x in re.findall(r"TRANS: tid:(0x[0-9a-f]+)\s+#items:", out)]
    assert tids == [0x1001, 0x1002, 0x1003]  # 0x1004 has no commit record
    inodes = re.findall(r"INODE: #regs:\s*(\d+)\s+ino:(0x[0-9a-f]+)\s+flags:(0x[0-9a-f]+)"
                        r"\s+dsize:(\d+)", out)
    ino = built["ino"]
    root = min(int(i, 16) for _r, i, _f, _d in inodes)
    assert [(int(r), int(i, 16), int(f, 16)) for r, i, f, _d in inodes] == [
        (3, ino["a"], B.ILOG_CORE | B.ILOG_DEXT), (3, root, B.ILOG_CORE | B.ILOG_DDATA)]
    bufs = re.findall(r"BUF:\s+#regs:\s*(\d+)\s+start blkno:(0x[0-9a-f]+)\s+len:(\d+)\s+"
                      r"bmap size:(\d+)\s+flags:(0x[0-9a-f]+)", out)
    got = [(int(r), int(b, 16), int(f, 16)) for r, b, _n, _m, f in bufs]
    if "e_daddr" in built:  # the 40 KiB buffer: one run of 320 chunks
        got.remove((2, built["e_daddr"], 0))
    assert got == [(2, built["c_daddr"], 0), (2, built["d_daddr"], 0),
                   (1, built["d_daddr"], B.BLF_CANCEL)]


@needs_logprint
def test_built_log_replayed(built):
    fs = open_xfs(built["dirty"])
    info = fs.info()
    assert info["dirty"] is True and info["log_replayed"] == 3
    assert "1 cancelled buffer" in info["log_state"]
    df = fs.files("/", recursive=False)
    live = df[~df.deleted]
    assert set(live.name) == set(built["want"])
    assert set(live[live.found_by == "journal"].name) == {"renamed-a"}  # only in the log
    for name, data in built["want"].items():
        assert fs.read("/" + name) == data, name
    assert not (fs.check().severity == "error").any()  # v5: CRCs restamped after replay
    # without replay: the volume as it lies, which is what xfs_db reads
    flat = open_xfs(built["dirty"], replay_log=False)
    assert set(flat.files("/", recursive=False).name) >= set(db_ls(built["dirty"], "/"))
    assert flat.read("/a") == b"A" * 5000 and flat.info()["log_replayed"] == 0
    assert "not replayed" in flat.info()["log_state"]
    clean = open_xfs(built["clean"]).info()
    assert clean["dirty"] is False and clean["log_replayed"] == 0


@needs_logprint
def test_damaged_logs_are_findings(built, tmp_path):
    """Log records cut, garbled or pointing outside the volume: the volume still opens
    (strict and salvage), the log is reported, nothing but VDInspectError escapes."""
    log_at, nbb = built["log_at"], built["nbb"]
    span = (built["head"] - built["tail"]) % nbb  # the records' basic blocks
    rnd = __import__("random").Random(7)
    for k in range(12):
        p = tmp_path / f"m{k}.img"
        sparse_copy(built["dirty"], p)
        with open(p, "r+b") as f:
            for _ in range(rnd.randint(1, 3)):
                blk = (built["tail"] + rnd.randrange(span)) % nbb
                f.seek(log_at + blk * B.BB + rnd.randrange(B.BB))
                f.write(rnd.choice([b"\xff", b"\x00", b"\x7f"]) * rnd.choice([1, 2, 4, 8]))
        for strict in (True, False):
            try:
                fs = open_xfs(p, strict=strict)
                fs.files("/", recursive=False)
                assert fs.info()["log_state"]
            except VDInspectError:
                pass
        p.unlink()


# --- a log written by the kernel, against the kernel's own replay ---------------------------


def _mount(img: Path, mnt: Path) -> bool:
    mnt.mkdir(exist_ok=True)
    r = subprocess.run(["mount", "-t", "xfs", "-o", "loop", str(img), str(mnt)],
                       capture_output=True, text=True)
    return r.returncode == 0


def _kernel_walk(mnt: Path) -> dict[str, tuple]:
    out = {}
    for top, dirs, files in os.walk(mnt):
        for n in dirs + files:
            p = Path(top) / n
            st = p.lstat()
            regular = stat.S_ISREG(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                what = "L:" + os.readlink(p)
            elif regular:
                what = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                what = "dir"
            out["/" + str(p.relative_to(mnt))] = (st.st_mode, st.st_ino, st.st_nlink, what,
                                                  st.st_size if regular else None)
    return out


@pytest.mark.slow
def test_kernel_dirty_log_replayed_as_the_kernel_does(tmp_path):
    """Files made, written, linked, renamed and removed through the kernel, each fsync'd
    (so in the log), then a shutdown: the metadata is only in the log. The replayed
    volume equals the kernel's mount of a copy (which replays the log itself)."""
    if os.geteuid() != 0 or not have("mkfs.xfs", "xfs_io", "mount", "xfs_logprint"):
        pytest.skip("needs root, xfsprogs and mount")
    img, mnt = tmp_path / "k.img", tmp_path / "mnt"
    with open(img, "wb") as f:
        f.truncate(320 * MiB)
    run("mkfs.xfs", "-q", img)
    dig_holes(img)
    if not _mount(img, mnt):
        pytest.skip("loop mount refused here")
    rnd = __import__("random").Random(5)
    try:
        (mnt / "d1" / "sub").mkdir(parents=True)
        (mnt / "big").mkdir()
        for i in range(300):
            (mnt / "d1" / f"f{i:04d}").write_bytes(bytes([i % 256]) * rnd.randrange(20000))
        for i in range(20):
            os.symlink("x" * (i * 40 + 1), mnt / "d1" / "sub" / f"l{i}")
        with open(mnt / "big" / "sparse", "wb") as f:
            for k in range(200):
                f.seek(k * 16384)
                f.write(b"z" * 4096)
        os.setxattr(mnt / "d1" / "f0001", "user.a", b"v" * 100)
        os.link(mnt / "d1" / "f0002", mnt / "hard")
        for i in range(0, 300, 3):
            (mnt / "d1" / f"f{i:04d}").unlink()
        os.rename(mnt / "d1" / "f0001", mnt / "renamed")
        paths = [mnt] + [Path(t) / n for t, ds, fs in os.walk(mnt) for n in ds + fs]
        for p in paths:
            if not p.is_symlink():
                run("xfs_io", "-c", "fsync", p)
        run("xfs_io", "-x", "-c", "shutdown", mnt)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    if "<DIRTY>" not in run("xfs_logprint", "-t", img):
        pytest.skip("the shutdown left a clean log here")
    copy = tmp_path / "kernel.img"
    sparse_copy(img, copy)
    if not _mount(copy, mnt):
        pytest.skip("the kernel refused to recover the log")
    try:
        want = _kernel_walk(mnt)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    fs = open_xfs(img)
    assert fs.info()["log_replayed"] > 0
    df = fs.files()
    got = {}
    for r in df[~df.deleted & (df.path != "/")].itertuples():
        if r.kind == "symlink":
            what = "L:" + r.target
        elif r.kind == "file":
            what = hashlib.sha256(fs.read(r.path)).hexdigest()
        else:
            what = "dir"
        got[r.path] = (r.mode, r.inode, r.links, what, r.size if r.kind == "file" else None)
    assert len(want) > 200 and got == want
    assert fs.xattrs("/renamed")["user.a"] == b"v" * 100
    assert not (fs.check().severity == "error").any()
    flat = open_xfs(img, replay_log=False)  # as it lies: the new names are not there yet
    flat_live = set(flat.files().query("~deleted").path)
    assert len(flat_live) < len(want) // 2
    live = df[~df.deleted & (df.path != "/")]
    assert set(live[live.found_by == "journal"].path) == set(live.path) - flat_live
