/*
 * stratafs-client: reading the daemon's one-line JSON reply (JSON.stringify output):
 * an object whose "ok", "usage", "error" and "notice" members matter; anything else is
 * skipped. Strings are decoded to UTF-8 (\uXXXX escapes included, surrogate pairs
 * joined; a lone surrogate becomes U+FFFD).
 */
#include <stdlib.h>
#include <string.h>
#include "client.h"

struct in {
  const char *p;
};

static void ws(struct in *s) {
  while (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r') s->p++;
}

static int hex4(const char *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

static size_t utf8(unsigned cp, char *o) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xc0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* A string at s->p (on its opening quote); returns it (malloc'd) or NULL. */
static char *string(struct in *s) {
  if (*s->p != '"') return NULL;
  s->p++;
  /* UTF-8 of a \uXXXX escape (6 bytes) is at most 3 bytes, a pair (12) 4 */
  char *out = malloc(strlen(s->p) + 1);
  if (!out) return NULL;
  size_t n = 0;
  for (;;) {
    char c = *s->p++;
    if (c == '"') break;
    if (c == '\0') {
      free(out);
      return NULL;
    }
    if (c != '\\') {
      out[n++] = c;
      continue;
    }
    c = *s->p++;
    switch (c) {
      case '"': case '\\': case '/': out[n++] = c; break;
      case 'b': out[n++] = '\b'; break;
      case 'f': out[n++] = '\f'; break;
      case 'n': out[n++] = '\n'; break;
      case 'r': out[n++] = '\r'; break;
      case 't': out[n++] = '\t'; break;
      case 'u': {
        unsigned cp, lo;
        if (hex4(s->p, &cp) < 0) {
          free(out);
          return NULL;
        }
        s->p += 4;
        if (cp >= 0xd800 && cp < 0xdc00 && s->p[0] == '\\' && s->p[1] == 'u' && hex4(s->p + 2, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          s->p += 6;
        } else if (cp >= 0xd800 && cp < 0xe000) {
          cp = 0xfffd;
        }
        n += utf8(cp, out + n);
        break;
      }
      default:
        free(out);
        return NULL;
    }
  }
  out[n] = '\0';
  return out;
}

static int skip(struct in *s, int depth);

static int skip_list(struct in *s, char close, int object, int depth) {
  s->p++;
  ws(s);
  if (*s->p == close) {
    s->p++;
    return 0;
  }
  for (;;) {
    ws(s);
    if (object) {
      char *k = string(s);
      if (!k) return -1;
      free(k);
      ws(s);
      if (*s->p++ != ':') return -1;
    }
    if (skip(s, depth + 1) < 0) return -1;
    ws(s);
    if (*s->p == ',') s->p++;
    else if (*s->p == close) {
      s->p++;
      return 0;
    } else return -1;
  }
}

/* Skips any JSON value. */
static int skip(struct in *s, int depth) {
  ws(s);
  if (depth > 32) return -1;
  if (*s->p == '"') {
    char *v = string(s);
    free(v);
    return v ? 0 : -1;
  }
  if (*s->p == '{') return skip_list(s, '}', 1, depth);
  if (*s->p == '[') return skip_list(s, ']', 0, depth);
  const char *start = s->p;
  while (*s->p && strchr("0123456789+-.eEtruefalsn", *s->p)) s->p++;
  return s->p > start ? 0 : -1;
}

static int boolean(struct in *s, int *out) {
  ws(s);
  if (strncmp(s->p, "true", 4) == 0) {
    *out = 1;
    s->p += 4;
    return 0;
  }
  if (strncmp(s->p, "false", 5) == 0) {
    *out = 0;
    s->p += 5;
    return 0;
  }
  return skip(s, 0);
}

int parse_reply(const char *line, struct reply *out) {
  struct in s = {line};
  int have_ok = 0;
  memset(out, 0, sizeof *out);
  ws(&s);
  if (*s.p++ != '{') return -1;
  ws(&s);
  if (*s.p == '}') return -1;
  for (;;) {
    ws(&s);
    char *key = string(&s);
    if (!key) return -1;
    ws(&s);
    if (*s.p++ != ':') {
      free(key);
      return -1;
    }
    ws(&s);
    int r;
    if (strcmp(key, "ok") == 0) {
      out->ok = -1;
      r = boolean(&s, &out->ok);
      have_ok = out->ok != -1;
    } else if (strcmp(key, "usage") == 0) {
      r = boolean(&s, &out->usage);
      if (out->usage != 1) out->usage = 0;
    } else if ((strcmp(key, "error") == 0 || strcmp(key, "notice") == 0) && *s.p == '"') {
      char **dst = key[0] == 'e' ? &out->error : &out->notice;
      free(*dst);
      *dst = string(&s);
      r = *dst ? 0 : -1;
    } else {
      r = skip(&s, 0);
    }
    free(key);
    if (r < 0) return -1;
    ws(&s);
    if (*s.p == ',') s.p++;
    else if (*s.p == '}') break;
    else return -1;
  }
  return have_ok ? 0 : -1;
}
