/* uring.c - the io_uring model: one ring per worker.  The kernel runs every
 * accept, receive and send; one system call per loop turn submits what the
 * last turn asked for and collects what has completed (ring.c).
 *
 * TCP.  A multishot accept; per connection at most one receive in flight,
 * into a provided buffer (the kernel picks one of the worker's when data
 * arrives, so idle connections own none), sized as epoll.c sizes its reads;
 * and at most one send.  A reply made in place (upper, echo) is sent
 * straight from its provided buffer, which goes back when the send
 * completes, while half the buffers are free; otherwise it is copied into
 * the connection's own: `sending`, which the kernel reads until its send
 * completes (never moved or grown meanwhile), and `waiting`, the replies
 * made while a send is in flight.  Reading stops while what the connection
 * holds reaches max_unsent (held()), and idle_timeout and send_timeout run
 * on the same timer lists as epoll.c's.
 *
 * UDP.  A multishot recvmsg into provided buffers; each datagram is
 * answered in its own buffer (stamp copies its reply there) by a sendmsg,
 * and the buffer goes back when that send completes.
 *
 * The kernel may still use a connection's memory while one of its
 * operations is in flight.  A connection the loop closes is shut down at
 * once (its client sees the end, and its operations complete) and freed
 * when the last of them has come back; the loop returns from a stop only
 * when nothing is in flight, so no memory is freed under the kernel.
 *
 * Faults (fault.c), as in epoll.c: a TCP reply goes to the connection's
 * shaper, which the loop's timers release into sending/waiting when due;
 * a datagram's reply is copied to the socket's shaper (its buffer goes
 * back at once) and sent with sendto when due. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#ifdef PS__HAVE_URING
#include <poll.h>
#include <sys/socket.h>

#define RING_ENTRIES 512
#define NBUFS 64                 /* provided buffers per worker (a power of 2) */
#define BUF_GROUP 0
#define SEND_MAX (1u << 30)     /* the most one send asks for (its length is 32 bits) */
/* A datagram's buffer: recvmsg's header, the sender's address, the payload. */
#define NAME_ROOM ((unsigned)sizeof(struct sockaddr_storage))
#define DGRAM_HEAD ((unsigned)sizeof(struct io_uring_recvmsg_out) + NAME_ROOM)

/* What a completion is for.  A connection's operations carry its address
 * with the operation in the low bits; the loop's own carry LOOP_OP. */
#define OP_RECV 1u
#define OP_SEND 2u
#define LOOP_OP (1ull << 63)
#define OP_WAKE (LOOP_OP | 1)
#define OP_ACCEPT (LOOP_OP | 2)
#define OP_CANCEL (LOOP_OP | 3)
#define OP_DGRAM_RECV (LOOP_OP | 4)
#define OP_DGRAM_SEND (LOOP_OP | 5)  /* | the buffer's id << 8 */

typedef struct uconn {
    ps__timer t;         /* first: on idle or pending */
    int fd;
    int eof;             /* the client half-closed: send what is owed, then close */
    int closed;          /* the loop is done with it: freed once ops is 0 */
    int recving, sendin; /* its receive, its send in flight */
    int more;            /* its last receive left data in the socket */
    const unsigned char *sdata;  /* the send in flight reads sdata[off .. slen) */
    size_t slen, off;
    int lent;            /* sdata is in provided buffer lent - 1; 0: in sending */
    ps__buf sending;
    ps__buf waiting;     /* replies made while that send is in flight */
    ps__xf xf;
    ps__conninfo info;
    ps__shaper *sh;      /* its replies under faults; NULL until the first */
    int ending;          /* PS__END_FIN, PS__END_RST: close once all is sent */
} uconn;

struct ps__uring {
    ps__evloop ev;       /* first: timers, draining, faults, what is in flight (evloop.c) */
    ps__ring ring;
    ps__bufring bufs;
    int started;         /* the loop's own operations are armed */
    int accepting;       /* the multishot accept (TCP) or recvmsg (UDP) is armed */
    int waking;          /* the poll on the wake pipe is armed */
    int lent;            /* provided buffers a send is reading from */
    ps__tlist closing;   /* closed, waiting for operations in flight */
    ps__ushaper *dgram_shaper;     /* UDP under faults; NULL until the first */
    struct msghdr dgram_msg;       /* UDP: what the multishot recvmsg fills */
    struct msghdr reply[NBUFS];    /* UDP: each buffer's reply */
    struct iovec reply_iov[NBUFS];
    ps__xf dgram_xf;
};

