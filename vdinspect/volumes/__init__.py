"""Partitions and volumes: MBR (with extended/logical), GPT, BSD disklabels, LVM2.

:func:`scan` reads the partition table of a ByteSource (a Disk, a raw file, a partition)
and answers with a :class:`VolumeList`: one :class:`Volume` per partition, extended
container, unallocated gap (like ``mmls``) and LVM2 logical volume, each with the
filesystem that the magic probes of :mod:`.probes` recognise on it.

Conventions (the ``Disk.partitions()`` frame is built from :meth:`Volume.row`):

- offsets and lengths are bytes on the scanned source; ``index`` is the partition number
  as Linux numbers it (MBR primaries 1-4, logicals from 5 along the EBR chain; GPT entry
  slot; BSD disklabel partitions after the MBR's numbers, as libblkid does);
- a source with a filesystem and no partition table is one row of scheme ``"none"``,
  type ``"disk"``, index NA (``find_volume(vols, "disk")`` or ``0`` returns it);
- unallocated gaps are the stretches no data partition covers, measured over the whole
  source as ``mmls`` does (table sectors and EBRs count as unallocated, an extended
  container does not hide them); rows of type ``"unallocated"``, index NA;
- LVM2 logical volumes have scheme ``"lvm2"``, name ``"vg/lv"``, index NA; ``start`` is
  where the LV's first extent lies on the source, ``length`` the LV's size;
- ``uuid`` and ``label`` are the filesystem's (as ``blkid`` prints them); a GPT
  partition's own GUID is ``Volume.part_uuid``.

Findings (damaged tables, entries past the end, hybrid MBRs, a backup GPT used) are rows
``severity, structure, host_offset, message`` in ``VolumeList.check()``; ``host_offset`` is
a byte offset on the scanned source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..errors import CorruptImage, InvalidArgument, NotFound, VDInspectError
from ..findings import Findings
from ..io import ByteSource, Concat, Slice, Zero
from ..units import check_sector_size, human

if TYPE_CHECKING:
    import pandas as pd

#: Volume kinds.
PARTITION, CONTAINER, UNALLOCATED, LOGICAL_VOLUME, WHOLE_DISK = (
    "partition",
    "container",
    "unallocated",
    "logical volume",
    "disk",
)
_SORT_RANK = {CONTAINER: 0, WHOLE_DISK: 0, PARTITION: 1, UNALLOCATED: 2, LOGICAL_VOLUME: 3}


class Volume:
    """One partition, extended container, unallocated gap or logical volume.

    ``.raw`` keeps the parsed table entry (or the LVM metadata section); ``.source`` is
    the volume's bytes as a ByteSource (a Slice of the disk, or for LVM the mapped
    extents); ``.row()`` is its line in ``Disk.partitions()``.
    """

    def __init__(
        self,
        *,
        scheme: str,
        type: str,
        type_name: str,
        start: int,
        length: int,
        index: int | None = None,
        name: str | None = None,
        bootable: bool | None = None,
        kind: str = PARTITION,
        raw=None,
        disk: ByteSource | None = None,
        source: ByteSource | None = None,
        key: str | None = None,
        parent: Volume | None = None,
    ) -> None:
        self.scheme = scheme
        self.type = type
        self.type_name = type_name
        self.start = int(start)
        self.length = int(length)
        self.index = index
        self.name = name
        self.bootable = bootable
        self.kind = kind
        self.raw = raw
        self.parent = parent
        self.key = key if key is not None else (str(index) if index is not None else None)
        self.filesystem: str | None = None
        self.label: str | None = None
        self.uuid: str | None = None
        self.fs_version: str | None = None
        self.part_uuid: str | None = None
        self.flags: list[str] = []
        self._disk = disk
        self._source = source
        self._unreadable: Callable[[], VDInspectError] | None = None

    @property
    def end(self) -> int:
        return self.start + self.length

    @property
    def source(self) -> ByteSource:
        """The volume's bytes (raises if the volume cannot be read, e.g. thin LVs)."""
        if self._unreadable is not None:
            raise self._unreadable()
        if self._source is None:
            self._source = Slice(self._disk, self.start, self.length, name=self._source_name())
        return self._source

    @property
    def readable(self) -> bool:
        return self._unreadable is None

    def set_unreadable(self, make_error: Callable[[], VDInspectError]) -> None:
        """Make ``.source`` raise the error ``make_error()`` builds."""
        self._unreadable = make_error

    def set_source(self, source: ByteSource) -> None:
        """Give the volume bytes of its own (a logical volume assembled from extents)."""
        self._source = source

    @property
    def disk(self) -> ByteSource | None:
        """The source this volume was found on (None: the disk being scanned)."""
        return self._disk

    def _source_name(self) -> str:
        base = getattr(self._disk, "name", "<disk>")
        return f"{base}#{self.key}" if self.key else f"{base}[{self.start:#x}:+{self.length:#x}]"

    def info(self) -> pd.Series:
        """This volume's facts: its ``Disk.partitions()`` row as a Series."""
        from ..frames import series

        return series(self.row(), name=self.key)

    def row(self) -> dict:
        """This volume as a row of ``Disk.partitions()``."""
        return dict(
            index=self.index,
            scheme=self.scheme,
            type=self.type,
            type_name=self.type_name,
            name=self.name,
            start=self.start,
            length=self.length,
            end=self.end,
            filesystem=self.filesystem,
            label=self.label,
            uuid=self.uuid,
            bootable=self.bootable,
        )

    def __repr__(self) -> str:
        what = self.key or self.kind
        fs = f" {self.filesystem}" if self.filesystem else ""
        nm = f" {self.name!r}" if self.name else ""
        return (
            f"<Volume {what} {self.scheme} {self.type_name}{nm} "
            f"@{self.start:#x} {human(self.length)}{fs}>"
        )

    def _repr_html_(self) -> str:
        from ..reprs import card

        facts = [("partition", self.key or self.kind), ("scheme", self.scheme),
                 ("type", self.type_name), ("name", self.name),
                 ("start", f"{self.start} ({self.start:#x})"),
                 ("length", f"{human(self.length)} ({self.length} bytes)"),
                 ("filesystem", self.filesystem), ("label", self.label), ("uuid", self.uuid)]
        arg = self.index if self.index is not None else repr(self.key)
        hint = [f"disk.filesystem({arg})"] if self.filesystem and self.key else []
        return card("Volume", facts, hint + ["disk.partitions()"])


