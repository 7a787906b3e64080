/* internal.h - what the C files of pysock share and Python never sees.
 * Internal names carry the ps__ prefix (after libuv's uv__). */
#ifndef PYSOCK_INTERNAL_H
#define PYSOCK_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "pysock.h"

/* The fast paths need Linux (epoll, recvmmsg/sendmmsg).  Building with
 * -DPYSOCK_PORTABLE leaves them out, as a system without them would. */
#if defined(__linux__) && !defined(PYSOCK_PORTABLE)
#define PS__HAVE_EPOLL 1
#define PS__HAVE_MMSG 1
#define PS__HAVE_PPOLL 1
#endif
#if defined(SO_REUSEPORT) && !defined(PYSOCK_PORTABLE)
#define PS__HAVE_REUSEPORT 1
#endif
/* io_uring: the kernel's UAPI header, from Linux 6.1's on (the flags the
 * uring model asks for); the running kernel may still refuse it. */
#if defined(__linux__) && !defined(PYSOCK_PORTABLE) && defined(__has_include)
#if __has_include(<linux/io_uring.h>)
#include <linux/io_uring.h>
#if defined(IORING_SETUP_DEFER_TASKRUN) && defined(IORING_RECV_MULTISHOT)
#define PS__HAVE_URING 1
#endif
#endif
#endif

/* What sun_path holds, its terminating NUL included (108 bytes on Linux). */
#define PS__SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))

/* a - b, or 0 when b is larger: room left below a limit. */
static inline size_t ps__room(size_t a, size_t b)
{
    return a > b ? a - b : 0;
}

/* Counters are bumped by serving threads and read by Python at any time. */
#define PS_ADD(field, n) __atomic_add_fetch(&(field), (n), __ATOMIC_RELAXED)
#define PS_SUB(field, n) __atomic_sub_fetch(&(field), (n), __ATOMIC_RELAXED)
#define PS_LOAD(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

/* How long a stopping server keeps sending an echo it has started. */
#define PS__STOP_GRACE_MS 100
/* Echo a client may leave unread before the epoll loop stops reading it
 * (when cfg.max_unsent is 0). */
#define PS__MAX_UNSENT (1u << 20)

/* A growable byte buffer: len bytes used of cap allocated (buf.c).
 * ps__buf_reserve makes room for more bytes, doubling the capacity but not
 * past most (unless more itself needs it). */
typedef struct ps__buf {
    unsigned char *data;
    size_t len;
    size_t cap;
} ps__buf;

int ps__buf_reserve(ps__buf *b, size_t more, size_t most);
int ps__buf_append(ps__buf *b, const void *p, size_t n);
/* A send queue: data[*off .. len) waits; n more bytes go after it, what
 * was sent from the front making room first, the capacity no past most
 * (as ps__buf_reserve). */
int ps__buf_queue(ps__buf *b, size_t *off, const void *p, size_t n, size_t most);
void ps__buf_free(ps__buf *b);

/* The transform interface (transform.c): every serving loop answers through
 * it, one ps__xf per TCP connection (one per UDP socket for datagrams).
 *
 *   ps__xf x;
 *   ps__xf_init(&x, s->cfg.transform);
 *   for each recv of n > 0 bytes into buf:
 *       k = ps__xf_feed(&x, buf, n, &out);     -> send out[0..k)
 *   at the client's EOF (recv returned 0):
 *       k = ps__xf_finish(&x, &out);           -> send out[0..k), then close
 *   ps__xf_free(&x);                           (always, however it ended)
 *
 * feed and finish return the reply's length, or -ENOMEM / -EOVERFLOW (close
 * the connection).  *out stays valid until the next call on x, and may
 * point into buf: upper and echo work in place (no copy, no allocation),
 * while stamp writes into x->out, which grows as needed (a read full of
 * short lines yields a reply far larger than itself).  A caller that cannot
 * send all of it at once copies the rest before its next feed.
 *
 * stamp answers each line (ending in \n, which the reply keeps) with
 * "at <ctime> :<line>"; the unfinished line waits in x->line for the next
 * feed, or for finish, which answers it without a \n.  A line longer than
 * PS__LINE_MAX bytes (its \n included) is answered in pieces of
 * PS__LINE_MAX bytes, so the state per connection stays bounded.
 *
 * ps__xf_datagram answers one datagram as one message (no line splitting);
 * a stamped reply is cut to PS_UDP_MAX bytes so that it can be sent.
 *
 * Memory a client can make a server hold is bounded (docs/contract.md):
 *   ps__xf_read_max(x, room)  the most bytes the next read may take so that
 *                             its reply, with the line x keeps, fits in room
 *                             (upper and echo: PS_BUFSIZE, they answer in
 *                             place; stamp: a line of newlines grows 30x)
 *   ps__xf_release(x)         after the reply has been sent or copied: a
 *                             reply buffer that grew for a burst goes back */