/* -- submitting ---------------------------------------------------------- */
/* A free submission entry; when the queue is full, what is in it goes to
 * the kernel first.  NULL only if the kernel takes none. */
static struct io_uring_sqe *get_sqe(ps__uring *u)
{
    struct io_uring_sqe *e = ps__ring_sqe(&u->ring);

    if (e == NULL && ps__ring_submit(&u->ring) >= 0)
        e = ps__ring_sqe(&u->ring);
    return e;
}

static struct io_uring_sqe *prep(ps__uring *u, int opcode, int fd, uint64_t data)
{
    struct io_uring_sqe *e = get_sqe(u);

    if (e == NULL)
        return NULL;
    e->opcode = (uint8_t)opcode;
    e->fd = fd;
    e->user_data = data;
    u->ev.inflight++;
    return e;
}

static int arm_wake(ps__uring *u)
{
    struct io_uring_sqe *e = prep(u, IORING_OP_POLL_ADD, u->ev.w->srv->wake[0], OP_WAKE);

    if (e == NULL)
        return -EBUSY;
    e->poll32_events = POLLIN;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    e->poll32_events = POLLIN << 16;  /* the kernel reads the halves swapped there */
#endif
    u->waking = 1;
    return 0;
}

static int arm_accept(ps__uring *u)
{
    struct io_uring_sqe *e = prep(u, IORING_OP_ACCEPT, u->ev.w->fd, OP_ACCEPT);

    if (e == NULL)
        return -EBUSY;
    e->ioprio = IORING_ACCEPT_MULTISHOT;
    e->accept_flags = SOCK_CLOEXEC;
    u->accepting = 1;
    return 0;
}

static int arm_dgram_recv(ps__uring *u)
{
    struct io_uring_sqe *e = prep(u, IORING_OP_RECVMSG, u->ev.w->fd, OP_DGRAM_RECV);

    if (e == NULL)
        return -EBUSY;
    e->addr = (uint64_t)(uintptr_t)&u->dgram_msg;
    e->len = 1;
    e->ioprio = IORING_RECV_MULTISHOT;
    e->flags = IOSQE_BUFFER_SELECT;
    e->buf_group = BUF_GROUP;
    u->accepting = 1;
    return 0;
}

/* Ask the kernel to end the loop operation data (accept, recvmsg). */
static void cancel(ps__uring *u, uint64_t data)
{
    struct io_uring_sqe *e = prep(u, IORING_OP_ASYNC_CANCEL, -1, OP_CANCEL);

    if (e != NULL)
        e->addr = data;
}

/* -- connections: state and memory --------------------------------------- */
static uconn *conn_of(ps__timer *t)
{
    return (uconn *)t;
}

static size_t unsent(const uconn *c)
{
    return c->slen - c->off + c->waiting.len;
}

/* The echo c holds: its waiting replies, and while a send is in flight the
 * whole of what it reads (sent bytes cannot be dropped from the front under
 * the kernel, as epoll.c does): all of sending, or the reply in the
 * provided buffer lent to it (the buffer is the loop's, the echo is c's).
 * Reading and each read's size are bounded by this, so a client that never
 * reads leaves at most unsent_limit of echo unsent. */
static size_t in_flight(const uconn *c)
{
    if (!c->sendin)
        return 0;
    return c->lent ? c->slen : c->sending.cap;
}

/* ... capacities counted: what is allocated, not only what is used. */
static size_t held(const uconn *c)
{
    return in_flight(c) + c->waiting.cap + ps__shape_held(c->sh);
}

static int reading(const ps__uring *u, const uconn *c)
{
    return !c->eof && !c->ending && !u->ev.draining && held(c) < u->ev.w->srv->cfg.max_unsent;
}

/* As epoll.c: reading stops at max_unsent, and one read's reply fits in
 * the PS_BUFSIZE beyond it. */
static size_t unsent_limit(const ps__uring *u)
{
    return u->ev.w->srv->cfg.max_unsent + PS_BUFSIZE;
}

/* The provided buffer c's send read from goes back to the kernel. */
static void give_back(ps__uring *u, uconn *c)
{
    if (c->lent) {
        ps__bufring_put(&u->bufs, (unsigned)(c->lent - 1));
        c->lent = 0;
        u->lent--;
    }
}

