"""Extents whose descriptor is lost: synthesise one from the extents and read through it.

A split VMDK (``twoGbMaxExtentSparse``: ``NAME-s001.vmdk``, ``-s002`` ...;
``twoGbMaxExtentFlat``: ``NAME-f001.vmdk`` ...) or a ``monolithicFlat`` disk keeps the list of
its extents only in the small text descriptor ``NAME.vmdk``. When that file is gone the
extents still hold the data: a hosted sparse extent's header gives its capacity, a flat
extent is raw sectors (its size is the file's). Nothing here writes a file: the descriptor
is text, and :func:`open_extents` reads it from memory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from ...errors import InvalidArgument
from ...io import FileSource, MemorySource, PathPolicy
from .descriptor import looks_like_descriptor
from .image import VmdkImage
from .sparse import read_sparse_header
from .structs import COWD_MAGIC, SECTOR, SPARSE_MAGIC

#: the number VMware and QEMU put in the names of split extents (-s001 sparse, -f001 flat)
_NUMBERED = re.compile(r"-[sf](\d{3,})\.vmdk$", re.IGNORECASE)


def _extent_line(path: str, name: str) -> tuple[str, str]:
    """(extent type, extent line) for one extent file, from its header or its size."""
    with FileSource(path) as src:
        head = src.read(0, min(src.size, 4096))
        if head[:4] == SPARSE_MAGIC:
            h = read_sparse_header(src, path)
            if h.capacity == 0:
                raise InvalidArgument(f"{path}: a descriptor in a sparse container, not an extent")
            return "SPARSE", f'RW {h.capacity} SPARSE "{name}"'
        if head[:4] == COWD_MAGIC or looks_like_descriptor(head):
            kind = "a COWD delta extent" if head[:4] == COWD_MAGIC else "a descriptor"
            raise InvalidArgument(f"{path}: {kind}, not a hosted sparse or flat extent")
        if src.size % SECTOR:
            raise InvalidArgument(
                f"{path}: {src.size} bytes is not whole sectors: not a flat extent"
            )
        return "FLAT", f'RW {src.size // SECTOR} FLAT "{name}" 0'


def synthesize_descriptor(extent_paths: Sequence[str | os.PathLike]) -> str:
    """Descriptor text for these extent files, in disk order (writes nothing).

    Hosted sparse extents ("KDMV") become ``SPARSE`` lines with the capacity their header
    gives; any other file a ``FLAT`` line of its own size. Names are relative to the
    extents' folder when they share one (open the text with :func:`open_descriptor_text`
    there), absolute otherwise. Numbered names (``-s001``, ``-s002`` ...) must come in order
    with none missing: a gap would shift every later extent's data.
    """
    paths = [os.path.abspath(os.fspath(p)) for p in extent_paths]
    if not paths:
        raise InvalidArgument("synthesize_descriptor needs at least one extent file")
    numbers = [_NUMBERED.search(os.path.basename(p)) for p in paths]
    if all(numbers):
        got = [int(m.group(1)) for m in numbers]
        if got != list(range(got[0], got[0] + len(got))) or got[0] != 1:
            raise InvalidArgument(
                f"extent numbers {got}: pass every extent of the disk in order from 001 "
                "(a missing one would shift the data of all the extents after it)"
            )
    folders = {os.path.dirname(p) for p in paths}
    names = [os.path.basename(p) if len(folders) == 1 else p for p in paths]
    kinds, lines = zip(*(_extent_line(p, n) for p, n in zip(paths, names)))
    split = len(paths) > 1
    if set(kinds) == {"SPARSE"}:
        create_type = "twoGbMaxExtentSparse" if split else "monolithicSparse"
    elif set(kinds) == {"FLAT"}:
        create_type = "twoGbMaxExtentFlat" if split else "monolithicFlat"
    else:
        create_type = "custom"
    return "\n".join(
        [
            "# Disk DescriptorFile",
            "# synthesised by vdinspect from the extent files: the original descriptor is lost",
            "version=1",
            'encoding="UTF-8"',
            "CID=fffffffe",
            "parentCID=ffffffff",
            f'createType="{create_type}"',
            "",
            "# Extent description",
            *lines,
            "",
        ]
    )


def open_descriptor_text(
    text: str, folder: str | os.PathLike, *, strict: bool = True, name: str | None = None
) -> VmdkImage:
    """A VMDK image read through descriptor ``text`` held in memory; its extent names are
    resolved in ``folder``. ``name`` is the file name the image reports (inside ``folder``)."""
    folder = os.path.abspath(os.fspath(folder))
    path = os.path.join(folder, name or "synthesised-descriptor.vmdk")
    img = VmdkImage(
        MemorySource(text.encode("utf-8"), name=path), path=path, strict=strict, folder=folder
    )
    img.descriptor_synthesised = True
    return img


def open_extents(extent_paths: Sequence[str | os.PathLike], *, strict: bool = True) -> VmdkImage:
    """The disk of these extent files (in disk order) through a synthesised descriptor."""
    paths = [os.path.abspath(os.fspath(p)) for p in extent_paths]
    text = synthesize_descriptor(paths)
    first = os.path.basename(paths[0]) if paths else "disk.vmdk"
    stem = _NUMBERED.sub("", first) if _NUMBERED.search(first) else os.path.splitext(first)[0]
    # the caller named these files: they are opened wherever they are
    with PathPolicy(trusted=paths).active():
        return open_descriptor_text(
            text, os.path.dirname(paths[0]), strict=strict, name=f"{stem}.synthesised.vmdk"
        )