#define PS__LINE_MAX 65536
/* The most bytes stamp adds per line: "at " + ctime_r (24 characters until
 * the year 9999, 25 after) + " :", with room to spare. */
#define PS__STAMP_MAX 32
/* A stamp reply buffer up to this size is kept for the next read. */
#define PS__XF_KEEP 4096

typedef struct ps__xf {
    int kind;            /* PS_XF_* */
    ps__buf line;        /* stamp: the unfinished line, < PS__LINE_MAX bytes */
    ps__buf out;         /* stamp: the reply of the last call */
} ps__xf;

void ps__xf_init(ps__xf *x, int kind);
ssize_t ps__xf_feed(ps__xf *x, unsigned char *buf, size_t n,
                    const unsigned char **out);
ssize_t ps__xf_finish(ps__xf *x, const unsigned char **out);
ssize_t ps__xf_datagram(ps__xf *x, unsigned char *buf, size_t n,
                        const unsigned char **out);
size_t ps__xf_read_max(const ps__xf *x, size_t room);
void ps__xf_release(ps__xf *x);
void ps__xf_free(ps__xf *x);

typedef struct ps__conn ps__conn;
typedef struct ps__loop ps__loop;
typedef struct ps__batch ps__batch;
typedef struct ps__uring ps__uring;
typedef struct ps__model ps__model;
typedef struct ps__proxy ps__proxy;
typedef struct ps__dproxy ps__dproxy;

/* One serving thread and its own socket.  Worker 0 runs in the thread that
 * calls ps_server_serve; the others are C threads it starts. */
typedef struct ps__worker {
    ps_server *srv;
    int fd;              /* this worker's listening or datagram socket */
    pthread_t tid;
    int rc;              /* how a helper thread's loop ended */
    ps__loop *loop;      /* the epoll model's state (epoll.c) */
    ps__batch *batch;    /* the UDP loop's buffers (udp.c) */
    ps__uring *uring;    /* the uring model's ring and state (uring.c) */
    ps__proxy *proxy;    /* the proxy model's (proxy.c) */
    ps__dproxy *dproxy;  /* the datagram proxy's (dproxy.c) */
    const sigset_t *sigmask;  /* worker 0 in Python's thread: the mask to wait with */
    /* Each worker counts on its own cache line; ps_server_stats sums. */
    char pad[64];
    ps_stats stats;
    char pad_end[64];
} ps__worker;

struct ps_server {
    ps_config cfg;
    const ps__model *model;  /* chosen once, in ps_server_open */
    char host[256];      /* cfg.host and cfg.path point here */
    char path[PS__SUN_PATH_MAX];
    char up_host[256];   /* cfg.up_host points here (proxy) */
    int wake[2];         /* a pipe: one byte in wake[1] wakes every poller */
    int stopping;
    uint64_t conns;      /* connections accepted (UDP under faults: senders heard): the last one's number */
    ps__worker *w;       /* cfg.workers of them */
    int nw;              /* workers whose socket is open */
    int started;         /* serve has started the helpers (once, for re-entry) */
    int helpers;         /* helper threads running: workers 1..helpers */
    /* TCP connection threads: started by the accept loops, joined by them. */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int threads;         /* connection threads running */
    ps__conn *done;      /* threads that have finished, waiting to be joined */
    ps_faults faults;    /* under lock; faults_gen counts the changes */
    ps_faults faults_up; /* a proxy's, for its upstream: the same */
    uint64_t faults_gen;
};

/* What a wait for a descriptor ended with. */
#define PS__READY 1
#define PS__WOKEN 2
#define PS__TIMEOUT 3

/* Address text for ps_server_sockname and the log (addr.c). */
int ps__addr_text(const struct sockaddr_storage *ss, char *host, size_t hostlen);
/* A proxy's upstream as a sockaddr to connect to (addr.c). */
int ps__upstream_address(const ps_config *cfg, struct sockaddr_storage *ss, socklen_t *len);

