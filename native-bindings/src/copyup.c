/*
 * copyUpFile(srcFd, dstFd, opts): the whole copy-up of a regular file into the new,
 * empty work-dir file dstFd, in one job on the thread pool, in kernel overlayfs' order:
 *
 *   fstat(src)                     size, times, allocated blocks
 *   data                           reflink, else copy_file_range (copydata.c); a
 *                                  small file with blocks is copied in one call,
 *                                  without probing for holes
 *   fchown, fchmod                 owner first: a chown clears set-id bits
 *   flistxattr/fgetxattr/fsetxattr the user-visible xattrs (never the overlay's own)
 *   futimens                       atime and mtime of src, last: writes change them
 *   fsync                          once, after the metadata (opts.sync)
 *   fstat(dst)                     the inode number the copy will have
 *
 * The rename into the upper stays with the caller (on the JS thread). opts:
 * { uid, gid, mode, data, sync, reflink, xattrs, privatePrefixes, escape } (data false:
 * no data, for O_TRUNC; xattrs false: src is known to have none): an xattr name that starts
 * with one of privatePrefixes is skipped unless it goes on with `escape` (an escaped
 * user attribute, src/layers/xattr-names.ts). `reflink: false` skips the FICLONE try
 * (the caller learnt that these filesystems cannot). Resolves to
 * { ino, xattrs, hasXattrs, reflinkUnsupported }: xattrs is how many were copied,
 * hasXattrs whether the copy has any at all (the system may label a new file).
 */
#include "addon.h"
#include "async.h"
#include "copydata.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#define MAX_PREFIXES 4
#define PREFIX_LEN 64
/* a file up to this size with blocks is copied in one call, holes and all */
#define SMALL_FILE ((off_t)64 << 10)
#define XATTR_LIST_MAX_BYTES 65536
#define XATTR_VALUE_MAX_BYTES 65536

struct copyup_job {
  struct job base;
  struct copier copy;
  uid_t uid;
  gid_t gid;
  mode_t mode;
  bool data;
  bool sync;
  bool reflink;
  bool list_xattrs; /* list src's xattrs (false: known to have none) */
  int nprefixes;
  char prefixes[MAX_PREFIXES][PREFIX_LEN];
  char escape[PREFIX_LEN];
  /* results */
  uint64_t ino;
  uint32_t xattrs;
  bool has_xattrs;
  bool reflink_unsupported;
};

static bool job_fail(struct copyup_job *job, const char *syscall) {
  job->base.err = errno;
  job->base.syscall = syscall;
  return false;
}

static bool is_private(const struct copyup_job *job, const char *name) {
  for (int i = 0; i < job->nprefixes; i++) {
    size_t n = strlen(job->prefixes[i]);
    if (strncmp(name, job->prefixes[i], n) != 0) continue;
    if (strncmp(name + n, job->escape, strlen(job->escape)) != 0) return true;
  }
  return false;
}

static bool copy_xattrs(struct copyup_job *job) {
  char *list = NULL, *value = NULL;
  bool ok = false;
  ssize_t len = flistxattr(job->copy.src, NULL, 0);
  if (len < 0 && (errno == EOPNOTSUPP || errno == ENOTSUP)) return true;
  if (len < 0) return job_fail(job, "flistxattr");
  if (len == 0) return true;
  if (!(list = malloc(XATTR_LIST_MAX_BYTES)) || !(value = malloc(XATTR_VALUE_MAX_BYTES))) {
    errno = ENOMEM;
    job_fail(job, "malloc");
    goto out;
  }
  if ((len = flistxattr(job->copy.src, list, XATTR_LIST_MAX_BYTES)) < 0) {
    job_fail(job, "flistxattr");
    goto out;
  }
  for (char *name = list; name < list + len; name += strlen(name) + 1) {
    if (is_private(job, name)) continue;
    ssize_t n = fgetxattr(job->copy.src, name, value, XATTR_VALUE_MAX_BYTES);
    if (n < 0 && errno == ENODATA) continue; /* gone meanwhile */
    if (n < 0) {
      job_fail(job, "fgetxattr");
      goto out;
    }
    if (fsetxattr(job->copy.dst, name, value, (size_t)n, 0) < 0) {
      if (errno == EOPNOTSUPP || errno == ENOTSUP) continue; /* the upper cannot hold it */
      job_fail(job, "fsetxattr");
      goto out;
    }
    job->xattrs++;
  }
  ok = true;
out:
  free(list);
  free(value);
  return ok;
}

