/* loadgen.c - a load generator for the echo servers, in C so that what it
 * measures is the server and not a Python client.
 *
 * Ping-pong: N TCP connections or UDP sockets, each with one request in
 * flight; the reply is checked byte for byte before the next request goes.
 * Bulk: each connection streams bulk_bytes and reads the echo back while it
 * sends.  One thread (the caller's) drives every socket with poll(), and
 * every wait has a deadline: a server that stops answering ends the run
 * with the missing replies counted, never a hang.
 *
 * Messages come from a pool of varied bytes (mostly lowercase letters, the
 * rest anything), at an offset that changes with every request, so a server
 * that sends back the wrong request, or the wrong bytes, is caught.  Each
 * message starts with a header of 16 uppercase hex digits (socket id and
 * sequence number) that the transform leaves alone: a UDP reply says which
 * request it answers. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "loadgen.h"
#include "pysock.h"

/* ps_load.path must hold what sun_path holds, no more and no less. */
typedef char ps__path_fits[sizeof(((ps_load *)0)->path) == sizeof(((struct sockaddr_un *)0)->sun_path) ? 1 : -1];

#define HDR 16                   /* 4 hex digits of socket id, 12 of sequence */
#define SLACK 4096               /* request offsets into the pool: 0..SLACK-1 */
#define PERIOD 65521             /* the pool repeats with this (prime) period */
#define CHUNK 65536              /* one send or recv */
#define SUB_BITS 6               /* latency histogram: 64 buckets per power of two */
#define SUB (1 << SUB_BITS)
#define NBUCKETS (64 * SUB)
#define MS 1000000LL             /* nanoseconds */

typedef struct lg_conn {
    int fd;
    unsigned id;
    uint64_t seq;          /* the request in flight, or the last one */
    int busy;              /* a request is in flight (bulk: the stream runs) */
    int bad;               /* this reply (bulk: this stream) is already counted bad */
    size_t sent, rcvd;     /* ping-pong: of this request and its reply */
    uint64_t out, in;      /* bulk: stream positions */
    int64_t t0;            /* when the request was first sent */
    int64_t resend_at;     /* UDP: when to send it again */
    unsigned char *msg;    /* the request */
    unsigned char *want;   /* the reply it must get */
} lg_conn;

typedef struct lg_run {
    const ps_load *cfg;
    ps_load_result *res;
    lg_conn *c;
    struct pollfd *pfd;
    unsigned char *pool;   /* what is sent */
    unsigned char *upool;  /* what must come back */
    size_t pool_len;
    unsigned char *scratch;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int64_t start, end;    /* ping-pong: requests answered by end count */
    uint64_t samples;      /* latencies recorded in hist */
    uint64_t hist[NBUCKETS];
} lg_run;

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* poll() takes milliseconds: round up, so a deadline is never spun on. */
static int ms_until(int64_t deadline, int64_t now)
{
    int64_t left = deadline - now;

    if (left <= 0)
        return 0;
    if (left > 3600 * 1000 * MS)
        return 3600 * 1000;
    return (int)((left + MS - 1) / MS);
}

/* -- the latency histogram: log-linear, within 1/SUB of the true value ------ */
static unsigned bucket_of(uint64_t v)
{
    unsigned e = 0;

    while ((v >> e) >= 2 * SUB)
        e++;
    if (e == 0)
        return (unsigned)v;
    return (e + 1) * SUB + (unsigned)((v >> e) - SUB);
}

static uint64_t bucket_value(unsigned b)
{
    unsigned e;

    if (b < 2 * SUB)
        return b;
    e = b / SUB - 1;
    return ((uint64_t)(b % SUB + SUB) << e) + ((uint64_t)1 << e) / 2;
}

static uint64_t percentile(const lg_run *r, double q)
{
    uint64_t target = (uint64_t)(q * (double)r->samples + 0.999999), seen = 0;
    unsigned b;

    if (r->samples == 0)
        return 0;
    for (b = 0; b < NBUCKETS; b++) {
        seen += r->hist[b];
        if (seen >= target)
            return bucket_value(b);
    }
    return bucket_value(NBUCKETS - 1);
}

