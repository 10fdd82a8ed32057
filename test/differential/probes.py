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
import subprocess
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


def _mount_options(root):
    """The per-mount options of the mount at ROOT (mountinfo field 6)."""
    root = os.path.realpath(root)
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" ")
            at = fields[4].encode().decode("unicode_escape")
            if at == root:
                found = fields[5].split(",")
    return found


FLAG_WORDS = {"ro", "rw", "nosuid", "nodev", "noexec", "noatime", "nodiratime", "relatime"}


def mount_flags(root, _args):
    """The mount's flags as the kernel shows them (strictatime: neither noatime nor relatime)."""
    return sorted(w for w in _mount_options(root) or [] if w in FLAG_WORDS)


def _run(fd_or_path, argv, uid=None):
    """Executes a program (an fd: fexecve) as root or as OTHER_UID; its stdout, or the
    errno code of the exec."""
    r, w = os.pipe()
    er, ew = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.close(er)
            if uid is not None:
                os.setgroups([])
                os.setgid(OTHER_GID)
                os.setuid(uid)
            os.dup2(w, 1)
            os.execve(fd_or_path, argv, {"PATH": "/usr/bin:/bin"})
        except OSError as e:
            os.write(ew, code(e).encode())
        finally:
            os._exit(127)
    os.close(w)
    os.close(ew)
    out = os.read(r, 4096).decode().strip()
    err = os.read(er, 4096).decode()
    os.close(r)
    os.close(er)
    os.waitpid(pid, 0)
    return err or out


def setuid_exec(root, _args):
    """A setuid-root copy of id(1) run by another user: euid 0 unless the mount is nosuid."""
    p = os.path.join(root, "suid-id")
    with open("/usr/bin/id", "rb") as src, open(p, "wb") as dst:
        dst.write(src.read())
    os.chown(p, 0, 0)
    os.chmod(p, 0o4755)
    fd = os.open(p, os.O_RDONLY)
    try:
        return {"euid of the other user": _run(fd, ["id", "-u"], uid=OTHER_UID).replace(str(OTHER_UID), "OTHER")}
    finally:
        os.close(fd)


def device_open(root, _args):
    """A character device node (1:3, /dev/null) made in the mount, opened and written by root."""
    p = os.path.join(root, "null-dev")
    os.mknod(p, stat.S_IFCHR | 0o666, os.makedev(1, 3))

    def use():
        fd = os.open(p, os.O_WRONLY)
        try:
            return os.write(fd, b"x")
        finally:
            os.close(fd)
    return {"open and write": attempt(use), "read": attempt(lambda: open(p, "rb").read(1).hex())}


def exec_atime(root, _args):
    """A program executed (and a file read) with an old atime: is the atime still the old one?"""
    old = 1_000_000_000 * 10**9 + 123
    out = {}
    p = os.path.join(root, "exec-me")
    with open("/usr/bin/true", "rb") as src, open(p, "wb") as dst:
        dst.write(src.read())
    os.chmod(p, 0o755)
    os.utime(p, ns=(old, os.stat(p).st_mtime_ns))
    out["exec"] = _run(p, ["true"]) or "ran"
    out["atime kept after exec"] = os.stat(p).st_atime_ns == old
    q = fresh(root, "read-me")
    os.utime(q, ns=(old, os.stat(q).st_mtime_ns))
    with open(q, "rb") as f:
        f.read()
    out["atime kept after read"] = os.stat(q).st_atime_ns == old
    return out


def exec_lower(root, args):
    """Executes a file of a lower layer (a shell script) as root: its output, or the errno."""
    return _run(os.path.join(root, args["path"]), [args["path"]])


