/* udp.c - the recvfrom loop: each datagram, transformed, back to its sender. */
#include <errno.h>
#include <poll.h>

#include "internal.h"

/* The socket is non-blocking for the receive side; a full send buffer
 * drains at loopback speed, so wait for it briefly instead of dropping. */
static int send_reply(ps_server *s, const unsigned char *p, size_t m,
                      const struct sockaddr *peer, socklen_t plen)
{
    if (sendto(s->fd, p, m, MSG_NOSIGNAL, peer, plen) >= 0)
        return 0;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
        return -errno;
    if (ps__wait(s->fd, POLLOUT, -1, 100) != PS__READY)
        return -EAGAIN;
    return sendto(s->fd, p, m, MSG_NOSIGNAL, peer, plen) < 0 ? -errno : 0;
}

/* One datagram, if one is waiting: 1 when handled, 0 when none was there,
 * -EINTR on a signal.  A failure on one datagram is counted, never fatal:
 * an ICMP error from an earlier reply surfaces here as ECONNREFUSED, and an
 * AF_UNIX sender that bound no address of its own cannot be answered. */
static int echo_one(ps_server *s)
{
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    const unsigned char *out = NULL;
    ssize_t n, m;

    n = recvfrom(s->fd, s->buf, PS_BUFSIZE, MSG_DONTWAIT,
                 (struct sockaddr *)&peer, &plen);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno == EINTR)
            return -EINTR;
        PS_ADD(s->stats.errors, 1);
        return 1;
    }
    PS_ADD(s->stats.datagrams, 1);
    PS_ADD(s->stats.bytes_in, (uint64_t)n);
    m = ps__xf_datagram(&s->dgram, s->buf, (size_t)n, &out);
    if (m < 0 || send_reply(s, out, (size_t)m, (struct sockaddr *)&peer, plen) < 0)
        PS_ADD(s->stats.errors, 1);
    else
        PS_ADD(s->stats.bytes_out, (uint64_t)m);
    return 1;
}

int ps__udp_serve(ps_server *s)
{
    int rc;

    while (!ps__stopping(s)) {
        rc = echo_one(s);
        if (rc < 0)
            return rc;
        if (rc > 0)
            continue;
        rc = ps__wait(s->fd, POLLIN, s->wake[0], -1);
        if (rc < 0)
            return rc;
    }
    return 0;
}
