/*
 * The read-ahead of one READDIRPLUS batch (src/overlay/prefetch.ts) in one call on the
 * libuv thread pool, so the JS thread keeps answering requests while the disk is read:
 *
 *   readAhead(dirfds, counts, names, wants) -> Promise<Buffer>
 *
 * `dirfds[g]` is a directory (a lower layer's) and the next `counts[g]` names of `names`
 * (one byte string, every name of every group joined by '/', which no name holds: one
 * conversion for the lot) are asked of it; `wants[i]` says what of name i:
 *   RA_STAT  its statx(2), a final symlink not followed;
 *   RA_LIST  when it is a directory (by that statx, or, without one, by opening it),
 *            its entries (getdents64, '.' and '..' left out) and its own xattr names
 *            (flistxattr);
 *   RA_XATTRS when it is not a directory (by that statx, or, without one, as the caller
 *            knows from its listing), its xattr names (llistxattr through
 *            /proc/self/fd/<dirfd>/<name>: a final symlink not followed).
 * Each name's outcome is its own. The binding duplicates every fd before queuing the
 * work (the caller's may be closed meanwhile); the pool thread closes the copies.
 *
 * The result is one Buffer (no object per name: the caller decodes it, prefetch.ts),
 * for each name in order, host byte order, unaligned:
 *   i32 stat: -1 not read, 0 read (a stat record follows), else the errno
 *   [stat record, RA_STAT_BYTES: u64 ino; i64 size, blocks, atime, mtime, ctime (s);
 *    u32 dev major, minor, mode, nlink, uid, gid, rdev major, minor, blksize,
 *    atime, mtime, ctime (ns)]
 *   i32 list: -1 not read, 0 read (a listing follows), else the errno
 *   [listing: u32 entries; each: u64 ino, u8 d_type, u8 name length, the name;
 *    i32 xattr bytes (-1: not read), the names as flistxattr gives them (NUL-ended)]
 *   i32 xattr bytes of a non-directory (-1: not read), the names as llistxattr gives them
 */
#include "addon.h"
#include "async.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "readAhead's result is read as little-endian (src/overlay/prefetch.ts)"
#endif

#define RA_STAT_BYTES (8 + 5 * 8 + 12 * 4)

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

/* a growing byte area; `failed` once an allocation failed (then nothing more is kept) */
struct area {
  char *p;
  size_t len, cap;
  bool failed;
};

static bool area_room(struct area *a, size_t more) {
  if (a->failed) return false;
  if (a->cap - a->len >= more) return true;
  size_t cap = a->cap ? a->cap : 4096;
  while (cap - a->len < more) cap *= 2;
  char *bigger = realloc(a->p, cap);
  if (!bigger) {
    a->failed = true;
    return false;
  }
  a->p = bigger;
  a->cap = cap;
  return true;
}

static void put(struct area *a, const void *v, size_t n) {
  if (!area_room(a, n)) return;
  memcpy(a->p + a->len, v, n);
  a->len += n;
}

static void put_u32(struct area *a, uint32_t v) { put(a, &v, 4); }
static void put_i32(struct area *a, int32_t v) { put(a, &v, 4); }
static void put_u64(struct area *a, uint64_t v) { put(a, &v, 8); }
static void put_i64(struct area *a, int64_t v) { put(a, &v, 8); }

struct ra_job {
  struct job base;
  uint32_t ngroups;
  int *fds;         /* our copies; -1 once closed */
  uint32_t *counts; /* names per fd */
  uint32_t n;
  char *buf;        /* the names, each NUL-terminated in place */
  char **names;     /* into buf */
  uint8_t *wants;
  struct area out;  /* the result */
  struct area dents; /* one directory's raw records, reused */
};

static void ra_cleanup(napi_env env, struct job *j) {
  struct ra_job *job = (struct ra_job *)j;
  (void)env;
  if (job->fds) {
    for (uint32_t g = 0; g < job->ngroups; g++) {
      if (job->fds[g] >= 0) close(job->fds[g]);
    }
  }
  free(job->fds);
  free(job->counts);
  free(job->buf);
  free(job->names);
  free(job->wants);
  free(job->out.p);
  free(job->dents.p);
  free(job);
}