/* A connection's place on one of its loop's timer lists (epoll.c,
 * uring.c).  A list stays in time order because a connection moves to its
 * tail whenever its clock restarts, so a loop looks only at the heads.
 * The connection's struct embeds it as its first member. */
typedef struct ps__timer ps__timer;
typedef struct ps__tlist {
    ps__timer *head, *tail;
} ps__tlist;
struct ps__timer {
    int64_t since;       /* when its clock restarted (ms) */
    size_t taken;        /* echo its client took since then */
    ps__tlist *on;
    ps__timer *prev, *next;
};
void ps__timer_remove(ps__timer *t);
void ps__timer_push(ps__tlist *l, ps__timer *t);
void ps__timer_restart(ps__tlist *l, ps__timer *t, int64_t now);
/* When the head of l is due, ms after its clock restarted; INT64_MAX if
 * the list is empty or ms is 0 (no limit). */
int64_t ps__timer_due(const ps__tlist *l, int ms);

/* -- faults (fault.c) ------------------------------------------------------
 * A serving thread keeps its own copy of the server's faults and looks at
 * one counter per event to see if it is still current. */
typedef struct ps__fview {
    ps_faults f;
    uint64_t gen;        /* the server's faults_gen when copied */
    int on;              /* any fault set */
} ps__fview;
/* The faults now, or NULL when none is set (the hot path's one branch). */
const ps_faults *ps__faults(ps_server *s, ps__fview *v);
/* The same for one of a proxy's directions: up (faults_up) or down. */
const ps_faults *ps__faults_dir(ps_server *s, ps__fview *v, int up);
/* Abort a TCP connection: the peer gets an RST. */
void ps__reset(int fd);

/* One TCP connection's replies under faults (see pysock/faults.py, which
 * follows the same schedule):
 *   push   take a reply: due latency +- jitter from now, never before the
 *          last; stall drops it; limit_data/reset_after keep what they allow;
 *          its buffers' capacities together grow no past most (unless the
 *          reply alone needs it)
 *   held   the memory it holds: its buffers' capacities, records included,
 *          which a connection counts against max_unsent
 *   due    when the next piece may go (or the close after close_delay),
 *          INT64_MAX if nothing waits
 *   ready  the bytes that may go at now (slice, bandwidth), *p at them
 *   took   they went: pacing starts from now
 *   end    PS__END_FIN / PS__END_RST once a limit's last byte has gone
 * A loop keeps the connections whose shaper holds anything on a list, by
 * the shaper's link (its first member); owner is the connection.  Times in
 * microseconds.  f may be NULL (faults turned off meanwhile). */
#define PS__END_FIN 1
#define PS__END_RST 2
/* corrupt's bit flips along one byte stream (fault.c). */
typedef struct ps__corrupter {
    uint64_t rng;
    uint64_t gap;        /* bytes before the next flip, once drawn */
    int drawn;
} ps__corrupter;
typedef struct ps__shaper {
    ps__timer link;
    void *owner;
    uint64_t rng;
    int spared;          /* toxicity spared it: its faults are none */
    ps__corrupter corrupter;
    int64_t end_at;      /* close_after, reset_after_us: end then (0: not timed) */
    int end_how;         /* PS__END_FIN or PS__END_RST */
    int fired;           /* the end that came, once it has */
    ps__buf data;        /* bytes not yet released: data[off .. len) */
    size_t off;
    ps__buf recs;        /* their due times: ps__rec records from roff on */
    size_t roff;
    uint64_t kept, released;
    int64_t last_due, next_send;
    int64_t close_at;    /* close_delay: close then (0: not closing) */
} ps__shaper;
/* For connection number id, made now under f: toxicity's draw, the timed end. */
ps__shaper *ps__shaper_new(const ps_faults *f, void *owner, uint64_t id);
/* The faults it meets: f, or NULL when toxicity spares it. */
const ps_faults *ps__shape_faults(const ps__shaper *sh, const ps_faults *f);
void ps__shaper_free(ps__shaper *sh);
int ps__shape_push(ps__shaper *sh, const ps_faults *f, const unsigned char *p, size_t n, int64_t now, size_t most);
size_t ps__shape_held(const ps__shaper *sh);
int ps__shape_busy(const ps__shaper *sh);
int64_t ps__shape_due(const ps__shaper *sh);
size_t ps__shape_ready(const ps__shaper *sh, const ps_faults *f, int64_t now, const unsigned char **p);
void ps__shape_took(ps__shaper *sh, const ps_faults *f, size_t n, int64_t now);
int ps__shape_end(ps__shaper *sh, const ps_faults *f);

