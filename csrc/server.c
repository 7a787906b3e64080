/* server.c - a server's life: open (socket, bind, listen, once per worker;
 * the model chosen once), serve (worker 0 here, the others in threads),
 * stop, close.  The serving loops are the models' (tcp.c, epoll.c, uring.c, udp.c),
 * reached only through their ps__model tables. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

int ps_features(void)
{
    int f = 0;

#ifdef PS__HAVE_EPOLL
    f |= PS_FEAT_EPOLL;
#endif
#ifdef PS__HAVE_MMSG
    f |= PS_FEAT_MMSG;
#endif
#ifdef PS__HAVE_REUSEPORT
    f |= PS_FEAT_REUSEPORT;
#endif
#ifdef PS__HAVE_URING
    f |= PS_FEAT_URING;
#endif
    return f;
}

int ps_uring_probe(void)
{
#ifdef PS__HAVE_URING
    return ps__uring_probe();
#else
    return -ENOSYS;
#endif
}

static int check_config(const ps_config *cfg)
{
    if (cfg == NULL || cfg->port < 0 || cfg->port > 65535)
        return -EINVAL;
    if (cfg->socktype != SOCK_STREAM && cfg->socktype != SOCK_DGRAM)
        return -EINVAL;
    if (cfg->workers < 0 || cfg->spin_us < 0)
        return -EINVAL;
    if (cfg->transform < PS_XF_UPPER || cfg->transform > PS_XF_STAMP)
        return -EINVAL;
    if (cfg->model == PS_MODEL_PROXY
        && (cfg->up_host == NULL || strlen(cfg->up_host) >= 256 || cfg->workers > 1))
        return -EINVAL;
    if (cfg->family == AF_UNIX)
        return cfg->path != NULL && strlen(cfg->path) < PS__SUN_PATH_MAX && cfg->workers <= 1 ? 0 : -EINVAL;
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

static int bind_in6(int fd, const char *host, int port, int v6only)
{
    struct sockaddr_in6 sa;
    int rc = ps_sockaddr_in6(&sa, host, port);

    if (rc < 0)
        return rc;
    /* Set either way: the system's default (net.ipv6.bindv6only) varies. */
    rc = set_int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only);
    if (rc < 0)
        return rc;
    return bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ? -errno : 0;
}

static int bind_address(ps_server *s, int fd, int port)
{
    if (s->cfg.family == AF_UNIX)
        return bind_un(fd, s->cfg.path);
    if (s->cfg.family == AF_INET6)
        return bind_in6(fd, s->cfg.host, port, s->cfg.v6only);
    return bind_in(fd, s->cfg.host, port);
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN];

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    return ps__addr_text(&ss, host, sizeof host);
}

static int set_reuseport(int fd)
{
#ifdef PS__HAVE_REUSEPORT
    return set_int_option(fd, SOL_SOCKET, SO_REUSEPORT, 1);
#else
    (void)fd;
    return -EOPNOTSUPP;
#endif
}

/* socket, options, bind, listen: the order every server follows.  *out is
 * set as soon as the socket exists, so the caller closes it on failure. */
static int open_socket(ps_server *s, int *out, int port, int reuseport)
{
    int fd, rc;

    fd = socket(s->cfg.family, s->cfg.socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    *out = fd;
    if (s->cfg.family != AF_UNIX && s->cfg.socktype == SOCK_STREAM) {
        /* A stopped server's port is free for a restart at once, even with
         * its old connections still in TIME_WAIT.  Not for UDP: there it
         * would let a second server bind the same port and take half of
         * the datagrams, where it must be told the port is in use. */
        rc = set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1);
        if (rc < 0)
            return rc;
    }
    if (reuseport && (rc = set_reuseport(fd)) < 0)
        return rc;
    rc = bind_address(s, fd, port);
    if (rc < 0)
        return rc;
    if (s->cfg.socktype == SOCK_STREAM && listen(fd, s->cfg.backlog) < 0)
        return -errno;
    return 0;
}

/* SO_REUSEPORT would let our workers join another server of the same user
 * already on this port.  A plain bind first finds such a server: the port
 * is in use, as it is for a server with one worker. */
