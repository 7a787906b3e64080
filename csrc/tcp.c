/* tcp.c - the blocking TCP model: an accept loop in each worker's thread and
 * one C thread per connection (recv -> transform -> send everything).
 * AF_UNIX stream sockets take the same path.
 *
 * Under faults (fault.c) a reply goes to the connection's shaper, and the
 * thread sends what it lets go when due, reading meanwhile (while what it
 * holds is under max_unsent): its waits end at the shaper's next time. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

/* A connection thread needs its 64 KiB buffer and little else. */
#define CONN_STACK (256 * 1024)

struct ps__conn {
    ps_server *srv;
    ps_stats *stats;     /* the counters of the worker that accepted it */
    int fd;
    ps__conninfo info;   /* its number, peer and bytes, for the log */
    ps__fview faults;    /* the server's faults as this thread last saw them */
    ps__shaper *sh;      /* its replies under faults; NULL until the first */
    int eof;             /* the client has closed its side */
    int ending;          /* PS__END_FIN, PS__END_RST: the limit that ended it */
    pthread_t tid;
    ps__conn *next;
};

static int64_t deadline_after(int ms)
{
    return ms > 0 ? ps__now_ms() + ms : INT64_MAX;
}

static int ms_until(int64_t deadline)
{
    int64_t left;

    if (deadline == INT64_MAX)
        return -1;
    left = deadline - ps__now_ms();
    return left > 0 ? (int)left : 0;
}

/* Send all n bytes.  A client that reads nothing for send_timeout_ms is cut
 * off (-ETIMEDOUT); a stop leaves STOP_GRACE_MS to finish this echo. */
