/* openloop.c - the open loop: requests on a fixed schedule, whatever the
 * server does.
 *
 * Request k (counting over all connections) falls due at start + k / rate
 * and goes on connection k % conns as that connection's request
 * k / conns + 1: request 0 of each connection is its warm-up, one round
 * trip before the clock starts, so that no connection is still waiting to
 * be accepted when the schedule begins.
 * Its latency is measured from that due time, not from when it could be
 * sent: a server that stalls makes every request due during the stall
 * late, as wrk2 measures, where a closed loop would stop sending and hide
 * the stall (coordinated omission).  TCP: a connection keeps sending its
 * requests as they fall due, several in flight, and reads the replies in
 * order.  UDP: each datagram says which request it is (its header); one
 * unanswered within timeout_ms is lost.  Sends are timed by a timerfd, to
 * the microsecond; sockets are watched by epoll. */
#include <errno.h>

#include "lgen.h"

#if defined(__linux__) && !defined(PYSOCK_PORTABLE)
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define TIMER_ID UINT32_MAX       /* the timerfd's epoll data */
#define MAX_EVENTS 1024
#define RING_MAX ((uint64_t)1 << 28)

struct lg_open {
    double ns_per_req;            /* 1e9 / rate */
    uint64_t next_k;              /* the next request to fall due */
    uint64_t last_k;              /* requests due in the run: k < last_k */
    uint64_t inflight;            /* sent whole, neither answered nor lost */
    uint64_t unsent;              /* due, not yet sent whole (TCP) */
    int epfd, timerfd;
    int64_t armed;                /* when the timer is set to fire; 0: unset */
    struct epoll_event *events;
    unsigned char *ring;          /* UDP: answered flags, by k & mask */
    uint64_t mask;
    uint64_t expired_k;           /* UDP: requests before it are answered or lost */
    unsigned char *batch;         /* TCP: due requests sent together */
    uint32_t *touched;            /* TCP: connections given requests in this turn */
    int warming;                  /* connections whose warm-up is unanswered */
    int64_t warm_end;             /* when the schedule starts all the same; 0: not yet warming */
};

static int64_t due_at(const lg_run *r, uint64_t k)
{
    return r->start + (int64_t)((double)k * r->open->ns_per_req);
}

static int udp(const lg_run *r)
{
    return r->cfg->socktype == SOCK_DGRAM;
}

/* Scheduled requests among a connection's first n (the first is its warm-up). */
static uint64_t scheduled(uint64_t n)
{
    return n > 0 ? n - 1 : 0;
}

/* The schedule's request k, from a connection's request number j >= 1. */
static uint64_t k_of(const lg_run *r, unsigned id, uint64_t j)
{
    return (j - 1) * (uint64_t)r->cfg->conns + id;
}

static void warmed(lg_run *r, lg_conn *c)
{
    if (!c->warmed) {
        c->warmed = 1;
        r->open->warming--;
    }
}

/* -- setting up ------------------------------------------------------------------ */
static int watch(int epfd, int fd, uint32_t id, uint32_t events, int op)
{
    struct epoll_event ev;

    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u32 = id;
    return epoll_ctl(epfd, op, fd, &ev) < 0 ? -errno : 0;
}

/* UDP's answered flags cover every request that may still be answered:
 * rate x (timeout + 1 s), and room to spare. */
static int new_ring(lg_run *r)
{
    lg_open *o = r->open;
    double want = r->cfg->rate * ((double)r->cfg->timeout_ms / 1000.0 + 1.0) + 1024.0;
    uint64_t size = 1024;

    while ((double)size < want && size < RING_MAX)
        size <<= 1;
    if ((double)size < want)
        return -EINVAL;  /* a rate and timeout too large to track */
    o->ring = calloc((size_t)size, 1);
    o->mask = size - 1;
    return o->ring == NULL ? -ENOMEM : 0;
}

