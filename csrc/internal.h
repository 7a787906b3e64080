/* internal.h - what the C files of pysock share and Python never sees.
 * Internal names carry the ps__ prefix (after libuv's uv__). */
#ifndef PYSOCK_INTERNAL_H
#define PYSOCK_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include "pysock.h"

/* Counters are bumped by serving threads and read by Python at any time. */
#define PS_ADD(field, n) __atomic_add_fetch(&(field), (n), __ATOMIC_RELAXED)
#define PS_SUB(field, n) __atomic_sub_fetch(&(field), (n), __ATOMIC_RELAXED)
#define PS_LOAD(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

typedef struct ps__conn ps__conn;

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

size_t ps__transform(int kind, unsigned char *buf, size_t n);

#endif
