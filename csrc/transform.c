/* transform.c - what the servers send back for the bytes they receive.
 *
 * upper and echo work in place on the receive buffer: no state, no copy.
 * stamp (the tutorials' timestamp server) answers each line with
 * "at <ctime> :<line>", keeping the unfinished line between reads; the
 * interface the serving loops call is described in internal.h. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* The buffer stamp_now formats into: PS__STAMP_MAX and a NUL. */
#define STAMP_MAX (PS__STAMP_MAX + 1)

/* ASCII uppercase on bytes, exactly Python's bytes.upper(): only a-z
 * change.  Written without a branch so the compiler can vectorise it. */
void ps_upper(unsigned char *buf, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        buf[i] -= (unsigned char)(((unsigned char)(buf[i] - 'a') < 26) << 5);
}

/* upper and echo: no state, the reply is the receive buffer itself. */
static size_t in_place(int kind, unsigned char *buf, size_t n)
{
    if (kind == PS_XF_UPPER)
        ps_upper(buf, n);
    return n;
}

/* -- stamp ------------------------------------------------------------ */

typedef struct stamp {
    char text[STAMP_MAX];
    size_t len;
} stamp;

/* "at Sun Nov 22 01:56:25 2026 :": ctime() as C gives it, without its
 * newline.  Taken once per read: every line of one read shares it. */
static int stamp_now(stamp *st)
{
    char when[STAMP_MAX];
    time_t now = time(NULL);
    int n;

    if (ctime_r(&now, when) == NULL)
        return -EOVERFLOW;  /* a year past 9999 */
    n = snprintf(st->text, sizeof st->text, "at %.*s :",
                 (int)strcspn(when, "\n"), when);
    if (n < 0 || (size_t)n >= sizeof st->text)
        return -EOVERFLOW;
    st->len = (size_t)n;
    return 0;
}

/* One reply: the stamp, the waiting part of the line, then its rest. */
static int answer_line(ps__xf *x, const stamp *st, const unsigned char *rest,
                       size_t n)
{
    int rc = ps__buf_reserve(&x->out, st->len + x->line.len + n, SIZE_MAX);

    if (rc < 0)
        return rc;
    /* Cannot fail: the room is reserved above. */
    ps__buf_append(&x->out, st->text, st->len);
    ps__buf_append(&x->out, x->line.data, x->line.len);
    ps__buf_append(&x->out, rest, n);
    x->line.len = 0;
    return 0;
}

/* The length of the next piece of in: up to and including a \n, or what
 * fills the waiting line to PS__LINE_MAX.  *whole: the piece ends a line
 * (or a full-size piece) and is answered now rather than kept. */
static size_t next_piece(const ps__xf *x, const unsigned char *in, size_t n,
                         int *whole)
{
    size_t room = PS__LINE_MAX - x->line.len;
    size_t take = n < room ? n : room;
    const unsigned char *nl = memchr(in, '\n', take);

    if (nl != NULL) {
        *whole = 1;
        return (size_t)(nl - in) + 1;
    }
    *whole = take == room;
    return take;
}

static int stamp_feed(ps__xf *x, const unsigned char *in, size_t n)
{
    stamp st;
    int rc = stamp_now(&st);

    while (rc == 0 && n > 0) {
        int whole;
        size_t k = next_piece(x, in, n, &whole);

        rc = whole ? answer_line(x, &st, in, k) : ps__buf_append(&x->line, in, k);
        in += k;
        n -= k;
    }
    return rc;
}

static int stamp_finish(ps__xf *x)
{
    stamp st;
    int rc;

    if (x->line.len == 0)
        return 0;
    rc = stamp_now(&st);
    return rc < 0 ? rc : answer_line(x, &st, NULL, 0);
}

static int stamp_datagram(ps__xf *x, const unsigned char *in, size_t n)
{
    stamp st;
    int rc = stamp_now(&st);

    if (rc < 0)
        return rc;
    if (n > PS_UDP_MAX - st.len)
        n = PS_UDP_MAX - st.len;  /* else the reply could not be sent at all */
    return answer_line(x, &st, in, n);
}

/* -- the interface the serving loops call (internal.h) --------------- */

void ps__xf_init(ps__xf *x, int kind)
{
    memset(x, 0, sizeof *x);
    x->kind = kind;
}

/* A result in x->out as (pointer, length), or the failure. */
static ssize_t from_out(const ps__xf *x, int rc, const unsigned char **out)
{
    if (rc < 0)
        return rc;
    *out = x->out.data;
    return (ssize_t)x->out.len;
}

/* upper and echo answer in place; stamp answers into x->out. */
static ssize_t answer(ps__xf *x, unsigned char *buf, size_t n, const unsigned char **out,
                      int (*stamp)(ps__xf *, const unsigned char *, size_t))
{
    if (x->kind != PS_XF_STAMP) {
        *out = buf;
        return (ssize_t)in_place(x->kind, buf, n);
    }
    x->out.len = 0;
    return from_out(x, stamp(x, buf, n), out);
}

ssize_t ps__xf_feed(ps__xf *x, unsigned char *buf, size_t n,
                    const unsigned char **out)
{
    return answer(x, buf, n, out, stamp_feed);
}

ssize_t ps__xf_finish(ps__xf *x, const unsigned char **out)
{
    x->out.len = 0;
    return from_out(x, x->kind == PS_XF_STAMP ? stamp_finish(x) : 0, out);
}

ssize_t ps__xf_datagram(ps__xf *x, unsigned char *buf, size_t n,
                        const unsigned char **out)
{
    return answer(x, buf, n, out, stamp_datagram);
}

/* A read of n bytes yields at most n replies (one per byte that ends a
 * line), each with a stamp, and the waiting line goes out with the first:
 * line.len + n * (1 + PS__STAMP_MAX).  At least one byte is always taken,
 * so a connection never stalls on a full line. */
size_t ps__xf_read_max(const ps__xf *x, size_t room)
{
    size_t n;

    if (x->kind != PS_XF_STAMP)
        return PS_BUFSIZE;
    n = room > x->line.len ? (room - x->line.len) / (1 + PS__STAMP_MAX) : 0;
    if (n < 1)
        return 1;
    return n < PS_BUFSIZE ? n : PS_BUFSIZE;
}

void ps__xf_release(ps__xf *x)
{
    if (x->out.cap > PS__XF_KEEP)
        ps__buf_free(&x->out);
}

void ps__xf_free(ps__xf *x)
{
    ps__buf_free(&x->line);
    ps__buf_free(&x->out);
}
