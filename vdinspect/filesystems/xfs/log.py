"""Whether the XFS log is clean: find its head and look at the last record.

The log is a ring of 512-byte basic blocks; every block written in a pass carries that
pass's cycle number in its first word (a record header keeps it in ``h_cycle``). The
head is where the cycle number drops, found by bisection in O(log n) reads. A cleanly
unmounted log ends with an unmount record: one operation flagged UNMOUNT. Anything else means committed transactions may
wait to be replayed: :mod:`.replay` replays them in memory from the tail the last record
names (``h_tail_lsn``) to the head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import CorruptImage
from . import structs as S

if TYPE_CHECKING:
    from .fs import XfsFileSystem

BB = 512
MAX_RECORD_BBS = (256 << 10) // BB + 8  # a record with its headers is at most this long


@dataclass
class LogState:
    dirty: bool | None  # None: could not tell (external log, unreadable)
    text: str
    offset: int | None = None
    start: int = 0  # byte offset of the log on the volume
    nbb: int = 0  # log length, basic blocks
    head: int | None = None  # basic block after the last record (where the next one goes)
    tail: int | None = None  # basic block of the oldest record still needed (h_tail_lsn)
    head_cycle: int = 0  # cycle number of the last record
    replayed: int = 0  # transactions replayed in memory


def log_state(fs: XfsFileSystem) -> LogState:
    """The state of the internal log of ``fs`` (never raises)."""
    g = fs.geo
    if not g.logstart:
        return LogState(None, "external log: not examined")
    start = g.fsb_to_block(g.logstart) * g.block_size
    nbb = g.logblocks * g.block_size // BB
    if nbb < 2 or start + nbb * BB > fs.dev.size:
        return LogState(None, "the log lies outside the volume", start)
    try:
        return _state(fs, start, nbb)
    except CorruptImage as exc:
        return LogState(None, f"log unreadable: {exc.detail}", start)


def _cycle(fs: XfsFileSystem, start: int, i: int) -> tuple[int, bool]:
    """(cycle number, is a record header) of basic block ``i``."""
    word = fs.read_bytes(start + i * BB, 8, "log")
    first, cycle = S.LOG_MAGIC_CYCLE_FMT.unpack_from(word)
    if first == S.XLOG_HEADER_MAGIC_NUM:
        return cycle, True
    return first, False


def _state(fs: XfsFileSystem, start: int, nbb: int) -> LogState:
    first, _h = _cycle(fs, start, 0)
    last, _h = _cycle(fs, start, nbb - 1)
    if first == 0:
        return LogState(None, "log empty (never written)", start)
    if first == last:
        head = nbb  # the newest pass reached the end: the head is at the wrap
    else:
        lo, hi = 0, nbb - 1  # cycle(lo) == first, cycle(hi) != first
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _cycle(fs, start, mid)[0] == first:
                lo = mid
            else:
                hi = mid
        head = hi
    for back in range(1, min(nbb, MAX_RECORD_BBS) + 1):
        i = (head - back) % nbb
        cyc, is_hdr = _cycle(fs, start, i)
        if not is_hdr:
            continue
        raw = fs.read_bytes(start + i * BB, BB, "log record header")
        h = S.unpack(S.LogRecHeader, S.LOG_REC_FMT, raw)
        hdr_bbs = 1
        if h["h_version"] & 2:
            hdr_bbs = max(1, -(-h["h_size"] // (32 << 10)))
        op_at = start + ((i + hdr_bbs) % nbb) * BB
        op = S.unpack(S.LogOpHeader, S.LOG_OP_FMT, fs.read_bytes(op_at, S.LOG_OP_FMT.size,
                                                                 "log operation header"))
        where = start + i * BB
        unmount = (h["h_num_logops"] == 1 and op["oh_flags"] & S.XLOG_UNMOUNT_TRANS)
        if unmount:
            return LogState(False, f"clean (unmount record at log block {i}, cycle {cyc})",
                            where)
        data_bbs = -(-h["h_len"] // BB)
        return LogState(True, f"dirty: the last log record (block {i}, cycle {cyc}, "
                        f"{h['h_num_logops']} operations) is not an unmount record", where,
                        start, nbb, (i + hdr_bbs + data_bbs) % nbb,
                        h["h_tail_lsn"] & 0xFFFFFFFF, cyc)
    return LogState(None, "no log record header found before the head", start)
