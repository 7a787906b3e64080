/* udp.c - the datagram loop: each datagram, transformed, back to its sender.
 * On Linux one recvmmsg takes every datagram already waiting (up to BATCH)
 * and one sendmmsg answers them all; a lone datagram is answered at once,
 * since the receive never waits for more.
 *
 * Under faults (fault.c) each reply goes to the socket's shaper, which
 * drops, delays, doubles or holds it back; the loop sends each when due,
 * one sendto at a time, and its waits end at the next. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#ifdef PS__HAVE_MMSG
#define BATCH 32
#else
#define BATCH 1
#endif

struct ps__batch {
    unsigned char *buf;   /* BATCH slots of PS_BUFSIZE; pages are touched only as used */
    size_t len[BATCH];    /* bytes in each slot: received, then the reply */
    struct sockaddr_storage peer[BATCH];
    socklen_t plen[BATCH];
    ps__xf xf;            /* each datagram is one message: no state between them */
    ps__fview faults;     /* the server's faults as this loop last saw them */
    ps__ushaper *shaper;  /* replies under faults; NULL until the first */
#ifdef PS__HAVE_MMSG
    struct iovec iov[BATCH];
    struct mmsghdr msg[BATCH];
#endif
};

static unsigned char *slot(ps__batch *b, int i)
{
    return b->buf + (size_t)i * PS_BUFSIZE;
}

#ifdef PS__HAVE_MMSG
static void init_batch(ps__batch *b)
{
    int i;

    for (i = 0; i < BATCH; i++) {
        b->iov[i].iov_base = slot(b, i);
        b->msg[i].msg_hdr.msg_name = &b->peer[i];
        b->msg[i].msg_hdr.msg_iov = &b->iov[i];
        b->msg[i].msg_hdr.msg_iovlen = 1;
    }
}

/* The datagrams waiting now: a count, 0 when none is, or -errno. */
static int recv_batch(ps__worker *w)
{
    ps__batch *b = w->batch;
    int i, n;

    /* The last call's replies shortened these: each slot takes a whole datagram again. */
    for (i = 0; i < BATCH; i++) {
        b->iov[i].iov_len = PS_BUFSIZE;
        b->msg[i].msg_hdr.msg_namelen = sizeof b->peer[i];
    }
    n = recvmmsg(w->fd, b->msg, BATCH, MSG_DONTWAIT, NULL);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    for (i = 0; i < n; i++) {
        b->len[i] = b->msg[i].msg_len;
        b->plen[i] = b->msg[i].msg_hdr.msg_namelen;
    }
    return n;
}

/* Send replies first..n-1 in one call; how many went, or -errno for the
 * first one. */
static int send_some(ps__worker *w, int first, int n)
{
    ps__batch *b = w->batch;
    int i, k;

    for (i = first; i < n; i++) {
        b->iov[i].iov_len = b->len[i];
        b->msg[i].msg_hdr.msg_namelen = b->plen[i];
    }
    k = sendmmsg(w->fd, &b->msg[first], (unsigned)(n - first), MSG_NOSIGNAL);
    return k < 0 ? -errno : k;
}
#else
static int recv_batch(ps__worker *w)
{
    ps__batch *b = w->batch;
    ssize_t n;

    b->plen[0] = sizeof b->peer[0];
    n = recvfrom(w->fd, slot(b, 0), PS_BUFSIZE, MSG_DONTWAIT,
                 (struct sockaddr *)&b->peer[0], &b->plen[0]);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    b->len[0] = (size_t)n;
    return 1;
}

static int send_some(ps__worker *w, int first, int n)
{
    ps__batch *b = w->batch;

    (void)n;
    if (sendto(w->fd, slot(b, first), b->len[first], MSG_NOSIGNAL,
               (struct sockaddr *)&b->peer[first], b->plen[first]) < 0)
        return -errno;
    return 1;
}
#endif

static int open_batch(ps__worker *w)
{
    ps__batch *b = calloc(1, sizeof *b);

    if (b == NULL)
        return -ENOMEM;
    b->buf = malloc((size_t)BATCH * PS_BUFSIZE);
    if (b->buf == NULL) {
        free(b);
        return -ENOMEM;
    }
#ifdef PS__HAVE_MMSG
    init_batch(b);
#endif
    ps__xf_init(&b->xf, w->srv->cfg.transform);
    w->batch = b;
    return 0;
}

static void free_batch(ps__worker *w)
{
    if (w->batch != NULL) {
        if (w->batch->shaper != NULL)
            ps__ushape_free(w->batch->shaper);
        free(w->batch->shaper);
        ps__xf_free(&w->batch->xf);
        free(w->batch->buf);
        free(w->batch);
        w->batch = NULL;
    }
}

