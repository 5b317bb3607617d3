"""ovftool's streamOptimized disks carry metadata markers of a type (4) the VMDK 5.0
specification does not name; qemu-img ignores them and so must we (no error in check()).
Reads are compared with ``qemu-img convert`` of the same member."""

from __future__ import annotations

import gzip
import json
import subprocess
import tarfile

import pytest

import vdinspect
from tests.conftest import SHARED_SAMPLES, needs_qemu

VK = SHARED_SAMPLES / "cyberus-technology-virtualbox-kvm" / "ValidationKit-tests-api"
needs_vk = pytest.mark.skipif(not VK.is_dir(), reason="shared samples absent")


def unpack_member(ova, name, tmp_path):
    with tarfile.open(ova) as t:
        data = gzip.decompress(t.extractfile(name).read())
    out = tmp_path / name.removesuffix(".gz")
    out.write_bytes(data)
    return out


@needs_vk
@needs_qemu
@pytest.mark.parametrize("ova,member,markers", [
    ("tdAppliance1-t4.ova", "tdAppliance1-t4-disk1.vmdk.gz", 4),
    ("tdAppliance1-t6.ova", "tdAppliance1-t6-disk1.vmdk.gz", 3)])
def test_ovftool_type4_markers_are_skipped(ova, member, markers, tmp_path):
    vmdk = unpack_member(VK / ova, member, tmp_path)
    qcheck = subprocess.run(["qemu-img", "check", str(vmdk)], capture_output=True, text=True)
    assert qcheck.returncode == 0 and "No errors" in qcheck.stdout
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(vmdk), str(raw)], check=True)
    qmap = json.loads(subprocess.run(["qemu-img", "map", "--output=json", str(vmdk)],
                                     capture_output=True, text=True, check=True).stdout)
    data_ranges = [(m["start"], m["length"]) for m in qmap if m["data"]]
    for path in (vmdk, VK / ova):  # the member alone, and in place inside the package
        with vdinspect.open(path) as d:
            c = d.check()
            assert not (c.severity == "error").any(), c.message.tolist()
            unknown = [m for m in c.message if "specification does not name" in m]
            assert len(unknown) == 1 and unknown[0].split("metadata markers")[0].endswith(
                f"{markers} ")
            names = d.structures().name
            assert (names == "marker of unknown type 4").sum() == markers
            with open(raw, "rb") as f:
                for start, length in data_ranges:
                    f.seek(start)
                    assert d.read(start, length) == f.read(length)
            assert d.size == raw.stat().st_size
