/* dproxy.c - the datagram proxy model: each sender (a client address) gets
 * a session, a UDP socket of its own connected to the upstream, so that
 * the upstream's answers can be told apart and sent back to the right
 * sender from the listening socket.  A session silent both ways for
 * idle_ms is forgotten; at most max_conns sessions exist (a datagram from
 * one more sender is dropped, counted in errors).
 *
 * Faults: each direction has its socket-wide shaper (fault.c), per sender:
 * down (the server's faults) on what senders receive, up (faults_up) on
 * what the upstream receives; what either holds stays within max_unsent.
 *
 * Sessions are found by address in a hash table (chained, its size a
 * power of two at least twice max_conns) and sit on one idle list, kept in
 * time order as the echo loops keep theirs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#ifdef PS__HAVE_EPOLL
#include <arpa/inet.h>
#include <sys/epoll.h>

#define MAX_EVENTS 256
#define BURST 64                /* datagrams per readiness: the others get served too */

typedef struct session session;
struct session {
    ps__timer t;                /* first: on the idle list */
    struct sockaddr_storage peer;
    socklen_t plen;
    int fd;                     /* connected to the upstream */
    ps__conninfo info;
    session *chain;             /* the next in its hash bucket */
};

struct ps__dproxy {
    ps__worker *w;
    int ep;
    char listen_tag, wake_tag;
    session **table;
    size_t mask;
    int nsessions;
    ps__tlist idle;
    ps__fview view[2];          /* 0: down, 1: up */
    ps__ushaper shape[2];
    struct sockaddr_storage up_addr;
    socklen_t up_len;
    struct epoll_event ready[MAX_EVENTS];
    unsigned char buf[PS_BUFSIZE];
};

#define DOWN 0
#define UP 1

/* -- sessions ---------------------------------------------------------------- */
static size_t bucket(const ps__dproxy *p, const struct sockaddr_storage *peer, socklen_t plen)
{
    const unsigned char *b = (const unsigned char *)peer;
    uint64_t h = 1469598103934665603ull;  /* FNV-1a */
    socklen_t i;

    for (i = 0; i < plen; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return (size_t)h & p->mask;
}

static session *find(const ps__dproxy *p, const struct sockaddr_storage *peer, socklen_t plen)
{
    session *s;

    for (s = p->table[bucket(p, peer, plen)]; s != NULL; s = s->chain)
        if (s->plen == plen && memcmp(&s->peer, peer, plen) == 0)
            return s;
    return NULL;
}

static void unchain(ps__dproxy *p, session *s)
{
    session **at = &p->table[bucket(p, &s->peer, s->plen)];

    while (*at != s)
        at = &(*at)->chain;
    *at = s->chain;
}

static void forget(ps__dproxy *p, session *s, int why)
{
    ps__conn_event(p->w->srv, &s->info, PS_EV_CLOSE, why);
    ps__timer_remove(&s->t);
    unchain(p, s);
    close(s->fd);  /* leaves the epoll set too */
    free(s);
    p->nsessions--;
    PS_SUB(p->w->stats.active, 1);
}

static int connect_upstream(const ps__dproxy *p)
{
    int fd = socket(p->up_addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)&p->up_addr, p->up_len) < 0) {
        int err = errno;

        close(fd);
        return -err;
    }
    return fd;
}

static void peer_text(const struct sockaddr_storage *peer, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN];
    int port = ps__addr_text(peer, host, sizeof host);

    out[0] = '\0';
    if (port >= 0)
        snprintf(out, n, peer->ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host, port);
}

/* The sender's session, opened on its first datagram; NULL (counted in
 * errors) when max_conns are open or no socket can be had. */
