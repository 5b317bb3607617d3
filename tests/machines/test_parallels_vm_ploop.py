"""A ``.pvm`` bundle laid out as ploop (Virtuozzo's disk library, which Parallels Desktop
shares) writes snapshots: the facts, from ploop's snapshot.c and libploop.h, are

- the top (running) image's GUID is always ``{5fbaabe3-6958-40ff-92a7-860e329aab41}``
  (``TOPDELTA_UUID``: "Parallels use this UUID to mark top delta"), and ``TopGUID`` names it;
- taking snapshot S renames the GUID of the image that was on top to S (that image is now
  frozen) and adds a new top image, file ``<base file>.<new file guid>``, whose
  ``ParentGUID`` is S;
- vzctl gives ploop the snapshot's ``Snapshots.xml`` guid (``vzctl snapshot --id``; its
  restore scripts switch to the ``SavedStateItem`` marked ``current="yes"``).

So a snapshot's guid is the ``Shot`` GUID of the image it froze, and the top image is no
snapshot. Images are made by qemu-img/qemu-io and read back through qemu-img."""

from __future__ import annotations

import pandas as pd
import pytest

import vdinspect
from tests import machine_builder as mb
from tests.conftest import needs_qemu
from tests.machines.test_parallels_vm import CONFIG, overlay
from tests.qemu_tools import qemu_img, qemu_io, to_raw_bytes

SIZE = 4 << 20
TOPDELTA = "5fbaabe3-6958-40ff-92a7-860e329aab41"
S1 = "0d1e2f30-1111-4aaa-8bbb-000000000001"  # "Fresh install"
S2 = "0d1e2f30-2222-4aaa-8bbb-000000000002"  # "After updates"
FILE1 = "9c8b7a60-aaaa-4bbb-8ccc-000000000001"  # file guids of the two later deltas
FILE2 = "9c8b7a60-aaaa-4bbb-8ccc-000000000002"

SNAPSHOTS = f"""<?xml version="1.0" encoding="UTF-8"?>
<ParallelsSavedStates>
  <SavedStateItem guid="">
    <Name></Name><DateTime></DateTime><Description></Description>
    <SavedStateItem guid="{{{S1}}}">
      <Name>Fresh install</Name><DateTime>2024-03-01 09:15:00</DateTime>
      <Description><![CDATA[]]></Description>
      <SavedStateItem guid="{{{S2}}}" current="yes">
        <Name>After updates</Name><DateTime>2024-03-02 18:00:30</DateTime>
        <Description><![CDATA[]]></Description>
      </SavedStateItem>
    </SavedStateItem>
  </SavedStateItem>
</ParallelsSavedStates>
"""


@pytest.fixture
def ploop_pvm(tmp_path):
    vm = tmp_path / "Ubuntu.pvm"
    hdd = vm / "harddisk.hdd"
    hdd.mkdir(parents=True)
    base = f"harddisk.hdd.0.{{{TOPDELTA}}}.hds"  # named when it was the top image
    names = [base, f"{base}.{{{FILE1}}}", f"{base}.{{{FILE2}}}"]
    files = []
    for k, name in enumerate(names):
        f = hdd / name
        qemu_img("create", "-q", "-f", "parallels", str(f), str(SIZE))
        qemu_io(f, f"write -P {0x50 + k} {k * 512}k 64k", f"write -P {0x60 + k} 3M 4k",
                fmt="parallels")
        files.append(f)
    # after two snapshots: base image = S1, first delta = S2, second delta = the top
    images = [(S1, "Compressed", names[0]), (S2, "Compressed", names[1]),
              (TOPDELTA, "Compressed", names[2])]
    mb.write(hdd / "DiskDescriptor.xml", mb.hdd_descriptor(
        SIZE // 512, [(0, SIZE // 512, 2048, images)],
        [(S1, None), (S2, S1), (TOPDELTA, S2)], top=TOPDELTA))
    (vm / "config.pvs").write_text(CONFIG)
    (vm / "Snapshots.xml").write_text(SNAPSHOTS)
    raw0 = to_raw_bytes(files[0], tmp_path)
    raw1 = overlay(raw0, files[1], tmp_path)
    raw2 = overlay(raw1, files[2], tmp_path)
    return vm, [raw0, raw1, raw2]


@needs_qemu
def test_snapshot_guid_is_the_frozen_image(ploop_pvm):
    vm, raws = ploop_pvm
    with vdinspect.open(vm) as d:  # the running state: all three images
        assert d.read(0, SIZE) == raws[2]
        assert len(d.layers()) == 3
        snaps = d.snapshots()
        named = snaps[snaps["name"].notna()]
        assert named["id"].tolist() == [S1, S2]
        parents = named["parent"].tolist()
        assert pd.isna(parents[0]) and parents[1] == S1
        assert TOPDELTA not in set(named["id"])  # the top image is no snapshot
    with vdinspect.open(vm, snapshot="Fresh install") as d:  # S1 froze the base image
        assert d.read(0, SIZE) == raws[0] and len(d.layers()) == 1
    with vdinspect.open(vm, snapshot="After updates") as d:  # S2: base + first delta
        assert d.read(0, SIZE) == raws[1] and len(d.layers()) == 2
    assert raws[0] != raws[1] != raws[2]
