"""An fsspec filesystem over the files inside a disk image: the ``vdinspect://`` protocol.

``fsspec.open("vdinspect://p2/etc/hostname::file:///images/vm.qcow2")`` reads a file from
partition 2 of an image; the image is the chained target (any fsspec file: local, a member
of a zip, in memory, on any store). Paths inside the protocol:

- ``pN/...``: partition N (the ``index`` of ``disk.partitions()``);
- ``vg/lv/...``: the logical volume ``lv`` of LVM2 volume group ``vg``;
- ``...``: a disk with one readable filesystem may leave the volume out; a disk with no
  partition table holds one filesystem and its paths start at that filesystem's root.

Options (``fsspec.open(url, vdinspect={...})``, ``storage_options=`` in pandas, or query
style on the first URL, ``vdinspect://p2/x?snapshot=clean&layer=0::file://...``):
``snapshot`` (an internal or VM snapshot, by name or id), ``layer`` (view the chain as of
layer K), ``format``, ``strict`` (False: salvage mode), ``parents`` (local images only).

Read-only: every write, removal or folder creation raises :class:`ReadOnlyError` (a
``PermissionError``, as the OS answers for a read-only mount). Opened disks and
filesystems are kept per instance (fsspec caches one instance per target and options) and
closed by :meth:`VDInspectFileSystem.close` or when the instance is collected.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
import threading
import weakref
from typing import Any
from urllib.parse import parse_qsl

from .errors import (
    InvalidArgument,
    MissingDependency,
    MissingParent,
    NotFound,
    UnsupportedFeature,
    VDInspectError,
)

try:
    import fsspec
    from fsspec.spec import AbstractFileSystem
except ImportError as e:  # pragma: no cover - the extra is missing
    raise MissingDependency("vdinspect.fsspec needs fsspec: pip install 'vdinspect[fsspec]'") from e

from .chain import Chain, MissingLayer, layer_index
from .containers.registry import open_image
from .disk import Disk
from .filesystems import DIR, FILE, SYMLINK, Entry, FileReader, FileSystem, has_driver
from .io import FileObjectSource

PROTOCOL = "vdinspect"
OPTIONS = ("snapshot", "layer", "format", "strict", "parents")
LOCAL = ("file", "local")
MAX_LINKS = 40  # symbolic links followed in one lookup, as Linux does
TYPES = {FILE: "file", DIR: "directory", SYMLINK: "link"}


class ReadOnlyError(VDInspectError, PermissionError):
    """A write, removal or folder creation on the read-only ``vdinspect://`` filesystem."""


class _Opened:
    """What one filesystem instance has open: the disk and the filesystems on it."""

    def __init__(self, disk: Disk, owned: bool, keep=None) -> None:
        self.disk = disk
        self.owned = owned
        self.keep = keep  # the fsspec OpenFile the image is read through (owns its store)
        self.filesystems: dict[str, FileSystem] = {}
        self.closed = False
        self.volumes = {v.key: v for v in disk.volumes()
                        if v.key and v.filesystem and has_driver(v.filesystem)}

    def close(self) -> None:
        self.closed = True
        self.filesystems.clear()
        if self.owned:
            self.disk.close()
        if self.keep is not None:
            self.keep.close()


class _Instances(type(AbstractFileSystem)):
    """fsspec's instance cache, except for an image given as an object (a Disk, a file
    object): its token would come from its repr, which two different views can share."""

    def __call__(cls, *args, **kwargs):
        fo = args[0] if args else kwargs.get("fo", "")
        if not isinstance(fo, str | os.PathLike):
            kwargs["skip_instance_cache"] = True
        return super().__call__(*args, **kwargs)


