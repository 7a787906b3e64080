/* layout.c - the socket structs as this compiler laid them out: the
 * tutorials' four, then the ones pysock's servers use on their hot paths
 * (recvmmsg's msghdr, epoll's event, io_uring's entries, ...).
 *
 * Every number here comes from sizeof and offsetof, so `pysock layout`
 * shows the machine's truth, not what a tutorial says.  A member that is a
 * union is named by its first member and has the union's size; a flexible
 * array member (no bytes) is left out.  C99 has no
 * alignof: a struct { char c; T x; } puts x at T's alignment, so
 * offsetof(.., x) is that alignment.  The probe structs are named (not
 * written inside offsetof) because a type defined in offsetof is an
 * extension that some compilers flag under -pedantic. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

#include "internal.h"  /* PS__HAVE_EPOLL, PS__HAVE_URING and their headers */

#ifdef PS__HAVE_EPOLL
#include <sys/epoll.h>
#endif

#define ALIGN_PROBE(tag, T) struct ps__align_##tag { char c; T x; }
#define ALIGN(tag) offsetof(struct ps__align_##tag, x)

ALIGN_PROBE(sa_family_t, sa_family_t);
ALIGN_PROBE(in_port_t, in_port_t);
ALIGN_PROBE(in_addr_t, in_addr_t);
ALIGN_PROBE(uint32_t, uint32_t);
ALIGN_PROBE(int, int);
ALIGN_PROBE(uchar, unsigned char);
ALIGN_PROBE(charp, char *);
ALIGN_PROBE(charpp, char **);
ALIGN_PROBE(in_addr, struct in_addr);
ALIGN_PROBE(in6_addr, struct in6_addr);
ALIGN_PROBE(sockaddr_in, struct sockaddr_in);
ALIGN_PROBE(sockaddr_in6, struct sockaddr_in6);
ALIGN_PROBE(hostent, struct hostent);
ALIGN_PROBE(voidp, void *);
ALIGN_PROBE(size_t, size_t);
ALIGN_PROBE(socklen_t, socklen_t);
ALIGN_PROBE(uint, unsigned int);
ALIGN_PROBE(char, char);
ALIGN_PROBE(ulong, unsigned long);
ALIGN_PROBE(iovecp, struct iovec *);
ALIGN_PROBE(sockaddrp, struct sockaddr *);
ALIGN_PROBE(addrinfop, struct addrinfo *);
ALIGN_PROBE(iovec, struct iovec);
ALIGN_PROBE(msghdr, struct msghdr);
ALIGN_PROBE(mmsghdr, struct mmsghdr);
ALIGN_PROBE(addrinfo, struct addrinfo);
ALIGN_PROBE(sockaddr_storage, struct sockaddr_storage);
ALIGN_PROBE(sockaddr_un, struct sockaddr_un);
#ifdef PS__HAVE_EPOLL
ALIGN_PROBE(epoll_event, struct epoll_event);
ALIGN_PROBE(epoll_data_t, epoll_data_t);
#endif
#ifdef PS__HAVE_URING
ALIGN_PROBE(u8, __u8);
ALIGN_PROBE(u16, __u16);
ALIGN_PROBE(s32, __s32);
ALIGN_PROBE(u32, __u32);
ALIGN_PROBE(u64, __u64);
ALIGN_PROBE(io_uring_sqe, struct io_uring_sqe);
#endif

#define MEMBER_SIZE(S, f) sizeof(((S *)0)->f)

/* T is the member's type as the header spells it (the element type for an
 * array); count is how many of them the member holds. */
#define MEMBER(S, f, tag, T) \
    { #f, #T, MEMBER_SIZE(S, f) / sizeof(T), offsetof(S, f), \
      MEMBER_SIZE(S, f), ALIGN(tag) }

/* C99 has no _Static_assert: a negative array size stops the build if a
 * type written below does not fit the member the system header declares. */
#define FITS(S, f, T) \
    typedef char ps__fits_##f[MEMBER_SIZE(S, f) % sizeof(T) == 0 ? 1 : -1]

FITS(struct sockaddr_in, sin_family, sa_family_t);
FITS(struct sockaddr_in, sin_port, in_port_t);
FITS(struct sockaddr_in, sin_addr, struct in_addr);
FITS(struct sockaddr_in, sin_zero, unsigned char);
FITS(struct in_addr, s_addr, in_addr_t);
FITS(struct sockaddr_in6, sin6_family, sa_family_t);
FITS(struct sockaddr_in6, sin6_port, in_port_t);
FITS(struct sockaddr_in6, sin6_flowinfo, uint32_t);
FITS(struct sockaddr_in6, sin6_addr, struct in6_addr);
FITS(struct sockaddr_in6, sin6_scope_id, uint32_t);
FITS(struct hostent, h_name, char *);
FITS(struct hostent, h_aliases, char **);
FITS(struct hostent, h_addrtype, int);
FITS(struct hostent, h_length, int);
FITS(struct hostent, h_addr_list, char **);
FITS(struct msghdr, msg_namelen, socklen_t);
FITS(struct msghdr, msg_iovlen, size_t);
FITS(struct msghdr, msg_controllen, size_t);
FITS(struct msghdr, msg_flags, int);
FITS(struct addrinfo, ai_addrlen, socklen_t);
FITS(struct sockaddr_storage, ss_family, sa_family_t);
FITS(struct sockaddr_storage, __ss_align, unsigned long);
FITS(struct sockaddr_un, sun_path, char);

