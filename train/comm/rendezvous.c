/* rendezvous.c: see rendezvous.h. Blocking sockets with poll() deadlines; messages are
 * little-endian u32 fields: peer -> 0: magic, rank, world, bytes; 0 -> peer: status (0 ok,
 * else the reason code), then the blob when ok. */
#include "rendezvous.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ft_common.h"
#include "ft_net.h"

#define RDV_MAGIC 0x46545244u /* "FTRD" */
enum { ST_OK = 0, ST_WORLD = 1, ST_RANK = 2, ST_DUP = 3, ST_BYTES = 4 };

/* all of buf, or -ETIMEDOUT / -errno / -ECONNRESET (peer closed) */
static int io_all(int fd, void *buf, size_t n, int out, double deadline) {
    char *p = buf;
    while (n) {
        int pr = ft_fd_wait(fd, out ? POLLOUT : POLLIN, deadline);
        if (pr < 0) return pr;
        if (pr == 0) return -ETIMEDOUT;
        ssize_t k = out ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k < 0) return -errno;
        if (k == 0) return -ECONNRESET;
        p += k, n -= (size_t)k;
    }
    return 0;
}

static int serve(int world, int port, double timeout_s, const void *blob, size_t bytes, char *err,
                 size_t errcap) {
    double deadline = ft_now() + timeout_s;
    int ls = -1, one = 1, rc = ft_tcp_listen(NULL, port, world, &ls);
    if (rc) {
        snprintf(err, errcap, "rank 0: cannot listen on port %d: %s", port, strerror(-rc));
        return rc;
    }
    int *fds = malloc((size_t)world * sizeof *fds);
    unsigned char *seen = calloc((size_t)world, 1);
    if (!fds || !seen) {
        free(fds), free(seen), close(ls);
        snprintf(err, errcap, "rank 0: out of memory");
        return -ENOMEM;
    }
    int n = 0;
    for (; n < world - 1 && !rc; n++) {
        int pr = ft_fd_wait(ls, POLLIN, deadline);
        if (pr <= 0) {
            rc = pr == 0 ? -ETIMEDOUT : pr;
            snprintf(err, errcap, "rank 0: %d of %d ranks arrived on port %d within %g s", n + 1,
                     world, port, timeout_s);
            break;
        }
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            n--;
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        unsigned char h[16];
        int r2 = io_all(fd, h, sizeof h, 0, deadline);
        uint32_t st = ST_OK, magic = ft_rd_le32(h), pr_rank = ft_rd_le32(h + 4),
                 pw = ft_rd_le32(h + 8), pb = ft_rd_le32(h + 12);
        if (r2 || magic != RDV_MAGIC) { /* not one of ours: drop it, keep waiting */
            close(fd);
            n--;
            continue;
        }
        if (pw != (uint32_t)world)
            st = ST_WORLD;
        else if (pr_rank == 0 || pr_rank >= (uint32_t)world)
            st = ST_RANK;
        else if (seen[pr_rank])
            st = ST_DUP;
        else if (pb != bytes)
            st = ST_BYTES;
        unsigned char s4[4];
        ft_wr_le32(s4, st);
        io_all(fd, s4, 4, 1, deadline);
        if (st != ST_OK) {
            rc = FT_EFORMAT;
            if (st == ST_WORLD)
                snprintf(err, errcap, "rank %u was started with world size %u, rank 0 with %d",
                         pr_rank, pw, world);
            else if (st == ST_RANK)
                snprintf(err, errcap, "a peer says it is rank %u of a world of %d", pr_rank, world);
            else if (st == ST_DUP)
                snprintf(err, errcap, "rank %u arrived twice", pr_rank);
            else
                snprintf(err, errcap, "rank %u expects %u bytes, rank 0 sends %zu", pr_rank, pb,
                         bytes);
            close(fd);
            break;
        }
        seen[pr_rank] = 1;
        fds[n] = fd;
    }
    /* everyone arrived: send the blob (a failure closes the sockets: peers see the reset) */
    for (int i = 0; i < n; i++) {
        if (!rc && (rc = io_all(fds[i], (void *)blob, bytes, 1, deadline)))
            snprintf(err, errcap, "rank 0: sending to a peer: %s", strerror(-rc));
        close(fds[i]);
    }
    free(fds), free(seen), close(ls);
    return rc;
}

static int join(int rank, int world, const char *addr, int port, double timeout_s, void *blob,
                size_t bytes, char *err, size_t errcap) {
    double deadline = ft_now() + timeout_s;
    char gai[128];
    int fd = -1, c = ft_tcp_connect(addr, port, deadline, &fd, gai, sizeof gai);
    if (c == FT_EARG) {
        snprintf(err, errcap, "rank %d: master address '%s': %s", rank, addr, gai);
        return FT_EARG;
    }
    if (c) {
        snprintf(err, errcap, "rank %d: cannot reach rank 0 at %s:%d within %g s (%s)", rank, addr,
                 port, timeout_s, strerror(-c));
        return c;
    }
    unsigned char h[16], s4[4];
    ft_wr_le32(h, RDV_MAGIC), ft_wr_le32(h + 4, (uint32_t)rank), ft_wr_le32(h + 8, (uint32_t)world);
    ft_wr_le32(h + 12, (uint32_t)bytes);
    int rc = io_all(fd, h, sizeof h, 1, deadline);
    if (!rc) rc = io_all(fd, s4, 4, 0, deadline);
    if (rc) {
        snprintf(err, errcap, "rank %d: rank 0 at %s:%d: %s", rank, addr, port, strerror(-rc));
        close(fd);
        return rc;
    }
    uint32_t st = ft_rd_le32(s4);
    if (st != ST_OK) {
        static const char *why[] = {"", "a different world size", "a rank outside the world",
                                    "a rank that already arrived", "a different blob size"};
        snprintf(err, errcap, "rank %d (world %d): rank 0 at %s:%d refused: %s", rank, world, addr,
                 port, st < 5 ? why[st] : "unknown reason");
        close(fd);
        return FT_EFORMAT;
    }
    rc = io_all(fd, blob, bytes, 0, deadline);
    if (rc)
        snprintf(err, errcap, "rank %d: rank 0 at %s:%d went away before the id (%s)", rank, addr,
                 port, strerror(-rc));
    close(fd);
    return rc;
}

int ft_rendezvous(int rank, int world, const char *addr, int port, double timeout_s, void *blob,
                  size_t bytes, char *err, size_t errcap) {
    if (world < 1 || rank < 0 || rank >= world || port < 1 || port > 65535 ||
        bytes > FT_RDV_MAX_BLOB || (!blob && bytes) || !(timeout_s > 0)) {
        snprintf(err, errcap, "rendezvous: bad arguments (rank %d, world %d, port %d)", rank, world,
                 port);
        return FT_EARG;
    }
    if (world == 1) return 0;
    if (rank == 0) return serve(world, port, timeout_s, blob, bytes, err, errcap);
    if (!addr || !*addr) {
        snprintf(err, errcap, "rank %d: no master address for the rendezvous", rank);
        return FT_EARG;
    }
    return join(rank, world, addr, port, timeout_s, blob, bytes, err, errcap);
}