static void put_stat(struct area *a, const struct statx *st) {
  put_u64(a, st->stx_ino);
  put_i64(a, (int64_t)st->stx_size);
  put_i64(a, (int64_t)st->stx_blocks);
  put_i64(a, st->stx_atime.tv_sec);
  put_i64(a, st->stx_mtime.tv_sec);
  put_i64(a, st->stx_ctime.tv_sec);
  const uint32_t u[] = {
    st->stx_dev_major, st->stx_dev_minor, st->stx_mode, st->stx_nlink, st->stx_uid, st->stx_gid,
    st->stx_rdev_major, st->stx_rdev_minor, st->stx_blksize, st->stx_atime.tv_nsec,
    st->stx_mtime.tv_nsec, st->stx_ctime.tv_nsec,
  };
  put(a, u, sizeof(u));
}

/*
 * The xattr names of the open directory `fd` (path NULL) or of `path` (a final symlink
 * not followed), as i32 length and bytes (-1: could not be read).
 */
static void put_xattr_names(struct area *a, int fd, const char *path) {
  for (int attempt = 0; attempt < 2; attempt++) {
    ssize_t size = attempt == 0 ? 1024 : path ? llistxattr(path, NULL, 0) : flistxattr(fd, NULL, 0);
    if (size < 0) break;
    if (!area_room(a, 4 + (size_t)size)) return;
    char *to = a->p + a->len + 4;
    ssize_t n = path ? llistxattr(path, to, (size_t)size) : flistxattr(fd, to, (size_t)size);
    if (n >= 0) {
      put_i32(a, (int32_t)n); /* the names are in place after it */
      a->len += (size_t)n;
      return;
    }
    if (errno != ERANGE) break;
  }
  /* a directory on a filesystem without xattrs: an empty list; a name's failure is left
     to the caller, which lists the name itself (and answers its errno) */
  put_i32(a, errno == ENOTSUP && !path ? 0 : -1);
}

/* The xattr names of `name` in directory `dirfd`, through /proc (no *listxattrat call). */
static void put_name_xattrs(struct area *a, int dirfd, const char *name) {
  char path[PATH_MAX];
  int n = snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dirfd, name);
  if (n < 0 || (size_t)n >= sizeof(path)) {
    put_i32(a, -1);
    return;
  }
  put_xattr_names(a, -1, path);
}

/* Directory `name` in `dirfd`: i32 list status, and the listing when it could be read. */
static void put_listing(struct ra_job *job, int dirfd, const char *name) {
  struct area *a = &job->out, *d = &job->dents;
  /* O_NOATIME: listing a lower must not move its atime (as kernel overlayfs); it needs the
     owner or CAP_FOWNER, without either the directory is read as it is */
  const char *at = name[0] ? name : ".";
  int fd = openat(dirfd, at, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = openat(dirfd, at, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    put_i32(a, errno);
    return;
  }
  int err = 0;
  d->len = 0;
  for (;;) {
    if (!area_room(d, LIST_CHUNK)) {
      d->failed = false; /* reused: the next directory may fit */
      err = ENOMEM;
      break;
    }
    long n = syscall(SYS_getdents64, fd, d->p + d->len, d->cap - d->len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = errno;
      break;
    }
    if (n == 0) break;
    d->len += (size_t)n;
  }
  if (err) {
    close(fd);
    put_i32(a, err);
    return;
  }
  put_i32(a, 0);
  size_t count_at = a->len;
  uint32_t count = 0;
  put_u32(a, 0);
  for (size_t pos = 0; pos < d->len;) {
    const struct dirent64_rec *e = (const struct dirent64_rec *)(d->p + pos);
    pos += e->d_reclen;
    if (e->d_name[0] == '.' && (e->d_name[1] == 0 || (e->d_name[1] == '.' && e->d_name[2] == 0))) continue;
    size_t len = strnlen(e->d_name, 255);
    put_u64(a, e->d_ino);
    const uint8_t tl[2] = {e->d_type, (uint8_t)len};
    put(a, tl, 2);
    put(a, e->d_name, len);
    count++;
  }
  if (!a->failed) memcpy(a->p + count_at, &count, 4);
  put_xattr_names(a, fd, NULL);
  close(fd);
}

static void ra_run(struct job *j) {
  struct ra_job *job = (struct ra_job *)j;
  uint32_t i = 0;
  for (uint32_t g = 0; g < job->ngroups; g++) {
    int fd = job->fds[g];
    for (uint32_t k = 0; k < job->counts[g]; k++, i++) {
      const char *name = job->names[i];
      uint8_t want = job->wants[i];
      struct statx st;
      int serr = -1;
      if (want & RA_STAT) serr = statx(fd, name, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &st) < 0 ? errno : 0;
      put_i32(&job->out, serr);
      if (serr == 0) put_stat(&job->out, &st);
      bool dir = serr == 0 ? S_ISDIR(st.stx_mode) : !(want & RA_STAT);
      if ((want & RA_LIST) && dir) {
        put_listing(job, fd, name);
      } else {
        put_i32(&job->out, -1);
      }
      /* not a directory: by its statx, or (none asked) as the caller's listing says */
      bool file = serr == 0 ? !S_ISDIR(st.stx_mode) : serr == -1;
      if ((want & RA_XATTRS) && file && name[0]) {
        put_name_xattrs(&job->out, fd, name);
      } else {
        put_i32(&job->out, -1);
      }
    }
    close(fd);
    job->fds[g] = -1;
  }
  if (job->out.failed) job->base.err = ENOMEM;
}

static napi_value ra_result(napi_env env, struct job *j) {
  struct ra_job *job = (struct ra_job *)j;
  napi_value buf;
  if (napi_create_buffer_copy(env, job->out.len, job->out.p ? job->out.p : "", NULL, &buf) != napi_ok) return NULL;
  return buf;
}

/* The elements of typed array `v` of `type` (`size` bytes each): false with a pending exception. */
static bool typed(napi_env env, napi_value v, napi_typedarray_type type, size_t size, const char *what,
                  const char *expected, void **copy, size_t *len) {
  bool is_typed = false;
  napi_typedarray_type t;
  void *data;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, v, &t, len, &data, NULL, NULL) != napi_ok || t != type) {
    return throw_type(env, what, expected);
  }
  if (!(*copy = malloc(*len > 0 ? *len * size : 1))) {
    throw_errno(env, ENOMEM, "statx", NULL);
    return false;
  }
  if (*len > 0) memcpy(*copy, data, *len * size);
  return true;
}

