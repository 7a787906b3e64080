/* transform.c - what the servers do to the bytes they send back. */
#include "internal.h"

/* ASCII uppercase on bytes, exactly Python's bytes.upper(): only a-z
 * change.  Written without a branch so the compiler can vectorise it. */
void ps_upper(unsigned char *buf, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        buf[i] -= (unsigned char)(((unsigned char)(buf[i] - 'a') < 26) << 5);
}

size_t ps__transform(int kind, unsigned char *buf, size_t n)
{
    if (kind == PS_XF_UPPER)
        ps_upper(buf, n);
    return n;
}
