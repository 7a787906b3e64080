/* loadgen.c - a load generator for the echo servers, in C so that what it
 * measures is the server and not a Python client.
 *
 * Ping-pong (closed loop): N TCP connections or UDP sockets, each with one
 * request in flight; the reply is checked byte for byte before the next
 * request goes.  Bulk: each connection streams bulk_bytes and reads the
 * echo back while it sends.  The open loop is openloop.c's.  One thread
 * (the caller's) drives every socket, in steps the caller asks for, and
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

#include "lgen.h"
#include "pysock.h"

/* ps_load.path must hold what sun_path holds, no more and no less. */
typedef char ps__path_fits[sizeof(((ps_load *)0)->path) == sizeof(((struct sockaddr_un *)0)->sun_path) ? 1 : -1];

#define SLACK 4096               /* request offsets into the pool: 0..SLACK-1 */
#define PERIOD 65521             /* the pool repeats with this (prime) period */
#define PER_SOURCE_MAX 254       /* source addresses 127.0.0.1 to 127.0.0.254 */

int64_t lg_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* poll() takes milliseconds: round up, so a deadline is never spun on. */
int lg_ms_until(int64_t deadline, int64_t now)
{
    int64_t left = deadline - now;

    if (left <= 0)
        return 0;
    if (left > 3600 * 1000 * LG_MS)
        return 3600 * 1000;
    return (int)((left + LG_MS - 1) / LG_MS);
}

/* -- the latency histogram: log-linear, within 1/LG_SUB of the true value ------ */
static unsigned bucket_of(uint64_t v)
{
    unsigned e = 0;

    while ((v >> e) >= 2 * LG_SUB)
        e++;
    if (e == 0)
        return (unsigned)v;
    return (e + 1) * LG_SUB + (unsigned)((v >> e) - LG_SUB);
}

static uint64_t bucket_value(unsigned b)
{
    unsigned e;

    if (b < 2 * LG_SUB)
        return b;
    e = b / LG_SUB - 1;
    return ((uint64_t)(b % LG_SUB + LG_SUB) << e) + ((uint64_t)1 << e) / 2;
}

static uint64_t percentile(const lg_run *r, double q)
{
    uint64_t target = (uint64_t)(q * (double)r->samples + 0.999999), seen = 0;
    unsigned b;

    if (r->samples == 0)
        return 0;
    for (b = 0; b < LG_NBUCKETS; b++) {
        seen += r->hist[b];
        if (seen >= target)
            return bucket_value(b);
    }
    return bucket_value(LG_NBUCKETS - 1);
}

void lg_record(lg_run *r, uint64_t ns)
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

    r->pool_len = PERIOD + LG_CHUNK + size + SLACK;
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

    for (i = LG_HDR - 1; i >= 0; i--, v >>= 4)
        p[i] = (unsigned char)hex[v & 15];
}

