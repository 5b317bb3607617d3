"""Lost partitions and virtual disks inside disks, found by their own structures.

``Disk.scan_partitions()`` reads what holds data on a disk (a virtual disk's allocated
runs only) and proposes a partition set from the filesystems' and volume formats' own
evidence, whether or not a partition table is left; ``Disk.scan_images()`` finds virtual
disk images stored inside (a deleted VM disk file, an image in an archive) with their
extents, which ``vdinspect.open(host, offset=start, length=length)`` opens in place.
Nothing is written: :func:`sfdisk_script` gives a table for the user to apply elsewhere.
Modules: ``structs`` (signatures), ``sweep`` (the read pass), ``evidence`` (what each
hit says), ``partitions`` (the consistent set), ``images`` (embedded images).
"""

from __future__ import annotations

import bisect
import time
from typing import TYPE_CHECKING

from ...errors import InvalidArgument, NotFound
from ...findings import Findings
from ...io import ByteSource, Slice
from ...progress import Progress
from ...units import check_sector_size
from .evidence import INTERPRETERS, Evidence
from .images import image_rows
from .partitions import combine
from .structs import IMAGE_SIGNATURES, PARTITION_SIGNATURES
from .sweep import CHUNK, MAX_HITS, Sweep

if TYPE_CHECKING:
    import pandas as pd

MAX_EVIDENCE = 65536  # pieces of evidence weighed (table entries count one each)

__all__ = ["Scan", "scan_partitions", "scan_images", "open_found", "sfdisk_script"]


class Scan(Findings):
    """One read pass over ``source`` for partitions and/or images; rows without pandas.

    ``budget`` (seconds) stops the pass early with a finding; ``progress`` is a callable
    ``report(done, total)`` or True for a tqdm bar; ``chunk`` is bytes per read.
    """

    def __init__(self, source: ByteSource, *, partitions: bool = True, images: bool = True,
                 progress: Progress = None, budget: float | None = None, chunk: int = CHUNK,
                 max_hits: int = MAX_HITS) -> None:
        if budget is not None and (isinstance(budget, bool) or not isinstance(
                budget, int | float) or not budget > 0):
            raise InvalidArgument(f"budget must be a positive number of seconds, not {budget!r}")
        #: when the budget runs out (time.monotonic()); the read, the weighing of evidence
        #: and the opening of images each stop there with a finding
        self.deadline = None if budget is None else time.monotonic() + budget
        self.budget = budget
        if chunk < 512:
            raise InvalidArgument(f"chunk must be at least 512 bytes, not {chunk}")
        self.source = source
        self.name = getattr(source, "path", None) or source.name
        self.path = self.name
        self.strict = False
        sigs = (PARTITION_SIGNATURES if partitions else ()) + (
            IMAGE_SIGNATURES if images else ())
        self.sweep = Sweep(source, sigs, progress=progress, budget=budget, chunk=chunk,
                           max_hits=max_hits)
        self.complete = self.sweep.complete
        self.read_bytes = self.sweep.read_bytes
        self.evidence: list[Evidence] = []
        self._partition_rows = self._image_rows = None
        if partitions:
            for name, fn in INTERPRETERS.items():
                for pos in sorted(self.sweep.hits.get(name, ())):
                    if self.out_of_time(f"{name} signature", pos):
                        break
                    if len(self.evidence) >= MAX_EVIDENCE:
                        self.finding("warning", f"{name} signature", pos,
                                     f"the scan stopped weighing evidence at {MAX_EVIDENCE} "
                                     "pieces: the disk may be hostile")
                        break
                    self.evidence += _interpret(fn, source, pos)

    def out_of_time(self, structure: str, offset: int | None) -> bool:
        """True once the time budget has run out (recorded once, as a finding)."""
        if self.deadline is None or time.monotonic() <= self.deadline:
            return False
        if self.complete:
            self.complete = False
        self.finding("warning", structure, offset,
                     f"the time budget of {self.budget} s ran out: what lies at and after "
                     f"{'this point' if offset is None else hex(offset)} is not listed")
        return True

    def partition_rows(self) -> list[dict]:
        """The ``scan_partitions()`` rows (no pandas)."""
        if self._partition_rows is None:
            self._partition_rows = combine(self, self.source, self.evidence)
        return self._partition_rows

    def image_rows(self) -> list[dict]:
        """The ``scan_images()`` rows (no pandas)."""
        if self._image_rows is None:
            self._image_rows = image_rows(self, self.source,
                                          {k: sorted(v) for k, v in self.sweep.hits.items()})
        return self._image_rows

    def check_rows(self) -> list[dict]:
        """What the scan could not do (stopped early, places not examined), as check() rows."""
        return self.sweep.findings_rows() + self.findings_rows()

    def check(self) -> pd.DataFrame:
        """``check_rows()`` in the ``check()`` schema."""
        from ...frames import check_frame

        return check_frame(self.check_rows())