static napi_value b_read_ahead(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  size_t len = 0, ngroups = 0, ncounts = 0, nwants = 0;
  struct ra_job *job = calloc(1, sizeof(*job));
  if (!job) return throw_errno(env, ENOMEM, "statx", NULL);
  int32_t *given = NULL; /* the caller's fds */
  if (!typed(env, argv[0], napi_int32_array, 4, "dirfds", "an Int32Array", (void **)&given, &ngroups)) goto fail;
  if (!(job->fds = malloc(ngroups > 0 ? ngroups * sizeof(int) : 1))) goto nomem;
  for (size_t g = 0; g < ngroups; g++) job->fds[g] = -1; /* ours once duplicated */
  job->ngroups = (uint32_t)ngroups;
  if (!typed(env, argv[1], napi_uint32_array, 4, "counts", "a Uint32Array", (void **)&job->counts, &ncounts)) goto fail;
  if (!typed(env, argv[3], napi_uint8_array, 1, "wants", "a Uint8Array", (void **)&job->wants, &nwants)) goto fail;
  if (napi_get_value_string_latin1(env, argv[2], NULL, 0, &len) != napi_ok) {
    throw_type(env, "names", "a byte string");
    goto fail;
  }
  if (!(job->buf = malloc(len + 1))) goto nomem;
  if (napi_get_value_string_latin1(env, argv[2], job->buf, len + 1, &len) != napi_ok) goto nomem;
  if (memchr(job->buf, '\0', len)) {
    throw_errno(env, EINVAL, "statx", NULL);
    goto fail;
  }
  uint64_t n = len == 0 ? 0 : 1, total = 0;
  for (size_t i = 0; i < len; i++) n += job->buf[i] == '/';
  for (size_t g = 0; g < ncounts; g++) total += job->counts[g];
  if (n > MAX_NAMES) {
    throw_errno(env, E2BIG, "statx", NULL);
    goto fail;
  }
  if (ncounts != ngroups || total != n || nwants != n) {
    throw_errno(env, EINVAL, "statx", NULL); /* the counts do not add up to the names */
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
  job->n = (uint32_t)n;
  for (size_t g = 0; g < ngroups; g++) {
    if ((job->fds[g] = fcntl(given[g], F_DUPFD_CLOEXEC, 0)) < 0) {
      throw_errno(env, errno, "fcntl", NULL);
      goto fail;
    }
  }
  free(given);
  job->base.run = ra_run;
  job->base.result = ra_result;
  job->base.cleanup = ra_cleanup;
  job->base.syscall = "statx";
  return job_start(env, &job->base, "stratafs.readAhead");
nomem:
  throw_errno(env, ENOMEM, "statx", NULL);
fail:
  free(given);
  ra_cleanup(env, &job->base);
  return NULL;
}

bool register_batch(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"readAhead", b_read_ahead},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
