/* ft_net.h: the TCP pieces that facetrain's two rendezvous share: train/comm/rendezvous.c (NCCL's
 * unique id from rank 0 to every rank) and train/launch/main.c (ft-launch's node launchers
 * joining node 0). Each keeps its own protocol and messages; these are the sockets. */
#ifndef FT_NET_H
#define FT_NET_H

#include <stddef.h>

/* A listening TCP socket (SO_REUSEADDR, close-on-exec) on port. host NULL: every address,
 * IPv6 and IPv4 (IPv4 only where the host has no IPv6); else the first of host's addresses
 * that binds. 0 and *fd; FT_EARG when host does not resolve; else -errno (bind, listen). */
int ft_tcp_listen(const char *host, int port, int backlog, int *fd);

/* A connected TCP socket to host:port, trying every address host resolves to and retrying
 * every 0.2 s until deadline (ft_now seconds): the listener may not be up yet. 0 and *fd;
 * FT_EARG when host does not resolve (err gets the resolver's reason); else -errno of the
 * last attempt. */
int ft_tcp_connect(const char *host, int port, double deadline, int *fd, char *err, size_t cap);

/* Wait until fd has one of events (POLLIN, POLLOUT) or deadline (ft_now seconds) passes: 1
 * ready, 0 timed out, -errno; EINTR is retried. */
int ft_fd_wait(int fd, short events, double deadline);

#endif
