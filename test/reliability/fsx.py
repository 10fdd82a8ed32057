"""fsx-style exerciser: random operations on one file through a mount, each checked
against an in-memory model of the file.

    python3 fsx.py CONFIG_JSON

CONFIG: {"path": file in the mount (exists: it starts in a lower layer),
         "seed": int, "ops": int, "maxlen": largest file size,
         "falloc": {"KEEP_SIZE": n, "PUNCH_HOLE": n, "ZERO_RANGE": n}}   (from the addon)

Operations: read, write (also past the end: a hole), append (O_APPEND), truncate (grow
and shrink), fallocate (growing, KEEP_SIZE), punch hole, zero range, mmap write, and
reopening the file. The file is opened read-only until the first change (which copies
it up). After every operation the size (fstat and stat by path) and the whole content
are compared with the model. On the first difference it prints the seed, the op number
and the last operations, and exits 1; otherwise one JSON line of counts.
"""
import ctypes
import json
import mmap
import os
import random
import sys

cfg = json.loads(sys.argv[1])
path, seed, nops, maxlen = cfg['path'], cfg['seed'], cfg['ops'], cfg['maxlen']
FL = cfg['falloc']
rng = random.Random(seed)
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]

with open(path, 'rb') as f:
    model = bytearray(f.read())
history = []
counts = {}
fd = os.open(path, os.O_RDONLY)
writable = False


def die(msg):
    print(f'fsx: seed {seed}: op {len(history)}: {msg}', file=sys.stderr)
    for h in history[-15:]:
        print(f'  {h}', file=sys.stderr)
    sys.exit(1)


def rw():
    """The first change opens the file read-write: that copies it up."""
    global fd, writable
    if not writable:
        os.close(fd)
        fd = os.open(path, os.O_RDWR)
        writable = True


def data(n):
    return rng.randbytes(n)


def grow_to(n):
    if n > len(model):
        model.extend(b'\0' * (n - len(model)))


def falloc(mode, off, length):
    if libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        die(f'fallocate mode {mode} {off}+{length}: {os.strerror(e)}')


def op_read():
    off = rng.randrange(0, len(model) + 100)
    n = rng.randrange(1, 70000)
    got = os.pread(fd, n, off)
    want = bytes(model[off:off + n])
    if got != want:
        die(f'read {off}+{n}: got {len(got)} bytes, want {len(want)}')
    return f'read {off}+{n}'


def op_write():
    rw()
    off = rng.randrange(0, min(maxlen - 1, len(model) + 40000))
    n = rng.randrange(1, min(65536, maxlen - off) + 1)
    b = data(n)
    if os.pwrite(fd, b, off) != n:
        die('short write')
    grow_to(off + n)
    model[off:off + n] = b
    return f'write {off}+{n}'


def op_append():
    rw()
    n = rng.randrange(1, 20000)
    if len(model) + n > maxlen:
        return op_truncate()
    b = data(n)
    afd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(afd, b)
    finally:
        os.close(afd)
    model.extend(b)
    return f'append {n}'


def op_truncate():
    rw()
    n = rng.randrange(0, maxlen)
    os.ftruncate(fd, n)
    if n < len(model):
        del model[n:]
    grow_to(n)
    return f'truncate {n}'


def op_fallocate():
    rw()
    off = rng.randrange(0, maxlen - 1)
    n = rng.randrange(1, min(65536, maxlen - off) + 1)
    keep = rng.random() < 0.5
    falloc(FL['KEEP_SIZE'] if keep else 0, off, n)
    if not keep:
        grow_to(off + n)
    return f'fallocate {"keep " if keep else ""}{off}+{n}'


def op_punch():
    rw()
    if not model:
        return op_write()
    off = rng.randrange(0, len(model))
    n = rng.randrange(1, 70000)
    zero = rng.random() < 0.3
    if zero:
        falloc(FL['ZERO_RANGE'] | FL['KEEP_SIZE'], off, n)
    else:
        falloc(FL['PUNCH_HOLE'] | FL['KEEP_SIZE'], off, n)
    end = min(off + n, len(model))
    model[off:end] = b'\0' * (end - off)
    return f'{"zero range" if zero else "punch hole"} {off}+{n}'


def op_mmap():
    rw()
    if not model:
        return op_write()
    off = rng.randrange(0, len(model))
    n = rng.randrange(1, min(30000, len(model) - off) + 1)
    b = data(n)
    with mmap.mmap(fd, len(model), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
        m[off:off + n] = b
        m.flush()
    model[off:off + n] = b
    return f'mmap write {off}+{n}'


def op_reopen():
    global fd
    os.close(fd)
    fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
    return 'reopen'


OPS = [(op_read, 20), (op_write, 25), (op_append, 8), (op_truncate, 8), (op_fallocate, 6),
       (op_punch, 8), (op_mmap, 8), (op_reopen, 2)]
table = [f for f, w in OPS for _ in range(w)]


def check():
    size = os.fstat(fd).st_size
    if size != len(model):
        die(f'size {size}, model {len(model)}')
    if os.stat(path).st_size != len(model):
        die(f'stat by path: size {os.stat(path).st_size}, model {len(model)}')
    got = os.pread(fd, len(model) + 1, 0)
    if got != model:
        first = next((i for i in range(min(len(got), len(model))) if got[i] != model[i]), min(len(got), len(model)))
        die(f'content differs from byte {first} (file {len(got)} bytes, model {len(model)})')


for i in range(nops):
    f = rng.choice(table)
    history.append(f())
    counts[f.__name__[3:]] = counts.get(f.__name__[3:], 0) + 1
    check()
os.close(fd)
print(json.dumps({'seed': seed, 'ops': nops, 'size': len(model), 'counts': counts}))
