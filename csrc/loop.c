/* loop.c - what every serving loop uses, written once: clocks, the stop
 * flag, waiting on a descriptor and the wake pipe, the connection limit,
 * taking a connection off a listening socket, spinning before sleep, and
 * changing what an epoll set watches.
 * The models (tcp.c, epoll.c, uring.c, udp.c) call these, and their timer
 * lists live here; nothing here calls them. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

int64_t ps__now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ps__now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int ps__stopping(const ps_server *s)
{
    return __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE);
}

static int poll_masked(struct pollfd *p, nfds_t nfds, int timeout_ms, const sigset_t *mask)
{
#ifdef PS__HAVE_PPOLL
    struct timespec ts;

    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000;
    return ppoll(p, nfds, timeout_ms >= 0 ? &ts : NULL, mask);
#else
    /* Without ppoll a signal in the gap before poll() waits for the next
     * event, as it always does with plain poll(). */
    sigset_t cur;
    int n, err;

    if (mask != NULL)
        pthread_sigmask(SIG_SETMASK, mask, &cur);
    n = poll(p, nfds, timeout_ms);
    err = errno;
    if (mask != NULL)
        pthread_sigmask(SIG_SETMASK, &cur, NULL);
    errno = err;
    return n;
#endif
}

/* Wait until fd is ready for events, the wake pipe has a byte (wake_fd < 0:
 * don't watch it) or timeout_ms passes (-1: no limit).  A signal comes back
 * as -EINTR: the caller returns to Python rather than waiting again.  mask
 * (NULL: the thread's own) is the signal mask to wait with: see
 * ps_server_serve. */
int ps__wait(int fd, short events, int wake_fd, int timeout_ms, const sigset_t *mask)
{
    struct pollfd p[2];
    int n;

    p[0].fd = fd;
    p[0].events = events;
    p[0].revents = 0;
    p[1].fd = wake_fd;
    p[1].events = POLLIN;
    p[1].revents = 0;
    n = mask != NULL ? poll_masked(p, wake_fd >= 0 ? 2 : 1, timeout_ms, mask)
                     : poll(p, wake_fd >= 0 ? 2 : 1, timeout_ms);
    if (n < 0)
        return -errno;
    if (n == 0)
        return PS__TIMEOUT;
    if (p[1].revents)
        return PS__WOKEN;
    return PS__READY;
}

uint64_t ps__active(const ps_server *s)
{
    uint64_t n = 0;
    int i;

    for (i = 0; i < s->nw; i++)
        n += PS_LOAD(s->w[i].stats.active);
    return n;
}

int ps__over_limit(const ps_server *s)
{
    return s->cfg.max_conns > 0 && ps__active(s) >= (uint64_t)s->cfg.max_conns;
}

/* accept() failed: most reasons concern one client only.  Out of
 * descriptors or memory, the connection stays in the backlog and a wait
 * would report it again at once: the caller backs off rather than spin. */
int ps__accept_failed(ps__worker *w, int err)
{
    if (err == EAGAIN || err == EWOULDBLOCK)
        return PS__EMPTY;      /* the client left before we took it */
    if (err == EINTR)
        return -EINTR;
    if (ps__stopping(w->srv))
        return PS__EMPTY;      /* EINVAL: ps_server_stop has shut the listener down */
    PS_ADD(w->stats.errors, 1);
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)
        return PS__EXHAUSTED;
    return PS__EMPTY;          /* ECONNABORTED, EPROTO, EPERM: that client only */
}

/* "127.0.0.1:50112" or "[::1]:50112" for the log; "" over AF_UNIX. */
static void peer_name(int fd, char *out, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN];
    int port;

    out[0] = '\0';
    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
        return;
    port = ps__addr_text(&ss, host, sizeof host);
    if (port >= 0)
        snprintf(out, n, ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host, port);
}

void ps__conn_event(const ps_server *s, const ps__conninfo *ci, int kind, int why)
{
    ps_event e;

    if (!s->cfg.log_events)
        return;
    memset(&e, 0, sizeof e);
    e.kind = (uint32_t)kind;
    e.why = (uint32_t)why;
    e.conn = ci->id;
    e.bytes_in = ci->in;
    e.bytes_out = ci->out;
    memcpy(e.peer, ci->peer, sizeof e.peer);
    /* Non-blocking: a log that cannot keep up loses a line, the server
     * nothing.  The result is ignored on purpose. */
    if (write(s->cfg.event_fd, &e, sizeof e) < 0)
        return;
}

int ps__accepted(ps__worker *w, int fd, ps__conninfo *ci)
{
    int one = 1;

    PS_ADD(w->stats.accepted, 1);
    memset(ci, 0, sizeof *ci);
    ci->id = PS_ADD(w->srv->conns, 1);
    if (w->srv->cfg.log_events)
        peer_name(fd, ci->peer, sizeof ci->peer);
    if (ps__over_limit(w->srv)) {
        PS_ADD(w->stats.rejected, 1);
        ps__conn_event(w->srv, ci, PS_EV_REJECTED, 0);
        close(fd);
        return PS__REJECTED;
    }
    if (w->srv->cfg.family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return PS__TAKEN;
}

int ps__accept(ps__worker *w, int *out, ps__conninfo *ci)
{
    int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    int rc;

    if (fd < 0)
        return ps__accept_failed(w, errno);
    rc = ps__accepted(w, fd, ci);
    if (rc == PS__TAKEN)
        *out = fd;
    return rc;
}

int ps__spin(const ps_server *s, int timeout_ms, int (*attempt)(void *), void *arg)
{
    int64_t spin_us = s->cfg.spin_us, end;
    int n;

    if (timeout_ms >= 0 && (int64_t)timeout_ms * 1000 < spin_us)
        spin_us = (int64_t)timeout_ms * 1000;
    if (spin_us <= 0)
        return 0;
    end = ps__now_us() + spin_us;
    do
        n = attempt(arg);
    while (n == 0 && ps__now_us() < end && !ps__stopping(s));
    return n;
}

/* -- timer lists --------------------------------------------------------- */
void ps__timer_remove(ps__timer *t)
{
    ps__tlist *l = t->on;

    if (l == NULL)
        return;  /* on no list */
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        l->head = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    else
        l->tail = t->prev;
    t->prev = t->next = NULL;
    t->on = NULL;
}

void ps__timer_push(ps__tlist *l, ps__timer *t)
{
    t->on = l;
    t->prev = l->tail;
    t->next = NULL;
    if (l->tail != NULL)
        l->tail->next = t;
    else
        l->head = t;
    l->tail = t;
}

/* Restart t's clock on list l: its deadline is now the latest of l's. */
void ps__timer_restart(ps__tlist *l, ps__timer *t, int64_t now)
{
    ps__timer_remove(t);
    t->since = now;
    t->taken = 0;
    ps__timer_push(l, t);
}

/* When l's oldest timer has run ms.  Clocks are read in whole ms, truncated:
 * the 1 more makes sure a full ms have passed, never a hair less. */
int64_t ps__timer_due(const ps__tlist *l, int ms)
{
    return ms > 0 && l->head != NULL ? l->head->since + ms + 1 : INT64_MAX;
}

#ifdef PS__HAVE_EPOLL
#include <sys/epoll.h>

int ps__epoll_set(int ep, int op, int fd, uint32_t events, void *ptr)
{
    struct epoll_event e;

    memset(&e, 0, sizeof e);
    e.events = events;
    e.data.ptr = ptr;
    return epoll_ctl(ep, op, fd, &e) < 0 ? -errno : 0;
}
#endif
