/*
 * Promise plumbing for work on the libuv thread pool (see async.h).
 */
#include "async.h"

#include <errno.h>

static void job_execute(napi_env env, void *data) {
  struct job *job = data;
  (void)env;
  job->run(job);
}

static void job_complete(napi_env env, napi_status status, void *data) {
  struct job *job = data;
  napi_value value = NULL;
  if (status == napi_cancelled) job->err = ECANCELED;
  if (job->err) {
    value = errno_error(env, job->err, job->syscall, NULL);
    if (value) napi_reject_deferred(env, job->deferred, value);
  } else {
    value = job->result ? job->result(env, job) : js_undefined(env);
    if (value) napi_resolve_deferred(env, job->deferred, value);
  }
  if (!value) {
    /* building the value failed: reject with whatever exception is pending */
    napi_value exc = NULL;
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) napi_get_and_clear_last_exception(env, &exc);
    if (!exc) exc = errno_error(env, ENOMEM, job->syscall, NULL);
    if (exc) napi_reject_deferred(env, job->deferred, exc);
  }
  napi_delete_async_work(env, job->work);
  job->cleanup(env, job);
}

napi_value job_start(napi_env env, struct job *job, const char *name) {
  napi_value promise, resource_name;
  job->work = NULL;
  job->err = 0;
  if (napi_create_string_latin1(env, name, NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_create_promise(env, &job->deferred, &promise) != napi_ok) {
    job->cleanup(env, job);
    return NULL;
  }
  if (napi_create_async_work(env, NULL, resource_name, job_execute, job_complete, job,
                             &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    napi_value err = errno_error(env, ENOMEM, name, NULL);
    if (err) napi_reject_deferred(env, job->deferred, err);
    if (job->work) napi_delete_async_work(env, job->work);
    job->cleanup(env, job);
  }
  return promise;
}

napi_value job_run_now(napi_env env, struct job *job) {
  napi_value value = NULL;
  job->work = NULL;
  job->err = 0;
  job->run(job);
  if (job->err) throw_errno(env, job->err, job->syscall, NULL);
  else value = job->result ? job->result(env, job) : js_undefined(env);
  job->cleanup(env, job);
  return value;
}
