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
 * This file makes the ring and the entries, registers them, and stops and frees them;
 * fuse_uring_requests.c turns completions into requests for JS and commits replies.
 * Every call is on the JS thread: no locks. Raw syscalls (no liburing): the ring is
 * small and only two commands are used.
 *
 * Buffers belong to the kernel while an entry's command is outstanding; on stop they are
 * freed only once every outstanding command has completed (the connection's end
 * completes them with ENOTCONN), the poll handle then no longer keeping the loop alive.
 */
#include "fuse_uring_internal.h"

#include <errno.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int sys_setup(unsigned entries, struct io_uring_params *p) {
  return (int)syscall(__NR_io_uring_setup, entries, p);
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
  if (u->known_ref) napi_delete_reference(u->env, u->known_ref);
  if (u->async_ctx) napi_async_destroy(u->env, u->async_ctx);
  if (u->sqes) munmap(u->sqes, u->sqes_len);
  if (u->rings) munmap(u->rings, u->rings_len);
  if (u->ring_fd >= 0) close(u->ring_fd);
  if (u->payloads) munmap(u->payloads, u->payloads_len);
  free(u->headers);
  free(u);
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

void uring_close_poll(struct uring *u) {
  if (u->closed) return;
  u->closed = true;
  u->polling = false;
  uv_poll_stop(&u->poll);
  uv_close((uv_handle_t *)&u->poll, on_closed);
}

static const napi_type_tag uring_tag = {0x7374726174616673ULL, 0x7572696e67733031ULL};

bool uring_unwrap(napi_env env, napi_value v, struct uring **out) {
  *out = arg_tagged(env, v, &uring_tag, "handle", "an io_uring transport handle");
  return *out != NULL;
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
    uring_close_poll(u);
  } else {
    /* wait for the outstanding commands without keeping the loop (or process) alive */
    uv_unref((uv_handle_t *)&u->poll);
  }
}

static void cleanup_hook(void *arg) {
  struct uring *u = arg;
  stop_uring(u);
  /* the environment goes: the loop will not run the close callback */
  if (!u->closed) uring_close_poll(u);
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
  GET_ARGS(9);
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
      napi_create_reference(env, argv[7], 1, &u->on_end) != napi_ok ||
      !known_arg(env, argv[8], &u->known, &u->known_ref)) {
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
  err = uv_poll_start(&u->poll, UV_READABLE, uring_on_poll);
  if (err != 0) {
    uring_close_poll(u);
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
  if (!uring_unwrap(env, argv[0], &u)) return NULL;
  if (u->stopping) return throw_errno(env, ENOTCONN, "fuseUringRegister", NULL);
  for (uint32_t i = 0; i < u->count; i++) {
    if (u->ents[i].state == ENT_DEAD) uring_queue_cmd(u, i, STRATAFS_FUSE_IO_URING_CMD_REGISTER);
  }
  int err = uring_submit(u);
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

/* fuseUringStop(handle): no more callbacks; safe to call twice */
static napi_value b_stop(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  struct uring *u;
  if (!uring_unwrap(env, argv[0], &u)) return NULL;
  stop_uring(u);
  return js_undefined(env);
}

bool register_fuse_uring(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"fuseUringStart", b_start},
    {"fuseUringRegister", b_register},
    {"fuseUringCommit", uring_commit},
    {"fuseUringStop", b_stop},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
