/* server.c - a server's life: open (socket, bind, listen), serve, stop, close.
 * The serving loops themselves are in tcp.c and udp.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

int64_t ps__now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ps__stopping(const ps_server *s)
{
    return __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE);
}

/* Wait until fd is ready for events, the wake pipe has a byte (wake_fd < 0:
 * don't watch it) or timeout_ms passes (-1: no limit).  A signal comes back
 * as -EINTR: the caller returns to Python rather than waiting again. */
int ps__wait(int fd, short events, int wake_fd, int timeout_ms)
{
    struct pollfd p[2];
    int n;

    p[0].fd = fd;
    p[0].events = events;
    p[0].revents = 0;
    p[1].fd = wake_fd;
    p[1].events = POLLIN;
    p[1].revents = 0;
    n = poll(p, wake_fd >= 0 ? 2 : 1, timeout_ms);
    if (n < 0)
        return -errno;
    if (n == 0)
        return PS__TIMEOUT;
    if (p[1].revents)
        return PS__WOKEN;
    return PS__READY;
}

static int check_config(const ps_config *cfg)
{
    if (cfg == NULL || cfg->port < 0 || cfg->port > 65535)
        return -EINVAL;
    if (cfg->socktype != SOCK_STREAM && cfg->socktype != SOCK_DGRAM)
        return -EINVAL;
    if (cfg->transform < PS_XF_UPPER || cfg->transform > PS_XF_STAMP)
        return -EINVAL;
    if (cfg->family == AF_UNIX)
        return cfg->path != NULL && strlen(cfg->path) < 108 ? 0 : -EINVAL;
    if (cfg->family != AF_INET && cfg->family != AF_INET6)
        return -EINVAL;
    return cfg->host != NULL && strlen(cfg->host) < 256 ? 0 : -EINVAL;
}

static int set_int_option(int fd, int level, int name, int value)
{
    if (setsockopt(fd, level, name, &value, sizeof value) < 0)
        return -errno;
    return 0;
}

static int bind_un(int fd, const char *path)
{
    struct sockaddr_un sa;

    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
    return bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ? -errno : 0;
}

static int bind_in(int fd, const char *host, int port)
{
    struct sockaddr_in sa;
    int rc = ps_sockaddr_in(&sa, host, port);

    if (rc < 0)
        return rc;
    return bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ? -errno : 0;
}

static int bind_in6(int fd, const char *host, int port)
{
    struct sockaddr_in6 sa;
    int rc = ps_sockaddr_in6(&sa, host, port);

    if (rc < 0)
        return rc;
    /* ::1 means ::1, not "IPv4 as well": the IPv4 server is a socket of its own. */
    rc = set_int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    if (rc < 0)
        return rc;
    return bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ? -errno : 0;
}

static int bind_address(ps_server *s)
{
    if (s->cfg.family == AF_UNIX)
        return bind_un(s->fd, s->cfg.path);
    if (s->cfg.family == AF_INET6)
        return bind_in6(s->fd, s->cfg.host, s->cfg.port);
    return bind_in(s->fd, s->cfg.host, s->cfg.port);
}

/* socket, options, bind, listen: the order every server follows. */
static int open_socket(ps_server *s)
{
    int rc;

    s->fd = socket(s->cfg.family, s->cfg.socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s->fd < 0)
        return -errno;
    if (s->cfg.family != AF_UNIX) {
        /* A stopped server's port is free for a restart at once, even with
         * its old connections still in TIME_WAIT. */
        rc = set_int_option(s->fd, SOL_SOCKET, SO_REUSEADDR, 1);
        if (rc < 0)
            return rc;
    }
    rc = bind_address(s);
    if (rc < 0)
        return rc;
    s->bound = 1;
    if (s->cfg.socktype == SOCK_STREAM && listen(s->fd, s->cfg.backlog) < 0)
        return -errno;
    return 0;
}

static int new_server(ps_server **out, const ps_config *cfg)
{
    ps_server *s = calloc(1, sizeof *s);

    if (s == NULL)
        return -ENOMEM;
    s->fd = -1;
    s->wake[0] = s->wake[1] = -1;
    s->cfg = *cfg;
    if (cfg->host != NULL)
        strcpy(s->host, cfg->host);
    if (cfg->path != NULL)
        strcpy(s->path, cfg->path);
    s->cfg.host = s->host;
    s->cfg.path = s->path;
    ps__xf_init(&s->dgram, cfg->transform);
    if (s->cfg.backlog <= 0)
        s->cfg.backlog = SOMAXCONN;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->changed, NULL);
    *out = s;
    return 0;
}

int ps_server_open(ps_server **out, const ps_config *cfg)
{
    ps_server *s = NULL;
    int rc;

    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    rc = check_config(cfg);
    if (rc < 0)
        return rc;
    rc = new_server(&s, cfg);
    if (rc < 0)
        return rc;
    if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        rc = -errno;
        goto error;
    }
    if (cfg->socktype == SOCK_DGRAM && (s->buf = malloc(PS_BUFSIZE)) == NULL) {
        rc = -ENOMEM;
        goto error;
    }
    rc = open_socket(s);
    if (rc < 0)
        goto error;
    *out = s;
    return 0;

error:
    ps_server_close(s);
    return rc;
}

int ps_server_sockname(const ps_server *s, char *host, size_t hostlen)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    const void *addr;
    int port;

    if (s->cfg.family == AF_UNIX) {
        if (strlen(s->path) >= hostlen)
            return -ENAMETOOLONG;
        strcpy(host, s->path);
        return 0;
    }
    if (getsockname(s->fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    if (ss.ss_family == AF_INET6) {
        addr = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
        addr = &((struct sockaddr_in *)&ss)->sin_addr;
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    if (inet_ntop(ss.ss_family, addr, host, (socklen_t)hostlen) == NULL)
        return -errno;
    return port;
}

int ps_server_serve(ps_server *s)
{
    if (s->cfg.socktype == SOCK_STREAM)
        return ps__tcp_serve(s);
    return ps__udp_serve(s);
}

/* Safe from any thread and from a signal handler: a flag and one write(). */
int ps_server_stop(ps_server *s)
{
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
    if (write(s->wake[1], "", 1) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

void ps_server_stats(const ps_server *s, ps_stats *out)
{
    out->accepted = PS_LOAD(s->stats.accepted);
    out->active = PS_LOAD(s->stats.active);
    out->rejected = PS_LOAD(s->stats.rejected);
    out->idle_closed = PS_LOAD(s->stats.idle_closed);
    out->slow_closed = PS_LOAD(s->stats.slow_closed);
    out->datagrams = PS_LOAD(s->stats.datagrams);
    out->bytes_in = PS_LOAD(s->stats.bytes_in);
    out->bytes_out = PS_LOAD(s->stats.bytes_out);
    out->errors = PS_LOAD(s->stats.errors);
}

static void close_fd(int fd)
{
    if (fd >= 0)
        close(fd);
}

/* Not while ps_server_serve runs in another thread: stop it first.  After
 * a serve that returned early (a signal), this ends and joins what is left. */
void ps_server_close(ps_server *s)
{
    if (s == NULL)
        return;
    ps_server_stop(s);
    if (s->cfg.socktype == SOCK_STREAM)
        ps__tcp_drain(s);
    close_fd(s->fd);
    if (s->cfg.family == AF_UNIX && s->bound)
        unlink(s->path);
    close_fd(s->wake[0]);
    close_fd(s->wake[1]);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->changed);
    ps__xf_free(&s->dgram);
    free(s->buf);
    free(s);
}
