/*
 * FUSE device fds read on the JS thread, from the event loop (the only device read:
 * reader threads handing requests over were measured slower and were removed).
 *
 * Each fd gets a libuv poll handle (which makes the fd non-blocking, so a read never
 * blocks the loop). When the kernel has requests queued, the loop wakes the JS thread
 * directly; the callback reads with non-blocking read(2) until EAGAIN (at most
 * MAX_BATCH requests, so a flood cannot starve the loop's other work) and calls
 * onBatch(requests) once, through a callback scope so that promise jobs queued by the
 * handlers (their replies) run before the loop waits again. Compared with a reader
 * thread this saves one thread wake-up and one cross-thread hand-off per request,
 * which is most of a FUSE round trip's cost for metadata requests.
 *
 * Reader end: ENODEV (connection aborted or unmounted) and a
 * 0-byte read report errno 0 through onEnd(fd, errno); EINTR and ENOENT (request
 * interrupted) are retried; anything else is reported as is. An ended fd's handle is
 * closed, which lets the loop exit once nothing else is pending.
 *
 * Everything here runs on the JS thread: no locks. Lifetime: the group is freed when
 * every poll handle is closed and the JS handle has been collected (or stopped).
 */
#include "addon.h"

#include <errno.h>
#include <linux/fuse.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

/* requests read per callback before the loop gets to run its other work */
#define MAX_BATCH 256

struct pgroup;

struct poller {
  uv_poll_t handle;
  struct pgroup *group;
  int fd;
  bool active; /* polling (not ended, not stopped) */
};

struct pgroup {
  napi_env env;
  napi_ref on_batch, on_end;
  napi_async_context async_ctx;
  napi_ref resource;
  char *buf;
  size_t buf_size;
  int refs;      /* open poll handles + the JS handle */
  bool stopping; /* fuseStopPoller was called: no callback runs any more */
  uint32_t count;
  struct poller pollers[];
};

static void release_js(struct pgroup *g) {
  if (g->on_batch) napi_delete_reference(g->env, g->on_batch);
  if (g->on_end) napi_delete_reference(g->env, g->on_end);
  if (g->async_ctx) napi_async_destroy(g->env, g->async_ctx);
  if (g->resource) napi_delete_reference(g->env, g->resource);
  g->on_batch = g->on_end = g->resource = NULL;
  g->async_ctx = NULL;
}

static void pgroup_unref(struct pgroup *g) {
  if (--g->refs > 0) return;
  release_js(g);
  free(g->buf);
  free(g);
}

static void on_closed(uv_handle_t *h) {
  struct poller *p = h->data;
  pgroup_unref(p->group);
}

static void stop_poller(struct poller *p) {
  if (!p->active) return;
  p->active = false;
  uv_poll_stop(&p->handle);
  uv_close((uv_handle_t *)&p->handle, on_closed);
}

static void cleanup_hook(void *arg) {
  struct pgroup *g = arg;
  g->stopping = true;
  for (uint32_t i = 0; i < g->count; i++) stop_poller(&g->pollers[i]);
}

static void call_js(struct pgroup *g, napi_ref fn_ref, size_t argc, napi_value *argv) {
  napi_env env = g->env;
  napi_value fn, resource;
  if (g->stopping || !fn_ref) return;
  if (napi_get_reference_value(env, fn_ref, &fn) != napi_ok || !fn ||
      napi_get_reference_value(env, g->resource, &resource) != napi_ok || !resource) {
    return;
  }
  if (napi_make_callback(env, g->async_ctx, resource, fn, argc, argv, NULL) != napi_ok) {
    report_pending_exception(env);
  }
}

/* {fd, buf} with a copy of the request's bytes */
static napi_value request_object(napi_env env, int fd, const char *data, size_t len) {
  napi_value buf;
  if (napi_create_buffer_copy(env, len, data, NULL, &buf) != napi_ok) return NULL;
  static const enum key_id ids[] = {K_FD, K_BUF};
  const napi_value values[] = {js_i32(env, fd), buf};
  return new_object(env, COUNT_OF(ids), ids, values);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  struct poller *p = h->data;
  struct pgroup *g = p->group;
  napi_env env = g->env;
  napi_handle_scope scope;
  (void)events;
  if (g->stopping || !p->active) return;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value arr = NULL;
  uint32_t n = 0;
  int end = -1; /* >= 0: the fd ended with this errno */
  while (n < MAX_BATCH) {
    ssize_t r = read(p->fd, g->buf, g->buf_size);
    if (r < 0) {
      if (errno == EINTR || errno == ENOENT) continue;
      if (errno == EAGAIN) break;
      end = errno == ENODEV ? 0 : errno;
      break;
    }
    if (r == 0) {
      end = 0;
      break;
    }
    if (!arr && napi_create_array(env, &arr) != napi_ok) break;
    napi_value obj = request_object(env, p->fd, g->buf, (size_t)r);
    /* a request that cannot become a JS object is lost: the kernel would wait for its
     * reply forever, so the connection cannot go on; report it as ended */
    if (!obj || napi_set_element(env, arr, n, obj) != napi_ok) {
      report_pending_exception(env);
      end = ENOMEM;
      break;
    }
    n++;
  }
  /* libuv stops a handle that reported an error (POLLERR): the read above said why,
   * and a handle stopped without an answer is an end too */
  if (status < 0 && end < 0) end = -status;
  if (n > 0) call_js(g, g->on_batch, 1, &arr);
  if (end >= 0 && p->active && !g->stopping) {
    napi_value args[2] = {js_i32(env, p->fd), js_i32(env, end)};
    stop_poller(p);
    call_js(g, g->on_end, 2, args);
  }
  napi_close_handle_scope(env, scope);
}

