/*
 * Files and directories relative to a directory fd: open, create, link, rename,
 * ownership, mode, times, truncate and sync. Thin wrappers: no policy here.
 */
#include "addon.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* openat(dirfd, path, flags, mode) -> fd */
static napi_value b_openat(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  int dirfd;
  int32_t flags;
  uint32_t mode;
  namebuf_t path;
  if (!arg_fd(env, argv[0], "dirfd", &dirfd) ||
      !arg_name(env, argv[1], "path", "openat", path) ||
      !arg_i32(env, argv[2], "flags", &flags) || !arg_u32(env, argv[3], "mode", &mode)) {
    return NULL;
  }
  int fd = openat(dirfd, path, flags, (mode_t)mode);
  if (fd < 0) return throw_errno(env, errno, "openat", path);
  return js_i32(env, fd);
}

/* openat2(dirfd, path, flags, mode, resolve) -> fd; the kernel has no glibc wrapper here */
static napi_value b_openat2(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  int dirfd;
  int32_t flags;
  uint32_t mode, resolve;
  namebuf_t path;
  struct open_how how;
  if (!arg_fd(env, argv[0], "dirfd", &dirfd) ||
      !arg_name(env, argv[1], "path", "openat2", path) ||
      !arg_i32(env, argv[2], "flags", &flags) || !arg_u32(env, argv[3], "mode", &mode) ||
      !arg_u32(env, argv[4], "resolve", &resolve)) {
    return NULL;
  }
  memset(&how, 0, sizeof(how));
  how.flags = (uint64_t)(uint32_t)flags;
  /* the kernel refuses a mode unless the open may create */
  how.mode = ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) ? mode : 0;
  how.resolve = resolve;
  long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
  if (fd < 0) return throw_errno(env, errno, "openat2", path);
  return js_i32(env, (int32_t)fd);
}

static napi_value b_close(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int fd;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  /* never retried: on Linux the fd is gone even when close reports EINTR */
  if (close(fd) < 0 && errno != EINTR) return throw_errno(env, errno, "close", NULL);
  return js_undefined(env);
}

static napi_value b_mkdirat(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  int dirfd;
  uint32_t mode;
  namebuf_t name;
  if (!arg_fd(env, argv[0], "dirfd", &dirfd) ||
      !arg_name(env, argv[1], "name", "mkdirat", name) || !arg_u32(env, argv[2], "mode", &mode)) {
    return NULL;
  }
  if (mkdirat(dirfd, name, (mode_t)mode) < 0) return throw_errno(env, errno, "mkdirat", name);
  return js_undefined(env);
}

static napi_value b_mknodat(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  int dirfd;
  uint32_t mode, major, minor;
  namebuf_t name;
  if (!arg_fd(env, argv[0], "dirfd", &dirfd) ||
      !arg_name(env, argv[1], "name", "mknodat", name) ||
      !arg_u32(env, argv[2], "mode", &mode) || !arg_u32(env, argv[3], "major", &major) ||
      !arg_u32(env, argv[4], "minor", &minor)) {
    return NULL;
  }
  if (mknodat(dirfd, name, (mode_t)mode, makedev(major, minor)) < 0) {
    return throw_errno(env, errno, "mknodat", name);
  }
  return js_undefined(env);
}

static napi_value b_symlinkat(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  int dirfd;
  namebuf_t target, name;
  if (!arg_name(env, argv[0], "target", "symlinkat", target) ||
      !arg_fd(env, argv[1], "dirfd", &dirfd) ||
      !arg_name(env, argv[2], "name", "symlinkat", name)) {
    return NULL;
  }
  if (symlinkat(target, dirfd, name) < 0) return throw_errno(env, errno, "symlinkat", name);
  return js_undefined(env);
}

static napi_value b_readlinkat(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int dirfd;
  namebuf_t name, target;
  if (!arg_fd(env, argv[0], "dirfd", &dirfd) ||
      !arg_name(env, argv[1], "name", "readlinkat", name)) {
    return NULL;
  }
  ssize_t n = readlinkat(dirfd, name, target, sizeof(target));
  if (n < 0) return throw_errno(env, errno, "readlinkat", name);
  if ((size_t)n >= sizeof(target)) return throw_errno(env, ENAMETOOLONG, "readlinkat", name);
  return js_bytes(env, target, (size_t)n);
}

