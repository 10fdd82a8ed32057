"""fsx-style exerciser: random operations on one file through a mount, each checked
against an in-memory model of the file.

    python3 fsx.py CONFIG_JSON

CONFIG: {"path": file in the mount (exists: it starts in a lower layer),
         "seed": int, "ops": int, "maxlen": largest file size,
         "falloc": {"KEEP_SIZE": n, "PUNCH_HOLE": n, "ZERO_RANGE": n},   (from the addon)
         "direct": bool (optional)}

With "direct" (like fsx -Z) every open is O_DIRECT, offsets, lengths and sizes are
multiples of 4 KiB, reads and writes go through page-aligned buffers, and there are no
mmap writes (the file must start with a size that is a multiple of 4 KiB).

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
direct = cfg.get('direct', False)
ALIGN = 4096
OFLAG = os.O_DIRECT if direct else 0
rng = random.Random(seed)
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]

with open(path, 'rb') as f:
    model = bytearray(f.read())
history = []
counts = {}
fd = os.open(path, os.O_RDONLY | OFLAG)
writable = False


def down(x):
    """an offset: a multiple of ALIGN in direct mode"""
    return x - x % ALIGN if direct else x


def length(n):
    """a length: a positive multiple of ALIGN in direct mode"""
    return max(ALIGN, n - n % ALIGN) if direct else n


def pread(f, n, off):
    if not direct:
        return os.pread(f, n, off)
    buf = mmap.mmap(-1, (n + ALIGN - 1) // ALIGN * ALIGN)
    got = os.preadv(f, [buf], off)
    return bytes(buf[:min(got, n)])


def pwrite(f, b, off=None):
    """writes at `off`, or at the file position (O_APPEND: the end) when None"""
    if direct:
        buf = mmap.mmap(-1, len(b))
        buf[:] = b
        return os.writev(f, [buf]) if off is None else os.pwritev(f, [buf], off)
    return os.write(f, b) if off is None else os.pwrite(f, b, off)


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
        fd = os.open(path, os.O_RDWR | OFLAG)
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
    off = down(rng.randrange(0, len(model) + 100))
    n = length(rng.randrange(1, 70000))
    got = pread(fd, n, off)
    want = bytes(model[off:off + n])
    if got != want:
        die(f'read {off}+{n}: got {len(got)} bytes, want {len(want)}')
    return f'read {off}+{n}'


def op_write():
    rw()
    off = down(rng.randrange(0, min(maxlen - 1, len(model) + 40000)))
    n = length(rng.randrange(1, min(65536, maxlen - off) + 1))
    b = data(n)
    if pwrite(fd, b, off) != n:
        die('short write')
    grow_to(off + n)
    model[off:off + n] = b
    return f'write {off}+{n}'


def op_append():
    rw()
    n = length(rng.randrange(1, 20000))
    if len(model) + n > maxlen:
        return op_truncate()
    b = data(n)
    afd = os.open(path, os.O_WRONLY | os.O_APPEND | OFLAG)
    try:
        if pwrite(afd, b) != n:
            die('short append')
    finally:
        os.close(afd)
    model.extend(b)
    return f'append {n}'


def op_truncate():
    rw()
    n = down(rng.randrange(0, maxlen))
    os.ftruncate(fd, n)
    if n < len(model):
        del model[n:]
    grow_to(n)
    return f'truncate {n}'


def op_fallocate():
    rw()
    off = down(rng.randrange(0, maxlen - 1))
    n = length(rng.randrange(1, min(65536, maxlen - off) + 1))
    keep = rng.random() < 0.5
    falloc(FL['KEEP_SIZE'] if keep else 0, off, n)
    if not keep:
        grow_to(off + n)
    return f'fallocate {"keep " if keep else ""}{off}+{n}'


def op_punch():
    rw()
    if not model:
        return op_write()
    off = down(rng.randrange(0, len(model)))
    n = length(rng.randrange(1, 70000))
    zero = rng.random() < 0.3
    if zero:
        falloc(FL['ZERO_RANGE'] | FL['KEEP_SIZE'], off, n)
    else:
        falloc(FL['PUNCH_HOLE'] | FL['KEEP_SIZE'], off, n)
    end = min(off + n, len(model))
    model[off:end] = b'\0' * (end - off)
    return f'{"zero range" if zero else "punch hole"} {off}+{n}'


def op_mmap():
    if direct:
        return op_write()
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
    fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | OFLAG)
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
    got = pread(fd, len(model) + 1, 0)
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
