{
  "targets": [
    {
      "target_name": "stratafs",
      "sources": [
        "src/addon.c",
        "src/async.c",
        "src/util.c",
        "src/constants.c",
        "src/fsops.c",
        "src/stat.c",
        "src/batch.c",
        "src/xattr.c",
        "src/io.c",
        "src/copydata.c",
        "src/copyup.c",
        "src/fuse_dev.c",
        "src/fuse_poller.c",
        "src/fuse_known.c",
        "src/fuse_uring.c",
        "src/fuse_uring_requests.c",
        "src/fusermount.c",
        "src/mount.c",
        "src/process.c",
        "src/peercred.c"
      ],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE", "_FILE_OFFSET_BITS=64"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-fvisibility=hidden"],
      "cflags!": ["-Wno-unused-parameter"],
      "libraries": ["-lpthread"]
    },
    {
      "target_name": "stratafs-client",
      "type": "executable",
      "sources": ["src/client.c", "src/client_reply.c"],
      "defines": ["_GNU_SOURCE"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"]
    }
  ]
}
