/*
 * mount(2), umount2(2), open_tree(2) and mount_setattr(2), as they are: the caller
 * decides flags and data.
 */
#include "addon.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

/* mount(source, target, fstype, flags, data); an empty data string passes NULL */
static napi_value b_mount(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  namebuf_t source, target, fstype;
  uint32_t flags;
  if (!arg_name(env, argv[0], "source", "mount", source) ||
      !arg_name(env, argv[1], "target", "mount", target) ||
      !arg_name(env, argv[2], "fstype", "mount", fstype) ||
      !arg_u32(env, argv[3], "flags", &flags)) {
    return NULL;
  }
  char *data = arg_string_alloc(env, argv[4], "data", "mount");
  if (!data) return NULL;
  int r = mount(source, target, fstype, flags, data[0] ? data : NULL);
  int err = errno;
  free(data);
  if (r < 0) return throw_errno(env, err, "mount", target);
  return js_undefined(env);
}

static napi_value b_umount2(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  namebuf_t target;
  int32_t flags;
  if (!arg_name(env, argv[0], "target", "umount2", target) ||
      !arg_i32(env, argv[1], "flags", &flags)) {
    return NULL;
  }
  if (umount2(target, flags) < 0) return throw_errno(env, errno, "umount2", target);
  return js_undefined(env);
}

/* openTree(dirfd, path, flags) -> fd (OPEN_TREE_CLONE: a detached copy of the mount) */
static napi_value b_open_tree(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  int dirfd;
  namebuf_t path;
  uint32_t flags;
  if (!arg_fd(env, argv[0], "dirfd", &dirfd) || !arg_name(env, argv[1], "path", "open_tree", path) ||
      !arg_u32(env, argv[2], "flags", &flags)) {
    return NULL;
  }
  long fd = syscall(SYS_open_tree, dirfd, path, flags);
  if (fd < 0) return throw_errno(env, errno, "open_tree", path);
  return js_i32(env, (int32_t)fd);
}

/* mountSetattr(dirfd, path, flags, attrSet, attrClr) */
static napi_value b_mount_setattr(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  int dirfd;
  namebuf_t path;
  uint32_t flags, set, clr;
  if (!arg_fd(env, argv[0], "dirfd", &dirfd) ||
      !arg_name(env, argv[1], "path", "mount_setattr", path) ||
      !arg_u32(env, argv[2], "flags", &flags) || !arg_u32(env, argv[3], "attrSet", &set) ||
      !arg_u32(env, argv[4], "attrClr", &clr)) {
    return NULL;
  }
  struct mount_attr attr = {.attr_set = set, .attr_clr = clr};
  if (syscall(SYS_mount_setattr, dirfd, path, flags, &attr, sizeof(attr)) < 0) {
    return throw_errno(env, errno, "mount_setattr", path);
  }
  return js_undefined(env);
}

bool register_mount(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"mount", b_mount},
    {"umount2", b_umount2},
    {"openTree", b_open_tree},
    {"mountSetattr", b_mount_setattr},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
