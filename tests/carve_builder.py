"""Files of every carved type, made by real writers (Pillow, zipfile, sqlite3, gzip, bz2,
lzma, wave, system binaries) or, where no writer is at hand, from the specification
(PNG, PDF, MP4): what carving tests hide in images and look for again by sha256."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import random
import shutil
import sqlite3
import struct
import wave
import zipfile
import zlib
from pathlib import Path


def png_from_spec(w: int, h: int, rng: random.Random) -> bytes:
    """A truecolour PNG: signature, IHDR, one IDAT of filtered rows, IEND (ISO 15948)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    raw = b"".join(b"\0" + rng.randbytes(w * 3) for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def pdf_from_spec(text: str) -> bytes:
    """A one-page PDF 1.4: four objects, a classic xref table with their offsets, the
    trailer, startxref and %%EOF (ISO 32000-1, 7.5)."""
    body = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            b"<< /Length %d >>\nstream\n" % len(body) + body + b"\nendstream"]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def mp4_from_spec(rng: random.Random) -> bytes:
    """An ISO BMFF file: ftyp, moov holding an mvhd (version 0), mdat (ISO 14496-12)."""
    def box(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", 8 + len(data)) + kind + data

    mvhd = box(b"mvhd", b"\0\0\0\0" + struct.pack(">IIII", 0, 0, 1000, 5000) + bytes(80))
    return (box(b"ftyp", b"isom\0\0\2\0isomiso2mp41") + box(b"moov", mvhd)
            + box(b"mdat", rng.randbytes(30000)))


def mov_from_spec(rng: random.Random) -> bytes:
    """A classic QuickTime movie, before ftyp existed: wide, mdat, then moov (QuickTime
    File Format: atoms of a 32-bit size and a four-character type)."""
    def atom(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", 8 + len(data)) + kind + data

    mvhd = atom(b"mvhd", b"\0\0\0\0" + struct.pack(">IIII", 0, 0, 600, 3000) + bytes(80))
    return atom(b"wide", b"") + atom(b"mdat", rng.randbytes(20000)) + atom(b"moov", mvhd)


def make_files(folder: Path, seed: int = 1) -> dict[str, bytes]:
    """Write one file of each type into ``folder``; name -> content. None of them holds
    a 4 KiB-aligned block of zeros (mke2fs -d would leave it out as a hole)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    files["b.png"] = png_from_spec(120, 80, rng)
    files["c.pdf"] = pdf_from_spec("carved")
    files["m.mp4"] = mp4_from_spec(rng)
    files["v.mov"] = mov_from_spec(rng)
    try:
        from PIL import Image

        def pic(w, h):
            return Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3))

        b = io.BytesIO()
        pic(200, 150).save(b, "JPEG", quality=85)
        files["a.jpg"] = b.getvalue()
        b = io.BytesIO()  # progressive: several scans, Huffman tables between them
        pic(160, 120).save(b, "JPEG", quality=80, progressive=True)
        files["q.jpg"] = b.getvalue()
        b = io.BytesIO()
        pic(64, 64).convert("P").save(b, "GIF")
        files["g.gif"] = b.getvalue()
        from PIL import features

        if features.check("webp"):  # a RIFF file: RIFF/WEBP with a VP8 chunk
            b = io.BytesIO()
            pic(80, 60).save(b, "WEBP", quality=80)
            files["l.webp"] = b.getvalue()
        b = io.BytesIO()  # Pillow's PDF writer; append=True adds an incremental update
        pic(30, 20).save(b, "PDF")
        pic(20, 30).save(b, "PDF", append=True)
        files["n.pdf"] = b.getvalue()
    except ImportError:
        pass
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("hello.txt", "hello " * 1000)
        z.writestr("r.bin", rng.randbytes(5000))
    files["d.zip"] = b.getvalue()
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>" + rng.randbytes(3000).hex())
    files["w.docx"] = b.getvalue()
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        z.writestr("content.xml", "<office:document-content/>" + rng.randbytes(3000).hex(),
                   compress_type=zipfile.ZIP_DEFLATED)
    files["o.odt"] = b.getvalue()
    db = folder / "e.sqlite"
    con = sqlite3.connect(db)
    con.execute("create table t(a, b)")
    con.executemany("insert into t values (?, ?)", [(i, rng.randbytes(100)) for i in range(300)])
    con.commit()
    con.close()
    files["e.sqlite"] = db.read_bytes()
    data = rng.randbytes(20000) + b"abc" * 10000
    files["f.gz"] = gzip.compress(data)
    files["h.bz2"] = bz2.compress(data)
    files["i.xz"] = lzma.compress(data)
    b = io.BytesIO()
    with wave.open(b, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(rng.randbytes(30001 * 2))
    files["j.wav"] = b.getvalue()
    true = shutil.which("true")
    if true and Path(true).stat().st_size < 1 << 20:
        files["k.elf"] = Path(true).read_bytes()
    try:  # a real Windows program: the launcher pip ships (its image checksum is set)
        import pip

        exe = Path(pip.__file__).parent / "_vendor" / "distlib" / "w64.exe"
        if exe.is_file():
            files["p.exe"] = exe.read_bytes()
    except ImportError:
        pass
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return files


def has_zero_block(data: bytes, block: int = 4096) -> bool:
    """Whether ``data`` holds a whole aligned block of zeros."""
    zero = bytes(block)
    return any(data[i:i + block] == zero for i in range(0, len(data) - block + 1, block))


def write_fake_headers(path: Path, size: int, header: bytes, step: int = 512) -> None:
    """A file of ``size`` bytes with ``header`` at every ``step``: hostile input."""
    one = header + bytes(step - len(header))
    with open(path, "wb") as f:
        for _ in range(size // step):
            f.write(one)
    os.truncate(path, size)
