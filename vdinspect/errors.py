"""The exceptions vdinspect raises.

Three kinds: a bad or unsupported image (:class:`ImageError` and its subclasses), a bad call
(:class:`InvalidArgument`, :class:`NotFound`), and our own bugs (anything else).
Image errors name the file, the structure and the byte offset.
"""

from __future__ import annotations


class VDInspectError(Exception):
    """Base class of every error vdinspect raises on purpose."""


class ImageError(VDInspectError):
    """The image (or one of its files) is bad or unsupported.

    ``path``, ``structure`` and ``offset`` say where; the message repeats them.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        structure: str | None = None,
        offset: int | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.structure = structure
        self.offset = offset
        self.detail = message
        where = []
        if self.path is not None:
            where.append(self.path)
        if structure:
            where.append(structure)
        if offset is not None:
            where.append(f"offset {offset:#x}")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


class NotRecognized(ImageError):
    """No reader recognises the file (or it is not the format that was asked for)."""


class CorruptImage(ImageError):
    """The image's metadata contradicts itself or points outside the file."""


class UnsupportedFeature(ImageError):
    """The image uses a feature vdinspect cannot read (yet)."""


class MissingFile(ImageError):
    """A file the image needs (an extent, an external data file) could not be found."""

    def __init__(self, message: str, *, tried: list[str] | None = None, **kw) -> None:
        self.tried = list(tried or [])
        if self.tried:
            message = f"{message}; tried: {', '.join(self.tried)}"
        super().__init__(message, **kw)


class MissingParent(MissingFile):
    """A differencing image's parent (backing file) could not be found."""


class EncryptedImage(UnsupportedFeature):
    """The image (or a volume in it) is encrypted; vdinspect does not decrypt.

    ``scheme`` names the encryption (``"BitLocker"``, ``"LUKS2"``, ``"VirtualBox full-disk
    encryption"``...) and ``needs`` the key material that would open it; both are in the
    message too. Salvage mode shows the same facts in ``info()`` and ``check()`` instead.
    """

    def __init__(self, message: str, *, scheme: str | None = None, needs: str | None = None,
                 **kw) -> None:
        self.scheme = scheme
        self.needs = needs
        if scheme and scheme not in message:
            message = f"{message} ({scheme})"
        if needs:
            message = f"{message}; opening it would need {needs}"
        super().__init__(message, **kw)


class MissingDependency(VDInspectError, ImportError):
    """An optional Python package is needed for this image (the message names the extra)."""


class InvalidArgument(VDInspectError, ValueError):
    """The call itself is wrong (bad offset, unknown option, ...)."""


class NotFound(VDInspectError, FileNotFoundError):
    """A named thing (file, snapshot, layer, path) does not exist."""


__all__ = [
    "VDInspectError",
    "ImageError",
    "NotRecognized",
    "CorruptImage",
    "UnsupportedFeature",
    "MissingFile",
    "MissingParent",
    "EncryptedImage",
    "MissingDependency",
    "InvalidArgument",
    "NotFound",
]
