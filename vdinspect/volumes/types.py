"""Names for partition type codes: MBR type bytes, GPT type GUIDs, BSD disklabel fstypes.

The numbers and GUIDs are the registered values (UEFI specification, vendors' documents,
util-linux's and The Sleuth Kit's tables agree on them); the names are written here.
"""

from __future__ import annotations

#: MBR partition type byte -> name.
MBR_TYPES: dict[int, str] = {
    0x00: "Empty",
    0x01: "FAT12",
    0x02: "XENIX root",
    0x03: "XENIX usr",
    0x04: "FAT16 <32M",
    0x05: "Extended",
    0x06: "FAT16",
    0x07: "HPFS/NTFS/exFAT",
    0x08: "AIX",
    0x09: "AIX bootable",
    0x0A: "OS/2 Boot Manager",
    0x0B: "W95 FAT32",
    0x0C: "W95 FAT32 (LBA)",
    0x0E: "W95 FAT16 (LBA)",
    0x0F: "W95 Extended (LBA)",
    0x10: "OPUS",
    0x11: "Hidden FAT12",
    0x12: "Compaq diagnostics",
    0x14: "Hidden FAT16 <32M",
    0x16: "Hidden FAT16",
    0x17: "Hidden HPFS/NTFS/exFAT",
    0x18: "AST SmartSleep",
    0x1B: "Hidden W95 FAT32",
    0x1C: "Hidden W95 FAT32 (LBA)",
    0x1E: "Hidden W95 FAT16 (LBA)",
    0x24: "NEC DOS",
    0x27: "Hidden NTFS WinRE",
    0x39: "Plan 9",
    0x3C: "PartitionMagic recovery",
    0x40: "Venix 80286",
    0x41: "PPC PReP Boot",
    0x42: "SFS / Windows dynamic disk",
    0x4D: "QNX4.x",
    0x4E: "QNX4.x 2nd part",
    0x4F: "QNX4.x 3rd part",
    0x50: "OnTrack DM",
    0x51: "OnTrack DM6 Aux1",
    0x52: "CP/M",
    0x53: "OnTrack DM6 Aux3",
    0x54: "OnTrack DM6",
    0x55: "EZ-Drive",
    0x56: "Golden Bow",
    0x5C: "Priam Edisk",
    0x61: "SpeedStor",
    0x63: "GNU HURD or SysV",
    0x64: "Novell Netware 286",
    0x65: "Novell Netware 386",
    0x70: "DiskSecure Multi-Boot",
    0x75: "PC/IX",
    0x80: "Old Minix",
    0x81: "Minix / old Linux",
    0x82: "Linux swap / Solaris",
    0x83: "Linux",
    0x84: "OS/2 hidden or Intel hibernation",
    0x85: "Linux extended",
    0x86: "NTFS volume set",
    0x87: "NTFS volume set",
    0x88: "Linux plaintext",
    0x8E: "Linux LVM",
    0x93: "Amoeba",
    0x94: "Amoeba BBT",
    0x9F: "BSD/OS",
    0xA0: "IBM Thinkpad hibernation",
    0xA5: "FreeBSD",
    0xA6: "OpenBSD",
    0xA7: "NeXTSTEP",
    0xA8: "Darwin UFS",
    0xA9: "NetBSD",
    0xAB: "Darwin boot",
    0xAF: "HFS / HFS+",
    0xB7: "BSDI fs",
    0xB8: "BSDI swap",
    0xBB: "Boot Wizard hidden",
    0xBC: "Acronis FAT32 LBA",
    0xBE: "Solaris boot",
    0xBF: "Solaris",
    0xC1: "DRDOS/sec (FAT-12)",
    0xC4: "DRDOS/sec (FAT-16 < 32M)",
    0xC6: "DRDOS/sec (FAT-16)",
    0xC7: "Syrinx",
    0xDA: "Non-FS data",
    0xDB: "CP/M / CTOS",
    0xDE: "Dell Utility",
    0xDF: "BootIt",
    0xE1: "DOS access",
    0xE3: "DOS R/O",
    0xE4: "SpeedStor",
    0xEA: "Linux extended boot",
    0xEB: "BeOS fs",
    0xEE: "GPT protective",
    0xEF: "EFI System (FAT)",
    0xF0: "Linux/PA-RISC boot",
    0xF1: "SpeedStor",
    0xF2: "DOS secondary",
    0xF4: "SpeedStor",
    0xFB: "VMware VMFS",
    0xFC: "VMware VMKCORE",
    0xFD: "Linux RAID autodetect",
    0xFE: "LANstep",
    0xFF: "BBT",
}

#: MBR types that hold a chain of extended boot records (logical partitions).
MBR_EXTENDED = frozenset({0x05, 0x0F, 0x85})
#: The protective entry of a GPT disk.
MBR_GPT_PROTECTIVE = 0xEE
#: MBR types whose partition carries a BSD disklabel.
MBR_BSD = {0xA5: "freebsd", 0xA6: "openbsd", 0xA9: "netbsd"}