int lg_open_init(lg_run *r)
{
    lg_open *o = calloc(1, sizeof *o);
    int i, rc;

    if (o == NULL)
        return -ENOMEM;
    r->open = o;
    o->epfd = o->timerfd = -1;
    o->ns_per_req = 1e9 / r->cfg->rate;
    o->events = calloc(MAX_EVENTS, sizeof *o->events);
    o->batch = malloc(LG_CHUNK);
    o->touched = calloc((size_t)r->cfg->conns, sizeof *o->touched);
    if (o->events == NULL || o->batch == NULL || o->touched == NULL)
        return -ENOMEM;
    o->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (o->epfd < 0)
        return -errno;
    o->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (o->timerfd < 0)
        return -errno;
    rc = watch(o->epfd, o->timerfd, TIMER_ID, EPOLLIN, EPOLL_CTL_ADD);
    for (i = 0; rc == 0 && i < r->cfg->conns; i++)
        rc = watch(o->epfd, r->c[i].fd, (uint32_t)i, EPOLLIN, EPOLL_CTL_ADD);
    if (rc == 0 && udp(r))
        rc = new_ring(r);
    return rc;
}

void lg_open_free(lg_run *r)
{
    lg_open *o = r->open;

    if (o == NULL)
        return;
    if (o->epfd >= 0)
        close(o->epfd);
    if (o->timerfd >= 0)
        close(o->timerfd);
    free(o->events);
    free(o->batch);
    free(o->touched);
    free(o->ring);
    free(o);
    r->open = NULL;
}

static void begin(lg_run *r)
{
    lg_open *o = r->open;
    int64_t span = (int64_t)r->cfg->duration_ms * LG_MS;

    r->start = lg_now();
    r->end = r->start + span;
    r->drain_end = r->end + (int64_t)r->cfg->timeout_ms * LG_MS;
    o->last_k = (uint64_t)((double)span / o->ns_per_req);
    if ((double)o->last_k * o->ns_per_req < (double)span)
        o->last_k++;
}

/* -- sending ------------------------------------------------------------------- */
static void lose_conn(lg_run *r, lg_conn *c)
{
    lg_open *o = r->open;
    uint64_t waiting = scheduled(c->next_send) - scheduled(c->next_reply);

    if (c->fd < 0)
        return;
    o->inflight -= waiting;
    r->res->lost += waiting;
    o->unsent -= scheduled(c->due) - scheduled(c->next_send);
    warmed(r, c);  /* nothing more will come */
    lg_drop(r, c);
}

/* Whether to hear when c's socket takes more (only while it is full). */
static void want_room(lg_run *r, lg_conn *c, int blocked)
{
    if (c->blocked == blocked)
        return;
    c->blocked = blocked;
    if (watch(r->open->epfd, c->fd, c->id, EPOLLIN | (blocked ? EPOLLOUT : 0), EPOLL_CTL_MOD) < 0)
        lose_conn(r, c);
}

/* A request of c has gone whole. */
static void sent_one(lg_run *r, lg_conn *c)
{
    if (c->next_send++ == 0)
        return;  /* the warm-up: not counted */
    r->open->unsent--;
    r->open->inflight++;
    r->res->sent++;
}

/* Requests next_send.. (as many as are due and fit the batch buffer) in
 * one buffer: the number of bytes. */
static size_t fill_batch(lg_run *r, lg_conn *c)
{
    size_t size = r->cfg->size, n = 0;
    uint64_t j = c->next_send;

    while (j < c->due && n + size <= LG_CHUNK) {
        lg_fill(r, c->id, j++, r->open->batch + n, NULL);
        n += size;
    }
    return n;
}

/* One send: the rest of a request begun, or a batch of whole ones (a
 * generator that fell behind catches up in few system calls).  What the
 * socket took of a batch's last request is that request begun. */
