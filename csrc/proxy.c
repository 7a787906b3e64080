/* proxy.c - the stream proxy model: each client connection gets its own
 * connection to the upstream, and bytes flow both ways between the two,
 * through a shaper per direction while faults are set (fault.c).
 *
 * A connection is a pair of sockets (the client's end and the upstream's)
 * and two flows: up (read from the client, written to the upstream) and
 * down (the other way).  A flow reads only while what it holds (bytes its
 * writer has not taken, and its shaper's) is under max_unsent, and each
 * read is sized to fit below max_unsent + PS_BUFSIZE: a side that never
 * reads pins at most that per direction.  A half-close is passed on: once
 * a flow's reader has sent EOF and everything before it is written, its
 * writer is shut down for writing (after close_delay, if that fault is
 * set; never under stall).  The pair closes once both flows are shut, or
 * at once when either side fails: a refused or reset upstream closes the
 * client's side (PS_WHY_UPSTREAM), and the proxy serves on.
 *
 * One loop (one worker) on epoll.  Timers are the echo loops' lists: a
 * pair is on idle (nothing unsent: closed idle_ms after its last read),
 * pending (bytes unsent: cut off send_timeout_ms after they began to wait
 * or its writer last took PS_BUFSIZE of them) or, while only shapers hold
 * its bytes, on neither; flows whose shaper holds anything are on the
 * shaped list, which each turn looks through. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#ifdef PS__HAVE_EPOLL
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>

#define MAX_EVENTS 256
#define ACCEPT_BURST 64
#define DOWN 0                  /* upstream -> client: cfg faults */
#define UP 1                    /* client -> upstream: faults_up */

typedef struct pconn pconn;

typedef struct pend {           /* one socket of a pair, as epoll sees it */
    pconn *c;
    int fd;
    uint32_t events;            /* what epoll watches now (0: not in the set) */
} pend;

typedef struct flow {
    pconn *c;
    int dir;                    /* DOWN or UP */
    pend *from, *to;
    ps__buf out;                /* read, not yet written: out.data[off .. out.len) */
    size_t off;
    ps__shaper *sh;             /* under faults; NULL until the first */
    int eof;                    /* from has sent its EOF */
    int shut;                   /* and it was passed on: to shut down for writing */
} flow;

struct pconn {
    ps__timer t;                /* first: on idle or pending */
    pend client, upstream;
    int connecting;             /* the upstream's connect is in progress */
    flow down, up;
    ps__conninfo info;
    int ending;                 /* PS__END_FIN, PS__END_RST: close once ender is written */
    flow *ender;
    pconn *prev, *next;         /* every open pair; then the dead ones */
    int dead;                   /* closed: freed after this turn's batch */
};

struct ps__proxy {
    ps__worker *w;
    int ep;
    int listening;
    char listen_tag, wake_tag;
    int draining;
    int64_t grace_end;
    int64_t accept_at;
    int nconns;
    pconn *all;
    pconn *dead;                /* closed this turn */
    ps__tlist idle, pending, shaped;
    ps__fview view[2];          /* DOWN: the server's faults, UP: faults_up */
    struct sockaddr_storage up_addr;
    socklen_t up_len;
    struct epoll_event ready[MAX_EVENTS];
    unsigned char buf[PS_BUFSIZE];
};

/* -- epoll ----------------------------------------------------------------- */
/* Watch e for want.  An end that wants nothing leaves the set: epoll
 * reports a hang-up whatever it is asked, and would wake every turn. */
static int end_watch(ps__proxy *p, pend *e, uint32_t want)
{
    int rc;

    if (want == e->events)
        return 0;
    if (want == 0)
        rc = ps__epoll_set(p->ep, EPOLL_CTL_DEL, e->fd, 0, NULL);
    else
        rc = ps__epoll_set(p->ep, e->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, e->fd, want, e);
    if (rc == 0)
        e->events = want;
    return rc;
}

/* -- flows ----------------------------------------------------------------- */
static const ps_faults *faults_of(ps__proxy *p, const flow *fl)
{
    return ps__faults_dir(p->w->srv, &p->view[fl->dir], fl->dir == UP);
}