def mbr_type_name(code: int) -> str:
    """The name of an MBR partition type byte ("unknown" for unregistered ones)."""
    return MBR_TYPES.get(code, "unknown")


#: GPT partition type GUID (lower case, as blkid prints it) -> name.
GPT_TYPES: dict[str, str] = {
    "00000000-0000-0000-0000-000000000000": "Unused",
    # UEFI
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI System",
    "024dee41-33e7-11d3-9d69-0008c781f39f": "MBR partition scheme",
    "21686148-6449-6e6f-744e-656564454649": "BIOS boot",
    "d3bfe2de-3daf-11df-ba40-e3a556d89593": "Intel Fast Flash",
    "f4019732-066e-4e12-8273-346c5641494f": "Sony boot",
    "bfbfafe7-a34f-448a-9a5b-6213eb736c22": "Lenovo boot",
    # Microsoft
    "e3c9e316-0b5c-4db8-817d-f92df00215ae": "Microsoft reserved",
    "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Microsoft basic data",
    "5808c8aa-7e8f-42e0-85d2-e1e90434cfb3": "Microsoft LDM metadata",
    "af9b60a0-1431-4f62-bc68-3311714a69ad": "Microsoft LDM data",
    "de94bba4-06d1-4d40-a16a-bfd50179d6ac": "Windows recovery environment",
    "e75caf8f-f680-4cee-afa3-b001e56efc2d": "Microsoft Storage Spaces",
    "558d43c5-a1ac-43c0-aac8-d1472b2923d1": "Microsoft Storage Replica",
    "37affc90-ef7d-4e96-91c3-2d7ae055b174": "IBM General Parallel File System",
    # Linux
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "Linux swap",
    "e6d6d379-f507-44c2-a23c-238f2a3df928": "Linux LVM",
    "a19d880f-05fc-4d3b-a006-743f0f84911e": "Linux RAID",
    "933ac7e1-2eb4-4f13-b844-0e14e2aef915": "Linux home",
    "3b8f8425-20e0-4f3b-907f-1a25a76f98e8": "Linux server data",
    "4d21b016-b534-45c2-a9fb-5c16e091fd2d": "Linux variable data",
    "7ec6f557-3bc5-4aca-b293-16ef5df639d1": "Linux temporary data",
    "773f91ef-66d4-49b5-bd83-d683bf40ad16": "Linux user's home",
    "bc13c2ff-59e6-4262-a352-b275fd6f7172": "Linux extended boot",
    "8da63339-0007-60c0-c436-083ac8230908": "Linux reserved",
    "7ffec5c9-2d00-49b7-8941-3ea10a5586b7": "Linux plain dm-crypt",
    "ca7d7ccb-63ed-4c53-861c-1742536059cc": "Linux LUKS",
    "44479540-f297-41b2-9af7-d131d5f0458a": "Linux root (x86)",
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "Linux root (x86-64)",
    "69dad710-2ce4-4e3c-b16c-21a1d49abed3": "Linux root (ARM)",
    "b921b045-1df0-41c3-af44-4c6f280d3fae": "Linux root (ARM-64)",
    "993d8d3d-f80e-4225-855a-9daf8ed7ea97": "Linux root (IA-64)",
    "72ec70a6-cf74-40e6-bd49-4bda08e8f224": "Linux root (RISC-V-64)",
    "8484680c-9521-48c6-9c11-b0720656f69e": "Linux /usr (x86-64)",
    "b0e01050-ee5f-4390-949a-9101b17104e9": "Linux /usr (ARM-64)",
    # BSD
    "83bd6b9d-7f41-11dc-be0b-001560b84f0f": "FreeBSD boot",
    "516e7cb4-6ecf-11d6-8ff8-00022d09712b": "FreeBSD data",
    "516e7cb5-6ecf-11d6-8ff8-00022d09712b": "FreeBSD swap",
    "516e7cb6-6ecf-11d6-8ff8-00022d09712b": "FreeBSD UFS",
    "516e7cb8-6ecf-11d6-8ff8-00022d09712b": "FreeBSD Vinum",
    "516e7cba-6ecf-11d6-8ff8-00022d09712b": "FreeBSD ZFS",
    "49f48d32-b10e-11dc-b99b-0019d1879648": "NetBSD swap",
    "49f48d5a-b10e-11dc-b99b-0019d1879648": "NetBSD FFS",
    "49f48d82-b10e-11dc-b99b-0019d1879648": "NetBSD LFS",
    "49f48daa-b10e-11dc-b99b-0019d1879648": "NetBSD RAID",
    "2db519c4-b10f-11dc-b99b-0019d1879648": "NetBSD concatenated",
    "2db519ec-b10f-11dc-b99b-0019d1879648": "NetBSD encrypted",
    "824cc7a0-36a8-11e3-890a-952519ad3f61": "OpenBSD data",
    # Apple
    "48465300-0000-11aa-aa11-00306543ecac": "Apple HFS/HFS+",
    "7c3457ef-0000-11aa-aa11-00306543ecac": "Apple APFS",
    "55465300-0000-11aa-aa11-00306543ecac": "Apple UFS",
    "52414944-0000-11aa-aa11-00306543ecac": "Apple RAID",
    "52414944-5f4f-11aa-aa11-00306543ecac": "Apple RAID offline",
    "426f6f74-0000-11aa-aa11-00306543ecac": "Apple boot",
    "4c616265-6c00-11aa-aa11-00306543ecac": "Apple label",
    "5265636f-7665-11aa-aa11-00306543ecac": "Apple TV recovery",
    "53746f72-6167-11aa-aa11-00306543ecac": "Apple Core Storage",
    # Solaris (also Apple ZFS for the /usr GUID)
    "6a82cb45-1dd2-11b2-99a6-080020736631": "Solaris boot",
    "6a85cf4d-1dd2-11b2-99a6-080020736631": "Solaris root",
    "6a87c46f-1dd2-11b2-99a6-080020736631": "Solaris swap",
    "6a8b642b-1dd2-11b2-99a6-080020736631": "Solaris backup",
    "6a898cc3-1dd2-11b2-99a6-080020736631": "Solaris /usr & Apple ZFS",
    "6a8ef2e9-1dd2-11b2-99a6-080020736631": "Solaris /var",
    "6a90ba39-1dd2-11b2-99a6-080020736631": "Solaris /home",
    # HP-UX
    "75894c1e-3aeb-11d3-b7c1-7b03a0000000": "HP-UX data",
    "e2a1e728-32e3-11d6-a682-7b03a0000000": "HP-UX service",
    # ChromeOS
    "fe3a2a5d-4f32-41a7-b725-accc3285a309": "ChromeOS kernel",
    "3cb8e202-3b7e-47dd-8a3c-7ff2a13cfcec": "ChromeOS root fs",
    "2e0a753d-9e48-43b0-8337-b15192cb1b5e": "ChromeOS reserved",
    "cab6e88e-abf3-4102-a07a-d4bb9be3c1d3": "ChromeOS firmware",
    "09845860-705f-4bb5-b16c-8a8a099caf52": "ChromeOS miniOS",
    "3f0f8318-f146-4e6b-8222-c28c8f02e0d5": "ChromeOS hibernate",
    # VMware, Ceph, Haiku
    "aa31e02a-400f-11db-9590-000c2911d1b8": "VMware VMFS",
    "9198effc-31c0-11db-8f78-000c2911d1b8": "VMware reserved",
    "9d275380-40ad-11db-bf97-000c2911d1b8": "VMware kcore crash protection",
    "4fbd7e29-9d25-41b8-afd0-062c0ceff05d": "Ceph OSD",
    "45b0969e-9b03-4f30-b4c6-b4b80ceff106": "Ceph journal",
    "42465331-3ba3-10f1-802a-4861696b7521": "Haiku BFS",
}

