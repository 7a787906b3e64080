/* epoll.c - the event-loop TCP model: one non-blocking loop per worker.
 *
 * All connections of a loop share its one receive buffer.  A connection
 * owns memory only for echo its client has not taken yet (out) and the
 * transform's state; while out is at or above cfg.max_unsent the loop stops
 * reading from it, and each read is sized so that its reply cannot take out
 * past max_unsent + PS_BUFSIZE (stamp's reply grows up to 30x its input):
 * a client that sends and never reads costs at most that, plus the line
 * stamp keeps (< PS__LINE_MAX).
 *
 * Timers cost O(1) per event: each connection sits on one of two lists,
 * kept in time order by moving a connection to the tail whenever its clock
 * restarts, so a loop turn looks only at the two heads.  The lists, the
 * stop and the shaped list below are the event loops' skeleton (evloop.c:
 * ps__evloop), shared with uring.c; this file is what epoll does in a turn.
 *   idle     nothing unsent; closed idle_ms after its last read;
 *   pending  echo unsent; cut off send_timeout_ms after its echo began to
 *            wait or its client last took a whole buffer (PS_BUFSIZE) of
 *            it: the allowance the threads model gives each send_all.
 *
 * Faults (fault.c): while any is set, a reply goes to the connection's
 * shaper instead of the socket, and the connection sits on a third list,
 * shaped, until what it holds has been released into out when due (and
 * its close_delay is over).  Shaped bytes count against max_unsent as
 * unsent ones do, and a connection waiting only for its shaper is on no
 * timer list: the delay is the server's, not an idle or slow client's.
 * The shaped list is in no order; a turn looks at each of its entries, so
 * faults cost O(shaped connections) per turn, and nothing while none is set.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#ifdef PS__HAVE_EPOLL
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>

#define MAX_EVENTS 256
#define ACCEPT_BURST 64         /* accepts per turn: connected clients get served too */

typedef struct econn econn;

struct econn {
    ps__timer t;         /* first: on loop->idle or loop->pending */
    int fd;
    uint32_t events;     /* what epoll watches for it now */
    int eof;             /* the client half-closed: flush, then close */
    ps__buf out;         /* unsent echo: out.data[off .. out.len) */
    size_t off;
    ps__xf xf;           /* the transform's state (stamp: the unfinished line) */
    ps__conninfo info;   /* its number, peer and bytes, for the log */
    ps__shaper *sh;      /* its replies under faults; NULL until the first */
    int ending;          /* PS__END_FIN, PS__END_RST: close once out is sent */
};

struct ps__loop {
    ps__evloop ev;       /* first: timers, draining, faults (evloop.c) */
    int ep;
    int listening;       /* the listening socket is in the epoll set */
    char listen_tag, wake_tag;  /* their addresses mark the two non-connection fds */
    struct epoll_event ev_ready[MAX_EVENTS];
    unsigned char buf[PS_BUFSIZE];
};

static void restart(ps__tlist *l, econn *c, int64_t now)
{
    ps__timer_restart(l, &c->t, now);
}

/* -- opening and closing connections ------------------------------------- */
static void conn_close(ps__loop *l, econn *c, int why);

static int conn_open(ps__loop *l, int fd, const ps__conninfo *ci, int64_t now)
{
    econn *c = calloc(1, sizeof *c);
    int rc;

    if (c == NULL)
        return -ENOMEM;
    c->fd = fd;
    c->events = EPOLLIN;
    ps__xf_init(&c->xf, l->ev.w->srv->cfg.transform);
    rc = ps__epoll_set(l->ep, EPOLL_CTL_ADD, fd, c->events, c);
    if (rc < 0) {
        free(c);
        return rc;
    }
    c->t.since = now;
    c->info = *ci;
    ps__timer_push(&l->ev.idle, &c->t);
    l->ev.nconns++;
    PS_ADD(l->ev.w->stats.active, 1);
    ps__conn_event(l->ev.w->srv, &c->info, PS_EV_OPEN, 0);
    if (ps__shaping_open(&l->ev.faults, l->ev.w->srv, &c->sh, c, c->info.id, &c->t, &l->ev.idle) < 0) {
        PS_ADD(l->ev.w->stats.errors, 1);
        conn_close(l, c, PS_WHY_ERROR);  /* closes fd: the caller must not */
    }
    return 0;
}

