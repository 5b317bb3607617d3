"""The ``vdinspect`` command: the API's verbs for terminals and scripts.

Option parsing lives here (:func:`build_parser`); what each command does is in
:mod:`vdinspect.cli.commands`, and how answers are written (JSON rows, tables) in
:mod:`vdinspect.cli.output`. None of them imports pandas.

Exit status: 0 success, 1 unreadable or bad input (one line on stderr naming file,
structure and offset), 2 usage error.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence

from ..errors import InvalidArgument, VDInspectError
from ..units import SECTOR_SIZES
from . import commands as c
from .output import register_name_errors
from .scan import cmd_scan


def byte_count(text: str) -> int:
    """A byte offset or length on the command line: decimal, or hex as ``scan`` prints it."""
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of bytes: {text!r}") from None


class _Undeclared:
    """A sub-command not asked for: its options are not declared (declaring the options
    of every sub-command costs about 5 ms of a 0.1 s ``info``)."""

    def add_argument(self, *args, **kw) -> None:
        """Declare nothing."""

    def add_mutually_exclusive_group(self, *args, **kw) -> _Undeclared:
        """A group of nothing."""
        return self


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: one sub-command per verb, with the common options on each;
    with ``only`` (the command line's first word) just that sub-command when it is one
    (``--help`` and a mistyped command see every sub-command)."""
    p = argparse.ArgumentParser(
        prog="vdinspect",
        description="Look inside virtual machine disk images (read-only).",
        epilog="Tables are for people (sizes in KiB/MiB/GiB); --json gives exact bytes with "
               "the API's column names. Exit status: 0 ok, 1 bad image, 2 usage error.")
    from .. import __version__

    p.add_argument("--version", action="version", version=f"vdinspect {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(sp, json_help: str = "print JSON (exact bytes, the API's column names)",
               table: bool = True, offset: bool = True):
        sp.add_argument("image", help="the image file (top of a chain)")
        sp.add_argument("-f", "--format", help="force a format instead of detecting it")
        sp.add_argument("--snapshot", help="open an internal snapshot (id or name)")
        sp.add_argument("--layer", type=int,
                        help="view the chain as of layer K (0 = base, negative from top)")
        sp.add_argument("--disk", metavar="N|NAME",
                        help="a disk of a VM machine file or package (.ova, .ovf, .xva): "
                        "index (0 = first) or name")
        sp.add_argument("--parents", action="append", metavar="PATH",
                        help="where a parent is (file or folder); repeatable")
        sp.add_argument("--search", action="append", metavar="FOLDER",
                        help="a folder names in the image may lead into; repeatable")
        sp.add_argument("--follow-outside", action="store_true",
                        help="follow file names stored in the image wherever they lead "
                        "(only for an image you trust)")
        sp.add_argument("--spool-dir", metavar="FOLDER",
                        help="where a stream that cannot be read in place (a one-frame "
                        "zstd XVA) is decompressed once, deleted on exit (default: "
                        "$VDINSPECT_SPOOL_DIR, else the temporary folder)")
        sp.add_argument("--salvage", action="store_true",
                        help="salvage mode: read what can be read, report the rest")
        sp.add_argument("--part", metavar="N|VG/LV",
                        help="a partition number or LVM volume (vg/lv) to work on")
        sp.add_argument("--sector-size", type=int, choices=SECTOR_SIZES,
                        metavar="N", help="logical sector size of the partition tables "
                        "(4096 for a 4Kn disk; default: found from the GPT, else 512)")
        # explain has its own --offset (a structure's): there only --image-offset
        names = ("--offset", "--image-offset") if offset else ("--image-offset",)
        sp.add_argument(*names, dest="image_offset", type=byte_count, metavar="BYTES",
                        help="open the image stored at this byte offset of IMAGE (an image "
                        "`vdinspect scan` found inside a disk, or in an archive)")
        sp.add_argument("--image-length", type=byte_count, metavar="BYTES",
                        help="with --offset: the embedded image's length (default: to the end)")
        sp.add_argument("--json", action="store_true", help=json_help)
        if table:
            sp.add_argument("--bytes", action="store_true",
                            help="sizes in the table as exact bytes")

    def command(name: str, func, help: str, usage: str | None = None, **kw):
        if only is not None and name != only:
            return _Undeclared()
        sp = sub.add_parser(name, help=help, description=help, usage=usage)
        common(sp, offset=name != "explain", **kw)
        sp.set_defaults(func=func)
        return sp

    sp = command("info", c.cmd_info, "format, sizes, layers and flags")
    sp.add_argument("--all", action="store_true",
                    help="every field, the format's own ones too (as --json has them)")
    sp.add_argument("--exact", action="store_true",
                    help="also count the allocated bytes (walks the allocation tables)")
    command("layers", c.cmd_layers, "the snapshot chain, base first")
    sp = command("map", c.cmd_map, "allocation runs of the virtual disk")
    sp.add_argument("--start", type=int, default=0, help="first byte (default 0)")
    sp.add_argument("--length", type=int, default=None, help="bytes (default: to the end)")
    sp.add_argument("--own-layer", type=int, default=None, metavar="K",
                    help="show layer K's own runs instead of the resolved chain")
    command("snapshots", c.cmd_snapshots, "internal snapshots")
    command("check", c.cmd_check, "integrity findings (like qemu-img check)")
    command("structures", c.cmd_structures, "on-disk structures as host-file regions")
    sp = command("explain", c.cmd_explain, "what each field of an on-disk structure means",
                 usage="vdinspect explain [options] IMAGE [STRUCTURE]")
    sp.add_argument("structure", nargs="?", default="header",
                    help="a structure's name as `vdinspect structures` lists it "
                         "(default: header)")
    sp.add_argument("--in-layer", type=int, default=None, metavar="K",
                    help="explain a structure of layer K (default: the top)")
    sp.add_argument("--offset", type=int, default=None,
                    help="the structure at this host-file offset (when several share a name)")
    command("parts", c.cmd_parts, "partitions, LVM volumes and unallocated gaps")
    sp = command("scan", cmd_scan, "find lost partitions and virtual disk images inside the "
                 "disk by their own structures (reads only what holds data)",
                 usage="vdinspect scan [--json] [--budget S] [-p] [options] IMAGE")
    sp.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                    help="stop after this long (the finds so far are listed, exit status 1)")
    sp.add_argument("--no-images", action="store_true", help="look for partitions only")
    sp.add_argument("--no-partitions", action="store_true", help="look for images only")
    sp.add_argument("--sfdisk", action="store_true",
                    help="print an sfdisk script of the partitions found (nothing is written)")
    sp.add_argument("-p", "--progress", action="store_true", help="show a progress bar")
    sp = command("convert", c.cmd_convert, "export the virtual disk as a sparse raw file",
                 table=False)
    sp.add_argument("output", help="the raw file to write")
    sp.add_argument("-p", "--progress", action="store_true", help="show a progress bar")
    sp.add_argument("--workers", type=int, default=None, metavar="N",
                    help="threads inflating compressed units (default: the machine's cores; "
                         "1: none)")
    sp = command("ls", c.cmd_ls, "list files of a filesystem (like fls)",
                 usage="vdinspect ls [-r] [--deleted] [--part N|VG/LV] [--json] [options] "
                       "IMAGE [PATH]",
                 json_help="print a JSON array, one files() row a line, written as the "
                           "walk goes")
    sp.add_argument("path", nargs="?", default="/", help="folder or file (default /)")
    sp.add_argument("-r", "--recursive", action="store_true", help="list the whole tree")
    sp.add_argument("--deleted", action="store_true", help="include deleted entries")
    sp = command("cat", c.cmd_cat, "write a file's bytes to stdout",
                 usage="vdinspect cat [--part N|VG/LV] [--json] [options] IMAGE PATH",
                 json_help="one JSON object: path, size, damaged ranges and the bytes as "
                           "base64 (the file is held in memory)", table=False)
    sp.add_argument("path", help="the file, from the volume root")
    sp = command("extract", c.cmd_extract, "copy files out of a filesystem, safely",
                 usage="vdinspect extract [--deleted] [--part N|VG/LV] [-p] [options] "
                       "IMAGE PATH DEST", table=False)
    sp.add_argument("path", help="folder or file to extract")
    sp.add_argument("dest", help="host folder to write into")
    sp.add_argument("--deleted", action="store_true", help="also recover deleted files")
    sp.add_argument("-p", "--progress", action="store_true", help="show a progress bar")
    sp = command("inspect", c.cmd_inspect, "what machine it was: OS, hostname, users, "
                 "packages")
    sp.add_argument("--packages", action="store_true", help="list the installed packages")
    sp.add_argument("--users", action="store_true", help="list the users")
    sp = command("diff", c.cmd_diff, "what changed between two states: blocks and files",
                 usage="vdinspect diff [--files|--blocks] [--snapshot S|--layer K] [--part N] "
                       "[--json] [options] OLD [NEW]")
    sp.add_argument("new", nargs="?", default=None,
                    help="the newer image (default: OLD as it is now; --snapshot/--layer "
                         "then choose the older state of OLD)")
    what = sp.add_mutually_exclusive_group()
    what.add_argument("--files", action="store_true", help="only the files that changed")
    what.add_argument("--blocks", action="store_true", help="only the changed byte ranges")
    sp = command("carve", c.cmd_carve, "find files by their content (whole disk, or a "
                 "filesystem's free space with --part) and with DEST write them there",
                 usage="vdinspect carve [--json] [--part N|VG/LV] [--types T,..] "
                       "[--budget S] [-p] [options] IMAGE [DEST]")
    sp.add_argument("dest", nargs="?", default=None,
                    help="host folder to write DEST/<offset>.<type> into")
    sp.add_argument("--types", help="only these types, comma separated (jpg,png,gif,pdf,"
                    "zip,sqlite,gz,bz2,xz,mp4,mov,riff,exe,elf,qcow2,vhd,vmdk,vdi, or a "
                    "type they find: docx,xlsx,odt,wav,avi,dll,...)")
    sp.add_argument("--budget", type=float, metavar="SECONDS",
                    help="stop searching after this long (reported, exit status 1)")
    sp.add_argument("-p", "--progress", action="store_true", help="show a progress bar")
    if only is not None and only not in sub.choices:
        return build_parser()
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 1 bad image, 2 bad call)."""
    if "numpy" not in sys.modules:  # no command multiplies matrices: skip the BLAS thread
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # pool numpy would start (30 ms)
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    out = sys.stdout
    if getattr(out, "errors", None) == "strict" and hasattr(out, "reconfigure"):
        # names read from an image need not be valid text (ext names are bytes): write
        # them back as their bytes, or escaped, rather than fail on them
        out.reconfigure(errors=register_name_errors())
    # a command makes many small objects that live until it ends (a listing's entries):
    # the cyclic collector, run every 700 allocations by default, would walk them again
    # and again (10% of `ls -r` of 20k files); it runs less often for the command
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], 20_000), *threshold[1:])
    try:
        return args.func(args, out)
    except InvalidArgument as e:
        print(f"vdinspect: {e}", file=sys.stderr)
        return 2
    except VDInspectError as e:
        print(f"vdinspect: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # the reader went away (``| head``): point stdout at /dev/null so the interpreter's
        # final flush does not complain again

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        print(f"vdinspect: {e.filename or args.image}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        gc.set_threshold(*threshold)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
