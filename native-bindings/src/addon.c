/*
 * Module entry point: registers every module's functions on `exports` (each module
 * owns one concept, see addon.h), and the property names shared by result objects.
 */
#include "addon.h"

/* Property names used for result and error objects, in enum key_id order. */
const char *const key_names[K_COUNT] = {
  [K_ERRNO] = "errno", [K_CODE] = "code", [K_SYSCALL] = "syscall",
  [K_DEV_MAJOR] = "devMajor", [K_DEV_MINOR] = "devMinor", [K_INO] = "ino",
  [K_MODE] = "mode", [K_NLINK] = "nlink", [K_UID] = "uid", [K_GID] = "gid",
  [K_RDEV_MAJOR] = "rdevMajor", [K_RDEV_MINOR] = "rdevMinor", [K_SIZE] = "size",
  [K_BLOCKS] = "blocks", [K_BLKSIZE] = "blksize",
  [K_ATIME_SEC] = "atimeSec", [K_ATIME_NSEC] = "atimeNsec",
  [K_MTIME_SEC] = "mtimeSec", [K_MTIME_NSEC] = "mtimeNsec",
  [K_CTIME_SEC] = "ctimeSec", [K_CTIME_NSEC] = "ctimeNsec",
  [K_BSIZE] = "bsize", [K_FRSIZE] = "frsize", [K_BFREE] = "bfree", [K_BAVAIL] = "bavail",
  [K_FILES] = "files", [K_FFREE] = "ffree", [K_NAMEMAX] = "namemax",
  [K_NAME] = "name", [K_TYPE] = "type", [K_FD] = "fd", [K_BUF] = "buf", [K_PID] = "pid",
};

bool set_key(napi_env env, napi_value obj, enum key_id id, napi_value value) {
  return value && napi_set_named_property(env, obj, key_names[id], value) == napi_ok;
}

#define MAX_PROPS 32

napi_value new_object(napi_env env, size_t n, const enum key_id *ids, const napi_value *values) {
  napi_property_descriptor props[MAX_PROPS];
  napi_value obj;
  if (n > MAX_PROPS) return NULL;
  for (size_t i = 0; i < n; i++) {
    if (!values[i]) return NULL;
    props[i] = (napi_property_descriptor){
      .utf8name = key_names[ids[i]], .value = values[i], .attributes = napi_default_jsproperty,
    };
  }
  if (napi_create_object(env, &obj) != napi_ok ||
      napi_define_properties(env, obj, n, props) != napi_ok) {
    return NULL;
  }
  return obj;
}

bool define_functions(napi_env env, napi_value exports, const struct fn_entry *fns, size_t n) {
  for (size_t i = 0; i < n; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn) != napi_ok ||
        napi_set_named_property(env, exports, fns[i].name, fn) != napi_ok) {
      return false;
    }
  }
  return true;
}

static napi_value init(napi_env env, napi_value exports) {
  bool (*const modules[])(napi_env, napi_value) = {
    register_constants, register_fsops,      register_stat,       register_batch,
    register_xattr,     register_io,         register_copydata,   register_copyup,
    register_fuse_dev,
    register_fuse_poller, register_fuse_known, register_fuse_uring,
    register_fusermount, register_mount,     register_process,    register_peercred,
  };
  for (size_t i = 0; i < COUNT_OF(modules); i++) {
    if (!modules[i](env, exports)) return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
