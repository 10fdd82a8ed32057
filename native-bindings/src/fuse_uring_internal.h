/*
 * Internal to the FUSE-over-io_uring transport, shared by its two halves:
 * fuse_uring.c (the ring: setup, entries' registration, lifetime, the JS functions but
 * the commit) and fuse_uring_requests.c (requests from completions to JS, replies
 * committed back). Not part of the addon's interface (addon.h).
 */
#ifndef STRATAFS_FUSE_URING_INTERNAL_H
#define STRATAFS_FUSE_URING_INTERNAL_H

#include "addon.h"
#include "fuse_uring_abi.h"
#include "fuse_known.h"

#include <linux/io_uring.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
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
  struct known_set *known;      /* answers given without JS (fuse_known.c; NULL: none) */
  napi_ref known_ref;
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

/* fuse_uring.c */
void uring_close_poll(struct uring *u);
bool uring_unwrap(napi_env env, napi_value v, struct uring **out);

/* fuse_uring_requests.c */
/* submits every written SQE the kernel has not taken yet; returns 0 or -errno */
int uring_submit(struct uring *u);
/* hands entry i to the kernel with command op; false when the SQ is full */
bool uring_queue_cmd(struct uring *u, uint32_t i, uint32_t op);
/* the ring's completions (the poll handle's callback) */
void uring_on_poll(uv_poll_t *h, int status, int events);
/* fuseUringCommit(handle, token, buffers) */
napi_value uring_commit(napi_env env, napi_callback_info info);

#endif
