"""Disk: what ``vdinspect.open()`` returns. Ties images, chains and reports together.

A Disk is a ByteSource (``size``, ``read``) over the resolved chain, and answers with the
DataFrames of :mod:`vdinspect.frames`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..chain import Chain, MissingLayer, ParentsArg, layer_index, open_chain
from ..containers.base import BACKING, DATA, Image
from ..errors import InvalidArgument, NotFound
from ..io import ByteSource, HostPieces, HostRanges
from ..io.paths import PathPolicy
from ..io.zstdsource import spool_folder
from ..progress import Progress
from ..units import check_sector_size, human
from .arguments import frames, part_argument, volume_key

NO_SIGNATURE = "(no signature found)"

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

    from ..compare import Diff
    from ..containers.runs import RunTable
    from ..explainer import Explanation
    from ..filesystems.base import FileSystem
    from ..recovery.carve.report import CarveResult
    from ..widgets.browser import FileBrowser


class Disk(ByteSource):
    """A virtual disk: one image or a chain of them, opened read-only."""

    machine = None  # the VM machine file (vdinspect.machines.Machine) it was opened through

    def __init__(self, chain: Chain, *, path: str, options: dict | None = None) -> None:
        self.chain = chain
        self.path = path
        self.name = path
        self.size = chain.size
        self.options = dict(options or {})

    @classmethod
    def open(
        cls,
        path,
        *,
        format: str | None = None,
        snapshot: str | int | None = None,
        layer: int | None = None,
        strict: bool = True,
        parents: ParentsArg = None,
        disk: int | None = None,
        sector_size: int | None = None,
        search=None,
        follow_outside: bool = False,
        offset: int | None = None, length: int | None = None,
        spool_dir: str | os.PathLike | None = None,
    ) -> Disk:
        """Open ``path`` and its parents; see :func:`vdinspect.open`.

        ``path`` may be a VM machine file (``.vbox``, ``.vmx``, a Parallels ``.hdd`` bundle):
        ``disk`` chooses its attached hard disk (0 = the first) and ``snapshot`` one of its
        named snapshots (an internal snapshot of the disk's images otherwise). Every file
        name the image or machine file records goes through one
        :class:`~vdinspect.io.paths.PathPolicy` (``search``, ``parents``, ``follow_outside``).
        ``sector_size`` is the disk's logical sector size for its partition tables (found
        from the GPT header's place otherwise; 512 for MBR): 4096 for a 4Kn disk.
        ``offset``/``length``: an image embedded in the file ``path`` (:meth:`scan_images`).
        """
        check_sector_size(sector_size)
        path = os.fspath(path)
        policy = PathPolicy.for_open(path, parents=parents, search=search,
                                     follow_outside=follow_outside)
        with policy.active(), spool_folder(spool_dir):
            return cls._open(path, format, snapshot, layer, strict, parents, disk, search,
                             follow_outside, policy, sector_size, offset, length)

    @classmethod
    def _open(cls, path, format, snapshot, layer, strict, parents, disk, search,
              follow_outside, policy: PathPolicy, sector_size: int | None = None,
              offset: int | None = None, length: int | None = None) -> Disk:
        machine = None
        if format is None and offset is None and length is None and _maybe_text(path):
            from ..machines import detect_machine, open_machine

            kind = detect_machine(path)
            if kind is not None:
                machine = open_machine(path, kind)
        if machine is not None:
            vm_snap = snapshot if snapshot is not None and machine.has_snapshot(snapshot) else None
            chain = machine.open_chain(
                disk=disk or 0, snapshot=vm_snap, strict=strict, parents=parents, policy=policy
            )
        else:
            vm_snap = None
            chain = open_chain(path, format=format, strict=strict, parents=parents,
                               policy=policy, disk=disk, offset=offset, length=length)
        try:
            if snapshot is not None and vm_snap is None:
                chain = _at_snapshot(chain, snapshot, machine)
            if layer is not None:
                chain = chain.truncated(layer_index(chain, layer))
        except BaseException:
            chain.close()
            raise
        out = cls(
            chain,
            path=path,
            options=dict(
                format=format, strict=strict, parents=parents, snapshot=snapshot, layer=layer,
                sector_size=sector_size, search=search, follow_outside=follow_outside,
                offset=offset, length=length),
        )
        out.options["disk"] = disk or 0
        if machine is not None:
            out.machine = machine
        return out

    # --- the byte source ---------------------------------------------------------
    def _read(self, offset: int, length: int) -> bytes:
        return self.chain.read(offset, length)

    def readinto(self, offset: int, buffer) -> None:
        self.chain.readinto(offset, buffer)

    def host_ranges(self, offset: int, length: int) -> HostRanges:
        """Where the bytes lie in host files (see ``io.ByteSource.host_ranges``)."""
        return self.chain.host_ranges(offset, length)

    def host_pieces(self, offset: int, length: int) -> HostPieces:
        """Host ranges, stretches not stored named (see ``io.ByteSource.host_pieces``)."""
        return self.chain.host_pieces(offset, length)

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes of the virtual disk from ``offset``."""
        self._check_range(offset, length)
        return self.chain.read(offset, length)

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        return self.chain._damage_pairs(start, end)

    # --- layers and views ----------------------------------------------------------
    @property
    def layer_images(self) -> list[Image]:
        """The open images, base (0) first."""
        return list(self.chain.layers)

    @property
    def top(self) -> Image:
        return self.chain.top

    def at(self, snapshot: str | int) -> Disk:
        """A new read-only Disk of the state at a snapshot (VM or internal; id or name)."""
        opts = dict(self.options, snapshot=snapshot, layer=None)
        return Disk.open(self.path, **opts)

    def layer(self, k: int) -> Disk:
        """A new Disk that sees the chain only up to layer ``k`` (0 = base)."""
        opts = dict(self.options, layer=k)
        return Disk.open(self.path, **opts)

    # --- reports ------------------------------------------------------------------
    def info(self, *, exact: bool = True) -> pd.Series:
        """The key facts: format, sizes, layers, flags, then the format's own fields.

        ``exact=False`` skips the walk of the allocation map (see :meth:`info_fields`).
        """
        return frames().info_series(self.info_fields(exact=exact))

    def info_fields(self, *, exact: bool = True) -> dict:
        """``info()`` as a plain dict (no pandas), in the Series' order.

        ``allocated`` sums the chain's data runs (a walk of every layer's tables); with
        ``exact=False`` that walk is skipped and it is None. ``disk_size`` (bytes the host
        files take on the host filesystem, what ``qemu-img info`` calls "disk size") is
        given either way and costs one ``stat`` per file.
        """
        top = self.top
        extra = top.info_fields()
        flags = top.flags()
        parent = self.chain.layers[-2].path if len(self.chain.layers) > 1 else None
        sub = top.subformat
        if self.no_signature:
            sub = f"{sub} {NO_SIGNATURE}" if sub else NO_SIGNATURE
        fields = dict(
            path=self.path,
            format=top.format,
            subformat=sub,
            virtual_size=self.size,
            file_size=sum(x.file_size for x in self.chain.layers),
            allocated=self._allocated(exact),
            cluster_size=top.cluster_size,
            layers=len(self.chain.layers),
            parent=parent,
            created=extra.pop("created", None),
            uuid=extra.pop("uuid", None),
            flags=flags,
        )
        fields.update(extra)
        if top.encryption:
            fields["encrypted"] = top.encryption
        fields.setdefault("disk_size", _disk_size(self.chain.layers))
        return fields

    @property
    def no_signature(self) -> bool:
        """True when the disk was detected as raw only because nothing else matched and it
        holds no partition table or filesystem signature either (perhaps no disk at all)."""
        if getattr(self, "_no_signature", None) is None:
            self._no_signature = False
            if self.top.format == "raw" and not self.options.get("format"):
                from ..volumes.probes import disk_signature  # only then: info stays light

                self._no_signature = disk_signature(self) is None
        return self._no_signature

    def _allocated(self, exact: bool) -> int | None:
        """Virtual bytes holding data (the walk of the chain's runs), or None if not exact."""
        if not exact:
            return None
        return self.chain.runs().total(DATA, BACKING)

    def layers(self) -> pd.DataFrame:
        """One row per layer, base (0) first."""
        return frames().layers_frame(self.layer_rows())

    def layer_rows(self) -> list[dict]:
        """``layers()`` as a list of dicts (no pandas)."""
        rows = []
        ls = self.chain.layers
        for k, img in enumerate(ls):
            hint = img.parent_hint
            parent_path = ls[k - 1].path if k > 0 else (hint.path if hint else None)
            parent_ok = None
            if hint is not None and hint.path:
                parent_ok = k > 0 and not isinstance(ls[k - 1], MissingLayer)
            rows.append(
                dict(
                    layer=k,
                    path=img.path,
                    format=img.format,
                    subformat=img.subformat,
                    virtual_size=img.size,
                    file_size=img.file_size,
                    allocated=img.allocated,
                    parent_path=parent_path,
                    parent_ok=parent_ok,
                    note="; ".join(img.path_notes) or None,
                )
            )
        return rows

    def allocation(
        self, start: int = 0, length: int | None = None, *, own_layer: int | None = None,
        layer: int | None = None,
    ) -> pd.DataFrame:
        """Allocation runs over ``[start, start+length)``; the resolved chain by default.

        With ``own_layer=k`` the runs are that layer's own (``unallocated`` where it holds
        nothing); not to be confused with ``open(..., layer=k)``, which cuts the chain at
        layer k (``layer=`` here is the deprecated name of ``own_layer``). Runs come from
        metadata only.
        """
        return frames().allocation_frame(
            self.runs(start, length, own_layer=_own_layer_argument(own_layer, layer)))

    def runs(self, start: int = 0, length: int | None = None, *,
             own_layer: int | None = None, layer: int | None = None) -> RunTable:
        """The allocation runs as objects (see :class:`vdinspect.containers.base.Run`);
        ``own_layer`` as in :meth:`allocation`."""
        own_layer = _own_layer_argument(own_layer, layer)
        if own_layer is None:
            return self.chain.runs(start, length)
        k = layer_index(self.chain, own_layer)
        img = self.chain.layers[k]
        if length is None:
            length = img.size - start
        return img.runs(start, length).labelled(k)

    def snapshots(self) -> pd.DataFrame:
        """Named snapshots: the VM's (for a machine file), then the internal ones of layers."""
        return frames().snapshots_frame(self.snapshot_rows())

    def snapshot_rows(self) -> list[dict]:
        """``snapshots()`` as a list of dicts (no pandas)."""
        machine = self.machine
        rows = [] if machine is None else machine.snapshot_rows(self.options["disk"], self.chain)
        for k, img in enumerate(self.chain.layers):
            for s in img.snapshots():
                rows.append(dict(s, layer=k, path=img.path))
        return rows

    def check(self) -> pd.DataFrame:
        """Integrity findings of every layer (never raises for a damaged image)."""
        return frames().check_frame(self.check_rows())

    def check_rows(self) -> list[dict]:
        """``check()`` as a list of dicts (no pandas): every layer's findings, then the
        partition tables' (``layer`` NA; offsets on the virtual disk), and each encrypted
        volume (its contents cannot be checked without the key)."""
        from ..errors import VDInspectError
        from ..volumes.probes import ENCRYPTED

        rows = []
        for k, img in enumerate(self.chain.layers):
            for r in img.check_rows():
                rows.append(dict(r, layer=k))
        try:
            vols = self.volumes()
        except VDInspectError as e:  # strict mode: a table that cannot be read at all
            return rows + [dict(severity="error", layer=None, structure="partition table",
                                host_offset=None, message=str(e))]
        rows += [dict(r, layer=None) for r in vols.check_rows()]
        for v in vols:
            if v.filesystem in ENCRYPTED:
                scheme, needs = ENCRYPTED[v.filesystem]
                rows.append(dict(severity="info", layer=None, structure=f"volume {v.key}",
                                 host_offset=None,
                                 message=f"encrypted with {scheme}: its contents are not "
                                         f"checked (opening it needs {needs})"))
        return rows

    def structures(self) -> pd.DataFrame:
        """The on-disk structures of every layer, as host-file regions."""
        return frames().structures_frame(self.structure_rows())

    def structure_rows(self) -> list[dict]:
        """``structures()`` as a list of dicts (no pandas)."""
        rows = []
        for k, img in enumerate(self.chain.layers):
            for r in img.structure_rows():
                rows.append(dict(r, layer=k))
        return rows

    # --- what is on the disk ------------------------------------------------------
    def volumes(self) -> list:
        """Partitions and logical volumes found on the disk (``vdinspect.volumes``)."""
        from ..volumes import scan

        if getattr(self, "_volumes", None) is None:
            self._volumes = scan(self, sector_size=self.options.get("sector_size"))
        return self._volumes

    def partitions(self) -> pd.DataFrame:
        """One row per partition or logical volume, plus unallocated gaps (like ``mmls``)."""
        return frames().partitions_frame(self.partition_rows())

    def partition_rows(self) -> list[dict]:
        """``partitions()`` as a list of dicts (no pandas)."""
        return [v.row() for v in self.volumes()]

    def volume(self, part: int | str | None = None, *, key: int | str | None = None
               ) -> ByteSource:
        """A partition (by its index) or logical volume ("vg/lv") as a ByteSource; ``part``
        names it as in :meth:`filesystem` (``key=`` is its old name, deprecated)."""
        from ..volumes import find_volume

        return find_volume(self.volumes(), volume_key(part_argument(part, key))).source

    def filesystem(self, part: int | str | None = None) -> FileSystem:
        """The filesystem on a partition (number or "vg/lv"), or the only one there is.

        Any integer type names a partition: a NumPy integer taken from ``partitions()``
        works like a Python ``int``; a row of :meth:`scan_partitions` opens what was found."""
        from ..filesystems import has_driver, open_filesystem

        if hasattr(part, "keys") and "found_by" in part.keys():
            return _scan().open_found(self, part)
        if part is None:
            readable = [v for v in self.filesystem_volumes() if has_driver(v.filesystem)]
            if len(readable) != 1:
                have = ", ".join(f"{v.index if v.index is not None else v.name}:"
                                 f"{v.filesystem}" for v in self.filesystem_volumes()) or "none"
                raise InvalidArgument(
                    f"{self.path}: {len(readable)} readable filesystems ({have}); "
                    "say which with part=")
            vol = readable[0]
        else:
            from ..volumes import find_volume

            vol = find_volume(self.volumes(), volume_key(part))
        name = f"{self.path}:{vol.index if vol.index is not None else vol.name or 'disk'}"
        return open_filesystem(vol.source, vol.filesystem or None, name=name,
                               strict=self.options.get("strict", True))

    def carve(self, dest: str | os.PathLike | None = None, **kw) -> CarveResult:
        """Files found by their content on the whole disk, reading its allocated runs only
        (a CarveResult; see :func:`vdinspect.recovery.carve.carve_disk` for the options)."""
        from ..recovery.carve import carve_disk

        return carve_disk(self, dest, **kw)

    def filesystem_volumes(self, readable: bool = False) -> list:
        """The volumes that hold a filesystem (only those a driver reads, if ``readable``):
        the choices for :meth:`filesystem`'s ``part`` (a volume's ``index``, else ``name``)."""
        from ..filesystems import has_driver

        vols = [v for v in self.volumes() if v.filesystem]
        return [v for v in vols if has_driver(v.filesystem)] if readable else vols

    def scan_partitions(self, **kw) -> pd.DataFrame:
        """Partitions found by their own evidence, a lost table too (recovery.scan)."""
        return _scan().scan_partitions(self, **kw)

    def scan_images(self, part: int | str | None = None, **kw) -> pd.DataFrame:
        """Virtual disk images stored inside this disk, with their extents (recovery.scan);
        with ``part``, only in the free space of that filesystem (where a deleted VM's
        disk file lies; ``start`` is then an offset in that volume)."""
        if part is not None:
            return _scan().scan_free_images(self.filesystem(part), **kw)
        return _scan().scan_images(self, **kw)

    def browse(self, **kw) -> FileBrowser:
        """A file browser widget over the disk's filesystems (ipywidgets; see widgets)."""
        from ..widgets import browse

        return browse(self, **kw)

    # --- pictures and the structure explorer (matplotlib imported on first use) ------
    def plot_allocation(self, ax=None, **kw) -> Axes:
        """The virtual disk coloured by allocation state (or layer); see vdinspect.viz."""
        from ..viz.allocation import plot_allocation

        return plot_allocation(self, ax, **kw)

    def plot_layers(self, ax=None, **kw) -> Axes:
        """One band per layer: what each layer holds and which regions it supplies."""
        from ..viz.layers import plot_layers

        return plot_layers(self, ax, **kw)

    def plot_host_layout(self, ax=None, **kw) -> Axes:
        """Where headers, tables and data sit inside each image file."""
        from ..viz.hostlayout import plot_host_layout

        return plot_host_layout(self, ax, **kw)

    def plot_partitions(self, ax=None, **kw) -> Axes:
        """The partitions and gaps of the disk as a labelled bar."""
        from ..viz.partitions import plot_partitions

        return plot_partitions(self, ax, **kw)

    def explain(self, what: Any = "header", *, layer: int | None = None,
                offset: int | None = None) -> Explanation:
        """What each field of an on-disk structure means (``"header"`` of the top layer)."""
        from ..explainer import explain_disk

        return explain_disk(self, what, layer=layer, offset=offset)

    # --- what machine it was ----------------------------------------------------------
    def inspect(self) -> pd.DataFrame:
        """One row per operating system found (family, product, version, build, hostname,
        domain, time zone, install date, last boot/shutdown, kernels, mounts), with the
        file or registry key each value came from in ``evidence``."""
        return frames().inspect_frame(self.inspect_rows())

    def inspect_rows(self) -> list[dict]:
        """``inspect()`` as plain rows (no pandas)."""
        from ..guest import inspect_rows

        return inspect_rows(self)

    def packages(self) -> pd.DataFrame:
        """Installed packages of every OS found (dpkg, rpm, apk, pacman; Windows programs)."""
        from ..guest import package_rows

        return frames().packages_frame(package_rows(self))

    def users(self) -> pd.DataFrame:
        """Users of every OS found (passwd with last logins; Windows profiles with SIDs)."""
        from ..guest import user_rows

        return frames().users_frame(user_rows(self))

    # --- comparing two states ---------------------------------------------------------
    def diff(self, other, *, part: int | str | None = None, compare_data: bool = True,
             progress: Progress = None) -> Diff:
        """What changed from this disk to ``other`` (a Disk, e.g. ``disk.at("snap")`` or
        ``vdinspect.open(path, layer=k)``): a :class:`~vdinspect.compare.Diff` with ``blocks``
        and ``files`` DataFrames and ``plot()``. Shared clusters and ranges both sides read
        as zeros are decided from metadata; only the rest is read."""
        from ..compare import Diff

        return Diff(self, other, part=part, compare_data=compare_data, progress=progress)

    # --- export --------------------------------------------------------------------
    def to_raw(self, path, *, progress: Progress = None, chunk: int = 8 << 20,
               workers: int | None = None) -> int:
        """Write the virtual disk to ``path`` as a sparse raw file; returns bytes of data.

        Memory stays constant (one ``chunk``); ranges that are unallocated, zero or read as
        all zeros are left as holes. Compressed clusters or grains of a chunk are inflated
        by ``workers`` threads (default: the machine's cores; 1: none). Refuses to write
        over any file of the image.
        """
        from .export import write_raw

        return write_raw(self, path, progress=progress, chunk=chunk, workers=workers)

    # --- housekeeping ---------------------------------------------------------------
    def close(self) -> None:
        self.chain.close()

    def __repr__(self) -> str:
        top = self.top
        sub = f"/{top.subformat}" if top.subformat else ""
        return (
            f"<Disk {os.path.basename(self.path)} {top.format}{sub} "
            f"{human(self.size)}, {len(self.chain.layers)} layer(s)>"
        )

    def _repr_html_(self) -> str:
        import html

        top = self.top
        return (
            f"<b>Disk</b> <code>{html.escape(os.path.basename(self.path))}</code>: "
            f"{html.escape(top.format)} {html.escape(top.subformat or '')}, "
            f"{human(self.size)}, {len(self.chain.layers)} layer(s). "
            "Next: <code>.info()</code>, <code>.layers()</code>, "
            "<code>.allocation()</code>, <code>.check()</code>"
        )


def _maybe_text(path: str) -> bool:
    """False for a file whose first bytes hold a NUL: binary, so no VM machine file (those
    are XML or text), and the machine readers need not be imported to say so."""
    if not os.path.isfile(path):
        return True
    try:
        with open(path, "rb") as f:
            return b"\0" not in f.read(512)
    except OSError:
        return True


def _disk_size(layers) -> int:
    """Bytes the layers' host files take on the host filesystem (``st_blocks``)."""
    total = 0
    for img in layers:
        for p in img.host_files:
            try:
                total += os.stat(p).st_blocks * 512
            except (OSError, AttributeError):
                pass
    return total


def _at_snapshot(chain: Chain, snapshot: str | int, machine=None) -> Chain:
    """The chain with its top replaced by the top's internal snapshot ``snapshot``."""
    for k in range(len(chain.layers) - 1, -1, -1):
        img = chain.layers[k]
        if any(str(snapshot) in (s["id"], s["name"]) for s in img.snapshots()):
            snap = img.open_snapshot(snapshot)
            layers = chain.layers[:k] + [snap]
            for other in chain.layers[k:]:
                other.close()
            return Chain(layers)
    if machine is not None:
        machine.snapshot(snapshot)  # NotFound listing the VM's snapshots
    raise NotFound(f"{chain.top.path}: no snapshot {snapshot!r} in any layer")


def _scan():
    """The partition and embedded-image scans (vdinspect.recovery.scan), on first use."""
    from ..recovery import scan
    return scan


def _own_layer_argument(own_layer, layer):
    """``own_layer``, or the deprecated ``layer=`` spelling of it (DeprecationWarning)."""
    if layer is not None:
        import warnings

        warnings.warn("allocation(layer=k) / runs(layer=k) is now own_layer=k (layer= in "
                      "open() cuts the chain; here it meant one layer's own runs)",
                      DeprecationWarning, stacklevel=3)
        return layer if own_layer is None else own_layer
    return own_layer
