"""An OVF package seen as one of its virtual disks: an ``.ova`` (a tar, read in place) or
a loose ``.ovf`` descriptor beside its files.

The chosen disk's file is opened with the registry as an image of its own (a
streamOptimized VMDK usually) over a :class:`~vdinspect.io.Slice` of the tar, so its runs'
host offsets are shifted to offsets in the ``.ova``. A gzip-compressed file
(``ovf:compression="gzip"``) is read in place through :class:`~vdinspect.io.gzipsource.
GzipSource` (one pass at open measures it, bounded by the disk's capacity, and keeps
decompressor checkpoints for random access; nothing is written); its runs then name that
stream.
"""

from __future__ import annotations

import os
from dataclasses import replace

from ...errors import CorruptImage, InvalidArgument, MissingFile, UnsupportedFeature
from ...io import ByteSource, Concat, Slice, paths
from ...io.gzipsource import GzipSource
from ...lazy import np
from ...units import human
from ..base import Image, Run, TableLayout, structure_row
from ..runs import RunTable
from ..tar import Member, is_tar, iter_members, leads_outside
from ..tar.structs import UstarHeader  # noqa: F401 (the explainer decodes "ustar header" rows)
from .descriptor import MAX_DESCRIPTOR, DiskRef, Envelope, FileRef, parse_envelope
from .manifest import MAX_MANIFEST, digest_of, parse_manifest

MAX_CHUNKS = 1_000_000  # pieces of one chunked file (ovf:chunkSize)
GUNZIP_SLACK = 64 << 20  # a decompressed disk file may exceed its capacity by metadata