/* The socket is non-blocking for the receive side; a full send buffer
 * drains at loopback speed, so wait for it briefly instead of dropping.  A
 * reply that fails is counted and skipped, never fatal: an ICMP error from
 * an earlier reply can surface on any call. */
static void send_replies(ps__worker *w, int n)
{
    int i = 0, waited = 0, k;

    while (i < n) {
        k = send_some(w, i, n);
        if (k > 0) {
            for (; k > 0; k--, i++)
                PS_ADD(w->stats.bytes_out, w->batch->len[i]);
            waited = 0;
        } else if ((k == -EAGAIN || k == -EWOULDBLOCK) && !waited) {
            waited = 1;
            ps__wait(w->fd, POLLOUT, -1, 100, w->sigmask);
        } else {
            PS_ADD(w->stats.errors, 1);
            i++;
            waited = 0;
        }
    }
}

/* Put each datagram's reply in its slot (upper and echo work there in
 * place; a stamped reply, at most PS_UDP_MAX bytes, is copied in).  A reply
 * the transform could not make (out of memory) is dropped and the later
 * ones close ranks.  Returns how many replies there are. */
static int transform_batch(ps__worker *w, int n)
{
    ps__batch *b = w->batch;
    const unsigned char *out = NULL;
    int i, j = 0;

    for (i = 0; i < n; i++) {
        ssize_t m = ps__xf_datagram(&b->xf, slot(b, i), b->len[i], &out);

        if (m < 0) {
            PS_ADD(w->stats.errors, 1);
            continue;
        }
        if (j != i) {
            b->peer[j] = b->peer[i];
            b->plen[j] = b->plen[i];
        }
        if (out != slot(b, j))
            memmove(slot(b, j), out, (size_t)m);
        b->len[j++] = (size_t)m;
    }
    return j;
}

/* -- faults ------------------------------------------------------------- */
static int shaping(const ps__batch *b)
{
    return b->shaper != NULL && ps__ushape_busy(b->shaper);
}

static void send_due(ps__worker *w)
{
    ps__ushape_send(w->batch->shaper, w->fd, &w->stats);
}

/* The replies in the batch's slots go to the shaper (one it cannot hold,
 * past max_unsent, is dropped and counted in errors), then what is due. */
static void shape_replies(ps__worker *w, const ps_faults *f, int n)
{
    ps__batch *b = w->batch;
    int64_t now = ps__now_us();
    int i;

    if (b->shaper == NULL) {
        if ((b->shaper = malloc(sizeof *b->shaper)) == NULL) {
            PS_ADD(w->stats.errors, (uint64_t)n);
            return;
        }
        ps__ushape_init(b->shaper, w->srv->cfg.max_unsent, &w->srv->conns);
    }
    for (i = 0; i < n; i++)
        if (ps__ushape_push(b->shaper, f, slot(b, i), b->len[i],
                            &b->peer[i], b->plen[i], now) < 0)
            PS_ADD(w->stats.errors, 1);
    send_due(w);
}

/* How long the loop may sleep: until the next shaped reply, or for good. */
static int wait_ms(const ps__batch *b)
{
    int64_t left;

    if (!shaping(b))
        return -1;
    left = ps__ushape_due(b->shaper) - ps__now_us();
    return left > 0 ? (int)((left + 999) / 1000) : 0;
}

static void answer(ps__worker *w, int n)
{
    ps__batch *b = w->batch;
    const ps_faults *f;
    uint64_t in = 0;
    int i;

    for (i = 0; i < n; i++)
        in += b->len[i];
    PS_ADD(w->stats.datagrams, (uint64_t)n);
    PS_ADD(w->stats.bytes_in, in);
    n = transform_batch(w, n);
    ps__xf_release(&w->batch->xf);  /* the replies are in their slots now */
    f = ps__faults(w->srv, &b->faults);
    if (f != NULL)
        shape_replies(w, f, n);
    else
        send_replies(w, n);
}

static int try_recv_batch(void *w)
{
    return recv_batch(w);
}

static int serve(ps__worker *w)
{
    ps_server *s = w->srv;
    int n;

    while (!ps__stopping(s)) {
        if (shaping(w->batch))
            send_due(w);
        n = recv_batch(w);
        if (n == 0)  /* with spin_us, keep asking that long before sleeping */
            n = ps__spin(s, -1, try_recv_batch, w);
        if (n > 0) {
            answer(w, n);
            continue;
        }
        if (n == -EINTR)
            return n;
        if (n < 0) {            /* ECONNREFUSED and the like: one datagram's trouble */
            PS_ADD(w->stats.errors, 1);
            continue;
        }
        n = ps__wait(w->fd, POLLIN, s->wake[0], wait_ms(w->batch), w->sigmask);
        if (n < 0)
            return n;
    }
    return 0;
}

const ps__model ps__udp_model = {"udp", open_batch, serve, NULL, free_batch};
