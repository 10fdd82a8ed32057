/*
 * FUSE device fds read on the JS thread, from the event loop (the only device read:
 * reader threads handing requests over were measured slower and were removed).
 *
 * Each fd gets a libuv poll handle (which makes the fd non-blocking, so a read never
 * blocks the loop). When the kernel has requests queued, the loop wakes the JS thread
 * directly; the callback reads with non-blocking read(2) and calls onBatch(count) once,
 * through a callback scope so that promise jobs queued by the handlers (their replies)
 * run before the loop waits again. Compared with a reader thread this saves one thread
 * wake-up and one cross-thread hand-off per request, which is most of a FUSE round
 * trip's cost for metadata requests.
 *
 * No copy and no JS object per request: the requests of one callback are read one
 * after the other (8-byte aligned) into `area`, memory the caller allocated once and
 * shares with JS, and request i is described by index[3i] (fd), index[3i + 1] (offset
 * in area) and index[3i + 2] (length). The area is overwritten by the next callback:
 * whatever JS keeps past onBatch must be copied (the decoder does, see decode.ts). A
 * read needs `readSize` bytes of room (the kernel refuses a smaller buffer), so a batch
 * ends when the room left is smaller, when the index is full, or at MAX_BATCH.
 *
 * How many reads per wake-up: a client that waits for each reply (stat, ls, find: the
 * common case) has one request queued at a time, and reading until EAGAIN costs one
 * read that finds nothing per request. So after a batch of one request the next
 * callback reads once and stops; the fd is level-triggered, so a request left queued
 * wakes the loop again at once. A callback that reads more than one (because the
 * previous batch had more, or every ONCE_LIMIT-th single read, which probes for a
 * backlog) reads until EAGAIN.
 *
 * Reader end: ENODEV (connection aborted or unmounted) and a
 * 0-byte read report errno 0 through onEnd(fd, errno); EINTR and ENOENT (request
 * interrupted) are retried; anything else is reported as is. An ended fd's handle is
 * closed, which lets the loop exit once nothing else is pending.
 *
 * Requests the filesystem's known answers cover (fuse_known.c: the xattrs of nodes that
 * have none) are answered here as they are read, and never reach onBatch.
 *
 * Everything here runs on the JS thread: no locks. Lifetime: the group is freed when
 * every poll handle is closed and the JS handle has been collected (or stopped).
 */
#include "addon.h"
#include "fuse_known.h"

#include <errno.h>
#include <linux/fuse.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

/* requests read per callback before the loop gets to run its other work */
#define MAX_BATCH 256
/* single reads in a row before a callback reads until EAGAIN again (backlog probe) */
#define ONCE_LIMIT 8

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
  napi_ref area_ref, index_ref; /* keep the shared memory alive */
  char *area;
  size_t area_size;
  int32_t *index;
  uint32_t index_cap; /* requests the index has room for (<= MAX_BATCH) */
  size_t read_size;
  uint32_t singles; /* callbacks in a row that read once */
  bool once;        /* the last batch had one request: read once */
  int refs;      /* open poll handles + the JS handle */
  bool stopping; /* fuseStopPoller was called: no callback runs any more */
  struct known_set *known; /* answers the reader gives itself (NULL: none) */
  napi_ref known_ref;
  uint32_t count;
  struct poller pollers[];
};

static void release_js(struct pgroup *g) {
  if (g->on_batch) napi_delete_reference(g->env, g->on_batch);
  if (g->on_end) napi_delete_reference(g->env, g->on_end);
  if (g->async_ctx) napi_async_destroy(g->env, g->async_ctx);
  if (g->resource) napi_delete_reference(g->env, g->resource);
  if (g->area_ref) napi_delete_reference(g->env, g->area_ref);
  if (g->index_ref) napi_delete_reference(g->env, g->index_ref);
  if (g->known_ref) napi_delete_reference(g->env, g->known_ref);
  g->on_batch = g->on_end = g->resource = g->area_ref = g->index_ref = g->known_ref = NULL;
  g->known = NULL;
  g->async_ctx = NULL;
}

