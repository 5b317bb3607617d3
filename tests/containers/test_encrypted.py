"""Encrypted disks are detected and named, never read as data.

VirtualBox full-disk encryption and VMware VM encryption are written from the machine
files' documented keys (tests/machine_builder.py), the disks by qemu-img; inside the guest,
LUKS1/LUKS2 volumes are made by the real ``cryptsetup`` (and named by ``blkid`` as the
oracle), a BitLocker volume header from Microsoft's layout (the boot sector's OEM id
``-FVE-FS-``; no tool on Linux writes one).
"""

from __future__ import annotations

import struct

import pytest

import vdinspect
from tests import machine_builder as mb
from tests.conftest import have, needs_qemu
from tests.qemu_tools import create
from tests.tools import dig_holes, run

BASE = "11111111-2222-3333-4444-555555555555"
DIFF = "66666666-7777-8888-9999-aaaaaaaaaaaa"
VM = "0f0f0f0f-0000-1111-2222-333333333333"


@needs_qemu
@pytest.mark.parametrize("where", ["base", "diff"])
def test_virtualbox_full_disk_encryption(tmp_path, where):
    create(tmp_path / "base.vdi", "4M", "vdi")
    create(tmp_path / "diff.vdi", "4M", "vdi")
    crypt = {"CRYPT/KeyId": "vm1", "CRYPT/KeyStore": "U0NSVAEAAABBRVMtWFRTMjU2LVBMQUlONjQ="}
    diff = mb.Medium(DIFF, "diff.vdi")
    base = mb.Medium(BASE, "base.vdi", children=[diff],
                     properties=crypt if where == "base" else {})
    if where == "diff":
        diff.properties = crypt
    vbox = mb.write(tmp_path / "vm.vbox",
                    mb.vbox_xml("secret", VM, [base], [("SATA", 0, 0, DIFF)]))
    with pytest.raises(vdinspect.EncryptedImage) as e:
        vdinspect.open(vbox)
    assert e.value.scheme == "VirtualBox full-disk encryption"
    assert "password id 'vm1'" in str(e.value) and "CRYPT/KeyStore" in str(e.value)
    with vdinspect.open(vbox, strict=False) as d:
        assert d.info()["encrypted"] == "VirtualBox full-disk encryption"
        c = d.check()
        assert any("reads as ciphertext" in m for m in c[c.severity == "error"].message)


def test_vmware_encrypted_vm(tmp_path):
    # an encrypted .vmx keeps only these in the clear; the rest is inside encryption.data
    vmx = mb.write(tmp_path / "vm.vmx", '.encoding = "UTF-8"\n'
                   'encryption.keySafe = "vmware:key/list/(pair/(fqid/<VMWARE-NULL>/KMS/'
                   'abc,HMAC-SHA-256,data))"\n'
                   'encryption.data = "AAAAAbase64ciphertext"\n')
    for strict in (True, False):
        with pytest.raises(vdinspect.EncryptedImage, match="VMware VM encryption"):
            vdinspect.open(vmx, strict=strict)


def _disk_with(tmp_path, fill) -> str:
    """A raw disk with one MBR partition at 1 MiB (sfdisk), its contents from ``fill``."""
    p = tmp_path / "disk.raw"
    with open(p, "wb") as f:  # holes, as a new disk file is
        f.truncate(24 << 20)
    run("sfdisk", "-q", p, input="label: dos\n2048,,83\n")
    part = tmp_path / "part.img"
    with open(part, "wb") as f:
        f.truncate(23 << 20)
    fill(part)
    with open(p, "r+b") as f:
        f.seek(1 << 20)
        f.write(part.read_bytes())
    dig_holes(p)
    return p


@pytest.mark.skipif(not have("cryptsetup", "sfdisk", "blkid"), reason="cryptsetup missing")
@pytest.mark.parametrize("luks", ["luks1", "luks2"])
def test_luks_volume_in_the_guest(tmp_path, luks):
    def fill(part):
        run("cryptsetup", "luksFormat", "-q", "--type", luks, "--pbkdf", "pbkdf2",
            "--pbkdf-force-iterations", "1000", part, "-", input="secret")

    p = _disk_with(tmp_path, fill)
    assert 'TYPE="crypto_LUKS"' in run("blkid", "-p", tmp_path / "part.img")
    with vdinspect.open(p) as d:
        parts = d.partitions()
        row = parts[parts["index"] == 1].iloc[0]
        assert row.filesystem == "crypto_LUKS"
        with pytest.raises(vdinspect.EncryptedImage) as e:
            d.filesystem(1)
        assert "LUKS" in e.value.scheme and "passphrase" in str(e.value)


def bitlocker_boot_sector() -> bytes:
    """A BitLocker volume's boot sector as Windows writes it: a jump, the OEM id
    ``-FVE-FS-`` (in place of "NTFS    "), a BPB of 512-byte sectors, 0x55AA at 510."""
    bs = bytearray(512)
    bs[0:3] = b"\xeb\x58\x90"
    bs[3:11] = b"-FVE-FS-"
    struct.pack_into("<HBH", bs, 11, 512, 8, 0)  # bytes/sector, sectors/cluster, reserved
    bs[21] = 0xF8  # media descriptor: fixed disk
    bs[510:512] = b"\x55\xaa"
    return bytes(bs)