class VolumeList(list):
    """What :func:`scan` returns: the volumes, plus the table's facts and findings."""

    def __init__(self, volumes: Iterable[Volume] = (), *, ctx: ScanContext | None = None):
        super().__init__(volumes)
        self.scheme: str = "none"
        self.sector_size: int = 512
        self.disk_id: str | None = None
        self.table = None
        self.findings: list[dict] = list(ctx.findings) if ctx else []
        self.table_structures: list[dict] = list(ctx.structures) if ctx else []
        self.volume_groups: list = []
        self.path: str | None = ctx.path if ctx else None

    def check_rows(self) -> list[dict]:
        """Findings as rows: severity, structure, host_offset (on the disk), message."""
        return list(self.findings)

    def structure_rows(self) -> list[dict]:
        """The partition tables' and volume metadata's structures as rows (name,
        host_offset on the disk, length, description)."""
        return list(self.table_structures)

    def check(self) -> pd.DataFrame:
        """The tables' findings, in the ``check()`` schema (``layer`` NA: offsets are on
        the virtual disk, not in a host file)."""
        from ..frames import check_frame

        return check_frame(self.check_rows())

    def structures(self) -> pd.DataFrame:
        """Where the partition tables and volume metadata lie, in the ``structures()``
        schema (offsets on the virtual disk)."""
        from ..frames import structures_frame

        return structures_frame(self.structure_rows())

    def info(self) -> pd.Series:
        """The table's facts: scheme, sector_size, disk_id, volumes, volume_groups,
        findings (how many rows ``check()`` has)."""
        from ..frames import series

        return series(dict(scheme=self.scheme, sector_size=self.sector_size,
                           disk_id=self.disk_id, volumes=len(self),
                           volume_groups=len(self.volume_groups),
                           findings=len(self.findings)), name=self.path)

    def find(self, key) -> Volume:
        """The volume with this partition number or "vg/lv" name."""
        return find_volume(self, key)

    def __repr__(self) -> str:
        return f"<VolumeList {self.scheme}, {len(self)} volume(s)>"

    def _repr_html_(self) -> str:
        import html

        from ..reprs import next_steps, table

        rows = [(v.key or "", v.kind, v.type_name, v.name, human(v.start), human(v.length),
                 v.filesystem, v.label) for v in self]  # one unit for both; bytes: partitions()
        cols = ("#", "kind", "type", "name", "start", "length", "filesystem", "label")
        readable = [v.index if v.index is not None else repr(v.key)
                    for v in self if v.filesystem and v.key]
        hint = [f"disk.filesystem({readable[0]})" if readable else "disk.filesystem(N)",
                "disk.partitions()"]
        return (f"<div><b>VolumeList</b> {html.escape(self.scheme)}, {len(self)} volume(s)"
                f"{table(cols, rows)}{next_steps(hint)}</div>")