static ssize_t send_some(lg_run *r, lg_conn *c)
{
    size_t size = r->cfg->size, n;
    ssize_t k;

    if (c->sent > 0 || size > LG_CHUNK / 2) {
        if (c->sent == 0)
            lg_fill(r, c->id, c->next_send, c->msg, NULL);
        k = send(c->fd, c->msg + c->sent, size - c->sent, MSG_NOSIGNAL);
        if (k > 0 && (c->sent += (size_t)k) == size) {
            c->sent = 0;
            sent_one(r, c);
        }
        return k;
    }
    n = fill_batch(r, c);
    k = send(c->fd, r->open->batch, n, MSG_NOSIGNAL);
    if (k > 0) {
        size_t whole = (size_t)k / size, i;

        for (i = 0; i < whole; i++)
            sent_one(r, c);
        if ((size_t)k % size) {
            lg_fill(r, c->id, c->next_send, c->msg, NULL);
            c->sent = (size_t)k % size;
        }
    }
    return k;
}

/* Every request due on c, in order, as far as the socket takes them. */
static void tcp_send_due(lg_run *r, lg_conn *c)
{
    while (c->fd >= 0 && c->next_send < c->due) {
        ssize_t k = send_some(r, c);

        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                want_room(r, c, 1);
            else
                lose_conn(r, c);
            return;
        }
        r->res->bytes_out += (uint64_t)k;
    }
    if (c->fd >= 0)
        want_room(r, c, 0);
}

/* A datagram the kernel refuses (its buffer full) is lost at once. */
static void udp_send(lg_run *r, lg_conn *c, uint64_t k)
{
    lg_open *o = r->open;
    size_t size = r->cfg->size;

    lg_fill(r, c->id, k / (uint64_t)r->cfg->conns + 1, c->msg, NULL);
    if (send(c->fd, c->msg, size, MSG_NOSIGNAL) < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS && errno != ECONNREFUSED) {
            lose_conn(r, c);
            return;
        }
        o->ring[k & o->mask] = 1;
        r->res->lost++;
        return;
    }
    r->res->bytes_out += size;
    r->res->sent++;
    o->inflight++;
}

/* Every request whose time has come goes out now: UDP one datagram
 * each; TCP each connection's due requests together. */
static void release_due(lg_run *r, int64_t t)
{
    lg_open *o = r->open;
    uint64_t conns = (uint64_t)r->cfg->conns;
    size_t touched = 0, i;

    while (o->next_k < o->last_k && due_at(r, o->next_k) <= t) {
        uint64_t k = o->next_k++;
        lg_conn *c = &r->c[k % conns];

        r->res->due++;
        if (c->fd < 0) {
            r->res->lost++;  /* its connection failed: nothing can answer it */
            continue;
        }
        if (udp(r)) {
            o->ring[k & o->mask] = 0;
            udp_send(r, c, k);
            continue;
        }
        if (c->due == c->next_send)
            o->touched[touched++] = (uint32_t)(k % conns);  /* it had nothing due: once in the list */
        c->due = k / conns + 2;  /* after its warm-up */
        o->unsent++;
    }
    for (i = 0; i < touched; i++)
        tcp_send_due(r, &r->c[o->touched[i]]);
}

/* -- replies ------------------------------------------------------------------- */
static void answered(lg_run *r, uint64_t k, int ok, int64_t t)
{
    r->open->inflight--;
    if (!ok) {
        r->res->bad++;
        return;
    }
    r->res->received++;
    if (t <= r->end)
        r->res->requests++;
    lg_record(r, (uint64_t)(t > due_at(r, k) ? t - due_at(r, k) : 0));
}

