/*
 * FUSE over io_uring, the requests (the ring itself: fuse_uring.c).
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
 * Requests the connection's known answers cover (fuse_known.c) are committed here as they
 * complete, and never reach onBatch.
 *
 * Completions reach the event loop through a libuv poll handle on the ring fd; every
 * call here is on the JS thread: no locks.
 */
#include "fuse_uring_internal.h"

#include <errno.h>
#include <linux/fuse.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int sys_enter(int fd, unsigned to_submit) {
  return (int)syscall(__NR_io_uring_enter, fd, to_submit, 0, 0, NULL, 0);
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
int uring_submit(struct uring *u) {
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

bool uring_queue_cmd(struct uring *u, uint32_t i, uint32_t op) {
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
  uring_queue_cmd(u, i, STRATAFS_FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
}

/* an xattr request's frame at most: header, fuse_getxattr_in, a name of XATTR_NAME_MAX */
#define KNOWN_FRAME_MAX 512

/* commits the reply to a request answered by what is known (fuse_known.c); false: JS answers */
static bool answer_known(struct uring *u, uint32_t i, size_t len) {
  struct entry *e = &u->ents[i];
  struct fuse_in_header in;
  struct known_reply out;
  char frame[KNOWN_FRAME_MAX];
  memcpy(&in, e->hdr->in_out, sizeof(in));
  if ((in.opcode != FUSE_GETXATTR && in.opcode != FUSE_LISTXATTR) || len > sizeof(frame)) return false;
  /* whichever way the kernel split the arguments between op_in and the payload */
  copy_frame(e, len, frame);
  if (!known_reply(u->known, &in, frame + sizeof(in), len - sizeof(in), &out)) return false;
  /* the out header to in_out (where the in header was), the rest to the payload */
  memcpy(e->hdr->in_out, &out.h, sizeof(out.h));
  size_t rest = out.h.len - sizeof(out.h);
  memcpy(e->iov[1].iov_base, &out.size, rest);
  e->hdr->ring_ent_in_out.payload_sz = (uint32_t)rest;
  uring_queue_cmd(u, i, STRATAFS_FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
  return true;
}

static void deliver(struct uring *u, uint32_t n) {
  napi_value count = js_i32(u->env, (int32_t)n);
  u->in_batch = true;
  call_js(u, u->on_batch, 1, &count);
  u->in_batch = false;
}

/* the ring's completions: requests to onBatch, ended entries counted */
void uring_on_poll(uv_poll_t *h, int status, int events) {
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
      if (res == -ENOENT && !u->stopping && uring_queue_cmd(u, (uint32_t)i, STRATAFS_FUSE_IO_URING_CMD_REGISTER)) continue;
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
    if (u->known && answer_known(u, (uint32_t)i, len)) continue;
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
  int err = uring_submit(u);
  if (err < 0 && !ended) ended = -err;
  if (status < 0 && !ended) ended = -status;
  if (ended && !u->stopping) {
    napi_value arg = js_i32(env, ended);
    call_js(u, u->on_end, 1, &arg);
  }
  if (u->stopping && u->held == 0) uring_close_poll(u);
  napi_close_handle_scope(env, scope);
}

/* fuseUringCommit(handle, token, buffers): the reply to the request of entry -(1 + token) */
napi_value uring_commit(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  struct uring *u;
  int32_t token;
  uint32_t count;
  bool is_array = false;
  if (!uring_unwrap(env, argv[0], &u)) return NULL;
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
  if (!uring_queue_cmd(u, (uint32_t)(-(int64_t)token - 1), STRATAFS_FUSE_IO_URING_CMD_COMMIT_AND_FETCH)) {
    return throw_errno(env, EBUSY, "fuseUringCommit", NULL);
  }
  if (!u->in_batch) {
    int err = uring_submit(u);
    if (err < 0) return throw_errno(env, -err, "io_uring_enter", NULL);
  }
  return js_i64(env, (int64_t)off);
}