static int check_port_free(ps_server *s)
{
    int fd, rc = 0;

    if (s->cfg.port == 0)
        return 0;
    fd = socket(s->cfg.family, s->cfg.socktype | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* TCP: ignore TIME_WAIT, as the real sockets do.  UDP: SO_REUSEADDR
     * would share the port, so the probe goes without it. */
    if (s->cfg.socktype == SOCK_STREAM)
        rc = set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (rc == 0)
        rc = bind_address(s, fd, s->cfg.port);
    close(fd);
    return rc;
}

/* The model for this configuration, or NULL: one the build lacks (no
 * epoll, no io_uring) or that does not exist. */
static const ps__model *choose_model(const ps_config *cfg)
{
#ifdef PS__HAVE_URING
    if (cfg->model == PS_MODEL_URING)
        return &ps__uring_model;
#endif
#ifdef PS__HAVE_EPOLL
    if (cfg->model == PS_MODEL_PROXY)
        return cfg->socktype == SOCK_STREAM ? &ps__proxy_model : &ps__dproxy_model;
#endif
    if (cfg->model == PS_MODEL_PROXY)
        return NULL;
    if (cfg->socktype == SOCK_DGRAM)
        return &ps__udp_model;
#ifdef PS__HAVE_EPOLL
    if (cfg->model == PS_MODEL_EPOLL)
        return &ps__epoll_model;
#endif
    return cfg->model == PS_MODEL_THREADS ? &ps__threads_model : NULL;
}

static int open_model(ps__worker *w)
{
    const ps__model *m = w->srv->model;

    return m->open != NULL ? m->open(w) : 0;
}

/* Worker 0 binds the port asked for (0: a free one); the others bind the
 * port it got, each with a socket of its own, and the kernel spreads the
 * clients over them. */
static int open_workers(ps_server *s)
{
    int n = s->cfg.workers > 1 ? s->cfg.workers : 1;
    int port = s->cfg.port;
    int i, rc;

    if (n > 1 && (rc = check_port_free(s)) < 0)
        return rc;
    s->w = calloc((size_t)n, sizeof *s->w);
    if (s->w == NULL)
        return -ENOMEM;
    for (i = 0; i < n; i++) {
        ps__worker *w = &s->w[i];

        w->srv = s;
        w->fd = -1;
        s->nw = i + 1;
        rc = open_socket(s, &w->fd, port, n > 1);
        if (rc < 0)
            return rc;
        if (i == 0 && n > 1 && port == 0 && (port = bound_port(w->fd)) < 0)
            return port;
        rc = open_model(w);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int new_server(ps_server **out, const ps_config *cfg)
{
    ps_server *s = calloc(1, sizeof *s);

    if (s == NULL)
        return -ENOMEM;
    s->wake[0] = s->wake[1] = -1;
    s->cfg = *cfg;
    if (cfg->host != NULL)
        strcpy(s->host, cfg->host);
    if (cfg->path != NULL)
        strcpy(s->path, cfg->path);
    if (cfg->up_host != NULL)
        strcpy(s->up_host, cfg->up_host);
    s->cfg.host = s->host;
    s->cfg.path = s->path;
    s->cfg.up_host = s->up_host;
    if (s->cfg.backlog <= 0)
        s->cfg.backlog = SOMAXCONN;
    if (s->cfg.max_unsent == 0)
        s->cfg.max_unsent = PS__MAX_UNSENT;  /* a bound there must be: see epoll.c */
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
    s->model = choose_model(&s->cfg);
    if (s->model == NULL) {
        rc = -EINVAL;
        goto error;
    }
    if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        rc = -errno;
        goto error;
    }
    rc = open_workers(s);
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

    if (s->cfg.family == AF_UNIX) {
        if (strlen(s->path) >= hostlen)
            return -ENAMETOOLONG;
        strcpy(host, s->path);
        return 0;
    }
    if (getsockname(s->w[0].fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    return ps__addr_text(&ss, host, hostlen);
}

static int serve_worker(ps__worker *w)
{
    return w->srv->model->serve(w);
}

/* A helper blocks every signal, so no EINTR reaches it; should one come,
 * serving on is right: this is not Python's thread.  A helper that fails
 * stops the whole server, and serve reports why. */
static void *helper_main(void *arg)
{
    ps__worker *w = arg;
    int rc;

    do
        rc = serve_worker(w);
    while (rc == -EINTR);
    if (rc < 0) {
        w->rc = rc;
        ps_server_stop(w->srv);
    }
    return NULL;
}

/* Signals belong to Python's thread: the helpers block them all. */
static int start_helpers(ps_server *s)
{
    sigset_t all, old;
    int i, rc = 0;

    s->started = 1;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (i = 1; i < s->nw && rc == 0; i++) {
        rc = pthread_create(&s->w[i].tid, NULL, helper_main, &s->w[i]);
        if (rc == 0)
            s->helpers = i;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -rc;
}

/* Wait for the helpers (they end on the wake pipe); the first error any of
 * them met, or 0. */
static int join_helpers(ps_server *s)
{
    int i, rc = 0;

    for (i = 1; i <= s->helpers; i++) {
        pthread_join(s->w[i].tid, NULL);
        if (rc == 0)
            rc = s->w[i].rc;
    }
    s->helpers = 0;
    return rc;
}

/* The signals Python handles (SIGINT, SIGTERM, ...).  Faults stay
 * deliverable: blocked, they would kill without a word. */
static void async_signals(sigset_t *set)
{
    sigfillset(set);
    sigdelset(set, SIGSEGV);
    sigdelset(set, SIGBUS);
    sigdelset(set, SIGFPE);
    sigdelset(set, SIGILL);
    sigdelset(set, SIGTRAP);
    sigdelset(set, SIGABRT);
    sigdelset(set, SIGSYS);
}

static int serve_here(ps_server *s)
{
    int rc, helpers_rc;

    if (!s->started && (rc = start_helpers(s)) < 0) {
        ps_server_stop(s);
        join_helpers(s);
        return rc;
    }
    rc = serve_worker(&s->w[0]);
    if (rc == -EINTR)
        return rc;
    if (rc < 0)
        ps_server_stop(s);
    helpers_rc = join_helpers(s);
    return rc < 0 ? rc : helpers_rc;
}

/* Worker 0 serves in this thread.  A signal returns -EINTR with the helpers
 * still serving; calling again goes on where it left off.
 *
 * Signals stay blocked while the loop works and are let in only inside its
 * waits (ppoll, epoll_pwait, which swap the mask atomically).  One that
 * arrives while the loop is busy stays pending and ends the next wait at
 * once; with plain poll() Python's handler would run in the gap and the
 * loop would then sleep until some client came. */
int ps_server_serve(ps_server *s)
{
    sigset_t block, old;
    int rc;

    async_signals(&block);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    s->w[0].sigmask = &old;
    rc = serve_here(s);
    s->w[0].sigmask = NULL;
    pthread_sigmask(SIG_SETMASK, &old, NULL);  /* a pending signal arrives now */
    return rc;
}

/* A stopping server takes no new connection: on Linux a listening socket
 * that is shut down refuses them (and resets those waiting in its backlog)
 * while its descriptor stays valid for the loops still using it.  So a
 * client never hangs in the backlog of a server that will not accept it,
 * however long the stop takes. */
static void refuse_new(ps_server *s)
{
    int i;

    if (s->cfg.socktype != SOCK_STREAM)
        return;
    for (i = 0; i < s->nw; i++)
        if (s->w[i].fd >= 0)
            shutdown(s->w[i].fd, SHUT_RD);  /* ENOTCONN on other systems: harmless */
}

/* Safe from any thread and from a signal handler: a flag, the listeners
 * shut down, one write(). */
int ps_server_stop(ps_server *s)
{
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
    refuse_new(s);
    if (write(s->wake[1], "", 1) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

static void add_stats(ps_stats *sum, const ps_stats *st)
{
    sum->accepted += PS_LOAD(st->accepted);
    sum->active += PS_LOAD(st->active);
    sum->rejected += PS_LOAD(st->rejected);
    sum->idle_closed += PS_LOAD(st->idle_closed);
    sum->slow_closed += PS_LOAD(st->slow_closed);
    sum->datagrams += PS_LOAD(st->datagrams);
    sum->bytes_in += PS_LOAD(st->bytes_in);
    sum->bytes_out += PS_LOAD(st->bytes_out);
    sum->errors += PS_LOAD(st->errors);
}

void ps_server_stats(const ps_server *s, ps_stats *out)
{
    int i;

    memset(out, 0, sizeof *out);
    for (i = 0; i < s->nw; i++)
        add_stats(out, &s->w[i].stats);
}

static void close_fd(int fd)
{
    if (fd >= 0)
        close(fd);
}

static void close_worker(ps__worker *w)
{
    if (w->srv->model != NULL && w->srv->model->free != NULL)
        w->srv->model->free(w);
    close_fd(w->fd);
}

/* Not while ps_server_serve runs in another thread: stop it first.  After
 * a serve that returned early (a signal), this ends and joins what is left. */
void ps_server_close(ps_server *s)
{
    int i;

    if (s == NULL)
        return;
    ps_server_stop(s);
    join_helpers(s);
    if (s->model != NULL && s->model->drain != NULL)
        s->model->drain(s);
    for (i = 0; i < s->nw; i++)
        close_worker(&s->w[i]);
    free(s->w);
    close_fd(s->wake[0]);
    close_fd(s->wake[1]);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->changed);
    free(s);
}
