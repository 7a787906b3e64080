/* buf.c - a growable byte buffer: stamp's waiting line and its reply
 * (transform.c), and the bytes a peer has not taken yet (epoll.c, proxy.c). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int ps__buf_reserve(ps__buf *b, size_t more, size_t most)
{
    size_t need, cap;
    unsigned char *p;

    if (b->cap - b->len >= more)
        return 0;
    if (more > SIZE_MAX - b->len)
        return -ENOMEM;
    need = b->len + more;
    cap = b->cap ? b->cap : 256;
    while (cap < need && cap <= SIZE_MAX / 2)
        cap *= 2;  /* doubling keeps appends cheap... */
    if (cap > most)
        cap = most;  /* ...but never past most: capacity counts against what a client can pin */
    if (cap < need)
        cap = need;
    p = realloc(b->data, cap);
    if (p == NULL)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int ps__buf_append(ps__buf *b, const void *p, size_t n)
{
    int rc = ps__buf_reserve(b, n, SIZE_MAX);

    if (rc < 0)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int ps__buf_queue(ps__buf *b, size_t *off, const void *p, size_t n, size_t most)
{
    int rc;

    if (n == 0)
        return 0;  /* p may be NULL then: nothing to copy */
    if (*off > 0 && b->cap - b->len < n) {
        memmove(b->data, b->data + *off, b->len - *off);
        b->len -= *off;
        *off = 0;
    }
    rc = ps__buf_reserve(b, n, most);
    return rc < 0 ? rc : ps__buf_append(b, p, n);
}

void ps__buf_free(ps__buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