def _interpret(fn, source: ByteSource, pos: int) -> list[Evidence]:
    """The evidence of one hit; a structure that does not parse is no evidence."""
    from construct import ConstructError

    from ...errors import VDInspectError

    try:
        return fn(source, pos)
    except (VDInspectError, ConstructError, ValueError, IndexError, OverflowError):
        return []


def scan_partitions(disk: ByteSource, *, progress: Progress = None,
                    budget: float | None = None, chunk: int = CHUNK) -> pd.DataFrame:
    """Partitions found by their own evidence: the ``partitions()`` columns plus
    ``found_by``, ``confidence`` (0..1) and ``evidence``; ``df.attrs["check"]`` lists what
    the scan could not do (stopped by ``budget``, hits not examined)."""
    from ...frames import check_frame, found_partitions_frame

    scan = Scan(disk, images=False, progress=progress, budget=budget, chunk=chunk)
    df = found_partitions_frame(scan.partition_rows())
    df.attrs["check"] = check_frame(scan.check_rows())
    df.attrs["complete"] = scan.complete
    return df


def scan_images(disk: ByteSource, *, progress: Progress = None, budget: float | None = None,
                chunk: int = CHUNK) -> pd.DataFrame:
    """Virtual disk images stored inside ``disk``: start, length (from the image's own
    metadata), format, virtual size, whether it opens; ``df.attrs["check"]`` as in
    :func:`scan_partitions`."""
    from ...frames import check_frame, found_images_frame

    scan = Scan(disk, partitions=False, progress=progress, budget=budget, chunk=chunk)
    df = found_images_frame(scan.image_rows())
    df.attrs["check"] = check_frame(scan.check_rows())
    df.attrs["complete"] = scan.complete
    return df


def scan_free_images(fs, *, progress: Progress = None, budget: float | None = None,
                     chunk: int = CHUNK) -> pd.DataFrame:
    """:func:`scan_images` over a filesystem's free space only (``fs.free_ranges()`` back
    to back): where the disk file of a deleted VM still lies. ``start`` is the offset in
    the volume; an image whose bytes run across free ranges that are not next to each
    other says so in ``note`` (its ``start`` is where it begins)."""
    from ...frames import check_frame, found_images_frame
    from ...io.mapped import MappedSource

    ranges = [(o, n) for o, n in fs.free_ranges() if n > 0]
    starts, pos = [], 0
    for _o, n in ranges:
        starts.append(pos)
        pos += n
    free = MappedSource(fs.source, pos, starts, [s + n for s, (_o, n) in zip(starts, ranges)],
                        [o for o, _n in ranges], name=f"{fs.name} (free space)")
    scan = Scan(free, partitions=False, progress=progress, budget=budget, chunk=chunk)
    rows = scan.image_rows()
    for r in rows:
        i = max(0, bisect.bisect_right(starts, r["start"]) - 1)
        inside = starts[i] + ranges[i][1] - r["start"]
        r["start"] = ranges[i][0] + (r["start"] - starts[i])
        if r.get("length") is not None:
            r["end"] = r["start"] + r["length"]
            if r["length"] > inside:
                note = ("runs on across free ranges that are not next to each other "
                        "(its bytes are in pieces; read it from the free space, not "
                        "in place)")
                r["note"] = f"{r['note']}; {note}" if r.get("note") else note
    df = found_images_frame(rows)
    df.attrs["check"] = check_frame(scan.check_rows())
    df.attrs["complete"] = scan.complete
    return df


