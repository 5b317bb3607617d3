"""Tables checked at open without numpy, decoded on first use: the Python check agrees
with plain interval arithmetic, and a table it finds unsound is refused at open (strict)
exactly as before. Images by qemu-img; entries patched at offsets the specifications give
(VHD: footer data_offset, dynamic header table_offset, big-endian; VDI 1.1: offBlocks at
340; Parallels: BAT at 64)."""

from __future__ import annotations

import random
import subprocess

import pytest

import vdinspect
from tests.conftest import have
from vdinspect.containers.base import misplaced, ranges_sound
from vdinspect.errors import CorruptImage


def _overlapping(starts, length, regions, size) -> bool:
    """The brute-force answer: any range outside the file, over a region or another."""
    rs = [(s, s + length) for s in starts]
    if any(a < 0 or b > size for a, b in rs):
        return True
    pairs = [(x, y) for i, x in enumerate(rs) for y in rs[i + 1:]]
    pairs += [(x, r) for x in rs for r in regions if r[0] < r[1]]
    return any(x[0] < y[1] and y[0] < x[1] for x, y in pairs)


def test_ranges_sound_is_interval_arithmetic():
    """Random tables (some cross-linked, over a region, past the end): ranges_sound is
    True exactly when no two ranges overlap and all lie inside the file, and then
    containers.base.misplaced (numpy) finds nothing either."""
    rng = random.Random(23)
    for _ in range(600):
        length = rng.choice([1, 4, 512, 4096])
        size = rng.randrange(length, 64 * length)
        starts = [rng.randrange(0, size + length) for _ in range(rng.randrange(0, 12))]
        regions = [(a, a + rng.randrange(0, 3 * length))
                   for a in (rng.randrange(0, size) for _ in range(rng.randrange(0, 3)))]
        want = not _overlapping(starts, length, regions, size)
        assert ranges_sound(starts, length, regions, size) == want, (starts, length, regions)
        if want:
            region, clash = misplaced(starts, [s + length for s in starts], regions)
            assert (region < 0).all() and not clash.any()


def _qemu(tmp_path, fmt: str, name: str):
    raw = tmp_path / "src.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(raw), "8M"], check=True)
    for off in ("0", "5M"):  # two blocks/clusters allocated
        subprocess.run(["qemu-io", "-f", "raw", "-c", f"write -P 0x33 {off} 4k", str(raw)],
                       check=True, capture_output=True)
    img = tmp_path / name
    subprocess.run(["qemu-img", "convert", "-O", fmt, str(raw), str(img)], check=True)
    return img


def _entries(data: bytes, fmt: str) -> tuple[int, int, str]:
    """(offset of the table, entry size, byte order) as the specification places it."""
    if fmt == "vpc":
        dyn = int.from_bytes(data[16:24], "big")  # footer copy: Data Offset
        return int.from_bytes(data[dyn + 16: dyn + 24], "big"), 4, "big"
    if fmt == "vdi":
        return int.from_bytes(data[340:344], "little"), 4, "little"
    return 64, 4, "little"  # parallels


@pytest.mark.skipif(not have("qemu-img", "qemu-io"), reason="qemu-img or qemu-io missing")
@pytest.mark.parametrize("fmt, name", [("vpc", "d.vhd"), ("vdi", "d.vdi"),
                                       ("parallels", "d.hdd")])
def test_cross_linked_entry_refused_at_open(tmp_path, fmt, name):
    """The last used entry made to name the first used entry's block: strict open raises
    CorruptImage on the table at that entry (no read needed); salvage opens and check()
    reports it; the sound image opens and reads as qemu-img reads it."""
    img = _qemu(tmp_path, fmt, name)
    back = tmp_path / "back.raw"
    subprocess.run(["qemu-img", "convert", "-f", fmt, "-O", "raw", str(img), str(back)],
                   check=True)
    want = back.read_bytes()
    with vdinspect.open(str(img)) as disk:
        assert disk.read(0, disk.size) == want
    data = bytearray(img.read_bytes())
    at, width, order = _entries(bytes(data), fmt)
    none = {"vpc": 0xFFFFFFFF, "vdi": 0xFFFFFFFF, "parallels": 0}[fmt]
    vals = [int.from_bytes(data[at + width * i: at + width * (i + 1)], order)
            for i in range(8)]
    used = [i for i, v in enumerate(vals) if v != none and v < 0xFFFFFFFE]
    assert len(used) == 2, vals
    data[at + width * used[1]: at + width * (used[1] + 1)] = data[
        at + width * used[0]: at + width * (used[0] + 1)]
    bad = tmp_path / f"bad-{name}"
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptImage) as e:
        vdinspect.open(str(bad))
    assert e.value.offset == at + width * used[1]
    with vdinspect.open(str(bad), strict=False) as disk:
        assert (disk.check()["severity"] != "info").any()


def test_set_by_sets_companions_once():
    """lazy.SetBy: the first read of any of the attributes runs the method once, which
    sets them all; an assignment (as an open-time decode makes) wins over the method."""
    from vdinspect.lazy import SetBy

    class T:
        a = SetBy("_fill")
        b = SetBy("_fill")
        calls = 0

        def _fill(self):
            self.calls += 1
            self.a, self.b = [1], [2]

    t = T()
    assert (t.b, t.a, t.calls) == ([2], [1], 1)
    u = T()
    u.a = "set at open"
    assert u.a == "set at open" and u.calls == 0