/* Marks the objects fuseStartPoller returns, so fuseStopPoller can trust what it unwraps. */
static const napi_type_tag handle_tag = {0x7374726174616673ULL, 0x706f6c6c65727331ULL};

static void handle_finalize(napi_env env, void *data, void *hint) {
  struct pgroup *g = data;
  (void)env;
  (void)hint;
  napi_remove_env_cleanup_hook(g->env, cleanup_hook, g);
  cleanup_hook(g);
  pgroup_unref(g);
}

/* fuseStartPoller(fds, bufSize, onBatch, onEnd) -> handle */
static napi_value b_start(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  uint32_t count = 0;
  uint64_t buf_size;
  bool is_array = false;
  uv_loop_t *loop;
  napi_value name, resource, handle;
  if (napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[0], &count) != napi_ok || count == 0 || count > 1024) {
    throw_type(env, "fds", "a non-empty array of file descriptors");
    return NULL;
  }
  if (!arg_size(env, argv[1], "bufSize", &buf_size) || !arg_function(env, argv[2], "onBatch") ||
      !arg_function(env, argv[3], "onEnd")) {
    return NULL;
  }
  if (buf_size < FUSE_MIN_READ_BUFFER || buf_size > (1u << 30)) {
    return throw_errno(env, EINVAL, "read", NULL);
  }
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return NULL;
  struct pgroup *g = calloc(1, sizeof(*g) + count * sizeof(struct poller));
  if (!g) return throw_errno(env, ENOMEM, "fuseStartPoller", NULL);
  g->env = env;
  g->count = count;
  g->buf_size = (size_t)buf_size;
  for (uint32_t i = 0; i < count; i++) {
    napi_value el;
    if (napi_get_element(env, argv[0], i, &el) != napi_ok ||
        !arg_fd(env, el, "fds[i]", &g->pollers[i].fd)) {
      free(g);
      return NULL;
    }
  }
  g->buf = malloc(g->buf_size);
  if (!g->buf) {
    free(g);
    return throw_errno(env, ENOMEM, "fuseStartPoller", NULL);
  }
  g->refs = 1; /* the JS handle; each started poll handle adds one */
  if (napi_create_object(env, &resource) != napi_ok ||
      napi_create_reference(env, resource, 1, &g->resource) != napi_ok ||
      napi_create_string_latin1(env, "stratafs.fusePoller", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, resource, name, &g->async_ctx) != napi_ok ||
      napi_create_reference(env, argv[2], 1, &g->on_batch) != napi_ok ||
      napi_create_reference(env, argv[3], 1, &g->on_end) != napi_ok) {
    pgroup_unref(g);
    return NULL;
  }
  for (uint32_t i = 0; i < count; i++) {
    struct poller *p = &g->pollers[i];
    p->group = g;
    int err = uv_poll_init(loop, &p->handle, p->fd);
    if (err == 0) {
      p->handle.data = p;
      g->refs++;
      p->active = true;
      err = uv_poll_start(&p->handle, UV_READABLE, on_poll);
    }
    if (err != 0) {
      cleanup_hook(g);
      pgroup_unref(g);
      return throw_errno(env, -err, "uv_poll_start", NULL);
    }
  }
  napi_add_env_cleanup_hook(env, cleanup_hook, g);
  if (napi_create_object(env, &handle) != napi_ok ||
      napi_type_tag_object(env, handle, &handle_tag) != napi_ok ||
      napi_wrap(env, handle, g, handle_finalize, NULL, NULL) != napi_ok) {
    napi_remove_env_cleanup_hook(env, cleanup_hook, g);
    cleanup_hook(g);
    pgroup_unref(g);
    return NULL;
  }
  return handle;
}

/* fuseStopPoller(handle): stops polling and calls nothing more; safe to call twice */
static napi_value b_stop(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  bool tagged = false;
  struct pgroup *g = NULL;
  if (napi_check_object_type_tag(env, argv[0], &handle_tag, &tagged) != napi_ok || !tagged ||
      napi_unwrap(env, argv[0], (void **)&g) != napi_ok || !g) {
    throw_type(env, "handle", "a poller handle");
    return NULL;
  }
  cleanup_hook(g);
  /* Nothing calls JS any more, so the callbacks go now: they are closures over the
   * session, which holds this handle, and a reference from here to them made a cycle
   * through a global handle that the collector never breaks: every ended mount's
   * session, overlay and inode table stayed in memory for good. */
  if (g->on_batch) napi_delete_reference(env, g->on_batch);
  if (g->on_end) napi_delete_reference(env, g->on_end);
  g->on_batch = g->on_end = NULL;
  return js_undefined(env);
}

bool register_fuse_poller(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"fuseStartPoller", b_start},
    {"fuseStopPoller", b_stop},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
