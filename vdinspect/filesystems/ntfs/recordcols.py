"""The MFT scan's column-wise fast path: a chunk's plain file records decoded with numpy.

Most records of a big volume are one shape: $STANDARD_INFORMATION, one $FILE_NAME, one
unnamed $DATA (resident, or non-resident, in use, neither compressed nor sparse), the end
marker, perhaps a resident $SECURITY_DESCRIPTOR before the $DATA. Their fields are read for the whole chunk at once (structured dtypes derived from
the declarations through layout.numpy_dtype, gathered at each record's own offsets) and
every check :func:`.catalog.quick_info` makes is made on the columns; the records that
pass get the Info quick_info would give, the others go the record-by-record way.
"""

from __future__ import annotations

import numpy as np
from construct import Struct

from ...layout import numpy_dtype, offset_of
from .attributes import FileName, FileNameAttr, StandardInformation, StdInfo, utf16_decode
from .mft import (
    AT_DATA,
    AT_END,
    AT_FILE_NAME,
    AT_SECURITY_DESCRIPTOR,
    AT_STANDARD_INFORMATION,
    ATTR_COMPRESSED,
    ATTR_SPARSE,
    COMPRESSED_SIZE_AT,
    MREF_MASK,
    REC_IN_USE,
    RECORD_HEAD,
    RESIDENT_END,
    AttributeHeader,
    FileRecordHeader,
    NonResidentForm,
    ResidentForm,
)

HEAD = numpy_dtype(FileRecordHeader)
RESIDENT = numpy_dtype(Struct(*AttributeHeader.subcons, *ResidentForm.subcons))
NONRESIDENT = numpy_dtype(Struct(*AttributeHeader.subcons, *NonResidentForm.subcons))
SI_HEAD = numpy_dtype(Struct(*StandardInformation.subcons[:5]))  # times and attributes
SI_IDS = numpy_dtype(Struct(*StandardInformation.subcons[8:10]))  # owner and security ids
SI_IDS_AT = offset_of(StandardInformation, "owner_id")
FN_HEAD = numpy_dtype(Struct(*FileName.subcons[:-1]))  # 66 bytes, then the name
END = numpy_dtype(Struct(AttributeHeader.type))
LIMIT = 1 << 62  # sizes and VCNs at or past this are garbage (quick_info's bound)


