/*
 * Process-wide settings a daemon needs: the open-file limit, a new session, and giving
 * freed heap memory back to the system.
 */
#include "addon.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/resource.h>
#include <unistd.h>

/* raiseNofileLimit() -> the new soft limit (= the hard limit) */
static napi_value b_raise_nofile(napi_env env, napi_callback_info info) {
  struct rlimit rl;
  (void)info;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return throw_errno(env, errno, "getrlimit", NULL);
  if (rl.rlim_cur != rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) return throw_errno(env, errno, "setrlimit", NULL);
  }
  return js_i64(env, rl.rlim_cur == RLIM_INFINITY ? -1 : (int64_t)rl.rlim_cur);
}

/* setsid() -> the new session id */
static napi_value b_setsid(napi_env env, napi_callback_info info) {
  (void)info;
  pid_t sid = setsid();
  if (sid < 0) return throw_errno(env, errno, "setsid", NULL);
  return js_i32(env, sid);
}

/*
 * mallocTrim() -> whether memory was given back. glibc keeps freed memory in its arenas
 * (the brk heap of the main thread, one arena per busy thread) and returns only the top
 * of the main heap on its own; malloc_trim(0) releases the free pages of every arena
 * (MADV_DONTNEED). Other C libraries: false, nothing done.
 */
static napi_value b_malloc_trim(napi_env env, napi_callback_info info) {
  (void)info;
#ifdef __GLIBC__
  napi_value out;
  napi_get_boolean(env, malloc_trim(0) != 0, &out);
  return out;
#else
  napi_value out;
  napi_get_boolean(env, false, &out);
  return out;
#endif
}

bool register_process(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"raiseNofileLimit", b_raise_nofile},
    {"setsid", b_setsid},
    {"mallocTrim", b_malloc_trim},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
