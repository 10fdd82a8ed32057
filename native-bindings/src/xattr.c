/*
 * Extended attributes by path (following a final symlink or not: the l* calls) and
 * by fd. Values are Buffers of up to XATTR_SIZE_MAX bytes; names are byte strings.
 * Reads try a small stack buffer first, then ask the size and retry while it grows
 * (ERANGE), so a changing value never comes back truncated.
 */
#include "addon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

/* Where an operation applies: a path (follow or not) or an fd (path == NULL). */
struct target {
  const char *path;
  bool follow;
  int fd;
};

static ssize_t x_get(const struct target *t, const char *name, void *buf, size_t size) {
  if (!t->path) return fgetxattr(t->fd, name, buf, size);
  return t->follow ? getxattr(t->path, name, buf, size) : lgetxattr(t->path, name, buf, size);
}

static ssize_t x_list(const struct target *t, char *buf, size_t size) {
  if (!t->path) return flistxattr(t->fd, buf, size);
  return t->follow ? listxattr(t->path, buf, size) : llistxattr(t->path, buf, size);
}

static int x_set(const struct target *t, const char *name, const void *v, size_t n, int flags) {
  if (!t->path) return fsetxattr(t->fd, name, v, n, flags);
  return t->follow ? setxattr(t->path, name, v, n, flags) : lsetxattr(t->path, name, v, n, flags);
}

static int x_remove(const struct target *t, const char *name) {
  if (!t->path) return fremovexattr(t->fd, name);
  return t->follow ? removexattr(t->path, name) : lremovexattr(t->path, name);
}

static const char *op_name(const struct target *t, const char *f, const char *plain, const char *l) {
  if (!t->path) return f;
  return t->follow ? plain : l;
}

#define SMALL_VALUE 4096

/*
 * Calls get (name != NULL) or list into a buffer large enough for the whole result.
 * Returns the length and sets *out (either `small` or a malloc'd block); -1 with errno.
 */
static ssize_t fetch(const struct target *t, const char *name, char *small, char **out) {
  ssize_t n = name ? x_get(t, name, small, SMALL_VALUE) : x_list(t, small, SMALL_VALUE);
  *out = small;
  while (n < 0 && errno == ERANGE) {
    ssize_t size = name ? x_get(t, name, NULL, 0) : x_list(t, NULL, 0);
    if (size < 0) return -1;
    char *big = malloc(size > 0 ? (size_t)size : 1);
    if (!big) {
      errno = ENOMEM;
      return -1;
    }
    n = name ? x_get(t, name, big, (size_t)size) : x_list(t, big, (size_t)size);
    if (n >= 0) {
      *out = big;
      return n;
    }
    int err = errno;
    free(big);
    errno = err;
  }
  return n;
}

static napi_value do_get(napi_env env, const struct target *t, const char *name) {
  char small[SMALL_VALUE];
  char *data;
  napi_value result = NULL;
  ssize_t n = fetch(t, name, small, &data);
  const char *syscall = op_name(t, "fgetxattr", "getxattr", "lgetxattr");
  if (n < 0) return throw_errno(env, errno, syscall, t->path ? t->path : name);
  napi_create_buffer_copy(env, (size_t)n, data, NULL, &result);
  if (data != small) free(data);
  return result;
}

static napi_value do_list(napi_env env, const struct target *t) {
  char small[SMALL_VALUE];
  char *data;
  napi_value arr = NULL;
  uint32_t count = 0;
  ssize_t n = fetch(t, NULL, small, &data);
  if (n < 0) return throw_errno(env, errno, op_name(t, "flistxattr", "listxattr", "llistxattr"), t->path);
  bool ok = napi_create_array(env, &arr) == napi_ok;
  for (ssize_t pos = 0; ok && pos < n;) {
    size_t len = strnlen(data + pos, (size_t)(n - pos));
    if (len > 0) ok = napi_set_element(env, arr, count++, js_bytes(env, data + pos, len)) == napi_ok;
    pos += (ssize_t)len + 1;
  }
  if (data != small) free(data);
  return ok ? arr : NULL;
}

static napi_value do_set(napi_env env, const struct target *t, const char *name,
                         napi_value value, napi_value flags_v) {
  void *data;
  size_t len;
  int32_t flags;
  if (!arg_buffer(env, value, "value", &data, &len) || !arg_i32(env, flags_v, "flags", &flags)) {
    return NULL;
  }
  if (x_set(t, name, data, len, flags) < 0) {
    return throw_errno(env, errno, op_name(t, "fsetxattr", "setxattr", "lsetxattr"),
                       t->path ? t->path : name);
  }
  return js_undefined(env);
}

