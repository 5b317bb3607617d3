"""Which format is this file? Detection by magic bytes, never by file name; raw last."""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from ..errors import EncryptedImage, InvalidArgument, NotRecognized
from ..io import ByteSource, FileSource
from ..io.zstdsource import is_zstd

if TYPE_CHECKING:
    from .base import Image

HEAD_SIZE = 4096
ZSTD_HEAD_SIZE = 3 * 128 * 1024 + 64  # zstd decodes whole blocks (up to 128 KiB each)
TAIL_SIZE = 513  # the last 512 bytes, and one more for old 511-byte VHD footers


def _any(head: bytes) -> bool:
    return True


def _never(tail: bytes) -> bool:
    return False


@dataclass(frozen=True)
class Format:
    """A registered image format: its name, the module that reads it, and its magic.

    ``magic(head)`` and ``tail_magic(tail)`` are cheap pre-checks written here so that
    detection imports (and builds the structs of) only the module whose magic matches:
    each must answer True whenever the module's own ``probe``/``probe_tail`` could.
    """

    name: str
    module: str  # relative to vdinspect.containers; must define probe() and open_image()
    description: str
    magic: Callable[[bytes], bool] = _any
    tail_magic: Callable[[bytes], bool] = _never

    def load(self) -> ModuleType:
        return importlib.import_module(f"vdinspect.containers.{self.module}")

    @property
    def available(self) -> bool:
        """False while a format's module is not written yet."""
        return importlib.util.find_spec(f"vdinspect.containers.{self.module}") is not None


def _qemu(head: bytes) -> bool:
    return head[:4] == b"QFI\xfb"


def _vmdk(head: bytes) -> bool:
    """Sparse ("KDMV"), COWD, seSparse (0xcafebabe), or text starting as a descriptor does
    (a comment line or ``version=``)."""
    if head[:4] in (b"KDMV", b"COWD") or head[:8] == b"\xbe\xba\xfe\xca\0\0\0\0":
        return True
    text = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    text = text.lstrip(b" \t\r\n")
    return text[:1] == b"#" or text[:7].lower() == b"version"


def _tar(head: bytes) -> bool:
    return head[257:262] == b"ustar"


def _ovf(head: bytes) -> bool:
    """A tar (an .ova) or XML naming the OVF envelope namespace (a loose .ovf)."""
    return _tar(head) or (b"<" in head[:64] and b"schemas.dmtf.org/ovf/envelope" in head)


def _vhd_tail(tail: bytes) -> bool:
    return b"conectix" in tail


#: Probed in this order; raw matches anything and so comes last.
FORMATS: list[Format] = [
    Format("qcow2", "qcow2", "QEMU copy-on-write v2/v3", _qemu),
    Format("qcow", "qcow", "QEMU copy-on-write v1", _qemu),
    Format("vmdk", "vmdk", "VMware virtual disk (descriptor, sparse, stream, COWD, seSparse)",
           _vmdk),
    Format("vhdx", "vhdx", "Microsoft Hyper-V virtual hard disk v2",
           lambda h: h[:8] == b"vhdxfile"),
    Format("vhd", "vhd", "Microsoft virtual hard disk (Virtual PC, Hyper-V, Disk2VHD)",
           lambda h: h[:8] == b"conectix", _vhd_tail),
    Format("vdi", "vdi", "VirtualBox disk image", lambda h: h[64:68] == b"\x7f\x10\xda\xbe"),
    Format("parallels", "parallels", "Parallels / Virtuozzo sparse image and .hdd bundle",
           lambda h: h[:16] in (b"WithoutFreeSpace", b"WithouFreSpacExt")),
    Format("ova", "ova", "OVF package: an .ova tar (read in place) or a loose .ovf", _ovf),
    Format("xva", "xva", "XenServer / XCP-ng VM export (tar of 1 MiB chunks, maybe gzip- "
           "or zstd-compressed)", lambda h: _tar(h) or h[:2] == b"\x1f\x8b" or is_zstd(h)),
    Format("raw", "raw", "raw disk image"),
]

#: Other names for a format; qemu's driver names (``-F vpc`` in a QCOW2 backing-format
#: extension) among them: qemu calls VHD ``vpc``.
ALIASES = {"img": "raw", "qcow1": "qcow", "vpc": "vhd"}


def format_names() -> list[str]:
    return [f.name for f in FORMATS if f.available]


