/*
 * Answers the device reader gives itself: xattr requests of nodes the filesystem said
 * have no xattrs a caller can see (src/fuse/api.ts, setXattrAnswers).
 *
 * The kernel caches no xattrs, so a tool that asks them of each file it meets asks again
 * every time: `ls -l` two GETXATTRs per entry (security.selinux, system.posix_acl_access),
 * containers-storage's naive diff a GETXATTR (security.capability) and a LISTXATTR per
 * entry of both trees. Most files have none, and once the overlay knows that of a node
 * its answer never changes until it says so: ENODATA for any name, an empty list. Here
 * the reader writes that reply as it reads the request, so such a request costs a read
 * and a write and no JS at all.
 *
 * The set maps node ids to what is known (KNOWN_* bits). Node ids are never reused
 * during a mount (src/overlay/inodes.ts), so an entry can only be stale in memory, and
 * the filesystem removes it when the node leaves its table: the set holds at most the
 * nodes the kernel still knows. Open addressing with linear probing over 64-bit slots,
 * each the id shifted left by two over the bits (0: empty); it grows at 3/4 full and
 * shrinks at 1/8, and holds no memory while empty.
 */
#include "fuse_known.h"

#include <errno.h>
#include <linux/fuse.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BITS_MASK 3u
#define MIN_CAP 1024u

static uint32_t home(const struct known_set *s, uint64_t id) {
  /* Fibonacci hashing: ids are sequential, the product spreads them over the table */
  return (uint32_t)((id * 0x9E3779B97F4A7C15ull) >> (64 - s->shift));
}

static uint32_t find(const struct known_set *s, uint64_t id, bool *found) {
  uint32_t mask = s->cap - 1;
  for (uint32_t i = home(s, id);; i = (i + 1) & mask) {
    uint64_t slot = s->slots[i];
    if (slot == 0 || slot >> 2 == id) {
      *found = slot != 0;
      return i;
    }
  }
}

static bool rehash(struct known_set *s, uint32_t cap) {
  uint64_t *old = s->slots;
  uint32_t old_cap = s->cap;
  uint64_t *slots = calloc(cap, sizeof(*slots));
  if (!slots) return false;
  s->slots = slots;
  s->cap = cap;
  s->shift = (uint32_t)__builtin_ctz(cap);
  for (uint32_t i = 0; i < old_cap; i++) {
    if (old[i] == 0) continue;
    bool found;
    s->slots[find(s, old[i] >> 2, &found)] = old[i];
  }
  free(old);
  return true;
}

unsigned known_get(const struct known_set *s, uint64_t id) {
  if (s->count == 0) return 0;
  bool found;
  uint32_t i = find(s, id, &found);
  return found ? (unsigned)(s->slots[i] & BITS_MASK) : 0;
}

/* removes slot i, moving later entries of its run back (no tombstones) */
static void remove_at(struct known_set *s, uint32_t i) {
  uint32_t mask = s->cap - 1;
  for (uint32_t j = (i + 1) & mask; s->slots[j] != 0; j = (j + 1) & mask) {
    uint32_t k = home(s, s->slots[j] >> 2);
    /* the entry at j may fill the hole at i unless its home lies in (i, j] */
    bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (stays) continue;
    s->slots[i] = s->slots[j];
    i = j;
  }
  s->slots[i] = 0;
  s->count--;
}

bool known_put(struct known_set *s, uint64_t id, unsigned bits) {
  bits &= BITS_MASK;
  if (id == 0 || id >> 62 != 0) return false;
  if (s->cap == 0) {
    if (bits == 0) return true;
    if (!rehash(s, MIN_CAP)) return false;
  }
  bool found;
  uint32_t i = find(s, id, &found);
  if (bits == 0) {
    if (!found) return true;
    remove_at(s, i);
    if (s->count == 0) {
      known_free(s);
    } else if (s->cap > MIN_CAP && s->count < s->cap / 8) {
      rehash(s, s->cap / 2); /* keeps the larger table when memory is short */
    }
    return true;
  }
  if (!found) {
    if ((s->count + 1) * 4 > s->cap * 3) {
      if (!rehash(s, s->cap * 2)) return false;
      i = find(s, id, &found);
    }
    s->count++;
  }
  s->slots[i] = id << 2 | bits;
  return true;
}

void known_free(struct known_set *s) {
  free(s->slots);
  s->slots = NULL;
  s->cap = s->count = s->shift = 0;
}

bool known_answer(struct known_set *s, int fd, const char *req, size_t len) {
  struct fuse_in_header in;
  struct fuse_getxattr_in body;
  if (s->count == 0 || len < sizeof(in) + sizeof(body)) return false;
  memcpy(&in, req, sizeof(in));
  if (in.opcode != FUSE_GETXATTR && in.opcode != FUSE_LISTXATTR) return false;
  unsigned bits = known_get(s, in.nodeid);
  struct {
    struct fuse_out_header h;
    struct fuse_getxattr_out size;
  } out;
  memset(&out, 0, sizeof(out));
  out.h.unique = in.unique;
  out.h.len = sizeof(out.h);
  if (in.opcode == FUSE_GETXATTR) {
    if (!(bits & KNOWN_NO_XATTR_VALUES)) return false;
    out.h.error = -ENODATA;
  } else {
    if (!(bits & KNOWN_NO_XATTR_NAMES)) return false;
    memcpy(&body, req + sizeof(in), sizeof(body));
    /* a size question is answered with the size (0); a list, with no bytes */
    if (body.size == 0) out.h.len = sizeof(out);
  }
  ssize_t w;
  do {
    w = write(fd, &out, out.h.len);
  } while (w < 0 && errno == EINTR);
  /* ENOENT: the request was interrupted meanwhile, as for any reply; other errors end
   * the connection, which the next read reports */
  s->answered[in.opcode == FUSE_GETXATTR ? 0 : 1]++;
  return true;
}