static napi_value b_linkat(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  int olddirfd, newdirfd;
  int32_t flags;
  namebuf_t oldname, newname;
  if (!arg_fd(env, argv[0], "olddirfd", &olddirfd) ||
      !arg_name(env, argv[1], "oldname", "linkat", oldname) ||
      !arg_fd(env, argv[2], "newdirfd", &newdirfd) ||
      !arg_name(env, argv[3], "newname", "linkat", newname) ||
      !arg_i32(env, argv[4], "flags", &flags)) {
    return NULL;
  }
  if (linkat(olddirfd, oldname, newdirfd, newname, flags) < 0) {
    return throw_errno(env, errno, "linkat", oldname);
  }
  return js_undefined(env);
}

static napi_value b_unlinkat(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  int dirfd;
  int32_t flags;
  namebuf_t name;
  if (!arg_fd(env, argv[0], "dirfd", &dirfd) ||
      !arg_name(env, argv[1], "name", "unlinkat", name) ||
      !arg_i32(env, argv[2], "flags", &flags)) {
    return NULL;
  }
  if (unlinkat(dirfd, name, flags) < 0) return throw_errno(env, errno, "unlinkat", name);
  return js_undefined(env);
}

static napi_value b_renameat2(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  int olddirfd, newdirfd;
  uint32_t flags;
  namebuf_t oldname, newname;
  if (!arg_fd(env, argv[0], "olddirfd", &olddirfd) ||
      !arg_name(env, argv[1], "oldname", "renameat2", oldname) ||
      !arg_fd(env, argv[2], "newdirfd", &newdirfd) ||
      !arg_name(env, argv[3], "newname", "renameat2", newname) ||
      !arg_u32(env, argv[4], "flags", &flags)) {
    return NULL;
  }
  if (renameat2(olddirfd, oldname, newdirfd, newname, flags) < 0) {
    return throw_errno(env, errno, "renameat2", oldname);
  }
  return js_undefined(env);
}

static napi_value b_fchownat(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  int dirfd;
  uint32_t uid, gid;
  int32_t flags;
  namebuf_t name;
  if (!arg_fd(env, argv[0], "dirfd", &dirfd) ||
      !arg_name(env, argv[1], "name", "fchownat", name) ||
      !arg_u32(env, argv[2], "uid", &uid) || !arg_u32(env, argv[3], "gid", &gid) ||
      !arg_i32(env, argv[4], "flags", &flags)) {
    return NULL;
  }
  if (fchownat(dirfd, name, (uid_t)uid, (gid_t)gid, flags) < 0) {
    return throw_errno(env, errno, "fchownat", name);
  }
  return js_undefined(env);
}

static napi_value b_fchmodat(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  int dirfd;
  uint32_t mode;
  namebuf_t name;
  if (!arg_fd(env, argv[0], "dirfd", &dirfd) ||
      !arg_name(env, argv[1], "name", "fchmodat", name) ||
      !arg_u32(env, argv[2], "mode", &mode)) {
    return NULL;
  }
  if (fchmodat(dirfd, name, (mode_t)mode, 0) < 0) return throw_errno(env, errno, "fchmodat", name);
  return js_undefined(env);
}

static napi_value b_fchmod(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int fd;
  uint32_t mode;
  if (!arg_fd(env, argv[0], "fd", &fd) || !arg_u32(env, argv[1], "mode", &mode)) return NULL;
  if (fchmod(fd, (mode_t)mode) < 0) return throw_errno(env, errno, "fchmod", NULL);
  return js_undefined(env);
}

static napi_value b_fchown(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  int fd;
  uint32_t uid, gid;
  if (!arg_fd(env, argv[0], "fd", &fd) || !arg_u32(env, argv[1], "uid", &uid) ||
      !arg_u32(env, argv[2], "gid", &gid)) {
    return NULL;
  }
  if (fchown(fd, (uid_t)uid, (gid_t)gid) < 0) return throw_errno(env, errno, "fchown", NULL);
  return js_undefined(env);
}