/* close() also takes the descriptor out of the epoll set.  Events later in
 * the same epoll_wait batch never name c: each connection appears at most
 * once per batch, and only timers and stopping close other connections,
 * outside the batch. */
static void conn_close(ps__loop *l, econn *c, int why)
{
    ps__conn_event(l->ev.w->srv, &c->info, PS_EV_CLOSE, why);
    ps__timer_remove(&c->t);
    if (c->sh != NULL) {
        ps__timer_remove(&c->sh->link);
        ps__shaper_free(c->sh);
    }
    if (c->ending == PS__END_RST)
        ps__reset(c->fd);
    else if (c->ending == PS__END_FIN)
        shutdown(c->fd, SHUT_WR);  /* the FIN goes before any RST for unread input */
    close(c->fd);
    ps__xf_free(&c->xf);
    ps__buf_free(&c->out);
    free(c);
    l->ev.nconns--;
    PS_SUB(l->ev.w->stats.active, 1);
}

/* -- echo: reading, queueing, sending ------------------------------------ */
/* Echo the client has not taken yet. */
static size_t unsent(const econn *c)
{
    return c->out.len - c->off;
}

/* The memory its echo holds: the unsent buffer and what its shaper keeps,
 * capacities counted (what was allocated, not only what is used). */
static size_t held(const econn *c)
{
    return c->out.cap + ps__shape_held(c->sh);
}

static int reading(const ps__loop *l, const econn *c)
{
    return !c->eof && !c->ending && !l->ev.draining && held(c) < l->ev.w->srv->cfg.max_unsent;
}

/* Tell epoll what c waits for now: input unless it has too much echo
 * unsent (backpressure), output while any is. */
static int watch(ps__loop *l, econn *c)
{
    uint32_t want = (reading(l, c) ? EPOLLIN : 0) | (unsent(c) > 0 ? EPOLLOUT : 0);
    int rc;

    if (want == c->events)
        return 0;
    rc = ps__epoll_set(l->ep, EPOLL_CTL_MOD, c->fd, want, c);
    if (rc == 0)
        c->events = want;
    return rc;
}

/* The most unsent echo a connection can hold: reading stops at max_unsent,
 * and one read's reply fits in the PS_BUFSIZE beyond it (read_size). */
static size_t unsent_limit(const ps__loop *l)
{
    return l->ev.w->srv->cfg.max_unsent + PS_BUFSIZE;
}

/* Keep n bytes the socket did not take, after what is already waiting;
 * what was sent from the front makes room first.  The buffer never grows
 * past unsent_limit: its capacity is part of the bound. */
static int queue(ps__loop *l, econn *c, const unsigned char *p, size_t n)
{
    return ps__buf_queue(&c->out, &c->off, p, n, ps__room(unsent_limit(l), ps__shape_held(c->sh)));
}

/* Send n bytes of echo: straight to the socket when nothing waits before
 * them, the rest (or all, behind earlier echo) kept for EPOLLOUT. */
