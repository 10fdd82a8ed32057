/*
 * Process-wide settings a daemon needs: the open-file limit, a new session, giving
 * freed heap memory back to the system, and the CPUs the calling thread may run on.
 */
#include "addon.h"

#include <errno.h>
#include <sched.h>
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

/*
 * threadAffinity() -> the CPUs the calling thread may run on, ascending:
 * sched_getaffinity(0) (0 is the calling thread, not the whole process).
 */
static napi_value b_thread_affinity(napi_env env, napi_callback_info info) {
  cpu_set_t set;
  napi_value out;
  uint32_t n = 0;
  (void)info;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) < 0) return throw_errno(env, errno, "sched_getaffinity", NULL);
  if (napi_create_array(env, &out) != napi_ok) return NULL;
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
    if (!CPU_ISSET(cpu, &set)) continue;
    if (napi_set_element(env, out, n++, js_i32(env, cpu)) != napi_ok) return NULL;
  }
  return out;
}

/*
 * setThreadAffinity(cpus: number[]) -> undefined: sched_setaffinity(0) of the calling
 * thread only (the process's other threads keep theirs). A CPU outside the cgroup's
 * cpuset, or not online, is refused by the kernel (EINVAL).
 */
static napi_value b_set_thread_affinity(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  cpu_set_t set;
  bool is_array = false;
  uint32_t n;
  CPU_ZERO(&set);
  if (napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[0], &n) != napi_ok) {
    throw_type(env, "cpus", "an array of CPU numbers");
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    int32_t cpu;
    if (napi_get_element(env, argv[0], i, &v) != napi_ok || !arg_i32(env, v, "cpus[i]", &cpu)) return NULL;
    if (cpu < 0 || cpu >= CPU_SETSIZE) return throw_errno(env, EINVAL, "sched_setaffinity", NULL);
    CPU_SET(cpu, &set);
  }
  if (sched_setaffinity(0, sizeof set, &set) < 0) return throw_errno(env, errno, "sched_setaffinity", NULL);
  return js_undefined(env);
}

bool register_process(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"raiseNofileLimit", b_raise_nofile},
    {"setsid", b_setsid},
    {"mallocTrim", b_malloc_trim},
    {"threadAffinity", b_thread_affinity},
    {"setThreadAffinity", b_set_thread_affinity},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