/* the data: reflink, else one copy_file_range for a small file with blocks, else extents */
static bool copy_data(struct copyup_job *job, const struct stat *s) {
  struct copier *c = &job->copy;
  if (c->size == 0) return true;
  if (job->reflink) {
    if (ioctl(c->dst, FICLONE, c->src) == 0) return ftruncate(c->dst, c->size) == 0 || job_fail(job, "ftruncate");
    if (errno == EOPNOTSUPP || errno == EXDEV) job->reflink_unsupported = true;
  }
  if (c->size <= SMALL_FILE && s->st_blocks > 0) {
    loff_t in = 0, out = 0;
    while (in < c->size) {
      ssize_t n = copy_file_range(c->src, &in, c->dst, &out, (size_t)(c->size - in), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break; /* unsupported here, or src shorter: the general path decides */
    }
    if (in == c->size) return true;
  }
  /* the general path starts over (it empties dst first) */
  c->use_cfr = true;
  if (!copier_copy_extents(c)) {
    job->base.err = c->err;
    job->base.syscall = c->syscall;
    return false;
  }
  return true;
}

static void copyup_run(struct job *j) {
  struct copyup_job *job = (struct copyup_job *)j;
  struct stat s;
  int dst = job->copy.dst;
  if (fstat(job->copy.src, &s) < 0) {
    job_fail(job, "fstat");
    return;
  }
  job->copy.size = job->data ? s.st_size : 0;
  if (!copy_data(job, &s)) return;
  if (fchown(dst, job->uid, job->gid) < 0) {
    job_fail(job, "fchown");
    return;
  }
  if (fchmod(dst, job->mode) < 0) {
    job_fail(job, "fchmod");
    return;
  }
  if (job->list_xattrs && !copy_xattrs(job)) return;
  struct timespec times[2] = {s.st_atim, s.st_mtim};
  if (futimens(dst, times) < 0) {
    job_fail(job, "futimens");
    return;
  }
  while (job->sync && fsync(dst) < 0) {
    if (errno != EINTR) {
      job_fail(job, "fsync");
      return;
    }
  }
  /* none copied: does the copy have any (a label the system set)? */
  ssize_t any = job->xattrs > 0 ? 1 : flistxattr(dst, NULL, 0);
  job->has_xattrs = any != 0; /* an error (unsupported) counts as "may have": ask later */
  if (any < 0 && (errno == EOPNOTSUPP || errno == ENOTSUP)) job->has_xattrs = false;
  struct stat d;
  if (fstat(dst, &d) < 0) {
    job_fail(job, "fstat");
    return;
  }
  job->ino = (uint64_t)d.st_ino;
}

static napi_value copyup_result(napi_env env, struct job *j) {
  struct copyup_job *job = (struct copyup_job *)j;
  napi_value out, v;
  if (napi_create_object(env, &out) != napi_ok) return NULL;
  if (!(v = js_bigint_u64(env, job->ino)) || napi_set_named_property(env, out, "ino", v) != napi_ok) return NULL;
  if (!(v = js_u32(env, job->xattrs)) || napi_set_named_property(env, out, "xattrs", v) != napi_ok) return NULL;
  if (napi_get_boolean(env, job->has_xattrs, &v) != napi_ok || napi_set_named_property(env, out, "hasXattrs", v) != napi_ok) {
    return NULL;
  }
  if (napi_get_boolean(env, job->reflink_unsupported, &v) != napi_ok ||
      napi_set_named_property(env, out, "reflinkUnsupported", v) != napi_ok) {
    return NULL;
  }
  return out;
}

static void copyup_cleanup(napi_env env, struct job *j) {
  struct copyup_job *job = (struct copyup_job *)j;
  (void)env;
  copier_free(&job->copy);
  free(job);
}

static bool get_prop(napi_env env, napi_value obj, const char *key, napi_value *out) {
  if (napi_get_named_property(env, obj, key, out) == napi_ok) return true;
  return false;
}

/* a latin1 string of fewer than PREFIX_LEN bytes into buf */
static bool arg_short(napi_env env, napi_value v, const char *what, char *buf) {
  size_t len;
  if (napi_get_value_string_latin1(env, v, buf, PREFIX_LEN, &len) != napi_ok) return throw_type(env, what, "a string");
  if (len >= PREFIX_LEN - 1) return throw_type(env, what, "a short string");
  return true;
}

static bool read_opts(napi_env env, napi_value o, struct copyup_job *job) {
  napi_value v, arr;
  uint32_t u, n;
  if (!get_prop(env, o, "uid", &v) || !arg_u32(env, v, "opts.uid", &u)) return false;
  job->uid = (uid_t)u;
  if (!get_prop(env, o, "gid", &v) || !arg_u32(env, v, "opts.gid", &u)) return false;
  job->gid = (gid_t)u;
  if (!get_prop(env, o, "mode", &v) || !arg_u32(env, v, "opts.mode", &u)) return false;
  job->mode = (mode_t)(u & 07777);
  if (!get_prop(env, o, "data", &v) || !arg_bool(env, v, "opts.data", &job->data)) return false;
  if (!get_prop(env, o, "sync", &v) || !arg_bool(env, v, "opts.sync", &job->sync)) return false;
  if (!get_prop(env, o, "reflink", &v) || !arg_bool(env, v, "opts.reflink", &job->reflink)) return false;
  if (!get_prop(env, o, "xattrs", &v) || !arg_bool(env, v, "opts.xattrs", &job->list_xattrs)) return false;
  if (!get_prop(env, o, "escape", &v) || !arg_short(env, v, "opts.escape", job->escape)) return false;
  if (!get_prop(env, o, "privatePrefixes", &arr) || napi_get_array_length(env, arr, &n) != napi_ok || n > MAX_PREFIXES) {
    return throw_type(env, "opts.privatePrefixes", "an array of at most 4 strings");
  }
  for (uint32_t i = 0; i < n; i++) {
    if (napi_get_element(env, arr, i, &v) != napi_ok || !arg_short(env, v, "opts.privatePrefixes[]", job->prefixes[i])) return false;
  }
  job->nprefixes = (int)n;
  return true;
}

/* copyUpFile(src, dst, opts) on the pool; copyUpFileNow(...) the same on the calling thread */
static napi_value copy_up_file(napi_env env, napi_callback_info info, bool now) {
  GET_ARGS(3);
  struct copyup_job *job;
  int src, dst;
  if (!arg_fd(env, argv[0], "srcFd", &src) || !arg_fd(env, argv[1], "dstFd", &dst)) return NULL;
  if (!(job = calloc(1, sizeof(*job)))) return throw_errno(env, ENOMEM, "copyUpFile", NULL);
  if (!read_opts(env, argv[2], job)) {
    free(job);
    return NULL;
  }
  job->copy.src = src;
  job->copy.dst = dst;
  job->copy.use_cfr = true;
  job->copy.write_ahead = job->sync;
  job->base.run = copyup_run;
  job->base.result = copyup_result;
  job->base.cleanup = copyup_cleanup;
  job->base.syscall = "copyUpFile";
  return now ? job_run_now(env, &job->base) : job_start(env, &job->base, "stratafs.copyUpFile");
}

static napi_value b_copy_up_file(napi_env env, napi_callback_info info) {
  return copy_up_file(env, info, false);
}

static napi_value b_copy_up_file_now(napi_env env, napi_callback_info info) {
  return copy_up_file(env, info, true);
}

bool register_copyup(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"copyUpFile", b_copy_up_file},
    {"copyUpFileNow", b_copy_up_file_now},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