/* Bytes from the server: the replies to c's requests, in order. */
static void tcp_take(lg_run *r, lg_conn *c, const unsigned char *p, size_t n, int64_t t)
{
    size_t size = r->cfg->size;

    while (n > 0) {
        size_t take;

        if (c->next_reply >= c->next_send + (c->sent > 0)) {
            r->res->bad++;  /* bytes no request asked for */
            return;
        }
        if (c->rcvd == 0)
            lg_fill(r, c->id, c->next_reply, NULL, c->want);
        take = size - c->rcvd < n ? size - c->rcvd : n;
        if (memcmp(p, c->want + c->rcvd, take) != 0)
            c->bad = 1;
        c->rcvd += take;
        p += take;
        n -= take;
        if (c->rcvd == size && c->next_reply == 0) {
            warmed(r, c);  /* its warm-up: right or wrong, the schedule counts */
            c->rcvd = 0;
            c->bad = 0;
            c->next_reply++;
        } else if (c->rcvd == size) {
            answered(r, k_of(r, c->id, c->next_reply), !c->bad, t);
            c->rcvd = 0;
            c->bad = 0;
            c->next_reply++;
        }
    }
}

static void tcp_readable(lg_run *r, lg_conn *c)
{
    ssize_t n = recv(c->fd, r->scratch, LG_CHUNK, 0);

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        lose_conn(r, c);  /* closed or reset: what it had in flight is lost */
        return;
    }
    r->res->bytes_in += (uint64_t)n;
    tcp_take(r, c, r->scratch, (size_t)n, lg_now());
}

/* One datagram: the first reply to a request still waited for, a late or
 * repeated one, or wrong. */
static void udp_take(lg_run *r, lg_conn *c, size_t n, int64_t t)
{
    lg_open *o = r->open;
    unsigned id;
    uint64_t seq, k;

    if (n < LG_HDR || lg_get_header(r->scratch, &id, &seq) < 0 || id != c->id) {
        r->res->bad++;
        return;
    }
    if (seq == 0) {
        if (c->warmed)
            r->res->late++;
        warmed(r, c);
        return;
    }
    k = k_of(r, id, seq);
    if (k >= o->next_k) {
        r->res->bad++;  /* a request never sent */
        return;
    }
    if (k < o->expired_k || o->ring[k & o->mask]) {
        r->res->late++;  /* already counted lost, or answered before */
        return;
    }
    o->ring[k & o->mask] = 1;
    answered(r, k, lg_reply_is(r, id, seq, r->scratch, n), t);
}

static void udp_readable(lg_run *r, lg_conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, r->scratch, LG_CHUNK, 0);

        if (n < 0) {
            if (errno == ECONNREFUSED)
                continue;  /* an ICMP error for an earlier datagram: it is lost anyway */
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                lose_conn(r, c);
            return;
        }
        r->res->bytes_in += (uint64_t)n;
        udp_take(r, c, (size_t)n, lg_now());
    }
}

/* UDP requests unanswered for timeout_ms are lost. */
static void expire(lg_run *r, int64_t t)
{
    lg_open *o = r->open;
    int64_t timeout = (int64_t)r->cfg->timeout_ms * LG_MS;

    while (o->expired_k < o->next_k &&
           (due_at(r, o->expired_k) + timeout <= t || o->next_k - o->expired_k > o->mask)) {
        uint64_t k = o->expired_k++;

        if (!o->ring[k & o->mask]) {
            o->ring[k & o->mask] = 1;
            o->inflight--;
            r->res->lost++;
        }
    }
}

/* -- the loop ---------------------------------------------------------------- */
/* The next moment something falls due: a request, a UDP expiry. */
static int64_t next_event(const lg_run *r)
{
    const lg_open *o = r->open;
    int64_t next = r->drain_end;

    if (o->next_k < o->last_k && due_at(r, o->next_k) < next)
        next = due_at(r, o->next_k);
    if (udp(r) && o->expired_k < o->next_k) {
        int64_t e = due_at(r, o->expired_k) + (int64_t)r->cfg->timeout_ms * LG_MS;

        if (e < next)
            next = e;
    }
    return next;
}

