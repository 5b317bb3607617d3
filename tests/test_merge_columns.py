"""``frames.merge_columns`` inserting a few rows between slices against the scatter it
replaced (the reference below: the code as it was), on random inputs of every kind the
drivers pass: arrays, masked arrays, datetime64, lists with None, text, absent sides."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pytest

from vdinspect.frames import merge_columns


def reference(which, a: dict, b: dict) -> dict:
    """merge_columns as it was: every column scattered into place."""
    which = np.asarray(which, dtype=bool)
    n = len(which)
    at, bt = np.flatnonzero(which), np.flatnonzero(~which)
    out = {}
    for k in dict.fromkeys([*a, *b]):
        parts = [(at, a.get(k)), (bt, b.get(k))]
        kinds = [v.dtype for _i, v in parts if isinstance(v, np.ndarray) and v.dtype != object]
        if kinds:
            try:
                data = np.zeros(n, dtype=kinds[0])
                mask = np.zeros(n, dtype=bool)
                for idx, v in parts:
                    if v is None:
                        mask[idx] = True
                    elif isinstance(v, np.ndarray):
                        data[idx] = np.ma.getdata(v)
                        mask[idx] = np.ma.getmaskarray(v)
                    else:
                        m = np.fromiter((x is None for x in v), dtype=bool, count=len(v))
                        data[idx] = [0 if x is None else x for x in v]
                        mask[idx] = m
                if data.dtype.kind == "M":
                    data[mask] = np.datetime64("NaT")
                    out[k] = data
                else:
                    out[k] = np.ma.MaskedArray(data, mask) if mask.any() else data
                continue
            except (TypeError, ValueError, OverflowError):
                pass
        few = insert_few(parts[0][1], parts[1][1], bt)
        if few is not None:
            out[k] = few
            continue
        col = np.full(n, None, dtype=object)
        for idx, v in parts:
            if v is not None:
                col[idx] = list(v) if isinstance(v, np.ndarray) and v.dtype != object else v
        out[k] = col
    return out


def insert_few(av, bv, bt: np.ndarray):
    """The text insertion merge_columns had (kept as it was)."""
    if len(bt) > 64 or not isinstance(av, list | np.ndarray):
        return None
    if isinstance(av, np.ndarray) and av.dtype != object:
        return None
    if bv is None:
        bv = [None] * len(bt)
    elif isinstance(bv, np.ndarray):
        bv = bv.tolist() if bv.dtype != object else list(bv)
    if isinstance(av, list):
        col = av.copy()
        for i, x in zip(bt.tolist(), bv):
            col.insert(i, x)
        return col
    vals = np.empty(len(bv), dtype=object)
    for j, x in enumerate(bv):
        vals[j] = x
    return np.insert(av, bt - np.arange(len(bt)), vals)


def side(rng: random.Random, kind: str, count: int):
    """One side's column of ``count`` values of ``kind``."""
    ints = [rng.randrange(-(1 << 40), 1 << 40) for _ in range(count)]
    nones = [rng.random() < 0.3 for _ in range(count)]
    if kind == "absent":
        return None
    if kind == "array":
        return np.array(ints, dtype=np.int64)
    if kind == "u32":
        return np.array([abs(x) % (1 << 32) for x in ints], dtype=np.uint32)
    if kind == "masked":
        return np.ma.MaskedArray(np.array(ints, dtype=np.int64), nones)
    if kind == "bool":
        return np.array([x % 2 == 0 for x in ints], dtype=bool)
    if kind == "time":
        t = np.array(ints, dtype=np.int64).view("datetime64[us]")
        t[np.array(nones, dtype=bool)] = np.datetime64("NaT")
        return t
    if kind == "list":
        return [None if z else x for x, z in zip(ints, nones)]
    if kind == "text":
        return [None if z else f"n{x}" for x, z in zip(ints, nones)]
    if kind == "objects":
        col = np.empty(count, dtype=object)
        col[:] = [None if z else f"o{x}" for x, z in zip(ints, nones)]
        return col
    if kind == "mixed":  # numbers and text: the object fallback
        return [f"t{x}" if z else x for x, z in zip(ints, nones)]
    raise AssertionError(kind)