/* An event loop's faults (epoll.c, uring.c; proxy.c keeps its own views
 * and shaped list, and shares the due time): its view of the server's, and
 * the connections whose shaper holds anything (replies, or a delayed
 * close), on the shaped list by their shaper's link, in no order.  A
 * connection owns *shp (made on first use) and its clock t (on the loop's
 * idle or pending list), which stops while the shaper holds anything: the
 * delay is the server's, not an idle client's.
 *   push        a reply into the shaper, which joins the list
 *   delay_close the client has closed and heard everything: 1 if our
 *               close waits (stall: for good; close_delay: on the list)
 *   released    after the loop sent what the shaper let go: *ending set
 *               once a limit is out; 1 if the shaper holds nothing now
 *               (it has left the list; the loop restarts the clock)
 *   due_ms      the first due time on the list, in ms rounded up (so the
 *               loop never wakes before it); INT64_MAX if none */
typedef struct ps__shaping {
    ps__fview view;
    ps__tlist shaped;
} ps__shaping;
const ps_faults *ps__shaping_seen(const ps__shaping *g);
int ps__shaping_push(ps__shaping *g, ps__shaper **shp, void *owner, uint64_t id, ps__timer *t,
                     const ps__tlist *idle, const unsigned char *p, size_t n, size_t most);
int ps__shaping_delay_close(ps__shaping *g, ps__shaper **shp, void *owner, uint64_t id, ps__timer *t);
/* A connection just opened: under a timed end its shaper is made now, and
 * it joins the list (0, or -ENOMEM). */
int ps__shaping_open(ps__shaping *g, ps_server *s, ps__shaper **shp, void *owner, uint64_t id,
                     ps__timer *t, const ps__tlist *idle);
/* Whether f ends a connection after a time (close_after_us, reset_after_us). */
int ps__timed_end(const ps_faults *f);
int ps__shaping_released(ps__shaping *g, ps__shaper *sh, int *ending);
int64_t ps__shaping_due_ms(const ps__tlist *shaped);

/* One datagram socket's replies under faults: dropped, delayed, doubled
 * or held back per sender (the PS__SENDERS last heard).  Waiting replies
 * sit in a binary heap by due time, then by order of scheduling (O(log n)
 * each, however many wait), and what they hold (each reply's record and
 * bytes, and the heap's slots) stays within limit; push returns -ENOBUFS
 * for one beyond. */
#define PS__SENDERS 64
#define PS__REORDER_HOLD_US 200000
typedef struct ps__dgram ps__dgram;
struct ps__dgram {
    int64_t due;
    uint64_t order;      /* scheduled after every earlier one due at the same time */
    size_t slot;         /* its place in the heap */
    struct sockaddr_storage peer;
    socklen_t plen;
    size_t len;
    unsigned char data[];
};
typedef struct ps__sender {
    struct sockaddr_storage peer;
    socklen_t plen;
    uint64_t rng;
    int spared;          /* toxicity */
    ps__corrupter corrupter;
    int64_t next_free;
    uint64_t heard;      /* when last heard, in pushes: the oldest goes first */
    ps__dgram *held;     /* held back for reorder */
} ps__sender;
typedef struct ps__ushaper {
    ps__dgram **heap;    /* heap[0] is due first */
    size_t n, cap;
    size_t held, limit;  /* what the waiting replies take: records, bytes, heap slots */
    uint64_t order;
    uint64_t pushes;
    uint64_t numbered;   /* senders numbered so far (toxicity's draw)... */
    uint64_t *numbering; /* ...here, or in a counter shared by a server's sockets */
    int nsenders;
    ps__sender senders[PS__SENDERS];
} ps__ushaper;
/* numbering: where senders are numbered (a server's conns, so that its
 * workers' sockets share one count), or NULL: the shaper's own. */
void ps__ushape_init(ps__ushaper *u, size_t limit, uint64_t *numbering);
int ps__ushape_push(ps__ushaper *u, const ps_faults *f, const unsigned char *p, size_t n,
                    const struct sockaddr_storage *peer, socklen_t plen, int64_t now);
int64_t ps__ushape_due(const ps__ushaper *u);
/* Whether any reply waits. */
int ps__ushape_busy(const ps__ushaper *u);
/* The next reply due by now, out of the heap (free() it once sent); NULL if none. */
ps__dgram *ps__ushape_pop(ps__ushaper *u, int64_t now);
/* Send every reply due now from fd, counting bytes_out or errors. */
void ps__ushape_send(ps__ushaper *u, int fd, ps_stats *stats);
void ps__ushape_free(ps__ushaper *u);

