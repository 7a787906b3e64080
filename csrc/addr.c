/* addr.c - filling struct sockaddr_in / sockaddr_in6 and struct hostent. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <sys/un.h>

#include "internal.h"

static int port_ok(int port)
{
    return port >= 0 && port <= 65535;
}

/* gethostbyname_r reports through h_errno-style codes, not errno: give them
 * their own negative range so Python can tell "no such host" from EINVAL. */
static int resolver_code(int rc, int herr)
{
    if (rc == ERANGE)
        return -ERANGE;
    return -(PS_ERESOLVE + (herr ? herr : NO_RECOVERY));
}

int ps_gethostbyname(const char *name, struct hostent *out,
                     char *buf, size_t buflen)
{
    struct hostent *res = NULL;
    int herr = 0;
    int rc;

    if (name == NULL || out == NULL || buf == NULL)
        return -EINVAL;
    rc = gethostbyname_r(name, out, buf, buflen, &res, &herr);
    if (rc != 0 || res == NULL)
        return resolver_code(rc, herr);
    if (out->h_addrtype != AF_INET || out->h_addr_list[0] == NULL)
        return -(PS_ERESOLVE + NO_DATA);
    return 0;
}

const char *ps_hstrerror(int code)
{
    return hstrerror(code - PS_ERESOLVE);
}

/* A name goes the tutorials' way: hostent, then h_addr_list[0] into
 * sin_addr.  8 KiB holds the answer for any sane /etc/hosts entry; a
 * larger one comes back as -ERANGE. */
static int resolve_in(struct in_addr *out, const char *host)
{
    struct hostent he;
    char buf[8192];
    int rc = ps_gethostbyname(host, &he, buf, sizeof buf);

    if (rc < 0)
        return rc;
    memcpy(out, he.h_addr_list[0], sizeof *out);
    return 0;
}

int ps_sockaddr_in(struct sockaddr_in *out, const char *host, int port)
{
    if (out == NULL || host == NULL || !port_ok(port))
        return -EINVAL;
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &out->sin_addr) == 1)
        return 0;
    return resolve_in(&out->sin_addr, host);
}

/* IPv6 takes numeric addresses only: the hostent path is IPv4's. */
int ps_sockaddr_in6(struct sockaddr_in6 *out, const char *host, int port)
{
    if (out == NULL || host == NULL || !port_ok(port))
        return -EINVAL;
    memset(out, 0, sizeof *out);
    out->sin6_family = AF_INET6;
    out->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host, &out->sin6_addr) == 1)
        return 0;
    return -EINVAL;
}

/* n addresses for one host on the ports first_port, first_port + 1, ...:
 * the host is parsed (or resolved) once, then each element is a copy with
 * its own port.  The whole loop runs on this side of cffi, so Python pays
 * for one crossing, not n. */
int ps_sockaddr_in_many(struct sockaddr_in *out, size_t n, const char *host,
                        int first_port)
{
    size_t i;
    int rc;

    if (n == 0)
        return 0;
    if (out == NULL || n > 65536 || !port_ok(first_port)
        || !port_ok(first_port + (int)(n - 1)))
        return -EINVAL;
    rc = ps_sockaddr_in(&out[0], host, first_port);
    if (rc < 0)
        return rc;
    for (i = 1; i < n; i++) {
        out[i] = out[0];
        out[i].sin_port = htons((uint16_t)(first_port + (int)i));
    }
    return (int)n;
}

/* The text of an IPv4 or IPv6 address (host, hostlen bytes at most) and
 * its port; -errno for another family or a host that does not fit. */
int ps__addr_text(const struct sockaddr_storage *ss, char *host, size_t hostlen)
{
    const void *addr;
    int port;

    if (ss->ss_family == AF_INET6) {
        addr = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        port = ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    } else if (ss->ss_family == AF_INET) {
        addr = &((const struct sockaddr_in *)ss)->sin_addr;
        port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
    } else {
        return -EAFNOSUPPORT;
    }
    if (inet_ntop(ss->ss_family, addr, host, (socklen_t)hostlen) == NULL)
        return -errno;
    return port;
}

/* A proxy's upstream (cfg.up_*): the numeric host Python resolved, or the
 * path, as a sockaddr to connect to. */
int ps__upstream_address(const ps_config *cfg, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_un *un = (struct sockaddr_un *)ss;

    memset(ss, 0, sizeof *ss);
    if (cfg->up_family == AF_UNIX) {
        if (strlen(cfg->up_host) >= sizeof un->sun_path)
            return -ENAMETOOLONG;
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, cfg->up_host);
        *len = sizeof *un;
        return 0;
    }
    if (cfg->up_family == AF_INET6) {
        *len = sizeof(struct sockaddr_in6);
        return ps_sockaddr_in6((struct sockaddr_in6 *)ss, cfg->up_host, cfg->up_port);
    }
    *len = sizeof(struct sockaddr_in);
    return ps_sockaddr_in((struct sockaddr_in *)ss, cfg->up_host, cfg->up_port);
}
