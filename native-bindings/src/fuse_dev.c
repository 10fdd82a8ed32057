/*
 * The FUSE device: open, clone (more fds on one connection), passthrough backing
 * files, and writev of replies. Reading is in fuse_poller.c.
 */
#include "addon.h"
#include "fuse_compat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

_Static_assert(sizeof(struct fuse_backing_map) == 16, "fuse_backing_map layout");

static napi_value b_fuse_open(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "open", "/dev/fuse");
  return js_i32(env, fd);
}

/* fuseClone(devFd) -> a new device fd attached to devFd's connection */
static napi_value b_fuse_clone(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int dev;
  if (!arg_fd(env, argv[0], "devFd", &dev)) return NULL;
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "open", "/dev/fuse");
  uint32_t src = (uint32_t)dev;
  if (ioctl(fd, FUSE_DEV_IOC_CLONE, &src) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "ioctl", "FUSE_DEV_IOC_CLONE");
  }
  return js_i32(env, fd);
}

/* fuseBackingOpen(devFd, fd) -> backing id (> 0) */
static napi_value b_fuse_backing_open(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int dev, fd;
  if (!arg_fd(env, argv[0], "devFd", &dev) || !arg_fd(env, argv[1], "fd", &fd)) return NULL;
  struct fuse_backing_map map = {.fd = fd, .flags = 0, .padding = 0};
  int id = ioctl(dev, FUSE_DEV_IOC_BACKING_OPEN, &map);
  if (id < 0) return throw_errno(env, errno, "ioctl", "FUSE_DEV_IOC_BACKING_OPEN");
  return js_i32(env, id);
}

static napi_value b_fuse_backing_close(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int dev;
  uint32_t id;
  if (!arg_fd(env, argv[0], "devFd", &dev) || !arg_u32(env, argv[1], "backingId", &id)) {
    return NULL;
  }
  if (ioctl(dev, FUSE_DEV_IOC_BACKING_CLOSE, &id) < 0) {
    return throw_errno(env, errno, "ioctl", "FUSE_DEV_IOC_BACKING_CLOSE");
  }
  return js_undefined(env);
}

#define SMALL_IOV 16

/* fuseWritev(fd, buffers) -> bytes written; one writev, as the device takes one reply per call */
static napi_value b_fuse_writev(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int fd;
  uint32_t count;
  bool is_array = false;
  struct iovec small[SMALL_IOV], *iov = small;
  if (!arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[1], &count) != napi_ok) {
    throw_type(env, "buffers", "an array of Buffers");
    return NULL;
  }
  if (count > IOV_MAX) return throw_errno(env, EINVAL, "writev", NULL);
  if (count > SMALL_IOV && !(iov = malloc(sizeof(*iov) * count))) {
    return throw_errno(env, ENOMEM, "writev", NULL);
  }
  for (uint32_t i = 0; i < count; i++) {
    napi_value el;
    if (napi_get_element(env, argv[1], i, &el) != napi_ok ||
        !arg_buffer(env, el, "buffers[i]", &iov[i].iov_base, &iov[i].iov_len)) {
      if (iov != small) free(iov);
      return NULL;
    }
  }
  ssize_t n;
  do {
    n = writev(fd, iov, (int)count);
  } while (n < 0 && errno == EINTR);
  int err = errno;
  if (iov != small) free(iov);
  if (n < 0) return throw_errno(env, err, "writev", NULL);
  return js_i64(env, n);
}

bool register_fuse_dev(napi_env env, napi_value exports) {
  static const struct fn_entry fns[] = {
    {"fuseOpen", b_fuse_open},
    {"fuseClone", b_fuse_clone},
    {"fuseBackingOpen", b_fuse_backing_open},
    {"fuseBackingClose", b_fuse_backing_close},
    {"fuseWritev", b_fuse_writev},
  };
  return define_functions(env, exports, fns, COUNT_OF(fns));
}
