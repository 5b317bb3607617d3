"""disk.explain(<table>): each entry decoded, checked against qemu-img map's host offsets."""

from __future__ import annotations

import json
import struct

import pytest

import vdinspect
from tests.conftest import SAMPLE_IMAGES


def qemu_map(name: str) -> list[dict]:
    return json.loads((SAMPLE_IMAGES / f"{name}.map.json").read_text())


def host_of(name: str, guest: int) -> int | None:
    """qemu-img's host offset for a guest offset in the image itself (depth 0), or None."""
    for e in qemu_map(name):
        if e["start"] <= guest < e["start"] + e["length"] and e["depth"] == 0 and e["data"]:
            return e["offset"] + guest - e["start"] if "offset" in e else None
    return None


def test_qcow2_l2_entries_match_qemu_map():
    name = "chain-top.qcow2"
    with vdinspect.open(SAMPLE_IMAGES / name) as disk:
        e = disk.explain("L2 table 0")
        raw = (SAMPLE_IMAGES / name).read_bytes()
        cs = disk.info()["cluster_size"]
        assert e.host_offset % cs == 0 and len(e.frame) == min(cs // 8, 256)
        for i, row in e.frame.iterrows():
            # the raw column is the file's bytes at the table's place (independent struct read)
            (v,) = struct.unpack_from(">Q", raw, e.host_offset + 8 * i)
            assert row["value"] == v
            want = host_of(name, i * cs)
            off = v & 0x00FFFFFFFFFFFE00
            if want is not None:  # qemu says this cluster is data in this file, at `want`
                assert row["meaning"].startswith(f"data cluster at {want:#x}")
            elif v & 1:
                assert row["meaning"].startswith("zero cluster")
            elif off == 0:
                assert row["meaning"].startswith("unallocated")


def test_qcow2_l1_and_refcount_table():
    with vdinspect.open(SAMPLE_IMAGES / "chain-top.qcow2") as disk:
        l1 = disk.explain("L1 table").frame
        st = disk.structures()
        st = st[st["layer"] == len(disk.layers()) - 1].set_index("name")  # the top image's
        l2_at = int(st.loc["L2 table 0", "host_offset"])
        assert l1["meaning"].iloc[0].startswith(f"L2 table at {l2_at:#x}")
        rt = disk.explain("refcount table").frame
        rb_at = int(st.loc["refcount block 0", "host_offset"])
        assert rt["meaning"].iloc[0] == f"refcount block at {rb_at:#x}"


def test_vhd_bat_matches_qemu_map():
    with vdinspect.open(SAMPLE_IMAGES / "vhd-dynamic.vhd") as disk:
        bat = disk.explain("BAT").frame
        # block 0: the sector bitmap (512 bytes), then the data qemu maps guest 0 to
        sector = bat["value"].iloc[0]
        assert sector * 512 + 512 == host_of("vhd-dynamic.vhd", 0)
        assert (bat["value"].iloc[1:] == 0xFFFFFFFF).all()
        assert (bat["meaning"].iloc[1:] == "unallocated block").all()


@pytest.mark.parametrize("name", ["vmdk-sparse.vmdk"])
def test_vmdk_grain_table_matches_qemu_map(name):
    with vdinspect.open(SAMPLE_IMAGES / name) as disk:
        gt = disk.explain("grain table 0").frame
        grain = 65536  # qemu-img's default grain (128 sectors)
        for i, row in gt.iterrows():
            want = host_of(name, i * grain)
            if want is not None:
                assert row["value"] * 512 == want, i
            elif row["value"] == 0:
                assert row["meaning"].startswith("unallocated")


def test_unknown_table_name_is_a_clear_error():
    with vdinspect.open(SAMPLE_IMAGES / "vdi-dynamic.vdi") as disk:
        assert disk.explain("block map").frame["meaning"].iloc[0] == "data block number 0"
        with pytest.raises(vdinspect.InvalidArgument):
            disk.explain("no such table")
