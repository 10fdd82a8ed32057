/*
 * Reader threads for FUSE device fds, and the batched hand-off to JS.
 *
 * One detached thread per fd blocks in read(2) on its own buffer of `bufSize` bytes
 * (all signals blocked, so it sees no EINTR from the process's signals). Each
 * request read is copied into a malloc'd item and appended to the group's queue;
 * the thread that makes the queue non-empty wakes JS with one non-blocking
 * threadsafe-function call. On the JS thread, that call drains the whole queue:
 * one onBatch(requests) with every queued request, then onEnd(fd, errno) for every
 * reader that ended. A wake-up that finds the queue empty does nothing, so none is
 * ever lost: a push onto a non-empty queue has a drain still to come.
 *
 * Reader end: ENODEV (connection aborted or unmounted) and a 0-byte read report
 * errno 0; EINTR, EAGAIN and ENOENT (request interrupted) are retried; anything else
 * is reported as is. Each thread holds one count of the threadsafe function, which
 * keeps the event loop alive; when the last reader has ended and the queue is
 * drained, Node finalizes it and the process may exit.
 *
 * fuseStopReaders marks the group stopping: queued and later requests are dropped,
 * no callback runs any more, the function no longer holds the loop open, and each
 * thread exits once its current read returns (a blocked read only returns when the
 * connection ends, so stop is meant for a connection that is going away).
 *
 * Lifetime: the group is freed when its last reference goes: one per running
 * thread, one for the threadsafe function (dropped in its finalizer) and one for
 * the JS handle (dropped when the handle is collected).
 */
#include "addon.h"

#include <errno.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Requests up to this size are copied into a fresh Buffer; larger ones are handed over. */
#define COPY_LIMIT (64 * 1024)

struct item {
  struct item *next;
  int fd;
  bool end; /* the reader of fd ended with errno `err` (0 = clean) */
  int err;
  size_t len;
  char data[];
};

struct group;

struct reader {
  struct group *group;
  int fd;
};

struct group {
  pthread_mutex_t mu;         /* guards every field up to `tsfn` */
  struct item *head, *tail;   /* queued requests and end events, oldest first */
  int refs;                   /* running threads + threadsafe function + JS handle */
  bool stopping;              /* fuseStopReaders was called */
  bool js_closed;             /* the threadsafe function is finalized: do not touch it */
  napi_threadsafe_function tsfn;
  napi_ref on_end;            /* JS thread only */
  size_t buf_size;
  uint32_t count;
  struct reader readers[];
};

static void free_items(struct item *it) {
  while (it) {
    struct item *next = it->next;
    free(it);
    it = next;
  }
}

/* Drops one reference; the caller must not hold mu. */
static void group_unref(struct group *g) {
  pthread_mutex_lock(&g->mu);
  bool last = --g->refs == 0;
  pthread_mutex_unlock(&g->mu);
  if (!last) return;
  free_items(g->head);
  pthread_mutex_destroy(&g->mu);
  free(g);
}

/* Appends `it` (caller holds mu) and wakes JS if the queue was empty. */
static void enqueue_locked(struct group *g, struct item *it) {
  bool was_empty = g->head == NULL;
  it->next = NULL;
  if (g->tail) {
    g->tail->next = it;
  } else {
    g->head = it;
  }
  g->tail = it;
  if (was_empty && !g->js_closed) {
    napi_call_threadsafe_function(g->tsfn, NULL, napi_tsfn_nonblocking);
  }
}

/* Queues a request; false once the group is stopping (the item is freed). */
static bool push_request(struct group *g, struct item *it) {
  pthread_mutex_lock(&g->mu);
  bool stopping = g->stopping;
  if (!stopping) enqueue_locked(g, it);
  pthread_mutex_unlock(&g->mu);
  if (stopping) free(it);
  return !stopping;
}

/* The last act of a reader thread: queue its end event and let go of the function. */
static void reader_finish(struct group *g, int fd, int err) {
  struct item *it = calloc(1, sizeof(*it));
  pthread_mutex_lock(&g->mu);
  if (it && !g->stopping) {
    it->fd = fd;
    it->end = true;
    it->err = err;
    enqueue_locked(g, it);
    it = NULL;
  }
  if (!g->js_closed) napi_release_threadsafe_function(g->tsfn, napi_tsfn_release);
  pthread_mutex_unlock(&g->mu);
  free(it);
  group_unref(g);
}

