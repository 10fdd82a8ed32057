/*
 * Helpers shared by every module: errno errors, argument conversion (byte strings,
 * numbers, buffers) and small value constructors.
 */
#include "addon.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ---- */

static const char *errno_code(int err) {
  const char *name = strerrorname_np(err);
  return name ? name : "UNKNOWN";
}

static const char *errno_text(int err) {
  const char *text = strerrordesc_np(err);
  return text ? text : "unknown error";
}

napi_value errno_error(napi_env env, int err, const char *syscall, const char *path) {
  const char *code = errno_code(err);
  const char *text = errno_text(err);
  size_t size = strlen(code) + strlen(text) + strlen(syscall) + (path ? strlen(path) : 0) + 16;
  char *msg = malloc(size);
  napi_value js_code, js_msg, error;
  if (!msg) return NULL;
  /* "ENOENT: no such file or directory, ...": lower-case the description, as Node prints it */
  char lead = (text[0] >= 'A' && text[0] <= 'Z' && text[1] >= 'a' && text[1] <= 'z')
                  ? (char)(text[0] - 'A' + 'a') : text[0];
  /* the message carries the name's bytes unchanged: it is created as latin1 */
  if (path) {
    snprintf(msg, size, "%s: %c%s, %s '%s'", code, lead, text + 1, syscall, path);
  } else {
    snprintf(msg, size, "%s: %c%s, %s", code, lead, text + 1, syscall);
  }
  bool ok = napi_create_string_latin1(env, code, NAPI_AUTO_LENGTH, &js_code) == napi_ok &&
            napi_create_string_latin1(env, msg, NAPI_AUTO_LENGTH, &js_msg) == napi_ok &&
            napi_create_error(env, js_code, js_msg, &error) == napi_ok &&
            set_key(env, error, K_ERRNO, js_i32(env, err)) &&
            set_key(env, error, K_SYSCALL, js_bytes(env, syscall, strlen(syscall)));
  free(msg);
  return ok ? error : NULL;
}

napi_value throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  napi_value error = errno_error(env, err, syscall, path);
  if (error) {
    napi_throw(env, error);
  } else {
    napi_throw_error(env, errno_code(err), errno_text(err));
  }
  return NULL;
}

bool throw_type(napi_env env, const char *what, const char *expected) {
  char msg[256];
  snprintf(msg, sizeof(msg), "The \"%s\" argument must be %s", what, expected);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return false;
}

void report_pending_exception(napi_env env) {
  bool pending = false;
  napi_value exc;
  if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) return;
  if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
}

/* ---- arguments ---- */

bool arg_i32(napi_env env, napi_value v, const char *what, int32_t *out) {
  if (napi_get_value_int32(env, v, out) != napi_ok) return throw_type(env, what, "a number");
  return true;
}

bool arg_u32(napi_env env, napi_value v, const char *what, uint32_t *out) {
  if (napi_get_value_uint32(env, v, out) != napi_ok) return throw_type(env, what, "a number");
  return true;
}

bool arg_i64(napi_env env, napi_value v, const char *what, int64_t *out) {
  if (napi_get_value_int64(env, v, out) != napi_ok) return throw_type(env, what, "a number");
  return true;
}

/*
 * 64-bit file quantities arrive as an Int64 (src/int64.ts): a number that is a safe
 * integer, or a bigint. A number outside the safe range was rounded somewhere: refuse
 * it rather than pass a neighbouring value to the kernel.
 */
#define MAX_SAFE_INTEGER 9007199254740991.0

static bool is_bigint(napi_env env, napi_value v) {
  napi_valuetype t;
  return napi_typeof(env, v, &t) == napi_ok && t == napi_bigint;
}

bool arg_size(napi_env env, napi_value v, const char *what, uint64_t *out) {
  if (is_bigint(env, v)) {
    bool lossless = false;
    if (napi_get_value_bigint_uint64(env, v, out, &lossless) != napi_ok || !lossless) {
      return throw_type(env, what, "an integer in 0..2^64-1");
    }
    return true;
  }
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0) || d > MAX_SAFE_INTEGER ||
      d != floor(d)) {
    return throw_type(env, what, "a non-negative safe integer or a bigint");
  }
  *out = (uint64_t)d;
  return true;
}

