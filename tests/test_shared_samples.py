"""Real QCOW2 images from ../shared/samples against the values in its MANIFEST.md."""

from __future__ import annotations

import hashlib

import pytest

import vdinspect
from tests.conftest import SHARED_SAMPLES, needs_shared

pytestmark = needs_shared


def disk_sha256(disk) -> str:
    h = hashlib.sha256()
    pos = 0
    while pos < disk.size:
        n = min(4 << 20, disk.size - pos)
        h.update(disk.read(pos, n))
        pos += n
    return h.hexdigest()


@pytest.mark.parametrize("name, size, raw_sha256", [
    ("ext2.qcow2", 4194304,
     "a6c2f0e39afe6c6ab432ca5465349fcefe8dc944398e97b2d957d3f89dbb5d80"),
    ("windows_volume.qcow2", 35913728,
     "44abe9deca9658f331a2bdba2deb53192d04f35d157a1fb3ba0597b03f0524f2"),
])
def test_dfvfs_qcow2_raw_sha256(name, size, raw_sha256):
    with vdinspect.open(SHARED_SAMPLES / "dfvfs" / "test_data" / name) as disk:
        info = disk.info()
        assert info["format"] == "qcow2" and info["subformat"] == "v3"
        assert info["virtual_size"] == size
        assert disk.check().empty
        assert disk_sha256(disk) == raw_sha256


def test_dfvfs_ext2_passwords_file_bytes():
    # The manifest's content of /passwords.txt must be somewhere on the ext2 disk.
    text = (b"place,user,password\nbank,joesmith,superrich\nalarm system,-,1234\n"
            b"treasure chest,-,1111\nuber secret laire,admin,admin\n")
    with vdinspect.open(SHARED_SAMPLES / "dfvfs" / "test_data" / "ext2.qcow2") as disk:
        assert text in disk.read(0, disk.size)


def test_libqcow_header_fragment():
    """libqcow's header fragment: v3, 64 KiB clusters, 4 MiB, feature table with 'dirty bit'."""
    from vdinspect.containers import qcow2

    frag = (SHARED_SAMPLES / "libyal-fragments" / "libqcow" / "file_header.1").read_bytes()
    assert qcow2.probe(frag)
    h = qcow2.QCowHeader.parse(frag)
    v3 = qcow2.QCowHeaderV3.parse(frag[72:104])
    assert (h.version, h.cluster_bits, h.size) == (3, 16, 4 << 20)
    assert v3.header_length == 104 and v3.refcount_order == 4
    ext = qcow2.HeaderExtension.parse(frag[104:112])
    assert ext.type == qcow2.EXT_FEATURE_NAMES
    entry = qcow2.FeatureNameEntry.parse(frag[112:160])
    assert entry.name.rstrip(b"\0") == b"dirty bit"