MS_BASIC_DATA = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"
CHROMEOS_KERNEL = "fe3a2a5d-4f32-41a7-b725-accc3285a309"


def gpt_type_name(guid: str) -> str:
    """The name of a GPT partition type GUID ("unknown" for unregistered ones)."""
    return GPT_TYPES.get(guid.lower(), "unknown")


#: GPT attribute bits common to every type (UEFI): bit -> flag name.
GPT_ATTRIBUTES = {0: "required", 1: "no_block_io", 2: "legacy_bios_bootable"}
#: Bits 48..63 are type-specific; these are Microsoft basic data's.
GPT_MS_ATTRIBUTES = {60: "read_only", 61: "shadow_copy", 62: "hidden", 63: "no_automount"}


def gpt_attribute_flags(attributes: int, type_guid: str) -> list[str]:
    """The set attribute bits of a GPT entry as names (type-specific bits by type)."""
    flags = [name for bit, name in GPT_ATTRIBUTES.items() if attributes >> bit & 1]
    if type_guid == CHROMEOS_KERNEL:
        flags += [
            f"priority={attributes >> 48 & 0xF}",
            f"tries={attributes >> 52 & 0xF}",
        ]
        if attributes >> 56 & 1:
            flags.append("successful")
        return flags
    for bit in range(48, 64):
        if attributes >> bit & 1:
            if type_guid == MS_BASIC_DATA and bit in GPT_MS_ATTRIBUTES:
                flags.append(GPT_MS_ATTRIBUTES[bit])
            else:
                flags.append(f"bit{bit}")
    for bit in range(3, 48):
        if attributes >> bit & 1:
            flags.append(f"bit{bit}")
    return flags


#: BSD disklabel p_fstype -> name (the values BSDs share).
BSD_FSTYPES: dict[int, str] = {
    0: "unused",
    1: "swap",
    2: "Version 6",
    3: "Version 7",
    4: "System V",
    5: "4.1BSD",
    6: "Eighth Edition",
    7: "4.2BSD",
    8: "MS-DOS",
    9: "4.4LFS",
    10: "unknown",
    11: "HPFS",
    12: "ISO9660",
    13: "boot",
    14: "ADOS",
    15: "HFS",
    16: "AdvFS",
}


def bsd_fstype_name(code: int) -> str:
    """The name of a BSD disklabel filesystem type."""
    return BSD_FSTYPES.get(code, "unknown")
