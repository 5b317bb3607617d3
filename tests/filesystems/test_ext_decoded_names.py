"""``walk.decoded_names`` (a folder's names decoded in one call) against Python's decode
of each name alone, on random bytes: invalid and cut-short UTF-8 sequences, NULs, "/"
inside a name (a hostile image; decoded one at a time then)."""

from __future__ import annotations

import random

from vdinspect.filesystems.ext.walk import decoded_names

BYTES = [0x2F, 0x41, 0xE2, 0x82, 0xAC, 0xFF, 0xC3, 0xA9, 0x80, 0xF0, 0x9F, 0x98, 0x00, 0xED,
         0xA0]


def test_decoded_names_as_each_alone():
    rng = random.Random(23)
    for _ in range(5000):
        raw = [bytes(rng.choice(BYTES) for _ in range(rng.randrange(0, 9)))
               for _ in range(rng.randrange(0, 6))]
        assert decoded_names(raw) == [n.decode("utf-8", "surrogateescape") for n in raw]
    names = [f"file {i:05d} \u00e9\u20ac.txt".encode() for i in range(1000)] + [b"\xff\xfe"]
    assert decoded_names(names) == [n.decode("utf-8", "surrogateescape") for n in names]
