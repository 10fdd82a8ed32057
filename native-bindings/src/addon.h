/*
 * Shared declarations of the stratafs addon: argument conversion, error objects,
 * cached property keys and the per-module registration functions.
 *
 * Conventions (the TypeScript side relies on them, see src/native/addon.d.ts):
 * - names and paths are byte strings: latin1 JS strings, one code unit per byte;
 * - a failing syscall throws an Error with errno (positive), code ('ENOENT') and
 *   syscall; the message reads "ENOENT: no such file or directory, openat 'name'";
 * - a helper that fails leaves a pending JS exception and returns false/NULL, so a
 *   binding just returns NULL.
 */
#ifndef STRATAFS_ADDON_H
#define STRATAFS_ADDON_H

#include <node_api.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A name buffer: room for PATH_MAX bytes, the NUL, and one byte to detect overflow. */
#define NAME_BUF_SIZE (PATH_MAX + 2)
typedef char namebuf_t[NAME_BUF_SIZE];

/* Fetches up to `n` arguments into `argv` (missing ones read as undefined). */
#define GET_ARGS(n)                                                              \
  size_t argc = (n);                                                             \
  napi_value argv[(n) > 0 ? (n) : 1];                                            \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL

/* ---- errors ---- */

/*
 * Builds the Error object for errno `err`: errno, code, syscall, and a message that
 * names `path` (a file, or what the call acted on) unless it is NULL.
 */
napi_value errno_error(napi_env env, int err, const char *syscall, const char *path);
/* Throws errno_error(...) and returns NULL (for `return throw_errno(...)`). */
napi_value throw_errno(napi_env env, int err, const char *syscall, const char *path);
/* Throws a TypeError "<what> must be <expected>" with code ERR_INVALID_ARG_TYPE; returns false. */
bool throw_type(napi_env env, const char *what, const char *expected);
/* Rethrows a pending exception as an uncaught one (used from callbacks with no JS caller). */
void report_pending_exception(napi_env env);

/* ---- arguments (each returns false with a pending exception on failure) ---- */

bool arg_i32(napi_env env, napi_value v, const char *what, int32_t *out);
bool arg_u32(napi_env env, napi_value v, const char *what, uint32_t *out);
bool arg_i64(napi_env env, napi_value v, const char *what, int64_t *out);
/* a non-negative Int64 (src/int64.ts): a safe integer number or a bigint up to 2^64-1 */
bool arg_size(napi_env env, napi_value v, const char *what, uint64_t *out);
/* a signed Int64 (an offset that may be negative): a safe integer number or a bigint */
bool arg_off(napi_env env, napi_value v, const char *what, int64_t *out);
bool arg_bool(napi_env env, napi_value v, const char *what, bool *out);
/* a file descriptor (or AT_FDCWD); a bad one is left for the kernel to refuse (EBADF) */
bool arg_fd(napi_env env, napi_value v, const char *what, int *out);
/*
 * A byte string into `buf` (NUL-terminated). Longer than PATH_MAX bytes throws
 * ENAMETOOLONG, an embedded NUL throws EINVAL, both with `syscall`.
 */
bool arg_name(napi_env env, napi_value v, const char *what, const char *syscall, namebuf_t buf);
/* A byte string of any length, malloc'd (caller frees); NULL on failure. */
char *arg_string_alloc(napi_env env, napi_value v, const char *what, const char *syscall);
/* The bytes of a Buffer (or any Uint8Array). */
bool arg_buffer(napi_env env, napi_value v, const char *what, void **data, size_t *len);
bool arg_function(napi_env env, napi_value v, const char *what);
/*
 * The native data an object of ours wraps (napi_wrap), when it carries `tag` (each kind
 * of handle has its own); NULL with a TypeError "<what> must be <expected>" otherwise.
 */
void *arg_tagged(napi_env env, napi_value v, const napi_type_tag *tag, const char *what, const char *expected);

/* ---- values ---- */

napi_value js_undefined(napi_env env);
napi_value js_i32(napi_env env, int32_t v);
napi_value js_u32(napi_env env, uint32_t v);
napi_value js_i64(napi_env env, int64_t v);
/* an exact Int64 (src/int64.ts): a number when it is a safe integer, else a bigint */
napi_value js_int64(napi_env env, int64_t v);
napi_value js_bigint_u64(napi_env env, uint64_t v);
napi_value js_bytes(napi_env env, const char *s, size_t len);
struct statx;
/* a Stat object (src/native/addon.d.ts) of a statx(2) result */
napi_value stat_object(napi_env env, const struct statx *st);

/* ---- property keys of result and error objects ---- */

enum key_id {
  K_ERRNO, K_CODE, K_SYSCALL,
  K_DEV_MAJOR, K_DEV_MINOR, K_INO, K_MODE, K_NLINK, K_UID, K_GID, K_RDEV_MAJOR,
  K_RDEV_MINOR, K_SIZE, K_BLOCKS, K_BLKSIZE, K_ATIME_SEC, K_ATIME_NSEC, K_MTIME_SEC,
  K_MTIME_NSEC, K_CTIME_SEC, K_CTIME_NSEC,
  K_BSIZE, K_FRSIZE, K_BFREE, K_BAVAIL, K_FILES, K_FFREE, K_NAMEMAX,
  K_NAME, K_TYPE, K_FD, K_BUF, K_PID,
  K_COUNT
};

extern const char *const key_names[K_COUNT];

/* obj[key_names[id]] = value; false on failure (also when value is NULL). */
bool set_key(napi_env env, napi_value obj, enum key_id id, napi_value value);
/* A plain object with n (<= 32) properties defined at once; NULL on failure. */
napi_value new_object(napi_env env, size_t n, const enum key_id *ids, const napi_value *values);

/* ---- registration ---- */

struct fn_entry {
  const char *name;
  napi_callback cb;
};

bool define_functions(napi_env env, napi_value exports, const struct fn_entry *fns, size_t n);
#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

bool register_constants(napi_env env, napi_value exports);
bool register_fsops(napi_env env, napi_value exports);
bool register_stat(napi_env env, napi_value exports);
bool register_batch(napi_env env, napi_value exports);
/* what readAhead (batch.c) reads of a name */
#define RA_STAT 1
#define RA_LIST 2
#define RA_XATTRS 4
bool register_xattr(napi_env env, napi_value exports);
bool register_io(napi_env env, napi_value exports);
bool register_copydata(napi_env env, napi_value exports);
bool register_copyup(napi_env env, napi_value exports);
bool register_fuse_dev(napi_env env, napi_value exports);
bool register_fuse_poller(napi_env env, napi_value exports);
bool register_fuse_known(napi_env env, napi_value exports);
bool register_fuse_uring(napi_env env, napi_value exports);
bool register_fusermount(napi_env env, napi_value exports);
bool register_mount(napi_env env, napi_value exports);
bool register_process(napi_env env, napi_value exports);
bool register_peercred(napi_env env, napi_value exports);

#endif