static void record(lg_run *r, uint64_t ns)
{
    r->hist[bucket_of(ns)]++;
    r->samples++;
    if (ns > r->res->max_ns)
        r->res->max_ns = ns;
}

/* -- messages ------------------------------------------------------------------ */
static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Three bytes in four a lowercase letter (the transform's work), the rest
 * any byte at all: non-ASCII, NUL, uppercase, newlines. */
static int make_pool(lg_run *r, size_t size)
{
    uint64_t s = 0x9E3779B97F4A7C15ULL;
    size_t i;

    r->pool_len = PERIOD + CHUNK + size + SLACK;
    r->pool = malloc(r->pool_len);
    r->upool = malloc(r->pool_len);
    if (r->pool == NULL || r->upool == NULL)
        return -ENOMEM;
    for (i = 0; i < PERIOD; i++) {
        uint64_t x = xorshift(&s);
        unsigned char b = (unsigned char)(x >> 56);

        r->pool[i] = (x & 3) ? (unsigned char)('a' + b % 26) : b;
    }
    for (; i < r->pool_len; i++)
        r->pool[i] = r->pool[i - PERIOD];
    memcpy(r->upool, r->pool, r->pool_len);
    if (r->cfg->transform == PS_XF_UPPER)
        ps_upper(r->upool, r->pool_len);
    return 0;
}

static size_t offset_of(unsigned id, uint64_t seq)
{
    return (size_t)((seq * 2654435761ULL + id * 40503ULL) % SLACK);
}

static void put_header(unsigned char *p, unsigned id, uint64_t seq)
{
    static const char hex[] = "0123456789ABCDEF";
    uint64_t v = ((uint64_t)id << 48) | (seq & 0xFFFFFFFFFFFFULL);
    int i;

    for (i = HDR - 1; i >= 0; i--, v >>= 4)
        p[i] = (unsigned char)hex[v & 15];
}

/* The header's (id, seq); -1 if it is not 16 uppercase hex digits. */
static int get_header(const unsigned char *p, unsigned *id, uint64_t *seq)
{
    uint64_t v = 0;
    int i;

    for (i = 0; i < HDR; i++) {
        int d = p[i] >= '0' && p[i] <= '9' ? p[i] - '0'
              : p[i] >= 'A' && p[i] <= 'F' ? p[i] - 'A' + 10 : -1;

        if (d < 0)
            return -1;
        v = v << 4 | (uint64_t)d;
    }
    *id = (unsigned)(v >> 48);
    *seq = v & 0xFFFFFFFFFFFFULL;
    return 0;
}

/* Request seq of connection id, and the reply it must get. */
static void fill(const lg_run *r, unsigned id, uint64_t seq, unsigned char *msg, unsigned char *want)
{
    size_t off = offset_of(id, seq), size = r->cfg->size;

    memcpy(msg, r->pool + off, size);
    if (want != NULL)
        memcpy(want, r->upool + off, size);
    if (size >= HDR) {
        put_header(msg, id, seq);
        if (want != NULL)
            put_header(want, id, seq);
    }
}

/* Whether a UDP reply is the right reply to request seq of connection id. */
static int reply_is(const lg_run *r, unsigned id, uint64_t seq, const unsigned char *p, size_t n)
{
    size_t off = offset_of(id, seq);
    unsigned char hdr[HDR];

    if (n != r->cfg->size)
        return 0;
    put_header(hdr, id, seq);
    return memcmp(p, hdr, HDR) == 0 && memcmp(p + HDR, r->upool + off + HDR, n - HDR) == 0;
}

/* -- sockets ------------------------------------------------------------------ */
static int fill_address(lg_run *r)
{
    const ps_load *cfg = r->cfg;
    int rc;

    memset(&r->addr, 0, sizeof r->addr);
    if (cfg->family == AF_UNIX) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&r->addr;

        /* ps_load's path (loadgen.h, read by cffi, which takes no sizeof
         * there) is as large as sun_path: checked where this file begins. */
        if (cfg->path[0] == '\0' || memchr(cfg->path, '\0', sizeof cfg->path) == NULL)
            return -EINVAL;
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, cfg->path, sizeof cfg->path);
        r->addrlen = sizeof *sun;
        return 0;
    }
    if (cfg->host[0] == '\0' || memchr(cfg->host, '\0', sizeof cfg->host) == NULL)
        return -EINVAL;
    if (cfg->family == AF_INET6) {
        rc = ps_sockaddr_in6((struct sockaddr_in6 *)&r->addr, cfg->host, cfg->port);
        r->addrlen = sizeof(struct sockaddr_in6);
    } else {
        rc = ps_sockaddr_in((struct sockaddr_in *)&r->addr, cfg->host, cfg->port);
        r->addrlen = sizeof(struct sockaddr_in);
    }
    return rc < 0 ? rc : 0;
}

