/*
 * FUSE device ioctls newer than the installed <linux/fuse.h> (protocol 7.38 on
 * Debian bookworm). Values from the kernel's include/uapi/linux/fuse.h (7.40+);
 * BACKING_OPEN is 0x4010e501 on x86-64.
 */
#ifndef STRATAFS_FUSE_COMPAT_H
#define STRATAFS_FUSE_COMPAT_H

#include <linux/fuse.h>
#include <stdint.h>
#include <sys/ioctl.h>

#ifndef FUSE_DEV_IOC_MAGIC
#define FUSE_DEV_IOC_MAGIC 229
#endif

#ifndef FUSE_DEV_IOC_CLONE
#define FUSE_DEV_IOC_CLONE _IOR(FUSE_DEV_IOC_MAGIC, 0, uint32_t)
#endif

#ifndef FUSE_DEV_IOC_BACKING_OPEN
/* the argument of FUSE_DEV_IOC_BACKING_OPEN: a file to pass read/write/mmap through to */
struct fuse_backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
#define FUSE_DEV_IOC_BACKING_OPEN _IOW(FUSE_DEV_IOC_MAGIC, 1, struct fuse_backing_map)
#endif

#ifndef FUSE_DEV_IOC_BACKING_CLOSE
#define FUSE_DEV_IOC_BACKING_CLOSE _IOW(FUSE_DEV_IOC_MAGIC, 2, uint32_t)
#endif

#endif