static void pgroup_unref(struct pgroup *g) {
  if (--g->refs > 0) return;
  release_js(g);
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

/* writes the reply to a request answered by what is known (fuse_known.c); false: JS answers */
static bool answer_known(struct known_set *known, int fd, const char *req, size_t len) {
  struct fuse_in_header in;
  struct known_reply out;
  if (len < sizeof(in) || known->count == 0) return false;
  memcpy(&in, req, sizeof(in));
  if (!known_reply(known, &in, req + sizeof(in), len - sizeof(in), &out)) return false;
  ssize_t w;
  do {
    w = write(fd, &out, out.h.len);
  } while (w < 0 && errno == EINTR);
  /* ENOENT: the request was interrupted meanwhile, as for any reply; other errors end
   * the connection, which the next read reports */
  return true;
}

static void on_poll(uv_poll_t *h, int status, int events) {
  struct poller *p = h->data;
  struct pgroup *g = p->group;
  napi_env env = g->env;
  napi_handle_scope scope;
  (void)events;
  if (g->stopping || !p->active) return;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  uint32_t n = 0, answered = 0;
  size_t off = 0;
  int end = -1; /* >= 0: the fd ended with this errno */
  bool once = g->once && g->singles < ONCE_LIMIT;
  bool drained = false;
  while (n < g->index_cap && g->area_size - off >= g->read_size) {
    ssize_t r = read(p->fd, g->area + off, g->read_size);
    if (r < 0) {
      if (errno == EINTR || errno == ENOENT) continue;
      if (errno == EAGAIN) {
        drained = true;
        break;
      }
      end = errno == ENODEV ? 0 : errno;
      break;
    }
    if (r == 0) {
      end = 0;
      break;
    }
    if (g->known && answer_known(g->known, p->fd, g->area + off, (size_t)r)) {
      answered++;
      if (once) break;
      continue;
    }
    g->index[3 * n] = p->fd;
    g->index[3 * n + 1] = (int32_t)off;
    g->index[3 * n + 2] = (int32_t)r;
    n++;
    off += ((size_t)r + 7) & ~(size_t)7;
    if (once) break;
  }
  g->singles = once ? g->singles + 1 : 0;
  g->once = n + answered <= 1 && (once || drained);
  /* libuv stops a handle that reported an error (POLLERR): the read above said why,
   * and a handle stopped without an answer is an end too */
  if (status < 0 && end < 0) end = -status;
  if (n > 0) {
    napi_value count = js_i32(env, (int32_t)n);
    call_js(g, g->on_batch, 1, &count);
  }
  if (end >= 0 && p->active && !g->stopping) {
    napi_value args[2] = {js_i32(env, p->fd), js_i32(env, end)};
    stop_poller(p);
    call_js(g, g->on_end, 2, args);
  }
  napi_close_handle_scope(env, scope);
}

/*
 * loopIdleMetricsOff() -> whether the loop's idle-time metrics were on and are now off.
 *
 * Node.js turns on libuv's UV_METRICS_IDLE_TIME for its loop (what
 * performance.eventLoopUtilization reads). With it, libuv's poll first waits with a zero
 * timeout and only then with the real one, to count the sleep as idle time: a daemon
 * that answers one request per wake-up makes that extra epoll_pwait before nearly every
 * sleep (perf stat of a daemon over 20,000 lookup misses: 31,016-35,843 epoll_pwait with
 * it, 20,010 without). libuv has no call that turns an option off, so this clears the
 * option's bit in the loop's internal fields, whose first member is the option flags
 * (uv-common.h, struct uv__loop_internal_fields_s, since libuv 1.39) -- only with the
 * libuv this was built against (uv_version() == UV_VERSION_HEX), and only when the bit
 * is set as uv_loop_configure sets it. libuv reads the bit at each poll. Afterwards the
 * loop's idle time stays as it is (src/server/idle-memory.ts reads CPU time instead).
 */
static napi_value b_loop_idle_metrics_off(napi_env env, napi_callback_info info) {
  uv_loop_t *loop;
  bool done = false;
  (void)info;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return NULL;
  if (uv_version() == UV_VERSION_HEX && UV_VERSION_MAJOR == 1 && UV_VERSION_MINOR >= 39 &&
      loop->internal_fields != NULL) {
    unsigned int *flags = loop->internal_fields;
    if (*flags & UV_METRICS_IDLE_TIME) {
      *flags &= ~(unsigned int)UV_METRICS_IDLE_TIME;
      done = true;
    }
  }
  napi_value out;
  napi_get_boolean(env, done, &out);
  return out;
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

/* a typed array of `type`: its data and length in elements */
static bool arg_typed(napi_env env, napi_value v, napi_typedarray_type type, const char *what,
                      const char *expected, void **data, size_t *length) {
  bool is_typed = false;
  napi_typedarray_type t;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, v, &t, length, data, NULL, NULL) != napi_ok || t != type ||
      (*length > 0 && !*data)) {
    throw_type(env, what, expected);
    return false;
  }
  return true;
}