static int conn_put(ps__loop *l, econn *c, const unsigned char *p, size_t n, int64_t now)
{
    ssize_t k;

    if (unsent(c) == 0 && n > 0) {
        k = send(c->fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        if (k > 0) {
            PS_ADD(l->ev.w->stats.bytes_out, (uint64_t)k);
            c->info.out += (uint64_t)k;
            p += k;
            n -= (size_t)k;
        }
        if (n == 0)
            return 0;
        restart(&l->ev.pending, c, now);  /* this echo begins to wait */
    }
    return queue(l, c, p, n);
}

static void drop_out(econn *c)
{
    ps__buf_free(&c->out);
    c->off = 0;
}

/* Send what waits (EPOLLOUT said there is room).  Memory goes back as soon
 * as nothing waits; the idle clock starts then, as after the threads
 * model's send_all. */
static int flush(ps__loop *l, econn *c, int64_t now)
{
    ssize_t k = send(c->fd, c->out.data + c->off, unsent(c), MSG_NOSIGNAL);

    if (k < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    PS_ADD(l->ev.w->stats.bytes_out, (uint64_t)k);
    c->info.out += (uint64_t)k;
    c->off += (size_t)k;
    c->t.taken += (size_t)k;
    if (unsent(c) == 0) {
        drop_out(c);
        if (ps__shape_busy(c->sh))
            ps__timer_remove(&c->t);  /* its shaper's turn: no clock runs */
        else
            restart(&l->ev.idle, c, now);
    } else if (c->t.taken >= PS_BUFSIZE) {
        restart(&l->ev.pending, c, now);
    }
    return 0;
}

/* -- faults (fault.c: ps__shaping) -------------------------------------- */
/* Hand what c's shaper lets go now to the socket (conn_put); once it holds
 * nothing, c's idle clock starts again (if nothing waits unsent either). */
static int release(ps__loop *l, econn *c, int64_t now)
{
    const ps_faults *f = ps__shaping_seen(&l->ev.faults);
    int64_t us = ps__now_us();
    const unsigned char *p = NULL;
    size_t n;
    int rc = 0;

    while (rc == 0 && (n = ps__shape_ready(c->sh, f, us, &p)) > 0) {
        rc = conn_put(l, c, p, n, now);
        ps__shape_took(c->sh, f, n, us);
    }
    if (rc == 0 && ps__shaping_released(&l->ev.faults, c->sh, &c->ending) && c->t.on == NULL && unsent(c) == 0)
        restart(&l->ev.idle, c, now);
    return rc;
}

/* A reply under faults (or behind replies still shaped, which it must not
 * overtake) goes to c's shaper, and what is due at once goes out. */
static int shape(ps__loop *l, econn *c, const unsigned char *p, size_t n, int64_t now)
{
    int rc = ps__shaping_push(&l->ev.faults, &c->sh, c, c->info.id, &c->t, &l->ev.idle, p, n,
                              ps__room(unsent_limit(l), c->out.cap));

    return rc < 0 ? rc : release(l, c, now);
}

/* A transform's reply (m bytes at out, or a failure) goes to c; conn_put
 * copies whatever the socket does not take, so the transform's buffer is
 * free again afterwards. */
static int conn_reply(ps__loop *l, econn *c, ssize_t m, const unsigned char *out, int64_t now)
{
    int rc;

    if (m < 0)
        rc = (int)m;
    else if (ps__faults(l->ev.w->srv, &l->ev.faults.view) != NULL || ps__shape_busy(c->sh))
        rc = shape(l, c, out, (size_t)m, now);
    else
        rc = conn_put(l, c, out, (size_t)m, now);
    ps__xf_release(&c->xf);  /* a burst's reply buffer goes back */
    return rc;
}

/* The one place a transform meets a connection.  data is the loop's shared
 * buffer; a reply longer than its input (stamp) is fine. */
static int conn_feed(ps__loop *l, econn *c, unsigned char *data, size_t n, int64_t now)
{
    const unsigned char *out = NULL;
    ssize_t m = ps__xf_feed(&c->xf, data, n, &out);

    return conn_reply(l, c, m, out, now);
}

/* The client half-closed: what the transform still owes (stamp: a last
 * line without its \n) goes out before the close that follows the echo. */
static int conn_finish(ps__loop *l, econn *c, int64_t now)
{
    const unsigned char *out = NULL;
    ssize_t m = ps__xf_finish(&c->xf, &out);

    return conn_reply(l, c, m, out, now);
}

/* How much the next read from c may take: its reply must fit in what is
 * left below unsent_limit (reading() has checked len < max_unsent). */
static size_t read_size(const ps__loop *l, const econn *c)
{
    size_t h = held(c);

    return ps__xf_read_max(&c->xf, h < unsent_limit(l) ? unsent_limit(l) - h : 0);
}

static int on_readable(ps__loop *l, econn *c, int64_t now)
{
    ssize_t n = recv(c->fd, l->buf, read_size(l, c), 0);

    if (n > 0) {
        PS_ADD(l->ev.w->stats.bytes_in, (uint64_t)n);
        c->info.in += (uint64_t)n;
        if (c->t.on == &l->ev.idle)
            restart(&l->ev.idle, c, now);
        return conn_feed(l, c, l->buf, (size_t)n, now);
    }
    if (n == 0) {
        c->eof = 1;
        return conn_finish(l, c, now);
    }
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
}

/* After an event: close c if it failed or has said and heard everything,
 * else watch for what it needs next. */
static void settle(ps__loop *l, econn *c, int rc)
{
    if (rc == 0 && unsent(c) == 0 && c->ending) {
        conn_close(l, c, PS_WHY_FAULT);
        return;
    }
    if (rc == 0 && unsent(c) == 0 && (l->ev.draining || (c->eof && !ps__shape_busy(c->sh)))
        && (l->ev.draining || !ps__shaping_delay_close(&l->ev.faults, &c->sh, c, c->info.id, &c->t))) {
        conn_close(l, c, c->eof ? PS_WHY_EOF : PS_WHY_STOP);
        return;
    }
    if (rc == 0)
        rc = watch(l, c);
    if (rc < 0) {
        PS_ADD(l->ev.w->stats.errors, 1);
        conn_close(l, c, PS_WHY_ERROR);
    }
}

/* Output first: it may make room to read.  EPOLLHUP goes to whichever side
 * c is waiting on, whose call then reports the end. */
static void on_conn_event(ps__loop *l, econn *c, uint32_t events, int64_t now)
{
    int rc = 0;

    if (events & EPOLLERR) {
        PS_ADD(l->ev.w->stats.errors, 1);  /* reset or unreachable: no echo can arrive */
        conn_close(l, c, PS_WHY_ERROR);
        return;
    }
    if ((events & (EPOLLOUT | EPOLLHUP)) && unsent(c) > 0)
        rc = flush(l, c, now);
    if (rc == 0 && (events & (EPOLLIN | EPOLLHUP)) && reading(l, c))
        rc = on_readable(l, c, now);
    settle(l, c, rc);
}

/* -- accepting ----------------------------------------------------------- */
static int set_listening(ps__loop *l, int on)
{
    int rc;

    if (on == l->listening)
        return 0;
    rc = ps__epoll_set(l->ep, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, l->ev.w->fd, EPOLLIN, &l->listen_tag);
    if (rc == 0)
        l->listening = on;
    return rc;
}

/* Take what waits in the backlog, a burst at a time so that connected
 * clients get served too.  Out of descriptors or memory, the connection
 * stays in the backlog and epoll would report it again at once: pause
 * accepting for a while rather than spin. */
static void accept_some(ps__loop *l, int64_t now)
{
    ps__worker *w = l->ev.w;
    ps__conninfo ci;
    int i, fd = -1, rc;

    for (i = 0; i < ACCEPT_BURST; i++) {
        rc = ps__accept(w, &fd, &ci);
        if (rc == PS__REJECTED)
            continue;
        if (rc == PS__EXHAUSTED && set_listening(l, 0) == 0)
            l->ev.accept_at = now + PS__ACCEPT_BACKOFF_MS;
        if (rc != PS__TAKEN)
            return;
        if (conn_open(l, fd, &ci, now) < 0) {
            PS_ADD(w->stats.errors, 1);
            close(fd);
        }
    }
}

/* -- the skeleton's operations (evloop.c: ps__evloop) ---------------------- */
static ps__loop *loop_of(ps__evloop *ev)
{
    return (ps__loop *)ev;  /* ev is its first member */
}

static void op_close(ps__evloop *ev, void *conn, int why)
{
    conn_close(loop_of(ev), conn, why);
}

static void op_release(ps__evloop *ev, void *conn, int64_t now)
{
    settle(loop_of(ev), conn, release(loop_of(ev), conn, now));
}

static int op_quiet(const void *conn)
{
    return unsent(conn) == 0;
}

static void op_settle_drain(ps__evloop *ev, void *conn)
{
    settle(loop_of(ev), conn, 0);
}

/* The wake pipe leaves the set too: it stays readable and would wake
 * every turn. */
static void op_stop_accepting(ps__evloop *ev)
{
    ps__loop *l = loop_of(ev);

    set_listening(l, 0);
    ps__epoll_set(l->ep, EPOLL_CTL_DEL, l->ev.w->srv->wake[0], 0, NULL);
}

static int op_accept_again(ps__evloop *ev)
{
    return set_listening(loop_of(ev), 1);
}

/* One look at what is ready, without sleeping: a count, 0, or -errno. */
static int poll_events(void *arg)
{
    ps__loop *l = arg;
    int n = epoll_wait(l->ep, l->ev_ready, MAX_EVENTS, 0);

    return n < 0 ? -errno : n;
}

/* epoll_wait, and with spin_us, poll without sleeping that long first (but
 * never past the first deadline).  The sleeping wait lets signals in (see
 * ps_server_serve); one that comes while spinning waits for it. */
static int wait_events(ps__loop *l, int timeout_ms)
{
    int n = ps__spin(l->ev.w->srv, timeout_ms, poll_events, l);

    if (n != 0)
        return n;
    n = epoll_pwait(l->ep, l->ev_ready, MAX_EVENTS, timeout_ms, l->ev.w->sigmask);
    return n < 0 ? -errno : n;
}

static void handle(ps__loop *l, struct epoll_event *e, int64_t now)
{
    if (e->data.ptr == &l->wake_tag)
        return;             /* the next turn sees the stopping flag */
    if (e->data.ptr == &l->listen_tag)
        accept_some(l, now);
    else
        on_conn_event(l, e->data.ptr, e->events, now);
}

static int op_turn(ps__evloop *ev, int timeout_ms)
{
    ps__loop *l = loop_of(ev);
    int64_t now;
    int i, n = wait_events(l, timeout_ms);

    if (n < 0)
        return n;
    now = ps__now_ms();
    for (i = 0; i < n; i++)
        handle(l, &l->ev_ready[i], now);
    return 0;
}

static const ps__evops epoll_ops = {
    op_turn, op_close, op_release, op_quiet, op_settle_drain, op_stop_accepting, op_accept_again, NULL, NULL,
};

static int serve(ps__worker *w)
{
    return ps__evloop_run(&w->loop->ev);
}

static int open_loop(ps__worker *w)
{
    ps__loop *l = calloc(1, sizeof *l);
    int rc;

    if (l == NULL)
        return -ENOMEM;
    ps__evloop_init(&l->ev, w, &epoll_ops);
    w->loop = l;
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    if (l->ep < 0)
        return -errno;
    rc = ps__epoll_set(l->ep, EPOLL_CTL_ADD, w->srv->wake[0], EPOLLIN, &l->wake_tag);
    if (rc < 0)
        return rc;
    return set_listening(l, 1);
}

static void free_loop(ps__worker *w)
{
    ps__loop *l = w->loop;

    if (l == NULL)
        return;
    ps__evloop_close_shaped(&l->ev);
    ps__evloop_close_list(&l->ev, &l->ev.idle, NULL, PS_WHY_STOP);
    ps__evloop_close_list(&l->ev, &l->ev.pending, NULL, PS_WHY_STOP);
    if (l->ep >= 0)
        close(l->ep);
    free(l);
    w->loop = NULL;
}

const ps__model ps__epoll_model = {"epoll", open_loop, serve, NULL, free_loop};

#endif /* PS__HAVE_EPOLL; without it the threads model serves TCP and Python
        * offers no "epoll" (pysock.config.c_features) */

