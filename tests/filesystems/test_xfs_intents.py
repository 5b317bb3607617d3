"""XFS log intents left open in a dirty log, carried out as a mount's recovery would.

Logs are built from the specification (tests/xfs_log_builder.py) over an mkfs.xfs -p
image; ``xfs_logprint -t`` must decode the intents as built (an independent reader of the
builder), the extents come from ``xfs_db``, and the expectations follow the
specification's rule: an EFI without its EFD frees its extents, a BUI without its BUD maps
or unmaps its extent in the owner's fork (an unmap frees nothing); closed intents change
nothing. Logs holding only intents the kernel accepts are also recovered by the kernel
(a mount of a copy): what it reads and leaves free is the oracle.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests import xfs_log_builder as B
from tests.conftest import have
from tests.filesystems.test_xfs import MiB, db_ls, db_print, flat_proto, mkxfs, xfs_db
from tests.tools import run, write_sparse
from vdinspect.filesystems.xfs import XfsFileSystem
from vdinspect.io import FileSource

BS = 4096


def _fsb_extents(img: Path, ino: int) -> list[tuple[int, int, int]]:
    """(logical block, fsblock, blocks) of a data fork, from xfs_db bmap."""
    text = xfs_db(img, f"inode {ino}", "bmap")
    return [tuple(map(int, m.groups())) for m in re.finditer(
        r"data offset (\d+) startblock (\d+) \(\d+/\d+\) count (\d+)", text)]


@pytest.fixture(scope="module", params=["v5", "v4"])
def built(request, tmp_path_factory):
    if not have("mkfs.xfs", "xfs_db", "xfs_logprint"):
        pytest.skip("needs xfsprogs")
    d = tmp_path_factory.mktemp("xfsint_" + request.param)
    content = {"a": b"A" * 8192, "b": bytes(range(256)) * 32, "c": b"C" * 4096,
               "d": b"D" * 12288, "e": b"E" * 4096}
    flat_proto(d, content)
    opts = ["-m", "crc=0"] if request.param == "v4" else []
    img = mkxfs(d / "clean.img", d / "proto", ["-b", f"size={BS}", *opts], size=32 * MiB)
    sb, agblocks, agblklog, log_at = _log_place(img)
    uuid = bytes.fromhex(sb["uuid"].replace("-", ""))
    ino = {n: i for n, (i, _t) in db_ls(img, "/").items()}
    ext = {n: _fsb_extents(img, ino[n]) for n in content}
    assert [len(ext[n]) for n in content] == [1] * 5  # one extent each
    fsb = {n: ext[n][0][1] for n in content}

    def block(f: int) -> int:  # linear block of a fsblock number
        return (f >> agblklog) * agblocks + (f & ((1 << agblklog) - 1))

    outside = (int(sb["agcount"]) << agblklog)  # AG number past the last AG
    w = B.LogWriter(uuid, start=2, size=int(sb["logblocks"]) * BS // B.BB)
    ops = []
    ops += B.transaction(0x101, [B.efi_item(0x11, [(fsb["d"], 3)])])  # open: frees /d
    ops += B.transaction(0x102, [B.efi_item(0x12, [(fsb["e"], 1)], packed=True)])
    ops += B.transaction(0x103, [B.efi_item(0x12, [(fsb["e"], 1)], done=True)])  # closed
    ops += B.transaction(0x104, [B.bui_item(0x21, ino["a"], fsb["a"], 0, 1, B.BMAP_UNMAP)])
    ops += B.transaction(0x105, [B.bui_item(0x22, ino["a"], fsb["b"], 0, 1, B.BMAP_MAP)])
    ops += B.transaction(0x106, [B.bui_item(0x23, ino["c"], fsb["c"], 0, 1, B.BMAP_UNMAP)])
    ops += B.transaction(0x107, [B.done_item(B.LI_BUD, 0x23)])  # closed: /c unchanged
    ops += B.transaction(0x108, [B.rui_item(0x31, ino["a"], fsb["b"], 0, 1, 1)])
    ops += B.transaction(0x109, [B.efi_item(0x13, [(outside, 1)])])  # bad: dropped
    ops += B.transaction(0x10A, [B.bui_item(0x24, ino["c"], fsb["c"], 0, 1, 7)])  # bad type
    w.record(ops)
    raw = bytearray(img.read_bytes())
    w.apply(raw, log_at)
    dirty = d / "dirty.img"
    write_sparse(dirty, raw)
    return dict(img=img, dirty=dirty, ino=ino, fsb=fsb, content=content, block=block,
                outside=outside, head=w.head)


@pytest.mark.skipif(not have("xfs_logprint"), reason="needs xfsprogs")
def test_logprint_reads_the_intents_as_built(built):
    out = run("xfs_logprint", "-t", built["dirty"])
    assert "<DIRTY>" in out
    m = re.search(r"log tail: (\d+) head: (\d+)", out)
    assert m and (int(m.group(1)), int(m.group(2))) == (2, built["head"])
    tids = [int(x, 16) for x in re.findall(r"TRANS: tid:(0x[0-9a-f]+)\s+#items:", out)]
    assert tids == list(range(0x101, 0x10B))
    efis = re.findall(r"EFI:\s+#regs:\s*\d+\s+num_extents:\s*(\d+)\s+id:\s*(0x[0-9a-f]+)",
                      out)
    assert [(int(n), int(i, 16)) for n, i in efis] == [(1, 0x11), (1, 0x12), (1, 0x13)]
    efds = re.findall(r"EFD:\s+#regs:\s*\d+\s+num_extents:\s*(\d+)\s+id:\s*(0x[0-9a-f]+)",
                      out)
    assert [(int(n), int(i, 16)) for n, i in efds] == [(1, 0x12)]
    starts = [int(s, 16) for s in re.findall(r"\(s: (0x[0-9a-f]+), l: \d+\)", out)]
    assert starts[:2] == [built["fsb"]["d"], built["fsb"]["e"]]
    buis = re.findall(r"BUI:\s+#regs:\s*\d+\s+num_extents:\s*\d+\s+id:\s*(0x[0-9a-f]+)", out)
    assert [int(i, 16) for i in buis] == [0x21, 0x22, 0x23, 0x24]
    assert [int(i, 16) for i in re.findall(r"BUD:\s+#regs:\s*\d+\s+id:\s*(0x[0-9a-f]+)",
                                           out)] == [0x23]
    assert re.search(r"RUI:\s+#regs:\s*\d+\s+num_extents:\s*1\s+id:\s*0x31", out)
    maps = [(int(s, 16), int(n), int(o), int(off), int(f, 16)) for s, n, o, off, f in
            re.findall(r"\(s: (0x[0-9a-f]+), l: (\d+), own: (\d+), off: (\d+), "
                       r"f: (0x[0-9a-f]+)\)", out)]
    fsb, ino = built["fsb"], built["ino"]
    assert maps[:3] == [(fsb["a"], 1, ino["a"], 0, B.BMAP_UNMAP),
                        (fsb["b"], 1, ino["a"], 0, B.BMAP_MAP),
                        (fsb["c"], 1, ino["c"], 0, B.BMAP_UNMAP)]


def _covered(ranges: list[tuple[int, int]], start: int, length: int) -> bool:
    return any(o <= start and start + length <= o + n for o, n in ranges)


def test_open_efi_frees_its_extents(built):
    fs = XfsFileSystem(FileSource(built["dirty"]))
    d_at = built["block"](built["fsb"]["d"]) * BS
    e_at = built["block"](built["fsb"]["e"]) * BS
    free = fs.free_ranges()
    assert _covered(free, d_at, 3 * BS)  # EFI 0x11 has no EFD
    assert not any(o < e_at + BS and e_at < o + n for o, n in free)  # EFI 0x12 was closed
    flat = XfsFileSystem(FileSource(built["dirty"]), replay_log=False)
    assert not _covered(flat.free_ranges(), d_at, BS)
    state = fs.info()["log_state"]
    assert "open intents carried out: 2 BUI, 1 EFI" in state
    assert "not applied: 1 BUI, 1 EFI, 1 RUI" in state
    rows = fs.check()
    intents = rows[rows.structure == "log intent"]
    assert set(intents.severity) == {"error", "warning"}
    assert any("RUI 0x31" in m for m in intents.message)
    assert any("EFI 0x13" in m and "dropped" in m for m in intents.message)
    assert any("BUI 0x24" in m and "flags 0x7" in m for m in intents.message)


def test_open_bui_maps_and_unmaps(built):
    fs = XfsFileSystem(FileSource(built["dirty"]))
    c = built["content"]
    # BUI 0x21 unmapped /a's first block, BUI 0x22 mapped /b's first block there
    assert fs.read("/a") == c["b"][:BS] + c["a"][BS:]
    got = [(r["logical"], r["physical"], r["length"]) for r in fs.extents("/a")]
    a_block = built["block"](built["fsb"]["a"])
    assert got == [(0, built["block"](built["fsb"]["b"]) * BS, BS),
                   (BS, (a_block + 1) * BS, BS)]
    assert fs.read("/c") == c["c"]  # BUI 0x23 was closed by its BUD
    # an UNMAP frees nothing, reflink or not (the kernel's XFS_BMAPI_REMAP; checked
    # against the kernel's recovery in test_open_bui_against_the_kernel)
    assert not any(o < (a_block + 1) * BS and a_block * BS < o + n
                   for o, n in fs.free_ranges())
    flat = XfsFileSystem(FileSource(built["dirty"]), replay_log=False)
    assert flat.read("/a") == c["a"]
    assert XfsFileSystem(FileSource(built["img"])).read("/a") == c["a"]


def _log_place(img: Path) -> tuple[dict, int, int, int]:
    """(superblock as xfs_db prints it, agblocks, agblklog, the log's byte offset): the
    internal log's filesystem block number turned into a place in the image."""
    sb = db_print(img, "sb 0")
    agblocks, agblklog = int(sb["agblocks"]), int(sb["agblklog"])
    logstart = int(sb["logstart"])
    return sb, agblocks, agblklog, ((logstart >> agblklog) * agblocks
                                    + (logstart & ((1 << agblklog) - 1))) * BS


def kernel_reads(kernel: Path, mnt: Path, names) -> dict[str, bytes]:
    """The bytes of ``names`` as the kernel has them after it mounts ``kernel`` (a copy:
    the mount recovers its log); skips the test when the kernel refuses the mount."""
    if subprocess.run(["mount", "-o", "loop", str(kernel), str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("the kernel refused to recover the log")
    try:
        return {n: (mnt / n).read_bytes() for n in names}
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def xfs_db_freesp(img: Path, agblocks: int, agcount: int) -> list[tuple[int, int]]:
    """Free extents as xfs_db's ``freesp -d`` lists them, less the blocks on each AG's
    free list (AGFL: xfs_db counts them, they are reserved for the btrees): (byte offset,
    bytes), merged."""
    agfl = set()
    for ag in range(agcount):
        text = run("xfs_db", "-r", "-c", f"agfl {ag}", "-c", "p bno", img)
        agfl |= {(ag, int(b)) for b in re.findall(r"\d+:(\d+)", text)}
    out: list[tuple[int, int]] = []
    for ag, agbno, n in re.findall(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s*$",
                                   run("xfs_db", "-r", "-c", "freesp -d", img), re.M):
        if int(n) == 1 and (int(ag), int(agbno)) in agfl:
            continue
        at, n = (int(ag) * agblocks + int(agbno)) * BS, int(n) * BS
        if out and out[-1][0] + out[-1][1] == at:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((at, n))
    return out


@pytest.mark.xdist_group("kernel-mounts")
@pytest.mark.parametrize("features", ["reflink=1", "reflink=0", "reflink=0,rmapbt=1",
                                      "torn"])
def test_open_bui_against_the_kernel(tmp_path, features):
    """Open BUIs alone (UNMAP of /a's first block, MAP of /b's there but with rmapbt) in a
    log the kernel accepts: its recovery (a mount of a copy) is the oracle for what /a reads and which
    blocks are free. A BUI UNMAP frees nothing (the kernel unmaps with XFS_BMAPI_REMAP:
    freeing, or a refcount decrease with reflink, is a separate EFI/CUI), so the free
    space the kernel leaves is the one vdinspect shows, with reflink or without."""
    import os
    import subprocess

    if os.geteuid() != 0 or not have("mkfs.xfs", "xfs_db", "mount"):
        pytest.skip("needs root, xfsprogs and mount")
    content = {"a": b"A" * 8192, "b": bytes(range(256)) * 32}
    flat_proto(tmp_path, content)
    torn = features == "torn"  # h_len short of the data the CRC covers: a torn record
    img = mkxfs(tmp_path / "clean.img", tmp_path / "proto",
                ["-b", f"size={BS}", "-m", "reflink=1" if torn else features, "-l",
                 "size=8m"], size=48 * MiB)
    sb, agblocks, agblklog, log_at = _log_place(img)
    ino = {n: i for n, (i, _t) in db_ls(img, "/").items()}
    fsb = {n: _fsb_extents(img, ino[n])[0][1] for n in content}
    w = B.LogWriter(bytes.fromhex(sb["uuid"].replace("-", "")), start=2,
                    size=int(sb["logblocks"]) * BS // B.BB)
    ops = B.transaction(0x201, [B.bui_item(0x41, ino["a"], fsb["a"], 0, 1, B.BMAP_UNMAP)])
    remap = "rmapbt" not in features  # a second owner of /b's block: rmapbt refuses it
    if remap:
        ops += B.transaction(0x202, [B.bui_item(0x42, ino["a"], fsb["b"], 0, 1,
                                                B.BMAP_MAP)])
    w.record(ops, short_len=torn)
    raw = bytearray(img.read_bytes())
    w.apply(raw, log_at)
    dirty = tmp_path / "dirty.img"
    write_sparse(dirty, raw)
    fs = XfsFileSystem(FileSource(dirty))
    if torn:  # the kernel takes the record as torn and replays nothing
        assert "fails its CRC-32C" in " ".join(fs.check().message)
    ours = fs.read("/a")
    our_free = fs.free_ranges()
    kernel = tmp_path / "kernel.img"
    write_sparse(kernel, raw)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-o", "loop", str(kernel), str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("the kernel refused to recover the log")
    try:
        theirs = (mnt / "a").read_bytes()
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    first = content["b"][:BS] if remap else bytes(BS)  # mapped there, or a hole
    assert ours == theirs == (content["a"] if torn else first + content["a"][BS:])
    assert our_free == xfs_db_freesp(kernel, agblocks, int(sb["agcount"]))
    a_at = (fsb["a"] >> agblklog) * agblocks + (fsb["a"] & ((1 << agblklog) - 1))
    assert not _covered(our_free, a_at * BS, BS)  # unmapped, not freed


@pytest.mark.xdist_group("kernel-mounts")
@pytest.mark.parametrize("shared", [False, True], ids=["own", "shared"])
def test_open_cui_against_the_kernel(tmp_path, shared):
    """A reflink unmap cut short: an open BUI UNMAP of /a's first block and an open CUI
    decreasing its refcount (how a remap logs them). The kernel's recovery (a mount of a
    copy) frees the block when /a owned it alone, and only lowers the count when a
    reflinked copy (``cp --reflink``, made by the kernel before the log) shares it;
    vdinspect's free space equals what xfs_db lists after that recovery, in both cases."""
    import os
    import subprocess

    if os.geteuid() != 0 or not have("mkfs.xfs", "xfs_db", "mount", "cp"):
        pytest.skip("needs root, xfsprogs and mount")
    content = {"a": b"A" * 8192, "b": bytes(range(256)) * 32}
    flat_proto(tmp_path, content)
    img = mkxfs(tmp_path / "clean.img", tmp_path / "proto",
                ["-b", f"size={BS}", "-m", "reflink=1", "-l", "size=8m"], size=48 * MiB)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if shared:
        if subprocess.run(["mount", "-o", "loop", str(img), str(mnt)],
                          capture_output=True).returncode:
            pytest.skip("loop mount refused here")
        try:
            run("cp", "--reflink=always", mnt / "a", mnt / "s")
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
        # a fresh log in cycle 3 (the mount stamped metadata with LSNs of cycle 1):
        # records from block 2, as after mkfs
        run("xfs_db", "-x", "-c", "logformat -c 3", img)
    sb, agblocks, agblklog, log_at = _log_place(img)
    ino = {n: i for n, (i, _t) in db_ls(img, "/").items()}
    fsb_a = _fsb_extents(img, ino["a"])[0][1]
    if shared:
        assert _fsb_extents(img, ino["s"])[0][1] == fsb_a  # one extent, two owners
    w = B.LogWriter(bytes.fromhex(sb["uuid"].replace("-", "")), start=2,
                    cycle=3 if shared else 1, size=int(sb["logblocks"]) * BS // B.BB)
    w.record(B.transaction(0x301, [
        B.bui_item(0x51, ino["a"], fsb_a, 0, 1, B.BMAP_UNMAP),
        B.cui_item(0x52, [(fsb_a, 1, B.REFCOUNT_DECREASE)])]))
    raw = bytearray(img.read_bytes())
    w.apply(raw, log_at)
    dirty = tmp_path / "dirty.img"
    write_sparse(dirty, raw)
    fs = XfsFileSystem(FileSource(dirty))
    assert "open intents carried out: 1 BUI, 1 CUI" in fs.info()["log_state"]
    ours = {n: fs.read("/" + n) for n in (["a", "s"] if shared else ["a"])}
    our_free = fs.free_ranges()
    kernel = tmp_path / "kernel.img"
    write_sparse(kernel, raw)
    theirs = kernel_reads(kernel, mnt, ours)
    assert ours == theirs
    assert ours["a"] == bytes(BS) + content["a"][BS:]  # the first block unmapped: a hole
    assert our_free == xfs_db_freesp(kernel, agblocks, int(sb["agcount"]))
    a_at = ((fsb_a >> agblklog) * agblocks + (fsb_a & ((1 << agblklog) - 1))) * BS
    assert _covered(our_free, a_at, BS) != shared  # freed only when /a owned it alone


@pytest.mark.parametrize("reflink", [True, False])
def test_bad_cui_is_dropped(tmp_path, reflink):
    """CUIs the kernel rejects (an unknown type, an extent past the volume, any CUI on a
    volume without reflink) are dropped whole with an error finding and free nothing;
    a good one on a reflink volume frees the block it leaves with no owner."""
    if not have("mkfs.xfs", "xfs_db"):
        pytest.skip("needs xfsprogs")
    flat_proto(tmp_path, {"a": b"A" * 8192})
    img = mkxfs(tmp_path / "clean.img", tmp_path / "proto",
                ["-b", f"size={BS}", "-m", f"reflink={int(reflink)}"], size=32 * MiB)
    sb, agblocks, agblklog, log_at = _log_place(img)
    ino = {n: i for n, (i, _t) in db_ls(img, "/").items()}
    fsb_a = _fsb_extents(img, ino["a"])[0][1]
    w = B.LogWriter(bytes.fromhex(sb["uuid"].replace("-", "")), start=2,
                    size=int(sb["logblocks"]) * BS // B.BB)
    past = int(sb["agcount"]) << agblklog
    w.record(B.transaction(0x401, [B.cui_item(0x61, [(fsb_a, 1, 9)])])
             + B.transaction(0x402, [B.cui_item(0x62, [(past, 1, B.REFCOUNT_DECREASE)])])
             + B.transaction(0x403, [B.cui_item(0x63, [(fsb_a + 1, 1,
                                                         B.REFCOUNT_DECREASE)])]))
    raw = bytearray(img.read_bytes())
    w.apply(raw, log_at)
    dirty = tmp_path / "dirty.img"
    write_sparse(dirty, raw)
    fs = XfsFileSystem(FileSource(dirty))
    rows = fs.check()
    dropped = rows[(rows.structure == "log intent") & (rows.severity == "error")].message
    ids = sorted(int(m.split()[1].rstrip(":"), 16) for m in dropped)
    assert ids == ([0x61, 0x62] if reflink else [0x61, 0x62, 0x63])
    a_at = ((fsb_a >> agblklog) * agblocks + (fsb_a & ((1 << agblklog) - 1))) * BS
    free = fs.free_ranges()
    assert not _covered(free, a_at, BS)  # no good CUI names /a's first block
    assert _covered(free, a_at + BS, BS) == reflink  # CUI 0x63: its only owner gone
    assert fs.read("/a") == b"A" * 8192  # a refcount changes no mapping
