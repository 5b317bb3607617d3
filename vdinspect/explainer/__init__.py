"""The structure explorer: what each byte of an on-disk structure means.

``explain(QCowHeader, data)`` or ``disk.explain("header")`` answers with an
:class:`Explanation`: one row per field (offset, size, field, raw, value, meaning) and an
HTML hexdump with each field's bytes coloured. The rows come from the ``construct``
Struct that parsed the structure: field names are the spec's names, meanings are the
one-line comments the format modules attach with ``"name" / Int32ub * "comment"``, and
offsets are the stream positions recorded while parsing (so variable-length and
conditional fields are placed exactly, not guessed from ``sizeof()``).

Finding the Struct of an image's header: an :class:`~vdinspect.containers.base.Image`
may declare ``header_struct`` (a Struct, or a property returning one) and
``header_offset`` (host offset, default: found by checking candidates). Without them the
module of the image class is searched for the Struct whose fields are the header's
fields, and the structure is located by parsing the candidate offsets that
``structures()`` names and keeping the one whose values equal ``img.header``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import construct as cs

from ..errors import InvalidArgument
from ..io import ByteSource
from .explanation import COLUMNS, Explanation, Field
from .image import explain_image, struct_name
from .walk import explain_at, explain_bytes

if TYPE_CHECKING:
    from ..disk import Disk

# --- entry points ---------------------------------------------------------------------------


def explain_disk(
    disk: Disk, what: Any = "header", *, layer: int | None = None, offset: int | None = None
) -> Explanation:
    """``disk.explain(what)``: a structure of the top layer (or of ``layer``)."""
    from ..chain import MissingLayer, layer_index

    k = len(disk.chain.layers) - 1 if layer is None else layer_index(disk.chain, layer)
    img = disk.chain.layers[k]
    if isinstance(img, MissingLayer):
        raise InvalidArgument(f"layer {k} ({img.path}) is missing: nothing to explain")
    return explain_image(img, what, offset=offset)


def explain(
    obj: Any,
    data: Any = None,
    *,
    offset: int | None = None,
    what: str = "header",
    layer: int | None = None,
) -> Explanation:
    """Explain an on-disk structure field by field.

    - ``explain(Struct, data)``: parse ``data`` (bytes, or a ByteSource read at ``offset``)
      with a construct Struct, e.g. ``explain(qcow2.QCowHeader, raw)``;
    - ``explain(disk)`` / ``explain(disk, what="footer", layer=0)``: a structure of a
      :class:`~vdinspect.disk.Disk` (its top layer by default) or of an image;
    - ``explain("image.qcow2")``: open the file read-only and explain its header.
    """
    from ..containers.base import Image
    from ..disk import Disk

    if isinstance(obj, cs.Construct):
        if data is None:
            raise InvalidArgument("explain(Struct, data): give the bytes to decode")
        if isinstance(data, ByteSource):
            return explain_at(obj, data, offset or 0)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidArgument(f"data must be bytes or a ByteSource, not {type(data).__name__}")
        data = bytes(data)[offset or 0 :]
        return explain_bytes(obj, data)
    if data is not None:
        raise InvalidArgument("data= is only for explain(Struct, data)")
    if isinstance(obj, Disk):
        return explain_disk(obj, what, layer=layer, offset=offset)
    if isinstance(obj, Image):
        return explain_image(obj, what, offset=offset)
    if isinstance(obj, str | os.PathLike):
        from ..disk import Disk as _Disk

        disk = _Disk.open(obj)
        try:
            return explain_disk(disk, what, layer=layer, offset=offset)
        finally:
            disk.close()
    raise InvalidArgument(
        f"cannot explain a {type(obj).__name__}: give a Disk, an image, a "
        "path or a construct Struct with its bytes"
    )



__all__ = ["COLUMNS", "Explanation", "Field", "explain", "explain_at", "explain_bytes",
           "explain_disk", "explain_image", "struct_name"]
