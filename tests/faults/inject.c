/* inject.c - an LD_PRELOAD shim that makes the next calls of accept4,
 * recvfrom and recvmmsg fail with the errno values listed in the environment,
 * then behave normally:
 *     PYSOCK_FAULT_ACCEPT4="103 71 1" PYSOCK_FAULT_RECV="111 111"
 * (PYSOCK_FAULT_RECV covers both recvfrom and recvmmsg.)  It lets the tests
 * drive the server through failures the kernel gives rarely or never on
 * demand (ECONNABORTED, EPROTO, an ICMP error surfacing on a UDP socket). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* The next errno listed in the variable, consumed; 0 when none is left. */
static int next_fault(const char *var, const char **cursor, int *started)
{
    char *end;
    long err;
    int out = 0;

    pthread_mutex_lock(&lock);
    if (!*started) {
        *cursor = getenv(var);
        *started = 1;
    }
    if (*cursor != NULL) {
        err = strtol(*cursor, &end, 10);
        if (end != *cursor) {
            out = (int)err;
            *cursor = end;
        } else {
            *cursor = NULL;
        }
    }
    pthread_mutex_unlock(&lock);
    return out;
}

static const char *accept_cursor, *recv_cursor;
static int accept_started, recv_started;

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    int (*real)(int, struct sockaddr *, socklen_t *, int) =
        (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
    int err = next_fault("PYSOCK_FAULT_ACCEPT4", &accept_cursor, &accept_started);

    if (err) {
        errno = err;
        return -1;
    }
    return real(fd, addr, len, flags);
}

ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *len)
{
    ssize_t (*real)(int, void *, size_t, int, struct sockaddr *, socklen_t *) =
        (ssize_t (*)(int, void *, size_t, int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "recvfrom");
    int err = next_fault("PYSOCK_FAULT_RECV", &recv_cursor, &recv_started);

    if (err) {
        errno = err;
        return -1;
    }
    return real(fd, buf, n, flags, addr, len);
}

int recvmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags, struct timespec *timeout)
{
    int (*real)(int, struct mmsghdr *, unsigned int, int, struct timespec *) =
        (int (*)(int, struct mmsghdr *, unsigned int, int, struct timespec *))dlsym(RTLD_NEXT, "recvmmsg");
    int err = next_fault("PYSOCK_FAULT_RECV", &recv_cursor, &recv_started);

    if (err) {
        errno = err;
        return -1;
    }
    return real(fd, msgs, n, flags, timeout);
}
