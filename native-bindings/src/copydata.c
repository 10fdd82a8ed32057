/*
 * copyData(srcFd, dstFd, size): the data half of a copy-up, on the thread pool.
 *
 * 1. ioctl FICLONE: dst shares src's extents (btrfs, xfs); then ftruncate to `size`.
 * 2. Otherwise dst is emptied and only src's data extents (SEEK_DATA/SEEK_HOLE) are
 *    copied, with copy_file_range, or pread/pwrite where the kernel cannot
 *    (EXDEV, EINVAL, ENOSYS, EOPNOTSUPP); ftruncate(dst, size) then restores the
 *    length, so holes, trailing ones included, stay holes.
 * dst is expected to be a new file: it is truncated to 0 before extents are copied.
 * With `sync` (4th argument) dst is fsync'ed in the same job: a copy-up needs both,
 * and one trip through the thread pool costs less than two.
 *
 * Write-ahead (copier.write_ahead, set where dst is flushed afterwards): the data is
 * copied in windows of WRITE_AHEAD bytes, and the writeback of each window is started
 * (sync_file_range SYNC_FILE_RANGE_WRITE, which does not wait) as soon as it is copied,
 * so the disk writes the copy while the next window is being copied and the final
 * fsync waits only for the last windows. Without it the pages stay dirty until the
 * fsync (far below the dirty thresholds), which then writes the whole file after the
 * copy. A failed write shows at the fsync (the file's error sequence), so the result
 * of sync_file_range itself is not needed.
 */
#include "addon.h"
#include "async.h"
#include "copydata.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define CHUNK_CFR ((size_t)1 << 30)
#define CHUNK_RW ((size_t)1 << 20)
#define WRITE_AHEAD ((off_t)32 << 20)

struct copy_job {
  struct job base;
  struct copier copy;
  bool sync; /* fsync dst once copied */
};

static bool fail(struct copier *c, const char *syscall) {
  c->err = errno;
  c->syscall = syscall;
  return false;
}

/* read/write copy of [*in, *in + len) to *out; advances both. */
static bool copy_rw(struct copier *c, off_t *in, off_t *out, off_t len) {
  if (!c->buf && !(c->buf = malloc(CHUNK_RW))) {
    errno = ENOMEM;
    return fail(c, "malloc");
  }
  while (len > 0) {
    size_t want = (size_t)len < CHUNK_RW ? (size_t)len : CHUNK_RW;
    ssize_t n = pread(c->src, c->buf, want, *in);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(c, "pread");
    if (n == 0) return true; /* src shrank meanwhile: the final ftruncate sets the size */
    for (ssize_t done = 0; done < n;) {
      ssize_t w = pwrite(c->dst, c->buf + done, (size_t)(n - done), *out + done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return fail(c, "pwrite");
      done += w;
    }
    *in += n;
    *out += n;
    len -= n;
  }
  return true;
}

static bool copy_window(struct copier *c, off_t start, off_t end) {
  off_t in = start, out = start;
  while (c->use_cfr && in < end) {
    size_t want = (size_t)(end - in) < CHUNK_CFR ? (size_t)(end - in) : CHUNK_CFR;
    loff_t lin = in, lout = out;
    ssize_t n = copy_file_range(c->src, &lin, c->dst, &lout, want, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
      c->use_cfr = false;
      break;
    }
    if (n < 0) return fail(c, "copy_file_range");
    if (n == 0) return true;
    in += n;
    out += n;
  }
  return in >= end || copy_rw(c, &in, &out, end - in);
}

/* [start, end) of src to the same offsets of dst, starting writeback per window (write_ahead) */
static bool copy_range(struct copier *c, off_t start, off_t end) {
  if (!c->write_ahead) return copy_window(c, start, end);
  for (off_t at = start; at < end;) {
    off_t next = end - at > WRITE_AHEAD ? at + WRITE_AHEAD : end;
    if (!copy_window(c, at, next)) return false;
    /* the last window is left to the fsync that follows */
    if (next < c->size) (void)sync_file_range(c->dst, at, next - at, SYNC_FILE_RANGE_WRITE);
    at = next;
  }
  return true;
}

static bool copy_extents(struct copier *c) {
  off_t off = 0;
  if (ftruncate(c->dst, 0) < 0) return fail(c, "ftruncate");
  while (off < c->size) {
    off_t data = lseek(c->src, off, SEEK_DATA), hole;
    if (data < 0 && errno == ENXIO) break; /* only a hole remains */
    if (data < 0 && errno == EINVAL) {
      data = off; /* no extent information: copy the rest as data */
      hole = c->size;
    } else if (data < 0) {
      return fail(c, "lseek");
    } else if ((hole = lseek(c->src, data, SEEK_HOLE)) < 0) {
      return fail(c, "lseek");
    }
    if (data >= c->size) break;
    if (hole > c->size) hole = c->size;
    if (!copy_range(c, data, hole)) return false;
    off = hole;
  }
  return true;
}

bool copier_copy_extents(struct copier *c) {
  if (!copy_extents(c)) return false;
  if (ftruncate(c->dst, c->size) < 0) return fail(c, "ftruncate");
  return true;
}

bool copier_copy(struct copier *c) {
  if (ioctl(c->dst, FICLONE, c->src) == 0) return ftruncate(c->dst, c->size) == 0 || fail(c, "ftruncate");
  return copier_copy_extents(c);
}

void copier_free(struct copier *c) {
  free(c->buf);
  c->buf = NULL;
}

static void copy_run(struct job *j) {
  struct copy_job *job = (struct copy_job *)j;
  if (!copier_copy(&job->copy)) {
    job->base.err = job->copy.err;
    job->base.syscall = job->copy.syscall;
    return;
  }
  while (job->sync && fsync(job->copy.dst) < 0) {
    if (errno != EINTR) {
      job->base.err = errno;
      job->base.syscall = "fsync";
      return;
    }
  }
}

static void copy_cleanup(napi_env env, struct job *j) {
  struct copy_job *job = (struct copy_job *)j;
  (void)env;
  copier_free(&job->copy);
  free(job);
}

static napi_value b_copy_data(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  struct copy_job *job;
  int src, dst;
  uint64_t size;
  bool sync = false;
  napi_valuetype sync_type;
  if (!arg_fd(env, argv[0], "srcFd", &src) || !arg_fd(env, argv[1], "dstFd", &dst) ||
      !arg_size(env, argv[2], "size", &size) || napi_typeof(env, argv[3], &sync_type) != napi_ok) {
    return NULL;
  }
  if (sync_type != napi_undefined && !arg_bool(env, argv[3], "sync", &sync)) return NULL;
  if (!(job = calloc(1, sizeof(*job)))) return throw_errno(env, ENOMEM, "copyData", NULL);
  job->copy.src = src;
  job->copy.dst = dst;
  job->copy.size = (off_t)size;
  job->copy.use_cfr = true;
  job->copy.write_ahead = sync;
  job->sync = sync;
  job->base.run = copy_run;
  job->base.result = NULL;
  job->base.cleanup = copy_cleanup;
  job->base.syscall = "copyData";
  return job_start(env, &job->base, "stratafs.copyData");
}

bool register_copydata(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"copyData", b_copy_data},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