/* Reads (sec, nsec) pairs for atime and mtime from argv[0..3]. */
static bool arg_times(napi_env env, napi_value *argv, struct timespec ts[2]) {
  int64_t asec, ansec, msec, mnsec;
  if (!arg_i64(env, argv[0], "atimeSec", &asec) || !arg_i64(env, argv[1], "atimeNsec", &ansec) ||
      !arg_i64(env, argv[2], "mtimeSec", &msec) || !arg_i64(env, argv[3], "mtimeNsec", &mnsec)) {
    return false;
  }
  ts[0].tv_sec = (time_t)asec;
  ts[0].tv_nsec = (long)ansec;
  ts[1].tv_sec = (time_t)msec;
  ts[1].tv_nsec = (long)mnsec;
  return true;
}

static napi_value b_utimensat(napi_env env, napi_callback_info info) {
  GET_ARGS(7);
  int dirfd;
  int32_t flags;
  namebuf_t name;
  struct timespec ts[2];
  if (!arg_fd(env, argv[0], "dirfd", &dirfd) ||
      !arg_name(env, argv[1], "name", "utimensat", name) || !arg_times(env, argv + 2, ts) ||
      !arg_i32(env, argv[6], "flags", &flags)) {
    return NULL;
  }
  if (utimensat(dirfd, name, ts, flags) < 0) return throw_errno(env, errno, "utimensat", name);
  return js_undefined(env);
}

static napi_value b_futimens(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  int fd;
  struct timespec ts[2];
  if (!arg_fd(env, argv[0], "fd", &fd) || !arg_times(env, argv + 1, ts)) return NULL;
  if (futimens(fd, ts) < 0) return throw_errno(env, errno, "futimens", NULL);
  return js_undefined(env);
}

static napi_value b_ftruncate(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int fd;
  uint64_t size;
  if (!arg_fd(env, argv[0], "fd", &fd) || !arg_size(env, argv[1], "size", &size)) return NULL;
  if (ftruncate(fd, (off_t)size) < 0) return throw_errno(env, errno, "ftruncate", NULL);
  return js_undefined(env);
}

/* fcntl(F_SETFL): the status flags the kernel lets change (O_APPEND, O_NOATIME, O_NONBLOCK, ...) */
static napi_value b_setfl(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int fd;
  int32_t flags;
  if (!arg_fd(env, argv[0], "fd", &fd) || !arg_i32(env, argv[1], "flags", &flags)) return NULL;
  if (fcntl(fd, F_SETFL, flags) < 0) return throw_errno(env, errno, "fcntl", NULL);
  return js_undefined(env);
}

static napi_value b_fsync(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int fd;
  bool datasync;
  if (!arg_fd(env, argv[0], "fd", &fd) || !arg_bool(env, argv[1], "datasync", &datasync)) {
    return NULL;
  }
  if ((datasync ? fdatasync(fd) : fsync(fd)) < 0) {
    return throw_errno(env, errno, datasync ? "fdatasync" : "fsync", NULL);
  }
  return js_undefined(env);
}

static napi_value b_syncfs(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int fd;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (syncfs(fd) < 0) return throw_errno(env, errno, "syncfs", NULL);
  return js_undefined(env);
}

bool register_fsops(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"openat", b_openat},       {"openat2", b_openat2},     {"close", b_close},
    {"mkdirat", b_mkdirat},     {"mknodat", b_mknodat},     {"symlinkat", b_symlinkat},
    {"readlinkat", b_readlinkat}, {"linkat", b_linkat},     {"unlinkat", b_unlinkat},
    {"renameat2", b_renameat2}, {"fchownat", b_fchownat},   {"fchmodat", b_fchmodat},
    {"fchmod", b_fchmod},       {"fchown", b_fchown},       {"utimensat", b_utimensat},
    {"futimens", b_futimens},   {"ftruncate", b_ftruncate}, {"fsync", b_fsync},
    {"syncfs", b_syncfs},       {"setfl", b_setfl},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