static void conn_free(ps__uring *u, uconn *c)
{
    give_back(u, c);
    close(c->fd);
    ps__xf_free(&c->xf);
    ps__buf_free(&c->sending);
    ps__buf_free(&c->waiting);
    ps__shaper_free(c->sh);
    free(c);
}

static void maybe_free(ps__uring *u, uconn *c)
{
    if (!c->closed || c->recving || c->sendin)
        return;
    ps__timer_remove(&c->t);  /* from closing */
    conn_free(u, c);
}

/* The loop is done with c: its client sees the end now (shutdown also ends
 * the operations in flight), its memory goes when they are back. */
static void conn_close(ps__uring *u, uconn *c, int why)
{
    ps__conn_event(u->ev.w->srv, &c->info, PS_EV_CLOSE, why);
    ps__timer_remove(&c->t);
    ps__timer_push(&u->closing, &c->t);
    if (c->sh != NULL)
        ps__timer_remove(&c->sh->link);
    c->closed = 1;
    u->ev.nconns--;
    PS_SUB(u->ev.w->stats.active, 1);
    if (c->ending == PS__END_RST)
        ps__reset(c->fd);   /* its receive in flight ends too */
    else if (c->ending == PS__END_FIN)
        shutdown(c->fd, SHUT_WR);  /* the FIN goes before any RST for unread input */
    if (c->ending != PS__END_RST && (c->recving || c->sendin))
        shutdown(c->fd, SHUT_RDWR);
    maybe_free(u, c);
}

static uconn *conn_open(ps__uring *u, int fd, const ps__conninfo *ci, int64_t now)
{
    uconn *c = calloc(1, sizeof *c);

    if (c == NULL)
        return NULL;
    c->fd = fd;
    c->info = *ci;
    c->t.since = now;
    ps__xf_init(&c->xf, u->ev.w->srv->cfg.transform);
    ps__timer_push(&u->ev.idle, &c->t);
    u->ev.nconns++;
    PS_ADD(u->ev.w->stats.active, 1);
    ps__conn_event(u->ev.w->srv, &c->info, PS_EV_OPEN, 0);
    return c;
}

/* -- connections: receiving and sending ---------------------------------- */
static int arm_recv(ps__uring *u, uconn *c)
{
    struct io_uring_sqe *e = prep(u, IORING_OP_RECV, c->fd, (uint64_t)(uintptr_t)c | OP_RECV);
    size_t room = held(c) < unsent_limit(u) ? unsent_limit(u) - held(c) : 0;

    if (e == NULL)
        return -EBUSY;
    e->flags = IOSQE_BUFFER_SELECT;
    e->buf_group = BUF_GROUP;
    c->recving = 1;
    /* One read at a time, sized so that its reply fits in the room left
     * (stamp's can be 30 times the read), a buffer's size or less.  (A
     * multishot receive reads on until a cancel lands: under a slow loop,
     * a client that never reads overran max_unsent by megabytes.) */
    e->len = (uint32_t)ps__xf_read_max(&c->xf, room);
    if (e->len > u->bufs.size)
        e->len = u->bufs.size;
    /* A client that has sent us something waits for the reply before it
     * sends more: wait for data rather than try a read that finds none. */
    if (!c->more)
        e->ioprio = IORING_RECVSEND_POLL_FIRST;
    return 0;
}

static int arm_send(ps__uring *u, uconn *c)
{
    struct io_uring_sqe *e = prep(u, IORING_OP_SEND, c->fd, (uint64_t)(uintptr_t)c | OP_SEND);
    size_t n = c->slen - c->off;

    if (e == NULL)
        return -EBUSY;
    e->addr = (uint64_t)(uintptr_t)(c->sdata + c->off);
    e->len = (uint32_t)(n < SEND_MAX ? n : SEND_MAX);  /* a partial send goes on from there */
    e->msg_flags = MSG_NOSIGNAL;
    c->sendin = 1;
    return 0;
}

/* Start sending n bytes at p.  A reply still in the provided buffer it
 * was read into (upper, echo: lend >= 0) is sent from there, no copy,
 * while the loop has buffers to spare: half stay free for reading, so
 * clients that never read cannot starve the others. */
static int start_send(ps__uring *u, uconn *c, const unsigned char *p, size_t n, int lend, int64_t now)
{
    int rc;

    if (lend >= 0 && u->lent < NBUFS / 2) {
        c->lent = lend + 1;
        u->lent++;
        c->sdata = p;
    } else {
        rc = ps__buf_append(&c->sending, p, n);
        if (rc < 0)
            return rc;
        c->sdata = c->sending.data;
    }
    c->slen = n;
    c->off = 0;
    ps__timer_restart(&u->ev.pending, &c->t, now);  /* this echo begins to wait */
    return arm_send(u, c);
}

