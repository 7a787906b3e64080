/* fault.c - faults on demand: the schedule a server's replies follow when a
 * test asks it to misbehave (latency, bandwidth, slices, limits, drops...).
 * The serving loops hand their replies here instead of to the socket while
 * faults are set, and send what comes back when it is due.  pysock/faults.py
 * is the same schedule for the Python twins, with the same generator: a
 * seed gives the same faults on every engine. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

/* -- the server's faults ------------------------------------------------- */
static int any_fault(const ps_faults *f)
{
    return f->latency_us > 0 || f->jitter_us > 0 || f->bandwidth > 0 || f->slice > 0
        || f->slice_delay_us > 0 || f->limit_data > 0 || f->reset_after > 0 || f->stall
        || f->close_delay_us > 0 || f->drop > 0 || f->duplicate > 0 || f->reorder > 0;
}

int ps_server_set_faults(ps_server *s, const ps_faults *f)
{
    pthread_mutex_lock(&s->lock);
    if (f != NULL)
        s->faults = *f;
    else
        memset(&s->faults, 0, sizeof s->faults);
    __atomic_add_fetch(&s->faults_gen, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

const ps_faults *ps__faults(ps_server *s, ps__fview *v)
{
    if (__atomic_load_n(&s->faults_gen, __ATOMIC_ACQUIRE) != v->gen) {
        pthread_mutex_lock(&s->lock);
        v->f = s->faults;
        v->gen = s->faults_gen;
        pthread_mutex_unlock(&s->lock);
        v->on = any_fault(&v->f);
    }
    return v->on ? &v->f : NULL;
}

/* Disconnecting a TCP socket (AF_UNSPEC) aborts it: an RST, whatever else
 * still holds the descriptor (an io_uring operation does); SO_LINGER 0 makes
 * the close that follows abort too where that is not supported. */
void ps__reset(int fd)
{
    struct linger lg = {1, 0};
    struct sockaddr sa;

    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    memset(&sa, 0, sizeof sa);
    sa.sa_family = AF_UNSPEC;
    (void)connect(fd, &sa, sizeof sa);  /* if it fails, the close aborts it */
}

/* -- the generator: splitmix64 ------------------------------------------- */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* In [0, 1), as pysock.faults.Rng.uniform. */
static double uniform(uint64_t *state)
{
    return (double)(rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* latency +- jitter for the draw u, never below zero. */
static int64_t delay_us(const ps_faults *f, double u)
{
    int64_t d = f->latency_us + (int64_t)((2.0 * u - 1.0) * (double)f->jitter_us);

    return d > 0 ? d : 0;
}

static int64_t latest(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static const ps_faults no_faults;

/* -- TCP: one connection's replies --------------------------------------- */
typedef struct ps__rec {
    int64_t due;
    size_t left;         /* bytes of this reply not yet released */
} ps__rec;

#define PACE_US 20000    /* under bandwidth: pieces of 20 ms worth */

static ps__rec *rec_at(const ps__shaper *sh, size_t i)
{
    return (ps__rec *)(void *)sh->recs.data + sh->roff + i;
}

static size_t nrecs(const ps__shaper *sh)
{
    return sh->recs.len / sizeof(ps__rec) - sh->roff;
}

ps__shaper *ps__shaper_new(const ps_faults *f, void *owner)
{
    ps__shaper *sh = calloc(1, sizeof *sh);

    if (sh != NULL) {
        sh->owner = owner;
        sh->rng = f != NULL ? f->seed : 0;
    }
    return sh;
}

void ps__shaper_free(ps__shaper *sh)
{
    if (sh == NULL)
        return;
    ps__buf_free(&sh->data);
    ps__buf_free(&sh->recs);
    free(sh);
}

size_t ps__shape_held(const ps__shaper *sh)
{
    return sh == NULL ? 0 : sh->data.len - sh->off + sizeof(ps__rec) * nrecs(sh);
}

int ps__shape_busy(const ps__shaper *sh)
{
    return sh != NULL && (sh->data.len > sh->off || sh->close_at > 0);
}

static size_t limit_of(const ps_faults *f)
{
    uint64_t a = f->limit_data, b = f->reset_after;

    if (a == 0 || (b > 0 && b < a))
        a = b;
    return a == 0 || a > SIZE_MAX ? SIZE_MAX : (size_t)a;
}

/* Released bytes leave the front; move what is left there once that front
 * is most of the buffer, so that it never grows past what is queued. */
static void compact(ps__shaper *sh)
{
    size_t roff = sh->roff * sizeof(ps__rec);

    if (sh->off > 0 && sh->off >= sh->data.len / 2) {
        memmove(sh->data.data, sh->data.data + sh->off, sh->data.len - sh->off);
        sh->data.len -= sh->off;
        sh->off = 0;
    }
    if (roff > 0 && roff >= sh->recs.len / 2) {
        memmove(sh->recs.data, sh->recs.data + roff, sh->recs.len - roff);
        sh->recs.len -= roff;
        sh->roff = 0;
    }
}

int ps__shape_push(ps__shaper *sh, const ps_faults *f, const unsigned char *p, size_t n, int64_t now)
{
    int64_t due;
    size_t limit;
    ps__rec r;
    int rc;

    if (f == NULL)
        f = &no_faults;
    if (f->stall || n == 0)
        return 0;
    due = latest(now + delay_us(f, uniform(&sh->rng)), sh->last_due);
    limit = limit_of(f);
    if (sh->kept >= limit)
        return 0;
    if (n > limit - sh->kept)
        n = limit - sh->kept;
    compact(sh);
    if ((rc = ps__buf_append(&sh->data, p, n)) < 0)
        return rc;
    sh->last_due = due;
    sh->kept += n;
    if (nrecs(sh) > 0 && rec_at(sh, nrecs(sh) - 1)->due == due) {
        rec_at(sh, nrecs(sh) - 1)->left += n;
        return 0;
    }
    r.due = due;
    r.left = n;
    if ((rc = ps__buf_append(&sh->recs, &r, sizeof r)) < 0) {
        sh->data.len -= n;
        sh->kept -= n;
        return rc;
    }
    return 0;
}

int64_t ps__shape_due(const ps__shaper *sh)
{
    if (sh == NULL)
        return INT64_MAX;
    if (nrecs(sh) > 0)
        return latest(rec_at(sh, 0)->due, sh->next_send);
    return sh->close_at > 0 ? sh->close_at : INT64_MAX;
}

size_t ps__shape_ready(const ps__shaper *sh, const ps_faults *f, int64_t now, const unsigned char **p)
{
    size_t n, pace;

    if (f == NULL)
        f = &no_faults;
    if (nrecs(sh) == 0 || now < ps__shape_due(sh))
        return 0;
    n = rec_at(sh, 0)->left;
    if (f->slice > 0 && n > f->slice)
        n = (size_t)f->slice;
    if (f->bandwidth > 0) {
        pace = (size_t)(f->bandwidth * PACE_US / 1000000);
        if (pace == 0)
            pace = 1;
        if (n > pace)
            n = pace;
    }
    *p = sh->data.data + sh->off;
    return n;
}

void ps__shape_took(ps__shaper *sh, const ps_faults *f, size_t n, int64_t now)
{
    int64_t wait = 0, paced;
    ps__rec *head = rec_at(sh, 0);

    if (f == NULL)
        f = &no_faults;
    sh->off += n;
    sh->released += n;
    head->left -= n;
    if (head->left == 0)
        sh->roff++;
    if (nrecs(sh) == 0) {       /* all out: the buffers go back */
        ps__buf_free(&sh->data);
        ps__buf_free(&sh->recs);
        sh->off = sh->roff = 0;
    }
    if (f->slice > 0)
        wait = f->slice_delay_us;
    if (f->bandwidth > 0) {
        paced = (int64_t)((double)n * 1e6 / (double)f->bandwidth);
        wait = latest(wait, paced);
    }
    sh->next_send = now + wait;
}

int ps__shape_end(const ps__shaper *sh, const ps_faults *f)
{
    if (sh == NULL || f == NULL || nrecs(sh) > 0)
        return 0;
    if (f->reset_after > 0 && sh->released >= f->reset_after)
        return PS__END_RST;
    if (f->limit_data > 0 && sh->released >= f->limit_data)
        return PS__END_FIN;
    return 0;
}

/* -- an event loop's shaped connections (epoll.c, uring.c) -------------- */
const ps_faults *ps__shaping_seen(const ps__shaping *g)
{
    return g->view.on ? &g->view.f : NULL;
}

static int join(ps__shaping *g, ps__shaper **shp, void *owner)
{
    if (*shp == NULL && (*shp = ps__shaper_new(ps__shaping_seen(g), owner)) == NULL)
        return -ENOMEM;
    return 0;
}

int ps__shaping_push(ps__shaping *g, ps__shaper **shp, void *owner, ps__timer *t, const ps__tlist *idle,
                     const unsigned char *p, size_t n)
{
    int rc = join(g, shp, owner);

    if (rc == 0)
        rc = ps__shape_push(*shp, ps__shaping_seen(g), p, n, ps__now_us());
    if (rc < 0)
        return rc;
    if (ps__shape_busy(*shp) && (*shp)->link.on == NULL) {
        ps__timer_push(&g->shaped, &(*shp)->link);
        if (t->on == idle)
            ps__timer_remove(t);
    }
    return 0;
}

int ps__shaping_delay_close(ps__shaping *g, ps__shaper **shp, void *owner, ps__timer *t)
{
    const ps_faults *f = ps__shaping_seen(g);

    if (f != NULL && f->stall)
        return 1;
    if (f == NULL || f->close_delay_us == 0 || (*shp != NULL && (*shp)->close_at > 0))
        return 0;
    if (join(g, shp, owner) < 0)
        return 0;
    (*shp)->close_at = ps__now_us() + f->close_delay_us;
    ps__timer_remove(t);
    ps__timer_push(&g->shaped, &(*shp)->link);
    return 1;
}

int ps__shaping_released(ps__shaping *g, ps__shaper *sh, int *ending)
{
    if (*ending == 0)
        *ending = ps__shape_end(sh, ps__shaping_seen(g));
    if (ps__shape_busy(sh))
        return 0;
    ps__timer_remove(&sh->link);
    return 1;
}

int64_t ps__shaping_due_ms(const ps__shaping *g)
{
    int64_t due = INT64_MAX, d;
    ps__timer *t;

    for (t = g->shaped.head; t != NULL; t = t->next) {
        d = ps__shape_due((ps__shaper *)t);
        if (d < due)
            due = d;
    }
    return due == INT64_MAX ? due : (due + 999) / 1000;
}

/* -- UDP: one socket's replies ------------------------------------------- */
void ps__ushape_init(ps__ushaper *u, size_t limit)
{
    memset(u, 0, sizeof *u);
    u->limit = limit;
}

static int same_peer(const ps__sender *s, const struct sockaddr_storage *peer, socklen_t plen)
{
    return s->plen == plen && memcmp(&s->peer, peer, plen) == 0;
}

/* The sender's state: found, or new in a free slot or the least recently
 * heard one's (its held reply still goes, on its own time). */
static ps__sender *sender_of(ps__ushaper *u, const ps_faults *f,
                             const struct sockaddr_storage *peer, socklen_t plen)
{
    ps__sender *s, *oldest = &u->senders[0];
    int i;

    u->pushes++;
    for (i = 0; i < u->nsenders; i++) {
        s = &u->senders[i];
        if (same_peer(s, peer, plen)) {
            s->heard = u->pushes;
            return s;
        }
        if (s->heard < oldest->heard)
            oldest = s;
    }
    s = u->nsenders < PS__SENDERS ? &u->senders[u->nsenders++] : oldest;
    memset(s, 0, sizeof *s);
    memcpy(&s->peer, peer, plen);
    s->plen = plen;
    s->rng = f->seed;
    s->heard = u->pushes;
    return s;
}

/* Into the list by due time, after everything already there for then. */
static void schedule(ps__ushaper *u, ps__dgram *d)
{
    ps__dgram **at = &u->head;

    while (*at != NULL && (*at)->due <= d->due)
        at = &(*at)->next;
    d->next = *at;
    *at = d;
}

/* Take d out of the list; 0 if it is not there (it went already). */
static int unschedule(ps__ushaper *u, ps__dgram *d)
{
    ps__dgram **at = &u->head;

    while (*at != NULL && *at != d)
        at = &(*at)->next;
    if (*at == NULL)
        return 0;
    *at = d->next;
    return 1;
}

static void move_to(ps__ushaper *u, ps__dgram *d, int64_t due)
{
    if (unschedule(u, d)) {
        d->due = due;
        schedule(u, d);
    }
}

static ps__dgram *new_dgram(const unsigned char *p, size_t n, const struct sockaddr_storage *peer,
                            socklen_t plen, int64_t due)
{
    ps__dgram *d = malloc(sizeof *d + n);

    if (d == NULL)
        return NULL;
    d->next = NULL;
    d->due = due;
    memcpy(&d->peer, peer, plen);
    d->plen = plen;
    d->len = n;
    memcpy(d->data, p, n);
    return d;
}

int ps__ushape_push(ps__ushaper *u, const ps_faults *f, const unsigned char *p, size_t n,
                    const struct sockaddr_storage *peer, socklen_t plen, int64_t now)
{
    ps__sender *s = sender_of(u, f, peer, plen);
    double u_drop = uniform(&s->rng), u_dup = uniform(&s->rng);
    double u_reorder = uniform(&s->rng), u_jitter = uniform(&s->rng);
    int64_t due;
    ps__dgram *first = NULL, *d;
    int copies, i;

    if (f->stall || u_drop < f->drop)
        return 0;
    due = now + delay_us(f, u_jitter);
    copies = u_dup < f->duplicate ? 2 : 1;
    if (u->bytes + (size_t)copies * n > u->limit)
        return -ENOBUFS;
    for (i = 0; i < copies; i++) {
        if (f->bandwidth > 0) {
            due = latest(due, s->next_free);
            s->next_free = due + (int64_t)((double)n * 1e6 / (double)f->bandwidth);
        }
        if ((d = new_dgram(p, n, peer, plen, due)) == NULL)
            return -ENOMEM;
        schedule(u, d);
        u->bytes += n;
        if (first == NULL)
            first = d;
    }
    if (s->held != NULL) {      /* the reply held back goes after this one */
        move_to(u, s->held, due);
        s->held = NULL;
    }
    if (u_reorder < f->reorder) {
        move_to(u, first, first->due + PS__REORDER_HOLD_US);
        s->held = first;
    }
    return 0;
}

int64_t ps__ushape_due(const ps__ushaper *u)
{
    return u->head != NULL ? u->head->due : INT64_MAX;
}

ps__dgram *ps__ushape_pop(ps__ushaper *u, int64_t now)
{
    ps__dgram *d = u->head;
    int i;

    if (d == NULL || d->due > now)
        return NULL;
    u->head = d->next;
    u->bytes -= d->len;
    for (i = 0; i < u->nsenders; i++)
        if (u->senders[i].held == d)
            u->senders[i].held = NULL;
    return d;
}

void ps__ushape_send(ps__ushaper *u, int fd, ps_stats *stats)
{
    ps__dgram *d;

    while ((d = ps__ushape_pop(u, ps__now_us())) != NULL) {
        if (sendto(fd, d->data, d->len, MSG_NOSIGNAL, (struct sockaddr *)&d->peer, d->plen) >= 0)
            PS_ADD(stats->bytes_out, d->len);
        else
            PS_ADD(stats->errors, 1);  /* a full buffer, an ICMP error: lost as on a network */
        free(d);
    }
}

void ps__ushape_free(ps__ushaper *u)
{
    ps__dgram *d, *next;

    for (d = u->head; d != NULL; d = next) {
        next = d->next;
        free(d);
    }
    u->head = NULL;
    u->bytes = 0;
    u->nsenders = 0;
}