static session *session_for(ps__dproxy *p, const struct sockaddr_storage *peer, socklen_t plen, int64_t now)
{
    session *s = find(p, peer, plen);
    size_t b;

    if (s != NULL)
        return s;
    if (plen == 0 || p->nsessions >= p->w->srv->cfg.max_conns || (s = calloc(1, sizeof *s)) == NULL)
        goto refused;
    if ((s->fd = connect_upstream(p)) < 0 || ps__epoll_set(p->ep, EPOLL_CTL_ADD, s->fd, EPOLLIN, s) < 0) {
        if (s->fd >= 0)
            close(s->fd);
        free(s);
        goto refused;
    }
    memcpy(&s->peer, peer, plen);
    s->plen = plen;
    s->info.id = PS_ADD(p->w->srv->conns, 1);
    if (p->w->srv->cfg.log_events)
        peer_text(peer, s->info.peer, sizeof s->info.peer);
    b = bucket(p, peer, plen);
    s->chain = p->table[b];
    p->table[b] = s;
    ps__timer_restart(&p->idle, &s->t, now);
    p->nsessions++;
    PS_ADD(p->w->stats.accepted, 1);
    PS_ADD(p->w->stats.active, 1);
    ps__conn_event(p->w->srv, &s->info, PS_EV_OPEN, 0);
    return s;

refused:
    PS_ADD(p->w->stats.errors, 1);
    return NULL;
}

/* -- datagrams ----------------------------------------------------------------- */
static void send_down(ps__dproxy *p, const unsigned char *data, size_t n, session *s)
{
    if (sendto(p->w->fd, data, n, MSG_NOSIGNAL, (struct sockaddr *)&s->peer, s->plen) < 0) {
        PS_ADD(p->w->stats.errors, 1);  /* a full buffer: lost as on a network */
        return;
    }
    PS_ADD(p->w->stats.bytes_out, (uint64_t)n);
    s->info.out += n;
}

static void send_up(ps__dproxy *p, const unsigned char *data, size_t n, session *s)
{
    if (send(s->fd, data, n, MSG_NOSIGNAL) < 0)
        PS_ADD(p->w->stats.errors, 1);
}

static void forward(ps__dproxy *p, int dir, const unsigned char *data, size_t n, session *s)
{
    const ps_faults *f = ps__faults_dir(p->w->srv, &p->view[dir], dir == UP);

    if (f == NULL) {
        if (dir == UP)
            send_up(p, data, n, s);
        else
            send_down(p, data, n, s);
        return;
    }
    if (ps__ushape_push(&p->shape[dir], f, data, n, &s->peer, s->plen, ps__now_us()) < 0)
        PS_ADD(p->w->stats.errors, 1);  /* over max_unsent: dropped */
}

/* What the shapers let go now, each to its session (if it is still open). */
static void send_due(ps__dproxy *p)
{
    ps__dgram *d;
    session *s;
    int dir;

    for (dir = DOWN; dir <= UP; dir++) {
        while ((d = ps__ushape_pop(&p->shape[dir], ps__now_us())) != NULL) {
            if ((s = find(p, &d->peer, d->plen)) != NULL) {
                if (dir == UP)
                    send_up(p, d->data, d->len, s);
                else
                    send_down(p, d->data, d->len, s);
            }
            free(d);
        }
    }
}

static int from_senders(ps__dproxy *p, int64_t now)
{
    struct sockaddr_storage peer;
    socklen_t plen;
    session *s;
    ssize_t n;
    int i;

    for (i = 0; i < BURST; i++) {
        plen = sizeof peer;
        n = recvfrom(p->w->fd, p->buf, sizeof p->buf, 0, (struct sockaddr *)&peer, &plen);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
        PS_ADD(p->w->stats.datagrams, 1);
        PS_ADD(p->w->stats.bytes_in, (uint64_t)n);
        if ((s = session_for(p, &peer, plen, now)) == NULL)
            continue;
        s->info.in += (uint64_t)n;
        ps__timer_restart(&p->idle, &s->t, now);
        forward(p, UP, p->buf, (size_t)n, s);
    }
    return 0;
}

static void from_upstream(ps__dproxy *p, session *s, int64_t now)
{
    ssize_t n;
    int i;

    for (i = 0; i < BURST; i++) {
        n = recv(s->fd, p->buf, sizeof p->buf, 0);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                PS_ADD(p->w->stats.errors, 1);  /* ICMP: the upstream's port is closed */
            return;
        }
        ps__timer_restart(&p->idle, &s->t, now);
        forward(p, DOWN, p->buf, (size_t)n, s);
    }
}