def _as_other(fn):
    """fn() in a child process as OTHER_UID/OTHER_GID with no supplementary groups: its
    result (attempt()) as a string."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(OTHER_GID)
            os.setuid(OTHER_UID)
            os.write(w, str(attempt(fn)).encode())
        finally:
            os._exit(0)
    os.close(w)
    out = os.read(r, 4096).decode()
    os.close(r)
    os.waitpid(pid, 0)
    return out


# What another user (not the owner, not in the group) does to a file through an fd root
# opened for it (the test directories are private to root) or its /proc/self/fd link.
KILL_ACTIONS = {
    "write": lambda fd: os.write(fd, b"w"),
    "pwrite at 4096": lambda fd: os.pwrite(fd, b"w", 4096),
    "truncate": lambda fd: os.truncate(f"/proc/self/fd/{fd}", 3),
    "ftruncate": lambda fd: os.ftruncate(fd, 5),
    "fallocate": lambda fd: os.posix_fallocate(fd, 0, 8192),
    "open O_TRUNC": lambda fd: os.close(os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_TRUNC)),
}


def _mode_after(p, fn, open_flags=os.O_RDWR):
    fd = os.open(p, open_flags)
    try:
        res = _as_other(lambda: fn(fd))
    finally:
        os.close(fd)
    return f"{res} -> {oct(stat.S_IMODE(os.stat(p).st_mode))}"


def setid_clearing(root, args):
    """Files of root with set-id MODES, changed by another user (KILL_ACTIONS), and chmod
    by an owner outside the file's group: the modes afterwards. A file of a lower layer
    (args.lower, mode set first by root) goes through copy-up."""
    out = {}
    for mode in args["modes"]:
        for name, action in KILL_ACTIONS.items():
            p = fresh(root, f"setid-{mode}-{name.replace(' ', '-')}", b"0123456789")
            os.chmod(p, int(mode, 8))
            out[f"{mode} {name}"] = _mode_after(p, action)
    for mode in args["modes"]:
        # chmod by the owner, who is not in the file's group (root's group 0)
        p = fresh(root, f"setid-{mode}-chmod")
        os.chown(p, OTHER_UID, 0)
        out[f"{mode} chmod by a non-member owner"] = _mode_after(p, lambda fd: os.fchmod(fd, int(mode, 8)), os.O_RDONLY)
        if args.get("acl"):
            q = fresh(root, f"setid-{mode}-chmod-acl")
            os.chown(q, OTHER_UID, 0)
            os.setxattr(q, "system.posix_acl_access", _acl(user_rwx=1234))
            out[f"{mode} chmod with an ACL by a non-member owner"] = _mode_after(q, lambda fd: os.fchmod(fd, int(mode, 8)), os.O_RDONLY)
    for lower in args.get("lower", []):
        p = os.path.join(root, lower)
        os.chmod(p, 0o6777)
        out[f"lower {lower} write"] = _mode_after(p, KILL_ACTIONS["write"])
    return out


def _acl(user_rwx):
    """system.posix_acl_access: user::rw-, user:UID:rwx, group::r--, mask::rwx, other::r--."""
    import struct
    entries = [(0x01, 6, 0xFFFFFFFF), (0x02, 7, user_rwx), (0x04, 4, 0xFFFFFFFF), (0x10, 7, 0xFFFFFFFF), (0x20, 4, 0xFFFFFFFF)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, ident) for tag, perm, ident in entries)


def mmap_times(root, args):
    """A store through a shared writable mapping, then msync and munmap: do mtime and
    ctime move (from an old mtime, and from the ctime before)? For a new file and a file
    of a lower layer (args.lower, copied up by the open for write)."""
    old = 1_000_000_000 * 10**9 + 7
    out = {}
    paths = [fresh(root, "mmap-new", b"0123456789" * 500)] + [os.path.join(root, p) for p in args.get("lower", [])]
    for p in paths:
        os.utime(p, ns=(old, old))
        fd = os.open(p, os.O_RDWR)
        try:
            before = os.fstat(fd)
            time.sleep(0.05)
            m = mmap.mmap(fd, 4096 if before.st_size >= 4096 else before.st_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            m[0:4] = b"MMAP"
            at_store = os.fstat(fd)
            if args.get("msync", True):
                m.flush()
            m.close()
            after = os.fstat(fd)
        finally:
            os.close(fd)
        final = os.stat(p)
        name = os.path.relpath(p, root)
        if args.get("atStore", True):
            out[f"{name} mtime moved at the store"] = at_store.st_mtime_ns != old
            out[f"{name} ctime moved at the store"] = at_store.st_ctime_ns != before.st_ctime_ns
        out[f"{name} mtime moved"] = after.st_mtime_ns != old
        out[f"{name} ctime moved"] = after.st_ctime_ns != before.st_ctime_ns
        out[f"{name} mtime moved (stat after close)"] = final.st_mtime_ns != old
        with open(p, "rb") as f:
            out[f"{name} data"] = f.read(4).decode("latin1")
    return out


STRATAFS_BIN = os.environ.get("STRATAFS_BIN") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bin", "stratafs")


def remount(root, args):
    """`mount -o remount,OPTS` for each of args.steps: kernel overlayfs through mount(8);
    stratafs as mount(8) reaches it through mount.fuse (`stratafs SOURCE MNT -o
    OPTS,remount,dev,suid`). The exit status, the flags afterwards and whether a file can
    be created."""
    fstype = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" ")
            if fields[4].encode().decode("unicode_escape") == os.path.realpath(root):
                fstype = fields[fields.index("-") + 1]
    out = {}
    for i, opts in enumerate(args["steps"]):
        if fstype == "overlay":
            cmd = ["mount", "-o", f"remount,{opts}", root]
        else:
            cmd = [STRATAFS_BIN, "stratafs", root, "-o", f"{opts},remount,dev,suid"]
        rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60).returncode
        out[f"{i} remount {opts}"] = {
            "status": rc,
            "flags": mount_flags(root, None),
            "create": attempt(lambda: os.close(os.open(os.path.join(root, f"after-remount-{i}"), os.O_CREAT | os.O_WRONLY, 0o644))),
        }
    return out


PROBES = {
    "int64-truncate": int64_truncate,
    "int64-read": int64_read,
    "int64-write": int64_write,
    "int64-lseek": int64_lseek,
    "int64-lseek-past-maxbytes": int64_lseek_past_maxbytes,
    "int64-fallocate": int64_fallocate,
    "int64-copy-file-range": int64_copy_file_range,
    "rename-over-open": rename_over_open,
    "mount-flags": mount_flags,
    "setuid-exec": setuid_exec,
    "device-open": device_open,
    "exec-atime": exec_atime,
    "exec-lower": exec_lower,
    "setid-clearing": setid_clearing,
    "mmap-times": mmap_times,
    "remount": remount,
}


def probe(root, name, args):
    return PROBES[name](root, args or {})
