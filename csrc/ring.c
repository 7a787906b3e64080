/* ring.c - io_uring through its three system calls, only the pieces the
 * uring model uses: a submission and a completion queue mapped from the
 * kernel, and rings of provided buffers.  No liburing: the build and the
 * wheel need nothing beyond the kernel's UAPI header.
 *
 * Memory order follows the kernel's rules (io_uring(7)): we publish the
 * submission tail and the completion head with release stores, and read the
 * kernel's completion tail and submission head with acquire loads. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#ifdef PS__HAVE_URING

#define LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

static int sys_setup(unsigned entries, struct io_uring_params *p)
{
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(int fd, unsigned submit, unsigned wait, unsigned flags, void *arg, size_t argsz)
{
    return (int)syscall(__NR_io_uring_enter, fd, submit, wait, flags, arg, argsz);
}

static int sys_register(int fd, unsigned op, void *arg, unsigned n)
{
    return (int)syscall(__NR_io_uring_register, fd, op, arg, n);
}

static void *map(int fd, size_t len, off_t off)
{
    return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, off);
}

static int map_rings(ps__ring *r, const struct io_uring_params *p)
{
    unsigned i;

    r->sq_len = p->sq_off.array + p->sq_entries * sizeof(unsigned);
    r->cq_len = p->cq_off.cqes + p->cq_entries * sizeof(struct io_uring_cqe);
    r->sqes_len = p->sq_entries * sizeof(struct io_uring_sqe);
    r->sq_map = map(r->fd, r->sq_len, IORING_OFF_SQ_RING);
    if (r->sq_map == MAP_FAILED)
        return r->sq_map = NULL, -errno;
    r->cq_map = map(r->fd, r->cq_len, IORING_OFF_CQ_RING);
    if (r->cq_map == MAP_FAILED)
        return r->cq_map = NULL, -errno;
    r->sqes = map(r->fd, r->sqes_len, IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED)
        return r->sqes = NULL, -errno;
    r->sq_head = (unsigned *)((char *)r->sq_map + p->sq_off.head);
    r->sq_tail = (unsigned *)((char *)r->sq_map + p->sq_off.tail);
    r->sq_mask = *(unsigned *)((char *)r->sq_map + p->sq_off.ring_mask);
    r->sq_entries = p->sq_entries;
    r->cq_head = (unsigned *)((char *)r->cq_map + p->cq_off.head);
    r->cq_tail = (unsigned *)((char *)r->cq_map + p->cq_off.tail);
    r->cq_mask = *(unsigned *)((char *)r->cq_map + p->cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)((char *)r->cq_map + p->cq_off.cqes);
    /* Entries are submitted in ring order, so the index array is the
     * identity, written once. */
    for (i = 0; i < p->sq_entries; i++)
        ((unsigned *)((char *)r->sq_map + p->sq_off.array))[i] = i;
    r->tail = *r->sq_tail;
    return 0;
}

/* The kernels pysock runs on differ: ask for the flags that pay (one
 * submitting thread, completions run only when it waits), and without them
 * if this kernel does not know them (before 6.1). */
static int setup(unsigned entries, struct io_uring_params *p, unsigned flags)
{
    unsigned extra = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int fd;

    memset(p, 0, sizeof *p);
    p->flags = flags | extra | IORING_SETUP_CQSIZE;
    p->cq_entries = entries * 4;
    fd = sys_setup(entries, p);
    if (fd < 0 && errno == EINVAL) {
        memset(p, 0, sizeof *p);
        p->flags = flags | IORING_SETUP_CQSIZE;
        p->cq_entries = entries * 4;
        fd = sys_setup(entries, p);
    }
    return fd < 0 ? -errno : fd;
}

int ps__ring_open(ps__ring *r, unsigned entries)
{
    struct io_uring_params p;

    memset(r, 0, sizeof *r);
    /* Disabled until the serving thread enables it (ps__ring_enable): with
     * SINGLE_ISSUER, that thread becomes the one that may submit.  On
     * failure r->fd is the negative code, which ps__ring_close skips. */
    r->fd = setup(entries, &p, IORING_SETUP_R_DISABLED);
    if (r->fd < 0)
        return r->fd;
    r->flags = p.flags;
    if (!(p.features & IORING_FEAT_EXT_ARG) || !(p.features & IORING_FEAT_NODROP))
        return -EOPNOTSUPP;  /* before Linux 5.11 */
    return map_rings(r, &p);
}

