/* internal.h - what the C files of pysock share and Python never sees.
 * Internal names carry the ps__ prefix (after libuv's uv__). */
#ifndef PYSOCK_INTERNAL_H
#define PYSOCK_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "pysock.h"

/* Counters are bumped by serving threads and read by Python at any time. */
#define PS_ADD(field, n) __atomic_add_fetch(&(field), (n), __ATOMIC_RELAXED)
#define PS_SUB(field, n) __atomic_sub_fetch(&(field), (n), __ATOMIC_RELAXED)
#define PS_LOAD(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

typedef struct ps__conn ps__conn;

/* A growable byte buffer: len bytes used of cap allocated. */
typedef struct ps__buf {
    unsigned char *data;
    size_t len;
    size_t cap;
} ps__buf;

int ps__buf_reserve(ps__buf *b, size_t more);
int ps__buf_append(ps__buf *b, const void *p, size_t n);
void ps__buf_free(ps__buf *b);

/* The transform interface (transform.c): every serving loop answers through
 * it, one ps__xf per TCP connection (one per UDP socket for datagrams).
 *
 *   ps__xf x;
 *   ps__xf_init(&x, s->cfg.transform);
 *   for each recv of n > 0 bytes into buf:
 *       k = ps__xf_feed(&x, buf, n, &out);     -> send out[0..k)
 *   at the client's EOF (recv returned 0):
 *       k = ps__xf_finish(&x, &out);           -> send out[0..k), then close
 *   ps__xf_free(&x);                           (always, however it ended)
 *
 * feed and finish return the reply's length, or -ENOMEM / -EOVERFLOW (close
 * the connection).  *out stays valid until the next call on x, and may
 * point into buf: upper and echo work in place (no copy, no allocation),
 * while stamp writes into x->out, which grows as needed (a read full of
 * short lines yields a reply far larger than itself).  A caller that cannot
 * send all of it at once copies the rest before its next feed.
 *
 * stamp answers each line (ending in \n, which the reply keeps) with
 * "at <ctime> :<line>"; the unfinished line waits in x->line for the next
 * feed, or for finish, which answers it without a \n.  A line longer than
 * PS__LINE_MAX bytes (its \n included) is answered in pieces of
 * PS__LINE_MAX bytes, so the state per connection stays bounded.
 *
 * ps__xf_datagram answers one datagram as one message (no line splitting);
 * a stamped reply is cut to PS_UDP_MAX bytes so that it can be sent. */
#define PS__LINE_MAX 65536

typedef struct ps__xf {
    int kind;            /* PS_XF_* */
    ps__buf line;        /* stamp: the unfinished line, < PS__LINE_MAX bytes */
    ps__buf out;         /* stamp: the reply of the last call */
} ps__xf;

void ps__xf_init(ps__xf *x, int kind);
ssize_t ps__xf_feed(ps__xf *x, unsigned char *buf, size_t n,
                    const unsigned char **out);
ssize_t ps__xf_finish(ps__xf *x, const unsigned char **out);
ssize_t ps__xf_datagram(ps__xf *x, unsigned char *buf, size_t n,
                        const unsigned char **out);
void ps__xf_free(ps__xf *x);

struct ps_server {
    ps_config cfg;
    char host[256];      /* cfg.host and cfg.path point here */
    char path[108];
    int fd;              /* the listening or datagram socket */
    int bound;           /* bind() succeeded: an AF_UNIX path is ours to unlink */
    int wake[2];         /* a pipe: one byte in wake[1] wakes every poller */
    int stopping;
    ps_stats stats;
    /* TCP connection threads: started by the accept loop, joined by it. */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int threads;         /* connection threads running */
    ps__conn *done;      /* threads that have finished, waiting to be joined */
    unsigned char *buf;  /* the UDP loop's datagram buffer */
    ps__xf dgram;        /* the UDP loop's transform */
};

/* What a wait for a descriptor ended with. */
#define PS__READY 1
#define PS__WOKEN 2
#define PS__TIMEOUT 3

int ps__wait(int fd, short events, int wake_fd, int timeout_ms);
int ps__stopping(const ps_server *s);
int64_t ps__now_ms(void);

int ps__tcp_serve(ps_server *s);
void ps__tcp_drain(ps_server *s);
int ps__udp_serve(ps_server *s);

/* The in-place transforms alone (upper, echo): stamp needs a ps__xf. */
size_t ps__transform(int kind, unsigned char *buf, size_t n);

#endif
