/*
 * What the device reader answers without JS (fuse_known.c): the set of node ids without
 * xattrs.
 */
#ifndef STRATAFS_FUSE_KNOWN_H
#define STRATAFS_FUSE_KNOWN_H

#include <node_api.h>
#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct known_set {
  uint64_t *slots;
  uint32_t cap;   /* slots (a power of two), 0 while nothing is known */
  uint32_t count; /* ids known */
  uint32_t shift; /* log2(cap) */
  /* requests answered here: GETXATTR, LISTXATTR */
  uint64_t answered[2];
};

/* whether `id` (> 0) is in the set: its GETXATTRs answer ENODATA, its LISTXATTRs no names */
bool known_has(const struct known_set *s, uint64_t id);
/* puts `id` (> 0) in the set or takes it out; false only when memory ran out (nothing changed) */
bool known_put(struct known_set *s, uint64_t id, bool in);
void known_free(struct known_set *s);

/* a reply made from what is known: `h.len` bytes from `h` */
struct known_reply {
  struct fuse_out_header h;
  struct fuse_getxattr_out size;
};

/*
 * When the request with header `in` and op argument `arg` (`arg_len` bytes) is answered
 * by what is known, makes its reply in `out`, counts it and returns true; otherwise
 * false (JS answers it). Every transport sends the reply its own way.
 */
bool known_reply(struct known_set *s, const struct fuse_in_header *in, const void *arg, size_t arg_len,
                 struct known_reply *out);

/*
 * The set behind a handle fuseKnownSet returned, with a reference that keeps it alive
 * in `*ref` (the caller deletes it when done); undefined gives NULL and no reference.
 * false with a TypeError pending for anything else.
 */
bool known_arg(napi_env env, napi_value v, struct known_set **out, napi_ref *ref);

bool register_fuse_known(napi_env env, napi_value exports);

#endif