/* n bytes of reply for c: sent at once when nothing is in flight, else
 * copied behind what is.  p is the provided buffer buf (upper, echo; -1
 * for stamp's own), which the caller gives back unless *lent says the
 * send took it. */
static int conn_put(ps__uring *u, uconn *c, const unsigned char *p, size_t n, int buf, int64_t now)
{
    int rc;

    if (n == 0)
        return 0;
    if (!c->sendin)
        return start_send(u, c, p, n, buf, now);
    /* Its capacity too stays within what the connection may hold. */
    rc = ps__buf_reserve(&c->waiting, n, ps__room(unsent_limit(u), held(c) - c->waiting.cap));
    return rc < 0 ? rc : ps__buf_append(&c->waiting, p, n);
}

/* -- faults (fault.c: ps__shaping) -------------------------------------- */
/* Copy what c's shaper lets go now behind its echo (conn_put); once it
 * holds nothing, c's idle clock starts again (if nothing waits unsent or
 * in flight either). */
static int release(ps__uring *u, uconn *c, int64_t now)
{
    const ps_faults *f = ps__shaping_seen(&u->ev.faults);
    int64_t us = ps__now_us();
    const unsigned char *p = NULL;
    size_t n;
    int rc = 0;

    while (rc == 0 && (n = ps__shape_ready(c->sh, f, us, &p)) > 0) {
        rc = conn_put(u, c, p, n, -1, now);
        ps__shape_took(c->sh, f, n, us);
    }
    if (rc == 0 && ps__shaping_released(&u->ev.faults, c->sh, &c->ending) && c->t.on == NULL
        && unsent(c) == 0 && !c->sendin)
        ps__timer_restart(&u->ev.idle, &c->t, now);
    return rc;
}

/* A reply under faults (or behind shaped ones) goes to c's shaper, and
 * what is due at once goes out. */
static int shape(ps__uring *u, uconn *c, const unsigned char *p, size_t n, int64_t now)
{
    int rc = ps__shaping_push(&u->ev.faults, &c->sh, c, c->info.id, &c->t, &u->ev.idle, p, n,
                              ps__room(unsent_limit(u), held(c) - ps__shape_held(c->sh)));

    return rc < 0 ? rc : release(u, c, now);
}

static int conn_reply(ps__uring *u, uconn *c, ssize_t m, const unsigned char *out, int buf, int64_t now)
{
    int rc;

    if (m < 0)
        rc = (int)m;
    else if (ps__faults(u->ev.w->srv, &u->ev.faults.view) != NULL || ps__shape_busy(c->sh))
        rc = shape(u, c, out, (size_t)m, now);  /* copied: the caller gives buf back */
    else
        rc = conn_put(u, c, out, (size_t)m, buf, now);
    ps__xf_release(&c->xf);
    return rc;
}

/* After a completion: close c if it failed or has said and heard
 * everything, else ask for its next read when it may read. */
static void settle(ps__uring *u, uconn *c, int rc)
{
    int done = rc == 0 && unsent(c) == 0 && !c->sendin;

    if (done && c->ending) {
        conn_close(u, c, PS_WHY_FAULT);
        return;
    }
    if (done && (u->ev.draining || (c->eof && !ps__shape_busy(c->sh)))
        && (u->ev.draining || !ps__shaping_delay_close(&u->ev.faults, &c->sh, c, c->info.id, &c->t))) {
        conn_close(u, c, c->eof ? PS_WHY_EOF : PS_WHY_STOP);
        return;
    }
    if (rc == 0 && !c->recving && reading(u, c))
        rc = arm_recv(u, c);
    if (rc < 0) {
        PS_ADD(u->ev.w->stats.errors, 1);
        conn_close(u, c, PS_WHY_ERROR);
    }
}

static int on_data(ps__uring *u, uconn *c, unsigned buf, size_t n, int64_t now)
{
    unsigned char *data = ps__bufring_data(&u->bufs, buf);
    const unsigned char *out = NULL;
    ssize_t m;

    PS_ADD(u->ev.w->stats.bytes_in, (uint64_t)n);
    c->info.in += (uint64_t)n;
    if (c->t.on == &u->ev.idle)
        ps__timer_restart(&u->ev.idle, &c->t, now);
    m = ps__xf_feed(&c->xf, data, n, &out);
    return conn_reply(u, c, m, out, out == data ? (int)buf : -1, now);
}