/* The header's (id, seq); -1 if it is not 16 uppercase hex digits. */
int lg_get_header(const unsigned char *p, unsigned *id, uint64_t *seq)
{
    uint64_t v = 0;
    int i;

    for (i = 0; i < LG_HDR; i++) {
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

/* One message from a pool at seq's offset, with its header. */
static void fill_from(const lg_run *r, const unsigned char *pool, unsigned id, uint64_t seq, unsigned char *p)
{
    memcpy(p, pool + offset_of(id, seq), r->cfg->size);
    if (r->cfg->size >= LG_HDR)
        put_header(p, id, seq);
}

void lg_fill(const lg_run *r, unsigned id, uint64_t seq, unsigned char *msg, unsigned char *want)
{
    if (msg != NULL)
        fill_from(r, r->pool, id, seq, msg);
    if (want != NULL)
        fill_from(r, r->upool, id, seq, want);
}

/* Whether a UDP reply is the right reply to request seq of connection id. */
int lg_reply_is(const lg_run *r, unsigned id, uint64_t seq, const unsigned char *p, size_t n)
{
    size_t off = offset_of(id, seq);
    unsigned char hdr[LG_HDR];

    if (n != r->cfg->size)
        return 0;
    put_header(hdr, id, seq);
    return memcmp(p, hdr, LG_HDR) == 0 && memcmp(p + LG_HDR, r->upool + off + LG_HDR, n - LG_HDR) == 0;
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

/* More connections to one server than a source address has ephemeral
 * ports (about 28,000): connection i of an IPv4 loopback run comes from
 * 127.0.0.(1 + i / per_source), its port chosen at connect time
 * (IP_BIND_ADDRESS_NO_PORT), so each source has the whole port range. */
static int bind_source(const lg_run *r, int fd, int i)
{
    const struct sockaddr_in *to = (const struct sockaddr_in *)&r->addr;
    struct sockaddr_in from;
    int one = 1;

    if (r->cfg->family != AF_INET || r->cfg->per_source <= 0 || r->cfg->conns <= r->cfg->per_source)
        return 0;
    if ((ntohl(to->sin_addr.s_addr) >> 24) != 127)
        return 0;  /* only loopback has a source address per number */
#ifdef IP_BIND_ADDRESS_NO_PORT
    if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) < 0)
        return -errno;
#else
    (void)one;
#endif
    memset(&from, 0, sizeof from);
    from.sin_family = AF_INET;
    from.sin_addr.s_addr = htonl(0x7F000001u + (uint32_t)(i / r->cfg->per_source));
    return bind(fd, (struct sockaddr *)&from, sizeof from) < 0 ? -errno : 0;
}

static int open_conn(const lg_run *r, int i)
{
    const ps_load *cfg = r->cfg;
    int fd = socket(cfg->family, cfg->socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1, rc = 0, err;

    if (fd < 0)
        return -errno;
    if (cfg->family == AF_UNIX && cfg->socktype == SOCK_DGRAM)
        rc = autobind(fd);
    else
        rc = bind_source(r, fd, i);
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

void lg_drop(lg_run *r, lg_conn *c)
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

    if (c->sent >= size)
        return;
    while (c->sent < size) {
        ssize_t k = send(c->fd, c->msg + c->sent, size - c->sent, MSG_NOSIGNAL);

        if (k < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                lg_drop(r, c);
            return;
        }
        r->res->bytes_out += (uint64_t)k;
        c->sent += (size_t)k;
    }
    r->res->sent++;
}

static void start_request(lg_run *r, lg_conn *c, int64_t t)
{
    c->seq++;
    lg_fill(r, c->id, c->seq, c->msg, c->want);
    c->busy = 1;
    c->bad = 0;
    c->sent = c->rcvd = 0;
    c->t0 = t;
    c->resend_at = t + (int64_t)r->cfg->timeout_ms * LG_MS;
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
        r->res->received++;
        lg_record(r, (uint64_t)(t - c->t0));
    } else {
        r->res->received++;
    }
    if (t < r->end)
        start_request(r, c, t);
}

static void tcp_readable(lg_run *r, lg_conn *c)
{
    size_t want = r->cfg->size - c->rcvd;
    ssize_t n;

    if (!c->busy || want == 0) {  /* bytes nobody asked for */
        n = recv(c->fd, r->scratch, LG_CHUNK, 0);
        if (n > 0) {
            r->res->bytes_in += (uint64_t)n;
            r->res->bad++;
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            lg_drop(r, c);
        }
        return;
    }
    n = recv(c->fd, r->scratch, want < LG_CHUNK ? want : LG_CHUNK, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        lg_drop(r, c);
        return;
    }
    if (n < 0)
        return;
    r->res->bytes_in += (uint64_t)n;
    if (memcmp(r->scratch, c->want + c->rcvd, (size_t)n) != 0)
        c->bad = 1;
    c->rcvd += (size_t)n;
    if (c->rcvd == r->cfg->size)
        answered(r, c, !c->bad, lg_now());
}

/* A datagram from the server: the answer to the request in flight, a late
 * answer to an earlier one (already answered or resent), or wrong. */
static void udp_readable(lg_run *r, lg_conn *c)
{
    ssize_t n = recv(c->fd, r->scratch, LG_CHUNK, 0);
    unsigned id;
    uint64_t seq;

    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            lg_drop(r, c);
        return;
    }
    r->res->bytes_in += (uint64_t)n;
    if ((size_t)n < LG_HDR || lg_get_header(r->scratch, &id, &seq) < 0 || id != c->id || seq > c->seq) {
        r->res->bad++;
        return;
    }
    if (!lg_reply_is(r, id, seq, r->scratch, (size_t)n)) {
        if (seq == c->seq && c->busy)
            answered(r, c, 0, lg_now());
        else
            r->res->bad++;
        return;
    }
    if (seq == c->seq && c->busy)
        answered(r, c, 1, lg_now());
    else
        r->res->late++;
}

