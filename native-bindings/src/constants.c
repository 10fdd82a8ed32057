/*
 * `constants`: flag and special values taken from the system headers at build time,
 * so TypeScript never writes a Linux number itself.
 */
#include "addon.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/limits.h>
#include <linux/openat2.h>
#include <linux/posix_acl.h>
#include <linux/posix_acl_xattr.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
#ifndef RENAME_WHITEOUT
#define RENAME_WHITEOUT (1 << 2)
#endif

struct constant {
  const char *name;
  int64_t value;
};

#define C(name) { #name, (int64_t)(name) }

static const struct constant constants[] = {
  C(O_PATH), C(O_NOFOLLOW), C(O_DIRECTORY), C(O_CLOEXEC), C(O_TMPFILE),
  C(AT_FDCWD), C(AT_SYMLINK_NOFOLLOW), C(AT_SYMLINK_FOLLOW), C(AT_EMPTY_PATH), C(AT_REMOVEDIR),
  C(RESOLVE_BENEATH), C(RESOLVE_NO_SYMLINKS), C(RESOLVE_NO_MAGICLINKS), C(RESOLVE_NO_XDEV),
  C(RESOLVE_IN_ROOT),
  C(RENAME_NOREPLACE), C(RENAME_EXCHANGE), C(RENAME_WHITEOUT),
  C(XATTR_CREATE), C(XATTR_REPLACE),
  C(UTIME_NOW), C(UTIME_OMIT),
  C(FALLOC_FL_KEEP_SIZE), C(FALLOC_FL_PUNCH_HOLE), C(FALLOC_FL_ZERO_RANGE),
  C(SEEK_DATA), C(SEEK_HOLE),
  C(DT_UNKNOWN), C(DT_FIFO), C(DT_CHR), C(DT_DIR), C(DT_BLK), C(DT_REG), C(DT_LNK), C(DT_SOCK),
  C(MS_NODEV), C(MS_NOSUID), C(MS_RDONLY), C(MS_NOATIME), C(MS_NOEXEC), C(MS_NODIRATIME),
  C(MS_RELATIME), C(MS_STRICTATIME), C(MS_REMOUNT), C(O_NOATIME),
  C(OPEN_TREE_CLONE), C(OPEN_TREE_CLOEXEC), C(MOUNT_ATTR_NOATIME), C(MOUNT_ATTR__ATIME),
  C(MNT_DETACH), C(MNT_FORCE),
  C(XATTR_SIZE_MAX), C(PATH_MAX), C(RA_STAT), C(RA_LIST), C(RA_XATTRS),
  C(POSIX_ACL_XATTR_VERSION),
  C(ACL_USER_OBJ), C(ACL_USER), C(ACL_GROUP_OBJ), C(ACL_GROUP), C(ACL_MASK), C(ACL_OTHER),
};

bool register_constants(napi_env env, napi_value exports) {
  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok) return false;
  for (size_t i = 0; i < COUNT_OF(constants); i++) {
    napi_value v = js_i64(env, constants[i].value);
    if (!v || napi_set_named_property(env, obj, constants[i].name, v) != napi_ok) return false;
  }
  return napi_object_freeze(env, obj) == napi_ok &&
         napi_set_named_property(env, exports, "constants", obj) == napi_ok;
}
