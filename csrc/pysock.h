/* pysock.h - the public C API of pysock.
 *
 * This header is written once and read twice: the C compiler includes it,
 * and pysock/_build.py hands it to cffi (which drops the preprocessor lines
 * except the integer #defines below).  Keep it in the subset cffi parses:
 * no macros with arguments, no inline code.
 *
 * Conventions (after libuv): every call returns a count, an fd or 0 on
 * success and a negative code on failure: -errno, or for the resolver
 * -(PS_ERESOLVE + h_errno).
 */
#ifndef PYSOCK_H
#define PYSOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netdb.h>

/* Resolver failures live above this, apart from every errno value. */
#define PS_ERESOLVE 20000

/* What a server sends back for the bytes it receives. */
#define PS_XF_UPPER 0
#define PS_XF_ECHO 1
#define PS_XF_STAMP 2

/* How a server waits for its clients.  TCP: a thread per connection, or
 * one non-blocking event loop per worker (epoll); UDP: the datagram loop.
 * uring, for both: the kernel runs every receive and send, one io_uring per
 * worker. */
#define PS_MODEL_THREADS 0
#define PS_MODEL_EPOLL 1
#define PS_MODEL_URING 2
/* Not an echo: a proxy to cfg's upstream (proxy.c), one epoll loop. */
#define PS_MODEL_PROXY 3

/* What this build can do (ps_features): the fast paths need Linux. */
#define PS_FEAT_EPOLL 1
#define PS_FEAT_MMSG 2
#define PS_FEAT_REUSEPORT 4
#define PS_FEAT_URING 8

/* The largest UDP payload over IPv4, and the receive buffer that holds it. */
#define PS_UDP_MAX 65507
#define PS_BUFSIZE 65536

/* A connection's life, for a log (serve -v): with cfg.log_events set, the
 * serving loops write one ps_event record per event to cfg.event_fd, each
 * write whole (records are far under PIPE_BUF).  A full pipe drops the
 * record: the loops never wait for the log. */
#define PS_EV_OPEN 1
#define PS_EV_CLOSE 2
#define PS_EV_REJECTED 3
/* Why a connection closed (PS_EV_CLOSE). */
#define PS_WHY_EOF 1
#define PS_WHY_IDLE 2
#define PS_WHY_SLOW 3
#define PS_WHY_ERROR 4
#define PS_WHY_STOP 5
/* limit_data or reset_after, as asked (ps_faults) */
#define PS_WHY_FAULT 6
/* a proxy's upstream refused the connection, reset it or failed */
#define PS_WHY_UPSTREAM 7

typedef struct ps_event {
    uint32_t kind;       /* PS_EV_* */
    uint32_t why;        /* PS_WHY_* (PS_EV_CLOSE) */
    uint64_t conn;       /* the connection's number on this server, from 1 */
    uint64_t bytes_in;   /* PS_EV_CLOSE: what it sent us, and we it */
    uint64_t bytes_out;
    char peer[48];       /* "127.0.0.1:50112", "[::1]:50112"; "" over AF_UNIX */
} ps_event;

typedef struct ps_config {
    int family;          /* AF_INET, AF_INET6 or AF_UNIX */
    int socktype;        /* SOCK_STREAM or SOCK_DGRAM */
    const char *host;    /* numeric address or host name (AF_INET, AF_INET6) */
    int port;            /* 0 picks a free port */
    const char *path;    /* filesystem path (AF_UNIX) */
    int backlog;
    int transform;       /* PS_XF_* */
    int model;           /* PS_MODEL_* (TCP only) */
    int v6only;          /* AF_INET6: 1 serves IPv6 alone, 0 IPv4 too (IPV6_V6ONLY) */
    int workers;         /* serving threads, each with its own socket (SO_REUSEPORT) */
    int spin_us;         /* busy-poll this long before sleeping (epoll, UDP, threads) */
    int max_conns;       /* open connections; the next is closed at once */
    int idle_ms;         /* close a connection silent this long; 0: never */
    int send_timeout_ms; /* cut off a client whose echo stays unsent this long */
    size_t max_unsent;   /* stop reading from a client with this much echo unsent */
    int log_events;      /* 1: write a ps_event per connection event to event_fd */
    int event_fd;        /* a pipe's write end, non-blocking (log_events) */
    int up_family;       /* PS_MODEL_PROXY: the upstream's AF_INET, AF_INET6 or AF_UNIX, */
    const char *up_host; /* its numeric address (or its path), */
    int up_port;         /* and port */
} ps_config;

