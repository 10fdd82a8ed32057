/*
 * The credentials of the process at the other end of a connected unix socket
 * (SO_PEERCRED: taken by the kernel when that process called connect()). The policy
 * (who may talk to a socket) is in TypeScript; this only reads them.
 */
#include "addon.h"

#include <errno.h>
#include <sys/socket.h>

/* peerCred(fd) -> { pid, uid, gid } */
static napi_value b_peer_cred(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int fd;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
    return throw_errno(env, errno, "getsockopt", NULL);
  }
  const enum key_id ids[] = {K_PID, K_UID, K_GID};
  const napi_value values[] = {js_i32(env, cred.pid), js_u32(env, cred.uid), js_u32(env, cred.gid)};
  return new_object(env, COUNT_OF(ids), ids, values);
}

bool register_peercred(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"peerCred", b_peer_cred},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