/* A unix datagram socket needs an address of its own for the replies:
 * Linux gives it an abstract one when bound with the family alone. */
static int autobind(int fd)
{
    struct sockaddr_un sun;

    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    return bind(fd, (struct sockaddr *)&sun, sizeof(sa_family_t)) < 0 ? -errno : 0;
}

static int wait_connected(int fd, int timeout_ms)
{
    struct pollfd p;
    int err = 0, n;
    socklen_t len = sizeof err;

    p.fd = fd;
    p.events = POLLOUT;
    p.revents = 0;
    n = poll(&p, 1, timeout_ms);
    if (n < 0)
        return -errno;
    if (n == 0)
        return -ETIMEDOUT;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}

static int open_conn(const lg_run *r)
{
    const ps_load *cfg = r->cfg;
    int fd = socket(cfg->family, cfg->socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1, rc = 0, err;

    if (fd < 0)
        return -errno;
    if (cfg->family == AF_UNIX && cfg->socktype == SOCK_DGRAM)
        rc = autobind(fd);
    if (rc == 0 && connect(fd, (const struct sockaddr *)&r->addr, r->addrlen) < 0)
        rc = errno == EINPROGRESS ? wait_connected(fd, cfg->timeout_ms) : -errno;
    if (rc == 0 && cfg->family != AF_UNIX && cfg->socktype == SOCK_STREAM)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (rc < 0) {
        err = rc;
        close(fd);
        return err;
    }
    return fd;
}

static void drop(lg_run *r, lg_conn *c)
{
    r->res->failed++;
    close(c->fd);
    c->fd = -1;
    c->busy = 0;
}

/* -- ping-pong -------------------------------------------------------------------- */
static void send_more(lg_run *r, lg_conn *c)
{
    size_t size = r->cfg->size;

    while (c->sent < size) {
        ssize_t k = send(c->fd, c->msg + c->sent, size - c->sent, MSG_NOSIGNAL);

        if (k < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                drop(r, c);
            return;
        }
        r->res->bytes_out += (uint64_t)k;
        c->sent += (size_t)k;
    }
}

static void start_request(lg_run *r, lg_conn *c, int64_t t)
{
    c->seq++;
    fill(r, c->id, c->seq, c->msg, c->want);
    c->busy = 1;
    c->bad = 0;
    c->sent = c->rcvd = 0;
    c->t0 = t;
    c->resend_at = t + (int64_t)r->cfg->timeout_ms * MS;
    send_more(r, c);
    /* UDP: a datagram the kernel would not take is resent on time. */
    if (r->cfg->socktype == SOCK_DGRAM)
        c->sent = r->cfg->size;
}

/* A reply is complete: count it, and send the next request while time lasts. */
static void answered(lg_run *r, lg_conn *c, int ok, int64_t t)
{
    c->busy = 0;
    if (!ok)
        r->res->bad++;
    else if (t <= r->end) {
        r->res->requests++;
        record(r, (uint64_t)(t - c->t0));
    }
    if (t < r->end)
        start_request(r, c, t);
}

static void tcp_readable(lg_run *r, lg_conn *c)
{
    size_t want = r->cfg->size - c->rcvd;
    ssize_t n;

    if (!c->busy || want == 0) {  /* bytes nobody asked for */
        n = recv(c->fd, r->scratch, CHUNK, 0);
        if (n > 0) {
            r->res->bytes_in += (uint64_t)n;
            r->res->bad++;
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            drop(r, c);
        }
        return;
    }
    n = recv(c->fd, r->scratch, want < CHUNK ? want : CHUNK, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        drop(r, c);
        return;
    }
    if (n < 0)
        return;
    r->res->bytes_in += (uint64_t)n;
    if (memcmp(r->scratch, c->want + c->rcvd, (size_t)n) != 0)
        c->bad = 1;
    c->rcvd += (size_t)n;
    if (c->rcvd == r->cfg->size)
        answered(r, c, !c->bad, now_ns());
}

/* A datagram from the server: the answer to the request in flight, a late
 * answer to an earlier one (already answered or resent), or wrong. */
static void udp_readable(lg_run *r, lg_conn *c)
{
    ssize_t n = recv(c->fd, r->scratch, CHUNK, 0);
    unsigned id;
    uint64_t seq;

    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            drop(r, c);
        return;
    }
    r->res->bytes_in += (uint64_t)n;
    if ((size_t)n < HDR || get_header(r->scratch, &id, &seq) < 0 || id != c->id || seq > c->seq) {
        r->res->bad++;
        return;
    }
    if (!reply_is(r, id, seq, r->scratch, (size_t)n)) {
        if (seq == c->seq && c->busy)
            answered(r, c, 0, now_ns());
        else
            r->res->bad++;
        return;
    }
    if (seq == c->seq && c->busy)
        answered(r, c, 1, now_ns());
    else
        r->res->late++;
}

