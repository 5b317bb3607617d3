"""The fast read path: a guest range as a few pieces, each one ``pread`` or zeros.

A read of a format that maps fixed-size units (QCOW2 clusters and subclusters, VMDK grains,
VHD/VDI/Parallels blocks) looks its units up in the decoded table the format caches
(numpy arrays), joins neighbours whose host bytes follow each other, and only then touches
Python objects: no runs are built. Whatever is unusual (damaged, compressed, cut short by
the end of the file) makes the plan ``None`` and the read goes through the runs, which
know how to report it (salvage: zeros and a finding; strict: an exception).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..lazy import np

#: piece kinds: bytes of a host source; zeros; nothing here (a chain asks the layer below);
#: bytes of a compressed unit (``source`` returns the inflated unit, ``host`` is the offset
#: in it); a unit only partly present (VHD's sector bitmap), which the format's own
#: callback plans or locates piece by piece (never a piece kind of a finished plan)
DATA, ZERO, HOLE, INFLATE, PARTIAL = 0, 1, 2, 3, 4
SLOW = -1  # a unit state that needs the runs
SMALL = 8  # units looked up one by one below this; with numpy above

Plan = list[tuple[int, int, int, int, Any]]  # (start, end, kind, host offset, source)
Located = tuple[Any, int] | int | None  # (source, host offset), ZERO, HOLE, or None


def locate_unit(kinds: list[int], state, host, i: int, within: int, length: int,
                source: Any, partial: Callable[[int, int, int], Located] | None = None
                ) -> Located:
    """The one-lookup answer for ``length`` bytes at ``within`` of unit ``i`` (the caller
    made sure they lie inside it): (``source``, host offset) for data, ZERO or HOLE, None
    for a unit the plan or the runs must handle (compressed, damaged, cut short); a
    PARTIAL unit answers ``partial(i, within, length)``."""
    k = kinds[state[i]]
    if k == DATA:
        h = int(host[i]) + within
        if h < 0 or h + length > source.size:
            return None
        return source, h
    if k == ZERO or k == HOLE:
        return k
    if k == PARTIAL and partial is not None:
        return partial(i, within, length)
    return None


def single(plan: Plan | None) -> Located:
    """A plan of one piece as :func:`locate_unit` answers; None for anything else."""
    if plan is None or len(plan) != 1:
        return None
    _a, _b, kind, host, source = plan[0]
    if kind == DATA:
        return source, host
    return kind if kind == ZERO or kind == HOLE else None


def add_piece(plan: Plan, a: int, b: int, kind: int, host: int = 0, source: Any = None) -> None:
    """Append ``[a, b)`` to ``plan``, joined to the last piece when it continues it."""
    if plan:
        s, e, k, h, src = plan[-1]
        if e == a and k == kind != INFLATE and (
                kind != DATA or (src is source and h + (e - s) == host)):
            plan[-1] = (s, b, k, h, src)
            return
    plan.append((a, b, kind, host, source))


def plan_units(plan: Plan, kinds: list[int], state, host, vbase: int, unit: int, pos: int,
               stop: int, source: Any, inflate=None,
               partial: Callable[[Plan, int, int, int], bool] | None = None) -> bool:
    """Append the pieces of ``[pos, stop)`` from per-unit ``state`` and ``host`` arrays (unit
    ``i`` covers ``vbase + i*unit``; ``kinds[state]`` is its piece kind; data units read
    ``source`` at ``host``; ``inflate(i)`` gives (loader, virtual start) of the compressed
    unit holding unit ``i``; ``partial(plan, i, a, b)`` appends the pieces of ``[a, b)``
    inside a PARTIAL unit ``i``). False when a unit needs the runs (SLOW, or cut short)."""
    first = (pos - vbase) // unit
    last = -(-(stop - vbase) // unit)
    limit = source.size if source is not None else 0
    if last - first > SMALL and (inflate is not None or partial is not None):
        kd = np.asarray(kinds, dtype=np.int8)[state[first:last]]
        small = ((kd == INFLATE) | (kd == PARTIAL)).any()
    else:
        small = last - first <= SMALL
    if small:
        st = state[first:last].tolist()
        ho = host[first:last].tolist()
        us = vbase + first * unit
        for j, (s, h) in enumerate(zip(st, ho)):
            k = kinds[s]
            a, b = max(pos, us), min(stop, us + unit)
            if k == DATA:
                h += a - us
                if h < 0 or h + (b - a) > limit:
                    return False
                add_piece(plan, a, b, DATA, h, source)
            elif k == INFLATE and inflate is not None:
                loader, ustart = inflate(first + j)
                plan.append((a, b, INFLATE, a - ustart, loader))
            elif k == PARTIAL and partial is not None:
                if not partial(plan, first + j, a, b):
                    return False
            elif k < 0 or k == INFLATE or k == PARTIAL:
                return False
            else:
                add_piece(plan, a, b, k)
            us += unit
        return True
    if uniform(plan, kinds, state, host, vbase, unit, pos, stop, source, first, last):
        return True
    kd = np.asarray(kinds, dtype=np.int8)[state[first:last]]
    if ((kd < 0) | (kd == INFLATE) | (kd == PARTIAL)).any():
        return False
    us = vbase + (first + np.arange(last - first, dtype=np.int64)) * unit
    a = np.maximum(us, pos)
    b = np.minimum(us + unit, stop)
    data = kd == DATA
    hh = host[first:last].astype(np.int64) + (a - us)
    if (data & ((hh < 0) | (hh + (b - a) > limit))).any():
        return False
    brk = np.ones(len(kd), dtype=bool)
    brk[1:] = (kd[1:] != kd[:-1]) | (data[1:] & (hh[1:] != hh[:-1] + (b - a)[:-1]))
    starts = np.flatnonzero(brk)
    stops = np.append(starts[1:], len(kd)) - 1
    for g0, g1, k, h in zip(starts.tolist(), stops.tolist(), kd[starts].tolist(),
                            hh[starts].tolist()):
        if k == DATA:
            add_piece(plan, int(a[g0]), int(b[g1]), DATA, h, source)
        else:
            add_piece(plan, int(a[g0]), int(b[g1]), k)
    return True


#: what a two-level map says of one top-level span: HOLE (no table), None (unusual: the
#: runs decide) or (kinds, state, host, unit, source, inflate) of its decoded table
Table = int | tuple[list[int], Any, Any, int, Any, Any] | None


def plan_tables(start: int, end: int, span: int, table: Callable[[int], Table]) -> Plan | None:
    """The plan of ``[start, end)`` over a two-level map (QCOW/QCOW2 L1 and L2 tables, VMDK
    grain directory and grain tables): top-level entry ``i`` covers ``[i*span, (i+1)*span)``
    and ``table(i)`` says what it holds (:data:`Table`); None when anything needs the runs."""
    plan: Plan = []
    pos = start
    while pos < end:
        i = pos // span
        stop = min(end, (i + 1) * span)
        t = table(i)
        if t is None:
            return None
        if isinstance(t, int):
            add_piece(plan, pos, stop, t)
        else:
            kinds, state, host, unit, source, inflate = t
            if not plan_units(plan, kinds, state, host, i * span, unit, pos, stop, source,
                              inflate):
                return None
        pos = stop
    return plan


def uniform(plan: Plan, kinds: list[int], state, host, vbase: int, unit: int, pos: int,
            stop: int, source: Any, first: int, last: int) -> bool:
    """The common case of a large read, with a few numpy calls: units ``first..last`` all
    in one state, holes or zeros, or data whose host units follow each other; one piece
    appended and True. False (nothing appended) for anything else."""
    s0 = int(state[first])
    k = kinds[s0]
    if k < 0 or k in (INFLATE, PARTIAL) or not (state[first:last] == s0).all():
        return False
    if k != DATA:
        add_piece(plan, pos, stop, k)
        return True
    h0 = int(host[first])
    n = last - first
    if int(host[last - 1]) - h0 != (n - 1) * unit or (np.diff(host[first:last]) != unit).any():
        return False
    h = h0 + pos - (vbase + first * unit)
    if h0 < 0 or h + (stop - pos) > (source.size if source is not None else 0):
        return False
    add_piece(plan, pos, stop, DATA, h, source)
    return True


def fill(plan: Plan, offset: int, mv: memoryview, zeroed: bool = False) -> None:
    """Carry out ``plan`` into ``mv`` (which starts at virtual ``offset``); holes read as
    zeros, written only when ``mv`` does not hold zeros already (``zeroed``). The INFLATE
    pieces of a plan over several compressed units are inflated together
    (:func:`inflate_pieces`: in tasks on the shared pool)."""
    together = sum(p[2] == INFLATE for p in plan) > 1
    if together:
        inflate_pieces([p for p in plan if p[2] == INFLATE], offset, mv)
    for a, b, kind, host, source in plan:
        out = mv[a - offset : b - offset]
        if kind == DATA:
            source.readinto(host, out)
        elif kind == INFLATE:
            if not together:
                out[:] = source()[host : host + b - a]
        elif not zeroed:
            out[:] = bytes(b - a)


def inflate_pieces(pieces: Plan, offset: int, mv: memoryview) -> None:
    """Fill the INFLATE ``pieces`` into ``mv`` (starting at ``offset``) through their
    image's ``fill_runs``, which inflates many units in tasks (one part per worker; one
    part, in this thread, under ``base.TASK_BYTES`` of units a part). An INFLATE piece's
    source is ``functools.partial(image.inflated, run)``: the run is cut to the piece."""
    from .runs import RunTable

    by_image: dict = {}
    for a, b, _kind, _host, source in pieces:
        image = source.func.__self__
        by_image.setdefault(id(image), (image, []))[1].append(source.args[0].clip(a, b))
    for image, runs in by_image.values():
        image.fill_runs(RunTable.from_runs(runs), offset, mv)