int ps__ring_enable(ps__ring *r)
{
    if (r->enabled)
        return 0;
    if (sys_register(r->fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
        return -errno;
    r->enabled = 1;
    return 0;
}

void ps__ring_close(ps__ring *r)
{
    if (r->sqes != NULL)
        munmap(r->sqes, r->sqes_len);
    if (r->cq_map != NULL)
        munmap(r->cq_map, r->cq_len);
    if (r->sq_map != NULL)
        munmap(r->sq_map, r->sq_len);
    if (r->fd >= 0)
        close(r->fd);
    memset(r, 0, sizeof *r);
    r->fd = -1;
}

/* Entries written but not yet taken by the kernel. */
static unsigned unsubmitted(const ps__ring *r)
{
    return r->tail - LOAD_ACQ(r->sq_head);
}

struct io_uring_sqe *ps__ring_sqe(ps__ring *r)
{
    struct io_uring_sqe *e;

    if (unsubmitted(r) >= r->sq_entries)
        return NULL;
    e = &r->sqes[r->tail & r->sq_mask];
    r->tail++;
    memset(e, 0, sizeof *e);
    return e;
}

static int enter(ps__ring *r, unsigned wait, unsigned flags, void *arg, size_t argsz)
{
    int n;

    STORE_REL(r->sq_tail, r->tail);
    n = sys_enter(r->fd, unsubmitted(r), wait, flags, arg, argsz);
    return n < 0 ? -errno : n;
}

int ps__ring_submit(ps__ring *r)
{
    /* DEFER_TASKRUN: completions are run only on the way out of a call
     * that asks for events, so ask (for none) even when not waiting. */
    return enter(r, 0, IORING_ENTER_GETEVENTS, NULL, 0);
}

int ps__ring_wait(ps__ring *r, int timeout_ms, const sigset_t *mask)
{
    struct io_uring_getevents_arg arg;
    struct __kernel_timespec ts;

    memset(&arg, 0, sizeof arg);
    if (mask != NULL) {
        arg.sigmask = (uint64_t)(uintptr_t)mask;
        arg.sigmask_sz = _NSIG / 8;
    }
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
        arg.ts = (uint64_t)(uintptr_t)&ts;
    }
    return enter(r, 1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg);
}

struct io_uring_cqe *ps__ring_cqe(ps__ring *r)
{
    unsigned head = *r->cq_head;

    if (head == LOAD_ACQ(r->cq_tail))
        return NULL;
    return &r->cqes[head & r->cq_mask];
}

void ps__ring_seen(ps__ring *r)
{
    STORE_REL(r->cq_head, *r->cq_head + 1);
}

/* -- provided buffers ---------------------------------------------------- */
int ps__bufring_open(ps__ring *r, ps__bufring *b, int group, unsigned n, unsigned size)
{
    struct io_uring_buf_reg reg;
    size_t ring_len = n * sizeof(struct io_uring_buf);
    unsigned i;

    memset(b, 0, sizeof *b);
    b->n = n;
    b->size = size;
    b->group = group;
    b->ring = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b->ring == MAP_FAILED)
        return b->ring = NULL, -errno;
    b->mem = mmap(NULL, (size_t)n * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b->mem == MAP_FAILED)
        return b->mem = NULL, -errno;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)b->ring;
    reg.ring_entries = n;
    reg.bgid = (uint16_t)group;
    if (sys_register(r->fd, IORING_REGISTER_PBUF_RING, &reg, 1) < 0)
        return -errno;
    for (i = 0; i < n; i++)
        ps__bufring_put(b, i);
    return 0;
}

unsigned char *ps__bufring_data(const ps__bufring *b, unsigned id)
{
    return b->mem + (size_t)id * b->size;
}

/* Give buffer id back to the kernel: written at the tail, then published. */
void ps__bufring_put(ps__bufring *b, unsigned id)
{
    struct io_uring_buf *e = &b->ring->bufs[b->tail & (b->n - 1)];

    e->addr = (uint64_t)(uintptr_t)ps__bufring_data(b, id);
    e->len = b->size;
    e->bid = (uint16_t)id;
    b->tail++;
    STORE_REL(&b->ring->tail, b->tail);
}

/* After the ring is closed: the kernel has let go of both. */
void ps__bufring_free(ps__bufring *b)
{
    if (b->mem != NULL)
        munmap(b->mem, (size_t)b->n * b->size);
    if (b->ring != NULL)
        munmap(b->ring, b->n * sizeof(struct io_uring_buf));
    memset(b, 0, sizeof *b);
}

int ps__uring_probe(void)
{
    ps__ring r;
    ps__bufring b;
    int rc = ps__ring_open(&r, 4);

    memset(&b, 0, sizeof b);
    if (rc == 0)
        rc = ps__bufring_open(&r, &b, 0, 1, 4096);  /* Linux 5.19 and later */
    ps__ring_close(&r);
    ps__bufring_free(&b);
    return rc;
}

#endif /* PS__HAVE_URING */
