"""Replaying a dirty XFS log in memory, as a mount would before reading the volume.

The records from the tail (``h_tail_lsn`` of the last record) to the head are read in
order; each record's data has the first word of every basic block put back from the
header's cycle data, then its operations are gathered by transaction id into regions
(a region split over records continues with ``WAS_CONT``). A transaction whose commit
record is found is applied to an :class:`~vdinspect.io.OverlaySource`, never to the image:

- buffer items (``xfs_buf_log_format``): each run of logged 128-byte chunks of the dirty
  bitmap is copied to the buffer's place; a buffer cancelled anywhere in the log (its
  blocks were freed) is not replayed, and an inode buffer replays only its
  ``di_next_unlinked`` fields, as the kernel does;
- inode items (``xfs_inode_log_format``): the logged core, written in the writer's byte
  order, is turned into the disk inode field by field from the :data:`~.structs.Dinode`
  declaration (``di_next_unlinked`` kept from disk), then the data and attr forks are laid
  in (local data and extent lists as logged; a B+tree root from its in-memory form);
- inode create items initialise the inode chunk they name.

Items are applied in the kernel's order inside a transaction (buffers, then inodes and the
rest, then inode buffers, then cancels). On v5 volumes every replayed metadata block and
inode gets its CRC-32C recomputed, as the kernel's write verifiers do when the recovered
buffers go back to disk. Intents left open (no done item in the log) are carried out in
memory where they change what is read (``intents.py``: extent frees, file mapping
updates, refcount decreases that free blocks); the others (reverse map, attribute,
exchange) are named in findings. A record that fails its CRC (over its header and the
``h_len`` bytes of data, as the kernel checks it) ends the log there (a torn
write at the head, as the kernel treats it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...errors import CorruptImage
from ...io import OverlaySource, crc32c
from ...layout import field_format, leaves, offset_of, struct_format
from . import structs as S
from .intents import ITEM_NAMES, Intents
from .log import BB, LogState

if TYPE_CHECKING:
    from .fs import XfsFileSystem

LOG_NOTE = "replayed from the log (committed there, not yet written in place)"
MAX_LOG_BYTES = 2 << 30  # a larger log is not replayed
MAX_HELD = 256 << 20  # transaction bytes held in memory at once (then: not replayed)
NULLAGINO = 0xFFFFFFFF
_OP = S.LOG_OP_FMT
_TRANS = struct_format(S.XfsTransHeader)
_HEAD = struct_format(S.XfsLogItemHead)
_BLF = struct_format(S.XfsBufLogFormat)
_ILF = struct_format(S.XfsInodeLogFormat)
_ILF32 = S.LOG_ILF32_FMT  # the packed 32-bit form: XfsInodeLogFormat less ilf_pad
_ICL = struct_format(S.XfsIcreateLog, "icl_ag", "icl_agbno", "icl_count", "icl_isize",
                     "icl_length", "icl_gen")
_EXT = S.be_format(S.XlogRecExtHeader)  # xh_cycle, then the 64 words of xh_cycle_data
_DINODE = [x for x in leaves(S.Dinode)]
_NEXT_UNLINKED = offset_of(S.Dinode, "di_next_unlinked")
_LSN_AT = offset_of(S.Dinode, "di_lsn")
_FLAGS2_AT = offset_of(S.Dinode, "di_flags2")
_FLAGS2_LOGGED = field_format(S.Dinode, "di_flags2", order="<")  # host order (x86, arm64)
_MAGIC_LOGGED = field_format(S.Dinode, "di_magic", order="<")
_DEV_LOGGED = field_format(S.DinodeDev, "di_dev", order="<")
_LSN = field_format(S.Dinode, "di_lsn")
_GEN = field_format(S.Dinode, "di_gen")
_INO = field_format(S.Dinode, "di_ino")
_NEXT = field_format(S.Dinode, "di_next_unlinked")
_LEVEL_NUMRECS = struct_format(S.BtreeLongBlock, "bb_level", "bb_numrecs")
_KEY, _PTR = S.BmbtKey.sizeof(), S.BmbtPtr.sizeof()
_CYCLE_WORD = field_format(S.XlogRecExtHeader, "xh_cycle")  # a word the cycle replaced
_DA3_MAGIC = field_format(S.Da3Blkinfo, "magic")
_TIMES = {"di_atime", "di_mtime", "di_ctime", "di_crtime"}
# v5 metadata blocks by magic: where the CRC-32C sits (recomputed after replay)
_CRC4 = {S.XFS_SB_MAGIC: S.SB_CRC_OFF, S.XFS_AGF_MAGIC: S.AGF_CRC_OFF,
         S.XFS_AGI_MAGIC: S.AGI_CRC_OFF, S.XFS_BMAP_CRC_MAGIC: S.LONG_CRC_OFF,
         S.XFS_DIR3_BLOCK_MAGIC: S.DIR3_CRC_OFF, S.XFS_DIR3_DATA_MAGIC: S.DIR3_CRC_OFF,
         S.XFS_DIR3_FREE_MAGIC: S.DIR3_CRC_OFF}
_CRC4.update({m: S.SHORT_CRC_OFF for m in (S.XFS_IBT_CRC_MAGIC, S.XFS_ABTB_CRC_MAGIC,
                                           S.XFS_ABTC_CRC_MAGIC, S.XFS_FIBT_CRC_MAGIC,
                                           S.XFS_RMAP_CRC_MAGIC, S.XFS_REFC_CRC_MAGIC)})
_PER_BLOCK = {S.XFS_ATTR3_RMT_MAGIC: S.RMT_CRC_OFF, S.XFS_SYMLINK_MAGIC: S.SYMLINK_CRC_OFF}
_DA3 = {S.XFS_DIR3_LEAF1_MAGIC, S.XFS_DIR3_LEAFN_MAGIC, S.XFS_DA3_NODE_MAGIC,
        S.XFS_ATTR3_LEAF_MAGIC}
_DA3_MAGIC_AT = offset_of(S.Da3Blkinfo, "magic")


class LogError(Exception):
    """Why the log cannot be replayed (becomes the log state's text, never escapes)."""


@dataclass
class Replay:
    """What a replay did: the overlay and counts for ``info()`` and ``check()``."""

    dev: OverlaySource
    transactions: int = 0
    items: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    notes: list[tuple[str, int, str]] = field(default_factory=list)  # severity, offset, text
    intents: Intents = field(default_factory=Intents)


@dataclass
class _Trans:
    lsn: int
    regions: list[bytearray] = field(default_factory=list)


def replay_into(fs: XfsFileSystem) -> Replay | None:
    """Replay the dirty log of ``fs`` and make ``fs.dev`` the replayed overlay; record in
    ``fs.log`` and the findings what was done or why not (never raises for a bad log)."""
    state = fs.log
    try:
        rep = replay_log(fs, state)
    except (LogError, CorruptImage) as exc:
        why = exc.detail if isinstance(exc, CorruptImage) else str(exc)
        state.text += f"; not replayed: {why}; the volume is read as it lies on disk"
        fs.finding("warning", "log", state.offset, state.text)
        return None
    for severity, offset, text in rep.notes:
        fs.finding(severity, "log", offset, text)
    its = rep.intents
    for severity, text in its.notes:
        fs.finding(severity, "log intent", state.offset, text)
    done = ", ".join(f"{n} {k}" for k, n in sorted(rep.items.items())) or "nothing"
    state.text += (f"; replayed in memory: {rep.transactions} transactions ({done})")
    if its.applied:
        state.text += "; open intents carried out: " + ", ".join(
            f"{n} {k}" for k, n in sorted(its.applied.items()))
    skipped = rep.skipped + its.skipped
    if skipped:
        state.text += "; not applied: " + ", ".join(
            f"{n} {k}" for k, n in sorted(skipped.items()))
    fs.intents = its
    state.replayed = rep.transactions
    fs.dev = rep.dev
    fs.finding("info", "log", state.offset, state.text)
    return rep


def replay_log(fs: XfsFileSystem, state: LogState) -> Replay:
    """Replay the committed transactions of the dirty log ``state`` over ``fs.dev``.

    Raises :class:`LogError` when the log cannot be replayed at all."""
    if state.head is None or state.tail is None or state.nbb < 2:
        raise LogError("the log's head or tail is unknown")
    if state.nbb * BB > MAX_LOG_BYTES:
        raise LogError(f"the log is larger than {MAX_LOG_BYTES >> 20} MiB")
    log = _Log(fs, state)
    committed = log.transactions()
    rep = Replay(OverlaySource(fs.dev, name=f"{fs.dev.name} (log replayed)"))
    rep.notes += log.notes
    _apply(fs, rep, committed)
    return rep


# --- reading records -------------------------------------------------------------------


class _Log:
    def __init__(self, fs: XfsFileSystem, state: LogState) -> None:
        self.fs, self.state = fs, state
        self.notes: list[tuple[str, int, str]] = []
        self.held = 0  # bytes of regions kept

    def blocks(self, blk: int, count: int) -> bytes:
        """``count`` basic blocks of the log from ``blk``, wrapping at its end."""
        st, out = self.state, []
        while count > 0:
            blk %= st.nbb
            n = min(count, st.nbb - blk)
            out.append(self.fs.read_bytes(st.start + blk * BB, n * BB, "log"))
            blk, count = blk + n, count - n
        return b"".join(out)

    def transactions(self) -> list[tuple[_Trans, int]]:
        """The committed transactions from tail to head, in commit order, with their
        commit LSNs."""
        st = self.state
        blk, walked = st.tail, 0
        open_: dict[int, _Trans] = {}
        done: list[tuple[_Trans, int]] = []
        while blk != st.head and walked < st.nbb:
            raw = self.blocks(blk, 1)
            h = S.unpack(S.LogRecHeader, S.LOG_REC_FMT, raw)
            where = st.start + blk * BB
            if h["h_magicno"] != S.XLOG_HEADER_MAGIC_NUM:
                raise LogError(f"no log record header at log block {blk} (between the tail "
                               f"{st.tail} and the head {st.head})")
            if h["h_fmt"] not in (0, 1):
                raise LogError(f"log record format {h['h_fmt']} (written by a big-endian "
                               "host) is not replayed")
            hdr_bbs = max(1, -(-h["h_size"] // S.XLOG_HEADER_CYCLE_SIZE)) \
                if h["h_version"] & 2 else 1
            data_bbs = -(-h["h_len"] // BB)
            if hdr_bbs + data_bbs > st.nbb or data_bbs > 512 or hdr_bbs > 8:
                raise LogError(f"log record at block {blk} claims {h['h_len']} bytes")
            head = self.blocks(blk, hdr_bbs)
            data = bytearray(self.blocks(blk + hdr_bbs, data_bbs))
            if self.fs.geo.crc and h["h_crc"] and not _record_crc_ok(  # over h_len bytes
                    head, hdr_bbs, data[:h["h_len"]]):
                self.notes.append(("warning", where, f"log record at block {blk} fails its "
                                   "CRC-32C: taken as the torn end of the log"))
                break
            _uncycle(h, head, hdr_bbs, data)
            self._operations(h, bytes(data[:h["h_len"]]), blk, open_, done)
            blk = (blk + hdr_bbs + data_bbs) % st.nbb
            walked += hdr_bbs + data_bbs
        if open_:
            self.notes.append(("info", st.start + st.head * BB, f"{len(open_)} "
                               "transactions without a commit record are not replayed"))
        return done

    def _operations(self, h: dict, data: bytes, blk: int, open_: dict[int, _Trans],
                    done: list) -> None:
        pos = 0
        lsn = h["h_lsn"]
        for _ in range(h["h_num_logops"]):
            if pos + _OP.size > len(data):
                raise LogError(f"log record at block {blk}: operation header past its end")
            tid, length, client, flags, _r = _OP.unpack_from(data, pos)
            pos += _OP.size
            if length > len(data) - pos:
                raise LogError(f"log record at block {blk}: operation of {length} bytes "
                               "past its end")
            region = data[pos:pos + length]
            pos += length
            if flags & S.XLOG_UNMOUNT_TRANS:
                continue
            if client not in (S.XFS_TRANSACTION, S.XFS_LOG):
                raise LogError(f"log record at block {blk}: operation of client {client:#x}")
            if flags & S.XLOG_START_TRANS:
                open_[tid] = _Trans(lsn)
                continue
            t = open_.get(tid)
            if t is None:  # begun before the tail: already on disk
                continue
            if region:
                self.held += len(region)
                if self.held > MAX_HELD:
                    raise LogError(f"the transactions in the log hold more than "
                                   f"{MAX_HELD >> 20} MiB: too much to replay in memory")
                if flags & S.XLOG_WAS_CONT_TRANS and t.regions:
                    t.regions[-1] += region
                else:
                    t.regions.append(bytearray(region))
            if flags & S.XLOG_COMMIT_TRANS:
                done.append((open_.pop(tid), lsn))


def _record_crc_ok(head: bytes, hdr_bbs: int, data: bytes) -> bool:
    (stored,) = S.CRC_FMT.unpack_from(head, S.LOG_CRC_OFF)
    end = S.LOG_CRC_OFF + S.CRC_FMT.size
    ext = b"".join(head[i * BB:i * BB + S.XlogRecExtHeader.sizeof()]
                   for i in range(1, hdr_bbs))
    for n in S.XLOG_REC_CRC_SIZES:
        first = head[:S.LOG_CRC_OFF] + bytes(S.CRC_FMT.size) + head[end:n]
        if crc32c(first + ext + bytes(data)) == stored:
            return True
    return False


def _uncycle(h: dict, head: bytes, hdr_bbs: int, data: bytearray) -> None:
    """Put back the first word of each basic block of the record's data."""
    words = list(h["h_cycle_data"])
    for i in range(1, hdr_bbs):
        words += list(_EXT.unpack_from(head, i * BB)[1:])
    for j in range(min(len(data) // BB, len(words))):
        _CYCLE_WORD.pack_into(data, j * BB, words[j])


# --- applying transactions ------------------------------------------------------------------


def _items(t: _Trans) -> list[list[bytes]]:
    """The transaction's regions grouped into log items (the header region first)."""
    if not t.regions or len(t.regions[0]) < _TRANS.size:
        raise LogError("a transaction without its header")
    magic = _TRANS.unpack_from(t.regions[0])[0]
    if magic != S.XFS_TRANS_HEADER_MAGIC:
        raise LogError(f"transaction header magic {magic:#x} (not TRAN)")
    items, i = [], 1
    while i < len(t.regions):
        first = t.regions[i]
        if len(first) < _HEAD.size:
            raise LogError("a log item format shorter than its head")
        count = _HEAD.unpack_from(first)[1]
        if count < 1 or i + count > len(t.regions):
            raise LogError(f"a log item of {count} regions with {len(t.regions) - i} left")
        items.append([bytes(r) for r in t.regions[i:i + count]])
        i += count
    return items


def _order(items: list[list[bytes]]) -> list[list[bytes]]:
    """The kernel's replay order: buffers and inode creates, inodes and the rest, inode
    buffers, cancelled buffers."""
    bufs, rest, ibufs, cancels = [], [], [], []
    for it in items:
        kind = _HEAD.unpack_from(it[0])[0]
        if kind == S.XFS_LI_BUF and len(it[0]) >= _BLF.size:
            flags = _BLF.unpack_from(it[0])[2]
            (cancels if flags & S.XFS_BLF_CANCEL else
             ibufs if flags & S.XFS_BLF_INODE_BUF else bufs).append(it)
        elif kind == S.XFS_LI_ICREATE:
            bufs.append(it)
        else:
            rest.append(it)
    return bufs + rest + ibufs + cancels


def _apply(fs: XfsFileSystem, rep: Replay, committed: list[tuple[_Trans, int]]) -> None:
    trans = [(_order(_items(t)), lsn) for t, lsn in committed]
    cancelled: Counter = Counter()
    for items, _lsn in trans:  # pass 1: buffers whose blocks were freed
        for it in items:
            blf = _buf_format(it[0])
            if blf and blf[2] & S.XFS_BLF_CANCEL:
                cancelled[(blf[4], blf[3])] += 1
    touched: set[tuple[int, int]] = set()
    inodes: set[int] = set()
    for items, lsn in trans:  # pass 2
        for it in items:
            kind = _HEAD.unpack_from(it[0])[0]
            if kind == S.XFS_LI_BUF:
                _buffer(fs, rep, it, cancelled, touched, inodes)
            elif kind == S.XFS_LI_INODE:
                _inode(fs, rep, it, lsn, inodes)
            elif kind == S.XFS_LI_ICREATE:
                _icreate(fs, rep, it, cancelled, inodes)
            elif not rep.intents.collect(it[0]):
                rep.skipped[ITEM_NAMES.get(kind, f"item {kind:#x}")] += 1
        rep.transactions += 1
    rep.intents.settle(fs)
    if fs.geo.crc:
        for blkno, nbb in sorted(touched):
            _restamp(fs, rep.dev, blkno * BB, nbb * BB, inodes)
        for off in sorted(inodes):
            _inode_crc(fs, rep.dev, off)


def _buf_format(first: bytes) -> tuple | None:
    if _HEAD.unpack_from(first)[0] != S.XFS_LI_BUF or len(first) < _BLF.size:
        return None
    return _BLF.unpack_from(first)


def _runs(bitmap: list[int], nbits: int) -> list[tuple[int, int]]:
    """(first chunk, chunks) of each run of set bits."""
    out, bit = [], 0
    while bit < nbits:
        if bitmap[bit >> 5] >> (bit & 31) & 1:
            start = bit
            while bit < nbits and bitmap[bit >> 5] >> (bit & 31) & 1:
                bit += 1
            out.append((start, bit - start))
        else:
            bit += 1
    return out


def _buffer(fs: XfsFileSystem, rep: Replay, it: list[bytes], cancelled: Counter,
            touched: set, inodes: set) -> None:
    _t, _size, flags, nbb, blkno, map_size = _BLF.unpack_from(it[0])
    key = (blkno, nbb)
    if flags & S.XFS_BLF_CANCEL:
        cancelled[key] -= 1
        if cancelled[key] <= 0:
            del cancelled[key]
        return
    if key in cancelled:
        rep.skipped["cancelled buffer"] += 1
        return
    start, length = blkno * BB, nbb * BB
    if blkno < 0 or nbb <= 0 or start + length > fs.dev.size:
        rep.notes.append(("error", start if blkno >= 0 else 0, f"log buffer item at basic "
                          f"block {blkno} (+{nbb}) lies outside the volume: not replayed"))
        return
    need = _BLF.size + S.BLF_MAP_WORD_FMT.size * map_size
    if len(it[0]) < need:
        rep.notes.append(("error", start, "log buffer item with a truncated dirty bitmap"))
        return
    bitmap = [w for (w,) in S.BLF_MAP_WORD_FMT.iter_unpack(it[0][_BLF.size:need])]
    runs = _runs(bitmap, min(map_size * 32, length // S.XFS_BLF_CHUNK))
    isize = fs.geo.inode_size
    for (first, n), region in zip(runs, it[1:]):
        at = first * S.XFS_BLF_CHUNK
        data = region[:min(len(region), n * S.XFS_BLF_CHUNK, length - at)]
        if flags & S.XFS_BLF_INODE_BUF:  # only the unlinked-list pointers
            for k in range(at // isize, -(-(at + len(data)) // isize)):
                f = k * isize + _NEXT_UNLINKED
                if at <= f and f + 4 <= at + len(data) and f + 4 <= length:
                    rep.dev.write(start + f, data[f - at:f - at + 4])
                    inodes.add(start + k * isize)
        else:
            rep.dev.write(start + at, data)
    if len(runs) != len(it) - 1:
        rep.notes.append(("warning", start, f"log buffer item at basic block {blkno}: "
                          f"{len(runs)} logged runs but {len(it) - 1} regions"))
    if not flags & S.XFS_BLF_INODE_BUF:
        touched.add(key)
    rep.items["buffer"] += 1


def _to_disk_core(log_core: bytes, disk: bytearray, lsn: int, v3: bool) -> None:
    """Write the logged inode core (host order, little-endian) over the disk inode."""
    size = len(log_core)
    flags2 = _FLAGS2_LOGGED.unpack_from(log_core, _FLAGS2_AT)[0] if v3 and \
        size >= _FLAGS2_AT + _FLAGS2_LOGGED.size else 0
    bigtime = bool(flags2 & S.DIFLAG2_BIGTIME)
    for x in _DINODE:
        if x.offset + x.size > size or x.name in ("di_next_unlinked", "di_crc"):
            continue
        raw = log_core[x.offset:x.offset + x.size]
        if x.name in _TIMES and not bigtime:  # two 32-bit halves: seconds, nanoseconds
            raw = raw[3::-1] + raw[7:3:-1]
        elif x.name == "di_big_nextents" and not v3:  # 6 pad bytes, then di_flushiter
            raw = raw[:6] + raw[7:5:-1]
        elif x.order == ">":
            raw = raw[::-1]
        disk[x.offset:x.offset + x.size] = raw
    if v3 and size >= _LSN_AT + _LSN.size:
        _LSN.pack_into(disk, _LSN_AT, lsn)


def _bmdr(incore: bytes, fork_size: int, hdr: int) -> bytes:
    """An in-memory bmbt root block (long header of ``hdr`` bytes) as the on-disk root
    (level, numrecs, keys, then pointers after room for the fork's maximum records)."""
    level, numrecs = _LEVEL_NUMRECS.unpack_from(incore)
    mxr = (len(incore) - hdr) // (_KEY + _PTR)
    r = S.BMDR_FMT.size
    dmxr = (fork_size - r) // (_KEY + _PTR)
    numrecs = min(numrecs, mxr, dmxr)
    out = bytearray(fork_size)
    S.BMDR_FMT.pack_into(out, 0, level, numrecs)
    out[r:r + _KEY * numrecs] = incore[hdr:hdr + _KEY * numrecs]
    p, q = hdr + _KEY * mxr, r + _KEY * dmxr  # the pointers follow the most keys that fit
    out[q:q + _PTR * numrecs] = incore[p:p + _PTR * numrecs]
    return bytes(out)


def _inode(fs: XfsFileSystem, rep: Replay, it: list[bytes], lsn: int, inodes: set) -> None:
    g = fs.geo
    f0 = it[0]
    if len(f0) >= _ILF.size:
        _t, count, fields, asize, dsize, _p, ino, dev, blkno, _l, boff = _ILF.unpack_from(f0)
    elif len(f0) >= _ILF32.size:
        _t, count, fields, asize, dsize, ino, dev, blkno, _l, boff = _ILF32.unpack_from(f0)
    else:
        rep.notes.append(("error", 0, "log inode item with a short format"))
        return
    at = blkno * BB + boff
    isize = g.inode_size
    if blkno < 0 or at < 0 or at + isize > fs.dev.size or len(it) < 2:
        rep.notes.append(("error", max(at, 0), f"log inode item for inode {ino} outside the "
                          "volume: not replayed"))
        return
    disk = bytearray(rep.dev.read(at, isize))
    if S.DINODE_MAGIC_FMT.unpack_from(disk)[0] != S.XFS_DINODE_MAGIC:
        rep.notes.append(("error", at, f"log inode item for inode {ino}: no inode on disk "
                          "at its place: not replayed"))
        return
    v3 = g.version == 5
    core_size = S.Dinode.sizeof() if v3 else S.DINODE_V2_SIZE
    log_core = it[1][:core_size if v3 else _NEXT_UNLINKED]
    if (len(log_core) < _MAGIC_LOGGED.size
            or _MAGIC_LOGGED.unpack_from(log_core)[0] != S.XFS_DINODE_MAGIC):
        rep.notes.append(("error", at, f"log inode item for inode {ino}: bad logged core"))
        return
    _to_disk_core(log_core, disk, lsn, v3)
    forkoff = disk[offset_of(S.Dinode, "di_forkoff")] * 8
    dfork = forkoff if forkoff else isize - core_size
    if dfork > isize - core_size:
        rep.notes.append(("error", at, f"log inode item for inode {ino}: attr fork offset "
                          f"{forkoff} past the inode: not replayed"))
        return
    hdr = S.BtreeLongBlock.sizeof() if v3 else S.LONG_HDR_FMT.size
    rest = list(it[2:])
    if fields & (S.XFS_ILOG_DDATA | S.XFS_ILOG_DEXT | S.XFS_ILOG_DBROOT) and rest:
        data = rest.pop(0)[:dsize]
        if fields & S.XFS_ILOG_DBROOT:
            data = _bmdr(data, dfork, hdr) if len(data) >= hdr else b""
        disk[core_size:core_size + min(len(data), dfork)] = data[:dfork]
    elif fields & S.XFS_ILOG_DEV:
        S.DINODE_DEV_FMT.pack_into(disk, core_size, *_DEV_LOGGED.unpack_from(dev))
    if fields & (S.XFS_ILOG_ADATA | S.XFS_ILOG_AEXT | S.XFS_ILOG_ABROOT) and rest and forkoff:
        afork = isize - core_size - forkoff
        data = rest.pop(0)[:asize]
        if fields & S.XFS_ILOG_ABROOT:
            data = _bmdr(data, afork, hdr) if len(data) >= hdr else b""
        a = core_size + forkoff
        disk[a:a + min(len(data), afork)] = data[:afork]
    rep.dev.write(at, bytes(disk))
    inodes.add(at)
    rep.items["inode"] += 1


def _icreate(fs: XfsFileSystem, rep: Replay, it: list[bytes], cancelled: Counter,
             inodes: set) -> None:
    g = fs.geo
    if len(it[0]) < S.XfsIcreateLog.sizeof():
        rep.notes.append(("error", 0, "log inode create item too short"))
        return
    agno, agbno, count, isize, length, gen = _ICL.unpack_from(it[0])
    start = (agno * g.agblocks + agbno) * g.block_size
    if (agno >= g.agcount or isize != g.inode_size or count * isize > length * g.block_size
            or start + length * g.block_size > fs.dev.size or count > 1 << 16):
        rep.notes.append(("error", start, "log inode create item outside the volume"))
        return
    if (start // BB, length * g.block_size // BB) in cancelled:
        rep.skipped["cancelled inode create"] += 1
        return
    for i in range(count):
        rec = bytearray(isize)
        S.DINODE_MAGIC_FMT.pack_into(rec, 0, S.XFS_DINODE_MAGIC)
        rec[offset_of(S.Dinode, "di_version")] = 3 if g.version == 5 else 2
        _GEN.pack_into(rec, offset_of(S.Dinode, "di_gen"), gen)
        _NEXT.pack_into(rec, _NEXT_UNLINKED, NULLAGINO)
        if g.version == 5:
            ino = g.agino_to_ino(agno, (agbno << g.inopblog) + i)
            _INO.pack_into(rec, offset_of(S.Dinode, "di_ino"), ino)
            o = offset_of(S.Dinode, "di_uuid")
            rec[o:o + 16] = g.meta_uuid
            inodes.add(start + i * isize)
        rep.dev.write(start + i * isize, bytes(rec))
    rep.items["inode create"] += 1


def _stamp(dev: OverlaySource, at: int, block: bytes, crc_at: int) -> None:
    n = S.CRC_FMT.size
    data = block[:crc_at] + bytes(n) + block[crc_at + n:]
    dev.write(at + crc_at, S.CRC_FMT.pack(crc32c(data)))


def _restamp(fs: XfsFileSystem, dev: OverlaySource, at: int, length: int,
             inodes: set) -> None:
    """Recompute the CRC-32C of a replayed v5 metadata buffer, found by its magic."""
    block = dev.read(at, length)
    (m4,) = S.BLOCK_MAGIC_FMT.unpack_from(block)
    if m4 in _CRC4:
        size = fs.geo.sector_size if m4 in (S.XFS_SB_MAGIC, S.XFS_AGF_MAGIC,
                                            S.XFS_AGI_MAGIC) else length
        _stamp(dev, at, block[:size], _CRC4[m4])
    elif m4 in _PER_BLOCK:
        bs = fs.geo.block_size
        for o in range(0, length - bs + 1, bs):
            if S.BLOCK_MAGIC_FMT.unpack_from(block, o)[0] == m4:
                _stamp(dev, at + o, block[o:o + bs], _PER_BLOCK[m4])
    elif _DA3_MAGIC.unpack_from(block, _DA3_MAGIC_AT)[0] in _DA3:
        _stamp(dev, at, block, S.DA3_CRC_OFF)
    elif S.DINODE_MAGIC_FMT.unpack_from(block)[0] == S.XFS_DINODE_MAGIC:
        isize = fs.geo.inode_size
        inodes.update(at + o for o in range(0, length - isize + 1, isize)
                      if S.DINODE_MAGIC_FMT.unpack_from(block, o)[0] == S.XFS_DINODE_MAGIC)


def _inode_crc(fs: XfsFileSystem, dev: OverlaySource, at: int) -> None:
    rec = dev.read(at, fs.geo.inode_size)
    if (S.DINODE_MAGIC_FMT.unpack_from(rec)[0] == S.XFS_DINODE_MAGIC
            and rec[offset_of(S.Dinode, "di_version")] >= 3):
        _stamp(dev, at, rec, S.DINODE_CRC_OFF)
