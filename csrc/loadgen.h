/* loadgen.h - the load generator's C API (loadgen.c): ping-pong and bulk
 * loads against an echo server, every reply checked.
 *
 * Like pysock.h it is read by the compiler and by cffi (pysock/_build.py),
 * so it keeps to the subset cffi parses.  Same conventions: 0 or a count on
 * success, -errno on failure. */
#ifndef PYSOCK_LOADGEN_H
#define PYSOCK_LOADGEN_H

#include <stddef.h>
#include <stdint.h>

/* What a load generator run does (loadgen.c). */
#define PS_LOAD_PINGPONG 0
#define PS_LOAD_BULK 1

typedef struct ps_load {
    int family;          /* AF_INET, AF_INET6 or AF_UNIX */
    int socktype;        /* SOCK_STREAM or SOCK_DGRAM (bulk: stream only) */
    /* Text in the struct itself, not pointers: the caller's strings then
     * cannot be freed under a run (a garbage collector that frees an
     * unused local early, as PyPy's does, would otherwise). */
    char host[256];      /* numeric address or host name (AF_INET, AF_INET6) */
    int port;
    char path[108];      /* the server's path (AF_UNIX) */
    int mode;            /* PS_LOAD_* */
    int conns;           /* TCP connections or UDP sockets, 1-65535 */
    size_t size;         /* ping-pong: bytes per message (UDP: 16-65507) */
    uint64_t bulk_bytes; /* bulk: bytes each connection sends */
    int duration_ms;     /* ping-pong: how long; bulk: the longest it may take */
    int timeout_ms;      /* UDP: resend after this; TCP: the longest silence */
    int transform;       /* PS_XF_UPPER or PS_XF_ECHO: what the replies must be */
    int spin;            /* ping-pong: busy-poll for replies instead of sleeping */
} ps_load;

typedef struct ps_load_result {
    uint64_t requests;   /* replies received whole and right (bulk: streams) */
    uint64_t bad;        /* replies that differ from what was expected */
    uint64_t lost;       /* UDP requests resent, and requests never answered */
    uint64_t late;       /* UDP replies to a request already answered */
    uint64_t failed;     /* connections the server closed or reset early */
    uint64_t bytes_out;
    uint64_t bytes_in;
    uint64_t elapsed_ns; /* ping-pong: the duration; bulk: until the last echo */
    uint64_t p50_ns;     /* round-trip latency of the right replies */
    uint64_t p99_ns;
    uint64_t max_ns;
} ps_load_result;

/* Runs in the caller's thread, every wait bounded. */
int ps_load_run(const ps_load *cfg, ps_load_result *out);

#endif
