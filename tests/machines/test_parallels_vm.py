"""Parallels ``.pvm`` bundles: snapshot names, dates and the tree from ``Snapshots.xml``,
disks from ``config.pvs`` (both written here from their documented layouts), the disk a
``.hdd`` bundle of Parallels images made by qemu-img/qemu-io. Reads are compared with
qemu-img's view of each image (``convert -O raw``, and ``map`` for what a delta holds)."""

from __future__ import annotations

import pytest

import vdinspect
from tests import machine_builder as mb
from tests.conftest import needs_qemu
from tests.qemu_tools import qemu_img, qemu_io, qemu_map, to_raw_bytes
from vdinspect.machines import detect_machine

SIZE = 4 << 20
BASE = "5fbaabe3-6958-40ff-92a7-860e329aab41"
S1 = "1a2b3c4d-0000-4000-8000-000000000001"
TOP = "1a2b3c4d-0000-4000-8000-000000000002"

CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<ParallelsVirtualMachine dyn_lists="VirtualAppliance 0">
  <Identification><VmName>Windows 11</VmName></Identification>
  <Hardware>
    <Hdd id="0">
      <Index>0</Index><Enabled>1</Enabled><EmulatedType>1</EmulatedType>
      <SystemName>harddisk.hdd</SystemName><UserFriendlyName>harddisk.hdd</UserFriendlyName>
    </Hdd>
    <Hdd id="1">
      <Index>1</Index><Enabled>0</Enabled><EmulatedType>1</EmulatedType>
      <SystemName>disabled.hdd</SystemName>
    </Hdd>
  </Hardware>
</ParallelsVirtualMachine>
"""

SNAPSHOTS = f"""<?xml version="1.0" encoding="UTF-8"?>
<ParallelsSavedStates>
  <SavedStateItem guid="">
    <Name></Name><DateTime></DateTime><Creator></Creator><ScreenShot></ScreenShot>
    <Description></Description>
    <SavedStateItem guid="{{{BASE}}}">
      <Name>Fresh install</Name><DateTime>2024-03-01 09:15:00</DateTime>
      <Creator>alice</Creator><ScreenShot></ScreenShot>
      <Description><![CDATA[before updates]]></Description>
      <SavedStateItem guid="{{{S1}}}" current="yes">
        <Name>After updates</Name><DateTime>2024-03-02 18:00:30</DateTime>
        <Creator>alice</Creator><ScreenShot></ScreenShot><Description><![CDATA[]]></Description>
      </SavedStateItem>
    </SavedStateItem>
  </SavedStateItem>
</ParallelsSavedStates>
"""


def overlay(base: bytes, delta_path, tmp) -> bytes:
    """``delta`` over ``base`` as qemu-img sees the delta's own clusters."""
    out = bytearray(base)
    raw = to_raw_bytes(delta_path, tmp)
    for e in qemu_map(delta_path):
        if e.get("data"):
            out[e["start"]:e["start"] + e["length"]] = raw[e["start"]:e["start"] + e["length"]]
    return bytes(out)


@pytest.fixture
def pvm(tmp_path):
    vm = tmp_path / "Windows 11.pvm"
    hdd = vm / "harddisk.hdd"
    hdd.mkdir(parents=True)
    files = {}
    for k, g in enumerate((BASE, S1, TOP)):
        f = hdd / f"harddisk.hdd.0.{{{g}}}.hds"
        qemu_img("create", "-q", "-f", "parallels", str(f), str(SIZE))
        qemu_io(f, f"write -P {0x30 + k} {k * 1024}k 64k", "write -P 0x7e 3M 4k" if k == 1
                else f"write -P {0x40 + k} 2M 4k", fmt="parallels")
        files[g] = f
    mb.write(hdd / "DiskDescriptor.xml", mb.hdd_descriptor(
        SIZE // 512, [(0, SIZE // 512, 2048, [(g, "Compressed", f.name)
                                             for g, f in files.items()])],
        [(BASE, None), (S1, BASE), (TOP, S1)], top=TOP))
    (vm / "config.pvs").write_text(CONFIG)
    (vm / "Snapshots.xml").write_text(SNAPSHOTS)
    raw0 = to_raw_bytes(files[BASE], tmp_path)
    raw1 = overlay(raw0, files[S1], tmp_path)
    raw2 = overlay(raw1, files[TOP], tmp_path)
    return vm, [raw0, raw1, raw2]


@needs_qemu
def test_pvm_snapshot_names_dates_and_tree(pvm):
    vm, raws = pvm
    assert detect_machine(vm) == "parallels_vm"
    for path in (vm, vm / "config.pvs"):
        with vdinspect.open(path) as d:
            assert d.read(0, SIZE) == raws[2]
            snaps = d.snapshots()
            named = snaps[snaps["name"].notna()]
            assert named["name"].tolist() == ["Fresh install", "After updates"]
            assert named["id"].tolist() == [BASE, S1]
            assert named["parent"].tolist()[1] == BASE
            assert str(named["created"].iloc[0]) == "2024-03-01 09:15:00+00:00"
            assert named["description"].iloc[0] == "before updates"
    with vdinspect.open(vm, snapshot="Fresh install") as d:
        assert d.read(0, SIZE) == raws[0]
    with vdinspect.open(vm, snapshot="after updates") as d:
        assert d.read(0, SIZE) == raws[1]
    with vdinspect.open(vm, snapshot=S1.upper()) as d:
        assert d.read(0, SIZE) == raws[1]
    with pytest.raises(vdinspect.NotFound, match="no snapshot 'nope'"):
        vdinspect.open(vm, snapshot="nope")
    with pytest.raises(vdinspect.InvalidArgument):  # the second Hdd is disabled
        vdinspect.open(vm, disk=1)