class ScanContext(Findings):
    """Shared state of one scan: the source, strictness, findings and structures met."""

    def __init__(self, source: ByteSource, strict: bool) -> None:
        self.source = source
        self.strict = strict
        self.path = getattr(source, "name", "<disk>")
        self.size = source.size
        self.structures: list[dict] = []

    def structure(self, name: str, offset: int, length: int, description: str) -> None:
        self.structures.append(
            dict(name=name, host_offset=offset, length=length, description=description)
        )


def _partition_source(ctx: ScanContext, vol: Volume) -> None:
    """Give a partition that overhangs the end of the disk a clipped (or failing) source."""
    if vol.end <= ctx.size:
        return
    avail = max(0, ctx.size - vol.start)
    what = f"partition {vol.key}" if vol.key else "partition"
    msg = (
        f"{what} [{vol.start:#x}, {vol.end:#x}) extends past the end of the disk "
        f"({ctx.size:#x} bytes)"
    )
    ctx.finding("warning", f"{vol.scheme} entry", vol.start, msg)
    if ctx.strict:
        path = ctx.path
        vol.set_unreadable(
            lambda: CorruptImage(msg, path=path, structure=f"{vol.scheme} entry", offset=vol.start)
        )
    else:
        parts = []
        if avail:
            parts.append(Slice(ctx.source, vol.start, avail))
        parts.append(Zero(vol.length - avail))
        vol._source = Concat(parts, name=vol._source_name())


def _probe_source(ctx: ScanContext, vol: Volume) -> ByteSource | None:
    """What to probe for a filesystem: the volume's readable bytes (clipped at the end)."""
    if vol.kind in (PARTITION, WHOLE_DISK):
        if vol.start >= ctx.size:
            return None
        return Slice(ctx.source, vol.start, min(vol.length, ctx.size - vol.start))
    if vol.kind == LOGICAL_VOLUME and vol.readable:
        return vol.source
    return None


