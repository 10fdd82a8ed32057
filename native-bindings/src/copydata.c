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
 */
#include "addon.h"
#include "async.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define CHUNK_CFR ((size_t)1 << 30)
#define CHUNK_RW ((size_t)1 << 20)

struct copy_job {
  struct job base;
  int src;
  int dst;
  off_t size;
  bool use_cfr;   /* copy_file_range still worth trying */
  bool sync;      /* fsync dst once copied */
  char *buf;      /* read/write fallback buffer, allocated on first use */
};

static bool fail(struct copy_job *job, const char *syscall) {
  job->base.err = errno;
  job->base.syscall = syscall;
  return false;
}

/* read/write copy of [*in, *in + len) to *out; advances both. */
static bool copy_rw(struct copy_job *job, off_t *in, off_t *out, off_t len) {
  if (!job->buf && !(job->buf = malloc(CHUNK_RW))) {
    errno = ENOMEM;
    return fail(job, "malloc");
  }
  while (len > 0) {
    size_t want = (size_t)len < CHUNK_RW ? (size_t)len : CHUNK_RW;
    ssize_t n = pread(job->src, job->buf, want, *in);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(job, "pread");
    if (n == 0) return true; /* src shrank meanwhile: the final ftruncate sets the size */
    for (ssize_t done = 0; done < n;) {
      ssize_t w = pwrite(job->dst, job->buf + done, (size_t)(n - done), *out + done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return fail(job, "pwrite");
      done += w;
    }
    *in += n;
    *out += n;
    len -= n;
  }
  return true;
}

static bool copy_range(struct copy_job *job, off_t start, off_t end) {
  off_t in = start, out = start;
  while (job->use_cfr && in < end) {
    size_t want = (size_t)(end - in) < CHUNK_CFR ? (size_t)(end - in) : CHUNK_CFR;
    loff_t lin = in, lout = out;
    ssize_t n = copy_file_range(job->src, &lin, job->dst, &lout, want, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
      job->use_cfr = false;
      break;
    }
    if (n < 0) return fail(job, "copy_file_range");
    if (n == 0) return true;
    in += n;
    out += n;
  }
  return in >= end || copy_rw(job, &in, &out, end - in);
}

static bool copy_extents(struct copy_job *job) {
  off_t off = 0;
  if (ftruncate(job->dst, 0) < 0) return fail(job, "ftruncate");
  while (off < job->size) {
    off_t data = lseek(job->src, off, SEEK_DATA), hole;
    if (data < 0 && errno == ENXIO) break; /* only a hole remains */
    if (data < 0 && errno == EINVAL) {
      data = off; /* no extent information: copy the rest as data */
      hole = job->size;
    } else if (data < 0) {
      return fail(job, "lseek");
    } else if ((hole = lseek(job->src, data, SEEK_HOLE)) < 0) {
      return fail(job, "lseek");
    }
    if (data >= job->size) break;
    if (hole > job->size) hole = job->size;
    if (!copy_range(job, data, hole)) return false;
    off = hole;
  }
  return true;
}

static void copy_run(struct job *j) {
  struct copy_job *job = (struct copy_job *)j;
  if (ioctl(job->dst, FICLONE, job->src) < 0 && !copy_extents(job)) return;
  if (ftruncate(job->dst, job->size) < 0) {
    fail(job, "ftruncate");
    return;
  }
  while (job->sync && fsync(job->dst) < 0) {
    if (errno != EINTR) {
      fail(job, "fsync");
      return;
    }
  }
}

static void copy_cleanup(napi_env env, struct job *j) {
  struct copy_job *job = (struct copy_job *)j;
  (void)env;
  free(job->buf);
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
  job->src = src;
  job->dst = dst;
  job->size = (off_t)size;
  job->use_cfr = true;
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