typedef struct ps_stats {
    uint64_t accepted;   /* connections accepted (TCP) */
    uint64_t active;     /* connections open now (TCP) */
    uint64_t rejected;   /* connections closed at once: over max_conns */
    uint64_t idle_closed;
    uint64_t slow_closed;
    uint64_t datagrams;  /* datagrams received (UDP) */
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t errors;     /* failed calls that did not end the server */
} ps_stats;

typedef struct ps_server ps_server;

/* Faults on demand (fault.c, docs/contract.md): how a server misbehaves
 * when a test asks.  Zero turns a field off.  Durations in microseconds,
 * sizes in bytes, bandwidth in bytes per second, chances from 0 to 1. */
typedef struct ps_faults {
    int64_t latency_us;      /* each reply held latency +- jitter */
    int64_t jitter_us;
    uint64_t bandwidth;      /* per connection (TCP), per sender (UDP) */
    uint64_t slice;          /* TCP: sends of at most slice bytes... */
    int64_t slice_delay_us;  /* ...this far apart */
    uint64_t limit_data;     /* TCP: FIN after this many reply bytes */
    uint64_t reset_after;    /* TCP: RST after this many */
    int stall;               /* receive, never answer */
    int64_t close_delay_us;  /* TCP: after the client's FIN, wait this long */
    int64_t close_after_us;  /* TCP: FIN this long after the connection's faults began */
    int64_t reset_after_us;  /* TCP: RST so */
    double drop;             /* UDP: each reply dropped, */
    double duplicate;        /* sent twice, */
    double reorder;          /* or held back until after the sender's next */
    double corrupt;          /* each byte: one bit flipped */
    double toxicity;         /* the share of connections (senders) hit; 1: all (0 here: all too) */
    uint64_t seed;           /* the generators' start (jitter, drop, ...) */
} ps_faults;

/* One member of a system struct as the compiler laid it out (layout.c). */
typedef struct ps_member {
    const char *name;
    const char *type;    /* as the header spells it; the element type of an array */
    size_t count;        /* elements of an array; 1 for anything else */
    size_t offset;
    size_t size;
    size_t align;
} ps_member;

typedef struct ps_layout {
    const char *name;    /* "struct sockaddr_in" */
    const char *header;  /* where the system declares it */
    size_t size;
    size_t align;
    size_t nmembers;
    const ps_member *members;
} ps_layout;

/* Addresses (addr.c) */
int ps_sockaddr_in(struct sockaddr_in *out, const char *host, int port);
int ps_sockaddr_in6(struct sockaddr_in6 *out, const char *host, int port);
int ps_gethostbyname(const char *name, struct hostent *out,
                     char *buf, size_t buflen);
int ps_sockaddr_in_many(struct sockaddr_in *out, size_t n, const char *host,
                        int first_port);
const char *ps_hstrerror(int code);

/* Struct layouts (layout.c): points *out at a static table, returns its length. */
int ps_layouts(const ps_layout **out);
/* Fill n mmsghdr for a recvmmsg as udp.c does, then sum their msg_len
 * (layout.c; for the benchmark of the same from Python). */
long long ps_mmsg_batch(struct mmsghdr *msgs, struct iovec *iov, struct sockaddr_storage *names,
                        unsigned char *bufs, size_t size, unsigned n);

/* Transforms (transform.c) */
void ps_upper(unsigned char *buf, size_t n);

/* Servers (server.c, tcp.c, epoll.c, uring.c, udp.c) */
int ps_features(void);
/* 0 if the running kernel serves the uring model (PS_FEAT_URING built),
 * else why not: -ENOSYS (no io_uring), -EPERM (refused: sysctl
 * kernel.io_uring_disabled, a seccomp filter), -EINVAL (too old). */
int ps_uring_probe(void);
int ps_server_open(ps_server **out, const ps_config *cfg);
int ps_server_sockname(const ps_server *srv, char *host, size_t hostlen);
int ps_server_serve(ps_server *srv);
int ps_server_stop(ps_server *srv);
void ps_server_stats(const ps_server *srv, ps_stats *out);
/* From any thread: the faults for data received from now on (NULL: none). */
int ps_server_set_faults(ps_server *srv, const ps_faults *f);
/* A proxy's faults for what its upstream receives (the others shape what
 * its clients receive). */
int ps_server_set_faults_up(ps_server *srv, const ps_faults *f);
/* Closes every socket; an AF_UNIX path stays: the caller, who claimed it,
 * removes it (only if it is still the file this server bound). */
void ps_server_close(ps_server *srv);

/* The plainest C echo, for pysock bench's comparison (refecho.c): serves
 * fd (a listening TCP socket, non-blocking; or with datagrams a blocking
 * UDP socket) until the process ends; returns only on a failure. */
int ps_ref_serve(int fd, int datagrams);

#endif