def _gaps(ctx: ScanContext, leaves: list[Volume], scheme: str, sector: int) -> list[Volume]:
    """Unallocated stretches between data partitions over the whole disk, as mmls shows."""
    end_sector = ctx.size // sector
    spans = sorted(
        (v.start // sector, min(v.end, ctx.size) // sector) for v in leaves if v.length > 0
    )
    gaps = []
    pos = 0
    for s, e in spans:
        if s > pos:
            gaps.append((pos, min(s, end_sector)))
        pos = max(pos, e)
    if pos < end_sector:
        gaps.append((pos, end_sector))
    out = []
    for s, e in gaps:
        if e <= s:
            continue
        out.append(
            Volume(
                scheme=scheme,
                type="unallocated",
                type_name="Unallocated",
                start=s * sector,
                length=(e - s) * sector,
                kind=UNALLOCATED,
                disk=ctx.source,
            )
        )
    return out


def scan(
    source: ByteSource,
    *,
    strict: bool | None = None,
    sector_size: int | None = None,
    probe: bool = True,
    lvm: bool = True,
) -> VolumeList:
    """Read the partition table(s), LVM2 volumes and filesystem magic of ``source``.

    ``strict`` defaults to the Disk's own setting (True for plain sources): a damaged
    table raises :class:`~vdinspect.errors.CorruptImage`; with ``strict=False`` what can
    be read is listed and the problems are in ``.check()``. ``sector_size`` forces the
    logical sector size (found from the GPT header's place otherwise; 512 for MBR).
    """
    from . import bsd, gpt, mbr, probes

    if strict is None:
        strict = bool(getattr(source, "options", {}).get("strict", True))
    check_sector_size(sector_size)
    ctx = ScanContext(source, strict)
    volumes: list[Volume] = []
    scheme = "none"
    sector = sector_size or 512
    disk_id = None
    table = None
    leaves: list[Volume] = []

    head = source.read(0, min(source.size, 512))
    mbr_table = mbr.read_mbr(ctx, head, sector)
    gpt_table = None
    if gpt.wanted(ctx, mbr_table):
        gpt_table = gpt.read_gpt(ctx, mbr_table, sector_size)
    if gpt_table is not None:
        if mbr_table is not None and mbr_table.hybrid:
            ctx.finding(
                "info",
                "MBR",
                446,
                "hybrid MBR: entries other than the protective 0xEE one describe partitions "
                "too; the GPT is used, as Linux does",
            )
        scheme, table, sector = "gpt", gpt_table, gpt_table.sector_size
        disk_id = gpt_table.disk_guid
        volumes = gpt_table.volumes(ctx)
        leaves = list(volumes)
    elif mbr_table is not None:
        scheme, table = "mbr", mbr_table
        disk_id = f"{mbr_table.disk_signature:08x}"
        volumes = mbr_table.volumes(ctx)
        leaves = [v for v in volumes if v.kind == PARTITION]
        next_index = max([4] + [v.index for v in volumes if v.index is not None]) + 1
        for parent in [v for v in leaves if v.raw.type in bsd.PARENT_TYPES]:
            label = bsd.read_disklabel(ctx, parent, next_index, sector)
            if label is not None:
                children = label.volumes(ctx)
                volumes.extend(children)
                next_index += len(children)
    else:
        label = bsd.read_disklabel(ctx, None, 1, sector)
        if label is not None:
            scheme, table = "bsd", label
            volumes = label.volumes(ctx)
            leaves = list(volumes)

    if scheme == "none":
        whole = Volume(
            scheme="none",
            type="disk",
            type_name="whole disk",
            start=0,
            length=source.size,
            kind=WHOLE_DISK,
            disk=source,
            key="disk",
        )
        volumes = [whole]
    for v in volumes:
        if v.kind == PARTITION:
            _partition_source(ctx, v)

    if probe:
        for v in volumes:
            src = _probe_source(ctx, v)
            if src is not None:
                probes.apply(ctx, v, src)
        members = [v for v in volumes if v.filesystem == "LVM2_member"]
        lvs, vgs = [], []
        if members and lvm:  # the LVM2 reader is imported only for a disk that has PVs
            from . import lvm2

            lvs, vgs = lvm2.scan_lvm(ctx, members)
        for lv in lvs:
            src = _probe_source(ctx, lv)
            if src is not None:
                probes.apply(ctx, lv, src)
    else:
        lvs, vgs = [], []

    rows = list(volumes)
    if scheme != "none":
        rows += _gaps(ctx, leaves, scheme, sector)
    rows.sort(key=lambda v: (v.start, _SORT_RANK[v.kind], -v.length, v.index or 0))
    rows += lvs
    result = VolumeList(rows, ctx=ctx)
    result.scheme = scheme
    result.sector_size = sector
    result.disk_id = disk_id
    result.table = table
    result.volume_groups = vgs
    return result


def scan_many(sources: list[ByteSource], *, strict: bool | None = None) -> list[VolumeList]:
    """Scan several disks together: each disk's partitions, then LVM2 volume groups whose
    physical volumes are spread over the disks (their LVs go to the first list's end)."""
    from . import lvm2, probes

    lists = [scan(src, strict=strict, lvm=False) for src in sources]
    if not lists:
        return lists
    if strict is None:
        strict = bool(getattr(sources[0], "options", {}).get("strict", True))
    ctx = ScanContext(sources[0], strict)
    members = [v for vols in lists for v in vols if v.filesystem == "LVM2_member"]
    if members:
        lvs, vgs = lvm2.scan_lvm(ctx, members)
        for lv in lvs:
            src = _probe_source(ctx, lv)
            if src is not None:
                probes.apply(ctx, lv, src)
        lists[0].extend(lvs)
        lists[0].volume_groups = vgs
        lists[0].findings.extend(f for f in ctx.findings if f not in lists[0].findings)
    return lists


def find_volume(volumes: Iterable[Volume], key) -> Volume:
    """The volume named by ``key``: a partition number (int or digits) or "vg/lv".

    ``0`` or ``"disk"`` names the whole disk when it has no partition table. Unknown keys
    raise :class:`~vdinspect.errors.NotFound` listing the keys that exist.
    """
    vols = [v for v in volumes if v.kind != UNALLOCATED]
    if isinstance(key, bool) or not isinstance(key, int | str):
        raise InvalidArgument(f"volume key must be a partition number or 'vg/lv', not {key!r}")
    k = str(key).strip()
    if k.isdigit():
        k = str(int(k))
    if k == "0":
        k = "disk"
    for v in vols:
        if v.key is not None and v.key == k:
            return v
    known = [v.key for v in vols if v.key]
    where = getattr(volumes, "path", None)
    raise NotFound(
        f"{where + ': ' if where else ''}no volume {key!r}; volumes: "
        f"{', '.join(known) if known else '(none)'}"
    )


__all__ = [
    "Volume",
    "VolumeList",
    "ScanContext",
    "scan",
    "find_volume",
    "PARTITION",
    "CONTAINER",
    "UNALLOCATED",
    "LOGICAL_VOLUME",
    "WHOLE_DISK",
]
