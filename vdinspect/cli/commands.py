"""What each ``vdinspect`` command does: open the image, take the rows, write them.

Each ``cmd_*`` takes the parsed arguments and the output stream and returns the exit
status. The rows come from the Disk's pandas-free ``*_rows()`` methods and runs, so no
command imports pandas; ``--json`` writes them exactly (bytes, the DataFrame's column
names), the default is a table for people (see :mod:`vdinspect.cli.output`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from collections.abc import Iterator
from operator import attrgetter
from typing import IO, TYPE_CHECKING

from ..errors import InvalidArgument, NotFound
from ..schemas import (
    ALLOCATION_COLUMNS,
    CARVE_COLUMNS,
    CHECK_COLUMNS,
    DIFF_BLOCK_COLUMNS,
    DIFF_FILE_COLUMNS,
    INSPECT_COLUMNS,
    LAYER_COLUMNS,
    PACKAGE_COLUMNS,
    PARTITION_COLUMNS,
    SNAPSHOT_COLUMNS,
    STRUCTURE_FRAME_COLUMNS,
    USER_COLUMNS,
)
from .output import (
    JsonRows,
    answer,
    cell,
    human,
    iso_column,
    project,
    when,
    write_json,
    write_rows,
    write_table,
)
from .problems import listing_status, walked_check_rows

if TYPE_CHECKING:
    from ..disk import Disk

#: what ``info`` shows without --all (the rest is format-internal)
MAIN_INFO = ("format", "virtual_size", "disk_size", "allocated", "cluster_size", "layers",
             "parent", "created", "uuid", "snapshots", "encrypted", "dirty", "corrupt",
             "flags", "vm_name", "disks")


def open_disk(args) -> Disk:
    """The Disk the common options describe."""
    from ..disk import Disk

    disk = Disk.open(args.image, format=args.format, snapshot=args.snapshot,
                     layer=args.layer, strict=not args.salvage,
                     parents=args.parents or None,
                     search=getattr(args, "search", None) or None,
                     follow_outside=getattr(args, "follow_outside", False),
                     sector_size=getattr(args, "sector_size", None),
                     disk=_disk_choice(getattr(args, "disk", None)),
                     offset=getattr(args, "image_offset", None),
                     length=getattr(args, "image_length", None),
                     spool_dir=getattr(args, "spool_dir", None))
    if disk.no_signature:
        print(f"vdinspect: {args.image}: no known image format, partition table or "
              "filesystem signature found; read as a raw disk", file=sys.stderr)
    return disk


def _disk_choice(text: str | None) -> int | str | None:
    """``--disk``: a number is an index, anything else a name."""
    return int(text) if text is not None and text.strip().isdigit() else text


def _size(args, n: int | None) -> str:
    return human(n, exact=getattr(args, "bytes", False))


def _offset(args, n: int | None) -> str:
    """An offset: hex (exact and short, as ``qemu-img map`` prints them), or --bytes."""
    if n is None:
        return ""
    return str(n) if getattr(args, "bytes", False) else f"{n:#x}"


def _hex(n: int | None) -> str:
    return "" if n is None else f"{n:#x}"


def _name(path: str | None) -> str:
    return "" if path is None else os.path.basename(path)


# --- the image -------------------------------------------------------------------------


def cmd_info(args, out: IO[str]) -> int:
    with open_disk(args) as disk:
        exact = args.json or args.all or args.exact
        fields = disk.info_fields(exact=exact)
    if args.json:
        write_json(out, fields, indent=1)
        return 0
    sub = f" {fields['subformat']}" if fields.get("subformat") else ""
    nl = fields["layers"]
    out.write(f"{fields['path']}: {fields['format']}{sub} image, "
              f"{human(fields['virtual_size'])} virtual"
              f"{f', {nl} layers' if nl > 1 else ''}\n")
    keys = list(fields) if args.all else [k for k in MAIN_INFO if k in fields]
    rows = []
    for k in keys:
        v = fields[k]
        if not args.all and (v is None or v == [] or v is False
                             or (k == "snapshots" and v == 0)):
            continue
        if k == "format":
            v = f"{v}{sub}"
        if isinstance(v, int) and not isinstance(v, bool) and (
                k.endswith("size") or k in ("allocated", "file_size")):
            text = _size(args, v)
            if k == "virtual_size" and not args.bytes:
                text += f" ({v} bytes)"
        else:
            text = cell(v)
        rows.append((k.replace("_", " ") + ":", text))
    width = max((len(k) for k, _v in rows), default=0)
    out.write("".join(f"{k:<{width}} {v}".rstrip() + "\n" for k, v in rows))
    if not args.all:
        out.write("(--all for every field, --exact for allocated bytes, --json for scripts)\n"
                  if not args.exact else "(--all for every field, --json for scripts)\n")
    return 0


def cmd_layers(args, out: IO[str]) -> int:
    with open_disk(args) as disk:
        rows = disk.layer_rows()

    def table() -> None:
        out.write(f"{args.image}: {len(rows)} layer(s), base (0) first\n")
        write_table(out, ("LAYER", "FORMAT", "VIRTUAL", "FILE", "ALLOCATED", "PARENT OK",
                          "PATH"),
                    [(str(r["layer"]), f"{r['format']} {r['subformat'] or ''}".strip(),
                      _size(args, r["virtual_size"]), _size(args, r["file_size"]),
                      _size(args, r["allocated"]), cell(r["parent_ok"]), r["path"] or "")
                     for r in rows], right=(0, 2, 3, 4))
    return answer(args, out, rows, LAYER_COLUMNS, table)


def _run_rows(runs) -> list[dict]:
    """Runs as ``allocation()`` rows, built column by column."""
    return [dict(zip(ALLOCATION_COLUMNS, t)) for t in zip(
        [r.start for r in runs], [r.length for r in runs], [r.start + r.length for r in runs],
        [r.state for r in runs], [r.layer for r in runs], [r.host_file for r in runs],
        [r.host_offset for r in runs], [bool(r.compressed) for r in runs])]


def cmd_map(args, out: IO[str]) -> int:
    with open_disk(args) as disk:
        runs = disk.runs(args.start, args.length, own_layer=args.own_layer)
        size = disk.size

    def table() -> None:
        totals: dict[str, list[int]] = {}
        for r in runs:
            t = totals.setdefault(r.state, [0, 0])
            t[0] += 1
            t[1] += r.length
        summary = ", ".join(f"{human(b)} {s} ({n} run{'s' if n > 1 else ''})"
                            for s, (n, b) in totals.items())
        out.write(f"{args.image}: {human(size)} virtual; {summary or 'nothing'}\n")
        files = {r.host_file for r in runs if r.host_file}
        comp = any(r.compressed for r in runs)
        head = ["START", "END", "LENGTH", "STATE", "LAYER", "HOST OFFSET"]
        head += ["COMPRESSED"] * comp + ["HOST FILE"] * (len(files) > 1)
        rows = []
        for r in runs:
            row = [_offset(args, r.start), _offset(args, r.start + r.length),
                   _size(args, r.length), r.state, cell(r.layer), _hex(r.host_offset)]
            row += ["yes" if r.compressed else ""] * comp
            row += [_name(r.host_file)] * (len(files) > 1)
            rows.append(row)
        write_table(out, head, rows, right=(0, 1, 2, 4, 5))
    return answer(args, out, _run_rows(runs) if args.json else [], None, table)


def cmd_snapshots(args, out: IO[str]) -> int:
    with open_disk(args) as disk:
        rows = disk.snapshot_rows()

    def table() -> None:
        if not rows:
            out.write(f"{args.image}: no snapshots\n")
            return
        out.write(f"{args.image}: {len(rows)} snapshot(s)\n")
        write_table(out, ("ID", "NAME", "CREATED", "VM STATE", "LAYER", "DESCRIPTION"),
                    [(cell(r.get("id")), cell(r.get("name")), when(r.get("created")),
                      _size(args, r.get("vm_state_size")), cell(r.get("layer")),
                      cell(r.get("description"))) for r in rows], right=(3, 4), shrink=5)
    return answer(args, out, rows, SNAPSHOT_COLUMNS, table)


def cmd_check(args, out: IO[str]) -> int:
    """The image's findings (layers, partition tables); with --part, that filesystem's."""
    with open_disk(args) as disk:
        if args.part is not None:
            fs = _filesystem(args, disk)
            rows = [dict(r, layer=None) for r in walked_check_rows(fs)]
            what = f"the filesystem of --part {args.part} and its folders"
        else:
            rows = disk.check_rows()
            nl = len(disk.chain.layers)
            what = (f"{nl} layers" if nl > 1 else "1 layer") + " and the partition table"
            whole = [v for v in disk.filesystem_volumes(readable=True) if v.scheme == "none"]
            if len(whole) == 1:  # a bare filesystem image: no --part needed to check it
                fs = disk.filesystem(whole[0].key)
                rows += [dict(r, layer=None) for r in walked_check_rows(fs)]
                what = what.replace(" and the partition table",
                                    f" and the {whole[0].filesystem} filesystem and its folders")

    def table() -> None:
        if not rows:
            out.write(f"{args.image}: no problems found ({what} checked)\n")
            return
        counts: dict[str, int] = {}
        for r in rows:
            counts[r.get("severity") or "?"] = counts.get(r.get("severity") or "?", 0) + 1
        out.write(f"{args.image}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
                  + f" ({what} checked)\n")
        write_table(out, ("SEVERITY", "LAYER", "STRUCTURE", "OFFSET", "MESSAGE"),
                    [(cell(r.get("severity")), cell(r.get("layer")), cell(r.get("structure")),
                      _hex(r.get("host_offset")), cell(r.get("message"))) for r in rows],
                    right=(1, 3))
    # like fsck and qemu-img check: a problem found is not a success
    return answer(args, out, rows, CHECK_COLUMNS, table,
                  status=1 if any(r.get("severity") == "error" for r in rows) else 0)


def cmd_structures(args, out: IO[str]) -> int:
    with open_disk(args) as disk:
        rows = disk.structure_rows()

    def table() -> None:
        many = len({r.get("host_file") for r in rows}) > 1
        out.write(f"{args.image}: {len(rows)} on-disk structures\n")
        head = ["LAYER", "NAME", "OFFSET", "LENGTH", "DESCRIPTION"] + ["FILE"] * many
        write_table(out, head, [
            [cell(r.get("layer")), cell(r.get("name")), _hex(r.get("host_offset")),
             _size(args, r.get("length")), cell(r.get("description"))]
            + [_name(r.get("host_file"))] * many for r in rows],
            right=(0, 2, 3), shrink=4)
    return answer(args, out, rows, STRUCTURE_FRAME_COLUMNS, table)


def cmd_explain(args, out: IO[str]) -> int:
    with open_disk(args) as disk, _bad_call():
        ex = disk.explain(args.structure, layer=args.in_layer, offset=args.offset)
    if args.json:
        write_json(out, dict(name=ex.name, host_file=ex.host_file, host_offset=ex.host_offset,
                             size=ex.size, description=ex.description,
                             fields=[dict(offset=f.offset, size=f.size, field=f.field,
                                          raw=f.raw, value=f.value, meaning=f.meaning)
                                     for f in ex.fields]), indent=1)
        return 0
    out.write(str(ex) + "\n")
    return 0


def cmd_convert(args, out: IO[str]) -> int:
    with open_disk(args) as disk:
        written = disk.to_raw(args.output, progress=True if args.progress else None,
                              workers=args.workers)
        if args.json:
            write_json(out, dict(output=args.output, virtual_size=disk.size,
                                 data_written=written))
        else:
            out.write(f"{args.output}: {human(disk.size)} raw disk written "
                      f"({human(written)} of data, the rest left sparse)\n")
    return 0


# --- what is on the disk -------------------------------------------------------------------


def cmd_parts(args, out: IO[str]) -> int:
    with open_disk(args) as disk:
        if args.part is not None:
            with _bad_call():
                rows = [disk.volumes().find(args.part).row()]
        else:
            rows = disk.partition_rows()
        size = disk.size
    for r in rows:
        if r.get("end") is None and r.get("start") is not None:
            r["end"] = r["start"] + r["length"]

    def table() -> None:
        schemes = sorted({r["scheme"] for r in rows if r.get("scheme")})
        nparts = sum(1 for r in rows if r.get("type") != "unallocated")
        out.write(f"{args.image}: {human(size)}, {'/'.join(schemes) or 'no'} partition "
                  f"table, {nparts} volume(s)\n")
        cells = [(cell(r.get("index")), _size(args, r["start"]), _size(args, r["end"]),
                  _size(args, r["length"]),
                  "free space" if r.get("type") == "unallocated"
                  else cell(r.get("type_name") or r.get("type")),
                  cell(r.get("filesystem")), cell(r.get("label")), cell(r.get("name")))
                 for r in rows]
        write_table(out, ("#", "START", "END", "SIZE", "TYPE", "FILESYSTEM", "LABEL", "NAME"),
                    cells, right=(0, 1, 2, 3), shrink=7)
    return answer(args, out, rows, PARTITION_COLUMNS, table)


@contextlib.contextmanager
def _bad_call() -> Iterator[None]:
    """A partition or path that does not exist is a bad call (exit 2), not a bad image."""
    try:
        yield
    except NotFound as e:
        raise InvalidArgument(str(e)) from e


def _filesystem(args, disk):
    """The filesystem ``--part`` names, or the only one; else say which choices exist."""
    with _bad_call():
        if args.part is None:
            readable = disk.filesystem_volumes(readable=True)
            if len(readable) != 1:
                vols = disk.filesystem_volumes()
                if not vols:
                    raise InvalidArgument(f"{args.image}: no filesystem found on this disk")
                choices = "; ".join(
                    f"--part {v.key}: {v.filesystem}"
                    + (f" '{v.label}'" if v.label else "") + f", {human(v.length)}"
                    + ("" if v in readable else " (no reader)") for v in vols)
                if not readable:
                    raise InvalidArgument(f"{args.image}: no reader for the filesystems "
                                          f"found ({choices})")
                raise InvalidArgument(
                    f"{args.image} holds {len(readable)} filesystems: choose one with "
                    f"--part N ({choices})")
            return disk.filesystem(readable[0].key)
        return disk.filesystem(args.part)


#: entries listed per batch: each batch is turned into columns and written at once
LS_BATCH = 1024
TIMES = ("created", "modified", "accessed", "changed")
_extra = attrgetter("extra")


def file_batches(fs, entries: Iterator, batch: int | None = None) -> Iterator[tuple[list, list]]:
    """Entries as ``files()`` rows, a batch at a time, as (keys, columns): the
    FILES_COLUMNS, ``damaged`` and the driver's extra columns; times as ISO 8601 text
    (:func:`~vdinspect.cli.output.iso_column`). A row lacking an extra column seen
    on an earlier row has it as None, as in the frame (a column first seen later cannot
    be added to rows already written: the batch is cut there)."""
    from ..filesystems.base import FILES_COLUMNS

    fields = attrgetter(*FILES_COLUMNS)
    times = [FILES_COLUMNS.index(c) for c in TIMES]
    volume_damaged = fs.volume_damaged()
    known: dict = {}
    it = iter(entries)
    while chunk := list(itertools.islice(it, batch or LS_BATCH)):
        start = 0
        shapes = set(map(tuple, map(_extra, chunk)))
        if len(shapes) == 1 and known.keys() <= set(shape := next(iter(shapes))):
            known.update(dict.fromkeys(shape))  # the common case: every row alike
            yield _batch_columns(fs, chunk, known, True, fields, times, volume_damaged)
            continue
        while start < len(chunk):
            stop, same = start, True
            while stop < len(chunk):  # extend the run while no new extra column appears
                extra = chunk[stop].extra
                if extra.keys() != known.keys():
                    if not extra.keys() <= known.keys():
                        if stop > start:
                            break
                        known.update(dict.fromkeys(extra))
                    same = same and extra.keys() == known.keys()
                stop += 1
            part = chunk[start:stop]
            start = stop
            yield _batch_columns(fs, part, known, same, fields, times, volume_damaged)


def _batch_columns(fs, part: list, known: dict, same: bool, fields, times: list[int],
                   volume_damaged: bool) -> tuple[list, list]:
    """One batch of :func:`file_batches`: entries whose extra columns are ``known``'s
    (all of them when ``same``, else some, the others None)."""
    from operator import itemgetter

    from ..filesystems.base import FILES_COLUMNS

    cols = [list(c) for c in zip(*map(fields, part))]
    for i in times:
        cols[i] = iso_column(cols[i])
    if volume_damaged:
        cols.append([fs.damaged(e) for e in part])
    else:
        cols.append([None if k == "dir" else 0 for k in cols[FILES_COLUMNS.index("kind")]])
    names = list(known)
    if names:
        if same:
            vals = list(map(itemgetter(*names), map(_extra, part)))
            cols += [list(c) for c in zip(*vals)] if len(names) > 1 else [vals]
        else:
            cols += [[e.extra.get(k) for e in part] for k in names]
    return [*FILES_COLUMNS, "damaged", *names], cols


def _entries(fs, top, args) -> Iterator:
    if top.kind == "dir":
        return fs.iter_entries(top.path or "/", recursive=args.recursive,
                               deleted=args.deleted)
    return iter([top])


def cmd_ls(args, out: IO[str]) -> int:
    from ..filesystems.walk import paused_gc  # here: other commands never import them
    from .columns import LS_TEXT_COLUMNS, ls_column_lines, ls_lines, row_batches

    with open_disk(args) as disk:
        fs = _filesystem(args, disk)
        with _bad_call():
            top = fs.lookup(args.path, deleted=args.deleted)
        seen = len(fs.findings)
        columns = _column_walk(fs, top, args)
        if args.json:
            writer = JsonRows(out)
            with paused_gc():
                if columns is not None:
                    batches = row_batches(columns, LS_BATCH)
                else:
                    batches = file_batches(fs, _entries(fs, top, args))
                for keys, cols in batches:
                    writer.add(keys, cols)
            writer.close()
            return listing_status(fs, seen)
        damaged = fs.volume_damaged()
        label = f" '{fs.label}'" if fs.label else ""
        out.write(f"{fs.name} ({fs.fstype}{label}): {top.path or '/'}"
                  f"{' and below' if args.recursive else ''}\n")
        size_w = 20 if args.bytes else 9
        head = f"{'KIND':<7}  {'SIZE':>{size_w}}  {'MODIFIED':<19}  {'INODE':>8}  "
        out.write(head + ("DAMAGED  " if damaged else "") + "PATH\n")
        with paused_gc():
            if columns is not None:
                for keys, cols in row_batches(columns, LS_BATCH, time=when,
                                              only=LS_TEXT_COLUMNS):
                    out.write(ls_column_lines(args, dict(zip(keys, cols)), size_w))
            else:
                it = _entries(fs, top, args)
                while chunk := list(itertools.islice(it, LS_BATCH)):
                    out.write(ls_lines(args, fs, chunk, damaged, size_w))
        out.flush()
        return listing_status(fs, seen)


def _column_walk(fs, top, args) -> Iterator[tuple[dict, dict]] | None:
    """The driver's column walk below ``top`` (``column_batches``, streamed a run of
    directories at a time) where it has one and the volume has no damaged ranges (the
    ``damaged`` column needs the Entries); None: the Entry walk lists it."""
    batches = fs.column_batches
    if batches is None or top.kind != "dir" or fs.volume_damaged():
        return None
    return batches(top.path or "/", recursive=args.recursive, deleted=args.deleted,
                   rows=LS_BATCH)


def cmd_cat(args, out: IO[str]) -> int:
    with open_disk(args) as disk:
        fs = _filesystem(args, disk)
        with _bad_call():
            entry = fs.lookup(args.path, deleted=True)
        if entry.kind == "dir":
            raise InvalidArgument(f"{args.path} is a folder: list it with `vdinspect ls`")
        if args.json:  # the bytes as base64 inside one JSON object
            import base64

            with fs.open(entry) as f:
                data = f.read()
                bad = f.damaged_ranges()
            write_json(out, dict(path=entry.path, size=len(data),
                                 damaged=[list(r) for r in bad],
                                 base64=base64.b64encode(data).decode("ascii")))
            return 1 if bad else 0
        sink = getattr(out, "buffer", out)
        with fs.open(entry) as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                sink.write(chunk)
            bad = f.damaged_ranges()
        sink.flush()
        if bad:
            from ..filesystems.base import damage_text

            print(f"vdinspect: {entry.path}: could not read {damage_text(bad)} "
                  "(written as zeros)", file=sys.stderr)
            return 1
    return 0


def cmd_extract(args, out: IO[str]) -> int:
    with open_disk(args) as disk:
        fs = _filesystem(args, disk)
        with _bad_call():
            fs.lookup(args.path, deleted=args.deleted)
        rep = fs.extract(args.path, args.dest, deleted=args.deleted,
                         progress=True if args.progress else None)
        if args.json:
            damaged = [dict(path=p, host=h, ranges=[list(r) for r in rs])
                       for p, h, rs in rep.damaged]
            write_json(out, dict(dest=rep.dest, written=rep.written,
                                 bytes_written=rep.bytes_written, renamed=rep.renamed,
                                 incomplete=rep.incomplete, skipped=rep.skipped,
                                 damaged=damaged, linked=rep.linked), indent=1)
        else:
            from ..filesystems.base import damage_text

            out.write(rep.summary() + "\n")
            for path, host in rep.renamed:
                out.write(f"renamed: {path} -> {host}\n")
            for path, first in rep.linked:
                out.write(f"hard link: {path} = {first}\n")
            for path, why in rep.incomplete:
                out.write(f"incomplete: {path}: {why}\n")
            for path, _host, ranges in rep.damaged:
                out.write(f"damaged: {path}: {damage_text(ranges)} unreadable, "
                          "written as zeros\n")
            for path, why in rep.skipped:
                out.write(f"skipped: {path}: {why}\n")
    # files written with holes of zeros where the image is damaged: not a clean copy
    # a file that could not be read is lost: exit 1 (a FIFO or an outside link skipped is not)
    lost = any(why.startswith("unreadable") for _p, why in rep.skipped)
    return 1 if rep.damaged or rep.incomplete or lost else 0


# --- comparing two states ----------------------------------------------------------------
def cmd_diff(args, out: IO[str]) -> int:
    """Blocks and files that differ from OLD (with --snapshot/--layer) to NEW."""
    from ..compare import Diff
    from ..disk import Disk

    with open_disk(args) as old, Disk.open(
            args.new or args.image, format=args.format, strict=not args.salvage,
            parents=args.parents or None, search=args.search or None,
            follow_outside=args.follow_outside, sector_size=args.sector_size) as new:
        d = Diff(old, new, part=args.part)
        with _bad_call():
            blocks = [] if args.files else [dict(r, end=r["start"] + r["length"])
                                             for r in d.block_rows()]
            files = [] if args.blocks else d.file_rows()
        if args.json:
            brows = project(blocks, DIFF_BLOCK_COLUMNS)
            frows = project(files, DIFF_FILE_COLUMNS)
            if args.blocks:
                write_rows(out, brows)
            elif args.files:
                write_rows(out, frows)
            else:
                write_json(out, {"blocks": brows, "files": frows})
            return 0
        if not args.files:
            total = sum(r["length"] for r in blocks)
            out.write(f"{len(blocks)} changed range(s), {_size(args, total)}\n")
            write_table(out, ("START", "LENGTH", "HOW"),
                        [(_offset(args, r["start"]), _size(args, r["length"]), r["how"])
                         for r in blocks], right=(0, 1))
        if not args.blocks:
            if not args.files:
                out.write("\n")
            out.write(f"{len(files)} changed file(s)\n")
            if files:
                write_table(out, ("CHANGE", "PART", "PATH", "OLD SIZE", "NEW SIZE", "WHAT"),
                            [(r["change"], cell(r["part"]),
                              r["path"] if r["change"] != "renamed"
                              else f"{r['old_path']} -> {r['path']}",
                              _size(args, r["old_size"]), _size(args, r["new_size"]),
                              r["what"] or "") for r in files], right=(3, 4))
    return 0


# --- what machine it was -----------------------------------------------------------------
def cmd_inspect(args, out: IO[str]) -> int:
    """The operating systems on the disk (or, with --packages/--users, what they record)."""
    from ..guest import inspect_rows, package_rows, user_rows

    with open_disk(args) as disk:
        if args.packages:
            rows, cols = package_rows(disk), PACKAGE_COLUMNS
        elif args.users:
            rows, cols = user_rows(disk), USER_COLUMNS
        else:
            rows, cols = inspect_rows(disk), INSPECT_COLUMNS
    return answer(args, out, rows, cols, lambda: _inspect_text(args, out, rows))


def _inspect_text(args, out: IO[str], rows: list[dict]) -> None:
    """``inspect`` for people: the packages, the users, or each OS found."""
    if args.packages:
        out.write(f"{len(rows)} installed package(s)\n")
        write_table(out, ("ROOT", "MANAGER", "NAME", "VERSION", "ARCH", "SIZE"),
                    [(cell(r["root"]), r["manager"], r["name"], r["version"] or "",
                      r["arch"] or "", _size(args, r["size"])) for r in rows], right=(5,))
        return
    if args.users:
        out.write(f"{len(rows)} user(s)\n")
        write_table(out, ("ROOT", "NAME", "UID", "HOME", "SID", "LAST LOGIN"),
                    [(cell(r["root"]), r["name"] or "", cell(r["uid"]), r["home"] or "",
                      r["sid"] or "", when(r["last_login"])) for r in rows], right=(2,))
        return
    if not rows:
        out.write(f"{args.image}: no operating system found\n")
        return
    for r in rows:
        out.write(f"{args.image}, volume {r['root']}: {r['product'] or r['family']}\n")
        for c in INSPECT_COLUMNS[1:-1]:
            if r[c] not in (None, ""):
                v = when(r[c]) if hasattr(r[c], "tzinfo") else str(r[c])
                out.write(f"  {c:<14}{v}\n")
        out.write("\n")


def cmd_carve(args, out: IO[str]) -> int:
    """Files by content: the whole disk, or with --part that filesystem's free space.
    Exit 1 when a file could not be validated or written, or the search stopped early."""
    types = [t.strip() for t in args.types.split(",") if t.strip()] if args.types else None
    kw = dict(types=types, budget=args.budget, progress=True if args.progress else None)
    with open_disk(args) as disk:
        with _bad_call():
            res = _filesystem(args, disk).carve(**kw) if args.part else disk.carve(**kw)
        rep = res.extract(args.dest, progress=kw["progress"]) if args.dest else None
        rows = project(res.rows, CARVE_COLUMNS)
        findings = res.check_rows()
        if args.json:
            if rep is not None:
                from ..recovery.carve import file_name

                for r in rows:
                    r["file"] = os.path.join(rep.dest, file_name(r))
            write_rows(out, rows)
        else:
            cells = [(_offset(args, r["offset"]), _size(args, r["length"]), r["type"],
                      cell(r["validated"]), cell(r["fragmented"]), r["note"] or "")
                     for r in rows]
            write_table(out, ("OFFSET", "LENGTH", "TYPE", "VALID", "FRAG", "NOTE"), cells,
                        right=(0, 1), shrink=5)
            out.write(res.summary() + "\n")
        for f in findings:
            print(f"vdinspect: {f['severity']}: {f['message']}", file=sys.stderr)
        if rep is not None:
            for path, why in rep.skipped + rep.incomplete:
                print(f"vdinspect: {path}: {why}", file=sys.stderr)
    bad_rows = any(not r["validated"] for r in rows)
    bad_write = rep is not None and bool(rep.skipped or rep.incomplete or rep.damaged)
    stopped = any(f["severity"] in ("warning", "error") for f in findings)
    return 1 if bad_rows or bad_write or stopped else 0
