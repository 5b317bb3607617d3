"""On-disk records the guest inspection reads: the login records of utmp/wtmp/lastlog
(glibc's ``struct utmp`` and ``struct lastlog`` on 64-bit Linux) and the header blob rpm
keeps per package (rpm's "header structure": an index of tags, then their data).
"""

from __future__ import annotations

from construct import Array, Bytes, Int16sl, Int32sb, Int32sl, Int32ub, Struct

#: ``ut_type`` values (utmp.h)
RUN_LVL, BOOT_TIME, USER_PROCESS, DEAD_PROCESS = 1, 2, 7, 8

Utmp = Struct(
    "ut_type" / Int16sl * "record kind: 1 run level (shutdown), 2 boot, 7 login, 8 logout",
    "pad" / Bytes(2) * "alignment",
    "ut_pid" / Int32sl * "process id",
    "ut_line" / Bytes(32) * "terminal name (tty), NUL-padded",
    "ut_id" / Bytes(4) * "terminal suffix or inittab id",
    "ut_user" / Bytes(32) * "user name (or 'reboot'/'shutdown'), NUL-padded",
    "ut_host" / Bytes(256) * "remote host or kernel version, NUL-padded",
    "e_termination" / Int16sl * "exit status: termination",
    "e_exit" / Int16sl * "exit status: exit code",
    "ut_session" / Int32sl * "session id",
    "tv_sec" / Int32sl * "time, seconds since 1970 (UTC)",
    "tv_usec" / Int32sl * "time, microseconds",
    "ut_addr_v6" / Array(4, Int32ub) * "remote IPv4/IPv6 address",
    "unused" / Bytes(20) * "reserved",
)  # 384 bytes

LastLog = Struct(
    "ll_time" / Int32sl * "last login, seconds since 1970 (0: never); the record of uid N "
                          "is the Nth",
    "ll_line" / Bytes(32) * "terminal",
    "ll_host" / Bytes(256) * "remote host",
)  # 292 bytes

RpmHeaderIntro = Struct(
    "il" / Int32ub * "index entries (tags)",
    "dl" / Int32ub * "data bytes after the index",
)

RpmIndexEntry = Struct(
    "tag" / Int32sb * "tag number (1000 NAME, 1001 VERSION, ...)",
    "type" / Int32ub * "data type: 4 INT32, 6 STRING, 8 STRING_ARRAY, 9 I18NSTRING, ...",
    "offset" / Int32sb * "offset of the data in the data area, bytes",
    "count" / Int32ub * "number of items",
)

#: rpm tags read, by name
RPMTAG = {"name": 1000, "version": 1001, "release": 1002, "epoch": 1003, "summary": 1004,
          "installtime": 1008, "size": 1009, "vendor": 1011, "license": 1014, "arch": 1022}
RPM_INT32, RPM_STRING, RPM_STRING_ARRAY, RPM_I18NSTRING = 4, 6, 8, 9