static void udp_resend(lg_run *r, lg_conn *c, int64_t t)
{
    if (send(c->fd, c->msg, r->cfg->size, MSG_NOSIGNAL) >= 0)
        r->res->bytes_out += r->cfg->size;
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)
        drop(r, c);
    r->res->lost++;
    c->resend_at = t + (int64_t)r->cfg->timeout_ms * MS;
}

/* The next moment something is due: the end, a resend, the drain's end.
 * Nothing is resent while draining. */
static int64_t next_due(const lg_run *r, int64_t drain_end, int64_t t)
{
    int64_t due = r->end;
    int i;

    if (t >= r->end)
        return drain_end;
    if (r->cfg->socktype != SOCK_DGRAM)
        return due;
    for (i = 0; i < r->cfg->conns; i++)
        if (r->c[i].busy && r->c[i].resend_at < due)
            due = r->c[i].resend_at;
    return due;
}

/* What each socket waits for; the number of sockets still open. */
static int set_events(lg_run *r, int bulk)
{
    int i, open = 0;

    for (i = 0; i < r->cfg->conns; i++) {
        lg_conn *c = &r->c[i];
        int sending = bulk ? c->out < r->cfg->bulk_bytes : c->busy && c->sent < r->cfg->size;

        r->pfd[i].fd = c->fd;
        r->pfd[i].events = (short)(POLLIN | (sending ? POLLOUT : 0));
        r->pfd[i].revents = 0;
        open += c->fd >= 0;
    }
    return open;
}

static int busy_count(const lg_run *r)
{
    int i, n = 0;

    for (i = 0; i < r->cfg->conns; i++)
        n += r->c[i].busy;
    return n;
}

static void pingpong_events(lg_run *r)
{
    int i, udp = r->cfg->socktype == SOCK_DGRAM;
    int64_t t = now_ns();

    for (i = 0; i < r->cfg->conns; i++) {
        lg_conn *c = &r->c[i];
        short ev = r->pfd[i].revents;

        if (c->fd >= 0 && (ev & POLLOUT) && !udp)
            send_more(r, c);
        if (c->fd >= 0 && (ev & (POLLIN | POLLERR | POLLHUP))) {
            if (udp)
                udp_readable(r, c);
            else
                tcp_readable(r, c);
        }
        if (udp && c->fd >= 0 && c->busy && c->resend_at <= t && t < r->end)
            udp_resend(r, c, t);
    }
}