/* fuseStartPoller(fds, readSize, area, index, onBatch, onEnd[, knownSet]) -> handle */
static napi_value b_start(napi_env env, napi_callback_info info) {
  GET_ARGS(7);
  uint32_t count = 0;
  uint64_t read_size;
  bool is_array = false;
  uv_loop_t *loop;
  napi_value name, resource, handle;
  void *area, *index;
  size_t area_size, index_len;
  if (napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[0], &count) != napi_ok || count == 0 || count > 1024) {
    throw_type(env, "fds", "a non-empty array of file descriptors");
    return NULL;
  }
  if (!arg_size(env, argv[1], "readSize", &read_size) ||
      !arg_typed(env, argv[2], napi_uint8_array, "area", "a Buffer", &area, &area_size) ||
      !arg_typed(env, argv[3], napi_int32_array, "index", "an Int32Array", &index, &index_len) ||
      !arg_function(env, argv[4], "onBatch") || !arg_function(env, argv[5], "onEnd")) {
    return NULL;
  }
  if (read_size < FUSE_MIN_READ_BUFFER || read_size > (1u << 30) || area_size < read_size ||
      area_size > INT32_MAX || index_len < 3) {
    return throw_errno(env, EINVAL, "read", NULL);
  }
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return NULL;
  struct pgroup *g = calloc(1, sizeof(*g) + count * sizeof(struct poller));
  if (!g) return throw_errno(env, ENOMEM, "fuseStartPoller", NULL);
  g->env = env;
  g->count = count;
  g->read_size = (size_t)read_size;
  g->area = area;
  g->area_size = area_size;
  g->index = index;
  g->index_cap = index_len / 3 < MAX_BATCH ? (uint32_t)(index_len / 3) : MAX_BATCH;
  for (uint32_t i = 0; i < count; i++) {
    napi_value el;
    if (napi_get_element(env, argv[0], i, &el) != napi_ok ||
        !arg_fd(env, el, "fds[i]", &g->pollers[i].fd)) {
      free(g);
      return NULL;
    }
  }
  g->refs = 1; /* the JS handle; each started poll handle adds one */
  if (napi_create_object(env, &resource) != napi_ok ||
      napi_create_reference(env, resource, 1, &g->resource) != napi_ok ||
      napi_create_string_latin1(env, "stratafs.fusePoller", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, resource, name, &g->async_ctx) != napi_ok ||
      napi_create_reference(env, argv[2], 1, &g->area_ref) != napi_ok ||
      napi_create_reference(env, argv[3], 1, &g->index_ref) != napi_ok ||
      napi_create_reference(env, argv[4], 1, &g->on_batch) != napi_ok ||
      napi_create_reference(env, argv[5], 1, &g->on_end) != napi_ok ||
      !known_arg(env, argv[6], &g->known, &g->known_ref)) {
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

/* the group behind a handle fuseStartPoller returned; NULL with a TypeError pending */
static struct pgroup *arg_group(napi_env env, napi_value v) {
  return arg_tagged(env, v, &handle_tag, "handle", "a poller handle");
}

/* fuseStopPoller(handle): stops polling and calls nothing more; safe to call twice */
static napi_value b_stop(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  struct pgroup *g = arg_group(env, argv[0]);
  if (!g) return NULL;
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
    {"loopIdleMetricsOff", b_loop_idle_metrics_off},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
