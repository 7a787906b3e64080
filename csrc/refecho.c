/* refecho.c - the plainest C echo, for pysock bench to measure the C
 * backend against (a "reference" server, not one of pysock's engines): no
 * limits, counters, timers, faults or stop.  TCP: one epoll loop, each
 * ready connection read into one buffer, uppercased, and written back
 * whole before the next event; UDP: recvfrom, uppercase, sendto.  It
 * serves until the process is killed. */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#ifdef PS__HAVE_EPOLL
#include <sys/epoll.h>

static int write_all(int fd, const unsigned char *p, size_t n)
{
    struct pollfd out = {fd, POLLOUT, 0};
    ssize_t k;

    while (n > 0) {
        k = send(fd, p, n, MSG_NOSIGNAL);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
        } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (poll(&out, 1, -1) < 0 && errno != EINTR)
                return -errno;
        } else if (k < 0 && errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

static int serve_stream(int lfd, unsigned char *buf)
{
    struct epoll_event ev, ready[256];
    int ep = epoll_create1(EPOLL_CLOEXEC), i, n, fd;
    ssize_t r;

    if (ep < 0)
        return -errno;
    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
        return -errno;
    for (;;) {
        n = epoll_wait(ep, ready, 256, -1);
        if (n < 0 && errno != EINTR)
            return -errno;
        for (i = 0; i < n; i++) {
            if (ready[i].data.fd == lfd) {
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    ev.data.fd = fd;
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
                        close(fd);
                }
                continue;
            }
            fd = ready[i].data.fd;
            r = recv(fd, buf, PS_BUFSIZE, 0);
            if (r > 0) {
                ps_upper(buf, (size_t)r);
                if (write_all(fd, buf, (size_t)r) == 0)
                    continue;
            } else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                continue;
            }
            close(fd);  /* EOF or an error: epoll forgets it */
        }
    }
}
#endif

static int serve_datagrams(int fd, unsigned char *buf)
{
    struct sockaddr_storage peer;
    socklen_t len;
    ssize_t r;

    for (;;) {
        len = sizeof peer;
        r = recvfrom(fd, buf, PS_BUFSIZE, 0, (struct sockaddr *)&peer, &len);
        if (r < 0 && errno != EINTR && errno != ECONNREFUSED)
            return -errno;
        if (r < 0)
            continue;  /* a signal, or an ICMP error from an earlier reply */
        ps_upper(buf, (size_t)r);
        (void)sendto(fd, buf, (size_t)r, MSG_NOSIGNAL, (struct sockaddr *)&peer, len);  /* lost as on a network */
    }
    return 0;
}

int ps_ref_serve(int fd, int datagrams)
{
    static unsigned char buf[PS_BUFSIZE];

    if (datagrams)
        return serve_datagrams(fd, buf);
#ifdef PS__HAVE_EPOLL
    return serve_stream(fd, buf);
#else
    return -ENOSYS;
#endif
}