static void *reader_main(void *arg) {
  struct reader *r = arg;
  struct group *g = r->group;
  char *buf = malloc(g->buf_size);
  int err = buf ? 0 : ENOMEM;
  while (buf) {
    ssize_t n = read(r->fd, buf, g->buf_size);
    if (n < 0) {
      if (errno == EINTR || errno == ENOENT) continue;
      if (errno == EAGAIN) {
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        poll(&p, 1, -1);
        continue;
      }
      err = errno == ENODEV ? 0 : errno;
      break;
    }
    if (n == 0) break;
    struct item *it = malloc(sizeof(*it) + (size_t)n);
    if (!it) {
      err = ENOMEM;
      break;
    }
    it->fd = r->fd;
    it->end = false;
    it->err = 0;
    it->len = (size_t)n;
    memcpy(it->data, buf, (size_t)n);
    if (!push_request(g, it)) break;
  }
  free(buf);
  reader_finish(g, r->fd, err);
  return NULL;
}

/* ---- JS thread ---- */

static void free_item_buffer(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  free(hint);
}

/* {fd, buf} for a request item; takes ownership of `it` on success. */
static napi_value request_object(napi_env env, struct item *it, bool *owned) {
  napi_value buf;
  *owned = false;
  if (it->len <= COPY_LIMIT) {
    if (napi_create_buffer_copy(env, it->len, it->data, NULL, &buf) != napi_ok) return NULL;
  } else {
    if (napi_create_external_buffer(env, it->len, it->data, free_item_buffer, it, &buf) !=
        napi_ok) {
      return NULL;
    }
    *owned = true;
  }
  static const enum key_id ids[] = {K_FD, K_BUF};
  const napi_value values[] = {js_i32(env, it->fd), buf};
  return new_object(env, COUNT_OF(ids), ids, values);
}

static void call_on_end(napi_env env, struct group *g, struct item *it) {
  napi_value fn, undef = js_undefined(env), args[2];
  pthread_mutex_lock(&g->mu);
  bool stopping = g->stopping; /* onBatch may have stopped the group */
  pthread_mutex_unlock(&g->mu);
  if (stopping) return;
  if (napi_get_reference_value(env, g->on_end, &fn) != napi_ok || !fn) return;
  args[0] = js_i32(env, it->fd);
  args[1] = js_i32(env, it->err);
  if (napi_call_function(env, undef, fn, 2, args, NULL) != napi_ok) report_pending_exception(env);
}

/* The threadsafe function's call: drain the queue into one onBatch, then the ends. */
static void drain(napi_env env, napi_value on_batch, void *context, void *data) {
  struct group *g = context;
  (void)data;
  if (!env) return; /* the environment is going away */
  pthread_mutex_lock(&g->mu);
  struct item *list = g->head;
  bool stopping = g->stopping;
  g->head = g->tail = NULL;
  pthread_mutex_unlock(&g->mu);
  if (stopping || !list) {
    free_items(list);
    return;
  }
  napi_value arr = NULL, undef = js_undefined(env);
  uint32_t n = 0;
  bool ok = napi_create_array(env, &arr) == napi_ok;
  struct item *ends = NULL, **ends_tail = &ends;
  /* requests that could not be turned into JS objects (out of memory): they go back to
   * the head of the queue for the next call instead of being dropped, since the kernel
   * would wait for their replies forever */
  struct item *retry = NULL, *retry_last = NULL;
  while (list) {
    struct item *it = list;
    list = it->next;
    it->next = NULL;
    if (it->end) {
      *ends_tail = it;
      ends_tail = &it->next;
      continue;
    }
    bool owned = false;
    napi_value obj = ok ? request_object(env, it, &owned) : NULL;
    if (obj && napi_set_element(env, arr, n, obj) == napi_ok) {
      n++;
      if (!owned) free(it);
      continue;
    }
    ok = false;
    if (owned) continue; /* its external buffer owns it now */
    if (retry_last) retry_last->next = it;
    else retry = it;
    retry_last = it;
  }
  if (!ok) report_pending_exception(env);
  if (n > 0 && napi_call_function(env, undef, on_batch, 1, &arr, NULL) != napi_ok) {
    report_pending_exception(env);
  }
  if (retry) {
    pthread_mutex_lock(&g->mu);
    if (g->stopping || g->js_closed) {
      pthread_mutex_unlock(&g->mu);
      free_items(retry);
    } else {
      retry_last->next = g->head;
      if (!g->head) g->tail = retry_last;
      g->head = retry;
      napi_call_threadsafe_function(g->tsfn, NULL, napi_tsfn_nonblocking);
      pthread_mutex_unlock(&g->mu);
    }
  }
  for (struct item *it = ends; it;) {
    struct item *next = it->next;
    call_on_end(env, g, it);
    free(it);
    it = next;
  }
}