static const ps_member sockaddr_in_members[] = {
    MEMBER(struct sockaddr_in, sin_family, sa_family_t, sa_family_t),
    MEMBER(struct sockaddr_in, sin_port, in_port_t, in_port_t),
    MEMBER(struct sockaddr_in, sin_addr, in_addr, struct in_addr),
    MEMBER(struct sockaddr_in, sin_zero, uchar, unsigned char),
};

static const ps_member in_addr_members[] = {
    MEMBER(struct in_addr, s_addr, in_addr_t, in_addr_t),
};

static const ps_member hostent_members[] = {
    MEMBER(struct hostent, h_name, charp, char *),
    MEMBER(struct hostent, h_aliases, charpp, char **),
    MEMBER(struct hostent, h_addrtype, int, int),
    MEMBER(struct hostent, h_length, int, int),
    MEMBER(struct hostent, h_addr_list, charpp, char **),
};

static const ps_member sockaddr_in6_members[] = {
    MEMBER(struct sockaddr_in6, sin6_family, sa_family_t, sa_family_t),
    MEMBER(struct sockaddr_in6, sin6_port, in_port_t, in_port_t),
    MEMBER(struct sockaddr_in6, sin6_flowinfo, uint32_t, uint32_t),
    MEMBER(struct sockaddr_in6, sin6_addr, in6_addr, struct in6_addr),
    MEMBER(struct sockaddr_in6, sin6_scope_id, uint32_t, uint32_t),
};

/* The structs the servers use on their hot paths. */
static const ps_member iovec_members[] = {
    MEMBER(struct iovec, iov_base, voidp, void *),
    MEMBER(struct iovec, iov_len, size_t, size_t),
};

static const ps_member msghdr_members[] = {
    MEMBER(struct msghdr, msg_name, voidp, void *),
    MEMBER(struct msghdr, msg_namelen, socklen_t, socklen_t),
    MEMBER(struct msghdr, msg_iov, iovecp, struct iovec *),
    MEMBER(struct msghdr, msg_iovlen, size_t, size_t),
    MEMBER(struct msghdr, msg_control, voidp, void *),
    MEMBER(struct msghdr, msg_controllen, size_t, size_t),
    MEMBER(struct msghdr, msg_flags, int, int),
};

static const ps_member mmsghdr_members[] = {
    MEMBER(struct mmsghdr, msg_hdr, msghdr, struct msghdr),
    MEMBER(struct mmsghdr, msg_len, uint, unsigned int),
};

static const ps_member addrinfo_members[] = {
    MEMBER(struct addrinfo, ai_flags, int, int),
    MEMBER(struct addrinfo, ai_family, int, int),
    MEMBER(struct addrinfo, ai_socktype, int, int),
    MEMBER(struct addrinfo, ai_protocol, int, int),
    MEMBER(struct addrinfo, ai_addrlen, socklen_t, socklen_t),
    MEMBER(struct addrinfo, ai_addr, sockaddrp, struct sockaddr *),
    MEMBER(struct addrinfo, ai_canonname, charp, char *),
    MEMBER(struct addrinfo, ai_next, addrinfop, struct addrinfo *),
};

static const ps_member sockaddr_storage_members[] = {
    MEMBER(struct sockaddr_storage, ss_family, sa_family_t, sa_family_t),
    MEMBER(struct sockaddr_storage, __ss_padding, char, char),
    MEMBER(struct sockaddr_storage, __ss_align, ulong, unsigned long),
};

static const ps_member sockaddr_un_members[] = {
    MEMBER(struct sockaddr_un, sun_family, sa_family_t, sa_family_t),
    MEMBER(struct sockaddr_un, sun_path, char, char),
};

#ifdef PS__HAVE_EPOLL
static const ps_member epoll_event_members[] = {
    MEMBER(struct epoll_event, events, uint32_t, uint32_t),
    MEMBER(struct epoll_event, data, epoll_data_t, epoll_data_t),
};
#endif

#ifdef PS__HAVE_URING
/* 64 bytes of unions: each member here is one slot, named by the first of
 * the names the header gives it (off is also addr2; addr also splice_off_in;
 * rw_flags is every operation's flags; buf_index also buf_group;
 * splice_fd_in also file_index; addr3 and __pad2 also cmd). */
