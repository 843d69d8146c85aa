/*
 * reference-server.h - what the C reference servers (dunno-server.c,
 * noop-milter.c) share: the listener on 127.0.0.1:PORT and the epoll loop,
 * which SIGTERM or SIGINT ends; each server brings what it does with a
 * new connection and with bytes read.
 */
#ifndef LEVEE_REFERENCE_SERVER_H
#define LEVEE_REFERENCE_SERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stopping = 0;

static void on_stop_signal(int sig) {
  (void)sig;
  stopping = 1;
}

/* Ends the loop on SIGTERM or SIGINT; a peer that went away is an error from write(2), not a signal. */
static void install_stop_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

/* Listen on 127.0.0.1:port (non-blocking) and return an epoll instance watching it; exits on failure. */
static int listen_loopback(int port, int *listener_out) {
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 511) != 0) {
    perror("listen");
    exit(1);
  }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener};
  epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  *listener_out = listener;
  return ep;
}

#define MAX_EVENTS 256

/*
 * The whole server: `PROG PORT` (exit 64 otherwise), stop signals, a listener on
 * 127.0.0.1:PORT, then one epoll loop until SIGTERM or SIGINT. Each accepted
 * connection goes to on_accept (false: closed at once); otherwise it gets no
 * Nagle delay (each reply is one small write) and is watched for reads, and
 * on_readable(fd) runs when it has bytes (or end of stream) to read.
 */
static int run_reference_server(int argc, char **argv, int (*on_accept)(int fd), void (*on_readable)(int fd)) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PORT\n", argv[0]);
    return 64;
  }
  install_stop_signals();
  int listener;
  int ep = listen_loopback(atoi(argv[1]), &listener);
  int one = 1;
  struct epoll_event events[MAX_EVENTS];
  while (!stopping) {
    int n = epoll_wait(ep, events, MAX_EVENTS, 500);
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd != listener) {
        on_readable(fd);
        continue;
      }
      int c;
      while ((c = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
        if (!on_accept(c)) {
          close(c);
          continue;
        }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
      }
    }
  }
  close(ep);
  close(listener);
  return 0;
}

#endif
