"""XFS log intents left open in a dirty log, carried out as a mount's recovery would.

Logs are built from the specification (tests/xfs_log_builder.py) over an mkfs.xfs -p
image; ``xfs_logprint -t`` must decode the intents as built (an independent reader of the
builder), the extents come from ``xfs_db``, and the expectations follow the
specification's rule: an EFI without its EFD frees its extents, a BUI without its BUD maps
or unmaps its extent in the owner's fork; closed intents change nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import xfs_log_builder as B
from tests.conftest import have
from tests.filesystems.test_xfs import MiB, db_ls, db_print, flat_proto, mkxfs, xfs_db
from tests.tools import run
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
    sb = db_print(img, "sb 0")
    agblocks, agblklog = int(sb["agblocks"]), int(sb["agblklog"])
    logstart = int(sb["logstart"])
    log_at = ((logstart >> agblklog) * agblocks + (logstart & ((1 << agblklog) - 1))) * BS
    uuid = bytes.fromhex(sb["uuid"].replace("-", ""))
    ino = {n: i for n, (i, _t) in db_ls(img, "/").items()}
    ext = {n: _fsb_extents(img, ino[n]) for n in content}
    assert [len(ext[n]) for n in content] == [1] * 5  # one extent each
    fsb = {n: ext[n][0][1] for n in content}
    reflink = "reflink" in run("xfs_info", img) and "reflink=1" in run("xfs_info", img)

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
    dirty.write_bytes(bytes(raw))
    return dict(img=img, dirty=dirty, ino=ino, fsb=fsb, content=content, block=block,
                reflink=reflink, outside=outside, head=w.head)


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
    free = fs.free_ranges()
    if not built["reflink"]:  # without shared extents the unmapped block is freed
        assert _covered(free, a_block * BS, BS)
    flat = XfsFileSystem(FileSource(built["dirty"]), replay_log=False)
    assert flat.read("/a") == c["a"]
    assert XfsFileSystem(FileSource(built["img"])).read("/a") == c["a"]
