#include "server/listener.h"
#include "core/error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The socket address of a listen entry; 0, or DC_EINVAL with a message. */
static int make_addr(const dc_config_listen_t *addr, struct sockaddr_storage *ss, socklen_t *sslen, char *err,
                     size_t errlen)
{
    memset(ss, 0, sizeof(*ss));
    if (addr->ipv6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(addr->port);
        if (inet_pton(AF_INET6, addr->host, &sin6->sin6_addr) != 1) {
            snprintf(err, errlen, "listen %s: not an IPv6 address", addr->text);
            return DC_EINVAL;
        }
        *sslen = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(addr->port);
        const char *h = (addr->host == NULL || addr->host[0] == '\0') ? "0.0.0.0" : addr->host;
        if (strcmp(h, "localhost") == 0)
            h = "127.0.0.1";
        if (inet_pton(AF_INET, h, &sin->sin_addr) != 1) {
            snprintf(err, errlen, "listen %s: not an IPv4 address", addr->text);
            return DC_EINVAL;
        }
        *sslen = sizeof(*sin);
    }
    return 0;
}

static void bind_error(const dc_config_listen_t *addr, int errnum, char *err, size_t errlen)
{
    if (errnum == EADDRINUSE)
        snprintf(err, errlen,
                 "listen %s: bind: address already in use (another dexcache or another server listens there)",
                 addr->text);
    else
        snprintf(err, errlen, "listen %s: bind: %s", addr->text, strerror(errnum));
}

int dc_listener_probe(const dc_config_listen_t *addr, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    int rc = make_addr(addr, &ss, &sslen, err, errlen);
    if (rc != 0)
        return rc;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "listen %s: socket: %s", addr->text, strerror(errno));
        return DC_EBIND;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)); /* TIME_WAIT is no conflict */
    if (addr->ipv6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    rc = bind(fd, (struct sockaddr *)&ss, sslen) == 0 ? 0 : errno;
    close(fd);
    if (rc != 0) {
        bind_error(addr, rc, err, errlen);
        return DC_EBIND;
    }
    return 0;
}

int dc_listener_open(const dc_config_listen_t *addr, bool reuseport, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    int rc = make_addr(addr, &ss, &sslen, err, errlen);
    if (rc != 0)
        return rc;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "listen %s: socket: %s", addr->text, strerror(errno));
        return DC_EBIND;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (addr->ipv6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0) {
        bind_error(addr, errno, err, errlen);
        close(fd);
        return DC_EBIND;
    }
    if (listen(fd, 4096) != 0) {
        snprintf(err, errlen, "listen %s: listen: %s", addr->text, strerror(errno));
        close(fd);
        return DC_EBIND;
    }
    return fd;
}

int dc_listener_pin_group(const dc_config_listen_t *addr, const int *fds, unsigned n, char *err, size_t errlen)
{
    assert(n > 0);
    /* A = random; A %= n; return A: the index of one of the group's first n sockets */
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_RANDOM)),
        BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, n),
        BPF_STMT(BPF_RET | BPF_A, 0),
    };
    struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
    /* the program belongs to the group: attaching it through any member sets it for all */
    if (setsockopt(fds[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) != 0) {
        snprintf(err, errlen, "listen %s: setsockopt(SO_ATTACH_REUSEPORT_CBPF): %s", addr->text, strerror(errno));
        return DC_EBIND;
    }
    return 0;
}
