"""The ``vdinspect`` command: the API's verbs for terminals and scripts.

Exit status: 0 success, 1 unreadable or bad input (one line on stderr naming file,
structure and offset), 2 usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import sys
from collections.abc import Sequence

from .errors import InvalidArgument, VDInspectError


def _jsonable(v):
    import numpy as np
    import pandas as pd

    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, pd.Timestamp | dt.datetime):
        return v.isoformat()
    if isinstance(v, pd.Timedelta | dt.timedelta):
        return v.total_seconds()
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, bytes):
        return v.hex()
    return v


def _rows(df) -> list[dict]:
    cols = []
    for c in df.columns:
        s = df[c]
        if s.dtype.kind in "iub" and not s.hasnans:  # plain numbers: no per-cell work
            cols.append(s.tolist())
        else:
            cols.append([_jsonable(v) for v in s.tolist()])
    names = [str(c) for c in df.columns]
    return [dict(zip(names, row)) for row in zip(*cols)]


def _print_frame(df, out, as_json: bool) -> None:
    if as_json:  # one row a line; json.dumps without indent uses the C encoder
        rows = _rows(df)
        out.write("[\n" + ",\n".join(json.dumps(r) for r in rows) + ("\n]\n" if rows else "]\n"))
        return
    if df.empty:
        out.write("(none)\n")
        return
    import pandas as pd

    with pd.option_context("display.max_rows", None, "display.max_columns", None,
                           "display.width", 200, "display.max_colwidth", 80):
        out.write(df.to_string(index=False) + "\n")


def _open(args):
    import vdinspect

    return vdinspect.open(args.image, format=args.format, snapshot=args.snapshot,
                          layer=args.layer, strict=not args.salvage,
                          parents=args.parents or None, search=args.search or None,
                          follow_outside=args.follow_outside)


def cmd_info(args, out) -> int:
    with _open(args) as disk:
        s = disk.info()
        if args.json:
            json.dump({k: _jsonable(v) for k, v in s.items()}, out, indent=1)
            out.write("\n")
        else:
            width = max(len(k) for k in s.index)
            for k, v in s.items():
                v = _jsonable(v)
                if isinstance(v, list):
                    v = ", ".join(str(x) for x in v) or "-"
                out.write(f"{k:<{width}}  {'-' if v is None else v}\n")
    return 0


def cmd_layers(args, out) -> int:
    with _open(args) as disk:
        _print_frame(disk.layers(), out, args.json)
    return 0


def cmd_map(args, out) -> int:
    with _open(args) as disk:
        df = disk.allocation(args.start, args.length, layer=args.own_layer)
        _print_frame(df, out, args.json)
    return 0


def cmd_snapshots(args, out) -> int:
    with _open(args) as disk:
        _print_frame(disk.snapshots(), out, args.json)
    return 0


def cmd_check(args, out) -> int:
    with _open(args) as disk:
        df = disk.check()
        _print_frame(df, out, args.json)
        if not args.json and df.empty:
            out.write("No errors were found on the image.\n")
    return 0


def cmd_structures(args, out) -> int:
    with _open(args) as disk:
        _print_frame(disk.structures(), out, args.json)
    return 0


def cmd_parts(args, out) -> int:
    with _open(args) as disk:
        if args.part is not None:
            from . import frames

            df = frames.partitions_frame([disk.volumes().find(args.part).row()])
        else:
            df = disk.partitions()
        _print_frame(df, out, args.json)
    return 0


def cmd_convert(args, out) -> int:
    with _open(args) as disk:
        written = disk.to_raw(args.output, progress=True if args.progress else None)
        if args.json:
            json.dump(dict(output=args.output, virtual_size=disk.size, data_written=written),
                      out)
            out.write("\n")
    return 0


@contextlib.contextmanager
def _bad_call():
    """A partition or path that does not exist is a bad call (exit 2), not a bad image."""
    from .errors import NotFound

    try:
        yield
    except NotFound as e:
        raise InvalidArgument(str(e)) from e


def _list_frame(df):
    cols = ["kind", "size", "modified", "inode", "deleted", "path"]
    if "damaged" in df and df["damaged"].fillna(0).gt(0).any():
        cols.insert(2, "damaged")  # bytes that could not be read (salvage mode)
    return df[[c for c in cols if c in df]]


def cmd_ls(args, out) -> int:
    with _open(args) as disk:
        with _bad_call():
            fs = disk.filesystem(args.part)
            top = fs.lookup(args.path, deleted=args.deleted)
        df = fs.files(top.path or "/", recursive=args.recursive, deleted=args.deleted)
        if top.kind == "dir" and len(df) and not args.recursive:
            df = df[df["parent"] == (top.path or "/")]
        _print_frame(df if args.json else _list_frame(df), out, args.json)
    return 0


def cmd_cat(args, out) -> int:
    with _open(args) as disk:
        with _bad_call():
            fs = disk.filesystem(args.part)
            entry = fs.lookup(args.path, deleted=True)
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
            from .filesystems.base import damage_text

            print(f"vdinspect: {entry.path}: could not read {damage_text(bad)} "
                  "(written as zeros)", file=sys.stderr)
            return 1
    return 0


def cmd_extract(args, out) -> int:
    with _open(args) as disk:
        with _bad_call():
            fs = disk.filesystem(args.part)
            fs.lookup(args.path, deleted=args.deleted)
        rep = fs.extract(args.path, args.dest, deleted=args.deleted,
                         progress=True if args.progress else None)
        if args.json:
            damaged = [dict(path=p, host=h, ranges=[list(r) for r in rs])
                       for p, h, rs in rep.damaged]
            json.dump(dict(dest=rep.dest, written=rep.written, bytes_written=rep.bytes_written,
                           renamed=rep.renamed, incomplete=rep.incomplete,
                           skipped=rep.skipped, damaged=damaged, linked=rep.linked),
                      out, indent=1)
            out.write("\n")
        else:
            from .filesystems.base import damage_text

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
    return 1 if rep.damaged or rep.incomplete else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vdinspect",
        description="Look inside virtual machine disk images (read-only).")
    from . import __version__

    p.add_argument("--version", action="version", version=f"vdinspect {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(sp, json_flag: bool = True):
        sp.add_argument("image", help="the image file (top of a chain)")
        sp.add_argument("-f", "--format", help="force a format instead of detecting it")
        sp.add_argument("--snapshot", help="open an internal snapshot (id or name)")
        sp.add_argument("--layer", type=int,
                        help="view the chain as of layer K (0 = base, negative from top)")
        sp.add_argument("--parents", action="append", metavar="PATH",
                        help="where a parent is (file or folder); repeatable")
        sp.add_argument("--search", action="append", metavar="FOLDER",
                        help="a folder names in the image may lead into; repeatable")
        sp.add_argument("--follow-outside", action="store_true",
                        help="follow file names stored in the image wherever they lead "
                        "(only for an image you trust)")
        sp.add_argument("--salvage", action="store_true",
                        help="salvage mode: read what can be read, report the rest")
        sp.add_argument("--part", metavar="N|VG/LV",
                        help="a partition number or LVM volume (vg/lv) to work on")
        if json_flag:
            sp.add_argument("--json", action="store_true", help="print JSON")

    sp = sub.add_parser("info", help="format, sizes, layers and flags")
    common(sp)
    sp.set_defaults(func=cmd_info)
    sp = sub.add_parser("layers", help="the snapshot chain, base first")
    common(sp)
    sp.set_defaults(func=cmd_layers)
    sp = sub.add_parser("map", help="allocation runs of the virtual disk")
    common(sp)
    sp.add_argument("--start", type=int, default=0, help="first byte (default 0)")
    sp.add_argument("--length", type=int, default=None, help="bytes (default: to the end)")
    sp.add_argument("--own-layer", type=int, default=None, metavar="K",
                    help="show layer K's own runs instead of the resolved chain")
    sp.set_defaults(func=cmd_map)
    sp = sub.add_parser("snapshots", help="internal snapshots")
    common(sp)
    sp.set_defaults(func=cmd_snapshots)
    sp = sub.add_parser("check", help="integrity findings (like qemu-img check)")
    common(sp)
    sp.set_defaults(func=cmd_check)
    sp = sub.add_parser("structures", help="on-disk structures as host-file regions")
    common(sp)
    sp.set_defaults(func=cmd_structures)
    sp = sub.add_parser("parts", help="partitions, LVM volumes and unallocated gaps")
    common(sp)
    sp.set_defaults(func=cmd_parts)
    sp = sub.add_parser("convert", help="export the virtual disk as a sparse raw file")
    common(sp)
    sp.add_argument("output", help="the raw file to write")
    sp.add_argument("-p", "--progress", action="store_true", help="show a progress bar")
    sp.set_defaults(func=cmd_convert)
    sp = sub.add_parser("ls", help="list files of a filesystem (like fls)")
    common(sp)
    sp.add_argument("path", nargs="?", default="/", help="folder or file (default /)")
    sp.add_argument("-r", "--recursive", action="store_true", help="list the whole tree")
    sp.add_argument("--deleted", action="store_true", help="include deleted entries")
    sp.set_defaults(func=cmd_ls)
    sp = sub.add_parser("cat", help="write a file's bytes to stdout")
    common(sp, json_flag=False)
    sp.add_argument("path", help="the file, from the volume root")
    sp.set_defaults(func=cmd_cat)
    sp = sub.add_parser("extract", help="copy files out of a filesystem, safely")
    common(sp)
    sp.add_argument("path", help="folder or file to extract")
    sp.add_argument("dest", help="host folder to write into")
    sp.add_argument("--deleted", action="store_true", help="also recover deleted files")
    sp.add_argument("-p", "--progress", action="store_true", help="show a progress bar")
    sp.set_defaults(func=cmd_extract)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args, sys.stdout)
    except InvalidArgument as e:
        print(f"vdinspect: {e}", file=sys.stderr)
        return 2
    except VDInspectError as e:
        print(f"vdinspect: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # the reader went away (``| head``): point stdout at /dev/null so the interpreter's
        # final flush does not complain again
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        print(f"vdinspect: {e.filename or args.image}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