/* Requests until end; then up to timeout_ms for the replies in flight,
 * which are checked but not counted; what never comes is lost. */
static int pingpong(lg_run *r)
{
    const ps_load *cfg = r->cfg;
    int64_t drain_end;
    int i, n;

    r->start = now_ns();
    r->end = r->start + (int64_t)cfg->duration_ms * MS;
    drain_end = r->end + (int64_t)cfg->timeout_ms * MS;
    for (i = 0; i < cfg->conns; i++)
        start_request(r, &r->c[i], r->start);
    for (;;) {
        int64_t t = now_ns();

        if (t >= drain_end || (t >= r->end && busy_count(r) == 0))
            break;
        if (set_events(r, 0) == 0)
            break;  /* every connection failed */
        /* A spinning client never sleeps, so a reply's latency is the
         * server's alone, not also this thread's wake-up. */
        n = poll(r->pfd, (nfds_t)cfg->conns, cfg->spin ? 0 : ms_until(next_due(r, drain_end, t), t));
        if (n < 0)
            return -errno;  /* EINTR too: Ctrl-C belongs to Python */
        pingpong_events(r);
    }
    r->res->lost += (uint64_t)busy_count(r);
    r->res->elapsed_ns = (uint64_t)(r->end - r->start);
    return 0;
}

/* -- bulk ------------------------------------------------------------------------- */
static void bulk_send(lg_run *r, lg_conn *c)
{
    uint64_t total = r->cfg->bulk_bytes;

    while (c->out < total) {
        size_t len = total - c->out < CHUNK ? (size_t)(total - c->out) : CHUNK;
        ssize_t k = send(c->fd, r->pool + c->out % PERIOD, len, MSG_NOSIGNAL);

        if (k < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                drop(r, c);
            return;
        }
        r->res->bytes_out += (uint64_t)k;
        c->out += (uint64_t)k;
    }
    shutdown(c->fd, SHUT_WR);  /* all sent: the server's EOF ends our read */
}

/* Returns 1 when the stream made progress. */
static int bulk_recv(lg_run *r, lg_conn *c)
{
    uint64_t total = r->cfg->bulk_bytes;
    ssize_t n = recv(c->fd, r->scratch, CHUNK, 0);

    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            drop(r, c);
        return 0;
    }
    if (n == 0) {
        if (c->in == total && c->out == total) {
            r->res->requests += !c->bad;
            close(c->fd);
            c->fd = -1;
            c->busy = 0;
        } else {
            drop(r, c);  /* the echo ended short */
        }
        return 1;
    }
    r->res->bytes_in += (uint64_t)n;
    if (!c->bad && (c->in + (uint64_t)n > total ||
                    memcmp(r->scratch, r->upool + c->in % PERIOD, (size_t)n) != 0)) {
        c->bad = 1;
        r->res->bad++;
    }
    c->in += (uint64_t)n;
    return 1;
}

/* Every stream to its end, unless it stalls for timeout_ms or the whole
 * run passes duration_ms: what is unfinished then is lost. */
static int bulk(lg_run *r)
{
    const ps_load *cfg = r->cfg;
    int64_t last = now_ns(), stop, t;
    int i, n;

    r->start = last;
    stop = cfg->duration_ms > 0 ? r->start + (int64_t)cfg->duration_ms * MS : INT64_MAX;
    for (i = 0; i < cfg->conns; i++)
        r->c[i].busy = 1;
    while (set_events(r, 1) > 0) {
        t = now_ns();
        if (t >= stop || t - last >= (int64_t)cfg->timeout_ms * MS)
            break;
        n = poll(r->pfd, (nfds_t)cfg->conns, ms_until(last + (int64_t)cfg->timeout_ms * MS, t));
        if (n < 0)
            return -errno;
        for (i = 0; i < cfg->conns; i++) {
            lg_conn *c = &r->c[i];
            uint64_t before = c->out;

            if (c->fd >= 0 && (r->pfd[i].revents & POLLOUT))
                bulk_send(r, c);
            if (c->out != before)
                last = now_ns();
            if (c->fd >= 0 && (r->pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) && bulk_recv(r, c))
                last = now_ns();
        }
    }
    r->res->lost += (uint64_t)busy_count(r);
    r->res->elapsed_ns = (uint64_t)(last - r->start);
    return 0;
}

