/*
 * stratafs-client: `stratafs -o server=PATH,... MOUNTPOINT` without starting Node.js.
 *
 * bin/stratafs runs this program, with its own argv, for a mount request that names a
 * server (an `server=PATH` entry in an -o list, or STRATAFS_SERVER=PATH in the
 * environment). It connects to the `stratafs daemon --socket PATH` listening there,
 * sends one line
 *     {"op":"mount-argv","argv":["-o","...","MNT"],"cwd":"/..."}
 * and reads one reply line (src/server/protocol.ts). Strings are sent one byte per
 * character: every byte outside printable ASCII (and '"', '\') as \u00XX, so argv bytes
 * that are not UTF-8 reach the daemon exactly (it decodes them as latin1 bytes).
 *
 * The reply is a verdict of the one verdict protocol (src/mount/verdict.ts): exit 0
 * mounted (after printing its notice, if any), 1 the mount failed (or no daemon), 2 bad
 * command line, as bin/stratafs. Every message is one line "stratafs: ..." on stderr.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_REPLY (64 * 1024)

static void say(const char *fmt, ...) {
  va_list ap;
  fputs("stratafs: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

/* ---- the request ---- */

struct buf {
  char *data;
  size_t len, cap;
};

static void put(struct buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (b->len + n + 1 > cap) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
      say("out of memory");
      exit(1);
    }
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

static void put_str(struct buf *b, const char *s) { put(b, s, strlen(s)); }

/* A JSON string of S, one character per byte (see the header). */
static void put_json(struct buf *b, const char *s) {
  put(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') {
      put(b, (const char *)p, 1);
    } else {
      char esc[8];
      snprintf(esc, sizeof esc, "\\u%04x", *p);
      put(b, esc, 6);
    }
  }
  put(b, "\"", 1);
}

/* ---- finding the socket: server= in an -o list, else STRATAFS_SERVER (as the CLI) ---- */

/*
 * The value of a `server=` entry in option list LIST, unescaped, or NULL. Entries split
 * on commas outside double quotes; a backslash escapes the next character (as in
 * src/cli/options.ts).
 */
static char *server_in_list(const char *list) {
  size_t n = strlen(list);
  char *entry = malloc(n + 1);
  if (!entry) return NULL;
  char *found = NULL;
  size_t len = 0;
  int quoted = 0;
  for (size_t i = 0; i <= n; i++) {
    char ch = list[i];
    if (ch == '\\' && i + 1 < n) {
      entry[len++] = list[++i]; /* the value is unescaped as the CLI does */
    } else if (ch == '"') {
      quoted = !quoted;
    } else if ((ch == ',' && !quoted) || ch == '\0') {
      entry[len] = '\0';
      if (strncmp(entry, "server=", 7) == 0 && entry[7] != '\0') {
        free(found);
        found = strdup(entry + 7);
      }
      len = 0;
    } else {
      entry[len++] = ch;
    }
  }
  free(entry);
  return found;
}

static char *find_server(int argc, char **argv) {
  char *found = NULL;
  for (int i = 1; i < argc; i++) {
    const char *list = NULL;
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) list = argv[++i];
    else if (strncmp(argv[i], "-o", 2) == 0) list = argv[i] + 2;
    if (!list) continue;
    char *s = server_in_list(list);
    if (s) {
      free(found);
      found = s;
    }
  }
  if (found) return found;
  const char *env = getenv("STRATAFS_SERVER");
  return env && *env ? strdup(env) : NULL;
}

/* ---- talking to the daemon ---- */

static int connect_to(const char *path) {
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof addr.sun_path) {
    say("the socket path %s is too long (at most %zu bytes)", path, sizeof addr.sun_path - 1);
    return -1;
  }
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    say("cannot create a socket: %s", strerror(errno));
    return -1;
  }
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    int e = errno;
    if (e == ENOENT || e == ECONNREFUSED) {
      say("no stratafs daemon listens on %s (start one with: stratafs daemon --socket %s)", path, path);
    } else {
      say("stratafs daemon at %s: %s", path, strerror(e));
    }
    close(fd);
    return -1;
  }
  return fd;
}

static int send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Reads up to EOF or the first newline; returns the line (without it) or NULL. */
static char *read_reply(int fd) {
  char *line = malloc(MAX_REPLY + 1);
  if (!line) return NULL;
  size_t len = 0;
  while (len < MAX_REPLY) {
    ssize_t r = read(fd, line + len, MAX_REPLY - len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    len += (size_t)r;
    if (memchr(line, '\n', len)) break;
  }
  line[len] = '\0';
  char *nl = strchr(line, '\n');
  if (nl) *nl = '\0';
  if (len == 0) {
    free(line);
    return NULL;
  }
  return line;
}

#include "client.h"

int main(int argc, char **argv) {
  char *path = find_server(argc, argv);
  if (!path) {
    say("no server=PATH option and no STRATAFS_SERVER in the environment");
    return 2;
  }
  char *cwd = getcwd(NULL, 0);
  if (!cwd) {
    say("cannot read the current directory: %s", strerror(errno));
    return 1;
  }
  struct buf req = {0};
  put_str(&req, "{\"op\":\"mount-argv\",\"argv\":[");
  for (int i = 1; i < argc; i++) {
    if (i > 1) put_str(&req, ",");
    put_json(&req, argv[i]);
  }
  put_str(&req, "],\"cwd\":");
  put_json(&req, cwd);
  put_str(&req, "}\n");

  int fd = connect_to(path);
  if (fd < 0) return 1;
  if (send_all(fd, req.data, req.len) < 0) {
    say("stratafs daemon at %s: cannot send the request: %s", path, strerror(errno));
    return 1;
  }
  char *line = read_reply(fd);
  close(fd);
  struct reply rep;
  if (!line || parse_reply(line, &rep) < 0) {
    say("stratafs daemon at %s gave no answer", path);
    return 1;
  }
  if (rep.notice) say("%s", rep.notice);
  if (rep.ok) return 0;
  say("%s", rep.error ? rep.error : "the mount failed");
  return rep.usage ? 2 : 1;
}
