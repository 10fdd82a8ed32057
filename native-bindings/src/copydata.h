/*
 * The data half of a copy-up, shared by copyData (copydata.c) and copyUpFile
 * (copyup.c); runs on a pool thread.
 */
#ifndef STRATAFS_COPYDATA_H
#define STRATAFS_COPYDATA_H

#include <stdbool.h>
#include <sys/types.h>

struct copier {
  int src;
  int dst;
  off_t size;
  bool use_cfr;        /* copy_file_range still worth trying (start with true) */
  bool write_ahead;    /* dst will be fsync'ed: start its writeback as each window is copied */
  char *buf;           /* read/write fallback buffer, allocated on first use */
  int err;             /* errno of the failure */
  const char *syscall; /* the call that failed */
};

/*
 * Copies src's data into the new file dst (reflink, else its data extents) and sets
 * dst's length to `size`; false with err/syscall set on failure.
 */
bool copier_copy(struct copier *c);
/* copier_copy without the reflink try. */
bool copier_copy_extents(struct copier *c);
/* Frees what copier_copy allocated. */
void copier_free(struct copier *c);

#endif