static void udp_resend(lg_run *r, lg_conn *c, int64_t t)
{
    if (send(c->fd, c->msg, r->cfg->size, MSG_NOSIGNAL) >= 0)
        r->res->bytes_out += r->cfg->size;
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)
        lg_drop(r, c);
    r->res->lost++;
    c->resend_at = t + (int64_t)r->cfg->timeout_ms * LG_MS;
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
    int64_t t = lg_now();

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
static void pingpong_begin(lg_run *r)
{
    int i;

    r->start = lg_now();
    r->end = r->start + (int64_t)r->cfg->duration_ms * LG_MS;
    r->drain_end = r->end + (int64_t)r->cfg->timeout_ms * LG_MS;
    for (i = 0; i < r->cfg->conns; i++)
        start_request(r, &r->c[i], r->start);
}

static int pingpong_step(lg_run *r, int64_t until)
{
    for (;;) {
        int64_t t = lg_now(), due;
        int n;

        if (t >= r->drain_end || (t >= r->end && busy_count(r) == 0) || set_events(r, 0) == 0) {
            r->res->lost += (uint64_t)busy_count(r);
            r->res->elapsed_ns = (uint64_t)(r->end - r->start);
            return 0;
        }
        if (t >= until)
            return 1;
        due = next_due(r, r->drain_end, t);
        /* A spinning client never sleeps, so a reply's latency is the
         * server's alone, not also this thread's wake-up. */
        n = poll(r->pfd, (nfds_t)r->cfg->conns, r->cfg->spin ? 0 : lg_ms_until(due < until ? due : until, t));
        if (n < 0)
            return -errno;  /* EINTR too: Ctrl-C belongs to Python */
        pingpong_events(r);
    }
}

