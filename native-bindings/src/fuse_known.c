/*
 * Answers the device reader gives itself: xattr requests of nodes the filesystem said
 * have no xattrs a caller can see (src/fuse/api.ts, setXattrAnswers).
 *
 * The kernel caches no xattrs but POSIX ACLs, so a tool that asks them of each file it
 * meets asks again every time: `ls -l` a GETXATTR (security.selinux) per entry,
 * containers-storage's naive diff a GETXATTR (security.capability) and a LISTXATTR per
 * entry of both trees. Most files have none, and once the overlay knows that of a node
 * its answer never changes until it says so: ENODATA for any name, an empty list. Here
 * the reader writes that reply as it reads the request, so such a request costs a read
 * and a write and no JS at all.
 *
 * One set per connection (fuseKnownSet), shared by its /dev/fuse reader (fuse_poller.c,
 * which writes the reply to the device) and its io_uring entries (fuse_uring_requests.c,
 * which commits it).
 *
 * The set holds the ids of the nodes without xattrs. Node ids are never reused during a
 * mount (src/overlay/inodes.ts), so an entry can only be stale in memory, and the
 * filesystem removes it when the node leaves its table: the set holds at most the
 * nodes the kernel still knows. Open addressing with linear probing over 64-bit slots
 * (0: empty; node ids start at 1); it grows at 3/4 full and shrinks at 1/8, and holds
 * no memory while empty.
 */
#include "fuse_known.h"

#include "addon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MIN_CAP 1024u

static uint32_t home(const struct known_set *s, uint64_t id) {
  /* Fibonacci hashing: ids are sequential, the product spreads them over the table */
  return (uint32_t)((id * 0x9E3779B97F4A7C15ull) >> (64 - s->shift));
}

static uint32_t find(const struct known_set *s, uint64_t id, bool *found) {
  uint32_t mask = s->cap - 1;
  for (uint32_t i = home(s, id);; i = (i + 1) & mask) {
    uint64_t slot = s->slots[i];
    if (slot == 0 || slot == id) {
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
    s->slots[find(s, old[i], &found)] = old[i];
  }
  free(old);
  return true;
}

bool known_has(const struct known_set *s, uint64_t id) {
  if (s->count == 0) return false;
  bool found;
  find(s, id, &found);
  return found;
}

/* removes slot i, moving later entries of its run back (no tombstones) */
static void remove_at(struct known_set *s, uint32_t i) {
  uint32_t mask = s->cap - 1;
  for (uint32_t j = (i + 1) & mask; s->slots[j] != 0; j = (j + 1) & mask) {
    uint32_t k = home(s, s->slots[j]);
    /* the entry at j may fill the hole at i unless its home lies in (i, j] */
    bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (stays) continue;
    s->slots[i] = s->slots[j];
    i = j;
  }
  s->slots[i] = 0;
  s->count--;
}

bool known_put(struct known_set *s, uint64_t id, bool in) {
  if (s->cap == 0) {
    if (!in) return true;
    if (!rehash(s, MIN_CAP)) return false;
  }
  bool found;
  uint32_t i = find(s, id, &found);
  if (!in) {
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
    s->slots[i] = id;
  }
  return true;
}

void known_free(struct known_set *s) {
  free(s->slots);
  s->slots = NULL;
  s->cap = s->count = s->shift = 0;
}

bool known_reply(struct known_set *s, const struct fuse_in_header *in, const void *arg, size_t arg_len,
                 struct known_reply *out) {
  struct fuse_getxattr_in body;
  if (in->opcode != FUSE_GETXATTR && in->opcode != FUSE_LISTXATTR) return false;
  if (arg_len < sizeof(body) || !known_has(s, in->nodeid)) return false;
  memset(out, 0, sizeof(*out));
  out->h.unique = in->unique;
  out->h.len = sizeof(out->h);
  if (in->opcode == FUSE_GETXATTR) {
    out->h.error = -ENODATA;
  } else {
    memcpy(&body, arg, sizeof(body));
    /* a size question is answered with the size (0); a list, with no bytes */
    if (body.size == 0) out->h.len = sizeof(*out);
  }
  s->answered[in->opcode == FUSE_GETXATTR ? 0 : 1]++;
  return true;
}

/* ---- the JS side ---- */

/* Marks the objects fuseKnownSet returns, so that what is unwrapped can be trusted. */
static const napi_type_tag set_tag = {0x7374726174616673ULL, 0x6b6e6f776e736574ULL};

static void set_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  known_free(data);
  free(data);
}

static struct known_set *unwrap_set(napi_env env, napi_value v) {
  return arg_tagged(env, v, &set_tag, "set", "a set of known answers (fuseKnownSet)");
}

bool known_arg(napi_env env, napi_value v, struct known_set **out, napi_ref *ref) {
  napi_valuetype type;
  *out = NULL;
  *ref = NULL;
  if (napi_typeof(env, v, &type) != napi_ok) return false;
  if (type == napi_undefined) return true;
  struct known_set *s = unwrap_set(env, v);
  if (!s || napi_create_reference(env, v, 1, ref) != napi_ok) return false;
  *out = s;
  return true;
}

/* fuseKnownSet() -> a set of known answers for one connection's readers */
static napi_value b_set(napi_env env, napi_callback_info info) {
  napi_value handle;
  (void)info;
  struct known_set *s = calloc(1, sizeof(*s));
  if (!s) return throw_errno(env, ENOMEM, "fuseKnownSet", NULL);
  if (napi_create_object(env, &handle) != napi_ok || napi_type_tag_object(env, handle, &set_tag) != napi_ok ||
      napi_wrap(env, handle, s, set_finalize, NULL, NULL) != napi_ok) {
    free(s);
    return NULL;
  }
  return handle;
}

/*
 * fuseKnown(set, nodeId, noXattrs): whether the readers answer the node's xattr requests
 * themselves (every GETXATTR ENODATA, every LISTXATTR an empty list) or JS does.
 */
static napi_value b_known(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  uint64_t id;
  bool none;
  struct known_set *s = unwrap_set(env, argv[0]);
  if (!s || !arg_size(env, argv[1], "nodeId", &id) || !arg_bool(env, argv[2], "noXattrs", &none)) return NULL;
  if (id == 0) return throw_errno(env, EINVAL, "fuseKnown", NULL);
  if (!known_put(s, id, none)) return throw_errno(env, ENOMEM, "fuseKnown", NULL);
  return js_undefined(env);
}

/* fuseKnownAnswered(set) -> [GETXATTR, LISTXATTR, nodes]: requests answered from the set, nodes in it */
static napi_value b_answered(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  napi_value out, v;
  struct known_set *s = unwrap_set(env, argv[0]);
  if (!s || napi_create_array_with_length(env, 3, &out) != napi_ok) return NULL;
  const double values[3] = {(double)s->answered[0], (double)s->answered[1], (double)s->count};
  for (uint32_t i = 0; i < 3; i++) {
    if (napi_create_double(env, values[i], &v) != napi_ok || napi_set_element(env, out, i, v) != napi_ok) {
      return NULL;
    }
  }
  return out;
}

bool register_fuse_known(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"fuseKnownSet", b_set},
    {"fuseKnown", b_known},
    {"fuseKnownAnswered", b_answered},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
