// raw_epoll_reader: the floor for client overhead when reading paced SSE streams.
//
// N non-blocking keep-alive HTTP/1.1 connections on one epoll loop (level-triggered). Each
// connection writes a fixed streaming chat-completion request, then reads with one read() per
// readiness and scans the bytes (memchr/memmem; the last bytes of the previous read are carried
// so that a pattern split across two reads is still found), just enough to:
//   * count SSE events: a blank line ("\n\n") ends an event (chunk framing is "\r\n", so it never
//     produces "\n\n" itself);
//   * count output events: events holding `"content":"` followed by a non-empty string;
//   * find the end of the response: the last-chunk marker "\r\n0\r\n\r\n".
// At the end of a response it immediately writes the same request again on the same connection.
// No de-chunking, no JSON, no per-request bookkeeping: a lower bound, not a usable client.
//
// Usage: raw_epoll_reader HOST PORT CONNECTIONS DURATION_S [WARMUP_S [MAX_TOKENS]]
// Counters are measured over DURATION_S, after WARMUP_S; prints one JSON object on stdout. Its CPU
// time is read from outside by the runner (agentperf_native.microbench.cpu), as every client's is.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef READ_BUF
#define READ_BUF (64 * 1024)  // -DREAD_BUF=7 exercises patterns split across reads
#endif
#define MAX_EVENTS 1024
// Experiments (off by default; the benchmark uses the plain reader described above):
//   -DRAW_EPOLLET=1       edge-triggered epoll (a short read means the socket is drained)
//   -DRAW_DELAYED_ACK=1   setsockopt(TCP_QUICKACK, 0) after each read, asking the kernel to delay
//                         ACKs rather than send one from read() per small segment (measured: it
//                         does not reduce that work; see README.md)
#ifndef RAW_EPOLLET
#define RAW_EPOLLET 0
#endif
#ifndef RAW_DELAYED_ACK
#define RAW_DELAYED_ACK 0
#endif
#define IN_EVENTS (EPOLLIN | (RAW_EPOLLET ? EPOLLET : 0))
#define CARRY 10  // longest pattern - 1

typedef struct {
  int fd;
  int connected;
  int at_start;         // the next byte read is the first of a response
  int content_pending;  // the previous read ended right after `"content":"`
  int carry_len;        // last bytes of the previous read, so a pattern split across reads is found
  char carry[CARRY];
  size_t out_off;       // bytes of the request already written
} conn_t;

static const char P_CONTENT[] = "\"content\":\"";  // 11 bytes
static const char P_END[] = "\r\n0\r\n\r\n";        // 7 bytes: the last chunk
static char request[1024];
static size_t request_len;
static struct sockaddr_in addr;
static int epfd;

static uint64_t n_events, n_output, n_responses, n_errors, n_reconnects, n_reads, n_bytes, n_waits;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void reset_parse(conn_t* c) {
  c->at_start = 1;
  c->content_pending = 0;
  c->carry_len = 0;
  c->out_off = 0;
}

static int open_conn(conn_t* c) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) return -1;
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(c->fd, (struct sockaddr*)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
    close(c->fd);
    c->fd = -1;
    return -1;
  }
  c->connected = 0;
  reset_parse(c);
  struct epoll_event ev = {.events = IN_EVENTS | EPOLLOUT, .data.ptr = c};
  return epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void reconnect(conn_t* c) {
  ++n_errors;
  ++n_reconnects;
  if (c->fd >= 0) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  if (open_conn(c) != 0) {
    fprintf(stderr, "raw_epoll_reader: reconnect failed: %s\n", strerror(errno));
    exit(2);
  }
}

// Writes (the rest of) the request; returns 0 when done, 1 when the socket is full, -1 on error.
static int send_request(conn_t* c) {
  while (c->out_off < request_len) {
    ssize_t w = write(c->fd, request + c->out_off, request_len - c->out_off);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        struct epoll_event ev = {.events = IN_EVENTS | EPOLLOUT, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        return 1;
      }
      if (errno == EINTR) continue;
      return -1;
    }
    c->out_off += (size_t)w;
  }
  return 0;
}

// One read(); counts what ends in the new bytes (matches ending in the carried tail were counted
// with the previous read). Returns 1 when the read filled the buffer (more may be waiting).
static int on_readable(conn_t* c, char* buf) {
  // The read lands after the carried tail, so the scan window is contiguous: [carry | new bytes].
  char* win = buf + CARRY - c->carry_len;
  memcpy(win, c->carry, (size_t)c->carry_len);
  ssize_t n = read(c->fd, buf + CARRY, READ_BUF);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (n < 0 && errno == EINTR) return 1;
    reconnect(c);  // EOF or reset: the server never closes a healthy keep-alive stream
    return 0;
  }
  ++n_reads;
#if RAW_DELAYED_ACK
  int zero = 0;
  setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &zero, sizeof zero);