/* -- the event loops' skeleton (evloop.c) ---------------------------------
 * epoll.c and uring.c wait for different things (readiness, completions)
 * but keep their connections the same way: on an idle or a pending timer
 * list (ps__timer, embedded first in each connection), or on the shaped
 * list while a fault holds their replies; a stop drains them, then the
 * loop returns.  ps__evloop is that shared state, embedded first in each
 * model's loop; ps__evloop_run is the loop itself, calling the model only
 * through its ps__evops:
 *   turn            wait at most timeout_ms (-1: no limit), then handle
 *                   what came: 0, or -errno (-EINTR: a signal, for Python)
 *   close           the loop is done with connection conn (why: PS_WHY_*)
 *   release         conn's shaper is due: hand on what it lets go, settle
 *   quiet           conn has nothing unsent and nothing in flight
 *   settle_drain    a stop began: conn closes, or gets the grace
 *   stop_accepting  a stop began: no new connection or datagram
 *   accept_again    the back-off after running out of descriptors is over:
 *                   0, or < 0 to try again after another back-off
 *   due, expire     the model's own timers (NULL: none): the first due
 *                   time in ms (INT64_MAX: none), and what is due at now
 * A connection pointer is its timer's (the first member). */
typedef struct ps__evloop ps__evloop;
typedef struct ps__evops {
    int (*turn)(ps__evloop *l, int timeout_ms);
    void (*close)(ps__evloop *l, void *conn, int why);
    void (*release)(ps__evloop *l, void *conn, int64_t now);
    int (*quiet)(const void *conn);
    void (*settle_drain)(ps__evloop *l, void *conn);
    void (*stop_accepting)(ps__evloop *l);
    int (*accept_again)(ps__evloop *l);
    int64_t (*due)(const ps__evloop *l);
    void (*expire)(ps__evloop *l, int64_t now);
} ps__evops;

struct ps__evloop {
    ps__worker *w;
    const ps__evops *ops;
    int64_t accept_at;   /* accepting paused until then (0: not paused) */
    int draining;        /* stopping: finishing echoes, then closing */
    int64_t grace_end;
    int nconns;          /* connections open (not yet closed by the loop) */
    int inflight;        /* operations the kernel still holds (uring); a stop waits for them */
    ps__tlist idle, pending;
    ps__shaping faults;  /* its view of the server's faults, its shaped connections */
};

void ps__evloop_init(ps__evloop *l, ps__worker *w, const ps__evops *ops);
/* Serve until a stop has drained every connection: 0, or a turn's -errno. */
int ps__evloop_run(ps__evloop *l);
/* Close every connection on list, counting each in *counter (if not NULL). */
void ps__evloop_close_list(ps__evloop *l, ps__tlist *list, uint64_t *counter, int why);
/* Drop what shapers hold: a quiet connection closes, the others keep their grace. */
void ps__evloop_close_shaped(ps__evloop *l);

/* What every serving loop uses (loop.c). */
int ps__wait(int fd, short events, int wake_fd, int timeout_ms, const sigset_t *mask);
int ps__stopping(const ps_server *s);
int64_t ps__now_ms(void);
int64_t ps__now_us(void);
uint64_t ps__active(const ps_server *s);
int ps__over_limit(const ps_server *s);

/* What the log says of a connection: its number, its peer, its bytes. */
typedef struct ps__conninfo {
    uint64_t id;
    uint64_t in, out;
    char peer[48];
} ps__conninfo;

/* ps__accept: take one connection off w's listening socket; *ci is filled
 * in for the log (its peer only when the server keeps one).
 *   PS__TAKEN     *fd is a non-blocking connection to serve (counted accepted)
 *   PS__EMPTY     none now, or one client's failure (counted in errors)
 *   PS__REJECTED  over max_conns: accepted and closed at once (counted)
 *   PS__EXHAUSTED out of descriptors or memory: back off PS__ACCEPT_BACKOFF_MS
 *   -EINTR        a signal: return to Python */
#define PS__EMPTY 0
#define PS__TAKEN 1
#define PS__REJECTED 2
#define PS__EXHAUSTED 3
#define PS__ACCEPT_BACKOFF_MS 50
int ps__accept(ps__worker *w, int *fd, ps__conninfo *ci);
/* The two halves of ps__accept, for a loop whose accept the kernel ran
 * (io_uring): what an accept's error means, and a connection taken. */
