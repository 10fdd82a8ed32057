#!/usr/bin/env python3
"""System calls node:fs lacks, for the differential test agent.

renameat2 (RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT), mknod of FIFOs and
device nodes, utimensat with nanosecond times and UTIME_OMIT, and the multi-step
probes of probes.py. Python and ctypes
keep the agent independent of the code under test (the stratafs addon has these too).

    syscalls.py serve                       JSON requests on stdin, one per line;
                                            one JSON reply per line on stdout
    syscalls.py renameat2 OLD NEW [FLAG..]  FLAG = noreplace | exchange | whiteout
    syscalls.py mknod PATH fifo|chr|blk MODE [MAJOR MINOR]
    syscalls.py utimens PATH ATIME MTIME [nofollow]
                                            times as SEC.NSEC (9 digits) or "omit"
    syscalls.py fixtimes DIR...             deterministic times on every entry below
                                            each DIR (see fix_times)

A request is {"call": NAME, "args": {...}}; a reply is {"ok": true} or
{"err": "ENOENT"} (the errno code name). One-shot commands print the code of a
failure on stderr and exit 1.
"""
import ctypes
import errno
import hashlib
import json
import os
import stat
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import probes  # noqa: E402  (next to this file; -I leaves the script's directory off sys.path)

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
# include/uapi/linux/fs.h
RENAME_FLAGS = {"noreplace": 1 << 0, "exchange": 1 << 1, "whiteout": 1 << 2}
# include/uapi/linux/stat.h
UTIME_OMIT = (1 << 30) - 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
_libc.renameat2.restype = ctypes.c_int


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(Timespec), ctypes.c_int]
_libc.utimensat.restype = ctypes.c_int


def _check(rc):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def renameat2(old, new, flags=()):
    bits = 0
    for f in flags:
        bits |= RENAME_FLAGS[f]
    _check(_libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), bits))


def mknod(path, kind, mode="644", major=0, minor=0):
    fmt = {"fifo": stat.S_IFIFO, "chr": stat.S_IFCHR, "blk": stat.S_IFBLK}[kind]
    os.mknod(path, fmt | int(mode, 8), os.makedev(major, minor) if kind != "fifo" else 0)


def _timespec(t):
    """A time as [sec, nsec], or "omit"."""
    if t == "omit":
        return Timespec(0, UTIME_OMIT)
    return Timespec(int(t[0]), int(t[1]))


def utimens(path, atime, mtime, nofollow=False):
    times = (Timespec * 2)(_timespec(atime), _timespec(mtime))
    _check(_libc.utimensat(AT_FDCWD, os.fsencode(path), times, AT_SYMLINK_NOFOLLOW if nofollow else 0))


def fixture_time(key):
    """A time far from now (2001..2002) with a nanosecond part, derived from KEY."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return [1_000_000_000 + h % 30_000_000, (h >> 32) % 1_000_000_000]


def fix_times(root):
    """Give every entry below ROOT (ROOT included) a time from its layer name and path,
    so that two copies of the layers carry equal times and a copy-up that loses them
    shows. Children first: setting a time on a child does not touch the parent's, but
    creating entries does."""
    layer = os.path.basename(os.path.normpath(root))
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            utimens(p, fixture_time(f"{layer}/{rel}/a"), fixture_time(f"{layer}/{rel}/m"), nofollow=True)
    utimens(root, fixture_time(f"{layer}/./a"), fixture_time(f"{layer}/./m"), nofollow=True)


CALLS = {
    "renameat2": lambda a: renameat2(a["from"], a["to"], a.get("flags", [])),
    "mknod": lambda a: mknod(a["path"], a["kind"], a.get("mode", "644"), a.get("major", 0), a.get("minor", 0)),
    "utimens": lambda a: utimens(a["path"], a["atime"], a["mtime"], a.get("nofollow", False)),
    "probe": lambda a: probes.probe(a["root"], a["name"], a.get("args")),
}


def code(e):
    return errno.errorcode.get(e.errno, f"ERRNO{e.errno}") if isinstance(e, OSError) and e.errno else f"THROWN:{e}"


def serve():
    for line in sys.stdin:
        req = json.loads(line)
        try:
            value = CALLS[req["call"]](req["args"])
            reply = {"ok": True} if value is None else {"ok": True, "value": value}
        except Exception as e:  # every failure becomes a reply, the loop goes on
            reply = {"err": code(e)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def parse_time(s):
    if s == "omit":
        return s
    sec, _, nsec = s.partition(".")
    return [int(sec), int(nsec.ljust(9, "0")) if nsec else 0]


def main(argv):
    cmd, args = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if cmd == "serve":
            serve()
        elif cmd == "renameat2" and len(args) >= 2:
            renameat2(args[0], args[1], args[2:])
        elif cmd == "mknod" and len(args) in (3, 5):
            mknod(args[0], args[1], args[2], *(int(x) for x in args[3:]))
        elif cmd == "utimens" and len(args) in (3, 4):
            utimens(args[0], parse_time(args[1]), parse_time(args[2]), args[3:] == ["nofollow"])
        elif cmd == "fixtimes" and args:
            for root in args:
                fix_times(root)
        else:
            sys.stderr.write(__doc__)
            return 2
    except OSError as e:
        sys.stderr.write(f"{code(e)}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