/* -- the loop -------------------------------------------------------------------- */
static int timeout_ms(const ps__dproxy *p, int64_t now)
{
    int64_t t = ps__timer_due(&p->idle, p->w->srv->cfg.idle_ms), us;
    int dir;

    for (dir = DOWN; dir <= UP; dir++) {
        us = ps__ushape_due(&p->shape[dir]);
        if (us != INT64_MAX && (us + 999) / 1000 < t)
            t = (us + 999) / 1000;
    }
    if (t == INT64_MAX)
        return -1;
    return t <= now ? 0 : (int)(t - now < (1 << 30) ? t - now : 1 << 30);
}

static void expire(ps__dproxy *p, int64_t now)
{
    while (now >= ps__timer_due(&p->idle, p->w->srv->cfg.idle_ms)) {
        PS_ADD(p->w->stats.idle_closed, 1);
        forget(p, (session *)p->idle.head, PS_WHY_IDLE);
    }
    send_due(p);
}

static void forget_all(ps__dproxy *p)
{
    while (p->idle.head != NULL)
        forget(p, (session *)p->idle.head, PS_WHY_STOP);
}

static int serve(ps__worker *w)
{
    ps__dproxy *p = w->dproxy;
    int64_t now;
    int i, n, rc;

    for (;;) {
        if (ps__stopping(w->srv)) {
            forget_all(p);
            return 0;
        }
        n = epoll_pwait(p->ep, p->ready, MAX_EVENTS, timeout_ms(p, ps__now_ms()), w->sigmask);
        if (n < 0)
            return -errno;
        now = ps__now_ms();
        for (i = 0; i < n; i++) {
            if (p->ready[i].data.ptr == &p->listen_tag) {
                if ((rc = from_senders(p, now)) < 0 && rc != -EINTR)
                    PS_ADD(w->stats.errors, 1);
            } else if (p->ready[i].data.ptr != &p->wake_tag) {
                from_upstream(p, p->ready[i].data.ptr, now);
            }
        }
        expire(p, ps__now_ms());
    }
}

static int open_dproxy(ps__worker *w)
{
    ps__dproxy *p = calloc(1, sizeof *p);
    size_t size = 16;
    int rc;

    if (p == NULL)
        return -ENOMEM;
    w->dproxy = p;
    p->w = w;
    while (size < 2 * (size_t)w->srv->cfg.max_conns)
        size *= 2;
    p->table = calloc(size, sizeof *p->table);
    p->mask = size - 1;
    ps__ushape_init(&p->shape[DOWN], w->srv->cfg.max_unsent, NULL);
    ps__ushape_init(&p->shape[UP], w->srv->cfg.max_unsent, NULL);
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    if (p->table == NULL)
        return -ENOMEM;
    if (p->ep < 0)
        return -errno;
    rc = ps__upstream_address(&w->srv->cfg, &p->up_addr, &p->up_len);
    if (rc == 0)
        rc = ps__epoll_set(p->ep, EPOLL_CTL_ADD, w->srv->wake[0], EPOLLIN, &p->wake_tag);
    return rc < 0 ? rc : ps__epoll_set(p->ep, EPOLL_CTL_ADD, w->fd, EPOLLIN, &p->listen_tag);
}

static void free_dproxy(ps__worker *w)
{
    ps__dproxy *p = w->dproxy;

    if (p == NULL)
        return;
    if (p->table != NULL)
        forget_all(p);
    ps__ushape_free(&p->shape[DOWN]);
    ps__ushape_free(&p->shape[UP]);
    free(p->table);
    if (p->ep >= 0)
        close(p->ep);
    free(p);
    w->dproxy = NULL;
}

const ps__model ps__dproxy_model = {"dproxy", open_dproxy, serve, NULL, free_dproxy};

#endif /* PS__HAVE_EPOLL */