static napi_value do_remove(napi_env env, const struct target *t, const char *name) {
  if (x_remove(t, name) < 0) {
    return throw_errno(env, errno, op_name(t, "fremovexattr", "removexattr", "lremovexattr"),
                       t->path ? t->path : name);
  }
  return js_undefined(env);
}

/* ---- by path: (path, [name,] ..., follow) ---- */

static napi_value b_getxattr(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  namebuf_t path, name;
  struct target t = {path, false, -1};
  if (!arg_name(env, argv[0], "path", "getxattr", path) ||
      !arg_name(env, argv[1], "name", "getxattr", name) ||
      !arg_bool(env, argv[2], "follow", &t.follow)) {
    return NULL;
  }
  return do_get(env, &t, name);
}

/* getxattrOrErrno(path, name, follow): the value, or the errno as a number (no throw:
 * an absent attribute is the common answer, and a JS exception costs far more than the
 * syscall) */
static napi_value b_getxattr_or_errno(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  namebuf_t path, name;
  struct target t = {path, false, -1};
  char small[SMALL_VALUE];
  char *data;
  napi_value result = NULL;
  if (!arg_name(env, argv[0], "path", "getxattr", path) ||
      !arg_name(env, argv[1], "name", "getxattr", name) ||
      !arg_bool(env, argv[2], "follow", &t.follow)) {
    return NULL;
  }
  ssize_t n = fetch(&t, name, small, &data);
  if (n < 0) return js_i32(env, errno);
  napi_create_buffer_copy(env, (size_t)n, data, NULL, &result);
  if (data != small) free(data);
  return result;
}

static napi_value b_setxattr(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  namebuf_t path, name;
  struct target t = {path, false, -1};
  if (!arg_name(env, argv[0], "path", "setxattr", path) ||
      !arg_name(env, argv[1], "name", "setxattr", name) ||
      !arg_bool(env, argv[4], "follow", &t.follow)) {
    return NULL;
  }
  return do_set(env, &t, name, argv[2], argv[3]);
}

static napi_value b_listxattr(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  namebuf_t path;
  struct target t = {path, false, -1};
  if (!arg_name(env, argv[0], "path", "listxattr", path) ||
      !arg_bool(env, argv[1], "follow", &t.follow)) {
    return NULL;
  }
  return do_list(env, &t);
}

static napi_value b_removexattr(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  namebuf_t path, name;
  struct target t = {path, false, -1};
  if (!arg_name(env, argv[0], "path", "removexattr", path) ||
      !arg_name(env, argv[1], "name", "removexattr", name) ||
      !arg_bool(env, argv[2], "follow", &t.follow)) {
    return NULL;
  }
  return do_remove(env, &t, name);
}

/* ---- by fd ---- */

static napi_value b_fgetxattr(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  namebuf_t name;
  struct target t = {NULL, false, -1};
  if (!arg_fd(env, argv[0], "fd", &t.fd) || !arg_name(env, argv[1], "name", "fgetxattr", name)) {
    return NULL;
  }
  return do_get(env, &t, name);
}

static napi_value b_fsetxattr(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  namebuf_t name;
  struct target t = {NULL, false, -1};
  if (!arg_fd(env, argv[0], "fd", &t.fd) || !arg_name(env, argv[1], "name", "fsetxattr", name)) {
    return NULL;
  }
  return do_set(env, &t, name, argv[2], argv[3]);
}

static napi_value b_flistxattr(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  struct target t = {NULL, false, -1};
  if (!arg_fd(env, argv[0], "fd", &t.fd)) return NULL;
  return do_list(env, &t);
}

static napi_value b_fremovexattr(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  namebuf_t name;
  struct target t = {NULL, false, -1};
  if (!arg_fd(env, argv[0], "fd", &t.fd) ||
      !arg_name(env, argv[1], "name", "fremovexattr", name)) {
    return NULL;
  }
  return do_remove(env, &t, name);
}

bool register_xattr(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"getxattr", b_getxattr},   {"getxattrOrErrno", b_getxattr_or_errno}, {"setxattr", b_setxattr},     {"listxattr", b_listxattr},
    {"removexattr", b_removexattr}, {"fgetxattr", b_fgetxattr}, {"fsetxattr", b_fsetxattr},
    {"flistxattr", b_flistxattr}, {"fremovexattr", b_fremovexattr},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
