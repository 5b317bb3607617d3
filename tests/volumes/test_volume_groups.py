"""LVM2 volume groups spread over several disk images opened together."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import vdinspect
from tests import volume_builder as vb

MiB = 1 << 20
EXT = 2048  # extent size, sectors (1 MiB)
PE_START = 2048  # first extent, sectors


def _pv_image(path, pv_uuid: str, text: str, tag: bytes) -> bytearray:
    buf = bytearray(6 * MiB)
    vb.stamp_sectors(buf, 0, len(buf), tag)
    vb.write_pv(buf, 0, len(buf), pv_uuid, text, pe_start=PE_START)
    path.write_bytes(bytes(buf))
    return buf


@pytest.fixture
def two_pvs(tmp_path):
    """An LV "vg/span": extents 1-2 of pv0 (disk A), then extents 0-2 of pv1 (disk B)."""
    u0, u1 = vb.lvm_uuid("pvA"), vb.lvm_uuid("pvB")
    pvs = [dict(uuid=u, dev_size=6 * MiB // 512, pe_start=PE_START, pe_count=4) for u in (u0, u1)]
    lvs = [vb.LV("span", [
        dict(start_extent=0, extent_count=2, type="striped", stripe_count=1,
             stripes=["pv0", 1]),
        dict(start_extent=2, extent_count=3, type="striped", stripe_count=1,
             stripes=["pv1", 0]),
    ])]
    text = vb.vg_text("vg", vg_id=vb.lvm_uuid("vg"), seqno=3, extent_size=EXT, pvs=pvs, lvs=lvs)
    a = _pv_image(tmp_path / "a.img", u0, text, b"diskA")
    b = _pv_image(tmp_path / "b.img", u1, text, b"diskB")
    data = PE_START * 512
    want = bytes(a[data + MiB : data + 3 * MiB]) + bytes(b[data : data + 3 * MiB])
    return tmp_path / "a.img", tmp_path / "b.img", want


def test_lv_across_two_images(two_pvs):
    a, b, want = two_pvs
    with vdinspect.open([a, b]) as group:
        parts = group.partitions()
        assert parts["disk"].tolist()[:2] == [0, 1]
        assert (parts["filesystem"].tolist()[:2]) == ["LVM2_member", "LVM2_member"]
        lv = parts[(parts["name"] == "vg/span").fillna(False)].iloc[0]
        assert lv["scheme"] == "lvm2" and lv["length"] == 5 * MiB
        src = group.volume("vg/span")
        assert src.read(0, src.size) == want  # the bytes placed on the two disks
        assert src.read(2 * MiB - 100, 300) == want[2 * MiB - 100 : 2 * MiB + 200]
        assert group.volume("1:disk").size == 6 * MiB
        with pytest.raises(vdinspect.InvalidArgument):
            group.volume(1)


def test_one_pv_alone_reports_the_missing_one(two_pvs):
    a, _, _ = two_pvs
    with vdinspect.open(a) as disk:
        vols = disk.volumes()
        assert any("not on this disk" in f["message"] for f in vols.check_rows())


@pytest.mark.skipif(not shutil.which("qemu-img"), reason="qemu-img missing")
def test_lv_across_images_of_different_formats(two_pvs, tmp_path):
    a, b, want = two_pvs
    q = tmp_path / "b.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(b), str(q)], check=True)
    v = tmp_path / "a.vmdk"
    subprocess.run(["qemu-img", "convert", "-O", "vmdk", str(a), str(v)], check=True)
    with vdinspect.open([v, q]) as group:
        src = group.volume("vg/span")
        assert src.read(0, src.size) == want