static const ps_member io_uring_sqe_members[] = {
    MEMBER(struct io_uring_sqe, opcode, u8, __u8),
    MEMBER(struct io_uring_sqe, flags, u8, __u8),
    MEMBER(struct io_uring_sqe, ioprio, u16, __u16),
    MEMBER(struct io_uring_sqe, fd, s32, __s32),
    MEMBER(struct io_uring_sqe, off, u64, __u64),
    MEMBER(struct io_uring_sqe, addr, u64, __u64),
    MEMBER(struct io_uring_sqe, len, u32, __u32),
    MEMBER(struct io_uring_sqe, rw_flags, u32, __u32),
    MEMBER(struct io_uring_sqe, user_data, u64, __u64),
    MEMBER(struct io_uring_sqe, buf_index, u16, __u16),
    MEMBER(struct io_uring_sqe, personality, u16, __u16),
    MEMBER(struct io_uring_sqe, splice_fd_in, s32, __s32),
    MEMBER(struct io_uring_sqe, addr3, u64, __u64),
    MEMBER(struct io_uring_sqe, __pad2, u64, __u64),
};

static const ps_member io_uring_cqe_members[] = {
    MEMBER(struct io_uring_cqe, user_data, u64, __u64),
    MEMBER(struct io_uring_cqe, res, s32, __s32),
    MEMBER(struct io_uring_cqe, flags, u32, __u32),
};
#endif

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define LAYOUT(S, tag, header, members) \
    { #S, header, sizeof(S), ALIGN(tag), COUNT(members), members }
/* A struct ending in a flexible array cannot sit inside the alignment
 * probe: its alignment is its most aligned member's. */
#define LAYOUT_FLEX(S, first_tag, header, members) \
    { #S, header, sizeof(S), ALIGN(first_tag), COUNT(members), members }

/* The order of the lesson: the address, its in_addr, the resolver's
 * answer, then the IPv6 counterpart; then the hot paths' structs, from a
 * buffer's description to the kernel's queue entries. */
static const ps_layout layouts[] = {
    LAYOUT(struct sockaddr_in, sockaddr_in, "netinet/in.h", sockaddr_in_members),
    LAYOUT(struct in_addr, in_addr, "netinet/in.h", in_addr_members),
    LAYOUT(struct hostent, hostent, "netdb.h", hostent_members),
    LAYOUT(struct sockaddr_in6, sockaddr_in6, "netinet/in.h", sockaddr_in6_members),
    LAYOUT(struct iovec, iovec, "sys/uio.h", iovec_members),
    LAYOUT(struct msghdr, msghdr, "sys/socket.h", msghdr_members),
    LAYOUT(struct mmsghdr, mmsghdr, "sys/socket.h", mmsghdr_members),
    LAYOUT(struct sockaddr_storage, sockaddr_storage, "sys/socket.h", sockaddr_storage_members),
    LAYOUT(struct sockaddr_un, sockaddr_un, "sys/un.h", sockaddr_un_members),
    LAYOUT(struct addrinfo, addrinfo, "netdb.h", addrinfo_members),
#ifdef PS__HAVE_EPOLL
    LAYOUT(struct epoll_event, epoll_event, "sys/epoll.h", epoll_event_members),
#endif
#ifdef PS__HAVE_URING
    LAYOUT(struct io_uring_sqe, io_uring_sqe, "linux/io_uring.h", io_uring_sqe_members),
    LAYOUT_FLEX(struct io_uring_cqe, u64, "linux/io_uring.h", io_uring_cqe_members),
#endif
};

int ps_layouts(const ps_layout **out)
{
    if (out == NULL)
        return -EINVAL;
    *out = layouts;
    return (int)COUNT(layouts);
}

/* What udp.c does to its batch before each recvmmsg, for n datagrams into
 * n slots of size bytes at bufs, then what it reads back after the call
 * (each msg_len; no call is made here, so whatever the fields hold): the
 * sum of msg_len.  bench/bench_mmsghdr.py times the same from Python with
 * ctypes and with cffi. */
long long ps_mmsg_batch(struct mmsghdr *msgs, struct iovec *iov, struct sockaddr_storage *names,
                        unsigned char *bufs, size_t size, unsigned n)
{
    long long sum = 0;
    unsigned i;

    for (i = 0; i < n; i++) {
        iov[i].iov_base = bufs + (size_t)i * size;
        iov[i].iov_len = size;
        msgs[i].msg_hdr.msg_name = &names[i];
        msgs[i].msg_hdr.msg_namelen = sizeof names[i];
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    for (i = 0; i < n; i++)
        sum += msgs[i].msg_len;
    return sum;
}
