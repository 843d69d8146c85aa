/*
 * noop-milter - the reference point of the milter benchmarks: a plain C epoll
 * server that speaks just enough of the milter protocol to answer "continue"
 * to every command the MTA waits for, and does nothing else (no rules, no
 * counters, no MIME scanning, no macros kept). It negotiates the protocol
 * flags Levee asks for (no reply to HEADER, EOH and BODY; no UNKNOWN), so the
 * same load generator sends it the same packets and waits for the same ten
 * replies per message as it does from Levee. What it reaches on a machine is
 * the ceiling of that machine's loopback TCP for this command pattern;
 * Levee's milter figures are read against it (docs/benchmarks.md).
 *
 *   cc -O2 -o noop-milter noop-milter.c && ./noop-milter PORT
 *
 * Listens on 127.0.0.1:PORT only; one process, one thread; SIGTERM or SIGINT
 * ends it. A packet longer than its buffer or a malformed length closes the
 * connection.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "reference-server.h"

#define MAX_FDS 4096
#define BUFFER_SIZE (128 * 1024) /* above the largest packet an MTA sends (64 KiB body chunk) */

/* SMFIP_* bits Levee requests (packages/policy-daemon/src/milter-service.ts LEVEE_MILTER_WANTED). */
#define SMFIP_NR_HDR 0x00000080u
#define SMFIP_NOUNKNOWN 0x00000100u
#define SMFIP_SKIP 0x00000400u
#define SMFIP_NR_EOH 0x00040000u
#define SMFIP_NR_BODY 0x00080000u
#define WANTED_PROTOCOL (SMFIP_NR_HDR | SMFIP_NOUNKNOWN | SMFIP_SKIP | SMFIP_NR_EOH | SMFIP_NR_BODY)

struct connection {
  unsigned char *buf; /* bytes read and not yet a whole packet */
  size_t used;
  uint32_t protocol;  /* the negotiated SMFIP_* bits */
};
static struct connection conns[MAX_FDS];

static uint32_t get32(const unsigned char *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }
static void put32(unsigned char *p, uint32_t v) {
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

static void drop(int fd) {
  free(conns[fd].buf);
  conns[fd].buf = NULL;
  close(fd);
}

/*
 * Append the reply to one packet (if the MTA waits for one) to out; returns the bytes added, or -1 to
 * close the connection (QUIT).
 */
static int answer(struct connection *c, unsigned char cmd, const unsigned char *data, uint32_t len, unsigned char *out) {
  switch (cmd) {
    case 'O': { /* OPTNEG: version 6, no actions, the flags we want of those offered */
      uint32_t offered = len >= 12 ? get32(data + 8) : 0;
      c->protocol = WANTED_PROTOCOL & offered;
      put32(out, 13);
      out[4] = 'O';
      put32(out + 5, 6);
      put32(out + 9, 0);
      put32(out + 13, c->protocol);
      return 17;
    }
    case 'D': /* MACRO */
    case 'A': /* ABORT */
    case 'K': /* QUIT_NC */
      return 0;
    case 'Q': /* QUIT */
      return -1;
    case 'L': /* HEADER */
      if (c->protocol & SMFIP_NR_HDR) return 0;
      break;
    case 'N': /* EOH */
      if (c->protocol & SMFIP_NR_EOH) return 0;
      break;
    case 'B': /* BODY */
      if (c->protocol & SMFIP_NR_BODY) return 0;
      break;
    default: /* CONNECT, HELO, MAIL, RCPT, DATA, BODYEOB, UNKNOWN */
      break;
  }
  put32(out, 1);
  out[4] = 'c';
  return 5;
}

static int accept_connection(int fd) {
  if (fd >= MAX_FDS || (conns[fd].buf = malloc(BUFFER_SIZE)) == NULL) return 0;
  conns[fd].used = 0;
  conns[fd].protocol = 0;
  return 1;
}

/* Every whole packet read: its reply (if any) goes into one write. */
static void serve(int fd) {
  static unsigned char out[BUFFER_SIZE];
  struct connection *c = &conns[fd];
  ssize_t got = read(fd, c->buf + c->used, BUFFER_SIZE - c->used);
  if (got <= 0) {
    if (!(got < 0 && (errno == EAGAIN || errno == EINTR))) drop(fd);
    return;
  }
  c->used += (size_t)got;
  size_t at = 0, pending = 0;
  int quit = 0;
  while (c->used - at >= 5) {
    uint32_t len = get32(c->buf + at);
    if (len == 0 || len > BUFFER_SIZE - 4) {
      quit = 1;
      break;
    }
    if (c->used - at < 4 + (size_t)len) break;
    int added = answer(c, c->buf[at + 4], c->buf + at + 5, len - 1, out + pending);
    at += 4 + (size_t)len;
    if (added < 0) {
      quit = 1;
      break;
    }
    pending += (size_t)added;
  }
  if (pending > 0 && write(fd, out, pending) < 0) quit = 1;
  if (quit) {
    drop(fd);
    return;
  }
  memmove(c->buf, c->buf + at, c->used - at);
  c->used -= at;
}

int main(int argc, char **argv) { return run_reference_server(argc, argv, accept_connection, serve); }
