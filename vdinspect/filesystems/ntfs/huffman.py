"""Canonical Huffman decode tables, as XPRESS Huffman ([MS-XCA] 2.1) and LZX use them.

Codes are assigned by length, then by symbol (the canonical order both formats send only
the code lengths of). A table maps every ``bits``-bit prefix of the bit stream to the
symbol whose code starts it and that code's length.
"""

from __future__ import annotations


class HuffmanError(ValueError):
    """Code lengths that do not make a usable prefix code."""


def huffman_table(lengths, bits: int, shift: int) -> list[int]:
    """Canonical Huffman decode table over ``bits``-bit prefixes (codes by length, then
    symbol): entry = (symbol << shift) | length, 0 for prefixes no code uses."""
    table = [0] * (1 << bits)
    pos = 0
    for length, sym in sorted((n, s) for s, n in enumerate(lengths) if n):
        if length > bits:
            raise HuffmanError(f"code length {length} longer than {bits} bits")
        span = 1 << (bits - length)
        if pos + span > 1 << bits:
            raise HuffmanError("Huffman code lengths over-subscribe the code space")
        table[pos : pos + span] = [(sym << shift) | length] * span
        pos += span
    return table