def gather(arr: np.ndarray, rows: np.ndarray, at: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Per row of ``arr`` (records), the ``dtype`` record at byte ``at`` of that row
    (clipped inside the record: the caller masks what lies past ``bytes_in_use``)."""
    size = dtype.itemsize
    at = np.clip(at, 0, arr.shape[1] - size)
    return np.ascontiguousarray(arr[rows[:, None], at[:, None] + np.arange(size)]).view(
        dtype).ravel()


def _resident(a: np.ndarray, at: np.ndarray, used: np.ndarray, atype: int) -> np.ndarray:
    """Where ``a`` (resident heads at ``at``) is an unnamed resident ``atype`` attribute
    whose value lies inside it, and it inside the bytes in use."""
    length = a["length"].astype(np.int64)
    return ((a["type"] == atype) & (a["non_resident"] == 0) & (a["name_length"] == 0)
            & (length >= RESIDENT_END) & (length & 7 == 0) & (at + length <= used)
            & (a["value_offset"].astype(np.int64) + a["value_length"] <= length))


def plain_infos(arr: np.ndarray, usable: np.ndarray, first_number: int, info_type) -> dict:
    """``{row: Info}`` of the chunk's rows (``usable``: fixed up) that are plain file
    records; ``info_type`` is catalog.Info (passed in: catalog imports this module)."""
    rs = arr.shape[1]
    rows = np.flatnonzero(usable)
    if not len(rows) or rs < HEAD.itemsize:
        return {}
    h = np.ascontiguousarray(arr[rows, : HEAD.itemsize]).view(HEAD).ravel()
    first = h["attrs_offset"].astype(np.int64)
    used = h["bytes_in_use"].astype(np.int64)
    ok = (((h["base_mft_record"] & MREF_MASK) == 0) & (first >= RECORD_HEAD) & (first & 7 == 0)
          & (used <= rs) & (used >= first))
    a1 = gather(arr, rows, first, RESIDENT)
    ok &= _resident(a1, first, used, AT_STANDARD_INFORMATION)
    ok &= a1["value_length"] >= SI_HEAD.itemsize
    si_at = first + a1["value_offset"]
    o2 = first + a1["length"]
    a2 = gather(arr, rows, o2, RESIDENT)
    ok &= _resident(a2, o2, used, AT_FILE_NAME)
    fn_at = o2 + a2["value_offset"]
    fn = gather(arr, rows, fn_at, FN_HEAD)
    fn_len = fn["file_name_length"].astype(np.int64)
    ok &= (a2["value_length"] >= FN_HEAD.itemsize) & (
        FN_HEAD.itemsize + 2 * fn_len <= a2["value_length"])
    o3 = o2 + a2["length"]
    # then, optionally, a resident $SECURITY_DESCRIPTOR (ntfs-3g writes one per file)
    sd = gather(arr, rows, o3, RESIDENT)
    o3 = np.where(_resident(sd, o3, used, AT_SECURITY_DESCRIPTOR), o3 + sd["length"], o3)
    a3 = gather(arr, rows, o3, RESIDENT)
    n3 = gather(arr, rows, o3, NONRESIDENT)
    res3 = _resident(a3, o3, used, AT_DATA)
    len3 = n3["length"].astype(np.int64)
    in_use = (h["flags"] & REC_IN_USE) != 0
    big = np.maximum(np.maximum(n3["allocated_size"], n3["data_size"]), n3["initialized_size"])
    nonres3 = ((n3["type"] == AT_DATA) & (n3["non_resident"] != 0) & (n3["name_length"] == 0)
               & (len3 >= COMPRESSED_SIZE_AT) & (len3 & 7 == 0) & (o3 + len3 <= used)
               & in_use & ((n3["flags"] & (ATTR_COMPRESSED | ATTR_SPARSE)) == 0)
               & (big < LIMIT) & (n3["data_size"] <= n3["allocated_size"])
               & (n3["initialized_size"] <= n3["allocated_size"]) & (n3["lowest_vcn"] == 0)
               & (n3["highest_vcn"] < LIMIT) & (n3["highest_vcn"] >= -1)
               & (n3["mapping_pairs_offset"] >= COMPRESSED_SIZE_AT)
               & (n3["mapping_pairs_offset"].astype(np.int64) <= len3))
    ok &= res3 | nonres3
    o4 = o3 + np.where(res3, a3["length"], len3)
    ok &= (o4 + END.itemsize <= used) & (gather(arr, rows, o4, END)["type"] == AT_END)
    pick = np.flatnonzero(ok)
    if not len(pick):
        return {}
    si = gather(arr, rows[pick], si_at[pick], SI_HEAD)
    ids = gather(arr, rows[pick], si_at[pick] + SI_IDS_AT, SI_IDS)
    has_ids = (a1["value_length"][pick] >= SI_IDS_AT + SI_IDS.itemsize).tolist()
    fn = fn[pick]
    size = np.where(res3, a3["value_length"], n3["data_size"])[pick].tolist()
    alloc = np.where(res3, 0, n3["allocated_size"])[pick].tolist()
    cols = [x.tolist() for x in (
        rows[pick], h["sequence_number"][pick], h["flags"][pick], h["link_count"][pick],
        si["creation_time"], si["last_data_change_time"], si["last_mft_change_time"],
        si["last_access_time"], si["file_attributes"], ids["owner_id"], ids["security_id"],
        fn["parent_directory"], fn["creation_time"], fn["last_data_change_time"],
        fn["last_mft_change_time"], fn["last_access_time"], fn["allocated_size"],
        fn["data_size"], fn["file_attributes"], fn["reparse_or_ea"], fn["file_name_type"],
        fn_at[pick] + FN_HEAD.itemsize, fn_len[pick], a3["flags"][pick], a3["instance"][pick])]
    out = {}
    for k, (row, seq, flags, links, c, m, ch, a, fa, owner, sec, pref, fc, fm, fch, fa_,
            falloc, fsize, fattr, rp, ns, name_at, nlen, dflags, inst) in enumerate(zip(*cols)):
        std = StdInfo(c, m, ch, a, fa, owner, sec) if has_ids[k] else StdInfo(c, m, ch, a, fa)
        name = utf16_decode(arr[row].data[name_at : name_at + 2 * nlen], "replace")[0]
        out[row] = info_type(
            first_number + row, seq, flags, links, std,
            [FileNameAttr(pref & MREF_MASK, pref >> 48, name, ns, fc, fm, fch, fa_, falloc,
                          fsize, fattr, rp)],
            [("", size[k], alloc[k], dflags, inst)], None, None, None, None, False)
    return out