KINDS = ["absent", "array", "u32", "masked", "bool", "time", "list", "text", "objects",
         "mixed"]


def plain(values: list) -> list:
    """Values comparable with ``==`` (NaT is not equal to itself)."""
    return [repr(x) if isinstance(x, np.datetime64) else x for x in values]


def same(got, want) -> None:
    assert type(got) is type(want), (type(got), type(want))
    if isinstance(want, list):
        assert got == want
        return
    assert got.dtype == want.dtype
    if isinstance(want, np.ma.MaskedArray):
        assert np.ma.getmaskarray(got).tolist() == np.ma.getmaskarray(want).tolist()
    assert np.ma.getdata(got).tolist() == np.ma.getdata(want).tolist()


EPOCH = dt.datetime(1970, 1, 1)


def cells(col, n: int) -> list:
    """A column's values as plain Python, missing (None, masked, NaT, absent) as None."""
    if col is None:
        return [None] * n
    if isinstance(col, np.ma.MaskedArray):
        return [None if m else x for x, m in zip(np.ma.getdata(col).tolist(),
                                                  np.ma.getmaskarray(col).tolist())]
    if isinstance(col, np.ndarray) and col.dtype.kind == "M":
        return [None if np.isnat(x) else x.astype("datetime64[us]").astype(np.int64).item()
                for x in col]
    out = list(col.tolist() if isinstance(col, np.ndarray) else col)
    return [(None if np.isnat(x) else x.astype("datetime64[us]").astype(np.int64).item())
            if isinstance(x, np.datetime64) else x.item() if isinstance(x, np.generic)
            else (x - EPOCH) // dt.timedelta(microseconds=1) if isinstance(x, dt.datetime)
            else x for x in out]


def interleaved(which: list, a: dict, b: dict, key: str) -> list:
    """What row i of the merge must hold, from the definition: the next row of ``a`` where
    ``which[i]``, else the next row of ``b``."""
    ca, cb = cells(a.get(key), which.count(True)), cells(b.get(key), which.count(False))
    ia, ib, out = iter(ca), iter(cb), []
    for w in which:
        out.append(next(ia) if w else next(ib))
    return out


@pytest.mark.parametrize("seed", range(120))
def test_merge_columns_as_the_scatter(seed: int) -> None:
    rng = random.Random(seed)
    n_a = rng.choice([0, 1, 5, 200])
    n_b = rng.choice([0, 1, 3, 64, 65, 150]) if seed % 3 else rng.choice([0, 1, 2])
    which = [True] * n_a + [False] * n_b  # seed % 4 == 0: b rows at the end ($OrphanFiles)
    if seed % 4 == 1:  # b rows first
        which = which[::-1]
    else:
        rng.shuffle(which)
    a, b, kinds = {}, {}, {}
    for c in range(12):
        ka, kb = rng.choice(KINDS), rng.choice(KINDS)
        if seed % 5 == 0:
            kb = ka  # both sides of one kind
        kinds[f"c{c}"] = (ka, kb)
        if ka != "absent" or kb == "absent":
            a[f"c{c}"] = side(rng, ka, n_a)
        if kb != "absent":
            b[f"c{c}"] = side(rng, kb, n_b)
    want = reference(which, a, b)
    got = merge_columns(which, dict(a), dict(b))
    assert list(got) == list(want)
    for k in want:  # every cell from the definition, independent of the reference
        assert cells(got[k], len(which)) == interleaved(which, a, b, k), k
    for k in [k for k in want if kinds[k][0] != kinds[k][1] and "absent" not in kinds[k]]:
        del want[k]  # the reference cast one side's values into the other's dtype
    for k in want:
        if isinstance(want[k], list):
            assert plain(got[k]) == plain(want[k])
        elif isinstance(want[k], np.ndarray) and want[k].dtype == object:
            assert got[k].dtype == object and plain(got[k].tolist()) == plain(want[k].tolist())
        else:
            same(got[k], want[k])
    got = merge_columns(which, a, b, consume=True)
    assert a == {} and b == {}