def get_format(name: str) -> Format:
    """The registered format called ``name`` (InvalidArgument if none)."""
    key = ALIASES.get(name.lower(), name.lower())
    for f in FORMATS:
        if f.name == key and f.available:
            return f
    raise InvalidArgument(f"unknown format {name!r}; known: {', '.join(format_names())}")


def read_tail(source: ByteSource) -> bytes:
    """The file's last TAIL_SIZE bytes (fewer if the file is shorter)."""
    n = min(TAIL_SIZE, source.size)
    return source.read(source.size - n, n)


def probe_tail(module, source: ByteSource) -> bool:
    """True if ``module`` defines ``probe_tail(tail)`` and it accepts the file's last bytes."""
    fn = getattr(module, "probe_tail", None)
    return fn is not None and bool(fn(read_tail(source)))


def read_head(source: ByteSource) -> bytes:
    """The first bytes probes look at: more of a zstd stream, whose first block must be
    whole before anything comes out of it."""
    head = source.read(0, min(HEAD_SIZE, source.size))
    if is_zstd(head):
        head = source.read(0, min(ZSTD_HEAD_SIZE, source.size))
    return head


def detect(source: ByteSource) -> Format:
    """The first format whose probe accepts the file's first bytes, else its last bytes.

    A module may define ``probe_tail(tail)`` for formats marked only at the end of the
    file (a fixed VHD's footer); those are asked after every head probe but before raw.
    """
    head = read_head(source)
    found = [f for f in FORMATS if f.available]
    for f in found:
        if f.name != "raw" and f.magic(head) and f.load().probe(head):
            return f
    tail = None
    for f in found:
        if f.name != "raw" and f.tail_magic is not _never:
            tail = read_tail(source) if tail is None else tail
            if f.tail_magic(tail) and probe_tail(f.load(), source):
                return f
    for f in found:
        if f.magic(head) and f.load().probe(head):
            return f
    raise NotRecognized("no reader recognises this file", path=source.name)  # pragma: no cover


_VMDK_CRYPT = re.compile(rb"^[ \t]*encryption\.(keysafe|data)[ \t]*=", re.I | re.M)
VMDK_DESCRIPTOR_SPAN = 64 << 10  # where a VMDK's descriptor (text or embedded) lies


def refuse_encrypted_vmdk(fmt: str, src: ByteSource, path: str) -> None:
    """A VMware-encrypted VMDK: its descriptor holds ``encryption.keySafe`` and
    ``encryption.data`` (the real descriptor, extents included, is inside the latter), so
    there is nothing to read without the key: EncryptedImage, in salvage mode too."""
    if fmt != "vmdk":
        return
    m = _VMDK_CRYPT.search(src.read(0, min(src.size, VMDK_DESCRIPTOR_SPAN)))
    if m is not None:
        raise EncryptedImage("the disk is encrypted; vdinspect does not decrypt",
                             scheme="VMware disk encryption",
                             needs="the key from the key provider (KMS or native key "
                             "provider) that encryption.keySafe names",
                             path=path, structure="descriptor", offset=m.start())


def open_image(
    path: str, *, format: str | None = None, strict: bool = True, source: ByteSource | None = None,
    disk: int | str | None = None,
) -> Image:
    """Open one image file (one layer) with the given or the detected format; ``disk``
    chooses a disk of a package holding several (OVA/OVF, XVA: modules that set
    ``MULTI_DISK``)."""
    src = source if source is not None else FileSource(path)
    try:
        fmt = get_format(format) if format else detect(src)
        mod = fmt.load()
        if format and fmt.name != "raw":
            head = read_head(src)
            if not mod.probe(head) and not probe_tail(mod, src):
                raise NotRecognized(
                    f"not a {fmt.name} image (magic does not match)",
                    path=path,
                    structure="header",
                    offset=0,
                )
        refuse_encrypted_vmdk(fmt.name, src, path)
        if getattr(mod, "MULTI_DISK", False):
            return mod.open_image(src, path=path, strict=strict, disk=disk)
        if disk not in (None, 0):
            raise InvalidArgument(f"{path}: disk= is for VM machine files and packages "
                                  f"(OVA/OVF, XVA), not a {fmt.name} image")
        return mod.open_image(src, path=path, strict=strict)
    except BaseException:
        if source is None:
            src.close()
        raise
