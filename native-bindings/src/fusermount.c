/*
 * Unprivileged mount: the fusermount3 handshake.
 *
 * A socketpair is made; `fusermount3 -o OPTIONS -- TARGET` runs with one end
 * inherited (and only by it) and named in _FUSE_COMMFD. fusermount3 opens /dev/fuse, mounts, and
 * sends the device fd back over the socket (SCM_RIGHTS, with one data byte), then
 * exits. We do not ask for auto_unmount, so fusermount3 does not linger.
 */
#include "addon.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* environ plus "_FUSE_COMMFD=fd" (replacing any inherited one); NULL on ENOMEM. */
static char **child_env(int fd, char *slot, size_t slot_size) {
  size_t n = 0, k = 0;
  while (environ[n]) n++;
  char **env = calloc(n + 2, sizeof(*env));
  if (!env) return NULL;
  snprintf(slot, slot_size, "_FUSE_COMMFD=%d", fd);
  for (size_t i = 0; i < n; i++) {
    if (strncmp(environ[i], "_FUSE_COMMFD=", 13) != 0) env[k++] = environ[i];
  }
  env[k++] = slot;
  env[k] = NULL;
  return env;
}

/* Receives one fd sent with SCM_RIGHTS; -1 with errno (0 when the peer sent none). */
static int receive_fd(int sock) {
  char byte;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } control;
  struct msghdr msg = {
    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof(control.buf),
  };
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int))) {
      int fd;
      memcpy(&fd, CMSG_DATA(c), sizeof(fd));
      return fd;
    }
  }
  errno = 0;
  return -1;
}

/*
 * Hands our stdin/stdout/stderr to the child even where they are close-on-exec (Node
 * may open them so): dup2 of an fd onto itself clears the flag in the child only.
 * fusermount3 reports its errors on stderr.
 */
static int keep_stdio(posix_spawn_file_actions_t *actions) {
  for (int fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) < 0) continue; /* closed: fusermount3 copes */
    int err = posix_spawn_file_actions_adddup2(actions, fd, fd);
    if (err) return err;
  }
  return 0;
}

/*
 * Spawns fusermount3 with `sock` duplicated onto `child_fd` in the child only (dup2
 * clears close-on-exec on the copy), so no other child spawned meanwhile by another
 * thread can inherit the socket. Returns the pid, or -1 with errno.
 */
static pid_t spawn_fusermount(int sock, int child_fd, char *target, char *options) {
  char slot[32];
  char *with_opts[] = {"fusermount3", "-o", options, "--", target, NULL};
  char *without[] = {"fusermount3", "--", target, NULL};
  char **argv = options[0] ? with_opts : without;
  posix_spawn_file_actions_t actions;
  pid_t pid = -1;
  int err = posix_spawn_file_actions_init(&actions);
  if (err) {
    errno = err;
    return -1;
  }
  char **env = child_env(child_fd, slot, sizeof(slot));
  if (!env) {
    err = ENOMEM;
  } else if (!(err = posix_spawn_file_actions_adddup2(&actions, sock, child_fd)) &&
             !(err = keep_stdio(&actions))) {
    err = posix_spawnp(&pid, "fusermount3", &actions, NULL, argv, env);
  }
  free(env);
  posix_spawn_file_actions_destroy(&actions);
  if (err) {
    errno = err;
    return -1;
  }
  return pid;
}

/* fusermount(target, options) -> /dev/fuse fd of the new mount */
static napi_value b_fusermount(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  namebuf_t target;
  int sv[2], status = 0, fd, err;
  if (!arg_name(env, argv[0], "target", "fusermount", target)) return NULL;
  char *options = arg_string_alloc(env, argv[1], "options", "fusermount");
  if (!options) return NULL;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    err = errno;
    free(options);
    return throw_errno(env, err, "socketpair", NULL);
  }
  /* both ends stay close-on-exec here; the child gets its end as a fresh fd number */
  pid_t pid = spawn_fusermount(sv[1], (sv[0] > sv[1] ? sv[0] : sv[1]) + 1, target, options);
  err = errno;
  close(sv[1]);
  free(options);
  if (pid < 0) {
    close(sv[0]);
    return throw_errno(env, err, "posix_spawn", "fusermount3");
  }
  fd = receive_fd(sv[0]);
  err = errno;
  close(sv[0]);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  bool exited_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (fd >= 0 && exited_ok) return js_i32(env, fd);
  if (fd >= 0) close(fd);
  return throw_errno(env, err && fd < 0 ? err : EIO, "fusermount", target);
}

bool register_fusermount(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"fusermount", b_fusermount},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