class OvfImage(Image):
    """One disk of an OVF package (``disk``: index, ovf:diskId or file name; 0 = first)."""

    format = "ova"

    def __init__(self, source: ByteSource, *, path: str | None = None, strict: bool = True,
                 disk: int | str | None = None) -> None:
        super().__init__(source, path=path, strict=strict)
        self.members: dict[str, Member] | None = None
        self.shift: int | None = None  # host offset of the disk file in the .ova
        self.extra_sources: list[ByteSource] = []
        if is_tar(source.read(0, min(512, source.size))):
            self.members = {m.name: m for m in iter_members(source, self)}
            for m in self.members.values():
                if m.stored and leads_outside(m.stored):
                    self.finding("warning", "ustar header", m.header,
                                 f"member {m.stored!r} is named outside the archive's folder; "
                                 f"it is read inside the archive as {m.name!r}; the file of that "
                                 "name outside is never opened")
            ovf = [n for n in self.members if n.lower().endswith(".ovf")]
            if not ovf:
                self.fail(CorruptImage, "the tar holds no .ovf descriptor", "OVF descriptor", 0)
            self.descriptor_name = ovf[0]
            m = self.members[ovf[0]]
            data = source.read(m.offset, min(m.size, MAX_DESCRIPTOR + 1))
        else:
            self.format = "ovf"
            self.descriptor_name = os.path.basename(self.path)
            data = source.read(0, min(source.size, MAX_DESCRIPTOR + 1))
        self.envelope: Envelope = parse_envelope(data, self.path)
        self.manifest_name, self.cert_name = self._companions()
        self.disk_ref, self.file_ref = self._choose(disk)
        try:
            self.inner = self._open_disk()
        except BaseException:
            for src in self.extra_sources:  # files beside a loose descriptor
                src.close()
            raise
        self.size = self.inner.size
        self.header = self.inner.header
        self.cluster_size = self.inner.cluster_size
        self.subformat = " ".join(x for x in (self.inner.format, self.inner.subformat) if x)
        cap = self.disk_ref.capacity
        if cap is not None and cap != self.size:
            self.finding("warning", "OVF descriptor", None,
                         f"disk {self.disk_ref.id!r}: the descriptor's capacity {cap} bytes "
                         f"differs from the image's virtual size {self.size} bytes")
        if self.disk_ref.parent or (self.inner.parent_hint and self.inner.parent_hint.path):
            self.problem("OVF descriptor", None, f"disk {self.disk_ref.id!r} is a differencing "
                         "disk; parents inside a package are not followed (its unallocated "
                         "ranges read as zeros)", exc_type=UnsupportedFeature)

    # -- finding the package's files ------------------------------------------------------
    def _companions(self) -> tuple[str | None, str | None]:
        stem = os.path.splitext(self.descriptor_name)[0]
        if self.members is not None:
            names = list(self.members)
        else:
            names = [f"{stem}.mf", f"{stem}.cert"]
            names = [n for n in names if os.path.isfile(os.path.join(
                paths.folder_of(self.path), n))]
        mf = next((n for n in names if n.lower().endswith(".mf")), None)
        cert = next((n for n in names if n.lower().endswith(".cert")), None)
        return mf, cert

    def _choose(self, disk) -> tuple[DiskRef, FileRef]:
        disks = self.envelope.disks
        if not disks:
            self.fail(CorruptImage, "the descriptor lists no disk (DiskSection)",
                      "OVF descriptor")
        files = self.envelope.files
        pick = None
        if disk is None:
            pick = disks[0]
        elif isinstance(disk, int) and not isinstance(disk, bool):
            pick = disks[disk] if 0 <= disk < len(disks) else None
        elif isinstance(disk, str):
            for d in disks:
                f = files.get(d.file_id or "")
                if disk in (d.id, f and f.href, f and os.path.basename(f.href)):
                    pick = d
                    break
        if pick is None:
            known = ", ".join(f"{i}: {d.id}" for i, d in enumerate(disks))
            raise InvalidArgument(f"{self.path}: no disk {disk!r} in the package; it has {known}")
        ref = files.get(pick.file_id or "")
        if ref is None:
            self.fail(CorruptImage, f"disk {pick.id!r} names file {pick.file_id!r}, which "
                      "References does not list", "OVF descriptor")
        return pick, ref

    def file_source(self, name: str) -> ByteSource | None:
        """The bytes of the package file ``name`` (a tar member, or a file beside a loose
        descriptor found through the path policy), or None when it is absent."""
        if self.members is not None:
            from ..tar import clean_name

            m = self.members.get(clean_name(name))
            return None if m is None else Slice(self.file, m.offset, m.size,
                                                name=f"{self.path}/{m.name}")
        policy = paths.current()
        found = policy.find([name], self.path)
        paths.report_outside(self, "References", found, "file")
        if found.path is None:
            return None
        src = policy.open(found.path, self.path)
        self.extra_sources.append(src)
        return src

    def _file_bytes(self, ref: FileRef) -> ByteSource:
        if ref.chunk_size is None:
            src = self.file_source(ref.href)
            if src is None and self.members is None:
                found = paths.current().find([ref.href], self.path)
                why = found.why()
                raise MissingFile(f"file {ref.href!r} of disk {self.disk_ref.id!r} not found "
                                  "beside the descriptor" + (f" ({why})" if why else ""),
                                  tried=found.tried, path=self.path, structure="References")
            if src is None:
                self.fail(CorruptImage, f"file {ref.href!r} of disk {self.disk_ref.id!r} is "
                          "not in the package", "References")
            return src
        parts = []
        total = 0
        for k in range(MAX_CHUNKS):
            part = self.file_source(f"{ref.href}.{k:09d}")
            if part is None:
                break
            parts.append(part)
            total += part.size
            if ref.size is not None and total >= ref.size:
                break
        if not parts:
            self.fail(CorruptImage, f"no chunk of file {ref.href!r} is in the package",
                      "References")
        return Concat(parts, name=f"{self.path}/{ref.href}")

    def _open_disk(self) -> Image:
        from ..registry import open_image

        ref = self.file_ref
        src = self._file_bytes(ref)
        if ref.size is not None and ref.size != src.size:
            self.problem("References", None, f"file {ref.href!r} holds {src.size} bytes; the "
                         f"descriptor says {ref.size}")
        name = src.name
        if ref.compression == "gzip":
            limit = (self.disk_ref.capacity or 0) * 5 // 4 + GUNZIP_SLACK
            src = GzipSource(src, limit=limit, name=f"{name} (gunzipped)", salvage=True)
            name = src.name
            if src.damage is not None:
                self.problem("gzip stream", src.damage[0], f"{ref.href}: {src.damage[1]}; "
                             f"the first {src.size} decompressed bytes are read")
        elif ref.compression:
            self.fail(UnsupportedFeature, f"file {ref.href!r} is compressed with "
                      f"{ref.compression!r}; only gzip is defined", "References")
        elif isinstance(src, Slice):
            self.shift = src.offset
        return open_image(name, source=src, strict=self.strict)

    # -- the image protocol -----------------------------------------------------------------
    def _runs(self, start: int, end: int):
        for r in self.inner.runs(start, end - start):
            if self.shift is not None and r.host_offset is not None:
                r = replace(r, host_offset=r.host_offset + self.shift, host_file=self.path)
            yield r

    def fill_run(self, run: Run, out: memoryview) -> None:
        if self.shift is not None and run.host_offset is not None:
            run = replace(run, host_offset=run.host_offset - self.shift, host_file=self.inner.path)
        self.inner.fill_run(run, out)

    def fill_runs(self, table: RunTable, base: int, out: memoryview,
                  workers: int | None = None) -> None:
        """The disk inside fills the rows, with their host offsets its own."""
        if self.shift is not None:
            table = table.take(slice(None))
            table.host = np.where(table.host >= 0, table.host - self.shift, table.host)
        self.inner.fill_runs(table, base, out, workers)

    def inflate_ahead(self, runs, workers: int | None = None) -> None:
        """Nothing to do here: the disk inside inflates its own compressed units when
        :meth:`fill_run` hands it the runs."""

    def flags(self) -> list:
        return list(self.inner.flags())

    def explain_delegate(self, what) -> Image | None:
        """The image that explains ``what``: the disk for its own structures (and its
        header), None for the package's (the explainer then reads this one's rows)."""
        if what == "header" or (isinstance(what, str) and any(
                str(r.get("name", "")).lower() == what.lower() for r in self.inner.structure_rows())):
            return self.inner
        return None

    def table_layout(self, name: str) -> TableLayout | None:
        return self.inner.table_layout(name)

    def snapshots(self) -> list[dict]:
        return self.inner.snapshots()

    @property
    def host_files(self) -> list[str]:
        return [self.path] + ([] if self.members is not None else self.inner.host_files)

    def _moved(self, rows: list[dict]) -> list[dict]:
        if self.shift is None:
            return rows
        return [dict(r, host_file=self.path, host_offset=r["host_offset"] + self.shift)
                if r.get("host_offset") is not None else r for r in rows]

    def structure_rows(self) -> list[dict]:
        rows = []
        if self.members is not None:
            roles = {self.descriptor_name: "OVF descriptor", self.manifest_name: "manifest",
                     self.cert_name: "certificate"}
            for m in self.members.values():
                rows.append(structure_row(
                    f"ustar header: {m.name}", self.path, m.header, m.offset - m.header,
                    "ustar header(s) of the member",
                ))
                role = roles.get(m.name) or "package file"
                rows.append(structure_row(
                    f"{role}: {m.name}", self.path, m.offset, m.size, f"{role} ({human(m.size)})",
                ))
        else:
            rows.append(structure_row(
                "OVF descriptor", self.path, 0, self.file.size, "the OVF descriptor (XML)",
            ))
        return rows + self._moved(self.inner.structure_rows())

    def check_rows(self) -> list[dict]:
        from .check import package_rows

        return self.findings_rows() + package_rows(self) + self._moved(self.inner.check_rows())

    def info_fields(self) -> dict:
        env = self.envelope
        vs = env.systems[0] if env.systems else None
        out = dict(self.inner.info_fields())
        out.update(
            package=self.format,
            ovf_version=env.version,
            vm_name=vs.name if vs else None,
            os=vs.os if vs else None,
            cpus=vs.cpus if vs else None,
            memory=vs.memory if vs else None,
            nics=list(vs.nics) if vs else [],
            virtual_systems=len(env.systems),
            disks=[f"{d.id}: {env.files[d.file_id].href if d.file_id in env.files else '?'}"
                   f" ({human(d.capacity) if d.capacity is not None else '?'})"
                   for d in env.disks],
            disk_id=self.disk_ref.id,
            disk_file=self.file_ref.href,
            disk_format=self.disk_ref.format,
            compression=self.file_ref.compression,
            manifest=self.manifest_name,
            certificate=self.cert_name,
        )
        return out

    def close(self) -> None:
        self.inner.close()
        for s in self.extra_sources:
            s.close()
        super().close()

    def manifest(self) -> tuple[dict, list[str]]:
        """The manifest's {file: (algorithm, digest)} and its unreadable lines."""
        if self.manifest_name is None:
            return {}, []
        src = self.file_source(self.manifest_name)
        if src is None:
            return {}, []
        return parse_manifest(src.read(0, min(src.size, MAX_MANIFEST)))

    def digest(self, name: str, algo: str) -> str | None:
        """The digest of the package file ``name``, or None when it is absent."""
        src = self.file_source(name)
        return None if src is None else digest_of(src, algo)
