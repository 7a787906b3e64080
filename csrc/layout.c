/* layout.c - the socket structs as this compiler laid them out.
 *
 * Every number here comes from sizeof and offsetof, so `pysock layout`
 * shows the machine's truth, not what a tutorial says.  C99 has no
 * alignof: a struct { char c; T x; } puts x at T's alignment, so
 * offsetof(.., x) is that alignment.  The probe structs are named (not
 * written inside offsetof) because a type defined in offsetof is an
 * extension that some compilers flag under -pedantic. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "pysock.h"

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

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define LAYOUT(S, tag, header, members) \
    { #S, header, sizeof(S), ALIGN(tag), COUNT(members), members }

/* The order of the lesson: the address, its in_addr, the resolver's
 * answer, then the IPv6 counterpart. */
static const ps_layout layouts[] = {
    LAYOUT(struct sockaddr_in, sockaddr_in, "netinet/in.h", sockaddr_in_members),
    LAYOUT(struct in_addr, in_addr, "netinet/in.h", in_addr_members),
    LAYOUT(struct hostent, hostent, "netdb.h", hostent_members),
    LAYOUT(struct sockaddr_in6, sockaddr_in6, "netinet/in.h", sockaddr_in6_members),
};

int ps_layouts(const ps_layout **out)
{
    if (out == NULL)
        return -EINVAL;
    *out = layouts;
    return (int)COUNT(layouts);
}
