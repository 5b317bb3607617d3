"""What the driver reports about the volume: info(), structures() and check().

structures() names the places the teaching view and the host-layout plot show (boot
sectors, the system files' MFT records and their clusters); check() compares the copies
NTFS keeps (the backup boot sector, $MFTMirr) and reads the whole MFT, so that every
problem met goes into the findings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...containers.base import structure_row
from ...errors import CorruptImage, InvalidArgument
from .attributes import VOLUME_IS_DIRTY, parse_volume_information
from .boot import BOOT_SECTOR_SIZE, parse_boot
from .catalog import MIRROR_RECORDS, ROOT
from .mft import AT_VOLUME_INFORMATION, AT_VOLUME_NAME, ATTR_NAMES, RecordError
from .runlist import RunlistError, decode_runlist

if TYPE_CHECKING:
    from .fs import NTFS

VOLUME_RECORD = 3  # $Volume
SYSTEM_NAMES = [
    "$MFT",
    "$MFTMirr",
    "$LogFile",
    "$Volume",
    "$AttrDef",
    ".",
    "$Bitmap",
    "$Boot",
    "$BadClus",
    "$Secure",
    "$UpCase",
    "$Extend",
]


def volume_info(fs: NTFS) -> tuple[str | None, str | None, int]:
    """(label, version, flags) from $Volume (record 3); a dirty volume is a warning."""
    try:
        f = fs.file(VOLUME_RECORD)
    except (RecordError, CorruptImage) as e:
        fs.problem(f"MFT record {VOLUME_RECORD}", fs.record_offset(VOLUME_RECORD),
                   f"$Volume record unusable: {e}")
        return None, None, 0
    label = version = None
    flags = 0
    vn = f.attr(AT_VOLUME_NAME)
    if vn is not None and vn.resident:
        label = vn.value.decode("utf-16-le", "replace") or None
    vi = f.attr(AT_VOLUME_INFORMATION)
    if vi is not None and vi.resident:
        try:
            major, minor, flags = parse_volume_information(vi.value)
            version = f"{major}.{minor}"
        except RecordError as e:
            fs.finding("error", "$Volume", None, str(e))
    if flags & VOLUME_IS_DIRTY:
        fs.finding(
            "warning",
            "$Volume",
            fs.record_offset(VOLUME_RECORD),
            "volume is marked dirty (not cleanly unmounted)",
        )
    return label, version, flags


def info(fs: NTFS) -> dict:
    """The volume's facts: geometry, label, version, dirty flag, MFT places."""
    g = fs.geometry
    return dict(
        fstype="ntfs",
        label=fs.label,
        uuid=fs.uuid,
        size=g.volume_size,
        block_size=g.cluster_size,
        serial=fs.serial,
        version=fs.version,
        volume_size=g.volume_size,
        sector_size=g.sector_size,
        cluster_size=g.cluster_size,
        clusters=g.clusters,
        mft_record_size=g.record_size,
        index_record_size=g.index_record_size,
        mft_records=fs.nrecords,
        mft_offset=g.mft_lcn * g.cluster_size,
        mftmirr_offset=g.mftmirr_lcn * g.cluster_size,
        dirty=bool(fs.volume_flags & VOLUME_IS_DIRTY),
        volume_flags=fs.volume_flags,
        boot_sector="primary" if g.boot_offset == 0 else f"backup@{g.boot_offset:#x}",
    )


def structures(fs: NTFS) -> list[dict]:
    """Boot sectors, the system files' records and the clusters their attributes use."""
    g = fs.geometry
    cs = fs.cluster_size
    rows = [
        structure_row(
            "boot sector", fs.name, g.boot_offset, BOOT_SECTOR_SIZE,
            f"NTFS boot sector: {g.sector_size} B sectors, {cs} B "
            f"clusters, MFT at cluster {g.mft_lcn}",
        )
    ]
    backup = g.volume_size
    if backup + BOOT_SECTOR_SIZE <= fs.source.size:
        rows.append(
            structure_row(
                "backup boot sector", fs.name, backup, BOOT_SECTOR_SIZE,
                "copy of the boot sector past the last cluster",
            )
        )
    for n in range(len(SYSTEM_NAMES)):
        try:
            f = fs.file(n)
        except (RecordError, CorruptImage):
            continue
        nm = SYSTEM_NAMES[n] if n != ROOT else "root directory"
        off = fs.record_offset(n)
        rows.append(
            structure_row(f"MFT record {n}", fs.name, off, fs.record_size, f"{nm} record")
        )
        for a in f.attrs:
            if a.resident:
                continue
            try:
                runs = decode_runlist(a.mapping_pairs, a.lowest_vcn, fs.clusters)
            except RunlistError:
                continue
            for i, r in enumerate(runs):
                if r.lcn is None:
                    continue
                label = f"{nm} {ATTR_NAMES.get(a.type, hex(a.type))}"
                if a.name:
                    label += f":{a.name}"
                rows.append(
                    structure_row(
                        label + (f" run {i}" if len(runs) > 1 else ""), fs.name, r.lcn * cs,
                        r.length * cs,
                        f"clusters {r.lcn}..{r.lcn + r.length - 1}",
                    )
                )
    return rows


def check(fs: NTFS) -> None:
    """Boot sector and $MFTMirr copies compared, the MFT scanned: the findings."""
    g = fs.geometry
    backup = g.volume_size
    raw = fs.read_raw(backup, BOOT_SECTOR_SIZE) if g.boot_offset == 0 else None
    if g.boot_offset == 0:
        if raw is None:
            fs.finding(
                "warning", "backup boot sector", backup, "missing (the volume is cut short)"
            )
        elif raw != fs.source.read(0, BOOT_SECTOR_SIZE):
            geo, why = parse_boot(raw)
            fs.finding(
                "warning",
                "backup boot sector",
                backup,
                "differs from the primary"
                + (f" and is unusable ({why})" if geo is None else ""),
            )
    rs = fs.record_size
    for n in range(MIRROR_RECORDS):
        a = fs.read_raw(g.mftmirr_lcn * fs.cluster_size + n * rs, rs)
        try:
            b = fs.mft.read(n * rs, rs)
        except (CorruptImage, InvalidArgument):
            continue
        if a is not None and a != b:
            fs.finding(
                "warning",
                "$MFTMirr",
                g.mftmirr_lcn * fs.cluster_size + n * rs,
                f"record {n} differs from $MFT",
            )
    fs.catalog()