/* The client half-closed: what the transform still owes goes out first. */
static int on_eof(ps__uring *u, uconn *c, int64_t now)
{
    const unsigned char *out = NULL;
    ssize_t m = ps__xf_finish(&c->xf, &out);

    c->eof = 1;
    return conn_reply(u, c, m, out, -1, now);
}

static void on_recv(ps__uring *u, uconn *c, int res, unsigned flags, int64_t now)
{
    unsigned id = flags >> IORING_CQE_BUFFER_SHIFT;
    int rc = 0;

    c->recving = 0;
    c->more = res > 0 && (flags & IORING_CQE_F_SOCK_NONEMPTY);
    if (c->closed || (u->ev.draining && res >= 0)) {
        /* the rest of a closed connection, or of one that stopped reading */
    } else if (res > 0) {
        rc = on_data(u, c, id, (size_t)res, now);
    } else if (res == 0) {
        rc = on_eof(u, c, now);
    } else if (res != -ENOBUFS) {  /* every buffer in use: ask again */
        rc = res;
    }
    if (res > 0 && (flags & IORING_CQE_F_BUFFER) && c->lent != (int)id + 1)
        ps__bufring_put(&u->bufs, id);
    if (c->closed)
        maybe_free(u, c);
    else
        settle(u, c, rc);
}

/* The send in flight is done: the rest of it, or what waits behind it. */
static int next_send(ps__uring *u, uconn *c, int64_t now)
{
    ps__buf done;

    if (c->off < c->slen)
        return arm_send(u, c);
    give_back(u, c);
    c->off = c->slen = 0;
    c->sending.len = 0;
    if (c->waiting.len == 0) {
        if (c->sending.cap > PS__XF_KEEP)
            ps__buf_free(&c->sending);  /* a burst's buffer goes back */
        if (ps__shape_busy(c->sh))
            ps__timer_remove(&c->t);    /* its shaper's turn: no clock runs */
        else
            ps__timer_restart(&u->ev.idle, &c->t, now);
        return 0;
    }
    done = c->sending;
    c->sending = c->waiting;
    c->waiting = done;
    if (c->waiting.cap > PS__XF_KEEP)
        ps__buf_free(&c->waiting);
    c->sdata = c->sending.data;
    c->slen = c->sending.len;
    return arm_send(u, c);
}

static void on_send(ps__uring *u, uconn *c, int res, int64_t now)
{
    int rc = res;

    c->sendin = 0;
    if (c->closed) {
        maybe_free(u, c);
        return;
    }
    if (res >= 0) {
        PS_ADD(u->ev.w->stats.bytes_out, (uint64_t)res);
        c->info.out += (uint64_t)res;
        c->off += (size_t)res;
        c->t.taken += (size_t)res;
        if (c->t.taken >= PS_BUFSIZE)
            ps__timer_restart(&u->ev.pending, &c->t, now);
        rc = next_send(u, c, now);
    }
    settle(u, c, rc);
}

/* -- accepting ----------------------------------------------------------- */
static void on_accept(ps__uring *u, int res, unsigned flags, int64_t now)
{
    ps__conninfo ci;
    uconn *c;
    int rc;

    if (!(flags & IORING_CQE_F_MORE)) {
        u->accepting = 0;   /* multishot ended: armed again below or after a pause */
        u->ev.inflight--;
    }
    if (res < 0) {
        if (ps__accept_failed(u->ev.w, -res) == PS__EXHAUSTED)
            u->ev.accept_at = now + PS__ACCEPT_BACKOFF_MS;
    } else if (u->ev.draining) {
        close(res);         /* came in as the stop began: refused like the backlog's */
    } else if (ps__accepted(u->ev.w, res, &ci) == PS__TAKEN) {
        c = conn_open(u, res, &ci, now);
        rc = c != NULL ? arm_recv(u, c) : -ENOMEM;
        if (rc == 0)  /* under a timed end, the clock starts now */
            rc = ps__shaping_open(&u->ev.faults, u->ev.w->srv, &c->sh, c, c->info.id, &c->t, &u->ev.idle);
        if (c == NULL) {
            PS_ADD(u->ev.w->stats.errors, 1);
            close(res);
        } else if (rc < 0) {
            PS_ADD(u->ev.w->stats.errors, 1);
            conn_close(u, c, PS_WHY_ERROR);
        }
    }
    if (!u->accepting && !u->ev.draining && u->ev.accept_at == 0 && arm_accept(u) < 0)
        u->ev.accept_at = now + PS__ACCEPT_BACKOFF_MS;
}

