"""Decoders that several formats share, bounded by what the caller expects.

A compressed cluster, grain or extent says how much it holds only in its own header, which a
hostile image sets as it likes; these decoders stop at the size the caller's structure
allows, whatever the stream claims (no decompression bombs).
"""

from __future__ import annotations


def zstd_at_most(data: bytes, size: int, *, across_frames: bool = False) -> bytes:
    """At most ``size`` bytes decoded from the zstd stream ``data`` (the frames after the
    first too with ``across_frames``). Raises ImportError without the optional ``zstandard``
    package (callers name their extra) and ValueError for a stream that does not decode."""
    import zstandard  # optional extra: imported when a zstd stream is met

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(data,
                                                            read_across_frames=across_frames)
        with reader:
            parts, got = [], 0
            while got < size:
                chunk = reader.read(size - got)
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
        return b"".join(parts)
    except zstandard.ZstdError as e:
        raise ValueError(str(e)) from e