@pytest.mark.skipif(not have("sfdisk"), reason="sfdisk missing")
def test_bitlocker_volume_in_the_guest(tmp_path):
    def fill(part):
        with open(part, "r+b") as f:
            f.write(bitlocker_boot_sector())

    p = _disk_with(tmp_path, fill)
    with vdinspect.open(p) as d:
        parts = d.partitions()
        assert parts[parts["index"] == 1].iloc[0].filesystem == "BitLocker"
        with pytest.raises(vdinspect.EncryptedImage, match="recovery password"):
            d.filesystem(1)


@needs_qemu
def test_vmware_encrypted_vmdk(tmp_path):
    """An encrypted VMDK's descriptor keeps ``encryption.keySafe``/``encryption.data`` in
    the clear (the real descriptor is inside the data); both the text descriptor and a
    sparse extent's embedded one (qemu-img's, with the lines written into its padding)."""
    lines = ('encryption.keySafe = "vmware:key/list/(pair/(fqid/<VMWARE-NULL>/KMS/abc,'
             'HMAC-SHA-256,data))"\nencryption.data = "AAAAAQAAAAB..."\n')
    text = tmp_path / "enc.vmdk"
    text.write_text('# Disk DescriptorFile\nversion=1\nencoding="UTF-8"\nCID=fffffffe\n'
                    'parentCID=ffffffff\ncreateType="monolithicSparse"\n' + lines)
    sparse = tmp_path / "sparse.vmdk"
    create(sparse, "4M", "vmdk")
    data = bytearray(sparse.read_bytes())
    at = data.index(b"# The Disk Data Base")
    data[at:at + len(lines)] = lines.encode()
    sparse.write_bytes(bytes(data))
    for p in (text, sparse):
        for strict in (True, False):
            with pytest.raises(vdinspect.EncryptedImage, match="VMware disk encryption") as e:
                vdinspect.open(p, strict=strict)
            assert "encryption.keySafe" in str(e.value)


def apfs_container(encrypted: list[bool]) -> bytes:
    """A minimal APFS container from Apple's "Apple File System Reference": the container
    superblock (block 0), the object map (1), its B-tree root leaf (2), one volume
    superblock per volume (3, 4, ...) with APFS_FS_UNENCRYPTED (bit 0 of apfs_fs_flags,
    offset 264) set unless the volume is encrypted. Offsets typed from the reference."""
    bs, n = 4096, len(encrypted)
    blocks = [bytearray(bs) for _ in range(3 + n)]
    nx = blocks[0]
    struct.pack_into("<QQQII", nx, 0, 0, 1, 1, 0x80000001, 0)  # obj_phys_t
    nx[32:36] = b"NXSB"
    struct.pack_into("<IQ", nx, 36, bs, 16)  # nx_block_size, nx_block_count
    nx[72:88] = bytes(range(16))  # nx_uuid
    struct.pack_into("<Q", nx, 160, 1)  # nx_omap_oid
    struct.pack_into("<I", nx, 180, 100)  # nx_max_file_systems
    for i in range(n):
        struct.pack_into("<Q", nx, 184 + 8 * i, 1026 + i)  # nx_fs_oid[i]
    om = blocks[1]
    struct.pack_into("<QQQII", om, 0, 0, 1, 1, 0x4000000B, 0)
    struct.pack_into("<Q", om, 48, 2)  # om_tree_oid
    node = blocks[2]
    struct.pack_into("<QQQII", node, 0, 0, 2, 1, 0x40000002, 0x4000000B)
    struct.pack_into("<HHIHH", node, 32, 7, 0, n, 0, 4 * n)  # root|leaf|fixed, level, nkeys
    keys, vend = 56 + 4 * n, bs - 40  # key area after the toc; values end before btree_info
    for i in range(n):
        struct.pack_into("<HH", node, 56 + 4 * i, 16 * i, 16 * (i + 1))  # kvoff_t
        struct.pack_into("<QQ", node, keys + 16 * i, 1026 + i, 1)  # omap_key_t
        struct.pack_into("<IIQ", node, vend - 16 * (i + 1), 0, bs, 3 + i)  # omap_val_t
    for i, enc in enumerate(encrypted):
        sb = blocks[3 + i]
        struct.pack_into("<QQQII", sb, 0, 0, 1026 + i, 1, 0x0000000D, 0)
        sb[32:36] = b"APSB"
        struct.pack_into("<I", sb, 36, i)
        struct.pack_into("<Q", sb, 264, 0 if enc else 1)  # apfs_fs_flags
    return b"".join(bytes(b) for b in blocks)


@pytest.mark.skipif(not have("sfdisk"), reason="sfdisk missing")
@pytest.mark.parametrize("encrypted", [[False, False], [False, True]])
def test_apfs_filevault_volume(tmp_path, encrypted):
    p = tmp_path / "mac.raw"
    p.write_bytes(bytes(8 << 20))
    run("sfdisk", "-q", p, input="label: gpt\n2048,8192,7C3457EF-0000-11AA-AA11-00306543ECAC\n")
    with open(p, "r+b") as f:
        f.seek(1 << 20)
        f.write(apfs_container(encrypted))
    with vdinspect.open(p) as d:
        parts = d.partitions()
        row = parts[parts["index"] == 1].iloc[0]
        if any(encrypted):
            assert row.filesystem == "apfs_encrypted"
            with pytest.raises(vdinspect.EncryptedImage, match="FileVault"):
                d.filesystem(1)
        else:
            assert row.filesystem == "apfs"
