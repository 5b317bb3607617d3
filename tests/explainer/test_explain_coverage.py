"""Issue 20 item 5: ``explain(name)`` works for every name ``structures()`` lists, for every
layer of every image in sample_images/, of the small real images in $VDINSPECT_SAMPLES
(bz2 ones decompressed into a temporary folder) and of the OVA/XVA packages.

An explanation starts where its ``structures()`` row says (packages hand their disk's
structures to the disk image, whose offsets are in the member). Structs' field values are
checked against the specifications in test_explain.py; rows no Struct describes (guest
data, compressed clusters, text) must still explain, showing their first bytes.
"""

from __future__ import annotations

import bz2
import os

import pytest

import vdinspect
from tests.conftest import SAMPLE_IMAGES, SHARED_SAMPLES
from tests.tools import run, write_sparse
from vdinspect.explainer import Explanation

SKIP_SUFFIXES = (".json", ".sha256", ".md", ".txt", ".py", ".data")
SHARED = [
    "dfvfs/test_data/ext2.qcow2", "dfvfs/test_data/ext2.vhd", "dfvfs/test_data/ext2.vmdk",
    "dfvfs/test_data/image.vhd", "dfvfs/test_data/windows_volume.qcow2",
    "SharpSevenZip/vdi.vdi", "ImHex-Patterns/vhd.hexpat.vhd", "AGPL-xo-vmdk-to-vhd/test.vmdk",
    "strozfriedberg-vmdk-rs/data/monolithicSparse.vmdk",
    "strozfriedberg-vmdk-rs/data/streamOptimizedWithMarkers.vmdk",
    "strozfriedberg-vmdk-rs/data/twoGbMaxExtentSparse.vmdk",
    "cyberus-technology-virtualbox-kvm/ValidationKit-tests-api/tdAppliance1-t4.ova",
    "qemu-iotests-v7.2.0/sample_images/iotest-dynamic-1G.vhdx.bz2",
    "qemu-iotests-v7.2.0/sample_images/iotest-version3.vmdk.bz2",
    "qemu-iotests-v7.2.0/sample_images/parallels-with-bitmap.bz2",
    "qemu-iotests-v7.2.0/sample_images/test-disk2vhd.vhdx.bz2",
]


def sample_paths() -> list[str]:
    return sorted(p.name for p in SAMPLE_IMAGES.iterdir()
                  if p.is_file() and not p.name.endswith(SKIP_SUFFIXES))


def explain_every_row(path) -> int:
    n = 0
    with vdinspect.open(path, strict=False) as d:
        for k, img in enumerate(d.chain.layers):
            own = getattr(img, "explain_delegate", None) is None
            seen = set()
            for row in img.structure_rows():
                name = row["name"]
                if name in seen:
                    continue
                seen.add(name)
                e = d.explain(name, layer=k)
                assert isinstance(e, Explanation) and e.fields, (path, name)
                if own:
                    assert e.host_offset == row["host_offset"], (path, name)
                n += 1
    return n


@pytest.mark.parametrize("name", sample_paths())
def test_every_sample_structure_explains(name):
    assert explain_every_row(SAMPLE_IMAGES / name) > 0


@pytest.mark.parametrize("rel", SHARED)
def test_every_real_structure_explains(rel, tmp_path):
    src = SHARED_SAMPLES / rel
    if not src.is_file():
        pytest.skip("shared sample absent")
    if rel.endswith(".bz2"):
        out = tmp_path / os.path.basename(rel)[:-4]
        write_sparse(out, bz2.decompress(src.read_bytes()))
        src = out
    assert explain_every_row(src) > 0


def test_package_structures_explain(tmp_path):
    from tests.containers.xva_builder import CHUNK, build_xva

    p = tmp_path / "vm.xva"
    build_xva(p, "vm", [("Ref:1", "root", os.urandom(CHUNK) + bytes(CHUNK) + b"z" * 100)])
    assert explain_every_row(p) == 2  # ova.xml and the chunks
    with vdinspect.open(p) as d:
        assert d.explain("ova.xml").fields[0].field == "text"
    run("gzip", "-k", p)  # a compressed export: rows name the decompressed stream
    assert explain_every_row(tmp_path / "vm.xva.gz") == 2
