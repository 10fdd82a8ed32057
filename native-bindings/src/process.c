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
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
  int left = CPU_COUNT(&set);
  for (int cpu = 0; cpu < CPU_SETSIZE && left > 0; cpu++) {
    if (!CPU_ISSET(cpu, &set)) continue;
    left--;
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

/*
 * taskCpu(tid) -> the CPU thread `tid` last ran on (field 39, processor, of
 * /proc/TID/task/TID/stat), or -1 when the thread is gone or the line cannot be read.
 * The command name (field 2) may hold spaces and parentheses: fields are counted from
 * its last ')'.
 */
static napi_value b_task_cpu(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t tid;
  char path[64], line[1024];
  if (!arg_i32(env, argv[0], "tid", &tid)) return NULL;
  snprintf(path, sizeof path, "/proc/%d/task/%d/stat", tid, tid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return js_i32(env, -1);
  ssize_t n = read(fd, line, sizeof line - 1);
  close(fd);
  if (n <= 0) return js_i32(env, -1);
  line[n] = '\0';
  char *p = strrchr(line, ')');
  if (!p) return js_i32(env, -1);
  /* p[1] is the space before field 3; stop at the one before field 39 */
  for (int field = 3; field <= 39 && p; field++) p = strchr(p + 1, ' ');
  if (!p || p[1] < '0' || p[1] > '9') return js_i32(env, -1);
  return js_i32(env, (int32_t)strtol(p + 1, NULL, 10));
}

bool register_process(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"raiseNofileLimit", b_raise_nofile},
    {"setsid", b_setsid},
    {"mallocTrim", b_malloc_trim},
    {"threadAffinity", b_thread_affinity},
    {"setThreadAffinity", b_set_thread_affinity},
    {"taskCpu", b_task_cpu},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
