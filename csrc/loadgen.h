/* loadgen.h - the load generator's C API (loadgen.c, openloop.c):
 * closed-loop ping-pong, open-loop requests on a fixed schedule, and bulk
 * streams against an echo server, every reply checked.
 *
 * Like pysock.h it is read by the compiler and by cffi (pysock/_build.py),
 * so it keeps to the subset cffi parses.  Same conventions: 0 or a count on
 * success, -errno on failure. */
#ifndef PYSOCK_LOADGEN_H
#define PYSOCK_LOADGEN_H

#include <stddef.h>
#include <stdint.h>

/* What a load generator run does (loadgen.c, openloop.c): ping-pong is the
 * closed loop (each connection's next request waits for its reply); open
 * is the open loop (requests on a fixed schedule, rate per second). */
#define PS_LOAD_PINGPONG 0
#define PS_LOAD_BULK 1
#define PS_LOAD_OPEN 2

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
    int per_source;      /* IPv4 loopback: at most this many connections per source
                          * address (127.0.0.1, .2, ...); 0: one source */
    size_t size;         /* ping-pong: bytes per message (UDP: 16-65507) */
    uint64_t bulk_bytes; /* bulk: bytes each connection sends */
    int duration_ms;     /* ping-pong: how long; bulk: the longest it may take */
    int timeout_ms;      /* UDP: resend after this; TCP: the longest silence */
    int transform;       /* PS_XF_UPPER or PS_XF_ECHO: what the replies must be */
    int spin;            /* ping-pong: busy-poll for replies instead of sleeping */
    double rate;         /* open loop: requests per second, all connections together */
} ps_load;

typedef struct ps_load_result {
    uint64_t requests;   /* replies received whole and right by the end (bulk: streams) */
    uint64_t received;   /* the same, counting those that came while draining */
    uint64_t sent;       /* requests sent whole */
    uint64_t due;        /* open loop: requests the schedule had due by the end */
    uint64_t bad;        /* replies that differ from what was expected */
    uint64_t lost;       /* closed-loop UDP requests resent; requests never answered
                          * (open-loop UDP: not within timeout_ms) */
    uint64_t late;       /* UDP replies to a request already answered */
    uint64_t failed;     /* connections the server closed or reset early */
    uint64_t bytes_out;
    uint64_t bytes_in;
    uint64_t elapsed_ns; /* ping-pong: the duration; bulk: until the last echo */
    uint64_t p50_ns;     /* latency of the right replies: closed loop from the */
    uint64_t p90_ns;     /* send, open loop from when the schedule had the */
    uint64_t p99_ns;     /* request due (so a stall counts for every request */
    uint64_t p999_ns;    /* due during it), within 1.6 % */
    uint64_t max_ns;
} ps_load_result;

/* A run in steps, so that the caller can show progress and take Ctrl-C
 * between them: start connects (0 or -errno; *run is set either way, and
 * finish frees it); step runs for up to max_ms and returns 1 while there
 * is more to do, 0 when done, -errno on failure (-EINTR: a signal came;
 * the run may go on); finish fills in the percentiles and frees the run.
 * out is filled as the run goes. */
typedef struct ps_loadgen ps_loadgen;
int ps_load_start(const ps_load *cfg, ps_load_result *out, ps_loadgen **run);
int ps_load_step(ps_loadgen *run, int max_ms);
void ps_load_finish(ps_loadgen *run);

/* The whole run in the caller's thread, every wait bounded. */
int ps_load_run(const ps_load *cfg, ps_load_result *out);

#endif
