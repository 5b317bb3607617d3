"""The magic bytes the filesystem probe looks at before it imports a probe family.

construct-free, so that probing a volume that is not NTFS, exFAT, ISO 9660 or UDF never
declares those layouts, and telling a disk from a volume (``probes.disk_signature``: a
GPT header, the 55 AA of sector 0) declares none (``volumes/*_layout.py`` take their constants from here, and
tests/volumes/test_signatures.py checks each place against the declared structure)."""

from __future__ import annotations

# --- partition tables ----------------------------------------------------------------------

#: the last two bytes of sector 0, 55 AA: an MBR's (and an EBR's) ``boot_signature``, which
#: FAT, NTFS and exFAT boot sectors end in too
BOOT_SIGNATURE_AT = slice(510, 512)
BOOT_SIGNATURE = b"\x55\xaa"
#: the first 8 bytes of a GPT header, in LBA 1 (UEFI specification 5.3.2: ``Signature``)
GPT_SIGNATURE_AT = slice(0, 8)
GPT_SIGNATURE = b"EFI PART"

# --- the boot sector of NTFS, exFAT, BitLocker, ReFS ---------------------------------------

#: bytes 3..10 of a boot sector: NTFS ``oem_id`` (after the 3-byte jump), exFAT
#: ``FileSystemName`` (Microsoft exFAT specification 3.1.2), BitLocker and ReFS likewise
OEM_ID_AT = slice(3, 11)
NTFS_OEM = b"NTFS    "
BITLOCKER_OEM = b"-FVE-FS-"  # oem_id of a BitLocker volume (libyal libbde: "BDE format")
REFS_OEM = b"ReFS"  # oem_id of a ReFS volume starts so
EXFAT_NAME = b"EXFAT   "  # FileSystemName

# --- ISO 9660 / ECMA-167 volume recognition ----------------------------------------------

DESCRIPTORS_AT = 0x8000  # sector 16: the volume descriptor set (ISO) or recognition sequence
DESCRIPTOR_SIZE = 2048  # one volume descriptor / volume structure descriptor
#: bytes 1..5 of a volume (structure) descriptor: its standard identifier (ECMA-119 8.1.2,
#: ECMA-167 2/9.1.2)
STANDARD_ID_AT = slice(1, 6)
ISO_STANDARD_ID = b"CD001"
VRS_OTHER_IDS = (b"BEA01", b"CD001", b"CDW02", b"BOOT2", b"TEA01")
VRS_NSR_IDS = (b"NSR02", b"NSR03")  # UDF (ECMA-167 2nd and 3rd edition)
