/* fault.c - faults on demand: the schedule a server's replies follow when a
 * test asks it to misbehave (latency, bandwidth, slices, limits, drops...).
 * The serving loops hand their replies here instead of to the socket while
 * faults are set, and send what comes back when it is due.  pysock/faults.py
 * is the same schedule for the Python twins, with the same generator: a
 * seed gives the same faults on every engine. */
#include <errno.h>
#include <math.h>
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
        || f->close_delay_us > 0 || f->drop > 0 || f->duplicate > 0 || f->reorder > 0
        || ps__timed_end(f) || f->corrupt > 0;
}

int ps__timed_end(const ps_faults *f)
{
    return f != NULL && (f->close_after_us > 0 || f->reset_after_us > 0);
}

static int set_faults(ps_server *s, ps_faults *to, const ps_faults *f)
{
    pthread_mutex_lock(&s->lock);
    if (f != NULL)
        *to = *f;
    else
        memset(to, 0, sizeof *to);
    __atomic_add_fetch(&s->faults_gen, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int ps_server_set_faults(ps_server *s, const ps_faults *f)
{
    return set_faults(s, &s->faults, f);
}

int ps_server_set_faults_up(ps_server *s, const ps_faults *f)
{
    return set_faults(s, &s->faults_up, f);
}

const ps_faults *ps__faults_dir(ps_server *s, ps__fview *v, int up)
{
    if (__atomic_load_n(&s->faults_gen, __ATOMIC_ACQUIRE) != v->gen) {
        pthread_mutex_lock(&s->lock);
        v->f = up ? s->faults_up : s->faults;
        v->gen = s->faults_gen;
        pthread_mutex_unlock(&s->lock);
        v->on = any_fault(&v->f);
    }
    return v->on ? &v->f : NULL;
}

const ps_faults *ps__faults(ps_server *s, ps__fview *v)
{
    return ps__faults_dir(s, v, 0);
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

/* Salts that start a connection's (sender's) other generators from the
 * seed, as pysock/faults.py has them: toxicity's draw, and corrupt's. */
#define TOXIC_SALT 0x5851F42D4C957F2Dull
#define CORRUPT_SALT 0x2545F4914F6CDD1Dull
#define MAX_GAP ((uint64_t)1 << 62)

/* Whether toxicity spares connection (sender) number: one draw of its own
 * generator, started from the seed and the number. */
static int spared(const ps_faults *f, uint64_t number)
{
    uint64_t state = (f->seed ^ TOXIC_SALT) + number;

    return f->toxicity > 0 && f->toxicity < 1.0 && uniform(&state) >= f->toxicity;
}

static void corrupter_init(ps__corrupter *c, uint64_t seed)
{
    c->rng = seed ^ CORRUPT_SALT;
    c->gap = 0;
    c->drawn = 0;
}

/* The geometric draw: how many bytes pass before the next flip. */
static uint64_t gap_of(double u, double chance)
{
    double g;

    if (chance >= 1.0)
        return 0;
    g = floor(log1p(-u) / log1p(-chance));
    return g >= (double)MAX_GAP ? MAX_GAP : (uint64_t)g;
}

/* Flip the bits corrupt's draws fall on in p[0 .. n), the stream's next n
 * bytes: a flip costs two draws however long the stream. */
static void corrupt(ps__corrupter *c, double chance, unsigned char *p, size_t n)
{
    size_t pos = 0;

    if (chance <= 0)
        return;
    for (;;) {
        if (!c->drawn) {
            c->gap = gap_of(uniform(&c->rng), chance);
            c->drawn = 1;
        }
        if (c->gap >= n - pos) {
            c->gap -= n - pos;
            return;
        }
        pos += (size_t)c->gap;
        p[pos] ^= (unsigned char)(1u << (unsigned)(uniform(&c->rng) * 8));
        pos++;
        c->drawn = 0;
    }
}

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

ps__shaper *ps__shaper_new(const ps_faults *f, void *owner, uint64_t id)
{
    ps__shaper *sh = calloc(1, sizeof *sh);

    if (sh == NULL)
        return NULL;
    sh->owner = owner;
    if (f == NULL)
        return sh;
    sh->rng = f->seed;
    sh->spared = spared(f, id);
    corrupter_init(&sh->corrupter, f->seed);
    if (!sh->spared && ps__timed_end(f)) {
        int rst = f->reset_after_us > 0 && (f->close_after_us == 0 || f->reset_after_us <= f->close_after_us);

        sh->end_how = rst ? PS__END_RST : PS__END_FIN;
        sh->end_at = ps__now_us() + (rst ? f->reset_after_us : f->close_after_us);
    }
    return sh;
}

const ps_faults *ps__shape_faults(const ps__shaper *sh, const ps_faults *f)
{
    return sh != NULL && sh->spared ? NULL : f;
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
    return sh == NULL ? 0 : sh->data.cap + sh->recs.cap;
}

int ps__shape_busy(const ps__shaper *sh)
{
    return sh != NULL && (sh->data.len > sh->off || sh->close_at > 0 || sh->end_at > 0);
}

static size_t limit_of(const ps_faults *f)
{
    uint64_t a = f->limit_data, b = f->reset_after;

    if (a == 0 || (b > 0 && b < a))
        a = b;
    return a == 0 || a > SIZE_MAX ? SIZE_MAX : (size_t)a;
}

/* Released bytes leave the front; move what is left there once that front
 * is most of the buffer, or before the buffer would grow for n more bytes,
 * so that it never grows past what is queued. */
static void compact(ps__shaper *sh, size_t n)
{
    size_t roff = sh->roff * sizeof(ps__rec);

    if (sh->off > 0 && (sh->off >= sh->data.len / 2 || sh->data.cap - sh->data.len < n)) {
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

/* Room for n more bytes of data and one more record, the two buffers'
 * capacities together never past most (unless the bytes alone need it). */
static int reserve(ps__shaper *sh, size_t n, size_t most)
{
    size_t rec_room = sh->recs.cap - sh->recs.len >= sizeof(ps__rec) ? sh->recs.cap : sh->recs.cap + sizeof(ps__rec);
    int rc = ps__buf_reserve(&sh->data, n, ps__room(most, rec_room));

    if (rc == 0)
        rc = ps__buf_reserve(&sh->recs, sizeof(ps__rec), ps__room(most, sh->data.cap));
    return rc;
}

int ps__shape_push(ps__shaper *sh, const ps_faults *f, const unsigned char *p, size_t n, int64_t now, size_t most)
{
    int64_t due;
    size_t limit;
    ps__rec r;
    int rc;

    f = ps__shape_faults(sh, f);
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
    compact(sh, n);
    if ((rc = reserve(sh, n, most)) < 0)
        return rc;
    memcpy(sh->data.data + sh->data.len, p, n);
    corrupt(&sh->corrupter, f->corrupt, sh->data.data + sh->data.len, n);
    sh->data.len += n;
    sh->last_due = due;
    sh->kept += n;
    if (nrecs(sh) > 0 && rec_at(sh, nrecs(sh) - 1)->due == due) {
        rec_at(sh, nrecs(sh) - 1)->left += n;
        return 0;
    }
    r.due = due;
    r.left = n;
    memcpy(sh->recs.data + sh->recs.len, &r, sizeof r);
    sh->recs.len += sizeof r;
    return 0;
}

int64_t ps__shape_due(const ps__shaper *sh)
{
    int64_t due;

    if (sh == NULL)
        return INT64_MAX;
    if (nrecs(sh) > 0)
        due = latest(rec_at(sh, 0)->due, sh->next_send);
    else
        due = sh->close_at > 0 ? sh->close_at : INT64_MAX;
    return sh->end_at > 0 && sh->end_at < due ? sh->end_at : due;
}

size_t ps__shape_ready(const ps__shaper *sh, const ps_faults *f, int64_t now, const unsigned char **p)
{
    size_t n, pace;

    f = ps__shape_faults(sh, f);
    if (f == NULL)
        f = &no_faults;
    if (nrecs(sh) == 0 || now < latest(rec_at(sh, 0)->due, sh->next_send))
        return 0;
    n = rec_at(sh, 0)->left;
    if (f->slice > 0 && n > f->slice)
        n = (size_t)f->slice;
    if (f->bandwidth > 0) {
        pace = (size_t)(f->bandwidth / (1000000 / PACE_US));  /* divided first: no overflow */
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

    f = ps__shape_faults(sh, f);
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

int ps__shape_end(ps__shaper *sh, const ps_faults *f)
{
    if (sh != NULL && sh->end_at > 0 && ps__now_us() >= sh->end_at) {
        sh->fired = sh->end_how;  /* the timed end: once, then it holds it no more */
        sh->end_at = 0;
    }
    if (sh != NULL && sh->fired)
        return sh->fired;
    f = ps__shape_faults(sh, f);
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

static int join(ps__shaping *g, ps__shaper **shp, void *owner, uint64_t id)
{
    if (*shp == NULL && (*shp = ps__shaper_new(ps__shaping_seen(g), owner, id)) == NULL)
        return -ENOMEM;
    return 0;
}

int ps__shaping_open(ps__shaping *g, ps_server *s, ps__shaper **shp, void *owner, uint64_t id,
                     ps__timer *t, const ps__tlist *idle)
{
    if (!ps__timed_end(ps__faults(s, &g->view)))
        return 0;
    return ps__shaping_push(g, shp, owner, id, t, idle, NULL, 0, 0);
}

int ps__shaping_push(ps__shaping *g, ps__shaper **shp, void *owner, uint64_t id, ps__timer *t,
                     const ps__tlist *idle, const unsigned char *p, size_t n, size_t most)
{
    int rc = join(g, shp, owner, id);

    if (rc == 0)
        rc = ps__shape_push(*shp, ps__shaping_seen(g), p, n, ps__now_us(), most);
    if (rc < 0)
        return rc;
    if (ps__shape_busy(*shp) && (*shp)->link.on == NULL) {
        ps__timer_push(&g->shaped, &(*shp)->link);
        if (t->on == idle)
            ps__timer_remove(t);
    }
    return 0;
}

int ps__shaping_delay_close(ps__shaping *g, ps__shaper **shp, void *owner, uint64_t id, ps__timer *t)
{
    const ps_faults *f = ps__shaping_seen(g);

    if (f != NULL && join(g, shp, owner, id) < 0)
        return 0;
    f = ps__shape_faults(*shp, f);
    if (f != NULL && f->stall)
        return 1;
    if (f == NULL || f->close_delay_us == 0 || (*shp != NULL && (*shp)->close_at > 0))
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

int64_t ps__shaping_due_ms(const ps__tlist *shaped)
{
    int64_t due = INT64_MAX, d;
    ps__timer *t;

    for (t = shaped->head; t != NULL; t = t->next) {
        d = ps__shape_due((ps__shaper *)t);
        if (d < due)
            due = d;
    }
    return due == INT64_MAX ? due : (due + 999) / 1000;
}

/* -- UDP: one socket's replies ------------------------------------------- */
void ps__ushape_init(ps__ushaper *u, size_t limit, uint64_t *numbering)
{
    memset(u, 0, sizeof *u);
    u->limit = limit;
    u->numbering = numbering != NULL ? numbering : &u->numbered;
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
    s->spared = spared(f, PS_ADD(*u->numbering, 1));
    corrupter_init(&s->corrupter, f->seed);
    return s;
}

/* What one waiting reply of n bytes counts against the limit: its bytes
 * and PS__DGRAM_RECORD for its record, the same on every engine (the
 * twins' pysock.faults.DGRAM_COST), so the same datagrams fit everywhere;
 * more than the record and its heap slot take here. */
#define PS__DGRAM_RECORD 384
typedef char ps__record_fits[sizeof(ps__dgram) + sizeof(ps__dgram *) <= PS__DGRAM_RECORD ? 1 : -1];

static size_t dgram_cost(size_t n)
{
    return n + PS__DGRAM_RECORD;
}

/* -- the heap: by due, then order ---------------------------------------- */
static int earlier(const ps__dgram *a, const ps__dgram *b)
{
    return a->due < b->due || (a->due == b->due && a->order < b->order);
}

static void place(ps__ushaper *u, ps__dgram *d, size_t i)
{
    u->heap[i] = d;
    d->slot = i;
}

static void sift_up(ps__ushaper *u, size_t i)
{
    ps__dgram *d = u->heap[i];

    while (i > 0 && earlier(d, u->heap[(i - 1) / 2])) {
        place(u, u->heap[(i - 1) / 2], i);
        i = (i - 1) / 2;
    }
    place(u, d, i);
}

static void sift_down(ps__ushaper *u, size_t i)
{
    ps__dgram *d = u->heap[i];
    size_t child;

    for (;;) {
        child = 2 * i + 1;
        if (child >= u->n)
            break;
        if (child + 1 < u->n && earlier(u->heap[child + 1], u->heap[child]))
            child++;
        if (!earlier(u->heap[child], d))
            break;
        place(u, u->heap[child], i);
        i = child;
    }
    place(u, d, i);
}

/* Into the heap, after everything already scheduled for the same time. */
static int schedule(ps__ushaper *u, ps__dgram *d)
{
    ps__dgram **grown;

    if (u->n == u->cap) {
        grown = realloc(u->heap, (u->cap ? 2 * u->cap : 64) * sizeof *grown);
        if (grown == NULL)
            return -ENOMEM;
        u->heap = grown;
        u->cap = u->cap ? 2 * u->cap : 64;
    }
    d->order = ++u->order;
    place(u, d, u->n++);
    sift_up(u, d->slot);
    return 0;
}

/* Out of the heap, wherever it is. */
static void unschedule(ps__ushaper *u, ps__dgram *d)
{
    size_t i = d->slot;

    u->n--;
    if (i == u->n)
        return;
    place(u, u->heap[u->n], i);
    sift_down(u, i);
    sift_up(u, u->heap[i]->slot);
}

/* d goes at due now, after everything scheduled so far for then. */
static void move_to(ps__ushaper *u, ps__dgram *d, int64_t due)
{
    unschedule(u, d);
    d->due = due;
    schedule(u, d);  /* cannot fail: the heap has the slot it left */
}

static ps__dgram *new_dgram(const unsigned char *p, size_t n, const struct sockaddr_storage *peer,
                            socklen_t plen, int64_t due)
{
    ps__dgram *d = malloc(sizeof *d + n);

    if (d == NULL)
        return NULL;
    d->due = due;
    memcpy(&d->peer, peer, plen);
    d->plen = plen;
    d->len = n;
    memcpy(d->data, p, n);
    return d;
}

static void take_out(ps__ushaper *u, ps__dgram *d)
{
    int i;

    u->held -= dgram_cost(d->len);
    for (i = 0; i < u->nsenders; i++)
        if (u->senders[i].held == d)
            u->senders[i].held = NULL;
}

/* reorder: the reply is held back and goes right after its sender's next
 * one, which is never held itself (so 1.0 swaps every pair), or
 * PS__REORDER_HOLD_US after its own time if none comes. */
int ps__ushape_push(ps__ushaper *u, const ps_faults *f, const unsigned char *p, size_t n,
                    const struct sockaddr_storage *peer, socklen_t plen, int64_t now)
{
    ps__sender *s = sender_of(u, f, peer, plen);
    double u_drop = uniform(&s->rng), u_dup = uniform(&s->rng);
    double u_reorder = uniform(&s->rng), u_jitter = uniform(&s->rng);
    int64_t due;
    ps__dgram *first = NULL, *d;
    int copies, i, rc;

    if (s->spared)
        f = &no_faults;
    if (f->stall || u_drop < f->drop)
        return 0;
    due = now + delay_us(f, u_jitter);
    copies = u_dup < f->duplicate ? 2 : 1;
    if (u->held + (size_t)copies * dgram_cost(n) > u->limit)
        return -ENOBUFS;
    for (i = 0; i < copies; i++) {
        if (f->bandwidth > 0) {
            due = latest(due, s->next_free);
            s->next_free = due + (int64_t)((double)n * 1e6 / (double)f->bandwidth);
        }
        if ((d = new_dgram(first != NULL ? first->data : p, n, peer, plen, due)) == NULL)
            return -ENOMEM;
        if (first == NULL)  /* a duplicate is a copy of the first, flips included */
            corrupt(&s->corrupter, f->corrupt, d->data, n);
        if ((rc = schedule(u, d)) < 0) {
            free(d);
            return rc;
        }
        u->held += dgram_cost(n);
        if (first == NULL)
            first = d;
    }
    if (s->held != NULL) {      /* the reply held back goes after this one */
        move_to(u, s->held, due);
        s->held = NULL;
    } else if (u_reorder < f->reorder) {
        move_to(u, first, first->due + PS__REORDER_HOLD_US);
        s->held = first;
    }
    return 0;
}

int ps__ushape_busy(const ps__ushaper *u)
{
    return u->n > 0;
}

int64_t ps__ushape_due(const ps__ushaper *u)
{
    return u->n > 0 ? u->heap[0]->due : INT64_MAX;
}

ps__dgram *ps__ushape_pop(ps__ushaper *u, int64_t now)
{
    ps__dgram *d;

    if (u->n == 0 || u->heap[0]->due > now)
        return NULL;
    d = u->heap[0];
    unschedule(u, d);
    take_out(u, d);
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
    size_t i;

    for (i = 0; i < u->n; i++)
        free(u->heap[i]);
    free(u->heap);
    u->heap = NULL;
    u->n = u->cap = 0;
    u->held = 0;
    u->nsenders = 0;
}