/* -- datagrams ----------------------------------------------------------- */
/* The reply to the datagram in buffer id goes back to its sender from the
 * same buffer, which returns to the kernel when the send completes. */
static void dgram_reply(ps__uring *u, unsigned id, const struct io_uring_recvmsg_out *o,
                        const unsigned char *out, size_t m)
{
    unsigned char *buf = ps__bufring_data(&u->bufs, id);
    struct msghdr *msg = &u->reply[id];
    struct io_uring_sqe *e;

    if (out != buf + DGRAM_HEAD)
        memmove(buf + DGRAM_HEAD, out, m);
    u->reply_iov[id].iov_base = buf + DGRAM_HEAD;
    u->reply_iov[id].iov_len = m;
    memset(msg, 0, sizeof *msg);
    msg->msg_name = (void *)(o + 1);
    msg->msg_namelen = o->namelen;
    msg->msg_iov = &u->reply_iov[id];
    msg->msg_iovlen = 1;
    e = prep(u, IORING_OP_SENDMSG, u->ev.w->fd, OP_DGRAM_SEND | (uint64_t)id << 8);
    if (e == NULL) {
        PS_ADD(u->ev.w->stats.errors, 1);
        ps__bufring_put(&u->bufs, id);
        return;
    }
    e->addr = (uint64_t)(uintptr_t)msg;
    e->msg_flags = MSG_NOSIGNAL;
}

/* Under faults a reply is copied to the socket's shaper; sent when due
 * (ps__ushape_send, after each turn). */
static void dgram_shape(ps__uring *u, const ps_faults *f, const struct io_uring_recvmsg_out *o,
                        const unsigned char *out, size_t m)
{
    struct sockaddr_storage peer;
    socklen_t plen = o->namelen < sizeof peer ? o->namelen : (socklen_t)sizeof peer;

    if (u->dgram_shaper == NULL) {
        if ((u->dgram_shaper = malloc(sizeof *u->dgram_shaper)) == NULL) {
            PS_ADD(u->ev.w->stats.errors, 1);
            return;
        }
        ps__ushape_init(u->dgram_shaper, u->ev.w->srv->cfg.max_unsent, &u->ev.w->srv->conns);
    }
    memset(&peer, 0, sizeof peer);
    memcpy(&peer, o + 1, plen);
    if (ps__ushape_push(u->dgram_shaper, f, out, m, &peer, plen, ps__now_us()) < 0)
        PS_ADD(u->ev.w->stats.errors, 1);
}

static void on_dgram(ps__uring *u, int res, unsigned flags)
{
    unsigned id = flags >> IORING_CQE_BUFFER_SHIFT;
    const struct io_uring_recvmsg_out *o;
    const ps_faults *f;
    const unsigned char *out = NULL;
    size_t n;
    ssize_t m;

    if (!(flags & IORING_CQE_F_MORE)) {
        u->accepting = 0;   /* out of buffers, or cancelled: armed again if serving */
        u->ev.inflight--;
    }
    if (res < 0 || !(flags & IORING_CQE_F_BUFFER)) {
        if (res < 0 && res != -ENOBUFS && res != -ECANCELED)
            PS_ADD(u->ev.w->stats.errors, 1);
        return;
    }
    o = (const struct io_uring_recvmsg_out *)ps__bufring_data(&u->bufs, id);
    n = o->payloadlen < u->bufs.size - DGRAM_HEAD ? o->payloadlen : u->bufs.size - DGRAM_HEAD;
    PS_ADD(u->ev.w->stats.datagrams, 1);
    PS_ADD(u->ev.w->stats.bytes_in, (uint64_t)n);
    if (u->ev.draining) {
        ps__bufring_put(&u->bufs, id);
        return;
    }
    m = ps__xf_datagram(&u->dgram_xf, (unsigned char *)o + DGRAM_HEAD, n, &out);
    if (m < 0) {
        PS_ADD(u->ev.w->stats.errors, 1);
        ps__bufring_put(&u->bufs, id);
        return;
    }
    f = ps__faults(u->ev.w->srv, &u->ev.faults.view);
    if (f != NULL) {
        dgram_shape(u, f, o, out, (size_t)m);
        ps__bufring_put(&u->bufs, id);
    } else {
        dgram_reply(u, id, o, out, (size_t)m);
    }
    ps__xf_release(&u->dgram_xf);
}

