/* stratafs-client: the daemon's reply (client_reply.c). */
#ifndef STRATAFS_CLIENT_H
#define STRATAFS_CLIENT_H

/* {"ok":BOOL,"usage"?:BOOL,"error"?:STRING,"notice"?:STRING}; other members are skipped */
struct reply {
  int ok, usage;
  char *error, *notice;
};

/* 0 when LINE is such an object (strings come back as UTF-8), -1 otherwise */
int parse_reply(const char *line, struct reply *out);

#endif