/* -- bulk ------------------------------------------------------------------------- */
static void bulk_send(lg_run *r, lg_conn *c)
{
    uint64_t total = r->cfg->bulk_bytes;

    while (c->out < total) {
        size_t len = total - c->out < LG_CHUNK ? (size_t)(total - c->out) : LG_CHUNK;
        ssize_t k = send(c->fd, r->pool + c->out % PERIOD, len, MSG_NOSIGNAL);

        if (k < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                lg_drop(r, c);
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
    ssize_t n = recv(c->fd, r->scratch, LG_CHUNK, 0);

    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            lg_drop(r, c);
        return 0;
    }
    if (n == 0) {
        if (c->in == total && c->out == total) {
            r->res->requests += !c->bad;
            close(c->fd);
            c->fd = -1;
            c->busy = 0;
        } else {
            lg_drop(r, c);  /* the echo ended short */
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
static void bulk_begin(lg_run *r)
{
    int i;

    r->start = r->last = lg_now();
    r->end = r->cfg->duration_ms > 0 ? r->start + (int64_t)r->cfg->duration_ms * LG_MS : INT64_MAX;
    for (i = 0; i < r->cfg->conns; i++)
        r->c[i].busy = 1;
}

static void bulk_events(lg_run *r)
{
    int i;

    for (i = 0; i < r->cfg->conns; i++) {
        lg_conn *c = &r->c[i];
        uint64_t before = c->out;

        if (c->fd >= 0 && (r->pfd[i].revents & POLLOUT))
            bulk_send(r, c);
        if (c->out != before)
            r->last = lg_now();
        if (c->fd >= 0 && (r->pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) && bulk_recv(r, c))
            r->last = lg_now();
    }
}

static int bulk_step(lg_run *r, int64_t until)
{
    int64_t timeout = (int64_t)r->cfg->timeout_ms * LG_MS;

    for (;;) {
        int64_t t = lg_now(), due = r->last + timeout;

        if (set_events(r, 1) == 0 || t >= r->end || t >= due) {
            r->res->lost += (uint64_t)busy_count(r);
            r->res->elapsed_ns = (uint64_t)(r->last - r->start);
            return 0;
        }
        if (t >= until)
            return 1;
        if (poll(r->pfd, (nfds_t)r->cfg->conns, lg_ms_until(due < until ? due : until, t)) < 0)
            return -errno;
        bulk_events(r);
    }
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
    if (cfg->per_source < 0 || (cfg->per_source > 0 && cfg->conns > PER_SOURCE_MAX * cfg->per_source))
        return -EINVAL;
    if (cfg->mode == PS_LOAD_BULK)
        return cfg->socktype == SOCK_STREAM && cfg->bulk_bytes > 0 ? 0 : -EINVAL;
    if (cfg->mode == PS_LOAD_OPEN && !(cfg->rate > 0.0 && cfg->rate <= 1e8))
        return -EINVAL;  /* NaN too */
    if ((cfg->mode != PS_LOAD_PINGPONG && cfg->mode != PS_LOAD_OPEN) || cfg->duration_ms < 1 || cfg->size < 1)
        return -EINVAL;
    if (cfg->socktype == SOCK_DGRAM && (cfg->size < LG_HDR || cfg->size > PS_UDP_MAX))
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
    lg_open_free(r);
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
    size_t size = cfg->mode == PS_LOAD_BULK ? 0 : cfg->size;
    int i;

    if (r == NULL)
        return -ENOMEM;
    *out = r;
    r->load = *cfg;  /* the caller's struct need not live as long as the run */
    r->cfg = &r->load;
    r->res = res;
    r->c = calloc((size_t)cfg->conns, sizeof *r->c);
    r->pfd = calloc((size_t)cfg->conns, sizeof *r->pfd);
    r->scratch = malloc(LG_CHUNK);
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
        r->c[i].fd = open_conn(r, i);
        if (r->c[i].fd < 0)
            return r->c[i].fd;
    }
    return 0;
}

int ps_load_start(const ps_load *cfg, ps_load_result *out, ps_loadgen **run)
{
    lg_run *r = NULL;
    int rc;

    if (run == NULL)
        return -EINVAL;
    *run = NULL;
    if (cfg == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    rc = check_load(cfg);
    if (rc < 0)
        return rc;
    rc = new_run(&r, cfg, out);
    *run = (ps_loadgen *)r;
    if (rc == 0)
        rc = fill_address(r);
    if (rc == 0)
        rc = connect_all(r);
    if (rc == 0 && cfg->mode == PS_LOAD_OPEN)
        rc = lg_open_init(r);
    return rc;
}

static void begin(lg_run *r)
{
    if (r->cfg->mode == PS_LOAD_BULK)
        bulk_begin(r);
    else if (r->cfg->mode == PS_LOAD_PINGPONG)
        pingpong_begin(r);
    /* the open loop begins in its first step */
}

int ps_load_step(ps_loadgen *run, int max_ms)
{
    lg_run *r = (lg_run *)run;
    int64_t until;
    int rc;

    if (r == NULL || max_ms < 0)
        return -EINVAL;
    if (r->done)
        return 0;
    if (!r->begun) {
        begin(r);
        r->begun = 1;
    }
    until = lg_now() + (int64_t)max_ms * LG_MS;
    if (r->cfg->mode == PS_LOAD_BULK)
        rc = bulk_step(r, until);
    else if (r->cfg->mode == PS_LOAD_OPEN)
        rc = lg_open_step(r, until);
    else
        rc = pingpong_step(r, until);
    r->done = rc == 0;
    return rc;
}

void ps_load_finish(ps_loadgen *run)
{
    lg_run *r = (lg_run *)run;
    ps_load_result *out;

    if (r == NULL)
        return;
    out = r->res;
    if (!r->done && r->begun)  /* cut short: what was measured until now */
        out->elapsed_ns = (uint64_t)((lg_now() < r->end ? lg_now() : r->end) - r->start);
    out->p50_ns = percentile(r, 0.50);
    out->p90_ns = percentile(r, 0.90);
    out->p99_ns = percentile(r, 0.99);
    out->p999_ns = percentile(r, 0.999);
    free_run(r);
}

int ps_load_run(const ps_load *cfg, ps_load_result *out)
{
    ps_loadgen *run;
    int rc = ps_load_start(cfg, out, &run);

    while (rc == 0 && (rc = ps_load_step(run, 3600 * 1000)) == 1)
        ;
    ps_load_finish(run);
    return rc;
}
