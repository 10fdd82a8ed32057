/*
 * FUSE over io_uring (Linux 6.14+, the fuse module's enable_uring): the optional
 * transport for a connection whose INIT negotiated FUSE_OVER_IO_URING.
 *
 * One io_uring (128-byte SQEs) per connection, made on the JS thread. Every possible CPU
 * has a queue (qid = CPU number, as the kernel queues a request on the caller's CPU) with
 * `per_queue` entries; an entry is a header buffer (struct fuse_uring_req_header) and a
 * payload buffer of the connection's max payload, registered with
 * FUSE_IO_URING_CMD_REGISTER. The kernel switches the connection to the ring once every
 * queue has an entry; until then (and for FORGET, INTERRUPT and INIT always) requests
 * still come through /dev/fuse reads, which the poller keeps doing.
 *
 * A request arrives as a completion (res 0) of an entry's command: its fuse_in_header
 * is in the header's in_out, the opcode's fixed argument in op_in and the rest in the
 * payload. They are joined into one frame, as a /dev/fuse read returns it, in the
 * caller's area (as the poller packs its reads: index[3i] fd, index[3i + 1] offset,
 * index[3i + 2] length), with fd -(1 + entry), and onBatch(count) is called, so the
 * session handles both transports alike.
 * The reply (fuseUringCommit) goes back into the same entry: the fuse_out_header into
 * in_out, the rest into the payload, then FUSE_IO_URING_CMD_COMMIT_AND_FETCH with the
 * request's commit id, which also re-arms the entry. Commits made while onBatch runs
 * (and the promise jobs after it) are submitted together with one io_uring_enter.
 *
 * Completions reach the event loop through a libuv poll handle on the ring fd; every
 * call here is on the JS thread: no locks. Raw syscalls (no liburing): the ring is
 * small and only two commands are used.
 *
 * Buffers belong to the kernel while an entry's command is outstanding; on stop they are
 * freed only once every outstanding command has completed (the connection's end
 * completes them with ENOTCONN), the poll handle then no longer keeping the loop alive.
 */
#include "addon.h"
#include "fuse_uring_abi.h"

#include <errno.h>
#include <linux/fuse.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

enum ent_state { ENT_KERNEL, ENT_USER, ENT_DEAD };

struct entry {
  struct stratafs_fuse_uring_req_header *hdr;
  struct iovec iov[2];
  uint64_t commit_id;
  uint16_t qid;
  uint8_t state;
};

struct uring {
  napi_env env;
  napi_ref on_batch, on_end, resource;
  napi_ref area_ref, index_ref; /* the memory shared with JS (as the poller's) */
  char *area;
  size_t area_size;
  int32_t *index;
  uint32_t index_cap; /* requests the index has room for */
  napi_async_context async_ctx;
  uv_poll_t poll;
  int ring_fd, dev_fd;
  /* rings (one mmap with IORING_FEAT_SINGLE_MMAP) and the SQE array */
  void *rings;
  size_t rings_len;
  struct io_uring_sqe *sqes;
  size_t sqes_len;
  uint32_t *sq_head, *sq_tail, *sq_array, sq_mask;
  uint32_t *cq_head, *cq_tail, cq_mask;
  struct io_uring_cqe *cqes;
  uint32_t pending; /* SQEs written, not yet submitted */
  bool in_batch;    /* onBatch is running: commits wait for the end of the batch */
  bool stopping, polling, closed;
  uint32_t held;    /* entries whose command the kernel holds */
  int refs;         /* the JS handle + the open poll handle */
  char *payloads;
  size_t payload_size, payloads_len;
  struct stratafs_fuse_uring_req_header *headers;
  uint32_t count;
  struct entry ents[];
};

