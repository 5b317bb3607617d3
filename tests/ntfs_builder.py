"""Test helpers for NTFS: real volumes from mkntfs + ntfs-3g, oracles from The Sleuth Kit,
and spec-built patches for what no tool here writes (WOF, EFS flags, damage).

Real volumes: ``mkntfs -F -Q`` on a file, then the ntfs-3g FUSE driver (when it can mount:
root and /dev/fuse) or ``ntfscp`` to fill them. ntfs-3g writes LZNT1-compressed files in a
directory marked compressed, sparse files, named streams (user.* xattrs), reparse points
(``system.ntfs_reparse_data``), DOS names (``system.ntfs_dos_name``), hard links, and frees
records on unlink: all independent of vdinspect.

Spec-built pieces (Linux-NTFS documentation, [MS-XCA], [MS-FSCC]) write MFT records with
correct update sequences through :class:`Volume`, which edits an image file in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

from tests.tools import fls_lines, run, write_sparse  # noqa: F401 (the one way the tests run a tool)

STRIDE = 512


def have(*tools: str) -> bool:
    return all(shutil.which(t) for t in tools)


def mkntfs(path: Path, size: int, *opts: str, label: str = "vdtest") -> Path:
    """A fresh NTFS volume in a file (``mkntfs -F -Q``)."""
    with open(path, "wb") as f:
        f.truncate(size)
    run("mkntfs", "-F", "-Q", "-q", "-L", label, *opts, path)
    return path


@contextlib.contextmanager
def mounted(image: Path, mnt: Path, *opts: str):
    """Mount an NTFS image with the ntfs-3g FUSE driver; unmount on exit."""
    mnt.mkdir(parents=True, exist_ok=True)
    args = ["ntfs-3g", str(image), str(mnt)]
    if opts:
        args += ["-o", ",".join(opts)]
    run(*args)
    try:
        yield mnt
    finally:
        for _ in range(20):
            r = subprocess.run(["fusermount", "-u", str(mnt)], capture_output=True)
            if r.returncode == 0:
                break
            subprocess.run(["sync"])
        else:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


_FUSE_OK: bool | None = None


def fuse_works(tmp: Path) -> bool:
    """Whether ntfs-3g can mount here (needs /dev/fuse and privileges)."""
    global _FUSE_OK
    if _FUSE_OK is None:
        _FUSE_OK = False
        if have("mkntfs", "ntfs-3g", "fusermount") and os.path.exists("/dev/fuse"):
            img = mkntfs(tmp / "probe.img", 8 << 20)
            try:
                with mounted(img, tmp / "probe.mnt") as m:
                    (m / "x").write_bytes(b"x")
                _FUSE_OK = True
            except RuntimeError:
                _FUSE_OK = False
            img.unlink()
    return _FUSE_OK


def symlink_reparse(
    target: str, print_name: str | None = None, relative: bool = True, junction: bool = False
) -> bytes:
    """A reparse buffer ([MS-FSCC] 2.1.2.4 symbolic link / 2.1.2.5 mount point)."""
    sub = target.encode("utf-16-le")
    prn = (print_name if print_name is not None else target).encode("utf-16-le")
    if junction:
        body = (
            struct.pack("<HHHH", 0, len(sub), len(sub) + 2, len(prn))
            + sub
            + b"\0\0"
            + prn
            + b"\0\0"
        )
        tag = 0xA0000003
    else:
        body = (
            struct.pack("<HHHHI", 0, len(sub), len(sub), len(prn), 1 if relative else 0) + sub + prn
        )
        tag = 0xA000000C
    return struct.pack("<IHH", tag, len(body), 0) + body


def data_for(size: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    return rnd.randbytes(size)


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# --- populating a volume through ntfs-3g -------------------------------------------------


def populate_rich(m: Path) -> dict:
    """Fill a mounted volume with the variety the tests compare; returns what was written."""
    expect: dict[str, bytes] = {}

    def put(rel: str, data: bytes) -> None:
        p = m / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        expect[rel] = data

    for i, size in enumerate([0, 1, 100, 700, 1023, 4095, 4096, 4097, 65536, 300_001]):
        put(f"sizes/f{size}.bin", data_for(size, i))
    put("a/b/c/deep.txt", b"deep file\n")
    # POSIX-namespace names that differ only in case (ntfs-3g allows them)
    put("case/Readme.txt", b"mixed case\n")
    put("case/README.TXT", b"upper case\n")
    put("unicode/\u00e9t\u00e9 \u65e5\u672c.txt", b"unicode name")
    # a big directory: INDX allocation with several blocks (a two-level B+ tree)
    for i in range(300):
        put(f"big/entry_{i:04d}_with_a_longish_name.txt", f"{i}\n".encode())
    # hard link
    os.link(m / "sizes/f100.bin", m / "a/hardlink.bin")
    expect["a/hardlink.bin"] = expect["sizes/f100.bin"]
    # named streams (alternate data streams): small (resident) and big (non-resident)
    put("ads.txt", b"main stream\n")
    os.setxattr(m / "ads.txt", "user.small", b"small stream")
    os.setxattr(m / "ads.txt", "user.big", data_for(20000, 77))
    expect["ads.txt:small"] = b"small stream"
    expect["ads.txt:big"] = data_for(20000, 77)
    # sparse file: data, a hole of 1 MiB, data
    with open(m / "sparse.bin", "wb") as f:
        f.write(b"A" * 5000)
        f.seek((1 << 20) + 8192)
        f.write(b"Z" * 3000)
    expect["sparse.bin"] = b"A" * 5000 + bytes((1 << 20) + 8192 - 5000) + b"Z" * 3000
    # compressed directory: ntfs-3g compresses new files with LZNT1
    (m / "comp").mkdir()
    attrib = struct.unpack("<I", os.getxattr(m / "comp", "system.ntfs_attrib"))[0]
    os.setxattr(m / "comp", "system.ntfs_attrib", struct.pack("<I", attrib | 0x800))
    put(
        "comp/text.txt",
        b"".join(b"line %d of a compressible text file\n" % i for i in range(20000)),
    )
    put("comp/random.bin", data_for(70000, 5))
    put("comp/mixed.bin", b"\0" * 100000 + data_for(30000, 6) + b"abc" * 30000)
    # reparse points written by ntfs-3g from raw buffers
    put("target.txt", b"symlink target\n")
    (m / "rel_link").write_bytes(b"")
    os.setxattr(m / "rel_link", "system.ntfs_reparse_data", symlink_reparse("target.txt"))
    (m / "abs_link").write_bytes(b"")
    os.setxattr(
        m / "abs_link",
        "system.ntfs_reparse_data",
        symlink_reparse(
            "\\??\\C:\\Windows\\notepad.exe", "C:\\Windows\\notepad.exe", relative=False
        ),
    )
    (m / "junction").mkdir()
    os.setxattr(
        m / "junction",
        "system.ntfs_reparse_data",
        symlink_reparse("\\??\\C:\\Users", "C:\\Users", junction=True),
    )
    (m / "other_tag").write_bytes(b"")
    os.setxattr(
        m / "other_tag",
        "system.ntfs_reparse_data",
        struct.pack("<IHH", 0x8000001B, 8, 0) + b"appexec!",
    )
    # a long name with a DOS 8.3 name
    put("Long File Name.txt", b"long\n")
    os.setxattr(m / "Long File Name.txt", "system.ntfs_dos_name", b"LONGFI~1.TXT")
    # many named streams: the record overflows and gets an $ATTRIBUTE_LIST
    put("many_streams.txt", b"base\n")
    for i in range(60):
        val = data_for(200, 1000 + i)
        os.setxattr(m / "many_streams.txt", f"user.s{i:02d}", val)
        expect[f"many_streams.txt:s{i:02d}"] = val
    # fragmented files: write two files in alternating pieces
    with open(m / "frag1.bin", "wb") as f1, open(m / "frag2.bin", "wb") as f2:
        for i in range(12):
            f1.write(data_for(8192, 300 + i))
            f1.flush()
            os.fsync(f1.fileno())
            f2.write(data_for(8192, 400 + i))
            f2.flush()
            os.fsync(f2.fileno())
    expect["frag1.bin"] = b"".join(data_for(8192, 300 + i) for i in range(12))
    expect["frag2.bin"] = b"".join(data_for(8192, 400 + i) for i in range(12))
    # a fragmented file with runs going backwards (negative LCN deltas): fill a sparse file
    # from its end, writing a small file between the pieces
    frag = bytearray()
    (m / "between").mkdir()
    with open(m / "fragmented.bin", "wb") as f:
        f.truncate(200_000)
        for off in reversed(range(0, 200_000, 16384)):
            piece = data_for(min(16384, 200_000 - off), 600 + off)
            f.seek(off)
            f.write(piece)
            f.flush()
            os.fsync(f.fileno())
            (m / f"between/x{off}").write_bytes(b"y" * 5000)
    for off in range(0, 200_000, 16384):
        frag += data_for(min(16384, 200_000 - off), 600 + off)
    expect["fragmented.bin"] = bytes(frag)
    # deleted files: a file in a live directory, and a whole directory
    put("gone/keep.txt", b"kept\n")
    put("gone/deleted.bin", data_for(50000, 9))
    put("gone/small_deleted.txt", b"small and resident\n")
    put("trash/d1.txt", b"in a deleted dir\n")
    put("trash/sub/d2.bin", data_for(9000, 10))
    os.unlink(m / "gone/deleted.bin")
    os.unlink(m / "gone/small_deleted.txt")
    shutil.rmtree(m / "trash")
    deleted = {
        "gone/deleted.bin": expect.pop("gone/deleted.bin"),
        "gone/small_deleted.txt": expect.pop("gone/small_deleted.txt"),
        "trash/d1.txt": expect.pop("trash/d1.txt"),
        "trash/sub/d2.bin": expect.pop("trash/sub/d2.bin"),
    }
    return {"files": expect, "deleted": deleted}


# --- The Sleuth Kit oracles ----------------------------------------------------------------

def fls(
    image: Path, offset_sectors: int | None = None, sector_size: int | None = None
) -> list[dict]:
    """``fls -r -p`` rows: type, deleted, addr (e.g. "64-128-2"), path."""
    args = ["fls", "-r", "-p"]
    if offset_sectors:
        args += ["-o", str(offset_sectors)]
    if sector_size:
        args += ["-b", str(sector_size)]
    return [{k: r[k] for k in ("dtype", "mtype", "deleted", "addr", "realloc", "path")}
            for r in fls_lines(run(*args, image, check=False))]


def icat(image: Path, addr: str, offset_sectors: int | None = None) -> bytes:
    args = ["icat"]
    if offset_sectors:
        args += ["-o", str(offset_sectors)]
    r = subprocess.run([*args, str(image), addr], capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode(errors="replace"))
    return r.stdout


def istat(image: Path, addr: str | int, offset_sectors: int | None = None) -> str:
    args = ["istat"]
    if offset_sectors:
        args += ["-o", str(offset_sectors)]
    return run(*args, image, addr, check=False)


# --- spec-built edits ----------------------------------------------------------------------


def fixup_encode(rec: bytearray, usn: int | None = None) -> bytearray:
    """Write the update sequence into a record/INDX block whose USA header is set."""
    usa_off, usa_count = struct.unpack_from("<HH", rec, 4)
    if usn is None:
        usn = (struct.unpack_from("<H", rec, usa_off)[0] + 1) & 0xFFFF or 1
    struct.pack_into("<H", rec, usa_off, usn)
    for i in range(1, usa_count):
        end = i * STRIDE
        rec[usa_off + 2 * i : usa_off + 2 * i + 2] = rec[end - 2 : end]
        struct.pack_into("<H", rec, end - 2, usn)
    return rec


def fixup_decode(rec: bytearray) -> bytearray:
    usa_off, usa_count = struct.unpack_from("<HH", rec, 4)
    for i in range(1, usa_count):
        end = i * STRIDE
        rec[end - 2 : end] = rec[usa_off + 2 * i : usa_off + 2 * i + 2]
    return rec


def encode_runlist(runs: list[tuple[int | None, int]]) -> bytes:
    """Mapping pairs for [(lcn or None, clusters)] (absolute LCNs; deltas computed here)."""
    out = bytearray()
    prev = 0
    for lcn, length in runs:
        lb = length.to_bytes((length.bit_length() + 8) // 8, "little")
        if lcn is None:
            out += bytes([len(lb)]) + lb
            continue
        delta = lcn - prev
        n = 1
        while not -(1 << (8 * n - 1)) <= delta < (1 << (8 * n - 1)):
            n += 1
        out += bytes([len(lb) | (n << 4)]) + lb + delta.to_bytes(n, "little", signed=True)
        prev = lcn
    return bytes(out) + b"\0"


class Volume:
    """Direct edits of an NTFS image file (records found through the boot sector)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = Path(path)
        self.base = offset
        bs = self.read(0, 512)
        self.ssize = struct.unpack_from("<H", bs, 11)[0]
        spc = bs[13]
        self.cs = self.ssize * (spc if spc <= 0x80 else 1 << (256 - spc))
        cpr = struct.unpack_from("<b", bs, 0x40)[0]
        self.rs = cpr * self.cs if cpr > 0 else 1 << -cpr
        self.total = struct.unpack_from("<Q", bs, 0x28)[0]
        self.mft = struct.unpack_from("<Q", bs, 0x30)[0] * self.cs
        self.mirr = struct.unpack_from("<Q", bs, 0x38)[0] * self.cs
        self._map = None

    def read(self, off: int, n: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(self.base + off)
            return f.read(n)

    def write(self, off: int, data: bytes) -> None:
        with open(self.path, "r+b") as f:
            f.seek(self.base + off)
            f.write(data)

    def mft_map(self) -> list[tuple[int, int, int]]:
        """(first record, records, volume offset) pieces of $MFT from record 0's runlist."""
        if self._map is None:
            rec = fixup_decode(bytearray(self.read(self.mft, self.rs)))
            a = self.find_attr(rec, 0x80)
            mp = struct.unpack_from("<H", rec, a + 0x20)[0]
            length = struct.unpack_from("<I", rec, a + 4)[0]
            runs = decode_runs(bytes(rec[a + mp : a + length]))
            pieces = []
            vcn = 0
            for lcn, n in runs:
                pieces.append((vcn * self.cs // self.rs, n * self.cs // self.rs, lcn * self.cs))
                vcn += n
            self._map = pieces
        return self._map

    def record_offset(self, n: int) -> int:
        for first, count, off in self.mft_map():
            if first <= n < first + count:
                return off + (n - first) * self.rs
        raise KeyError(n)

    def get(self, n: int) -> bytearray:
        """Record ``n`` with its fixups undone (as it is in memory)."""
        return fixup_decode(bytearray(self.read(self.record_offset(n), self.rs)))

    def put(self, n: int, rec: bytearray, usn: int | None = None) -> None:
        """Write record ``n`` back with a fresh update sequence."""
        self.write(self.record_offset(n), bytes(fixup_encode(bytearray(rec), usn)))

    @staticmethod
    def find_attr(rec: bytearray, atype: int, nth: int = 0) -> int:
        off = struct.unpack_from("<H", rec, 0x14)[0]
        seen = 0
        while True:
            t, length = struct.unpack_from("<II", rec, off)
            if t == 0xFFFFFFFF:
                raise KeyError(atype)
            if t == atype:
                if seen == nth:
                    return off
                seen += 1
            off += length

    @staticmethod
    def attrs(rec: bytearray) -> list[tuple[int, int, int]]:
        """(type, offset, length) of each attribute record."""
        out = []
        off = struct.unpack_from("<H", rec, 0x14)[0]
        while True:
            t, length = struct.unpack_from("<II", rec, off)
            if t == 0xFFFFFFFF:
                return out
            out.append((t, off, length))
            off += length

    @staticmethod
    def insert_attr(rec: bytearray, attr: bytes) -> None:
        """Append an attribute record (before the end marker), keeping types in order."""
        used = struct.unpack_from("<I", rec, 0x18)[0]
        atype = struct.unpack_from("<I", attr, 0)[0]
        pos = struct.unpack_from("<H", rec, 0x14)[0]
        while True:
            t, length = struct.unpack_from("<II", rec, pos)
            if t == 0xFFFFFFFF or t > atype:
                break
            pos += length
        if used + len(attr) > len(rec):
            raise ValueError("record full")
        rec[pos + len(attr) : used + len(attr)] = rec[pos:used]
        rec[pos : pos + len(attr)] = attr
        struct.pack_into("<I", rec, 0x18, used + len(attr))

    @staticmethod
    def remove_attr(rec: bytearray, off: int) -> None:
        used = struct.unpack_from("<I", rec, 0x18)[0]
        length = struct.unpack_from("<I", rec, off + 4)[0]
        rec[off : used - length] = rec[off + length : used]
        rec[used - length : used] = bytes(length)
        struct.pack_into("<I", rec, 0x18, used - length)


def decode_runs(mp: bytes) -> list[tuple[int | None, int]]:
    out = []
    pos = 0
    lcn = 0
    while mp[pos]:
        h = mp[pos]
        ls, os_ = h & 15, h >> 4
        n = int.from_bytes(mp[pos + 1 : pos + 1 + ls], "little")
        if os_:
            lcn += int.from_bytes(mp[pos + 1 + ls : pos + 1 + ls + os_], "little", signed=True)
            out.append((lcn, n))
        else:
            out.append((None, n))
        pos += 1 + ls + os_
    return out


def resident_attr(
    atype: int, value: bytes, name: str = "", instance: int = 0, flags: int = 0
) -> bytes:
    """A resident attribute record (header 24 bytes, name, value, padded to 8)."""
    nm = name.encode("utf-16-le")
    name_off = 24
    value_off = (name_off + len(nm) + 7) & ~7
    length = (value_off + len(value) + 7) & ~7
    out = bytearray(length)
    struct.pack_into(
        "<IIBBHHHIHBB",
        out,
        0,
        atype,
        length,
        0,
        len(name),
        name_off,
        flags,
        instance,
        len(value),
        value_off,
        0,
        0,
    )
    out[name_off : name_off + len(nm)] = nm
    out[value_off : value_off + len(value)] = value
    return bytes(out)


def nonresident_attr(
    atype: int,
    runs: list[tuple[int | None, int]],
    size: int,
    cs: int,
    name: str = "",
    instance: int = 0,
    flags: int = 0,
    compression_unit: int = 0,
    lowest_vcn: int = 0,
    initialized: int | None = None,
) -> bytes:
    """A non-resident attribute record with its runlist."""
    nm = name.encode("utf-16-le")
    head = 72 if (compression_unit or flags & 0x8001) else 64
    name_off = head
    mp_off = (name_off + len(nm) + 7) & ~7
    mp = encode_runlist(runs)
    length = (mp_off + len(mp) + 7) & ~7
    clusters = sum(n for _l, n in runs)
    alloc = clusters * cs
    out = bytearray(length)
    struct.pack_into("<IIBBHHH", out, 0, atype, length, 1, len(name), name_off, flags, instance)
    struct.pack_into(
        "<QQHB5xQQQ",
        out,
        16,
        lowest_vcn,
        lowest_vcn + clusters - 1,
        mp_off,
        compression_unit,
        alloc,
        size,
        size if initialized is None else initialized,
    )
    if head == 72:
        struct.pack_into("<Q", out, 64, sum(n for lcn, n in runs if lcn is not None) * cs)
    out[name_off : name_off + len(nm)] = nm
    out[mp_off : mp_off + len(mp)] = mp
    return bytes(out)


# --- XPRESS Huffman encoder ([MS-XCA] 2.1), for WOF test files -------------------------------


def _huffman_lengths(freqs: list[int], limit: int = 15) -> list[int]:
    """Code lengths (<= limit) for symbol frequencies (package-merge free: heap + clamp)."""
    import heapq

    syms = [(f, i) for i, f in enumerate(freqs) if f]
    lengths = [0] * len(freqs)
    if len(syms) == 1:
        lengths[syms[0][1]] = 1
        return lengths
    heap = [(f, i, [i]) for f, i in syms]
    heapq.heapify(heap)
    counter = len(freqs)
    while len(heap) > 1:
        f1, _a, s1 = heapq.heappop(heap)
        f2, _b, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (f1 + f2, counter, s1 + s2))
        counter += 1
    # clamp to the limit, then repair the Kraft sum by lengthening the shortest codes
    for i, n in enumerate(lengths):
        if n > limit:
            lengths[i] = limit
    while sum(2.0**-n for n in lengths if n) > 1.0:
        i = max((i for i, n in enumerate(lengths) if 0 < n < limit), key=lambda i: lengths[i])
        lengths[i] += 1
    return lengths


def _canonical_codes(lengths: list[int]) -> list[int]:
    codes = [0] * len(lengths)
    code = 0
    for length in range(1, 16):
        for sym, n in enumerate(lengths):
            if n == length:
                codes[sym] = code
                code += 1
        code <<= 1
    return codes


def xpress_huffman_compress(data: bytes) -> bytes:
    """Compress ``data`` (at most 64 KiB) as one LZ77+Huffman block (greedy matching)."""
    assert len(data) <= 65536
    tokens = []  # (symbol, extra length bytes, distance bits count, distance low bits)
    pos = 0
    n = len(data)
    table: dict[bytes, list[int]] = {}
    while pos < n:
        best_len = best_dist = 0
        if pos + 3 <= n:
            key = data[pos : pos + 3]
            for cand in reversed(table.get(key, [])[-16:]):
                dist = pos - cand
                if dist > 65535:
                    continue
                length = 0
                while (
                    pos + length < n
                    and data[cand + length] == data[pos + length]
                    and length < 65538
                ):
                    length += 1
                if length > best_len:
                    best_len, best_dist = length, dist
            table.setdefault(key, []).append(pos)
        if best_len >= 3:
            dbits = best_dist.bit_length() - 1
            mlen = best_len - 3
            extra = b""
            if mlen >= 15:
                if mlen - 15 < 255:
                    extra = bytes([mlen - 15])
                else:
                    extra = b"\xff" + struct.pack("<H", best_len - 3)
                code = 15
            else:
                code = mlen
            tokens.append((256 + (dbits << 4) + code, extra, dbits, best_dist - (1 << dbits)))
            for p in range(pos + 1, min(pos + best_len, n - 2)):
                table.setdefault(data[p : p + 3], []).append(p)
            pos += best_len
        else:
            tokens.append((data[pos], b"", 0, 0))
            pos += 1
    tokens.append((256, b"", 0, 0))  # end of stream symbol
    freqs = [0] * 512
    for t in tokens:
        freqs[t[0]] += 1
    lengths = _huffman_lengths(freqs)
    codes = _canonical_codes(lengths)
    out = bytearray()
    for i in range(0, 512, 2):
        out.append(lengths[i] | (lengths[i + 1] << 4))
    # The decoder keeps 32 bits buffered: words 0 and 1 are read first, and word j (j >= 2)
    # right after the consumed bit count passes 16 * (j - 1). The extra length bytes of a
    # match are read from the input position after its symbol (and that refill), before
    # its distance bits. Emit words and bytes in exactly that order.
    bits: list[int] = []
    for sym, _extra, dbits, dlow in tokens:
        code, length = codes[sym], lengths[sym]
        bits.extend((code >> (length - 1 - k)) & 1 for k in range(length))
        if dbits:
            bits.extend((dlow >> (dbits - 1 - k)) & 1 for k in range(dbits))
    bits.extend([0] * (32 + (-len(bits)) % 16))
    nwords = len(bits) // 16
    word_vals = []
    for k in range(nwords):
        v = 0
        for b in bits[16 * k : 16 * k + 16]:
            v = (v << 1) | b
        word_vals.append(v)
    order: list[tuple[str, object]] = [("w", 0), ("w", 1)]
    next_word = 2
    pos_bits = 0
    for sym, extra, dbits, _d in tokens:
        pos_bits += lengths[sym]
        while next_word < nwords and pos_bits > 16 * (next_word - 1):
            order.append(("w", next_word))
            next_word += 1
        if extra:
            order.append(("b", extra))
        pos_bits += dbits
        while next_word < nwords and pos_bits > 16 * (next_word - 1):
            order.append(("w", next_word))
            next_word += 1
    while next_word < nwords:
        order.append(("w", next_word))
        next_word += 1
    for kind, v in order:
        if kind == "w":
            out += struct.pack("<H", word_vals[v])
        else:
            out += v
    return bytes(out)


def wof_stream(data: bytes, chunk: int = 4096) -> bytes:
    """The WofCompressedData stream for ``data`` (XPRESS, ``chunk``-byte chunks)."""
    chunks = []
    for i in range(0, len(data), chunk):
        piece = data[i : i + chunk]
        comp = xpress_huffman_compress(piece)
        chunks.append(comp if len(comp) < len(piece) else piece)
    offs = []
    pos = 0
    for c in chunks[:-1]:
        pos += len(c)
        offs.append(pos)
    return b"".join(struct.pack("<I", o) for o in offs) + b"".join(chunks)


# --- WIM resources made by wimlib (wimcapture): the same chunk format as WOF ----------------


def wim_resource(path: Path, size: int) -> tuple[int, bytes]:
    """(compression flags, raw resource bytes) of the blob of ``size`` bytes in a WIM.

    WIM header: "MSWIM\\0\\0\\0", flags at 16, chunk size at 20, the blob table's resource
    header at 48 (7-byte stored size, flags byte, offset u64, original size u64); blob table
    entries are 50 bytes: that resource header, part number u16, reference count u32,
    SHA-1. A non-solid compressed resource is a chunk offset table then the chunks.
    """
    raw = Path(path).read_bytes()
    assert raw[:8] == b"MSWIM\0\0\0"
    flags, chunk = struct.unpack_from("<II", raw, 16)
    tsize = int.from_bytes(raw[48:55], "little")
    toff = struct.unpack_from("<Q", raw, 56)[0]
    for off in range(toff, toff + tsize - 49, 50):
        stored = int.from_bytes(raw[off : off + 7], "little")
        roff, orig = struct.unpack_from("<QQ", raw, off + 8)
        if orig == size:
            return flags, raw[roff : roff + stored]
    raise KeyError(size)


# --- whole trees written from the specification (hostile-image tests) ------------------------

FT_2020 = (1577836800 + 11644473600) * 10_000_000  # 2020-01-01 as a FILETIME
REC_IN_USE, REC_DIR = 0x01, 0x02
FA_ARCHIVE, FA_SPARSE, FA_REPARSE, FA_COMPRESSED = 0x20, 0x200, 0x400, 0x800
FA_DIR_INDEX = 0x10000000  # $FILE_NAME flag of a directory (DUP_FILE_NAME_INDEX_PRESENT)
NS_POSIX = 0


def std_info_value(attributes: int) -> bytes:
    """$STANDARD_INFORMATION (NTFS 3.x, 72 bytes): four times, attributes, ids, usn."""
    return struct.pack("<QQQQIIIIIIQQ", *(FT_2020,) * 4, attributes, 0, 0, 0, 0, 0, 0, 0)


def file_name_value(
    parent: int, parent_seq: int, name: str, attributes: int, size: int = 0, ns: int = NS_POSIX
) -> bytes:
    """$FILE_NAME: parent reference, four times, sizes, attributes, name (UTF-16)."""
    units = name.encode("utf-16-le", "surrogatepass")
    assert len(units) // 2 <= 255, "a $FILE_NAME holds at most 255 UTF-16 units"
    head = struct.pack(
        "<QQQQQQQIIBB",
        parent | parent_seq << 48,
        *(FT_2020,) * 4,
        (size + 4095) & ~4095,
        size,
        attributes,
        0,
        len(units) // 2,
        ns,
    )
    return head + units


def index_entry(ref: int, seq: int, key: bytes) -> bytes:
    """A $I30 index entry: file reference, lengths, flags 0, the $FILE_NAME key."""
    length = (16 + len(key) + 7) & ~7
    return struct.pack("<QHHI", ref | seq << 48, length, len(key), 0) + key.ljust(
        length - 16, b"\0"
    )


def index_end(child_vcn: int | None = None) -> bytes:
    """The last entry of an index node (flag 2), with a sub-node VCN when flag 1 is set."""
    if child_vcn is None:
        return struct.pack("<QHHI", 0, 16, 0, 2)
    return struct.pack("<QHHIQ", 0, 24, 0, 3, child_vcn)


def collation_key(name: str) -> list[int]:
    """COLLATION_FILE_NAME for the names used here: UTF-16 units of the upper-cased name."""
    return list(
        struct.unpack(
            f"<{len(name.encode('utf-16-le', 'surrogatepass')) // 2}H",
            name.upper().encode("utf-16-le", "surrogatepass"),
        )
    )


class Tree:
    """Files, directories, links and loops written into a fresh ``mkntfs`` volume by hand.

    The image is edited in memory and written back by :meth:`save`. ``$MFT`` is grown to
    ``records`` records (new runs taken from ``$Bitmap``, $MFT's own bitmap and the
    ``$MFTMirr`` copy of record 0 updated); new records start at the first one past the
    old end. New top-level names go into the root's first INDX block (mkntfs makes one
    leaf block), so they must sort after the system files (any name starting with a
    letter does). Every other directory gets its own index: resident when it fits in the
    record, else one INDX block.
    """

    ROOT = 5

    def __init__(self, path: Path, records: int) -> None:
        self.path = Path(path)
        self.vol = Volume(path)
        self.img = bytearray(self.path.read_bytes())
        self.cs, self.rs = self.vol.cs, self.vol.rs
        root = self._get_at(self.vol.record_offset(self.ROOT))
        a = Volume.find_attr(root, 0x90)
        voff = struct.unpack_from("<H", root, a + 0x14)[0]
        self.block = struct.unpack_from("<I", root, a + voff + 8)[0]
        self.bitmap_runs = self._runs_of(self._get_at(self.vol.record_offset(6)), 0x80)
        self.bitmap = bytearray(self._read_runs(self.bitmap_runs))
        self.clusters = self.vol.total * self.vol.ssize // self.cs
        self._grow_mft(records)
        self.next = self.first_new
        self.records: dict[int, dict] = {}
        self.dirs: dict[int, list[tuple[str, int]]] = {self.ROOT: []}

    # -- low level: records in memory ----------------------------------------------------
    def _get_at(self, off: int) -> bytearray:
        return fixup_decode(bytearray(self.img[off : off + self.rs]))

    def _put_at(self, off: int, rec: bytearray) -> None:
        self.img[off : off + len(rec)] = fixup_encode(bytearray(rec))

    def _runs_of(self, rec: bytearray, atype: int) -> list[tuple[int | None, int]]:
        a = Volume.find_attr(rec, atype)
        mp = struct.unpack_from("<H", rec, a + 0x20)[0]
        length = struct.unpack_from("<I", rec, a + 4)[0]
        return decode_runs(bytes(rec[a + mp : a + length]))

    def _read_runs(self, runs) -> bytes:
        return b"".join(bytes(self.img[lcn * self.cs : (lcn + n) * self.cs]) for lcn, n in runs)

    def alloc(self, clusters: int) -> int:
        """First fit in $Bitmap; the clusters are marked used. Returns the first LCN."""
        bits = self.bitmap
        run = 0
        for lcn in range(self.clusters):
            if bits[lcn // 8] >> (lcn % 8) & 1:
                run = 0
                continue
            run += 1
            if run == clusters:
                first = lcn - clusters + 1
                for c in range(first, lcn + 1):
                    bits[c // 8] |= 1 << (c % 8)
                return first
        raise ValueError(f"no {clusters} free clusters")

    def _grow_mft(self, records: int) -> None:
        off0 = self.vol.record_offset(0)
        rec0 = self._get_at(off0)
        a = Volume.find_attr(rec0, 0x80)
        old_size = struct.unpack_from("<Q", rec0, a + 0x30)[0]
        inst = struct.unpack_from("<H", rec0, a + 0x0E)[0]
        runs = self._runs_of(rec0, 0x80)
        have = sum(n for _l, n in runs)
        need = -(-records * self.rs // self.cs)
        self.first_new = old_size // self.rs + 1  # keep a spare record after the old end
        if need > have:
            runs = runs + [(self.alloc(need - have), need - have)]
        Volume.remove_attr(rec0, a)
        Volume.insert_attr(
            rec0, nonresident_attr(0x80, runs, need * self.cs, self.cs, instance=inst)
        )
        b = Volume.find_attr(rec0, 0xB0)  # $MFT's own bitmap: data size in bytes
        nbytes = (-(-records // 8) + 7) & ~7
        ((blcn, bn),) = self._runs_of(rec0, 0xB0)
        assert nbytes <= bn * self.cs
        struct.pack_into("<QQ", rec0, b + 0x30, nbytes, nbytes)
        self.mft_bitmap_at = blcn * self.cs
        self._put_at(off0, rec0)
        mirr = self.vol.mirr
        self.img[mirr : mirr + self.rs] = self.img[off0 : off0 + self.rs]
        self.mft_runs = runs
        self.total_records = need * self.cs // self.rs

    def record_offset(self, n: int) -> int:
        vcn_byte = n * self.rs
        pos = 0
        for lcn, count in self.mft_runs:
            if vcn_byte < pos + count * self.cs:
                return lcn * self.cs + vcn_byte - pos
            pos += count * self.cs
        raise KeyError(n)

    # -- building -------------------------------------------------------------------
    def _new(self, kind: str, parent: int, name: str, **kw) -> int:
        n = self.next
        assert n < self.total_records, "grow the MFT: more records are needed"
        self.next += 1
        self.records[n] = dict(kind=kind, names=[(parent, name)], **kw)
        if kind == "dir":
            self.dirs[n] = []
        self._index(parent, name, n)
        return n

    def _index(self, parent: int, name: str, n: int) -> None:
        self.dirs[parent].append((name, n))

    def mkdir(self, parent: int, name: str, reparse: bytes | None = None) -> int:
        """A directory (a junction when ``reparse`` is given); returns its record number."""
        return self._new("dir", parent, name, reparse=reparse)

    def add_file(
        self,
        parent: int,
        name: str,
        data: bytes = b"",
        *,
        size: int | None = None,
        sparse_to: int | None = None,
        compressed: bool = False,
        reparse: bytes | None = None,
        tail: bytes = b"",
    ) -> int:
        """A file. ``data`` up to 600 bytes stays resident; longer data gets clusters.
        ``size`` claims a data size the runlist does not cover; ``sparse_to`` appends a
        sparse run up to that size (a sparse file), then ``tail`` (whole clusters) ends the
        file; ``compressed`` marks the attribute LZNT1-compressed (the data must be whole
        16-cluster units, stored as is)."""
        return self._new(
            "file",
            parent,
            name,
            data=data,
            size=size,
            sparse_to=sparse_to,
            compressed=compressed,
            reparse=reparse,
            tail=tail,
        )

    def add_name(self, n: int, parent: int, name: str) -> None:
        """A hard link: a second $FILE_NAME in the record and an index entry in ``parent``."""
        self.records[n]["names"].append((parent, name))
        self._index(parent, name, n)

    def link(self, parent: int, name: str, target: int) -> None:
        """An index entry only (the record does not know): e.g. a directory loop."""
        self._index(parent, name, target)

    # -- writing ----------------------------------------------------------------------
    def _data_attr(self, r: dict) -> tuple[bytes, int, int]:
        """($DATA attribute, data size, extra $STANDARD_INFORMATION attributes)."""
        data = r["data"]
        if len(data) <= 600 and r["size"] is None and r["sparse_to"] is None:
            return resident_attr(0x80, data, instance=2), len(data), 0
        clusters = -(-len(data) // self.cs)
        lcn = self.alloc(clusters) if clusters else None
        pos = lcn * self.cs if clusters else 0
        self.img[pos : pos + len(data)] = data
        runs: list[tuple[int | None, int]] = [(lcn, clusters)] if clusters else []
        size = len(data)
        flags = attrs = 0
        unit = 0
        if r["sparse_to"] is not None:
            tail = r["tail"]
            assert len(tail) % self.cs == 0
            gap = -(-r["sparse_to"] // self.cs) - clusters - len(tail) // self.cs
            runs.append((None, gap))
            if tail:
                t = self.alloc(len(tail) // self.cs)
                self.img[t * self.cs : t * self.cs + len(tail)] = tail
                runs.append((t, len(tail) // self.cs))
            size = r["sparse_to"]
            flags, attrs = 0x8000, FA_SPARSE
        if r["compressed"]:
            assert clusters % 16 == 0
            flags, attrs, unit = 0x0001, FA_COMPRESSED, 4
        if r["size"] is not None:
            size = r["size"]
        attr = bytearray(
            nonresident_attr(
                0x80, runs, size, self.cs, instance=2, flags=flags, compression_unit=unit
            )
        )
        # allocated size: the whole runlist (sparse runs count), at least the data size
        alloc = max(sum(n for _l, n in runs) * self.cs, (size + self.cs - 1) // self.cs * self.cs)
        if r["size"] is not None:  # the lie: a size (and allocation) beyond the runs
            alloc = (size + self.cs - 1) // self.cs * self.cs
        struct.pack_into("<Q", attr, 0x28, alloc)
        return bytes(attr), size, attrs

    def _index_attrs(self, n: int) -> list[bytes]:
        """$INDEX_ROOT (+ $INDEX_ALLOCATION and $BITMAP) of directory ``n``."""
        entries = self._sorted_entries(n)
        head = struct.pack("<IIIB3x", 0x30, 1, self.block, max(1, self.block // self.cs))
        if len(entries) <= 420:
            body = entries + index_end()
            root = head + struct.pack("<IIIB3x", 16, 16 + len(body), 16 + len(body), 0) + body
            return [resident_attr(0x90, root, "$I30", instance=3)]
        assert 0x40 + len(entries) + 16 <= self.block, "one INDX block is all this builds"
        lcn = self.alloc(max(1, self.block // self.cs))
        blk = bytearray(self.block)
        usa = self.block // STRIDE + 1
        struct.pack_into("<4sHHQQ", blk, 0, b"INDX", 0x28, usa, 0, 0)
        body = entries + index_end()
        struct.pack_into("<IIIB3x", blk, 0x18, 0x28, 0x28 + len(body), self.block - 0x18, 0)
        blk[0x40 : 0x40 + len(body)] = body
        struct.pack_into("<H", blk, 0x28, 1)
        self.img[lcn * self.cs : lcn * self.cs + self.block] = fixup_encode(blk)
        end = index_end(0)
        root = head + struct.pack("<IIIB3x", 16, 16 + len(end), 16 + len(end), 1) + end
        alloc = nonresident_attr(
            0xA0,
            [(lcn, max(1, self.block // self.cs))],
            self.block,
            self.cs,
            name="$I30",
            instance=4,
        )
        return [
            resident_attr(0x90, root, "$I30", instance=3),
            alloc,
            resident_attr(0xB0, b"\x01" + bytes(7), "$I30", instance=5),
        ]

    def _sorted_entries(self, n: int) -> bytes:
        """Directory ``n``'s index entries in collation order."""
        keyed = [(collation_key(name), self._entry(n, name, ref)) for name, ref in self.dirs[n]]
        return b"".join(e for _k, e in sorted(keyed, key=lambda t: t[0]))

    def _fn_attrs(self, n: int) -> int:
        r = self.records[n]
        a = FA_DIR_INDEX if r["kind"] == "dir" else FA_ARCHIVE
        return a | (FA_REPARSE if r.get("reparse") else 0)

    def _entry(self, parent: int, name: str, ref: int) -> bytes:
        size = self.records.get(ref, {}).get("_size", 0)
        attrs = self._fn_attrs(ref) if ref in self.records else FA_DIR_INDEX
        return index_entry(
            ref,
            1 if ref >= self.first_new else ref,
            file_name_value(parent, 5 if parent == self.ROOT else 1, name, attrs, size),
        )

    def _write_record(self, n: int) -> None:
        r = self.records[n]
        attrs: list[bytes] = []
        flags = REC_IN_USE
        si_attrs = self._fn_attrs(n) & ~FA_DIR_INDEX
        if r["kind"] == "dir":
            flags |= REC_DIR
            more = self._index_attrs(n)
        else:
            data, r["_size"], extra = self._data_attr(r)
            si_attrs |= extra
            more = [data]
        attrs.append(resident_attr(0x10, std_info_value(si_attrs), instance=0))
        for i, (parent, name) in enumerate(r["names"]):
            fn = bytearray(
                resident_attr(
                    0x30,
                    file_name_value(
                        parent,
                        5 if parent == self.ROOT else 1,
                        name,
                        self._fn_attrs(n),
                        r.get("_size", 0),
                    ),
                    instance=10 + i,
                )
            )
            fn[0x16] = 1  # resident flag: indexed
            attrs.append(bytes(fn))
        attrs += more
        if r.get("reparse"):
            attrs.append(resident_attr(0xC0, r["reparse"], instance=6))
        rec = bytearray(self.rs)
        usa = self.rs // STRIDE + 1
        body = b"".join(attrs) + struct.pack("<II", 0xFFFFFFFF, 0)
        assert 0x38 + len(body) <= self.rs, f"record {n} overflows"
        struct.pack_into(
            "<4sHHQHHHHIIQHHI",
            rec,
            0,
            b"FILE",
            0x30,
            usa,
            0,
            1,
            len(r["names"]),
            0x38,
            flags,
            0x38 + len(body),
            self.rs,
            0,
            20,
            0,
            n,
        )
        struct.pack_into("<H", rec, 0x30, 1)
        rec[0x38 : 0x38 + len(body)] = body
        self._put_at(self.record_offset(n), rec)
        bm = self.mft_bitmap_at
        self.img[bm + n // 8] |= 1 << (n % 8)

    def _add_to_root(self) -> None:
        rec5 = self._get_at(self.record_offset(self.ROOT))
        ((lcn, _n),) = self._runs_of(rec5, 0xA0)
        off = lcn * self.cs
        blk = fixup_decode(bytearray(self.img[off : off + self.block]))
        eoff, ilen, _al = struct.unpack_from("<III", blk, 0x18)
        pos = 0x18 + eoff
        while not struct.unpack_from("<I", blk, pos + 12)[0] & 2:
            pos += struct.unpack_from("<H", blk, pos + 8)[0]
        new = self._sorted_entries(self.ROOT)
        end = 0x18 + ilen
        assert end + len(new) <= self.block
        blk[pos + len(new) : end + len(new)] = blk[pos:end]
        blk[pos : pos + len(new)] = new
        struct.pack_into("<I", blk, 0x1C, ilen + len(new))
        self.img[off : off + self.block] = fixup_encode(blk)

    def save(self) -> Path:
        """Write every record and index, $Bitmap, and the image file."""
        for n in sorted(self.records, key=lambda n: self.records[n]["kind"] == "dir"):
            self._write_record(n)  # files first: directories' index keys need their sizes
        self._add_to_root()
        pos = 0
        for lcn, count in self.bitmap_runs:
            n = count * self.cs
            self.img[lcn * self.cs : lcn * self.cs + n] = self.bitmap[pos : pos + n]
            pos += n
        write_sparse(self.path, self.img)
        return self.path


# --- the recovery case (tests/filesystems/test_ntfs_recovery.py, benchmarks/recovery_ntfs.py)
def case_data(i: int, size: int) -> bytes:
    """The bytes of file ``i`` of the recovery case (seeded, so every run writes the same)."""
    return random.Random(i).randbytes(size)


def recovery_case(tmp: Path) -> tuple[Path, dict[str, bytes], dict[str, bytes]]:
    """A 32 MiB volume (mkntfs, 4 KiB clusters, filled through ntfs-3g): /big with 150
    files (INDX blocks), /big/sub, /keep; every 10th big file and keep/k3.bin deleted, then /new made, whose records
    reuse some freed ones (their old names then survive only in /big's index slack)."""
    img = mkntfs(tmp / "case.img", 32 << 20, "-c", "4096")
    live: dict[str, bytes] = {}
    gone: dict[str, bytes] = {}
    with mounted(img, tmp / "mnt_case") as m:
        (m / "big" / "sub").mkdir(parents=True)
        (m / "keep").mkdir()
        for i in range(150):
            live[f"/big/file_{i:03d}.txt"] = case_data(i, 1000 + 37 * i)
        live["/big/sub/inner.bin"] = case_data(999, 9000)
        for i in range(8):
            live[f"/keep/k{i}.bin"] = case_data(500 + i, 5000)
        for p, b in live.items():
            (m / p[1:]).write_bytes(b)
        for p in [f"/big/file_{i:03d}.txt" for i in range(0, 150, 10)] + ["/keep/k3.bin"]:
            os.unlink(m / p[1:])
            gone[p] = live.pop(p)
    with mounted(img, tmp / "mnt_case") as m:  # a new session reuses freed records
        (m / "new").mkdir()
        for i in range(10):
            p = f"/new/n{i}.txt"
            live[p] = case_data(2000 + i, 100 + i)
            (m / p[1:]).write_bytes(live[p])
    return img, live, gone
