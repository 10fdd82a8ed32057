/*
 * FUSE-over-io_uring definitions the build's kernel headers may lack (Debian bookworm's
 * linux-libc-dev is 6.1; the interface arrived in Linux 6.14). Values and layouts are
 * those of the kernel's uapi header include/uapi/linux/fuse.h (protocol 7.42) and of
 * fs/fuse/dev_uring.c, which reads them; nothing here is used unless the kernel offers
 * FUSE_OVER_IO_URING in INIT.
 */
#ifndef STRATAFS_FUSE_URING_ABI_H
#define STRATAFS_FUSE_URING_ABI_H

#include <stdint.h>

/* IORING_OP_URING_CMD cmd_op values (enum fuse_uring_cmd in uapi fuse.h) */
#define STRATAFS_FUSE_IO_URING_CMD_REGISTER 1
#define STRATAFS_FUSE_IO_URING_CMD_COMMIT_AND_FETCH 2

/* struct fuse_uring_cmd_req: the command area of a 128-byte SQE */
struct stratafs_fuse_uring_cmd_req {
  uint64_t flags;
  uint64_t commit_id; /* the request's unique (COMMIT_AND_FETCH) */
  uint16_t qid;       /* the queue: one per possible CPU */
  uint8_t padding[6];
};

/* struct fuse_uring_ent_in_out */
struct stratafs_fuse_uring_ent_in_out {
  uint64_t flags;
  uint64_t commit_id;  /* kernel -> daemon: the unique to commit with */
  uint32_t payload_sz; /* bytes of the payload buffer used, both ways */
  uint32_t padding;
  uint64_t reserved;
};

/* struct fuse_uring_req_header: iov[0] of every ring entry */
#define STRATAFS_FUSE_URING_IN_OUT_HEADER_SZ 128
#define STRATAFS_FUSE_URING_OP_IN_OUT_SZ 128
struct stratafs_fuse_uring_req_header {
  char in_out[STRATAFS_FUSE_URING_IN_OUT_HEADER_SZ]; /* fuse_in_header / fuse_out_header */
  char op_in[STRATAFS_FUSE_URING_OP_IN_OUT_SZ];      /* the opcode's fixed-size argument */
  struct stratafs_fuse_uring_ent_in_out ring_ent_in_out;
};

_Static_assert(sizeof(struct stratafs_fuse_uring_cmd_req) == 24, "fuse_uring_cmd_req layout");
_Static_assert(sizeof(struct stratafs_fuse_uring_ent_in_out) == 32, "fuse_uring_ent_in_out layout");
_Static_assert(sizeof(struct stratafs_fuse_uring_req_header) == 288, "fuse_uring_req_header layout");

#endif