static int sys_setup(unsigned entries, struct io_uring_params *p) {
  return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(int fd, unsigned to_submit) {
  return (int)syscall(__NR_io_uring_enter, fd, to_submit, 0, 0, NULL, 0);
}

/* queues the kernel makes: one per possible CPU (/sys/devices/system/cpu/possible) */
static int possible_cpus(void) {
  FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
  int count = 0, a, b;
  char sep;
  if (!f) return -1;
  while (fscanf(f, "%d", &a) == 1) {
    b = a;
    if (fscanf(f, "%c", &sep) == 1 && sep == '-') {
      if (fscanf(f, "%d", &b) != 1) break;
      if (fscanf(f, "%c", &sep) != 1) sep = '\n';
    }
    count += b - a + 1;
    if (sep != ',') break;
  }
  fclose(f);
  return count;
}

static void free_uring(struct uring *u) {
  if (u->on_batch) napi_delete_reference(u->env, u->on_batch);
  if (u->on_end) napi_delete_reference(u->env, u->on_end);
  if (u->resource) napi_delete_reference(u->env, u->resource);
  if (u->area_ref) napi_delete_reference(u->env, u->area_ref);
  if (u->index_ref) napi_delete_reference(u->env, u->index_ref);
  if (u->async_ctx) napi_async_destroy(u->env, u->async_ctx);
  if (u->sqes) munmap(u->sqes, u->sqes_len);
  if (u->rings) munmap(u->rings, u->rings_len);
  if (u->ring_fd >= 0) close(u->ring_fd);
  if (u->payloads) munmap(u->payloads, u->payloads_len);
  free(u->headers);
  free(u);
}

static struct io_uring_sqe *next_sqe(struct uring *u) {
  uint32_t tail = *u->sq_tail + u->pending;
  uint32_t head = __atomic_load_n(u->sq_head, __ATOMIC_ACQUIRE);
  if (tail - head > u->sq_mask) return NULL; /* full: cannot happen (one SQE per entry) */
  uint32_t idx = tail & u->sq_mask;
  u->sq_array[idx] = idx;
  struct io_uring_sqe *sqe = (struct io_uring_sqe *)((char *)u->sqes + (size_t)idx * 128);
  memset(sqe, 0, 128);
  u->pending++;
  return sqe;
}

/* submits every written SQE the kernel has not taken yet; returns 0 or -errno */
static int submit(struct uring *u) {
  if (u->pending > 0) {
    __atomic_store_n(u->sq_tail, *u->sq_tail + u->pending, __ATOMIC_RELEASE);
    u->pending = 0;
  }
  for (int tries = 0; tries < 8; tries++) {
    uint32_t todo = *u->sq_tail - __atomic_load_n(u->sq_head, __ATOMIC_ACQUIRE);
    if (todo == 0) return 0;
    /* the CQ (twice the SQ) has room for a completion of every entry: no EBUSY */
    if (sys_enter(u->ring_fd, todo) < 0 && errno != EINTR && errno != EAGAIN) return -errno;
  }
  return -EAGAIN;
}

static bool queue_cmd(struct uring *u, uint32_t i, uint32_t op) {
  struct entry *e = &u->ents[i];
  struct io_uring_sqe *sqe = next_sqe(u);
  if (!sqe) return false;
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = u->dev_fd;
  sqe->cmd_op = op;
  sqe->addr = (uint64_t)(uintptr_t)e->iov;
  sqe->len = 2;
  sqe->user_data = i;
  struct stratafs_fuse_uring_cmd_req *req = (struct stratafs_fuse_uring_cmd_req *)sqe->cmd;
  req->qid = e->qid;
  req->commit_id = op == STRATAFS_FUSE_IO_URING_CMD_COMMIT_AND_FETCH ? e->commit_id : 0;
  e->state = ENT_KERNEL;
  u->held++;
  return true;
}

static void call_js(struct uring *u, napi_ref fn_ref, size_t argc, napi_value *argv) {
  napi_env env = u->env;
  napi_value fn, resource;
  if (u->stopping || !fn_ref) return;
  if (napi_get_reference_value(env, fn_ref, &fn) != napi_ok || !fn ||
      napi_get_reference_value(env, u->resource, &resource) != napi_ok || !resource) {
    return;
  }
  if (napi_make_callback(env, u->async_ctx, resource, fn, argc, argv, NULL) != napi_ok) {
    report_pending_exception(env);
  }
}

/* the length of the request in entry e as one frame, or 0 when its sizes do not add up */
static size_t frame_len(const struct uring *u, const struct entry *e) {
  const struct fuse_in_header *ih = (const struct fuse_in_header *)e->hdr->in_out;
  size_t len = ih->len, payload = e->hdr->ring_ent_in_out.payload_sz, hsize = sizeof(*ih);
  /* the kernel does not say the op argument's size: it is what len leaves over */
  if (len < hsize + payload || len - hsize - payload > sizeof(e->hdr->op_in) ||
      payload > u->payload_size || len > u->area_size) {
    return 0;
  }
  return len;
}

/* the frame as a /dev/fuse read returns it: in_header, op argument, payload */
static void copy_frame(const struct entry *e, size_t len, char *dst) {
  size_t hsize = sizeof(struct fuse_in_header), payload = e->hdr->ring_ent_in_out.payload_sz;
  size_t op = len - hsize - payload;
  memcpy(dst, e->hdr->in_out, hsize);
  memcpy(dst + hsize, e->hdr->op_in, op);
  memcpy(dst + hsize + op, e->iov[1].iov_base, payload);
}

/* answers EIO to a request whose frame does not add up, so that the entry goes on */
static void answer_eio(struct uring *u, uint32_t i) {
  struct entry *e = &u->ents[i];
  uint64_t unique = ((const struct fuse_in_header *)e->hdr->in_out)->unique;
  struct fuse_out_header *oh = (struct fuse_out_header *)e->hdr->in_out;
  memset(oh, 0, sizeof(*oh));
  oh->len = sizeof(*oh);
  oh->error = -EIO;
  oh->unique = unique;
  e->hdr->ring_ent_in_out.payload_sz = 0;
  queue_cmd(u, i, STRATAFS_FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
}

static void deliver(struct uring *u, uint32_t n) {
  napi_value count = js_i32(u->env, (int32_t)n);
  u->in_batch = true;
  call_js(u, u->on_batch, 1, &count);
  u->in_batch = false;
}

static void cleanup_hook(void *arg);

static void uring_unref(struct uring *u) {
  if (--u->refs > 0) return;
  napi_remove_env_cleanup_hook(u->env, cleanup_hook, u);
  free_uring(u);
}

static void on_closed(uv_handle_t *h) {
  uring_unref(h->data);
}

static void close_poll(struct uring *u) {
  if (u->closed) return;
  u->closed = true;
  u->polling = false;
  uv_poll_stop(&u->poll);
  uv_close((uv_handle_t *)&u->poll, on_closed);
}

/* the ring's completions: requests to onBatch, ended entries counted */
static void on_poll(uv_poll_t *h, int status, int events) {
  struct uring *u = h->data;
  napi_env env = u->env;
  napi_handle_scope scope;
  uint32_t n = 0;
  size_t off = 0;
  int ended = 0; /* errno of the first entry that ended, if any */
  (void)events;
  if (u->closed) return;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  uint32_t head = *u->cq_head;
  uint32_t tail = __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE);
  for (; head != tail; head++) {
    const struct io_uring_cqe *cqe = &u->cqes[head & u->cq_mask];
    uint64_t i = cqe->user_data;
    int res = cqe->res;
    if (i >= u->count) continue;
    struct entry *e = &u->ents[i];
    if (e->state == ENT_KERNEL) u->held--;
    if (res < 0) {
      e->state = ENT_DEAD;
      /* a commit the kernel could not match (the request is gone): the entry is still
       * ours, so it is registered again; anything else ends it */
      if (res == -ENOENT && !u->stopping && queue_cmd(u, (uint32_t)i, STRATAFS_FUSE_IO_URING_CMD_REGISTER)) continue;
      if (!ended) ended = -res;
      continue;
    }
    e->state = ENT_USER;
    if (u->stopping) continue; /* nobody answers it: the connection is going away */
    e->commit_id = e->hdr->ring_ent_in_out.commit_id;
    size_t len = frame_len(u, e);
    if (len == 0) {
      answer_eio(u, (uint32_t)i);
      continue;
    }
    if (n == u->index_cap || len > u->area_size - off) {
      deliver(u, n); /* the area is full: this batch goes now, the next starts over */
      n = 0;
      off = 0;
    }
    copy_frame(e, len, u->area + off);
    u->index[3 * n] = -1 - (int32_t)i;
    u->index[3 * n + 1] = (int32_t)off;
    u->index[3 * n + 2] = (int32_t)len;
    n++;
    off += (len + 7) & ~(size_t)7;
  }
  __atomic_store_n(u->cq_head, head, __ATOMIC_RELEASE);
  if (n > 0) deliver(u, n);
  int err = submit(u);
  if (err < 0 && !ended) ended = -err;
  if (status < 0 && !ended) ended = -status;
  if (ended && !u->stopping) {
    napi_value arg = js_i32(env, ended);
    call_js(u, u->on_end, 1, &arg);
  }
  if (u->stopping && u->held == 0) close_poll(u);
  napi_close_handle_scope(env, scope);
}

static const napi_type_tag uring_tag = {0x7374726174616673ULL, 0x7572696e67733031ULL};

static bool unwrap_uring(napi_env env, napi_value v, struct uring **out) {
  bool tagged = false;
  *out = NULL;
  if (napi_check_object_type_tag(env, v, &uring_tag, &tagged) != napi_ok || !tagged ||
      napi_unwrap(env, v, (void **)out) != napi_ok || !*out) {
    throw_type(env, "handle", "an io_uring transport handle");
    return false;
  }
  return true;
}

/* Stops delivering; the memory goes once the kernel has handed back every entry. */
static void stop_uring(struct uring *u) {
  if (u->stopping) return;
  u->stopping = true;
  if (u->on_batch) napi_delete_reference(u->env, u->on_batch);
  if (u->on_end) napi_delete_reference(u->env, u->on_end);
  u->on_batch = u->on_end = NULL;
  if (u->closed) return;
  if (u->held == 0) {
    close_poll(u);
  } else {
    /* wait for the outstanding commands without keeping the loop (or process) alive */
    uv_unref((uv_handle_t *)&u->poll);
  }
}

static void cleanup_hook(void *arg) {
  struct uring *u = arg;
  stop_uring(u);
  /* the environment goes: the loop will not run the close callback */
  if (!u->closed) close_poll(u);
}

static void handle_finalize(napi_env env, void *data, void *hint) {
  struct uring *u = data;
  (void)env;
  (void)hint;
  stop_uring(u);
  uring_unref(u);
}

static int setup_ring(struct uring *u, uint32_t sq_entries) {
  struct io_uring_params p;
  memset(&p, 0, sizeof(p));
  p.flags = IORING_SETUP_SQE128;
  u->ring_fd = sys_setup(sq_entries, &p);
  if (u->ring_fd < 0) return -errno;
  if (!(p.features & IORING_FEAT_SINGLE_MMAP)) return -ENOSYS;
  size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(uint32_t);
  size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  u->rings_len = sq_len > cq_len ? sq_len : cq_len;
  void *rings = mmap(NULL, u->rings_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                     u->ring_fd, IORING_OFF_SQ_RING);
  if (rings == MAP_FAILED) return -errno;
  u->rings = rings;
  u->sqes_len = (size_t)p.sq_entries * 128;
  void *sqes = mmap(NULL, u->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                    u->ring_fd, IORING_OFF_SQES);
  if (sqes == MAP_FAILED) return -errno;
  u->sqes = sqes;
  char *r = rings;
  u->sq_head = (uint32_t *)(r + p.sq_off.head);
  u->sq_tail = (uint32_t *)(r + p.sq_off.tail);
  u->sq_mask = *(uint32_t *)(r + p.sq_off.ring_mask);
  u->sq_array = (uint32_t *)(r + p.sq_off.array);
  u->cq_head = (uint32_t *)(r + p.cq_off.head);
  u->cq_tail = (uint32_t *)(r + p.cq_off.tail);
  u->cq_mask = *(uint32_t *)(r + p.cq_off.ring_mask);
  u->cqes = (struct io_uring_cqe *)(r + p.cq_off.cqes);
  return 0;
}

/*
 * fuseUringStart(devFd, perQueue, maxWrite, maxPages, area, index, onBatch, onEnd)
 *   -> {handle, queues}
 * Sets up the ring and the entries' buffers (before the INIT reply asks for the ring,
 * so that a ring that cannot be made is never asked for: the kernel holds every request
 * of a connection that agreed on the ring until its queues are registered).
 * fuseUringRegister then hands the entries to the kernel.
 * The payload buffers have the size the kernel checks at REGISTER (dev_uring.c):
 * max(FUSE_MIN_READ_BUFFER, max_write, max_pages * page size), from the INIT reply.
 * onEnd(errno) says the ring stopped serving (entries ended) while still wanted.
 */
static napi_value b_start(napi_env env, napi_callback_info info) {
  GET_ARGS(8);
  int dev_fd;
  uint32_t per_queue, max_write, max_pages;
  void *area, *index;
  size_t area_size, index_len;
  napi_typedarray_type index_type;
  bool is_index = false;
  uv_loop_t *loop;
  napi_value name, resource, handle, result, queues_v;
  if (!arg_fd(env, argv[0], "devFd", &dev_fd) || !arg_u32(env, argv[1], "perQueue", &per_queue) ||
      !arg_u32(env, argv[2], "maxWrite", &max_write) || !arg_u32(env, argv[3], "maxPages", &max_pages) ||
      !arg_buffer(env, argv[4], "area", &area, &area_size) ||
      !arg_function(env, argv[6], "onBatch") || !arg_function(env, argv[7], "onEnd")) {
    return NULL;
  }
  if (napi_is_typedarray(env, argv[5], &is_index) != napi_ok || !is_index ||
      napi_get_typedarray_info(env, argv[5], &index_type, &index_len, &index, NULL, NULL) != napi_ok ||
      index_type != napi_int32_array || index_len < 3 || !index) {
    throw_type(env, "index", "an Int32Array");
    return NULL;
  }
  uint64_t payload_size = (uint64_t)max_pages * (uint64_t)sysconf(_SC_PAGESIZE);
  if (payload_size < max_write) payload_size = max_write;
  if (payload_size < FUSE_MIN_READ_BUFFER) payload_size = FUSE_MIN_READ_BUFFER;
  int queues = possible_cpus();
  if (queues <= 0 || queues > 4096) return throw_errno(env, ENOSYS, "fuseUringStart", "/sys/devices/system/cpu/possible");
  /* the area must hold the largest frame: in_header, op argument, a full payload */
  if (per_queue == 0 || per_queue > 256 || payload_size > (64u << 20) || area_size > INT32_MAX ||
      area_size < payload_size + sizeof(struct fuse_in_header) + STRATAFS_FUSE_URING_OP_IN_OUT_SZ) {
    return throw_errno(env, EINVAL, "fuseUringStart", NULL);
  }
  uint32_t count = (uint32_t)queues * per_queue;
  if (count > 4096) return throw_errno(env, EINVAL, "fuseUringStart", NULL);
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return NULL;
  struct uring *u = calloc(1, sizeof(*u) + count * sizeof(struct entry));
  if (!u) return throw_errno(env, ENOMEM, "fuseUringStart", NULL);
  u->env = env;
  u->ring_fd = -1;
  u->dev_fd = dev_fd;
  u->count = count;
  u->payload_size = (size_t)payload_size;
  u->area = area;
  u->area_size = area_size;
  u->index = index;
  u->index_cap = (uint32_t)(index_len / 3 < 4096 ? index_len / 3 : 4096);
  uint32_t sq = 1;
  while (sq < count) sq <<= 1;
  int err = setup_ring(u, sq);
  if (err < 0) {
    free_uring(u);
    return throw_errno(env, -err, "io_uring_setup", NULL);
  }
  u->headers = calloc(count, sizeof(*u->headers));
  u->payloads_len = (size_t)count * u->payload_size;
  void *payloads = mmap(NULL, u->payloads_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (!u->headers || payloads == MAP_FAILED) {
    free_uring(u);
    return throw_errno(env, ENOMEM, "fuseUringStart", NULL);
  }
  u->payloads = payloads;
  for (uint32_t i = 0; i < count; i++) {
    struct entry *e = &u->ents[i];
    e->hdr = &u->headers[i];
    e->qid = (uint16_t)(i / per_queue);
    e->iov[0].iov_base = e->hdr;
    e->iov[0].iov_len = sizeof(*e->hdr);
    e->iov[1].iov_base = u->payloads + (size_t)i * u->payload_size;
    e->iov[1].iov_len = u->payload_size;
    e->state = ENT_DEAD; /* until registered */
  }
  if (napi_create_object(env, &resource) != napi_ok ||
      napi_create_reference(env, resource, 1, &u->resource) != napi_ok ||
      napi_create_string_latin1(env, "stratafs.fuseUring", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, resource, name, &u->async_ctx) != napi_ok ||
      napi_create_reference(env, argv[4], 1, &u->area_ref) != napi_ok ||
      napi_create_reference(env, argv[5], 1, &u->index_ref) != napi_ok ||
      napi_create_reference(env, argv[6], 1, &u->on_batch) != napi_ok ||
      napi_create_reference(env, argv[7], 1, &u->on_end) != napi_ok) {
    free_uring(u);
    return NULL;
  }
  err = uv_poll_init(loop, &u->poll, u->ring_fd);
  if (err != 0) {
    free_uring(u);
    return throw_errno(env, -err, "uv_poll_init", NULL);
  }
  u->poll.data = u;
  u->refs = 1; /* the poll handle; the JS handle adds one */
  napi_add_env_cleanup_hook(env, cleanup_hook, u);
  err = uv_poll_start(&u->poll, UV_READABLE, on_poll);
  if (err != 0) {
    close_poll(u);
    return throw_errno(env, -err, "uv_poll_start", NULL);
  }
  u->polling = true;
  if (napi_create_object(env, &handle) != napi_ok ||
      napi_type_tag_object(env, handle, &uring_tag) != napi_ok ||
      napi_wrap(env, handle, u, handle_finalize, NULL, NULL) != napi_ok ||
      (u->refs++, false) ||
      napi_create_object(env, &result) != napi_ok ||
      napi_create_uint32(env, (uint32_t)queues, &queues_v) != napi_ok ||
      napi_set_named_property(env, result, "handle", handle) != napi_ok ||
      napi_set_named_property(env, result, "queues", queues_v) != napi_ok) {
    return NULL;
  }
  return result;
}

/*
 * fuseUringRegister(handle): registers every entry (after the INIT reply: the kernel
 * needs the connection's sizes). Throws the kernel's errno when it refuses one; the
 * kernel then goes on through /dev/fuse, and the entries it took are handed back when
 * the connection ends (their memory is freed only then).
 */
static napi_value b_register(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  struct uring *u;
  if (!unwrap_uring(env, argv[0], &u)) return NULL;
  if (u->stopping) return throw_errno(env, ENOTCONN, "fuseUringRegister", NULL);
  for (uint32_t i = 0; i < u->count; i++) {
    if (u->ents[i].state == ENT_DEAD) queue_cmd(u, i, STRATAFS_FUSE_IO_URING_CMD_REGISTER);
  }
  int err = submit(u);
  /* a refused REGISTER completes at once, with the kernel's reason */
  uint32_t head = *u->cq_head, tail = __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE);
  for (uint32_t h = head; err == 0 && h != tail; h++) {
    if (u->cqes[h & u->cq_mask].res < 0) err = u->cqes[h & u->cq_mask].res;
  }
  if (err == 0) return js_undefined(env);
  for (; head != tail; head++) {
    const struct io_uring_cqe *cqe = &u->cqes[head & u->cq_mask];
    if (cqe->user_data >= u->count) continue;
    struct entry *e = &u->ents[cqe->user_data];
    if (e->state == ENT_KERNEL) u->held--;
    e->state = cqe->res < 0 ? ENT_DEAD : ENT_USER;
  }
  __atomic_store_n(u->cq_head, head, __ATOMIC_RELEASE);
  stop_uring(u);
  return throw_errno(env, -err, "FUSE_IO_URING_CMD_REGISTER", NULL);
}

/* fuseUringCommit(handle, token, buffers): the reply to the request of entry -(1 + token) */
static napi_value b_commit(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  struct uring *u;
  int32_t token;
  uint32_t count;
  bool is_array = false;
  if (!unwrap_uring(env, argv[0], &u)) return NULL;
  if (napi_get_value_int32(env, argv[1], &token) != napi_ok || token >= 0 ||
      (uint32_t)(-(int64_t)token - 1) >= u->count) {
    throw_type(env, "token", "a ring entry token");
    return NULL;
  }
  struct entry *e = &u->ents[-(int64_t)token - 1];
  if (u->stopping || e->state != ENT_USER) return throw_errno(env, ENOENT, "fuseUringCommit", NULL);
  if (napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[2], &count) != napi_ok) {
    throw_type(env, "buffers", "an array of Buffers");
    return NULL;
  }
  /* the first sizeof(fuse_out_header) bytes to in_out, the rest to the payload */
  char *hdr = e->hdr->in_out, *pay = e->iov[1].iov_base;
  size_t hsize = sizeof(struct fuse_out_header), off = 0;
  for (uint32_t k = 0; k < count; k++) {
    napi_value el;
    void *data;
    size_t len;
    if (napi_get_element(env, argv[2], k, &el) != napi_ok ||
        !arg_buffer(env, el, "buffers[i]", &data, &len)) {
      return NULL;
    }
    if (off + len > hsize + u->payload_size) return throw_errno(env, E2BIG, "fuseUringCommit", NULL);
    const char *src = data;
    if (off < hsize) {
      size_t h = len < hsize - off ? len : hsize - off;
      memcpy(hdr + off, src, h);
      src += h;
      len -= h;
      off += h;
    }
    memcpy(pay + (off - hsize), src, len);
    off += len;
  }
  if (off < hsize) return throw_errno(env, EINVAL, "fuseUringCommit", NULL);
  e->hdr->ring_ent_in_out.payload_sz = (uint32_t)(off - hsize);
  if (!queue_cmd(u, (uint32_t)(-(int64_t)token - 1), STRATAFS_FUSE_IO_URING_CMD_COMMIT_AND_FETCH)) {
    return throw_errno(env, EBUSY, "fuseUringCommit", NULL);
  }
  if (!u->in_batch) {
    int err = submit(u);
    if (err < 0) return throw_errno(env, -err, "io_uring_enter", NULL);
  }
  return js_i64(env, (int64_t)off);
}

/* fuseUringStop(handle): no more callbacks; safe to call twice */
static napi_value b_stop(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  struct uring *u;
  if (!unwrap_uring(env, argv[0], &u)) return NULL;
  stop_uring(u);
  return js_undefined(env);
}

bool register_fuse_uring(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"fuseUringStart", b_start},
    {"fuseUringRegister", b_register},
    {"fuseUringCommit", b_commit},
    {"fuseUringStop", b_stop},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
