/*
 * dunno-server - the reference point of the policy benchmarks: a plain C
 * epoll server that answers every Postfix policy request with
 * "action=DUNNO\n\n" and does nothing else (no parsing beyond finding the
 * blank line that ends a request, no rules, no counters). What it reaches
 * with the same load generator on the same machine is the ceiling of the
 * machine's loopback TCP for this request pattern; Levee's figures are read
 * against it (docs/benchmarks.md).
 *
 *   cc -O2 -o dunno-server dunno-server.c && ./dunno-server PORT
 *
 * Listens on 127.0.0.1:PORT only; one process, one thread; SIGTERM or SIGINT
 * ends it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "reference-server.h"

#define READ_SIZE 65536

static const char REPLY[] = "action=DUNNO\n\n";
/* Per connection: whether the last byte read was '\n' (a request may end across two reads). */
static unsigned char last_was_newline[65536];

static int accept_connection(int fd) {
  if (fd >= (int)sizeof last_was_newline) return 0;
  last_was_newline[fd] = 0;
  return 1;
}

/* One reply per blank line (two newlines in a row, possibly across reads). */
static void serve(int fd) {
  static char buf[READ_SIZE];
  ssize_t got = read(fd, buf, sizeof buf);
  if (got <= 0) {
    if (!(got < 0 && (errno == EAGAIN || errno == EINTR))) close(fd);
    return;
  }
  int replies = 0;
  unsigned char prev = last_was_newline[fd];
  for (ssize_t k = 0; k < got; k++) {
    unsigned char nl = buf[k] == '\n';
    if (nl && prev) {
      replies++;
      nl = 0;
    }
    prev = nl;
  }
  last_was_newline[fd] = prev;
  for (int r = 0; r < replies; r++) {
    if (write(fd, REPLY, sizeof REPLY - 1) < 0) break;
  }
}

int main(int argc, char **argv) { return run_reference_server(argc, argv, accept_connection, serve); }
