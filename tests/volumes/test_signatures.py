"""The construct-free magic bytes the probe looks at before importing a probe family
(``volumes/signatures.py``): each place is the one the layouts declare, and each value is
what the formatting tool writes there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import have
from tests.tools import run
from vdinspect.layout import field_slice
from vdinspect.volumes import exfat_layout, gpt, mbr, ntfs_layout, optical_layout
from vdinspect.volumes import signatures as sig

MiB = 1 << 20


def test_places_are_the_declared_fields():
    """OEM name and standard identifier sit where the declared structures put them."""
    assert sig.OEM_ID_AT == field_slice(ntfs_layout.BootSector, "oem_id")
    assert sig.OEM_ID_AT == field_slice(exfat_layout.BootSector, "FileSystemName")
    assert sig.STANDARD_ID_AT == field_slice(optical_layout.VolumeDescriptor, "id")
    assert sig.STANDARD_ID_AT == field_slice(optical_layout.VolumeStructureDescriptor,
                                             "StandardIdentifier")
    assert sig.DESCRIPTOR_SIZE == optical_layout.VolumeDescriptor.sizeof()
    assert sig.BOOT_SIGNATURE_AT == field_slice(mbr.MasterBootRecord, "boot_signature")
    assert sig.GPT_SIGNATURE_AT == field_slice(gpt.GptHeader, "signature")


@pytest.mark.skipif(not have("sfdisk"), reason="sfdisk missing")
@pytest.mark.parametrize("label", ["dos", "gpt"])
def test_sfdisk_writes_the_disk_signatures(tmp_path, label):
    """sfdisk's MBR ends sector 0 in the boot signature; its GPT header (LBA 1 of a
    512-byte-sector disk) starts with the GPT signature; the disk probe names each."""
    from vdinspect.io import FileSource
    from vdinspect.volumes.probes import disk_signature

    img = _sparse(tmp_path / "disk.img", 8 * MiB)
    run("sfdisk", "-q", img, input=f"label: {label}\n,4MiB,L\n")
    data = img.read_bytes()[:1024]
    assert data[sig.BOOT_SIGNATURE_AT] == sig.BOOT_SIGNATURE  # (a GPT's protective MBR)
    at = slice(512 + sig.GPT_SIGNATURE_AT.start, 512 + sig.GPT_SIGNATURE_AT.stop)
    assert (data[at] == sig.GPT_SIGNATURE) == (label == "gpt")
    with FileSource(img) as src:
        assert disk_signature(src) == {"dos": "mbr", "gpt": "gpt"}[label]


def _sparse(p: Path, size: int) -> Path:
    with open(p, "wb") as f:
        f.truncate(size)
    return p


def _ntfs(p: Path) -> None:
    run("mkntfs", "-q", "-F", "-f", _sparse(p, 16 * MiB))


def _exfat(p: Path) -> None:
    run("mkfs.exfat", _sparse(p, 16 * MiB))


def _iso(p: Path) -> None:
    tree = p.parent / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a\n")
    run("genisoimage", "-quiet", "-o", p, tree)


def _udf(p: Path) -> None:
    run("mkudffs", "-b", "2048", _sparse(p, 8 * MiB))


@pytest.mark.parametrize("tool, make, where, want", [
    ("mkntfs", _ntfs, sig.OEM_ID_AT, (sig.NTFS_OEM,)),
    ("mkfs.exfat", _exfat, sig.OEM_ID_AT, (sig.EXFAT_NAME,)),
    ("genisoimage", _iso, sig.STANDARD_ID_AT, (sig.ISO_STANDARD_ID,)),
    ("mkudffs", _udf, sig.STANDARD_ID_AT, sig.VRS_OTHER_IDS + sig.VRS_NSR_IDS),
], ids=["ntfs", "exfat", "iso9660", "udf"])
def test_tools_write_the_signatures(tmp_path, tool, make, where, want):
    """The bytes mkntfs, mkfs.exfat, genisoimage and mkudffs write at each place are the
    ones the probe gate lets through (the ISO/UDF ones in the first descriptor)."""
    if not have(tool):
        pytest.skip(f"{tool} missing")
    img = tmp_path / "vol.img"
    make(img)
    data = img.read_bytes()[: sig.DESCRIPTORS_AT + sig.DESCRIPTOR_SIZE]
    base = sig.DESCRIPTORS_AT if where is sig.STANDARD_ID_AT else 0
    assert data[base + where.start : base + where.stop] in want
