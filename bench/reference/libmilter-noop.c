/*
 * libmilter-noop - a competitor reference for the milter benchmarks: a no-op
 * filter written against Sendmail's own libmilter (the "C libmilter no-op
 * milter" the benchmark issue quotes). Every callback lets the message
 * through; no actions are requested, nothing is modified or kept.
 *
 * It negotiates the protocol flags Levee asks for (LEVEE_MILTER_WANTED in
 * packages/policy-daemon/src/milter-service.ts; the same as noop-milter.c):
 * no reply to HEADER, EOH and BODY, no UNKNOWN, SKIP understood. So the load
 * generator sends it the same packets and waits for the same ten replies per
 * message as it does from Levee; what differs is libmilter's model. Debian's
 * libmilter (8.17) is built with _FFR_WORKERS_POOL: a controller thread
 * poll(2)s the idle connections and hands a ready one to a pool of worker
 * threads (started and ended on demand), which runs it until no command
 * arrives within 1 ms; per packet, a malloc, two read(2)s and a few poll(2)s,
 * one writev(2) per reply.
 *
 *   cc -O2 -Wall -o libmilter-noop libmilter-noop.c -lmilter -lpthread
 *   ./libmilter-noop PORT
 *
 * Listens on 127.0.0.1:PORT only (inet:PORT@127.0.0.1). SIGTERM, SIGHUP or
 * SIGINT ends it (exit status 0): smfi_main() blocks them in every thread and
 * sigwait()s for them in a thread of its own, which marks the milter stopped
 * and closes the listener; the listener thread notices at its next poll(2)
 * timeout (MI_CHK_TIME, 5 s), so exiting takes up to 5 s.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <libmilter/mfapi.h>

/* The SMFIP_* bits Levee requests (of those offered). */
#define WANTED_PROTOCOL (SMFIP_NR_HDR | SMFIP_NOUNKNOWN | SMFIP_SKIP | SMFIP_NR_EOH | SMFIP_NR_BODY)
#define NO_REPLY_STAGES (SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY)

/*
 * f0: actions the MTA offers, f1: protocol steps. libmilter adds every
 * SMFIP_NR_* bit to f1 even when the MTA lacks it: it then leaves the bit out
 * of its OPTNEG reply and answers "continue" itself when a callback returns
 * SMFIS_NOREPLY. So masking with f1 sends the MTA exactly WANTED_PROTOCOL &
 * what it offered, and the NR bits always reach libmilter's own flags, which
 * is what makes the unconditional SMFIS_NOREPLY below right.
 */
static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2, unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3) {
  (void)ctx;
  (void)f0;
  (void)f2;
  (void)f3;
  if ((f1 & NO_REPLY_STAGES) != NO_REPLY_STAGES) return SMFIS_REJECT; /* a libmilter that cannot fake them: refuse */
  *pf0 = SMFIF_NONE;
  *pf1 = WANTED_PROTOCOL & f1;
  *pf2 = 0;
  *pf3 = 0;
  return SMFIS_CONTINUE;
}

/* The stages the MTA waits on: "continue". */
static sfsistat on_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *addr) {
  (void)ctx, (void)hostname, (void)addr;
  return SMFIS_CONTINUE;
}
static sfsistat on_helo(SMFICTX *ctx, char *helo) {
  (void)ctx, (void)helo;
  return SMFIS_CONTINUE;
}
static sfsistat on_envfrom(SMFICTX *ctx, char **argv) {
  (void)ctx, (void)argv;
  return SMFIS_CONTINUE;
}
static sfsistat on_envrcpt(SMFICTX *ctx, char **argv) {
  (void)ctx, (void)argv;
  return SMFIS_CONTINUE;
}
static sfsistat on_data(SMFICTX *ctx) {
  (void)ctx;
  return SMFIS_CONTINUE;
}
static sfsistat on_eom(SMFICTX *ctx) {
  (void)ctx;
  return SMFIS_CONTINUE;
}

/*
 * The stages negotiated as no-reply: libmilter wants SMFIS_NOREPLY from them
 * (anything else is logged as "milter claimed not to reply ... but did anyway"
 * and turned into no reply).
 */
static sfsistat on_header(SMFICTX *ctx, char *name, char *value) {
  (void)ctx, (void)name, (void)value;
  return SMFIS_NOREPLY;
}
static sfsistat on_eoh(SMFICTX *ctx) {
  (void)ctx;
  return SMFIS_NOREPLY;
}
static sfsistat on_body(SMFICTX *ctx, unsigned char *chunk, size_t len) {
  (void)ctx, (void)chunk, (void)len;
  return SMFIS_NOREPLY;
}

/* No reply is sent for these whatever they return. */
static sfsistat on_abort(SMFICTX *ctx) {
  (void)ctx;
  return SMFIS_CONTINUE;
}
static sfsistat on_close(SMFICTX *ctx) {
  (void)ctx;
  return SMFIS_CONTINUE;
}

static struct smfiDesc filter = {
    .xxfi_name = "libmilter-noop",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_NONE,
    .xxfi_connect = on_connect,
    .xxfi_helo = on_helo,
    .xxfi_envfrom = on_envfrom,
    .xxfi_envrcpt = on_envrcpt,
    .xxfi_header = on_header,
    .xxfi_eoh = on_eoh,
    .xxfi_body = on_body,
    .xxfi_eom = on_eom,
    .xxfi_abort = on_abort,
    .xxfi_close = on_close,
    .xxfi_unknown = NULL, /* SMFIP_NOUNKNOWN */
    .xxfi_data = on_data,
    .xxfi_negotiate = on_negotiate,
};

int main(int argc, char **argv) {
  char *end;
  errno = 0;
  long port = argc == 2 ? strtol(argv[1], &end, 10) : 0;
  if (argc != 2 || errno != 0 || end == argv[1] || *end != '\0' || port < 1 || port > 65535) {
    fprintf(stderr, "usage: %s PORT (1..65535; listens on 127.0.0.1 only)\n", argv[0]);
    return 2;
  }
  char conn[32];
  snprintf(conn, sizeof conn, "inet:%ld@127.0.0.1", port);
  if (smfi_setconn(conn) != MI_SUCCESS || smfi_setbacklog(511) != MI_SUCCESS || smfi_settimeout(30) != MI_SUCCESS || smfi_register(filter) != MI_SUCCESS) {
    fprintf(stderr, "libmilter-noop: libmilter setup failed\n");
    return 1;
  }
  /* Opened here rather than in smfi_main() so that a port in use is an error at start. */
  if (smfi_opensocket(1) != MI_SUCCESS) {
    fprintf(stderr, "libmilter-noop: cannot listen on %s\n", conn);
    return 1;
  }
  return smfi_main() == MI_SUCCESS ? 0 : 1;
}
