#include "server/listener.h"
#include "core/error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int dc_listener_open(const dc_config_listen_t *addr, bool reuseport, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    memset(&ss, 0, sizeof(ss));
    if (addr->ipv6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(addr->port);
        if (inet_pton(AF_INET6, addr->host, &sin6->sin6_addr) != 1) {
            snprintf(err, errlen, "listen %s: not an IPv6 address", addr->text);
            return DC_EINVAL;
        }
        sslen = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(addr->port);
        const char *h = (addr->host == NULL || addr->host[0] == '\0') ? "0.0.0.0" : addr->host;
        if (strcmp(h, "localhost") == 0)
            h = "127.0.0.1";
        if (inet_pton(AF_INET, h, &sin->sin_addr) != 1) {
            snprintf(err, errlen, "listen %s: not an IPv4 address", addr->text);
            return DC_EINVAL;
        }
        sslen = sizeof(*sin);
    }
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
        snprintf(err, errlen, "listen %s: bind: %s", addr->text, strerror(errno));
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
