/*
 * Many names of one directory in one call on the libuv thread pool, so the JS thread
 * keeps answering requests while the disk is read and several calls overlap:
 *   statxMany(dirfd, names, flags)  statx(2) of each name
 *   listDirs(dirfd, names)          the entries of each name, a directory, and its xattr names
 * (`names`: one byte string, the names joined by '/').
 * The binding duplicates `dirfd` before queuing the work (the caller's fd may be closed
 * meanwhile); the pool thread closes the copy when done, so the JS thread pays only
 * the dup. Each name's outcome is its own: a Stat
 * or an entry list, or the errno (a number) that name failed with.
 */
#include "addon.h"
#include "async.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

/* the record getdents64(2) fills */
struct dirent64_rec {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

#define LIST_CHUNK (64 * 1024)
/* most names one call takes: the caller splits larger sets (and so spreads them over threads) */
#define MAX_NAMES 65536

struct listing {
  char *buf; /* raw getdents64 records */
  size_t len;
  int err;
  char *xattrs; /* the directory's own xattr names (flistxattr), NULL when unread */
  ssize_t xlen;
};

struct names_job {
  struct job base;
  int fd;
  int flags;
  uint32_t n;
  char *buf;    /* the names, each NUL-terminated in place */
  char **names; /* into buf */
  struct statx *stats; /* statxMany */
  int *errs;           /* statxMany */
  struct listing *lists; /* listDirs */
};

static void names_cleanup(napi_env env, struct job *j) {
  struct names_job *job = (struct names_job *)j;
  (void)env;
  if (job->fd >= 0) close(job->fd);
  if (job->lists) {
    for (uint32_t i = 0; i < job->n; i++) {
      free(job->lists[i].buf);
      free(job->lists[i].xattrs);
    }
  }
  free(job->buf);
  free(job->names);
  free(job->stats);
  free(job->errs);
  free(job->lists);
  free(job);
}

/*
 * Reads (dirfd, names) into a new job with its own copy of the fd; NULL with a pending
 * exception. `names` is one byte string, the names joined by '/' (which no name holds):
 * one conversion instead of one per name. '' is no name at all.
 */
static struct names_job *names_job_new(napi_env env, napi_value fdv, napi_value str, const char *syscall) {
  int fd;
  size_t len = 0;
  if (!arg_fd(env, fdv, "dirfd", &fd)) return NULL;
  if (napi_get_value_string_latin1(env, str, NULL, 0, &len) != napi_ok) {
    throw_type(env, "names", "a byte string");
    return NULL;
  }
  struct names_job *job = calloc(1, sizeof(*job));
  if (!job) {
    throw_errno(env, ENOMEM, syscall, NULL);
    return NULL;
  }
  job->fd = -1;
  if (!(job->buf = malloc(len + 1))) goto nomem;
  if (napi_get_value_string_latin1(env, str, job->buf, len + 1, &len) != napi_ok) {
    throw_type(env, "names", "a byte string");
    goto fail;
  }
  if (memchr(job->buf, '\0', len)) {
    throw_errno(env, EINVAL, syscall, NULL);
    goto fail;
  }
  uint32_t n = len == 0 ? 0 : 1;
  for (size_t i = 0; i < len; i++) n += job->buf[i] == '/';
  if (n > MAX_NAMES) {
    throw_errno(env, E2BIG, syscall, NULL);
    goto fail;
  }
  if (!(job->names = calloc(n > 0 ? n : 1, sizeof(char *)))) goto nomem;
  char *p = job->buf;
  for (uint32_t i = 0; i < n; i++) {
    job->names[i] = p;
    char *slash = strchr(p, '/');
    if (slash) {
      *slash = 0;
      p = slash + 1;
    }
  }
  job->n = n;
  job->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (job->fd < 0) {
    throw_errno(env, errno, "fcntl", NULL);
    goto fail;
  }
  return job;
nomem:
  throw_errno(env, ENOMEM, syscall, NULL);
fail:
  names_cleanup(env, &job->base);
  return NULL;
}

/* ---- statxMany ---- */

/* closes the job's fd on the pool thread (cleanup closes it when the job never ran) */
static void names_done(struct names_job *job) {
  close(job->fd);
  job->fd = -1;
}

static void statx_run(struct job *j) {
  struct names_job *job = (struct names_job *)j;
  for (uint32_t i = 0; i < job->n; i++) {
    job->errs[i] = statx(job->fd, job->names[i], job->flags, STATX_BASIC_STATS, &job->stats[i]) < 0 ? errno : 0;
  }
  names_done(job);
}

static napi_value statx_result(napi_env env, struct job *j) {
  struct names_job *job = (struct names_job *)j;
  napi_value arr;
  if (napi_create_array_with_length(env, job->n, &arr) != napi_ok) return NULL;
  for (uint32_t i = 0; i < job->n; i++) {
    napi_value v = job->errs[i] ? js_i32(env, job->errs[i]) : stat_object(env, &job->stats[i]);
    if (!v || napi_set_element(env, arr, i, v) != napi_ok) return NULL;
  }
  return arr;
}

static napi_value b_statx_many(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  int32_t flags;
  if (!arg_i32(env, argv[2], "flags", &flags)) return NULL;
  struct names_job *job = names_job_new(env, argv[0], argv[1], "statx");
  if (!job) return NULL;
  job->flags = flags;
  job->stats = calloc(job->n > 0 ? job->n : 1, sizeof(struct statx));
  job->errs = calloc(job->n > 0 ? job->n : 1, sizeof(int));
  if (!job->stats || !job->errs) {
    names_cleanup(env, &job->base);
    return throw_errno(env, ENOMEM, "statx", NULL);
  }
  job->base.run = statx_run;
  job->base.result = statx_result;
  job->base.cleanup = names_cleanup;
  job->base.syscall = "statx";
  return job_start(env, &job->base, "stratafs.statxMany");
}

/* ---- listDirs ---- */

/* The xattr names of the open directory into `out` (left unread on an error but "none"). */
static void read_xattr_names(int fd, struct listing *out) {
  for (int attempt = 0; attempt < 2; attempt++) {
    ssize_t size = attempt == 0 ? 1024 : flistxattr(fd, NULL, 0);
    if (size < 0) break;
    char *buf = malloc(size > 0 ? (size_t)size : 1);
    if (!buf) return;
    ssize_t n = flistxattr(fd, buf, (size_t)size);
    if (n >= 0) {
      out->xattrs = buf;
      out->xlen = n;
      return;
    }
    free(buf);
    if (errno != ERANGE) break;
  }
  if (errno == ENOTSUP) {
    out->xattrs = malloc(1); /* no xattrs on this filesystem: an empty list */
    out->xlen = 0;
  }
}

/* All records of directory `name` in `dirfd` ('' = itself) into `out`, and its xattr names. */
static void list_one(int dirfd, const char *name, struct listing *out) {
  int fd = openat(dirfd, name[0] ? name : ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    out->err = errno;
    return;
  }
  size_t cap = 0;
  for (;;) {
    if (cap - out->len < LIST_CHUNK) {
      char *bigger = realloc(out->buf, cap + LIST_CHUNK);
      if (!bigger) {
        out->err = ENOMEM;
        break;
      }
      out->buf = bigger;
      cap += LIST_CHUNK;
    }
    long n = syscall(SYS_getdents64, fd, out->buf + out->len, cap - out->len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      out->err = errno;
      break;
    }
    if (n == 0) break;
    out->len += (size_t)n;
  }
  if (!out->err) read_xattr_names(fd, out);
  close(fd);
}

static void list_run(struct job *j) {
  struct names_job *job = (struct names_job *)j;
  for (uint32_t i = 0; i < job->n; i++) list_one(job->fd, job->names[i], &job->lists[i]);
  names_done(job);
}

/* The entries of one listing, '.' and '..' left out. */
static napi_value entries_value(napi_env env, const struct listing *l) {
  static const enum key_id ids[] = {K_NAME, K_INO, K_TYPE};
  napi_value arr;
  uint32_t count = 0;
  if (napi_create_array(env, &arr) != napi_ok) return NULL;
  for (size_t pos = 0; pos < l->len;) {
    const struct dirent64_rec *d = (const struct dirent64_rec *)(l->buf + pos);
    pos += d->d_reclen;
    if (d->d_name[0] == '.' && (d->d_name[1] == 0 || (d->d_name[1] == '.' && d->d_name[2] == 0))) continue;
    const napi_value values[] = {
      js_bytes(env, d->d_name, strlen(d->d_name)), js_bigint_u64(env, d->d_ino), js_u32(env, d->d_type),
    };
    napi_value entry = new_object(env, COUNT_OF(ids), ids, values);
    if (!entry || napi_set_element(env, arr, count++, entry) != napi_ok) return NULL;
  }
  return arr;
}

/* The xattr names of one listing as an array of byte strings, or null when unread. */
static napi_value xattrs_value(napi_env env, const struct listing *l) {
  napi_value arr, nul;
  uint32_t count = 0;
  if (!l->xattrs) return napi_get_null(env, &nul) == napi_ok ? nul : NULL;
  if (napi_create_array(env, &arr) != napi_ok) return NULL;
  for (ssize_t pos = 0; pos < l->xlen;) {
    size_t len = strnlen(l->xattrs + pos, (size_t)(l->xlen - pos));
    if (len > 0 && napi_set_element(env, arr, count++, js_bytes(env, l->xattrs + pos, len)) != napi_ok) return NULL;
    pos += (ssize_t)len + 1;
  }
  return arr;
}

static napi_value list_result(napi_env env, struct job *j) {
  struct names_job *job = (struct names_job *)j;
  napi_value arr;
  if (napi_create_array_with_length(env, job->n, &arr) != napi_ok) return NULL;
  for (uint32_t i = 0; i < job->n; i++) {
    const struct listing *l = &job->lists[i];
    napi_value v;
    if (l->err) {
      v = js_i32(env, l->err);
    } else {
      napi_value entries = entries_value(env, l), xattrs = entries ? xattrs_value(env, l) : NULL;
      if (!xattrs || napi_create_object(env, &v) != napi_ok) return NULL;
      if (napi_set_named_property(env, v, "entries", entries) != napi_ok ||
          napi_set_named_property(env, v, "xattrs", xattrs) != napi_ok) {
        return NULL;
      }
    }
    if (!v || napi_set_element(env, arr, i, v) != napi_ok) return NULL;
  }
  return arr;
}

static napi_value b_list_dirs(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  struct names_job *job = names_job_new(env, argv[0], argv[1], "getdents64");
  if (!job) return NULL;
  job->lists = calloc(job->n > 0 ? job->n : 1, sizeof(struct listing));
  if (!job->lists) {
    names_cleanup(env, &job->base);
    return throw_errno(env, ENOMEM, "getdents64", NULL);
  }
  job->base.run = list_run;
  job->base.result = list_result;
  job->base.cleanup = names_cleanup;
  job->base.syscall = "getdents64";
  return job_start(env, &job->base, "stratafs.listDirs");
}

bool register_batch(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"statxMany", b_statx_many},
    {"listDirs", b_list_dirs},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
