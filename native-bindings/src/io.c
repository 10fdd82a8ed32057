/*
 * File data: pread/pwrite (synchronous, and on the thread pool), fallocate, lseek
 * (SEEK_DATA/SEEK_HOLE), copy_file_range and the FICLONE ioctl.
 *
 * pread and pwrite loop until the buffer is full / written, EOF, or an error after
 * some progress (then the count so far is returned); EINTR is retried.
 */
#include "addon.h"
#include "async.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Largest single transfer accepted: a Buffer cannot be larger on 64-bit Node anyway. */
#define MAX_IO ((uint64_t)1 << 32)

/* pread/pwrite until `len` bytes, EOF (reads), or an error after some progress (then the
 * count so far); -1 with errno when nothing was transferred. */
static ssize_t rw_full(int fd, char *buf, size_t len, off_t off, bool write) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = write ? pwrite(fd, buf + done, len - done, off + (off_t)done)
                      : pread(fd, buf + done, len - done, off + (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return done > 0 ? (ssize_t)done : -1;
    if (n == 0) break;
    done += (size_t)n;
  }
  return (ssize_t)done;
}

/* pread/pwrite(fd, buf, offset) -> bytes transferred */
static napi_value sync_rw(napi_env env, napi_callback_info info, bool write) {
  GET_ARGS(3);
  int fd;
  void *data;
  size_t len;
  uint64_t off;
  if (!arg_fd(env, argv[0], "fd", &fd) || !arg_buffer(env, argv[1], "buf", &data, &len) ||
      !arg_size(env, argv[2], "offset", &off)) {
    return NULL;
  }
  ssize_t n = rw_full(fd, data, len, (off_t)off, write);
  if (n < 0) return throw_errno(env, errno, write ? "pwrite" : "pread", NULL);
  return js_int64(env, n);
}

static napi_value b_pread(napi_env env, napi_callback_info info) { return sync_rw(env, info, false); }

static napi_value b_pwrite(napi_env env, napi_callback_info info) { return sync_rw(env, info, true); }

/* ---- on the thread pool ---- */

struct rw_job {
  struct job base;
  int fd;
  off_t off;
  size_t len;
  char *data;      /* preadAsync: malloc'd result; pwriteAsync: the Buffer's bytes */
  napi_ref keep;   /* pwriteAsync: keeps the Buffer alive while the pool writes it */
  ssize_t done;
};

