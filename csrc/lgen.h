/* lgen.h - what the load generator's files share (loadgen.c: messages,
 * sockets, latencies, the closed loop and bulk; openloop.c: the open loop).
 * Not part of the API: names start with lg_. */
#ifndef PYSOCK_LGEN_H
#define PYSOCK_LGEN_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "loadgen.h"

#define LG_HDR 16                 /* 4 hex digits of socket id, 12 of sequence */
#define LG_CHUNK 65536            /* one send or recv */
#define LG_SUB_BITS 6             /* latency histogram: 64 buckets per power of two */
#define LG_SUB (1 << LG_SUB_BITS)
#define LG_NBUCKETS (64 * LG_SUB)
#define LG_MS 1000000LL           /* nanoseconds */

typedef struct lg_conn {
    int fd;
    unsigned id;
    uint64_t seq;          /* closed loop: the request in flight, or the last one */
    int busy;              /* a request is in flight (bulk: the stream runs) */
    int bad;               /* this reply (bulk: this stream) is already counted bad */
    size_t sent, rcvd;     /* of the request being sent and the reply being read */
    uint64_t out, in;      /* bulk: stream positions */
    int64_t t0;            /* closed loop: when the request was first sent */
    int64_t resend_at;     /* closed-loop UDP: when to send it again */
    uint64_t due;          /* open loop: requests due on this connection */
    uint64_t next_send;    /* open loop: the request being sent, or the next */
    uint64_t next_reply;   /* open-loop TCP: the request whose reply is being read */
    int blocked;           /* open-loop TCP: waiting for room to send */
    int warmed;            /* open loop: its warm-up was answered (or given up) */
    unsigned char *msg;    /* the request being sent */
    unsigned char *want;   /* the reply being waited for */
} lg_conn;

typedef struct lg_open lg_open;  /* openloop.c's state */

typedef struct lg_run {
    ps_load load;          /* the caller's configuration, copied */
    const ps_load *cfg;    /* &load */
    ps_load_result *res;
    lg_conn *c;
    struct pollfd *pfd;
    unsigned char *pool;   /* what is sent */
    unsigned char *upool;  /* what must come back */
    size_t pool_len;
    unsigned char *scratch;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int64_t start, end;    /* requests answered by end count in requests */
    int64_t drain_end;     /* replies in flight at end are waited for until then */
    int64_t last;          /* bulk: when a stream last made progress */
    int begun, done;       /* the first step has begun the run; the run is over */
    lg_open *open;
    uint64_t samples;      /* latencies recorded in hist */
    uint64_t hist[LG_NBUCKETS];
} lg_run;

int64_t lg_now(void);
int lg_ms_until(int64_t deadline, int64_t now);
void lg_record(lg_run *r, uint64_t ns);

/* Request seq of connection id into msg, and the reply it must get into
 * want (either may be NULL); whether a datagram is the right reply. */
void lg_fill(const lg_run *r, unsigned id, uint64_t seq, unsigned char *msg, unsigned char *want);
int lg_get_header(const unsigned char *p, unsigned *id, uint64_t *seq);
int lg_reply_is(const lg_run *r, unsigned id, uint64_t seq, const unsigned char *p, size_t n);
void lg_drop(lg_run *r, lg_conn *c);

/* openloop.c: set up (after connecting), one step, free. */
int lg_open_init(lg_run *r);
int lg_open_step(lg_run *r, int64_t until);
void lg_open_free(lg_run *r);

#endif