bool arg_off(napi_env env, napi_value v, const char *what, int64_t *out) {
  if (is_bigint(env, v)) {
    bool lossless = false;
    if (napi_get_value_bigint_int64(env, v, out, &lossless) != napi_ok || !lossless) {
      return throw_type(env, what, "an integer in -2^63..2^63-1");
    }
    return true;
  }
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(fabs(d) <= MAX_SAFE_INTEGER) ||
      d != floor(d)) {
    return throw_type(env, what, "a safe integer or a bigint");
  }
  *out = (int64_t)d;
  return true;
}

bool arg_bool(napi_env env, napi_value v, const char *what, bool *out) {
  if (napi_get_value_bool(env, v, out) != napi_ok) return throw_type(env, what, "a boolean");
  return true;
}

bool arg_fd(napi_env env, napi_value v, const char *what, int *out) {
  int32_t fd;
  if (!arg_i32(env, v, what, &fd)) return false;
  *out = fd;
  return true;
}

bool arg_name(napi_env env, napi_value v, const char *what, const char *syscall, namebuf_t buf) {
  size_t len = 0;
  if (napi_get_value_string_latin1(env, v, buf, NAME_BUF_SIZE, &len) != napi_ok) {
    return throw_type(env, what, "a string");
  }
  if (len > PATH_MAX) {
    throw_errno(env, ENAMETOOLONG, syscall, NULL);
    return false;
  }
  if (memchr(buf, '\0', len)) {
    throw_errno(env, EINVAL, syscall, NULL);
    return false;
  }
  return true;
}

char *arg_string_alloc(napi_env env, napi_value v, const char *what, const char *syscall) {
  size_t len = 0;
  char *s;
  if (napi_get_value_string_latin1(env, v, NULL, 0, &len) != napi_ok) {
    throw_type(env, what, "a string");
    return NULL;
  }
  s = malloc(len + 1);
  if (!s) {
    throw_errno(env, ENOMEM, syscall, NULL);
    return NULL;
  }
  if (napi_get_value_string_latin1(env, v, s, len + 1, &len) != napi_ok) {
    free(s);
    throw_type(env, what, "a string");
    return NULL;
  }
  if (memchr(s, '\0', len)) {
    free(s);
    throw_errno(env, EINVAL, syscall, NULL);
    return NULL;
  }
  return s;
}

bool arg_buffer(napi_env env, napi_value v, const char *what, void **data, size_t *len) {
  bool is_typed = false;
  napi_typedarray_type type;
  if (napi_get_buffer_info(env, v, data, len) == napi_ok) return true;
  if (napi_is_typedarray(env, v, &is_typed) == napi_ok && is_typed &&
      napi_get_typedarray_info(env, v, &type, len, data, NULL, NULL) == napi_ok &&
      type == napi_uint8_array) {
    return true;
  }
  return throw_type(env, what, "a Buffer");
}

bool arg_function(napi_env env, napi_value v, const char *what) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_function) {
    return throw_type(env, what, "a function");
  }
  return true;
}

/* ---- values ---- */

napi_value js_undefined(napi_env env) {
  napi_value v = NULL;
  napi_get_undefined(env, &v);
  return v;
}

napi_value js_i32(napi_env env, int32_t i) {
  napi_value v = NULL;
  napi_create_int32(env, i, &v);
  return v;
}

napi_value js_u32(napi_env env, uint32_t i) {
  napi_value v = NULL;
  napi_create_uint32(env, i, &v);
  return v;
}

napi_value js_i64(napi_env env, int64_t i) {
  napi_value v = NULL;
  napi_create_int64(env, i, &v);
  return v;
}

napi_value js_int64(napi_env env, int64_t i) {
  napi_value v = NULL;
  if (i <= (int64_t)MAX_SAFE_INTEGER && i >= -(int64_t)MAX_SAFE_INTEGER) {
    napi_create_int64(env, i, &v);
  } else {
    napi_create_bigint_int64(env, i, &v);
  }
  return v;
}

napi_value js_bigint_u64(napi_env env, uint64_t i) {
  napi_value v = NULL;
  napi_create_bigint_uint64(env, i, &v);
  return v;
}

napi_value js_bytes(napi_env env, const char *s, size_t len) {
  napi_value v = NULL;
  napi_create_string_latin1(env, s, len, &v);
  return v;
}

void *arg_tagged(napi_env env, napi_value v, const napi_type_tag *tag, const char *what, const char *expected) {
  bool tagged = false;
  void *data = NULL;
  if (napi_check_object_type_tag(env, v, tag, &tagged) != napi_ok || !tagged ||
      napi_unwrap(env, v, &data) != napi_ok || !data) {
    throw_type(env, what, expected);
    return NULL;
  }
  return data;
}