int ps__accept_failed(ps__worker *w, int err);
int ps__accepted(ps__worker *w, int fd, ps__conninfo *ci);

/* ps__conn_event: a connection's open, close (with why) or rejection, to
 * the log when the server keeps one (cfg.log_events); nothing otherwise. */
void ps__conn_event(const ps_server *s, const ps__conninfo *ci, int kind, int why);

/* ps__spin: call attempt(arg) until it finds something (non-zero: a count
 * or -errno), the server's spin_us pass (no longer than timeout_ms, the
 * wait it precedes; -1: no limit), or the server stops; its last result.
 * Busy-polling before a sleep buys a faster answer with a core.  0 at once
 * without spin_us, or for a wait of 0. */
int ps__spin(const ps_server *s, int timeout_ms, int (*attempt)(void *), void *arg);

/* A serving model: how a worker's loop waits and serves.  server.c picks
 * one when the server opens (ps_server_open) and from then on calls only
 * these; a hook left NULL has nothing to do.
 *   open   per worker, once its socket is bound: the loop's own state
 *   serve  serve until the stop flag; 0, -EINTR (call again), or -errno
 *   drain  after every worker's loop has returned: end what they started
 *   free   per worker: release what open made (also after a failed open) */
struct ps__model {
    const char *name;
    int (*open)(ps__worker *w);
    int (*serve)(ps__worker *w);
    void (*drain)(ps_server *s);
    void (*free)(ps__worker *w);
};

#ifdef PS__HAVE_URING
/* io_uring through its system calls (ring.c): a submission queue entries
 * are written to and a completion queue read from. */
typedef struct ps__ring {
    int fd;
    unsigned flags;      /* the setup flags this kernel took */
    int enabled;
    unsigned tail;       /* our submission tail, published at enter */
    unsigned *sq_head, *sq_tail, *cq_head, *cq_tail;
    unsigned sq_mask, cq_mask, sq_entries;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    void *sq_map, *cq_map;
    size_t sq_len, cq_len, sqes_len;
} ps__ring;

/* A ring of n provided buffers of size bytes (n a power of 2): the kernel
 * picks one when data arrives; the loop gives it back (put) once done. */
typedef struct ps__bufring {
    struct io_uring_buf_ring *ring;
    unsigned char *mem;
    unsigned n, size;
    int group;
    uint16_t tail;
} ps__bufring;

int ps__ring_open(ps__ring *r, unsigned entries);
int ps__ring_enable(ps__ring *r);
void ps__ring_close(ps__ring *r);
/* The next free entry, zeroed; NULL when the queue is full (submit first). */
struct io_uring_sqe *ps__ring_sqe(ps__ring *r);
/* Submit what is queued, and run what has completed; no waiting. */
int ps__ring_submit(ps__ring *r);
/* Submit, and wait for a completion, timeout_ms (-1: no limit) or a signal
 * (with mask: see ps_server_serve): -ETIME, -EINTR or a count. */
int ps__ring_wait(ps__ring *r, int timeout_ms, const sigset_t *mask);
/* The oldest completion not yet seen, or NULL; ps__ring_seen frees it. */
struct io_uring_cqe *ps__ring_cqe(ps__ring *r);
void ps__ring_seen(ps__ring *r);
int ps__bufring_open(ps__ring *r, ps__bufring *b, int group, unsigned n, unsigned size);
unsigned char *ps__bufring_data(const ps__bufring *b, unsigned id);
void ps__bufring_put(ps__bufring *b, unsigned id);
void ps__bufring_free(ps__bufring *b);
/* 0 if this kernel gives the uring model what it needs, else -errno. */
int ps__uring_probe(void);

extern const ps__model ps__uring_model;    /* uring.c */
#endif

extern const ps__model ps__threads_model;  /* tcp.c */
extern const ps__model ps__udp_model;      /* udp.c */
#ifdef PS__HAVE_EPOLL
/* epoll_ctl(ep, op, fd) for events, with ptr as the event's data: 0 or -errno. */
int ps__epoll_set(int ep, int op, int fd, uint32_t events, void *ptr);

extern const ps__model ps__epoll_model;    /* epoll.c */
extern const ps__model ps__proxy_model;    /* proxy.c */
extern const ps__model ps__dproxy_model;   /* dproxy.c */
#endif


#endif