#endif
  n_bytes += (uint64_t)n;
  const char* data = buf + CARRY;
  const char* end = data + n;
  if (c->at_start) {
    c->at_start = 0;
    if (n < 12 || memcmp(data, "HTTP/1.1 200", 12) != 0) ++n_errors;
  }
  if (c->content_pending) {  // the previous read ended right after `"content":"`
    c->content_pending = 0;
    if (data[0] != '"') ++n_output;
  }
  // SSE events: "\n\n" ending in the new bytes (chunk framing uses "\r\n", never "\n\n").
  for (const char* p = data - (c->carry_len > 0); p < end;) {
    const char* nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl || nl + 1 >= end) break;
    if (nl[1] == '\n') {
      ++n_events;
      p = nl + 2;
    } else {
      p = nl + 1;
    }
  }
  // Output events: `"content":"` followed by a non-empty string, ending in the new bytes.
  const char* scan = win;
  while (scan < end) {
    const char* m = memmem(scan, (size_t)(end - scan), P_CONTENT, sizeof P_CONTENT - 1);
    if (!m) break;
    const char* after = m + sizeof P_CONTENT - 1;
    if (after > data) {
      if (after == end) c->content_pending = 1;
      else if (*after != '"') ++n_output;
    }
    scan = m + 1;
  }
  // End of the response: the last chunk, which must be the last bytes read.
  const char* last = memmem(win, (size_t)(end - win), P_END, sizeof P_END - 1);
  if (last && last + sizeof P_END - 1 > data) {
    ++n_responses;
    if (last + sizeof P_END - 1 != end) ++n_errors;  // bytes after the end of the response: out of step
    reset_parse(c);
    if (send_request(c) < 0) reconnect(c);
    return 0;
  }
  int keep = (int)(end - win) < CARRY ? (int)(end - win) : CARRY;
  memmove(c->carry, end - keep, (size_t)keep);
  c->carry_len = keep;
  return n == READ_BUF;
}

static void on_writable(conn_t* c) {
  if (!c->connected) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      reconnect(c);
      return;
    }
    c->connected = 1;
  }
  int r = send_request(c);
  if (r < 0) {
    reconnect(c);
  } else if (r == 0) {
    struct epoll_event ev = {.events = IN_EVENTS, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
  }
}

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s HOST PORT CONNECTIONS DURATION_S [WARMUP_S [MAX_TOKENS]]\n", argv[0]);
    return 2;
  }
  const char* host = argv[1];
  int port = atoi(argv[2]);
  int nconn = atoi(argv[3]);
  double duration = atof(argv[4]);
  double warmup = argc > 5 ? atof(argv[5]) : 0.0;
  int max_tokens = argc > 6 ? atoi(argv[6]) : 64;
  if (nconn < 1 || duration <= 0 || port <= 0) {
    fprintf(stderr, "raw_epoll_reader: bad arguments\n");
    return 2;
  }
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    fprintf(stderr, "raw_epoll_reader: HOST must be an IPv4 literal\n");
    return 2;
  }
  char body[512];
  int body_len = snprintf(body, sizeof body,
                          "{\"model\":\"agentperf-sim\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                          "\"max_tokens\":%d,\"messages\":[{\"role\":\"user\",\"content\":"
                          "\"Write a short story about a benchmark.\"}]}",
                          max_tokens);
  request_len = (size_t)snprintf(request, sizeof request,
                                 "POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\n"
                                 "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
                                 "Content-Length: %d\r\n\r\n%s",
                                 host, port, body_len, body);

  epfd = epoll_create1(EPOLL_CLOEXEC);
  conn_t* conns = calloc((size_t)nconn, sizeof *conns);
  char* buf = malloc(READ_BUF + CARRY);
  if (epfd < 0 || !conns || !buf) return 2;
  for (int i = 0; i < nconn; ++i) {
    if (open_conn(&conns[i]) != 0) {
      fprintf(stderr, "raw_epoll_reader: connect %d failed: %s\n", i, strerror(errno));
      return 2;
    }
  }

  struct epoll_event evs[MAX_EVENTS];
  double t0 = now_s();
  double t_measure = t0 + warmup, t_end = t_measure + duration;
  int measuring = warmup <= 0;
  double w0 = t0;
  uint64_t e0 = 0, o0 = 0, r0 = 0, x0 = 0, c0 = 0, rd0 = 0, b0 = 0, wt0 = 0;
  for (;;) {
    double now = now_s();
    if (!measuring && now >= t_measure) {
      measuring = 1;
      w0 = now;
      e0 = n_events, o0 = n_output, r0 = n_responses, x0 = n_errors, c0 = n_reconnects, rd0 = n_reads, b0 = n_bytes;
      wt0 = n_waits;
    }
    if (now >= t_end) break;
    double until = measuring ? t_end : t_measure;
    int timeout_ms = (int)((until - now) * 1000.0) + 1;
    int k = epoll_wait(epfd, evs, MAX_EVENTS, timeout_ms);
    ++n_waits;
    if (k < 0) {
      if (errno == EINTR) continue;
      perror("epoll_wait");
      return 2;
    }
    for (int i = 0; i < k; ++i) {
      conn_t* c = evs[i].data.ptr;
      uint32_t e = evs[i].events;
      if (!c->connected || (e & EPOLLOUT)) {
        if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(c);
        if (!c->connected) continue;
      }
      if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        // Level-triggered: one read per readiness. Edge-triggered: until a short read.
        while (on_readable(c, buf) && RAW_EPOLLET && c->fd >= 0) {
        }
      }
    }
  }
  double wall = now_s() - w0;
  printf("{\"client\":\"raw_c\",\"connections\":%d,\"warmup_s\":%.3f,\"wall_s\":%.6f,"
         "\"events\":%llu,\"output_events\":%llu,\"responses\":%llu,\"errors\":%llu,\"reconnects\":%llu,"
         "\"reads\":%llu,\"bytes\":%llu,\"epoll_waits\":%llu}\n",
         nconn, warmup, wall, (unsigned long long)(n_events - e0), (unsigned long long)(n_output - o0),
         (unsigned long long)(n_responses - r0), (unsigned long long)(n_errors - x0),
         (unsigned long long)(n_reconnects - c0), (unsigned long long)(n_reads - rd0),
         (unsigned long long)(n_bytes - b0), (unsigned long long)(n_waits - wt0));
  return 0;
}
