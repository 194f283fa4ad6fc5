/* ft_net.c: TCP listen / connect-with-retry / wait for the rendezvous (see ft_net.h). */
#include "ft_net.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ft_common.h"

static int listen_any(int port, int backlog, int *fd) {
    int ls = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), v6 = 1;
    if (ls < 0) v6 = 0, ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ls < 0) return -errno;
    int one = 1, zero = 0;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (v6) setsockopt(ls, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof sa);
    socklen_t sl;
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&sa;
        a->sin6_family = AF_INET6, a->sin6_port = htons((uint16_t)port), a->sin6_addr = in6addr_any;
        sl = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&sa;
        a->sin_family = AF_INET, a->sin_port = htons((uint16_t)port);
        a->sin_addr.s_addr = htonl(INADDR_ANY);
        sl = sizeof *a;
    }
    if (bind(ls, (struct sockaddr *)&sa, sl) != 0 || listen(ls, backlog) != 0) {
        int e = errno;
        close(ls);
        return -e;
    }
    *fd = ls;
    return 0;
}

int ft_tcp_listen(const char *host, int port, int backlog, int *fd) {
    if (!host) return listen_any(port, backlog, fd);
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC, hints.ai_socktype = SOCK_STREAM, hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(host, ps, &hints, &ai) != 0 || !ai) return FT_EARG;
    int rc = -EADDRNOTAVAIL;
    for (struct addrinfo *p = ai; p; p = p->ai_next) {
        int ls = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol), one = 1;
        if (ls < 0) {
            rc = -errno;
            continue;
        }
        setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(ls, p->ai_addr, p->ai_addrlen) == 0 && listen(ls, backlog) == 0) {
            *fd = ls;
            rc = 0;
            break;
        }
        rc = -errno;
        close(ls);
    }
    freeaddrinfo(ai);
    return rc;
}

int ft_tcp_connect(const char *host, int port, double deadline, int *fd, char *err, size_t cap) {
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC, hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(host, ps, &hints, &ai);
    if (g != 0 || !ai) {
        if (cap) snprintf(err, cap, "%s", g ? gai_strerror(g) : "no address");
        return FT_EARG;
    }
    int s = -1, last = ECONNREFUSED;
    for (;;) {
        for (struct addrinfo *p = ai; p && s < 0; p = p->ai_next) {
            int c = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol);
            if (c < 0) {
                last = errno;
                continue;
            }
            if (connect(c, p->ai_addr, p->ai_addrlen) == 0)
                s = c;
            else
                last = errno, close(c);
        }
        if (s >= 0 || ft_now() >= deadline) break;
        usleep(200000); /* the listener may not be up yet */
    }
    freeaddrinfo(ai);
    if (s < 0) return -last;
    *fd = s;
    return 0;
}

int ft_fd_wait(int fd, short events, double deadline) {
    for (;;) {
        double left = deadline - ft_now();
        struct pollfd p = {fd, events, 0};
        int pr = poll(&p, 1, left > 0 ? (int)(left * 1000) : 0);
        if (pr < 0 && errno == EINTR) continue;
        return pr < 0 ? -errno : pr > 0;
    }
}
