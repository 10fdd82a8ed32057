/*
 * Promise-returning work on the libuv thread pool. A job is a struct that embeds
 * `struct job` first; `run` executes on a pool thread and must not touch JS; on the
 * JS thread the promise is rejected with errno_error(err, syscall, NULL) when `err`
 * is set, else resolved with `result(...)`; `cleanup` frees the job either way.
 */
#ifndef STRATAFS_ASYNC_H
#define STRATAFS_ASYNC_H

#include "addon.h"

struct job {
  napi_async_work work;
  napi_deferred deferred;
  void (*run)(struct job *job);
  napi_value (*result)(napi_env env, struct job *job);
  void (*cleanup)(napi_env env, struct job *job);
  int err;
  const char *syscall;
};

/* Queues `job` and returns its promise; on failure cleans the job up and returns NULL. */
napi_value job_start(napi_env env, struct job *job, const char *name);

/*
 * Runs `job` on the calling (JS) thread instead: returns result(...), or throws
 * errno_error(err, syscall, NULL) and returns NULL; cleans the job up either way.
 */
napi_value job_run_now(napi_env env, struct job *job);

#endif
