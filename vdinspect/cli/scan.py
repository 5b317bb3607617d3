"""``vdinspect scan``: lost partitions and embedded images, one row per find.

Rows: ``kind`` (partition or image), ``start``, ``length``, ``end``, ``filesystem`` or
``format``, ``label``, ``uuid``, ``virtual_size``, ``opened``, ``errors``, ``found_by``,
``confidence``, ``note``. Exit status 1 when a find is damaged (an image that does not open
over its extent, or whose check() finds errors) or the scan is incomplete (its time budget ran out, hits not examined).
With ``--part N`` the scan looks inside that partition, and offsets are the partition's.
"""

from __future__ import annotations

import sys
from typing import IO

from ..errors import InvalidArgument, NotFound
from .commands import open_disk
from .output import answer, cell, human, write_table

SCAN_COLUMNS = ["kind", "start", "length", "end", "filesystem", "format", "label", "uuid",
                "virtual_size", "opened", "errors", "found_by", "confidence", "note"]


def scan_rows(scan, partitions: bool, images: bool) -> list[dict]:
    """The partition and image rows of a :class:`~vdinspect.recovery.scan.Scan`, one kind."""
    rows = []
    if partitions:
        for r in scan.partition_rows():
            rows.append({c: r.get(c) for c in SCAN_COLUMNS} | dict(kind="partition"))
    if images:
        for r in scan.image_rows():
            rows.append({c: r.get(c) for c in SCAN_COLUMNS} | dict(kind="image"))
    rows.sort(key=lambda r: (r["start"], r["kind"]))
    return rows


def cmd_scan(args, out: IO[str]) -> int:
    from ..recovery.scan import Scan, sfdisk_script

    partitions, images = not args.no_partitions, not args.no_images
    if not (partitions or images):
        raise InvalidArgument("--no-images and --no-partitions leave nothing to look for")
    if args.budget is not None and args.budget <= 0:
        raise InvalidArgument(f"--budget must be a positive number of seconds, not {args.budget}")
    with open_disk(args) as disk:
        where = disk
        if args.part is not None:  # inside one partition: offsets are the partition's
            try:
                where = disk.volume(args.part)
            except NotFound as e:
                raise InvalidArgument(str(e)) from e
        scan = Scan(where, partitions=partitions, images=images,
                    progress=True if args.progress else None, budget=args.budget)
        rows = scan_rows(scan, partitions, images)
        problems = scan.check_rows()
        size = where.size
    bad = [r for r in rows if r["kind"] == "image" and (not r["opened"] or r["errors"])]
    status = 1 if bad or not scan.complete or any(
        p["severity"] in ("error", "warning") for p in problems) else 0
    for p in problems:
        print(f"vdinspect: {args.image}: {p['severity']}: {p['message']}", file=sys.stderr)
    if args.sfdisk:
        out.write(sfdisk_script(scan.partition_rows() if partitions else []))
        return status

    def table() -> None:
        exact = getattr(args, "bytes", False)
        part = "" if args.part is None else f" partition {args.part} (offsets inside it)"
        out.write(f"{args.image}{part}: {human(size)}, read {human(scan.read_bytes)} holding "
                  f"data; {sum(r['kind'] == 'partition' for r in rows)} partition(s), "
                  f"{sum(r['kind'] == 'image' for r in rows)} image(s) found"
                  + ("" if scan.complete else " (incomplete)") + "\n")
        cells = []
        for r in rows:
            what = r["filesystem"] if r["kind"] == "partition" else r["format"]
            # exact: it feeds --offset
            start = str(r["start"]) if exact else f"{r['start']:#x}"
            cells.append((r["kind"], start, human(r["length"], exact),
                          cell(what), cell(r["label"]), f"{r['confidence']:.2f}",
                          cell(r["found_by"] if r["note"] is None else r["note"])))
        write_table(out, ("KIND", "START", "LENGTH", "FILESYSTEM/FORMAT", "LABEL",
                          "CONFIDENCE", "FOUND BY"), cells, right=(1, 2, 5), shrink=6)
    return answer(args, out, rows, None, table, status)