static int arm(lg_run *r, int64_t when)
{
    lg_open *o = r->open;
    struct itimerspec its;

    if (when == o->armed)
        return 0;
    memset(&its, 0, sizeof its);
    its.it_value.tv_sec = when / 1000000000LL;
    its.it_value.tv_nsec = when % 1000000000LL;
    if (timerfd_settime(o->timerfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        return -errno;
    o->armed = when;
    return 0;
}

static void events(lg_run *r, int n)
{
    lg_open *o = r->open;
    int i;

    for (i = 0; i < n; i++) {
        uint32_t id = o->events[i].data.u32;
        uint32_t ev = o->events[i].events;
        lg_conn *c;

        if (id == TIMER_ID) {
            uint64_t ticks;

            if (read(o->timerfd, &ticks, sizeof ticks) < 0) {
                /* nothing to clear: the timer was re-armed meanwhile */
            }
            o->armed = 0;
            continue;
        }
        c = &r->c[id];
        if (c->fd >= 0 && (ev & EPOLLOUT))
            tcp_send_due(r, c);
        if (c->fd >= 0 && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
            if (udp(r))
                udp_readable(r, c);
            else
                tcp_readable(r, c);
        }
    }
}

static int finished(const lg_run *r, int64_t t)
{
    const lg_open *o = r->open;

    if (t >= r->drain_end)
        return 1;
    return t >= r->end && o->next_k == o->last_k && o->inflight == 0 && o->unsent == 0;
}

/* Each connection's warm-up: one request, its reply waited for (at most
 * timeout_ms), before the clock starts. */
static void start_warming(lg_run *r)
{
    lg_open *o = r->open;
    int i;

    o->warming = r->cfg->conns;
    o->warm_end = lg_now() + (int64_t)r->cfg->timeout_ms * LG_MS;
    for (i = 0; i < r->cfg->conns; i++) {
        lg_conn *c = &r->c[i];

        c->due = 1;
        if (!udp(r)) {
            tcp_send_due(r, c);
        } else {
            lg_fill(r, c->id, 0, c->msg, NULL);
            if (send(c->fd, c->msg, r->cfg->size, MSG_NOSIGNAL) < 0)
                warmed(r, c);  /* the schedule will tell */
        }
    }
}

/* 1 while warming, 0 once warm (or out of time), -errno on failure. */
static int warm_step(lg_run *r, int64_t until)
{
    lg_open *o = r->open;

    if (o->warm_end == 0)
        start_warming(r);
    for (;;) {
        int64_t t = lg_now(), wait = o->warm_end < until ? o->warm_end : until;
        int n;

        if (o->warming == 0 || t >= o->warm_end)
            return 0;
        if (t >= until)
            return 1;
        n = epoll_wait(o->epfd, o->events, MAX_EVENTS, lg_ms_until(wait, t));
        if (n < 0)
            return -errno;
        events(r, n);
    }
}

int lg_open_step(lg_run *r, int64_t until)
{
    lg_open *o = r->open;

    if (r->start == 0) {
        int rc = warm_step(r, until);

        if (rc != 0)
            return rc;
        begin(r);
    }
    for (;;) {
        int64_t t = lg_now();
        int n, rc;

        release_due(r, t);
        if (udp(r))
            expire(r, t);
        if (finished(r, t)) {
            r->res->lost += o->inflight;
            o->inflight = 0;
            r->res->elapsed_ns = (uint64_t)(r->end - r->start);
            return 0;
        }
        if (t >= until)
            return 1;
        rc = arm(r, next_event(r));
        if (rc < 0)
            return rc;
        n = epoll_wait(o->epfd, o->events, MAX_EVENTS, lg_ms_until(until, t));
        if (n < 0)
            return -errno;  /* EINTR too: Ctrl-C belongs to Python */
        events(r, n);
    }
}

#else  /* no epoll or timerfd: the open loop needs both */
int lg_open_init(lg_run *r)
{
    (void)r;
    return -ENOSYS;
}

int lg_open_step(lg_run *r, int64_t until)
{
    (void)r;
    (void)until;
    return -ENOSYS;
}

void lg_open_free(lg_run *r)
{
    (void)r;
}
#endif
