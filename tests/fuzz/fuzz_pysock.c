/* fuzz_pysock.c - a libFuzzer target for the C code that reads untrusted
 * input: the transforms (the stamp's line splitting above all) and the
 * address parsing.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *         -Icsrc tests/fuzz/fuzz_pysock.c -o fuzz_pysock -lpthread
 *   ./fuzz_pysock -max_total_time=60
 *
 * The library's files are included whole so that static helpers are reached
 * too.  gethostbyname_r is replaced by a fake answering from memory: fuzzed
 * names must never become DNS queries. */
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int fake_gethostbyname_r(const char *name, struct hostent *ret, char *buf,
                                size_t buflen, struct hostent **result, int *h_errnop);
#define gethostbyname_r fake_gethostbyname_r
#include "addr.c"
#undef gethostbyname_r
#include "buf.c"
#include "transform.c"

/* Names starting with "h" resolve to 127.0.0.<length>; others do not exist.
 * The answer is laid out in buf as glibc lays it out, so the copy is real. */
static int fake_gethostbyname_r(const char *name, struct hostent *ret, char *buf,
                                size_t buflen, struct hostent **result, int *h_errnop)
{
    char **list;

    *result = NULL;
    if (name[0] != 'h') {
        *h_errnop = HOST_NOT_FOUND;
        return ENOENT;
    }
    if (buflen < 8 + 2 * sizeof(char *))
        return ERANGE;
    memcpy(buf, "\x7f\x00\x00", 3);
    buf[3] = (char)strlen(name);
    list = (char **)(void *)(buf + 8);
    list[0] = buf;
    list[1] = NULL;
    ret->h_addr_list = list;
    ret->h_aliases = list + 1;
    ret->h_name = (char *)name;
    ret->h_addrtype = AF_INET;
    ret->h_length = 4;
    *result = ret;
    return 0;
}

static void check_upper(const uint8_t *data, size_t size)
{
    unsigned char *buf = malloc(size ? size : 1);
    size_t i;

    if (buf == NULL)
        return;
    memcpy(buf, data, size);
    ps_upper(buf, size);
    for (i = 0; i < size; i++) {
        unsigned char want = data[i] >= 'a' && data[i] <= 'z' ? data[i] - 32 : data[i];
        if (buf[i] != want)
            abort();
    }
    free(buf);
}

static void check_addresses(const uint8_t *data, size_t size)
{
    char host[80];
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    size_t n = size < sizeof host - 1 ? size : sizeof host - 1;
    int port = size >= 2 ? (data[0] << 8 | data[1]) : 0;

    memcpy(host, data, n);
    host[n] = '\0';
    if (ps_sockaddr_in(&sin, host, port) == 0 && ntohs(sin.sin_port) != port)
        abort();
    if (ps_sockaddr_in6(&sin6, host, port) == 0 && ntohs(sin6.sin6_port) != port)
        abort();
}

/* "at " + ctime's 24 characters + " :" */
#define STAMP_PREFIX 29

/* Take the stamp prefixes out of a stamped reply; what is left must be the
 * input, cut after each \n and every PS__LINE_MAX bytes of a line. */
static void unstamp(const ps__buf *reply, ps__buf *text)
{
    size_t i = 0, line = 0;

    while (i < reply->len) {
        size_t start, piece = 0;

        if (reply->len - i < STAMP_PREFIX || memcmp(reply->data + i, "at ", 3) != 0 ||
            memcmp(reply->data + i + 27, " :", 2) != 0)
            abort();
        start = i += STAMP_PREFIX;
        while (i < reply->len && line + piece < PS__LINE_MAX) {
            piece++;
            if (reply->data[i++] == '\n')
                break;
        }
        line = reply->data[i - 1] == '\n' || piece == 0 ? 0 : (line + piece) % PS__LINE_MAX;
        if (ps__buf_append(text, reply->data + start, piece) < 0)
            abort();
    }
}

/* The size of the next piece to feed: step bytes; or, with a room, what
 * ps__xf_read_max allows, as the servers size their reads. */
static size_t piece_size(const ps__xf *x, size_t left, size_t step, size_t room)
{
    size_t n = room ? ps__xf_read_max(x, room) : step;

    return n < left ? n : left;
}

/* Feed the input to a stamp piece by piece, then finish: the unstamped
 * reply must be the input itself.  With a room, no reply may pass it
 * (unless the waiting line alone fills it, when one byte is taken), and
 * releasing after each reply keeps the reply buffer small. */
static void check_stamp_fed(const uint8_t *data, size_t size, size_t step, size_t room)
{
    ps__xf x;
    ps__buf reply = {0}, text = {0};
    const unsigned char *out;
    unsigned char *copy = malloc(size ? size : 1);
    size_t at = 0;
    ssize_t k;

    if (copy == NULL)
        return;
    memcpy(copy, data, size);
    ps__xf_init(&x, PS_XF_STAMP);
    while (at < size) {
        size_t n = piece_size(&x, size - at, step, room), waiting = x.line.len;

        k = ps__xf_feed(&x, copy + at, n, &out);
        if (k < 0 || ps__buf_append(&reply, out, (size_t)k) < 0)
            abort();
        if (room) {
            if ((size_t)k > room && (n != 1 || (size_t)k > waiting + 1 + PS__STAMP_MAX))
                abort();
            ps__xf_release(&x);
            if (x.out.cap > PS__XF_KEEP)
                abort();
        }
        at += n;
    }
    k = ps__xf_finish(&x, &out);
    if (k < 0 || ps__buf_append(&reply, out, (size_t)k) < 0)
        abort();
    unstamp(&reply, &text);
    if (text.len != size || (size && memcmp(text.data, data, size) != 0))
        abort();
    ps__xf_free(&x);
    ps__buf_free(&reply);
    ps__buf_free(&text);
    free(copy);
}

/* Pieces of 1 to 7 bytes (the first byte chooses), then reads sized for a
 * room of 64 KiB to 1 MiB (the first two bytes choose), as max_unsent plus a
 * buffer gives the servers. */
static void check_stamp(const uint8_t *data, size_t size)
{
    size_t step = size ? (size_t)data[0] % 7 + 1 : 1;
    size_t room = PS_BUFSIZE + (size > 1 ? ((size_t)data[0] << 8 | data[1]) * 16 : 0);

    check_stamp_fed(data, size, step, 0);
    check_stamp_fed(data, size, 0, room);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_upper(data, size);
    check_addresses(data, size);
    check_stamp(data, size);
    return 0;
}
