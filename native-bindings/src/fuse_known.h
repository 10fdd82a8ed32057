/*
 * What the device reader answers without JS (fuse_known.c): a set of node ids, each with
 * what is known of it.
 */
#ifndef STRATAFS_FUSE_KNOWN_H
#define STRATAFS_FUSE_KNOWN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* every GETXATTR of the node answers ENODATA */
#define KNOWN_NO_XATTR_VALUES 1u
/* every LISTXATTR of the node answers an empty list */
#define KNOWN_NO_XATTR_NAMES 2u

struct known_set {
  uint64_t *slots;
  uint32_t cap;   /* slots (a power of two), 0 while nothing is known */
  uint32_t count; /* ids known */
  uint32_t shift; /* log2(cap) */
  /* requests answered here: GETXATTR, LISTXATTR */
  uint64_t answered[2];
};

/* the KNOWN_* bits of `id` (0: nothing known) */
unsigned known_get(const struct known_set *s, uint64_t id);
/* sets the bits of `id`; 0 forgets it. false only when memory ran out (nothing changed) */
bool known_put(struct known_set *s, uint64_t id, unsigned bits);
void known_free(struct known_set *s);
/*
 * When `req` (one request of `len` bytes read from `fd`) is answered by what is known,
 * writes the reply to `fd` and returns true; otherwise false (JS answers it).
 */
bool known_answer(struct known_set *s, int fd, const char *req, size_t len);

#endif