class VDInspectFileSystem(AbstractFileSystem, metaclass=_Instances):
    """The files inside a disk image, read-only (see the module docstring for paths).

    ``fo`` is the image: a path or fsspec URL (``target_protocol``/``target_options`` as
    fsspec's chaining passes them), an open binary file object, or a
    :class:`~vdinspect.disk.Disk` (used as is and left open). ``snapshot``, ``layer``,
    ``format``, ``strict`` and ``parents`` are :func:`vdinspect.open`'s options.
    """

    protocol = PROTOCOL
    root_marker = ""

    def __init__(self, fo: Any = "", *, target_protocol: str | None = None,
                 target_options: dict | None = None, snapshot: str | int | None = None,
                 layer: int | str | None = None, format: str | None = None,
                 strict: bool | str = True, parents=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fo = fo
        self.target_protocol = target_protocol
        self.target_options = dict(target_options or {})
        self.snapshot = None if snapshot is None else str(snapshot)
        self.layer = _as_int(layer, "layer")
        self.format = format
        self.strict = _as_bool(strict, "strict")
        self.parents = parents
        self._lock = threading.RLock()
        self._state: _Opened | None = None
        self._finalizer = None

    # --- URLs ---------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path).split("::", 1)[0]
        if path.startswith(PROTOCOL + "://"):  # a URL: "?" starts its options
            path = path[len(PROTOCOL) + 3:].split("?", 1)[0]
        return "/".join(p for p in path.split("/") if p)

    @staticmethod
    def _get_kwargs_from_urls(path):
        first = str(path).split("::", 1)[0]
        query = first.partition("?")[2] if first.startswith(PROTOCOL + "://") else ""
        out: dict = {}
        for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
            if key not in OPTIONS or key == "parents":
                raise InvalidArgument(f"unknown vdinspect:// URL option {key!r}; "
                                      "use snapshot, layer, format or strict")
            out[key] = value
        return out

    # --- opening the image --------------------------------------------------------
    def _opened(self) -> _Opened:
        with self._lock:
            if self._state is None:
                disk, owned, keep = self._open_disk()
                try:
                    self._state = _Opened(disk, owned, keep)
                except BaseException:
                    if owned:
                        disk.close()
                    if keep is not None:
                        keep.close()
                    raise
                self._finalizer = weakref.finalize(self, self._state.close)
            return self._state

    def _open_disk(self) -> tuple[Disk, bool, Any]:
        fo = self.fo
        opts = dict(snapshot=self.snapshot, layer=self.layer, format=self.format,
                    strict=self.strict)
        if isinstance(fo, Disk):
            return fo, False, None
        if fo is None or fo == "":
            raise InvalidArgument("vdinspect://: no image; chain one, as in "
                                  "vdinspect://p1/path::file:///images/vm.qcow2")
        if hasattr(fo, "read") and hasattr(fo, "seek"):
            return self._disk_from_source(FileObjectSource(fo), fo), True, None
        if isinstance(fo, os.PathLike):
            fo = os.fspath(fo)
        if not isinstance(fo, str):
            raise InvalidArgument(f"vdinspect://: cannot read an image from {type(fo).__name__}")
        proto = self.target_protocol or fsspec.core.split_protocol(fo)[0] or "file"
        if proto in LOCAL and "::" not in fo:
            from fsspec.implementations.local import LocalFileSystem

            import vdinspect

            path = LocalFileSystem._strip_protocol(fo)
            return vdinspect.open(path, parents=self.parents, **opts), True, None
        of = fsspec.open(fo, "rb", protocol=self.target_protocol, **self.target_options)
        f = of.open()  # the OpenFile stays referenced while the file is in use
        name = fo if "://" in fo else f"{proto}://{fo}"
        try:
            disk = self._disk_from_source(FileObjectSource(f, name=name, owned=True), name)
        except BaseException:
            of.close()
            raise
        return disk, True, of

    def _disk_from_source(self, src: FileObjectSource, name) -> Disk:
        """A one-image Disk read through a file object (no parents are looked for)."""
        name = str(name if isinstance(name, str) else src.name)
        img = open_image(name, format=self.format, strict=self.strict, source=src)
        try:
            if self.snapshot is not None:
                img = _snapshot_of(img, src, name, self.snapshot, self.strict)
            layers = [img]
            hint = img.parent_hint
            if hint is not None and hint.path:
                if self.strict:
                    raise MissingParent(
                        f"parent {hint.path!r}: parents of images read through fsspec are "
                        "not followed (open a local copy, or strict=False)", path=name,
                        structure="parent")
                layers.insert(0, MissingLayer(img.size, hint.path, []))
            chain = Chain(layers)
            if self.layer is not None:
                chain = chain.truncated(layer_index(chain, self.layer))
        except BaseException:
            img.close()
            raise
        return Disk(chain, path=name, options=dict(format=self.format, strict=self.strict,
                                                   snapshot=self.snapshot, layer=self.layer))

    @property
    def disk(self) -> Disk:
        """The open :class:`~vdinspect.disk.Disk` (opened on first use)."""
        return self._opened().disk

    def close(self) -> None:
        """Close the disk and its filesystems; the next call opens them again."""
        with self._lock:
            state, self._state = self._state, None
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
            self.dircache.clear()
        if state is not None:
            state.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- paths -> volumes and entries -----------------------------------------------
    def _filesystem(self, key: str) -> FileSystem:
        state = self._opened()
        with self._lock:
            fs = state.filesystems.get(key)
            if fs is None:
                fs = state.filesystems[key] = state.disk.filesystem(key)
            return fs

    def _where(self, path) -> tuple[str, str | None, str, str]:
        """(what, volume key, name prefix, path inside the filesystem) for a path.

        ``what`` is "root", "group" (an LVM volume group's folder) or "volume".
        """
        path = self._strip_protocol(path)
        parts = path.split("/") if path else []
        vols = self._opened().volumes
        partitioned = set(vols) != {"disk"}
        if not parts:
            return ("root", None, "", "/") if partitioned else ("volume", "disk", "", "/")
        if partitioned:
            m = re.fullmatch(r"p(\d+)", parts[0])
            if m:
                key = str(int(m[1]))
                if key not in vols:
                    raise NotFound(f"{self._image_name()}: no readable partition {parts[0]!r}; "
                                   f"volumes: {self._volume_names()}")
                return "volume", key, parts[0], "/" + "/".join(parts[1:])
            if len(parts) >= 2 and f"{parts[0]}/{parts[1]}" in vols:
                return ("volume", f"{parts[0]}/{parts[1]}", f"{parts[0]}/{parts[1]}",
                        "/" + "/".join(parts[2:]))
            if len(parts) == 1 and any(k.startswith(parts[0] + "/") for k in vols):
                return "group", parts[0], parts[0], "/"
        if len(vols) == 1:
            return "volume", next(iter(vols)), "", "/" + "/".join(parts)
        raise NotFound(f"{self._image_name()}: no volume {parts[0]!r} (say which: "
                       f"{self._volume_names()})")

    def _image_name(self) -> str:
        return self._opened().disk.path

    def _volume_names(self) -> str:
        return ", ".join(_volume_dir(k) for k in self._opened().volumes) or "none readable"

    def _lookup(self, fs: FileSystem, inner: str, follow: bool) -> Entry:
        entry = fs.lookup(inner)
        hops = 0
        while follow and entry.kind == SYMLINK:
            hops += 1
            if hops > MAX_LINKS:
                raise NotFound(f"{fs.name}: {inner}: too many levels of symbolic links")
            target = fs.readlink_entry(entry)
            base = target if target.startswith("/") else posixpath.join(
                posixpath.dirname(entry.path or inner), target)
            inner = _inside(base)
            entry = fs.lookup(inner)
        return entry

    def _file(self, path) -> tuple[FileSystem, Entry]:
        what, key, _prefix, inner = self._where(path)
        if what != "volume":
            raise IsADirectoryError(f"{path}: is a folder")
        fs = self._filesystem(key)
        entry = self._lookup(fs, inner, follow=True)
        if entry.kind == DIR:
            raise IsADirectoryError(f"{path}: is a folder")
        return fs, entry

    # --- listing --------------------------------------------------------------------
    def ls(self, path, detail=True, **kwargs):
        """The entries of a folder (a file lists itself); deleted entries are left out."""
        path = self._strip_protocol(path)
        rows = self.dircache.get(path) if self.dircache is not None else None
        if rows is None:
            rows = self._list(path)
            if rows and rows[0]["name"] != path:  # a folder, not a file listing itself
                self.dircache[path] = rows
        return [dict(r) for r in rows] if detail else [r["name"] for r in rows]

    def _list(self, path: str) -> list[dict]:
        what, key, prefix, inner = self._where(path)
        vols = self._opened().volumes
        if what == "root":
            out, groups = [], set()
            for k in vols:
                if "/" not in k:
                    out.append(self._volume_info(k))
                elif k.split("/", 1)[0] not in groups:
                    groups.add(k.split("/", 1)[0])
                    out.append(_folder(k.split("/", 1)[0]))
            return out
        if what == "group":
            return [self._volume_info(k) for k in vols if k.startswith(key + "/")]
        fs = self._filesystem(key)
        entry = self._lookup(fs, inner, follow=True)
        if entry.kind != DIR:
            return [self._entry_info(_join(prefix, inner), entry)]
        out = []
        for child in fs.list_dir(entry):
            if child.deleted or child.name in (".", ".."):
                continue
            out.append(self._entry_info(_join(prefix, posixpath.join(inner, child.name)), child))
        return out

    def info(self, path, **kwargs):
        """name, size, type (file/directory/link/other), and mode, uid, gid, mtime,
        created, inode, nlink, destination when the filesystem records them."""
        path = self._strip_protocol(path)
        what, key, prefix, inner = self._where(path)
        if what == "root":
            return _folder("")
        if what == "group":
            return _folder(path)
        if inner == "/" and prefix:
            return self._volume_info(key)
        fs = self._filesystem(key)
        return self._entry_info(path, self._lookup(fs, inner, follow=False))

    def _volume_info(self, key: str) -> dict:
        v = self._opened().volumes[key]
        out = _folder(_volume_dir(key))
        out.update(volume=key, filesystem=v.filesystem, label=v.label, uuid=v.uuid,
                   volume_size=v.length)
        return {k: val for k, val in out.items() if val is not None}

    @staticmethod
    def _entry_info(name: str, e: Entry) -> dict:
        out = dict(name=name, size=0 if e.kind == DIR else int(e.size or 0),
                   type=TYPES.get(e.kind, "other"), mode=e.mode, uid=e.uid, gid=e.gid,
                   mtime=e.modified.timestamp() if e.modified else None,
                   created=e.created.timestamp() if e.created else None,
                   inode=e.inode, nlink=e.links)
        if e.kind == SYMLINK:
            out["islink"] = True
            out["destination"] = e.target
        return {k: v for k, v in out.items() if v is not None}

    def modified(self, path):
        """The modification time (an aware UTC datetime)."""
        return _time(self.info(path), "mtime", path)

    def created(self, path):
        """The creation time (an aware UTC datetime) where the filesystem records one."""
        return _time(self.info(path), "created", path)

    # --- reading ----------------------------------------------------------------------
    def cat_file(self, path, start=None, end=None, **kwargs) -> bytes:
        """The bytes of a file, or of ``[start, end)`` (negative values count from the end)."""
        fs, entry = self._file(path)
        src = fs.content(entry)
        size = src.size
        a = 0 if start is None else (max(0, size + start) if start < 0 else min(start, size))
        b = size if end is None else (max(0, size + end) if end < 0 else min(end, size))
        return src.read(a, b - a) if b > a else b""

    def _open(self, path, mode="rb", block_size=None, autocommit=True, cache_options=None,
              **kwargs):
        if mode != "rb":
            raise ReadOnlyError(f"{path}: vdinspect:// is read-only (mode {mode!r})")
        fs, entry = self._file(path)
        raw = _Reader(fs.content(entry), self._opened(), name=self._strip_protocol(path))
        return VDInspectFile(raw, self, self._strip_protocol(path),
                             block_size or io.DEFAULT_BUFFER_SIZE * 8)

    # --- read-only: every change raises ---------------------------------------------
    def _read_only(self, *args, **kwargs):
        raise ReadOnlyError("vdinspect:// is read-only: images are never written to")

    mkdir = makedirs = rmdir = rm = _rm = rm_file = cp_file = copy = mv = _read_only
    put = put_file = pipe = pipe_file = touch = write_text = write_bytes = _read_only


class _Reader(FileReader):
    """A FileReader that refuses to read once its filesystem instance closed the image."""

    def __init__(self, source, state: _Opened, name: str) -> None:
        super().__init__(source, name=name)
        self.state = state

    def _check(self) -> None:
        if self.state.closed:
            raise InvalidArgument(f"{self.name}: the image was closed (fs.close()); "
                                  "open the file again")

    def readinto(self, b) -> int:
        self._check()
        return super().readinto(b)

    def read(self, size: int = -1) -> bytes:
        self._check()
        return super().read(size)


class VDInspectFile(io.BufferedReader):
    """A read-only, seekable file inside an image (buffered over vdinspect's FileReader)."""

    def __init__(self, raw: FileReader, fs: VDInspectFileSystem, path: str,
                 block_size: int) -> None:
        super().__init__(raw, buffer_size=block_size)
        self.fs = fs
        self.path = path

    @property
    def size(self) -> int:
        return self.raw.size

    def damaged_ranges(self) -> list[tuple[int, int]]:
        """(offset, length) ranges that could not be read (salvage mode reads zeros)."""
        return self.raw.damaged_ranges()


def _snapshot_of(img, src, name: str, snapshot: str, strict: bool):
    """The image at its internal snapshot, read through the same source."""
    import inspect

    if not any(snapshot in (str(s.get("id")), str(s.get("name"))) for s in img.snapshots()):
        raise NotFound(f"{name}: no snapshot {snapshot!r}")
    if "snapshot" not in inspect.signature(type(img)).parameters:
        raise UnsupportedFeature(f"{name}: snapshots of {img.format} images read through "
                                 "fsspec are not supported; open a local copy")
    return type(img)(src, path=name, strict=strict, snapshot=snapshot)


def _time(info: dict, key: str, path):
    import datetime as dt

    if info.get(key) is None:
        raise NotFound(f"{path}: no {key} recorded")
    return dt.datetime.fromtimestamp(info[key], tz=dt.UTC)


def _volume_dir(key: str) -> str:
    return key if "/" in key or key == "disk" else f"p{key}"


def _folder(name: str) -> dict:
    return dict(name=name, size=0, type="directory")


def _join(prefix: str, inner: str) -> str:
    inner = inner.strip("/")
    return f"{prefix}/{inner}" if prefix and inner else (prefix or inner)


def _inside(path: str) -> str:
    """A link target as a path from the filesystem root ('..' stops at the root)."""
    parts: list[str] = []
    for p in path.split("/"):
        if p == "..":
            if parts:
                parts.pop()
        elif p not in ("", "."):
            parts.append(p)
    return "/" + "/".join(parts)


def _as_int(value, what: str) -> int | None:
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value))
    except ValueError:
        raise InvalidArgument(f"vdinspect://: {what} must be an integer, not {value!r}") from None


def _as_bool(value, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidArgument(f"vdinspect://: {what} must be true or false, not {value!r}")


def register(clobber: bool = True) -> None:
    """Register the ``vdinspect`` protocol with fsspec (the entry point does this when
    the package is installed; call it for a source checkout)."""
    fsspec.register_implementation(PROTOCOL, VDInspectFileSystem, clobber=clobber)


__all__ = ["VDInspectFileSystem", "VDInspectFile", "ReadOnlyError", "register"]