def open_found(disk: ByteSource, row) -> object:
    """The filesystem of a ``scan_partitions()`` row (a Series or a dict), read in place."""
    from ...filesystems import open_filesystem

    try:
        start, length = int(row["start"]), int(row["length"])
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidArgument(f"not a scan_partitions() row: {e}") from e
    if start < 0 or length <= 0 or start + length > disk.size:
        raise NotFound(f"{disk.name}: no partition [{start:#x}, +{length:#x}) on this disk")
    fs = row.get("filesystem") if hasattr(row, "get") else None
    fs = None if fs is None or fs != fs or str(fs) in ("", "<NA>") else str(fs)
    strict = getattr(disk, "options", {}).get("strict", True)
    return open_filesystem(Slice(disk, start, length, name=f"{disk.name}@{start}"), fs,
                           name=f"{disk.name}@{start}", strict=strict)


#: the MBR type byte and GPT type GUID an sfdisk script gives each filesystem
_SFDISK_TYPES = {
    "ntfs": ("7", "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
    "exfat": ("7", "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
    "BitLocker": ("7", "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
    "fat12": ("1", "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
    "fat16": ("6", "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
    "fat32": ("c", "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
    "swap": ("82", "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"),
    "LVM2_member": ("8e", "E6D6D379-F507-44C2-A23C-238F2A3DF928"),
}
_LINUX = ("83", "0FC63DAF-8483-4772-8E79-3D69D8477DE4")


def sfdisk_script(df, *, label: str | None = None, sector_size: int = 512) -> str:
    """An ``sfdisk`` script recreating the found partitions (``sfdisk DEVICE < script``),
    for the user to apply to a copy: vdinspect never writes. ``label`` is "dos" or "gpt"
    (default: gpt when a GPT entry was among the evidence or more than 4 partitions were
    found, else dos)."""
    rows = df.to_dict("records") if hasattr(df, "to_dict") else list(df)
    if label is None:
        gpt = len(rows) > 4 or any(str(r.get("scheme")) == "gpt" for r in rows)
        label = "gpt" if gpt else "dos"
    if label not in ("dos", "gpt"):
        raise InvalidArgument(f"label must be 'dos' or 'gpt', not {label!r}")
    check_sector_size(sector_size, optional=False)
    if label == "dos" and len(rows) > 4:
        raise InvalidArgument(f"{len(rows)} partitions do not fit a dos table's 4 primary "
                              "entries: use label='gpt'")
    lines = [f"label: {label}", "unit: sectors", f"sector-size: {sector_size}", ""]
    for r in rows:
        start, length = int(r["start"]), int(r["length"])
        if start % sector_size or length % sector_size:
            raise InvalidArgument(f"partition at {start:#x} is not on {sector_size}-byte "
                                  "sectors")
        dos, guid = _SFDISK_TYPES.get(str(r.get("filesystem")), _LINUX)
        t = str(r.get("type")) if str(r.get("scheme")) == label and r.get("type") else None
        if label == "dos" and t:
            t = t.removeprefix("0x")
        lines.append(f"start={start // sector_size}, size={length // sector_size}, "
                     f"type={t or (dos if label == 'dos' else guid)}")
    return "\n".join(lines) + "\n"
