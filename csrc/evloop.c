/* evloop.c - the event loops' skeleton, written once for epoll.c and
 * uring.c: the connections' timers (idle, pending, shaped), accepting again
 * after a back-off, and a stop that drains every connection before the
 * loop returns.  A model supplies only how a turn waits and what it does
 * with a connection (ps__evops, internal.h), as libuv keeps its streams
 * apart from its pollers.  It uses loop.c's timer lists and fault.c's
 * shapers; neither calls back here. */
#include <errno.h>

#include "internal.h"

void ps__evloop_init(ps__evloop *l, ps__worker *w, const ps__evops *ops)
{
    l->w = w;
    l->ops = ops;
}

static int64_t earliest(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

void ps__evloop_close_list(ps__evloop *l, ps__tlist *list, uint64_t *counter, int why)
{
    while (list->head != NULL) {
        if (counter != NULL)
            PS_ADD(*counter, 1);
        l->ops->close(l, list->head, why);
    }
}

void ps__evloop_close_shaped(ps__evloop *l)
{
    ps__shaper *sh;

    while (l->faults.shaped.head != NULL) {
        sh = (ps__shaper *)l->faults.shaped.head;
        ps__timer_remove(&sh->link);
        sh->close_at = 0;
        if (l->ops->quiet(sh->owner))
            l->ops->close(l, sh->owner, PS_WHY_STOP);
    }
}

/* Release what shapers let go now; a close_delay that is over closes. */
static void expire_shaped(ps__evloop *l, int64_t now)
{
    int64_t us = ps__now_us();
    ps__timer *t, *next;
    ps__shaper *sh;

    for (t = l->faults.shaped.head; t != NULL; t = next) {
        next = t->next;
        sh = (ps__shaper *)t;
        if (ps__shape_due(sh) > us)
            continue;
        if (sh->close_at > 0 && sh->data.len == sh->off)
            l->ops->close(l, sh->owner, PS_WHY_EOF);
        else
            l->ops->release(l, sh->owner, now);
    }
}

/* Close what timed out, release what is due, accept again after a back-off. */
static void expire(ps__evloop *l, int64_t now)
{
    const ps_config *cfg = &l->w->srv->cfg;

    while (now >= ps__timer_due(&l->idle, cfg->idle_ms)) {
        PS_ADD(l->w->stats.idle_closed, 1);
        l->ops->close(l, l->idle.head, PS_WHY_IDLE);
    }
    while (now >= ps__timer_due(&l->pending, cfg->send_timeout_ms)) {
        PS_ADD(l->w->stats.slow_closed, 1);
        l->ops->close(l, l->pending.head, PS_WHY_SLOW);
    }
    if (l->faults.shaped.head != NULL)
        expire_shaped(l, now);
    if (l->ops->expire != NULL)
        l->ops->expire(l, now);
    if (l->accept_at > 0 && now >= l->accept_at && !l->draining)
        l->accept_at = l->ops->accept_again(l) == 0 ? 0 : now + PS__ACCEPT_BACKOFF_MS;
}

/* How long a turn may wait: until the first deadline, -1 if none.  After
 * the grace, what the kernel still holds gets one more (uring). */
static int timeout_ms(const ps__evloop *l, int64_t now)
{
    const ps_config *cfg = &l->w->srv->cfg;
    int64_t t = INT64_MAX;

    if (l->draining)
        t = l->nconns > 0 ? l->grace_end : l->grace_end + PS__STOP_GRACE_MS;
    t = earliest(t, ps__timer_due(&l->idle, cfg->idle_ms));
    t = earliest(t, ps__timer_due(&l->pending, cfg->send_timeout_ms));
    t = earliest(t, ps__shaping_due_ms(&l->faults.shaped));
    if (l->accept_at > 0)
        t = earliest(t, l->accept_at);
    if (l->ops->due != NULL)
        t = earliest(t, l->ops->due(l));
    if (t == INT64_MAX)
        return -1;
    return t <= now ? 0 : (int)earliest(t - now, 1 << 30);
}

/* Stop accepting and reading; connections with nothing unsent close now,
 * the others get PS__STOP_GRACE_MS to take their echo. */
static void begin_drain(ps__evloop *l, int64_t now)
{
    ps__timer *t, *next;

    l->draining = 1;
    l->grace_end = now + PS__STOP_GRACE_MS;
    l->accept_at = 0;
    l->ops->stop_accepting(l);
    ps__evloop_close_shaped(l);
    ps__evloop_close_list(l, &l->idle, NULL, PS_WHY_STOP);
    for (t = l->pending.head; t != NULL; t = next) {
        next = t->next;
        l->ops->settle_drain(l, t);
    }
}

/* Done stopping: every connection closed and nothing in flight (or, should
 * the kernel keep something, a second grace passed: the model's close ends it). */
static int drained(const ps__evloop *l, int64_t now)
{
    return l->nconns == 0 && (l->inflight == 0 || now >= l->grace_end + PS__STOP_GRACE_MS);
}

/* Every piece of state lives in l, so a return on a signal (-EINTR) loses
 * nothing: calling again goes on with the next turn. */
int ps__evloop_run(ps__evloop *l)
{
    int64_t now;
    int rc;

    for (;;) {
        now = ps__now_ms();
        if (!l->draining && ps__stopping(l->w->srv))
            begin_drain(l, now);
        if (l->draining && now >= l->grace_end) {  /* grace is over */
            ps__evloop_close_list(l, &l->idle, NULL, PS_WHY_STOP);
            ps__evloop_close_list(l, &l->pending, &l->w->stats.slow_closed, PS_WHY_SLOW);
        }
        if (l->draining && drained(l, now))
            return 0;
        rc = l->ops->turn(l, timeout_ms(l, now));
        if (rc < 0)
            return rc;
        expire(l, ps__now_ms());
    }
}