static void on_dgram_sent(ps__uring *u, int res, unsigned id)
{
    u->ev.inflight--;
    if (res >= 0)
        PS_ADD(u->ev.w->stats.bytes_out, (uint64_t)res);
    else
        PS_ADD(u->ev.w->stats.errors, 1);  /* no address (an unbound unix sender), ICMP, ... */
    ps__bufring_put(&u->bufs, id);
}

/* -- completions --------------------------------------------------------- */
static void on_conn(ps__uring *u, uint64_t data, int res, unsigned flags, int64_t now)
{
    uconn *c = (uconn *)(uintptr_t)(data & ~(uint64_t)7);

    u->ev.inflight--;
    if ((data & 7) == OP_RECV)
        on_recv(u, c, res, flags, now);
    else
        on_send(u, c, res, now);
}

static void on_loop_op(ps__uring *u, uint64_t data, int res, unsigned flags, int64_t now)
{
    switch (data & 0xff) {
    case OP_WAKE & 0xff:
        u->waking = 0;      /* the next turn sees the stop flag */
        u->ev.inflight--;
        break;
    case OP_CANCEL & 0xff:
        u->ev.inflight--;
        break;
    case OP_ACCEPT & 0xff:
        on_accept(u, res, flags, now);
        break;
    case OP_DGRAM_RECV & 0xff:
        on_dgram(u, res, flags);
        break;
    case OP_DGRAM_SEND & 0xff:
        on_dgram_sent(u, res, (unsigned)((data & ~LOOP_OP) >> 8));
        break;
    }
}

/* Everything that has completed; how many. */
static int reap(ps__uring *u, int64_t now)
{
    struct io_uring_cqe *cqe;
    int n = 0;

    while ((cqe = ps__ring_cqe(&u->ring)) != NULL) {
        uint64_t data = cqe->user_data;
        int res = cqe->res;
        unsigned flags = cqe->flags;

        ps__ring_seen(&u->ring);
        n++;
        if (data & LOOP_OP)
            on_loop_op(u, data, res, flags, now);
        else
            on_conn(u, data, res, flags, now);
    }
    return n;
}

/* -- the skeleton's operations (evloop.c: ps__evloop) ---------------------- */
static ps__uring *uring_of(ps__evloop *ev)
{
    return (ps__uring *)ev;  /* ev is its first member */
}

static void op_close(ps__evloop *ev, void *conn, int why)
{
    conn_close(uring_of(ev), conn, why);
}

static void op_release(ps__evloop *ev, void *conn, int64_t now)
{
    settle(uring_of(ev), conn, release(uring_of(ev), conn, now));
}

static int op_quiet(const void *conn)
{
    const uconn *c = conn;

    return unsent(c) == 0 && !c->sendin;
}

/* Its receive ends too: shutting the reading side down completes it. */
static void op_settle_drain(ps__evloop *ev, void *conn)
{
    uconn *c = conn;

    if (c->recving)
        shutdown(c->fd, SHUT_RD);
    settle(uring_of(ev), c, 0);
}

static void op_stop_accepting(ps__evloop *ev)
{
    ps__uring *u = uring_of(ev);

    if (u->accepting)
        cancel(u, u->ev.w->srv->cfg.socktype == SOCK_STREAM ? OP_ACCEPT : OP_DGRAM_RECV);
    if (u->waking)
        cancel(u, OP_WAKE);
}

static int op_accept_again(ps__evloop *ev)
{
    ps__uring *u = uring_of(ev);

    return u->accepting ? 0 : arm_accept(u);
}

/* When the first delayed datagram is due, in ms rounded up so that the
 * loop never wakes before it. */
static int64_t op_due(const ps__evloop *ev)
{
    const ps__uring *u = (const ps__uring *)ev;
    int64_t due = u->dgram_shaper != NULL ? ps__ushape_due(u->dgram_shaper) : INT64_MAX;

    return due == INT64_MAX ? due : (due + 999) / 1000;
}

static void op_expire(ps__evloop *ev, int64_t now)
{
    ps__uring *u = uring_of(ev);

    (void)now;
    if (u->dgram_shaper != NULL)
        ps__ushape_send(u->dgram_shaper, u->ev.w->fd, &u->ev.w->stats);
}

