"""vdinspect: look inside virtual machine disk images, read-only, from Python and a terminal.

>>> import vdinspect
>>> disk = vdinspect.open("sample_images/chain-top.qcow2")   # doctest: +SKIP
>>> disk.info(); disk.layers(); disk.allocation()              # doctest: +SKIP
"""

from __future__ import annotations

from . import errors
from .errors import (  # noqa: F401 (re-exported: errors.__all__)
    CorruptImage,
    EncryptedImage,
    ImageError,
    InvalidArgument,
    MissingDependency,
    MissingFile,
    MissingParent,
    NotFound,
    NotRecognized,
    UnsupportedFeature,
    VDInspectError,
)

__version__ = "0.1.0"


def open(path, *, format=None, snapshot=None, layer=None, strict=True, parents=None,
         sector_size=None, search=None, follow_outside=False, disk=None, offset=None,
         length=None, spool_dir=None):
    """Open a disk image (and its parents) read-only; returns a :class:`~vdinspect.disk.Disk`.

    ``format`` forces a reader (detection is by magic otherwise); ``snapshot`` opens an
    internal snapshot by id or name; ``layer`` views the chain as of layer K (0 = base,
    negative counts from the top); ``strict=False`` is salvage mode; ``parents`` says where
    parents are (a file, a folder, a list of them, or a mapping from the name the image
    records to a path); ``sector_size`` is the logical sector size the partition tables use
    (4096 for a 4Kn disk; found from the GPT header's place otherwise); ``disk`` chooses a
    disk of a VM machine file or a package (``.ova``/``.ovf``, ``.xva``): an index (0 = the
    first, the default) or the name the package gives it. ``offset`` (bytes) opens an image
    stored at that offset of the file ``path`` (one a scan found inside a host disk or an
    archive), ``length`` bytes long (to the file's end by default). ``path`` may also be a
    ByteSource holding an image, such as a file of a filesystem, deleted ones too:
    ``vdinspect.open(fs.content(fs.lookup("/vm.qcow2", deleted=True)))`` (one layer: its
    parents are not looked for). A list of paths opens the disks together as a
    :class:`~vdinspect.disk.DiskGroup` (LVM2 volume groups spread over several disks).

    An image is untrusted input: a file name it records (backing file, data file, extent,
    parent locator, machine file entry) is followed only inside the image's folder, the
    folders in ``search`` (a folder or a list) and those among ``parents``; a name leading
    elsewhere is looked up by its base name there instead and reported in ``check()`` and
    ``layers()``; devices, FIFOs and ``/proc`` are never opened.
    ``follow_outside=True`` follows names wherever they lead, for an image you trust
    (docs/reliability.md, "An image is untrusted input").

    ``spool_dir``: the folder where a stream that cannot be read in place (a single-frame
    zstd XVA export) is decompressed once, into a temporary file deleted on close (default:
    ``$VDINSPECT_SPOOL_DIR``, else the system's temporary folder; never the image's folder).
    """
    from .disk import Disk, DiskGroup
    from .io import ByteSource

    if isinstance(path, ByteSource):  # bytes already open: a file of a filesystem, a slice
        return _open_source(path, format=format, strict=strict)
    kw = dict(format=format, snapshot=snapshot, layer=layer, strict=strict, parents=parents,
              sector_size=sector_size, search=search, follow_outside=follow_outside,
              disk=disk, offset=offset, length=length, spool_dir=spool_dir)
    if isinstance(path, list | tuple):  # several disks together (LVM across disks)
        disks = []
        try:
            for p in path:
                disks.append(Disk.open(p, **kw))
        except BaseException:
            for d in disks:
                d.close()
            raise
        return DiskGroup(disks)
    return Disk.open(path, **kw)


def _open_source(source, *, format=None, strict=True):
    """A Disk over an image held in ``source`` (one layer: parents are not looked for)."""
    from .chain import Chain
    from .containers.registry import open_image
    from .disk import Disk

    img = open_image(source.name, format=format, strict=strict, source=source)
    return Disk(Chain([img]), path=source.name, options=dict(format=format, strict=strict))


def open_vmdk_extents(paths, *, strict=True):
    """The disk made of VMDK extent files whose descriptor file is lost, given in disk order
    (``disk-s001.vmdk``, ``disk-s002.vmdk`` ... or flat ``disk-f001.vmdk`` ...): a descriptor
    is synthesised in memory from the extents (nothing is written) and read through.
    ``vdinspect.containers.vmdk.synthesize_descriptor(paths)`` gives that text."""
    from .chain import Chain
    from .containers.vmdk.reassemble import open_extents
    from .disk import Disk

    img = open_extents(paths, strict=strict)
    return Disk(Chain([img]), path=img.path, options=dict(format="vmdk", strict=strict))


def explain(obj, data=None, *, offset=None, what="header", layer=None):
    """What each field of an on-disk structure means: a Disk's header, or a Struct + bytes.

    ``explain(disk)``, ``explain("image.qcow2")``, ``explain(qcow2.QCowHeader, data)``;
    see :func:`vdinspect.explainer.explain`.
    """
    from .explainer import explain as _explain

    return _explain(obj, data, offset=offset, what=what, layer=layer)


def diff(a, b, *, part=None, compare_data=True, progress=None, **open_options):
    """What changed from image ``a`` to image ``b`` (paths or Disks): a
    :class:`~vdinspect.compare.Diff` with ``blocks`` and ``files`` DataFrames and ``plot()``.
    ``open_options`` (``snapshot=``, ``layer=``, ``strict=``, ...) apply to paths opened here.
    """
    from .compare import Diff

    da = a if hasattr(a, "runs") else open(a, **open_options)
    db = b if hasattr(b, "runs") else open(b, **open_options)
    return Diff(da, db, part=part, compare_data=compare_data, progress=progress)


def inventory(paths, executor=None, **open_options):
    """One row per image (format, sizes, layers, snapshots, partitions, filesystems,
    labels) with an ``error`` column instead of raising; ``executor`` is any
    ``concurrent.futures`` executor. See :mod:`vdinspect.fleet`."""
    from .fleet import inventory as _inventory

    return _inventory(paths, executor, **open_options)


__all__ = [
    "open",
    "diff",
    "inventory",
    "open_vmdk_extents",
    "explain",
    *errors.__all__,  # the exception classes, listed once (errors.py)
]
