"""What the browser shows for a file: text (with an encoding guess), a hex dump, or an image.

Plain Python: the result is a dict the view renders. Images are recognised by their
first bytes, never by the file name. Only the start of a file is read (``limit`` bytes for
text and hex; images up to ``IMAGE_LIMIT``), and reads stream through the driver.
"""

from __future__ import annotations

import codecs

from ..errors import VDInspectError
from ..filesystems.base import DIR, SYMLINK, Entry, FileSystem

IMAGE_LIMIT = 8 << 20  # larger pictures are shown as a hex dump of their start
TEXT_LIMIT = 64 << 10  # text previews show at most this much

#: image formats by magic: (prefix, format name for ipywidgets.Image)
IMAGE_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
]


def image_format(head: bytes) -> str | None:
    """The image format named by the first bytes (png, jpeg, gif, bmp), or None."""
    for magic, fmt in IMAGE_MAGIC:
        if head.startswith(magic):
            if fmt == "bmp" and not _plausible_bmp(head):
                continue
            return fmt
    return None


def _plausible_bmp(head: bytes) -> bool:
    """'BM' is a short magic: also ask for a known DIB header size at offset 14."""
    if len(head) < 18:
        return False
    dib = int.from_bytes(head[14:18], "little")
    return dib in (12, 16, 40, 52, 56, 64, 108, 124)


def decode_text(data: bytes, *, truncated: bool = False) -> tuple[str, str] | None:
    """(text, encoding) when ``data`` looks like text, else None.

    Tries a BOM, then UTF-8 (a character cut at the end of a truncated read is fine),
    then Windows-1252 / Latin-1 when nearly all characters are printable.
    """
    if not data:
        return "", "utf-8"
    for bom, enc in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            body = data[len(bom) :]
            if enc.startswith("utf-16") and len(body) % 2:
                body = body[:-1]
            try:
                return body.decode(enc.replace("-sig", "")), enc
            except UnicodeDecodeError:
                return None
    if b"\x00" in data:
        return None
    dec = codecs.getincrementaldecoder("utf-8")()
    try:
        text = dec.decode(data, final=not truncated)
        if _printable_ratio(text) >= 0.95:
            return text, "utf-8"
        return None
    except UnicodeDecodeError:
        pass
    for enc in ("cp1252", "latin-1"):
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        if _printable_ratio(text) >= 0.95:
            return text, enc
    return None


def _printable_ratio(text: str) -> float:
    if not text:
        return 1.0
    ok = sum(1 for ch in text if ch.isprintable() or ch in "\t\n\r\f")
    return ok / len(text)


def hexdump(data: bytes, offset: int = 0) -> str:
    """Classic 16-bytes-a-line dump: offset, hex bytes, printable ASCII."""
    lines = []
    for i in range(0, len(data), 16):
        chunk = data[i : i + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        hexes = hexes[:23] + " " + hexes[23:] if len(chunk) > 8 else hexes
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset + i:08x}  {hexes:<48}  |{text}|")
    return "\n".join(lines)


def _message(base: dict, text: str, error: VDInspectError | None = None) -> dict:
    """A text preview that is a message about the entry (not its bytes), with the ``error``
    that made it one, if any."""
    out = dict(base, kind="text", text=text, encoding=None, truncated=False)
    if error is not None:
        out["error"] = str(error)
    return out


def preview_entry(fs: FileSystem, entry: Entry, *, limit: int = 4096) -> dict:
    """A preview of one entry: always ``kind`` ("text", "hex" or "image"), ``name``, ``size``;
    ``damaged`` lists the (offset, length) ranges that could not be read, when there are any.

    text: ``text``, ``encoding``, ``truncated``; hex: ``text`` (the dump), ``data``,
    ``truncated``; image: ``format``, ``data``. An unreadable file is a text preview
    whose ``error`` says why.
    """
    base = dict(name=entry.name, path=entry.path, size=entry.size, deleted=entry.deleted)
    if entry.kind == DIR:
        return _message(base, f"{entry.path or entry.name} is a folder: open it to list it")
    if entry.kind == SYMLINK:
        try:
            target = fs.readlink_entry(entry)
        except VDInspectError as e:
            return _message(base, f"cannot read the link: {e}", e)
        return _message(base, f"symbolic link to {target}")
    try:
        src = fs.content(entry)
        size = src.size
        bad = src.damaged_ranges()
        if bad:  # salvage mode: say which bytes are zeros standing in for unreadable ones
            base["damaged"] = bad
        head = src.read(0, min(size, max(limit, TEXT_LIMIT)))
        fmt = image_format(head)
        if fmt is not None and size <= IMAGE_LIMIT:
            data = head if len(head) == size else src.read(0, size)
            return dict(base, kind="image", format=fmt, data=data)
    except VDInspectError as e:
        return _message(base, f"cannot read: {e}", e)
    if fmt is None:
        text = decode_text(head, truncated=len(head) < size)
        if text is not None:
            return dict(
                base, kind="text", text=text[0], encoding=text[1], truncated=len(head) < size
            )
    shown = head[:limit]
    return dict(base, kind="hex", text=hexdump(shown), data=shown, truncated=len(shown) < size)