static void tsfn_finalize(napi_env env, void *data, void *hint) {
  struct group *g = data;
  (void)hint;
  pthread_mutex_lock(&g->mu);
  g->js_closed = true;
  pthread_mutex_unlock(&g->mu);
  if (g->on_end) napi_delete_reference(env, g->on_end);
  g->on_end = NULL;
  group_unref(g);
}

/* Marks the objects fuseStartReaders returns, so fuseStopReaders can trust what it unwraps. */
static const napi_type_tag handle_tag = {0x7374726174616673ULL, 0x7265616465727331ULL};

static void handle_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  group_unref(data);
}

/* Starts a detached thread for each reader with every signal blocked; returns the count started. */
static uint32_t start_threads(struct group *g, int *err) {
  pthread_attr_t attr;
  sigset_t all, old;
  uint32_t started = 0;
  if ((*err = pthread_attr_init(&attr)) != 0) return 0;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  for (; started < g->count; started++) {
    pthread_t tid;
    if ((*err = pthread_create(&tid, &attr, reader_main, &g->readers[started])) != 0) break;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  return started;
}

/* fuseStartReaders(fds, bufSize, onBatch, onEnd) -> handle */
static napi_value b_start(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  uint32_t count = 0;
  uint64_t buf_size;
  bool is_array = false;
  napi_value name, handle;
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
  struct group *g = calloc(1, sizeof(*g) + count * sizeof(struct reader));
  if (!g) return throw_errno(env, ENOMEM, "fuseStartReaders", NULL);
  g->count = count;
  g->buf_size = (size_t)buf_size;
  for (uint32_t i = 0; i < count; i++) {
    napi_value el;
    g->readers[i].group = g;
    if (napi_get_element(env, argv[0], i, &el) != napi_ok ||
        !arg_fd(env, el, "fds[i]", &g->readers[i].fd)) {
      free(g);
      return NULL;
    }
  }
  pthread_mutex_init(&g->mu, NULL);
  if (napi_create_reference(env, argv[3], 1, &g->on_end) != napi_ok ||
      napi_create_string_latin1(env, "stratafs.fuseReader", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, argv[2], NULL, name, 0, count, g, tsfn_finalize, g,
                                      drain, &g->tsfn) != napi_ok) {
    if (g->on_end) napi_delete_reference(env, g->on_end);
    pthread_mutex_destroy(&g->mu);
    free(g);
    return NULL;
  }
  /* from here the threadsafe function owns one reference; threads and handle the rest */
  g->refs = (int)count + 2;
  int err = 0;
  uint32_t started = start_threads(g, &err);
  if (started < count) {
    pthread_mutex_lock(&g->mu);
    g->stopping = true;
    g->refs -= (int)(count - started) + 1; /* threads never started, and the handle */
    pthread_mutex_unlock(&g->mu);
    for (uint32_t i = started; i < count; i++) {
      napi_release_threadsafe_function(g->tsfn, napi_tsfn_release);
    }
    napi_unref_threadsafe_function(env, g->tsfn);
    return throw_errno(env, err, "pthread_create", NULL);
  }
  if (napi_create_object(env, &handle) != napi_ok ||
      napi_type_tag_object(env, handle, &handle_tag) != napi_ok) {
    group_unref(g);
    return NULL;
  }
  if (napi_wrap(env, handle, g, handle_finalize, NULL, NULL) != napi_ok) {
    group_unref(g);
    return NULL;
  }
  return handle;
}

/* fuseStopReaders(handle): safe to call at any time, also after the readers ended */
static napi_value b_stop(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  bool tagged = false;
  struct group *g = NULL;
  if (napi_check_object_type_tag(env, argv[0], &handle_tag, &tagged) != napi_ok || !tagged ||
      napi_unwrap(env, argv[0], (void **)&g) != napi_ok || !g) {
    throw_type(env, "handle", "a reader handle");
    return NULL;
  }
  pthread_mutex_lock(&g->mu);
  struct item *dropped = g->head;
  bool live = !g->js_closed; /* only the JS thread sets js_closed: stays valid below */
  g->stopping = true;
  g->head = g->tail = NULL;
  pthread_mutex_unlock(&g->mu);
  free_items(dropped);
  if (live) napi_unref_threadsafe_function(env, g->tsfn);
  return js_undefined(env);
}

bool register_fuse_reader(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"fuseStartReaders", b_start},
    {"fuseStopReaders", b_stop},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
