"""Multi-step probes for the differential agent: sequences of system calls that one op
cannot express (an fd held across a rename, a 64-bit offset node:fs would round, a
write by another user, a store through a shared mapping). Each probe takes the mount
root and returns a JSON value that must be the same on kernel overlayfs and stratafs:
errno code names, sizes, modes and booleans, never inode numbers or times.

Probes run in the syscalls.py co-process (python3, ctypes): independent of the code
under test. Probes that act as another user fork, drop to that user in the child and
report through a pipe, so the co-process stays root.
"""
import errno
import mmap
import os
import stat
import time

# The edges of issue 14: around the largest integer a double holds exactly, the largest
# loff_t, and a negative offset.
EDGES = [2**53 - 1, 2**53, 2**53 + 1, 2**62, 2**63 - 1, -1]
# A user that is neither the owner of the probe files nor in their group.
OTHER_UID = 40123
OTHER_GID = 40123


def code(e):
    return errno.errorcode.get(e.errno, f"ERRNO{e.errno}")


def attempt(fn):
    """fn()'s value (ints as strings: JSON numbers would round on the Node side), or the errno code."""
    try:
        v = fn()
    except OSError as e:
        return code(e)
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return "ok" if v is None else v


def fresh(root, name, data=b"0123456789"):
    p = os.path.join(root, name)
    with open(p, "wb") as f:
        f.write(data)
    return p


def int64_truncate(root, _args):
    p = fresh(root, "int64-truncate")
    out = {}
    for size in EDGES + [2**40 + 1]:
        out[f"truncate {size}"] = attempt(lambda: os.truncate(p, size))
        out[f"size after {size}"] = os.stat(p).st_size
        fd = os.open(p, os.O_RDWR)
        try:
            out[f"ftruncate {size}"] = attempt(lambda: os.ftruncate(fd, size))
            out[f"fstat size after {size}"] = os.fstat(fd).st_size
        finally:
            os.close(fd)
    os.truncate(p, 10)
    return {k: str(v) for k, v in out.items()}


def int64_read(root, _args):
    p = fresh(root, "int64-read")
    out = {}
    fd = os.open(p, os.O_RDONLY)
    try:
        for off in EDGES:
            out[f"pread {off}"] = attempt(lambda: os.pread(fd, 4, off).hex())
    finally:
        os.close(fd)
    return out


def int64_write(root, _args):
    p = fresh(root, "int64-write")
    out = {}
    fd = os.open(p, os.O_RDWR)
    try:
        for off in EDGES:
            out[f"pwrite {off}"] = attempt(lambda: os.pwrite(fd, b"x", off))
        out["size"] = str(os.fstat(fd).st_size)
    finally:
        out["close"] = attempt(lambda: os.close(fd))
    return out


def _lseeks(root, name, offsets, whences):
    p = fresh(root, name)
    os.truncate(p, 2**40)
    out = {}
    fd = os.open(p, os.O_RDWR)
    try:
        os.pwrite(fd, b"tail", 2**40 - 4)
        # on the disk before SEEK_DATA asks the filesystem (with the FUSE writeback
        # cache the kernel does not flush first: a separate matter, see the README)
        os.fsync(fd)
        for off in offsets:
            for wname in whences:
                os.lseek(fd, 0, os.SEEK_SET)
                out[f"{wname} {off}"] = attempt(lambda: os.lseek(fd, off, getattr(os, f"SEEK_{wname}")))
    finally:
        os.close(fd)
    return out


def int64_lseek(root, _args):
    """SEEK_DATA/SEEK_HOLE (answered by the filesystem) at every edge; SEEK_SET/CUR/END
    where the result stays within what the upper filesystem allows."""
    within = [-1, 0, 2**40 - 8, 2**40 - 1, -(2**40)]
    out = _lseeks(root, "int64-lseek", EDGES + within, ["DATA", "HOLE"])
    out.update(_lseeks(root, "int64-lseek-2", within, ["SET", "CUR", "END"]))
    return out


def int64_lseek_past_maxbytes(root, _args):
    """SEEK_SET/CUR/END to positions past the upper filesystem's largest file size."""
    return _lseeks(root, "int64-lseek-3", EDGES, ["SET", "CUR", "END"])


def int64_fallocate(root, _args):
    p = fresh(root, "int64-fallocate")
    out = {}
    fd = os.open(p, os.O_RDWR)
    try:
        for off in EDGES + [2**40]:
            for length in (1, 2**53 + 1, 2**63 - 1):
                out[f"fallocate {off}+{length}"] = attempt(lambda: os.posix_fallocate(fd, off, length))
        out["size"] = str(os.fstat(fd).st_size)
    finally:
        os.close(fd)
    return out


def int64_copy_file_range(root, _args):
    src = fresh(root, "int64-cfr-src", b"abcdefghij" * 100)
    dst = fresh(root, "int64-cfr-dst")
    out = {}
    fi = os.open(src, os.O_RDONLY)
    fo = os.open(dst, os.O_RDWR)
    try:
        for off in EDGES + [2**40]:
            out[f"out at {off}"] = attempt(lambda: os.copy_file_range(fi, fo, 100, 0, off))
            out[f"in at {off}"] = attempt(lambda: os.copy_file_range(fi, fo, 100, off, 0))
        for length in (2**53 + 1, 2**63 - 1):
            out[f"length {length}"] = attempt(lambda: os.copy_file_range(fi, fo, length, 0, 2000))
        out["size"] = str(os.fstat(fo).st_size)
    finally:
        os.close(fi)
        os.close(fo)
    return out


def _fstat_view(fd):
    st = os.fstat(fd)
    return {"type": stat.S_IFMT(st.st_mode), "mode": oct(stat.S_IMODE(st.st_mode)), "nlink": st.st_nlink}


def rename_over_open(root, args):
    """rename(A, B) over a B another fd holds open: that fd keeps answering fstat (and,
    for a file, read), like an unlinked open file. B is new, or an entry of a lower."""
    kind = args["kind"]
    a = os.path.join(root, args["from"])
    b = os.path.join(root, args["to"])
    if kind == "dir":
        os.mkdir(a)
    else:
        fresh(root, args["from"], b"new")
    if args.get("createTo", True):
        if kind == "dir":
            os.mkdir(b)
        else:
            fresh(root, args["to"], b"old")
    fd = os.open(b, os.O_RDONLY | (os.O_DIRECTORY if kind == "dir" else 0))
    try:
        before = _fstat_view(fd)
        os.rename(a, b)
        out = {"before": before, "after": attempt(lambda: _fstat_view(fd))}
        if kind == "dir":
            out["listing"] = attempt(lambda: sorted(os.listdir(fd)))
        else:
            out["read"] = attempt(lambda: os.pread(fd, 64, 0).hex())
        out["name now"] = attempt(lambda: _fstat_view_path(b))
        return out
    finally:
        os.close(fd)


def _fstat_view_path(p):
    st = os.lstat(p)
    return {"type": stat.S_IFMT(st.st_mode), "nlink": st.st_nlink}


PROBES = {
    "int64-truncate": int64_truncate,
    "int64-read": int64_read,
    "int64-write": int64_write,
    "int64-lseek": int64_lseek,
    "int64-lseek-past-maxbytes": int64_lseek_past_maxbytes,
    "int64-fallocate": int64_fallocate,
    "int64-copy-file-range": int64_copy_file_range,
    "rename-over-open": rename_over_open,
}


def probe(root, name, args):
    return PROBES[name](root, args or {})