static int send_all(ps__conn *c, const unsigned char *p, size_t n)
{
    ps_server *s = c->srv;
    int64_t deadline = deadline_after(s->cfg.send_timeout_ms);
    int wake = s->wake[0];
    int rc;

    while (n > 0) {
        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);

        if (k >= 0) {
            PS_ADD(c->stats->bytes_out, (uint64_t)k);
            c->info.out += (uint64_t)k;
            p += k;
            n -= (size_t)k;
            continue;
        }
        /* EINTR cannot happen here: connection threads block all signals. */
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        rc = ps__wait(c->fd, POLLOUT, wake, ms_until(deadline), NULL);
        if (rc == PS__WOKEN) {
            wake = -1;
            if (deadline > ps__now_ms() + PS__STOP_GRACE_MS)
                deadline = ps__now_ms() + PS__STOP_GRACE_MS;
        } else if (rc == PS__TIMEOUT) {
            return -ETIMEDOUT;
        } else if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

/* One recv for ps__spin: non-zero once it got anything but "nothing yet". */
typedef struct recv_try {
    int fd;
    unsigned char *buf;
    size_t len;
    ssize_t n;
    int err;
} recv_try;

static int try_recv(void *arg)
{
    recv_try *t = arg;

    t->n = recv(t->fd, t->buf, t->len, 0);
    t->err = t->n < 0 ? errno : 0;
    return t->n >= 0 || (t->err != EAGAIN && t->err != EWOULDBLOCK);
}

/* recv, and with spin_us, keep trying that long before the caller sleeps
 * in poll(): a busy core buys a faster answer.  errno is the last recv's. */
static ssize_t recv_spin(ps__conn *c, unsigned char *buf, size_t len)
{
    ps_server *s = c->srv;
    recv_try t = {c->fd, buf, len, 0, 0};

    if (!try_recv(&t))
        ps__spin(s, -1, try_recv, &t);
    errno = t.err;
    return t.n;
}

/* A failed send or reply, counted: what ends the connection (PS_WHY_*). */
static int failed(ps__conn *c, int rc)
{
    if (rc == -ETIMEDOUT) {
        PS_ADD(c->stats->slow_closed, 1);
        return PS_WHY_SLOW;
    }
    PS_ADD(c->stats->errors, 1);
    return PS_WHY_ERROR;
}

static const ps_faults *faults_seen(const ps__conn *c)
{
    return c->faults.on ? &c->faults.f : NULL;
}

/* Send what the shaper lets go now; 0, or why the connection ends (a
 * failed send, or a limit reached: PS_WHY_FAULT). */
static int release(ps__conn *c)
{
    const ps_faults *f = faults_seen(c);
    const unsigned char *p = NULL;
    size_t n;
    int rc;

    if (c->sh == NULL)
        return 0;
    while ((n = ps__shape_ready(c->sh, f, ps__now_us(), &p)) > 0) {
        rc = send_all(c, p, n);
        ps__shape_took(c->sh, f, n, ps__now_us());
        if (rc < 0)
            return failed(c, rc);
    }
    c->ending = ps__shape_end(c->sh, f);
    return c->ending ? PS_WHY_FAULT : 0;
}

/* A reply under faults (or behind shaped ones) goes to the shaper. */
static int shape(ps__conn *c, const unsigned char *p, size_t n)
{
    int rc;

    if (c->sh == NULL && (c->sh = ps__shaper_new(faults_seen(c), c, c->info.id)) == NULL)
        return failed(c, -ENOMEM);
    rc = ps__shape_push(c->sh, faults_seen(c), p, n, ps__now_us(), c->srv->cfg.max_unsent);
    return rc < 0 ? failed(c, rc) : release(c);
}

/* Send a reply (n bytes at p, or a failure); 0, or why the connection
 * ends.  Either way the transform's reply buffer, grown for a burst, goes
 * back. */
static int send_reply(ps__conn *c, ps__xf *x, const unsigned char *p, ssize_t n)
{
    int rc;

    if (n < 0)
        rc = failed(c, (int)n);
    else if (ps__faults(c->srv, &c->faults) != NULL || ps__shape_busy(c->sh))
        rc = shape(c, p, (size_t)n);
    else if ((rc = send_all(c, p, (size_t)n)) < 0)
        rc = failed(c, rc);
    ps__xf_release(x);
    return rc;
}

/* The client has closed and heard everything: close_delay holds our close
 * that long, and stall for good, as a hung server's would (idle_timeout
 * or a stop ends it). */
static int linger_close(ps__conn *c)
{
    const ps_faults *f = ps__shape_faults(c->sh, faults_seen(c));
    int idle_ms = c->srv->cfg.idle_ms;
    int64_t end;

    if (f != NULL && f->stall) {
        if (ps__wait(c->srv->wake[0], POLLIN, -1, idle_ms > 0 ? idle_ms : -1, NULL) != PS__TIMEOUT)
            return PS_WHY_STOP;
        PS_ADD(c->stats->idle_closed, 1);
        return PS_WHY_IDLE;
    }
    if (f == NULL || f->close_delay_us == 0)
        return PS_WHY_EOF;
    end = ps__now_us() + f->close_delay_us;
    while (ps__now_us() < end)
        if (ps__wait(c->srv->wake[0], POLLIN, -1, (int)((end - ps__now_us() + 999) / 1000), NULL) != PS__TIMEOUT)
            return PS_WHY_STOP;
    return PS_WHY_EOF;
}

/* Wait for input (when it may read), the shaper's next time, idle_timeout
 * (when the shaper holds nothing) or a stop. */
static int wait_next(ps__conn *c, int reading)
{
    ps_server *s = c->srv;
    int timeout = s->cfg.idle_ms > 0 ? s->cfg.idle_ms : -1;
    int64_t due = ps__shape_due(c->sh);

    if (ps__shape_busy(c->sh)) {
        int64_t left = due - ps__now_us();

        timeout = left > 0 ? (int)((left + 999) / 1000) : 0;
    }
    if (!reading)
        return ps__wait(s->wake[0], POLLIN, -1, timeout, NULL) == PS__TIMEOUT ? PS__TIMEOUT : PS__WOKEN;
    return ps__wait(c->fd, POLLIN, s->wake[0], timeout, NULL);
}

/* Answer until the client closes its side, goes idle, stops reading or the
 * server stops; which of them it was (PS_WHY_*), for the log.  Every byte read is answered before the next read, and what
 * the transform still owes at the client's EOF (stamp: a last line without
 * its \n) is sent before our FIN, so a client that half-closes gets it all.
 * A read is sized so that its reply fits in max_unsent (stamp grows up to
 * 30x): a client that never reads pins at most that and the buffer. */
static int serve_conn(ps__conn *c, ps__xf *x)
{
    ps_server *s = c->srv;
    unsigned char buf[PS_BUFSIZE];
    const unsigned char *out = NULL;
    int rc, reading;

    while (!ps__stopping(s)) {
        if ((rc = release(c)) != 0)
            return rc;
        if (c->eof && !ps__shape_busy(c->sh))
            return linger_close(c);
        reading = !c->eof && ps__shape_held(c->sh) < s->cfg.max_unsent;
        if (reading) {
            ssize_t n = recv_spin(c, buf, ps__xf_read_max(x, s->cfg.max_unsent - ps__shape_held(c->sh)));

            if (n > 0) {
                PS_ADD(c->stats->bytes_in, (uint64_t)n);
                c->info.in += (uint64_t)n;
                n = ps__xf_feed(x, buf, (size_t)n, &out);
                if ((rc = send_reply(c, x, out, n)) != 0)
                    return rc;
                continue;
            }
            if (n == 0) {
                c->eof = 1;
                n = ps__xf_finish(x, &out);
                if ((rc = send_reply(c, x, out, n)) != 0)
                    return rc;
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                PS_ADD(c->stats->errors, 1);
                return PS_WHY_ERROR;
            }
        }
        rc = wait_next(c, reading);
        if (rc == PS__TIMEOUT && !ps__shape_busy(c->sh)) {
            PS_ADD(c->stats->idle_closed, 1);
            return PS_WHY_IDLE;
        }
        if (rc == PS__WOKEN)
            return PS_WHY_STOP;
    }
    return PS_WHY_STOP;
}

/* Under a timed end (close_after, reset_after_us) the shaper is made as
 * the connection opens: its clock starts now.  0, or why it ends. */
static int open_timed(ps__conn *c)
{
    if (!ps__timed_end(ps__faults(c->srv, &c->faults)))
        return 0;
    if ((c->sh = ps__shaper_new(faults_seen(c), c, c->info.id)) == NULL)
        return failed(c, -ENOMEM);
    return 0;
}

static void *conn_main(void *arg)
{
    ps__conn *c = arg;
    ps_server *s = c->srv;
    ps__xf x;
    int why;

    ps__xf_init(&x, s->cfg.transform);
    ps__conn_event(s, &c->info, PS_EV_OPEN, 0);
    why = open_timed(c);
    if (why == 0)
        why = serve_conn(c, &x);
    ps__xf_free(&x);
    ps__shaper_free(c->sh);
    if (c->ending == PS__END_RST)
        ps__reset(c->fd);
    else if (c->ending == PS__END_FIN)
        shutdown(c->fd, SHUT_WR);  /* the FIN goes before any RST for unread input */
    close(c->fd);
    ps__conn_event(s, &c->info, PS_EV_CLOSE, why);
    PS_SUB(c->stats->active, 1);
    pthread_mutex_lock(&s->lock);
    c->next = s->done;
    s->done = c;
    s->threads--;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Join the threads that have finished, so none is left behind. */
static void reap(ps_server *s)
{
    ps__conn *c, *next;

    pthread_mutex_lock(&s->lock);
    c = s->done;
    s->done = NULL;
    pthread_mutex_unlock(&s->lock);
    for (; c != NULL; c = next) {
        next = c->next;
        pthread_join(c->tid, NULL);
        free(c);
    }
}

static void drain(ps_server *s)
{
    pthread_mutex_lock(&s->lock);
    while (s->threads > 0)
        pthread_cond_wait(&s->changed, &s->lock);
    pthread_mutex_unlock(&s->lock);
    reap(s);
}

/* Signals belong to Python's thread: a connection thread blocks them all. */
static int spawn(ps__conn *c)
{
    pthread_attr_t attr;
    sigset_t all, old;
    int rc;

    if ((rc = pthread_attr_init(&attr)) != 0)
        return -rc;
    pthread_attr_setstacksize(&attr, CONN_STACK);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&c->tid, &attr, conn_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return -rc;
}

static int start_conn(ps__worker *w, int fd, const ps__conninfo *ci)
{
    ps_server *s = w->srv;
    ps__conn *c = calloc(1, sizeof *c);
    int rc;

    if (c == NULL)
        return -ENOMEM;
    c->srv = s;
    c->stats = &w->stats;
    c->fd = fd;
    c->info = *ci;
    pthread_mutex_lock(&s->lock);
    s->threads++;
    pthread_mutex_unlock(&s->lock);
    PS_ADD(w->stats.active, 1);
    rc = spawn(c);
    if (rc < 0) {
        PS_SUB(w->stats.active, 1);
        pthread_mutex_lock(&s->lock);
        s->threads--;
        pthread_mutex_unlock(&s->lock);
        free(c);
    }
    return rc;
}

/* The next connection, in a thread of its own.  Out of descriptors, back
 * off rather than spin; service resumes by itself once some are free. */
static int accept_one(ps__worker *w)
{
    ps_server *s = w->srv;
    ps__conninfo ci;
    int fd = -1, rc = ps__accept(w, &fd, &ci);

    if (rc == PS__EXHAUSTED) {
        rc = ps__wait(s->wake[0], POLLIN, -1, PS__ACCEPT_BACKOFF_MS, w->sigmask);
        return rc < 0 ? rc : 0;
    }
    if (rc != PS__TAKEN)
        return rc < 0 ? rc : 0;
    if (start_conn(w, fd, &ci) < 0) {
        PS_ADD(w->stats.errors, 1);
        close(fd);
    }
    return 0;
}

/* One worker's accept loop; every worker's loop drains all connection
 * threads on stop, so whichever returns last leaves none behind. */
static int serve(ps__worker *w)
{
    ps_server *s = w->srv;
    int rc;

    for (;;) {
        reap(s);
        if (ps__stopping(s)) {
            drain(s);
            return 0;
        }
        rc = ps__wait(w->fd, POLLIN, s->wake[0], -1, w->sigmask);
        if (rc < 0)
            return rc;
        if (rc == PS__READY && (rc = accept_one(w)) < 0)
            return rc;
    }
}

const ps__model ps__threads_model = {"threads", NULL, serve, drain, NULL};