static void free_block(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void pread_run(struct job *j) {
  struct rw_job *job = (struct rw_job *)j;
  job->data = malloc(job->len > 0 ? job->len : 1);
  if (!job->data) {
    job->base.err = ENOMEM;
    return;
  }
  job->done = rw_full(job->fd, job->data, job->len, job->off, false);
  if (job->done < 0) {
    job->base.err = errno;
    return;
  }
  /* give back most of a block that a short read left unused */
  if ((size_t)job->done < job->len / 2) {
    char *smaller = realloc(job->data, job->done > 0 ? (size_t)job->done : 1);
    if (smaller) job->data = smaller;
  }
}

static napi_value pread_result(napi_env env, struct job *j) {
  struct rw_job *job = (struct rw_job *)j;
  napi_value buf = NULL;
  if (job->done == 0) {
    napi_create_buffer(env, 0, NULL, &buf);
    return buf;
  }
  if (napi_create_external_buffer(env, (size_t)job->done, job->data, free_block, NULL, &buf) !=
      napi_ok) {
    return NULL;
  }
  job->data = NULL; /* now owned by the Buffer */
  return buf;
}

static void rw_cleanup(napi_env env, struct job *j) {
  struct rw_job *job = (struct rw_job *)j;
  if (job->keep) {
    napi_delete_reference(env, job->keep);
  } else {
    free(job->data);
  }
  free(job);
}

static napi_value b_pread_async(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  struct rw_job *job;
  int fd;
  uint64_t len, off;
  if (!arg_fd(env, argv[0], "fd", &fd) || !arg_size(env, argv[1], "length", &len) ||
      !arg_size(env, argv[2], "offset", &off)) {
    return NULL;
  }
  if (len > MAX_IO) return throw_errno(env, EINVAL, "pread", NULL);
  if (!(job = calloc(1, sizeof(*job)))) return throw_errno(env, ENOMEM, "pread", NULL);
  job->fd = fd;
  job->len = (size_t)len;
  job->off = (off_t)off;
  job->base.run = pread_run;
  job->base.result = pread_result;
  job->base.cleanup = rw_cleanup;
  job->base.syscall = "pread";
  return job_start(env, &job->base, "stratafs.preadAsync");
}

static void pwrite_run(struct job *j) {
  struct rw_job *job = (struct rw_job *)j;
  job->done = rw_full(job->fd, job->data, job->len, job->off, true);
  if (job->done < 0) job->base.err = errno;
}

static napi_value pwrite_result(napi_env env, struct job *j) {
  return js_int64(env, ((struct rw_job *)j)->done);
}

static napi_value b_pwrite_async(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  struct rw_job *job;
  int fd;
  void *data;
  size_t len;
  uint64_t off;
  if (!arg_fd(env, argv[0], "fd", &fd) || !arg_buffer(env, argv[1], "buf", &data, &len) ||
      !arg_size(env, argv[2], "offset", &off)) {
    return NULL;
  }
  if (!(job = calloc(1, sizeof(*job)))) return throw_errno(env, ENOMEM, "pwrite", NULL);
  if (napi_create_reference(env, argv[1], 1, &job->keep) != napi_ok) {
    free(job);
    return NULL;
  }
  job->fd = fd;
  job->data = data;
  job->len = len;
  job->off = (off_t)off;
  job->base.run = pwrite_run;
  job->base.result = pwrite_result;
  job->base.cleanup = rw_cleanup;
  job->base.syscall = "pwrite";
  return job_start(env, &job->base, "stratafs.pwriteAsync");
}

/* ---- space and extents ---- */

static napi_value b_fallocate(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  int fd;
  int32_t mode;
  uint64_t off, len;
  if (!arg_fd(env, argv[0], "fd", &fd) || !arg_i32(env, argv[1], "mode", &mode) ||
      !arg_size(env, argv[2], "offset", &off) || !arg_size(env, argv[3], "length", &len)) {
    return NULL;
  }
  if (fallocate(fd, mode, (off_t)off, (off_t)len) < 0) {
    return throw_errno(env, errno, "fallocate", NULL);
  }
  return js_undefined(env);
}

static napi_value b_lseek(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  int fd;
  int32_t whence;
  int64_t off;
  if (!arg_fd(env, argv[0], "fd", &fd) || !arg_off(env, argv[1], "offset", &off) ||
      !arg_i32(env, argv[2], "whence", &whence)) {
    return NULL;
  }
  off_t r = lseek(fd, (off_t)off, whence);
  if (r < 0) return throw_errno(env, errno, "lseek", NULL);
  return js_int64(env, r);
}

/* copyFileRange(fdIn, offIn, fdOut, offOut, length) -> bytes copied (one call) */
static napi_value b_copy_file_range(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  int fd_in, fd_out;
  uint64_t off_in, off_out, len;
  if (!arg_fd(env, argv[0], "fdIn", &fd_in) || !arg_size(env, argv[1], "offIn", &off_in) ||
      !arg_fd(env, argv[2], "fdOut", &fd_out) || !arg_size(env, argv[3], "offOut", &off_out) ||
      !arg_size(env, argv[4], "length", &len)) {
    return NULL;
  }
  loff_t in = (loff_t)off_in, out = (loff_t)off_out;
  ssize_t n;
  do {
    n = copy_file_range(fd_in, &in, fd_out, &out, (size_t)len, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, errno, "copy_file_range", NULL);
  return js_int64(env, n);
}

/* copyFileRangeAsync(...): the same on the thread pool (a large range takes long) */
struct cfr_job {
  struct job base;
  int fd_in, fd_out;
  loff_t in, out;
  size_t len;
  ssize_t done;
};

static void cfr_run(struct job *j) {
  struct cfr_job *job = (struct cfr_job *)j;
  do {
    job->done = copy_file_range(job->fd_in, &job->in, job->fd_out, &job->out, job->len, 0);
  } while (job->done < 0 && errno == EINTR);
  if (job->done < 0) job->base.err = errno;
}

static napi_value cfr_result(napi_env env, struct job *j) {
  return js_int64(env, ((struct cfr_job *)j)->done);
}

static void cfr_cleanup(napi_env env, struct job *j) {
  (void)env;
  free(j);
}

static napi_value b_copy_file_range_async(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  struct cfr_job *job;
  int fd_in, fd_out;
  uint64_t off_in, off_out, len;
  if (!arg_fd(env, argv[0], "fdIn", &fd_in) || !arg_size(env, argv[1], "offIn", &off_in) ||
      !arg_fd(env, argv[2], "fdOut", &fd_out) || !arg_size(env, argv[3], "offOut", &off_out) ||
      !arg_size(env, argv[4], "length", &len)) {
    return NULL;
  }
  if (!(job = calloc(1, sizeof(*job)))) return throw_errno(env, ENOMEM, "copy_file_range", NULL);
  job->fd_in = fd_in;
  job->fd_out = fd_out;
  job->in = (loff_t)off_in;
  job->out = (loff_t)off_out;
  job->len = (size_t)len;
  job->base.run = cfr_run;
  job->base.result = cfr_result;
  job->base.cleanup = cfr_cleanup;
  job->base.syscall = "copy_file_range";
  return job_start(env, &job->base, "stratafs.copyFileRangeAsync");
}

static napi_value b_ficlone(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int dst, src;
  if (!arg_fd(env, argv[0], "dstFd", &dst) || !arg_fd(env, argv[1], "srcFd", &src)) return NULL;
  if (ioctl(dst, FICLONE, src) < 0) return throw_errno(env, errno, "ioctl", NULL);
  return js_undefined(env);
}

bool register_io(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"pread", b_pread},           {"pwrite", b_pwrite},
    {"preadAsync", b_pread_async}, {"pwriteAsync", b_pwrite_async},
    {"copyFileRangeAsync", b_copy_file_range_async},
    {"fallocate", b_fallocate},   {"lseek", b_lseek},
    {"copyFileRange", b_copy_file_range}, {"ficlone", b_ficlone},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