static size_t unsent(const flow *fl)
{
    return fl->out.len - fl->off;
}

static size_t held(const flow *fl)
{
    return fl->out.cap + ps__shape_held(fl->sh);
}

static size_t hold_limit(const ps__proxy *p)
{
    return p->w->srv->cfg.max_unsent + PS_BUFSIZE;
}

static int reading(const ps__proxy *p, const flow *fl)
{
    return !fl->eof && !fl->c->ending && !fl->c->connecting && !p->draining
        && held(fl) < p->w->srv->cfg.max_unsent;
}

/* Bytes written to their end: the client's are the server's bytes_out. */
static void count_out(ps__proxy *p, flow *fl, size_t n)
{
    if (fl->dir == DOWN) {
        PS_ADD(p->w->stats.bytes_out, (uint64_t)n);
        fl->c->info.out += (uint64_t)n;
    }
}

static int queue(ps__proxy *p, flow *fl, const unsigned char *data, size_t n)
{
    return ps__buf_queue(&fl->out, &fl->off, data, n, ps__room(hold_limit(p), ps__shape_held(fl->sh)));
}

/* n bytes for fl's writer: straight to the socket when nothing waits
 * before them, the rest kept for EPOLLOUT. */
static int put(ps__proxy *p, flow *fl, const unsigned char *data, size_t n, int64_t now)
{
    ssize_t k;

    if (unsent(fl) == 0 && n > 0) {
        k = send(fl->to->fd, data, n, MSG_NOSIGNAL);
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        if (k > 0) {
            count_out(p, fl, (size_t)k);
            data += k;
            n -= (size_t)k;
        }
        if (n == 0)
            return 0;
        ps__timer_restart(&p->pending, &fl->c->t, now);  /* these begin to wait */
    }
    return queue(p, fl, data, n);
}