static int try_complete(void *arg)
{
    ps__uring *u = arg;
    int rc = ps__ring_submit(&u->ring);

    if (rc < 0 && rc != -EBUSY)
        return rc;
    return ps__ring_cqe(&u->ring) != NULL;
}

/* Submit what this turn asked for and wait for a completion, timeout_ms
 * or a signal; with spin_us, look without sleeping that long first.
 * -EINTR for a signal. */
static int wait_completion(ps__uring *u, int timeout_ms)
{
    int64_t due = ps__now_ms() + timeout_ms;
    int n = ps__spin(u->ev.w->srv, timeout_ms, try_complete, u);

    if (n != 0)
        return n < 0 ? n : 0;
    n = ps__ring_wait(&u->ring, timeout_ms, u->ev.w->sigmask);
    if (n == -ETIME || n == -EBUSY)
        return 0;           /* the deadline; or completions to reap first */
    if (n < 0)
        return n;
    /* A wait that submitted reports the count, not the signal that ended
     * it: nothing completed before the deadline means a signal came. */
    if (ps__ring_cqe(&u->ring) == NULL && (timeout_ms < 0 || ps__now_ms() < due))
        return -EINTR;
    return 0;
}

/* Wait, then run what completed (even after a signal: it has happened);
 * a datagram socket's multishot receive ends when buffers run out, and is
 * armed again. */
static int op_turn(ps__evloop *ev, int timeout_ms)
{
    ps__uring *u = uring_of(ev);
    int rc = wait_completion(u, timeout_ms);

    reap(u, ps__now_ms());
    if (rc < 0)
        return rc;
    if (!u->accepting && !u->ev.draining && u->ev.w->srv->cfg.socktype == SOCK_DGRAM && arm_dgram_recv(u) < 0)
        return -EBUSY;
    return 0;
}

static const ps__evops uring_ops = {
    op_turn, op_close, op_release, op_quiet, op_settle_drain, op_stop_accepting, op_accept_again, op_due,
    op_expire,
};

static int start(ps__uring *u)
{
    int rc = ps__ring_enable(&u->ring);

    if (rc < 0 || u->started)
        return rc;
    u->started = 1;
    rc = arm_wake(u);
    if (rc == 0)
        rc = u->ev.w->srv->cfg.socktype == SOCK_STREAM ? arm_accept(u) : arm_dgram_recv(u);
    return rc;
}

static int serve(ps__worker *w)
{
    int rc = start(w->uring);

    return rc < 0 ? rc : ps__evloop_run(&w->uring->ev);
}

static int open_uring(ps__worker *w)
{
    ps__uring *u = calloc(1, sizeof *u);
    unsigned size = w->srv->cfg.socktype == SOCK_STREAM ? PS_BUFSIZE : DGRAM_HEAD + PS_BUFSIZE;
    int rc;

    if (u == NULL)
        return -ENOMEM;
    ps__evloop_init(&u->ev, w, &uring_ops);
    w->uring = u;
    ps__xf_init(&u->dgram_xf, w->srv->cfg.transform);
    u->dgram_msg.msg_namelen = NAME_ROOM;
    rc = ps__ring_open(&u->ring, RING_ENTRIES);
    if (rc == 0)
        rc = ps__bufring_open(&u->ring, &u->bufs, BUF_GROUP, NBUFS, size);
    return rc;
}

static void free_uring(ps__worker *w)
{
    ps__uring *u = w->uring;

    if (u == NULL)
        return;
    ps__evloop_close_shaped(&u->ev);
    ps__evloop_close_list(&u->ev, &u->ev.idle, NULL, PS_WHY_STOP);
    ps__evloop_close_list(&u->ev, &u->ev.pending, NULL, PS_WHY_STOP);
    ps__ring_close(&u->ring);  /* the kernel ends what is still in flight */
    while (u->closing.head != NULL) {
        uconn *c = conn_of(u->closing.head);

        ps__timer_remove(&c->t);
        conn_free(u, c);
    }
    ps__bufring_free(&u->bufs);
    ps__xf_free(&u->dgram_xf);
    if (u->dgram_shaper != NULL)
        ps__ushape_free(u->dgram_shaper);
    free(u->dgram_shaper);
    free(u);
    w->uring = NULL;
}

const ps__model ps__uring_model = {"uring", open_uring, serve, NULL, free_uring};

#endif /* PS__HAVE_URING; without it Python offers no "uring" (c_features) */