/* -- setting up and tearing down ---------------------------------------------------- */
static int check_load(const ps_load *cfg)
{
    if (cfg->conns < 1 || cfg->conns > 65535 || cfg->timeout_ms < 1)
        return -EINVAL;
    if (cfg->socktype != SOCK_STREAM && cfg->socktype != SOCK_DGRAM)
        return -EINVAL;
    if (cfg->transform != PS_XF_UPPER && cfg->transform != PS_XF_ECHO)
        return -EINVAL;
    if (cfg->mode == PS_LOAD_BULK)
        return cfg->socktype == SOCK_STREAM && cfg->bulk_bytes > 0 ? 0 : -EINVAL;
    if (cfg->mode != PS_LOAD_PINGPONG || cfg->duration_ms < 1 || cfg->size < 1)
        return -EINVAL;
    if (cfg->socktype == SOCK_DGRAM && (cfg->size < HDR || cfg->size > PS_UDP_MAX))
        return -EINVAL;
    return cfg->size <= ((size_t)1 << 30) ? 0 : -EINVAL;
}

static void free_run(lg_run *r)
{
    int i;

    if (r->c != NULL) {
        for (i = 0; i < r->cfg->conns; i++) {
            if (r->c[i].fd >= 0)
                close(r->c[i].fd);
            free(r->c[i].msg);
            free(r->c[i].want);
        }
    }
    free(r->c);
    free(r->pfd);
    free(r->pool);
    free(r->upool);
    free(r->scratch);
    free(r);
}

static int new_run(lg_run **out, const ps_load *cfg, ps_load_result *res)
{
    lg_run *r = calloc(1, sizeof *r);
    size_t size = cfg->mode == PS_LOAD_PINGPONG ? cfg->size : 0;
    int i;

    if (r == NULL)
        return -ENOMEM;
    *out = r;
    r->cfg = cfg;
    r->res = res;
    r->c = calloc((size_t)cfg->conns, sizeof *r->c);
    r->pfd = calloc((size_t)cfg->conns, sizeof *r->pfd);
    r->scratch = malloc(CHUNK);
    if (r->c == NULL || r->pfd == NULL || r->scratch == NULL)
        return -ENOMEM;
    for (i = 0; i < cfg->conns; i++)
        r->c[i].fd = -1;  /* before anything can fail: free_run closes what is >= 0 */
    for (i = 0; i < cfg->conns; i++) {
        r->c[i].id = (unsigned)i;
        if (size > 0 && ((r->c[i].msg = malloc(size)) == NULL || (r->c[i].want = malloc(size)) == NULL))
            return -ENOMEM;
    }
    return make_pool(r, size);
}

static int connect_all(lg_run *r)
{
    int i;

    for (i = 0; i < r->cfg->conns; i++) {
        r->c[i].fd = open_conn(r);
        if (r->c[i].fd < 0)
            return r->c[i].fd;
    }
    return 0;
}

int ps_load_run(const ps_load *cfg, ps_load_result *out)
{
    lg_run *r = NULL;
    int rc;

    if (cfg == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    rc = check_load(cfg);
    if (rc < 0)
        return rc;
    rc = new_run(&r, cfg, out);
    if (rc == 0)
        rc = fill_address(r);
    if (rc == 0)
        rc = connect_all(r);
    if (rc == 0)
        rc = cfg->mode == PS_LOAD_BULK ? bulk(r) : pingpong(r);
    if (rc == 0) {
        out->p50_ns = percentile(r, 0.50);
        out->p99_ns = percentile(r, 0.99);
    }
    if (r != NULL)
        free_run(r);
    return rc;
}
