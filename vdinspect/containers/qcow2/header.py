"""The QCOW2 header, its extensions, feature bits and the external data file."""

from __future__ import annotations

from construct import Struct

from ...errors import CorruptImage, EncryptedImage, UnsupportedFeature
from ..base import ParentHint
from .structs import (
    AUTOCLEAR_DATA_FILE_RAW,
    EXT_BACKING_FORMAT,
    EXT_BITMAPS,
    EXT_CRYPTO,
    EXT_DATA_FILE,
    EXT_END,
    EXT_FEATURE_NAMES,
    EXTENSION_NAMES,
    FEATURE_DEFAULT_NAMES,
    INCOMPAT_COMPRESSION,
    INCOMPAT_DATA_FILE,
    INCOMPAT_EXTL2,
    INCOMPAT_KNOWN,
    MAGIC,
    BitmapsExtension,
    CryptoHeaderExtension,
    FeatureNameEntry,
    HeaderExtension,
    QCowHeader,
    QCowHeaderFull,
    QCowHeaderV3,
    cstr,
)


class Header:
    """Mixin of :class:`Qcow2Image`: reads the header, the extensions and the data file."""

    @property
    def header_struct(self) -> Struct:
        """The Struct of the header as stored at offset 0 (``explain("header")`` decodes it)."""
        return QCowHeaderFull if self.version >= 3 else QCowHeader

    def _parse_header(self) -> None:
        f = self.file
        if f.size < QCowHeader.sizeof():
            self.fail(CorruptImage, f"file is {f.size} bytes, shorter than the header", "header", 0)
        h = QCowHeader.parse(f.read(0, QCowHeader.sizeof()))
        if h.magic != MAGIC:
            self.fail(CorruptImage, "bad magic", "header", 0)
        if h.version not in (2, 3):
            self.fail(UnsupportedFeature, f"QCOW2 version {h.version}", "header.version", 4)
        if not 9 <= h.cluster_bits <= 21:
            self.fail(CorruptImage, f"cluster_bits {h.cluster_bits} outside 9..21", "header.cluster_bits", 20)
        self.version = h.version
        self.cluster_bits = h.cluster_bits
        self.cluster_size = cs = 1 << h.cluster_bits
        v3 = dict(
            incompatible_features=0,
            compatible_features=0,
            autoclear_features=0,
            refcount_order=4,
            header_length=72,
            compression_type=0,
        )
        if h.version >= 3:
            if f.size < 104:
                self.fail(CorruptImage, "file too short for a version 3 header", "header", 72)
            v3.update(QCowHeaderV3.parse(f.read(72, 32)))
            v3.pop("_io", None)
            hl = v3["header_length"]
            if hl < 104 or hl > cs or hl > f.size:
                self.fail(CorruptImage, f"header_length {hl} is not in 104..cluster size", "header.header_length", 100)
            if hl >= 105:
                v3["compression_type"] = f.read(104, 1)[0]
            if v3["refcount_order"] > 6:
                self.fail(CorruptImage, f"refcount_order {v3['refcount_order']} > 6", "header.refcount_order", 96)
        for k, v in v3.items():
            h[k] = v
        self.header = h
        self.size = h.size
        self.refcount_bits = 1 << h.refcount_order
        self.extended_l2 = bool(h.incompatible_features & INCOMPAT_EXTL2)
        self.l2_entry_size = 16 if self.extended_l2 else 8
        self.l2_entries = cs // self.l2_entry_size
        self.subclusters = 32 if self.extended_l2 else 1
        self.subcluster_size = cs // self.subclusters
        if h.size > (1 << 61):
            self.fail(CorruptImage, f"virtual size {h.size} is absurd", "header.size", 24)
        self.csize_shift = 62 - (h.cluster_bits - 8)
        self.csize_mask = (1 << (h.cluster_bits - 8)) - 1
        self.coffset_mask = (1 << self.csize_shift) - 1

    def _parse_extensions(self) -> None:
        h, f, cs = self.header, self.file, self.cluster_size
        self.extensions: list[dict] = []
        self.backing_format: str | None = None
        self.feature_names: dict[tuple[int, int], str] = dict(FEATURE_DEFAULT_NAMES)
        self.bitmaps_ext = None
        self.crypto_ext = None
        self.data_file_name: str | None = None
        pos = h.header_length
        limit = min(cs, f.size)
        if h.backing_file_offset and h.backing_file_offset > pos:
            limit = min(limit, h.backing_file_offset)
        for _ in range(4096):
            if pos + 8 > limit:
                break
            ext = HeaderExtension.parse(f.read(pos, 8))
            if ext.type == EXT_END:
                break
            if pos + 8 + ext.length > limit:
                message = (
                    f"header extension {ext.type:#x} of {ext.length} "
                    "bytes overruns the header cluster"
                )
                if self.strict:
                    self.fail(CorruptImage, message, "header extension", pos)
                # salvage: keep the extensions before it (a needed one that is lost, such
                # as a data file name, still refuses the image below)
                self.finding("error", "header extension", pos, f"{message}; the rest ignored")
                break
            data = f.read(pos + 8, ext.length)
            name = EXTENSION_NAMES.get(ext.type, "unknown")
            self.extensions.append(
                dict(type=ext.type, name=name, host_offset=pos, length=ext.length, data=data)
            )
            if ext.type == EXT_BACKING_FORMAT:
                self.backing_format = cstr(data)
            elif ext.type == EXT_FEATURE_NAMES:
                for i in range(len(data) // 48):
                    e = FeatureNameEntry.parse(data[i * 48 : i * 48 + 48])
                    self.feature_names[(e.type, e.bit)] = cstr(e.name)
            elif ext.type == EXT_BITMAPS and len(data) >= 24:
                self.bitmaps_ext = BitmapsExtension.parse(data)
            elif ext.type == EXT_CRYPTO and len(data) >= 16:
                self.crypto_ext = CryptoHeaderExtension.parse(data)
            elif ext.type == EXT_DATA_FILE:
                self.data_file_name = cstr(data)
            pos += 8 + ((ext.length + 7) & ~7)
        self.backing_file: str | None = None
        if h.backing_file_offset:
            n = h.backing_file_size
            if n > 1023 or h.backing_file_offset + n > f.size:
                message = f"backing file name ({n} bytes) outside the file or too long"
                if self.strict:
                    self.fail(CorruptImage, message, "backing file name", h.backing_file_offset)
                # salvage: a parent nobody can find, so its ranges show as damaged
                self.finding("error", "backing file name", h.backing_file_offset, message)
                self.backing_file = "<unreadable backing file name>"
                return
            self.backing_file = f.read(h.backing_file_offset, n).decode("utf-8", "replace")

    def _feature_list(self, field: int, kind: int) -> list[str]:
        """Names of the set bits: our fixed names for known bits (stable whatever the image's
        feature name table says), the image's own names for the others."""
        names = {**self.feature_names, **FEATURE_DEFAULT_NAMES}
        return [names.get((kind, b), f"bit {b}") for b in range(64) if field >> b & 1]

    def _check_features(self) -> None:
        h = self.header
        if h.crypt_method:
            kind = {1: "AES", 2: "LUKS"}.get(h.crypt_method, f"method {h.crypt_method}")
            self.fail(EncryptedImage, f"image is encrypted ({kind}); vdinspect does not decrypt", "header.crypt_method", 32)
        unknown = h.incompatible_features & ~INCOMPAT_KNOWN
        if unknown:
            names = ", ".join(self._feature_list(unknown, 0))
            self.fail(UnsupportedFeature, f"unknown incompatible features: {names}", "header.incompatible_features", 72)
        if h.compression_type not in (0, 1):
            self.fail(UnsupportedFeature, f"compression type {h.compression_type}", "header.compression_type", 104)
        if h.compression_type and not h.incompatible_features & INCOMPAT_COMPRESSION:
            self.fail(CorruptImage, "compression_type is set without its incompatible bit", "header.compression_type", 104)

    def _open_data_file(self) -> None:
        h = self.header
        if not h.incompatible_features & INCOMPAT_DATA_FILE:
            return
        if not self.data_file_name:
            self.fail(CorruptImage, "external data file bit set but no data file name", "header extension", h.header_length)
        from ...io import paths

        # a name from the image: only inside the allowed folders (vdinspect.io.paths)
        policy, name = paths.current(), self.data_file_name
        found = policy.find([name], self.path)
        paths.report_outside(self, "external data file name", found, "external data file")
        if found.path is None:
            raise found.missing(f"external data file {name!r}", self.path,
                                "external data file name")
        self.data_file = policy.open(found.path, self.path)
        self.data_file_path = found.path

    @property
    def data_file_raw(self) -> bool:
        return bool(self.header.autoclear_features & AUTOCLEAR_DATA_FILE_RAW)

    @property
    def parent_hint(self) -> ParentHint | None:
        if not self.backing_file:
            return None
        return ParentHint(path=self.backing_file, format=self.backing_format)
