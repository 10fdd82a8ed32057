/*
 * Reading metadata: statx(2) into a Stat object, fstatfs(2), and the entries of a
 * directory with getdents64(2).
 */
#include "addon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

static const enum key_id stat_keys[] = {
  K_DEV_MAJOR, K_DEV_MINOR, K_INO,        K_MODE,         K_NLINK,     K_UID,
  K_GID,       K_RDEV_MAJOR, K_RDEV_MINOR, K_SIZE,        K_BLOCKS,    K_BLKSIZE,
  K_ATIME_SEC, K_ATIME_NSEC, K_MTIME_SEC,  K_MTIME_NSEC,  K_CTIME_SEC, K_CTIME_NSEC,
};

napi_value stat_object(napi_env env, const struct statx *st) {
  const napi_value values[] = {
    js_u32(env, st->stx_dev_major),  js_u32(env, st->stx_dev_minor),
    js_bigint_u64(env, st->stx_ino), js_u32(env, st->stx_mode),
    js_u32(env, st->stx_nlink),      js_u32(env, st->stx_uid),
    js_u32(env, st->stx_gid),        js_u32(env, st->stx_rdev_major),
    js_u32(env, st->stx_rdev_minor), js_int64(env, (int64_t)st->stx_size),
    js_int64(env, (int64_t)st->stx_blocks), js_u32(env, st->stx_blksize),
    js_i64(env, st->stx_atime.tv_sec), js_u32(env, st->stx_atime.tv_nsec),
    js_i64(env, st->stx_mtime.tv_sec), js_u32(env, st->stx_mtime.tv_nsec),
    js_i64(env, st->stx_ctime.tv_sec), js_u32(env, st->stx_ctime.tv_nsec),
  };
  return new_object(env, COUNT_OF(stat_keys), stat_keys, values);
}

/* statx(dirfd, path, flags) -> Stat; with `or_errno` a failure returns the errno */
static napi_value do_statx(napi_env env, napi_callback_info info, bool or_errno) {
  GET_ARGS(3);
  int dirfd;
  int32_t flags;
  namebuf_t path;
  struct statx st;
  if (!arg_fd(env, argv[0], "dirfd", &dirfd) || !arg_name(env, argv[1], "path", "statx", path) ||
      !arg_i32(env, argv[2], "flags", &flags)) {
    return NULL;
  }
  if (statx(dirfd, path, flags, STATX_BASIC_STATS, &st) < 0) {
    return or_errno ? js_i32(env, errno) : throw_errno(env, errno, "statx", path);
  }
  return stat_object(env, &st);
}

static napi_value b_statx(napi_env env, napi_callback_info info) {
  return do_statx(env, info, false);
}

/* statxOrErrno: as statx, without an exception for a missing name (lookups miss often) */
static napi_value b_statx_or_errno(napi_env env, napi_callback_info info) {
  return do_statx(env, info, true);
}

static napi_value b_fstatfs(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int fd;
  struct statfs sf;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (fstatfs(fd, &sf) < 0) return throw_errno(env, errno, "fstatfs", NULL);
  static const enum key_id ids[] = {
    K_BSIZE, K_FRSIZE, K_BLOCKS, K_BFREE, K_BAVAIL, K_FILES, K_FFREE, K_NAMEMAX,
  };
  const napi_value values[] = {
    js_i64(env, (int64_t)sf.f_bsize),  js_i64(env, (int64_t)sf.f_frsize),
    js_int64(env, (int64_t)sf.f_blocks), js_int64(env, (int64_t)sf.f_bfree),
    js_int64(env, (int64_t)sf.f_bavail), js_int64(env, (int64_t)sf.f_files),
    js_int64(env, (int64_t)sf.f_ffree),  js_i64(env, (int64_t)sf.f_namelen),
  };
  return new_object(env, COUNT_OF(ids), ids, values);
}

/* The record getdents64(2) fills, as the kernel lays it out. */
struct linux_dirent64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

#define DENTS_BUF_SIZE (128 * 1024)

/* Appends the records in buf[0..n) to `arr` as {name, ino, type}. */
static bool push_entries(napi_env env, napi_value arr, uint32_t *count, const char *buf, long n) {
  for (long pos = 0; pos < n;) {
    const struct linux_dirent64 *d = (const struct linux_dirent64 *)(buf + pos);
    static const enum key_id ids[] = {K_NAME, K_INO, K_TYPE};
    const napi_value values[] = {
      js_bytes(env, d->d_name, strlen(d->d_name)),
      js_bigint_u64(env, d->d_ino),
      js_u32(env, d->d_type),
    };
    napi_value entry = new_object(env, COUNT_OF(ids), ids, values);
    if (!entry || napi_set_element(env, arr, (*count)++, entry) != napi_ok) {
      return false;
    }
    pos += d->d_reclen;
  }
  return true;
}

/* getdents(fd) -> every entry from offset 0, '.' and '..' included */
static napi_value b_getdents(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int fd;
  napi_value arr;
  uint32_t count = 0;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (lseek(fd, 0, SEEK_SET) < 0) return throw_errno(env, errno, "lseek", NULL);
  char *buf = malloc(DENTS_BUF_SIZE);
  if (!buf) return throw_errno(env, ENOMEM, "getdents64", NULL);
  if (napi_create_array(env, &arr) != napi_ok) {
    free(buf);
    return NULL;
  }
  for (;;) {
    long n = syscall(SYS_getdents64, fd, buf, DENTS_BUF_SIZE);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      free(buf);
      return throw_errno(env, err, "getdents64", NULL);
    }
    if (n == 0) break;
    if (!push_entries(env, arr, &count, buf, n)) {
      free(buf);
      return NULL;
    }
  }
  free(buf);
  return arr;
}

bool register_stat(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"statx", b_statx},
    {"statxOrErrno", b_statx_or_errno},
    {"fstatfs", b_fstatfs},
    {"getdents", b_getdents},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