static int flush(ps__proxy *p, flow *fl, int64_t now)
{
    ssize_t k = send(fl->to->fd, fl->out.data + fl->off, unsent(fl), MSG_NOSIGNAL);

    if (k < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    count_out(p, fl, (size_t)k);
    fl->off += (size_t)k;
    fl->c->t.taken += (size_t)k;
    if (unsent(fl) == 0) {
        ps__buf_free(&fl->out);
        fl->off = 0;
    } else if (fl->c->t.taken >= PS_BUFSIZE) {
        ps__timer_restart(&p->pending, &fl->c->t, now);
    }
    return 0;
}

static int join_shaped(ps__proxy *p, flow *fl, const ps_faults *f)
{
    if (fl->sh == NULL && (fl->sh = ps__shaper_new(f, fl, fl->c->info.id)) == NULL)
        return -ENOMEM;
    if (fl->sh->link.on == NULL)
        ps__timer_push(&p->shaped, &fl->sh->link);
    return 0;
}

/* What fl's shaper lets go now goes to the writer; a limit that is out
 * marks the pair as ending. */
static int release(ps__proxy *p, flow *fl, int64_t now)
{
    const ps_faults *f = faults_of(p, fl);
    int64_t us = ps__now_us();
    const unsigned char *data = NULL;
    size_t n;
    int rc = 0, end;

    while (rc == 0 && (n = ps__shape_ready(fl->sh, f, us, &data)) > 0) {
        rc = put(p, fl, data, n, now);
        ps__shape_took(fl->sh, f, n, us);
    }
    end = ps__shape_end(fl->sh, f);
    if (rc == 0 && end && !fl->c->ending) {
        fl->c->ending = end;
        fl->c->ender = fl;
    }
    if (!ps__shape_busy(fl->sh))
        ps__timer_remove(&fl->sh->link);
    return rc;
}

/* Bytes read from fl's reader: through its shaper under faults (or behind
 * bytes it still holds, which they must not overtake), else straight on. */
static int take(ps__proxy *p, flow *fl, const unsigned char *data, size_t n, int64_t now)
{
    const ps_faults *f = faults_of(p, fl);
    int rc;

    if (f == NULL && !ps__shape_busy(fl->sh))
        return put(p, fl, data, n, now);
    rc = join_shaped(p, fl, f);
    if (rc == 0)
        rc = ps__shape_push(fl->sh, f, data, n, ps__now_us(), ps__room(hold_limit(p), fl->out.cap));
    return rc < 0 ? rc : release(p, fl, now);
}

static int on_readable(ps__proxy *p, flow *fl, int64_t now)
{
    size_t room = ps__room(hold_limit(p), held(fl));
    ssize_t n = recv(fl->from->fd, p->buf, room < PS_BUFSIZE ? room : PS_BUFSIZE, 0);

    if (n > 0) {
        if (fl->dir == UP) {
            PS_ADD(p->w->stats.bytes_in, (uint64_t)n);
            fl->c->info.in += (uint64_t)n;
        }
        if (fl->c->t.on == &p->idle)
            ps__timer_restart(&p->idle, &fl->c->t, now);
        return take(p, fl, p->buf, (size_t)n, now);
    }
    if (n == 0) {
        fl->eof = 1;
        return 0;
    }
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
}

/* Pass fl's EOF on once everything before it is written: at once, after
 * close_delay (the shaper's close_at, on the shaped list), or under stall
 * never. */
static int pass_eof(ps__proxy *p, flow *fl)
{
    const ps_faults *f = ps__shape_faults(fl->sh, faults_of(p, fl));
    int rc;

    if (!fl->eof || fl->shut || unsent(fl) > 0 || (fl->sh != NULL && fl->sh->data.len > fl->sh->off))
        return 0;
    if (f != NULL && f->stall)
        return 0;
    if (f != NULL && f->close_delay_us > 0 && (fl->sh == NULL || fl->sh->close_at == 0)) {
        if ((rc = join_shaped(p, fl, f)) < 0)
            return rc;
        fl->sh->close_at = ps__now_us() + f->close_delay_us;
        return 0;
    }
    if (fl->sh != NULL && fl->sh->close_at > ps__now_us())
        return 0;
    if (fl->sh != NULL) {
        fl->sh->close_at = 0;
        if (!ps__shape_busy(fl->sh))  /* a timed end still waits on the list */
            ps__timer_remove(&fl->sh->link);
    }
    fl->shut = 1;
    return shutdown(fl->to->fd, SHUT_WR) < 0 && errno != ENOTCONN ? -errno : 0;
}

/* -- pairs ------------------------------------------------------------------ */
static void flow_init(flow *fl, pconn *c, int dir, pend *from, pend *to)
{
    fl->c = c;
    fl->dir = dir;
    fl->from = from;
    fl->to = to;
}

static void flow_free(flow *fl)
{
    if (fl->sh != NULL) {
        ps__timer_remove(&fl->sh->link);
        ps__shaper_free(fl->sh);
    }
    ps__buf_free(&fl->out);
}

static void unlink_pair(ps__proxy *p, pconn *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        p->all = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
}

/* close() takes each descriptor out of the epoll set too.  An ending pair
 * gives the side its limit was for a FIN (limit_data) or an RST
 * (reset_after); the other side a plain close. */
static void pair_close(ps__proxy *p, pconn *c, int why)
{
    ps__conn_event(p->w->srv, &c->info, PS_EV_CLOSE, why);
    ps__timer_remove(&c->t);
    unlink_pair(p, c);
    if (c->ending == PS__END_RST)
        ps__reset(c->ender->to->fd);
    else if (c->ending == PS__END_FIN)
        shutdown(c->ender->to->fd, SHUT_WR);
    close(c->client.fd);
    if (c->upstream.fd >= 0)
        close(c->upstream.fd);
    flow_free(&c->down);
    flow_free(&c->up);
    c->dead = 1;
    c->next = p->dead;
    p->dead = c;
    p->nconns--;
    PS_SUB(p->w->stats.active, 1);
}

static int quiet(const pconn *c)
{
    return unsent(&c->down) == 0 && unsent(&c->up) == 0;
}

/* The pair's clock: pending while bytes wait for a writer, idle while
 * nothing does, on neither while a shaper alone holds them. */
static void retime(ps__proxy *p, pconn *c, int64_t now)
{
    if (!quiet(c)) {
        if (c->t.on != &p->pending)
            ps__timer_restart(&p->pending, &c->t, now);
    } else if (ps__shape_busy(c->down.sh) || ps__shape_busy(c->up.sh)) {
        ps__timer_remove(&c->t);
    } else if (c->t.on != &p->idle) {
        ps__timer_restart(&p->idle, &c->t, now);
    }
}

static int watch(ps__proxy *p, pconn *c)
{
    uint32_t cw, uw;
    int rc;

    if (c->connecting)
        return end_watch(p, &c->upstream, EPOLLOUT);
    cw = (reading(p, &c->up) ? EPOLLIN : 0) | (unsent(&c->down) > 0 ? EPOLLOUT : 0);
    uw = (reading(p, &c->down) ? EPOLLIN : 0) | (unsent(&c->up) > 0 ? EPOLLOUT : 0);
    rc = end_watch(p, &c->client, cw);
    return rc < 0 ? rc : end_watch(p, &c->upstream, uw);
}

/* After an event: close c if a side failed (rc < 0; why says whose
 * failure), if a limit is out, or once both flows are shut; else pass
 * on what EOF can be, and watch for what it needs next. */
static void settle(ps__proxy *p, pconn *c, int rc, int why, int64_t now)
{
    if (rc == 0 && c->ending && unsent(c->ender) == 0) {
        pair_close(p, c, PS_WHY_FAULT);
        return;
    }
    if (rc == 0 && !c->connecting && (rc = pass_eof(p, &c->up)) == 0)
        rc = pass_eof(p, &c->down);
    if (rc == 0 && c->up.shut && c->down.shut) {
        pair_close(p, c, PS_WHY_EOF);
        return;
    }
    if (rc == 0 && p->draining && quiet(c)) {
        pair_close(p, c, PS_WHY_STOP);
        return;
    }
    if (rc == 0)
        rc = watch(p, c);
    if (rc < 0) {
        PS_ADD(p->w->stats.errors, 1);
        pair_close(p, c, why);
        return;
    }
    retime(p, c, now);
}

/* The upstream's non-blocking connect has finished: refused, or ready. */
static int connected(pconn *c)
{
    int err = 0;
    socklen_t len = sizeof err;

    if (getsockopt(c->upstream.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    if (err != 0)
        return -err;
    c->connecting = 0;
    return 0;
}

/* What came for end e of its pair.  Output first: it may make room to
 * read.  A hang-up goes to the reads, whose recv reports the end. */
static void on_end_event(ps__proxy *p, pend *e, uint32_t events, int64_t now)
{
    pconn *c = e->c;
    int is_up = e == &c->upstream;
    flow *out = is_up ? &c->up : &c->down;   /* written to e */
    flow *in = is_up ? &c->down : &c->up;    /* read from e */
    int why = is_up ? PS_WHY_UPSTREAM : PS_WHY_ERROR;
    int rc = 0;

    if (is_up && c->connecting) {
        rc = connected(c);
    } else if (events & EPOLLERR) {
        rc = -ECONNRESET;
    } else {
        if ((events & (EPOLLOUT | EPOLLHUP)) && unsent(out) > 0)
            rc = flush(p, out, now);
        if (rc == 0 && (events & (EPOLLIN | EPOLLHUP)) && reading(p, in))
            rc = on_readable(p, in, now);
        if (rc < 0 && rc != -EPIPE && rc != -ECONNRESET)
            why = PS_WHY_ERROR;
    }
    settle(p, c, rc, why, now);
}

/* -- opening pairs ------------------------------------------------------------ */
static int connect_upstream(ps__proxy *p, pconn *c)
{
    int one = 1, fd;

    fd = socket(p->up_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    c->upstream.fd = fd;
    if (p->up_addr.ss_family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&p->up_addr, p->up_len) == 0)
        return 0;
    if (errno == EINPROGRESS) {
        c->connecting = 1;
        return 0;
    }
    return errno == EAGAIN ? -ECONNREFUSED : -errno;  /* a unix listener's full backlog */
}

/* Under a timed end (close_after, reset_after_us) a flow's shaper is made
 * as the pair opens: its clock starts now. */
static int open_timed(ps__proxy *p, flow *fl)
{
    const ps_faults *f = faults_of(p, fl);

    return ps__timed_end(f) ? join_shaped(p, fl, f) : 0;
}

static pconn *pair_new(ps__proxy *p, int fd, const ps__conninfo *ci, int64_t now)
{
    pconn *c = calloc(1, sizeof *c);

    if (c == NULL)
        return NULL;
    c->client.c = c->upstream.c = c;
    c->client.fd = fd;
    c->upstream.fd = -1;
    flow_init(&c->down, c, DOWN, &c->upstream, &c->client);
    flow_init(&c->up, c, UP, &c->client, &c->upstream);
    c->info = *ci;
    c->t.since = now;
    c->next = p->all;
    if (p->all != NULL)
        p->all->prev = c;
    p->all = c;
    p->nconns++;
    PS_ADD(p->w->stats.active, 1);
    ps__conn_event(p->w->srv, &c->info, PS_EV_OPEN, 0);
    return c;
}

static void pair_open(ps__proxy *p, int fd, const ps__conninfo *ci, int64_t now)
{
    pconn *c = pair_new(p, fd, ci, now);
    int rc;

    if (c == NULL) {
        PS_ADD(p->w->stats.errors, 1);
        close(fd);
        return;
    }
    rc = connect_upstream(p, c);
    if (rc == 0)
        rc = open_timed(p, &c->up);
    if (rc == 0)
        rc = open_timed(p, &c->down);
    settle(p, c, rc, PS_WHY_UPSTREAM, now);
}

static int set_listening(ps__proxy *p, int on)
{
    int rc;

    if (on == p->listening)
        return 0;
    rc = ps__epoll_set(p->ep, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, p->w->fd, EPOLLIN, &p->listen_tag);
    if (rc == 0)
        p->listening = on;
    return rc;
}

static void accept_some(ps__proxy *p, int64_t now)
{
    ps__conninfo ci;
    int i, fd = -1, rc;

    for (i = 0; i < ACCEPT_BURST; i++) {
        rc = ps__accept(p->w, &fd, &ci);
        if (rc == PS__REJECTED)
            continue;
        if (rc == PS__EXHAUSTED && set_listening(p, 0) == 0)
            p->accept_at = now + PS__ACCEPT_BACKOFF_MS;
        if (rc != PS__TAKEN)
            return;
        pair_open(p, fd, &ci, now);
    }
}

/* -- the loop ------------------------------------------------------------------ */
static int64_t earliest(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int timeout_ms(const ps__proxy *p, int64_t now)
{
    const ps_config *cfg = &p->w->srv->cfg;
    int64_t t = p->draining ? p->grace_end : INT64_MAX;

    t = earliest(t, ps__timer_due(&p->idle, cfg->idle_ms));
    t = earliest(t, ps__timer_due(&p->pending, cfg->send_timeout_ms));
    t = earliest(t, ps__shaping_due_ms(&p->shaped));
    if (p->accept_at > 0)
        t = earliest(t, p->accept_at);
    if (t == INT64_MAX)
        return -1;
    return t <= now ? 0 : (int)earliest(t - now, 1 << 30);
}

/* Shapers that are due: release what they let go, pass on a delayed EOF. */
static void expire_shaped(ps__proxy *p, int64_t now)
{
    int64_t us = ps__now_us();
    ps__timer *t, *next;
    ps__shaper *sh;
    flow *fl;

    for (t = p->shaped.head; t != NULL; t = next) {
        next = t->next;
        sh = (ps__shaper *)t;
        fl = sh->owner;
        if (ps__shape_due(sh) > us)
            continue;
        if (next != NULL && ((ps__shaper *)next)->owner != NULL
            && ((flow *)((ps__shaper *)next)->owner)->c == fl->c)
            next = next->next;  /* settle may close the pair, and its other flow with it */
        settle(p, fl->c, release(p, fl, now), fl->dir == UP ? PS_WHY_UPSTREAM : PS_WHY_ERROR, now);
    }
}

static void expire(ps__proxy *p, int64_t now)
{
    const ps_config *cfg = &p->w->srv->cfg;

    while (now >= ps__timer_due(&p->idle, cfg->idle_ms)) {
        PS_ADD(p->w->stats.idle_closed, 1);
        pair_close(p, (pconn *)p->idle.head, PS_WHY_IDLE);
    }
    while (now >= ps__timer_due(&p->pending, cfg->send_timeout_ms)) {
        PS_ADD(p->w->stats.slow_closed, 1);
        pair_close(p, (pconn *)p->pending.head, PS_WHY_SLOW);
    }
    if (p->shaped.head != NULL)
        expire_shaped(p, now);
    if (p->accept_at > 0 && now >= p->accept_at && !p->draining)
        p->accept_at = set_listening(p, 1) == 0 ? 0 : now + PS__ACCEPT_BACKOFF_MS;
}

/* A stop: no new client, no more reading; what shapers hold is dropped, a
 * quiet pair closes now, the others get the grace to be written. */
static void begin_drain(ps__proxy *p, int64_t now)
{
    pconn *c, *next;

    p->draining = 1;
    p->grace_end = now + PS__STOP_GRACE_MS;
    p->accept_at = 0;
    set_listening(p, 0);
    ps__epoll_set(p->ep, EPOLL_CTL_DEL, p->w->srv->wake[0], 0, NULL);
    for (c = p->all; c != NULL; c = next) {
        next = c->next;
        settle(p, c, 0, PS_WHY_ERROR, now);
    }
}

static void close_all(ps__proxy *p, uint64_t *counter, int why)
{
    while (p->all != NULL) {
        if (counter != NULL)
            PS_ADD(*counter, 1);
        pair_close(p, p->all, why);
    }
}

/* A pair closed while handling an earlier event of the same batch may
 * still be named by a later one (close() took its descriptors out of the
 * set, but the batch was read before): closed pairs wait on the dead list
 * until the batch is done. */
static void bury(ps__proxy *p)
{
    pconn *c;

    while ((c = p->dead) != NULL) {
        p->dead = c->next;
        free(c);
    }
}

static int turn(ps__proxy *p, int timeout)
{
    int64_t now;
    int i, n;
    pend *e;

    n = epoll_pwait(p->ep, p->ready, MAX_EVENTS, timeout, p->w->sigmask);
    if (n < 0)
        return -errno;
    now = ps__now_ms();
    for (i = 0; i < n; i++) {
        e = p->ready[i].data.ptr;
        if (e == (void *)&p->wake_tag)
            continue;             /* the next turn sees the stopping flag */
        if (e == (void *)&p->listen_tag)
            accept_some(p, now);
        else if (!e->c->dead)
            on_end_event(p, e, p->ready[i].events, now);
    }
    bury(p);
    return 0;
}

static int serve(ps__worker *w)
{
    ps__proxy *p = w->proxy;
    int64_t now;
    int rc;

    for (;;) {
        now = ps__now_ms();
        if (!p->draining && ps__stopping(w->srv))
            begin_drain(p, now);
        if (p->draining && now >= p->grace_end)
            close_all(p, &w->stats.slow_closed, PS_WHY_SLOW);
        if (p->draining && p->nconns == 0)
            return 0;
        rc = turn(p, timeout_ms(p, now));
        if (rc < 0)
            return rc;
        expire(p, ps__now_ms());
        bury(p);
    }
}

static int open_proxy(ps__worker *w)
{
    ps__proxy *p = calloc(1, sizeof *p);
    int rc;

    if (p == NULL)
        return -ENOMEM;
    w->proxy = p;
    p->w = w;
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    if (p->ep < 0)
        return -errno;
    rc = ps__upstream_address(&w->srv->cfg, &p->up_addr, &p->up_len);
    if (rc == 0)
        rc = ps__epoll_set(p->ep, EPOLL_CTL_ADD, w->srv->wake[0], EPOLLIN, &p->wake_tag);
    return rc < 0 ? rc : set_listening(p, 1);
}

static void free_proxy(ps__worker *w)
{
    ps__proxy *p = w->proxy;

    if (p == NULL)
        return;
    close_all(p, NULL, PS_WHY_STOP);
    bury(p);
    if (p->ep >= 0)
        close(p->ep);
    free(p);
    w->proxy = NULL;
}

const ps__model ps__proxy_model = {"proxy", open_proxy, serve, NULL, free_proxy};

#endif /* PS__HAVE_EPOLL */
