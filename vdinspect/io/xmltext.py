"""XML stored in images and packages (machine files, OVF descriptors, XVA ova.xml), parsed
safely: DTDs and entity declarations are refused (no entity bombs, no external fetches),
and the few element helpers every reader of such XML uses, namespace-blind."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ..errors import CorruptImage

_DECL = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.I)


def parse_xml_bytes(data: bytes, path: str | None, what: str) -> ET.Element:
    """The root element of ``data`` (the XML ``what`` of the file ``path``); CorruptImage
    names the place when it declares a DTD or entity, or is not well-formed."""
    m = _DECL.search(data)
    if m:
        raise CorruptImage(
            f"{m.group(1).decode().upper()} declarations are refused (entity expansion)",
            path=path,
            structure=what,
            offset=m.start(),
        )
    try:
        return ET.fromstring(data)
    except ET.ParseError as e:
        line, col = getattr(e, "position", (None, None))
        raise CorruptImage(
            f"broken XML at line {line}, column {col}: {e}", path=path, structure=what
        ) from None


def local(tag: str) -> str:
    """An element's tag (or an attribute's name) without its namespace."""
    return tag.rsplit("}", 1)[-1]


def children(el: ET.Element | None, name: str) -> list[ET.Element]:
    """Direct children called ``name`` (namespace ignored)."""
    if el is None:
        return []
    return [c for c in el if local(c.tag) == name]


def child(el: ET.Element | None, name: str) -> ET.Element | None:
    got = children(el, name)
    return got[0] if got else None


def child_text(el: ET.Element | None, name: str) -> str | None:
    c = child(el, name)
    return None if c is None or c.text is None else c.text.strip()


def attr(el: ET.Element | None, name: str) -> str | None:
    """The attribute ``name`` of ``el`` in any namespace (``ovf:href`` or ``href``)."""
    if el is None:
        return None
    for k, v in el.attrib.items():
        if local(k) == name:
            return v
    return None
