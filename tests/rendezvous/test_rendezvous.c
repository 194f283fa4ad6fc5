/* test_rendezvous.c: ft_rendezvous between processes on 127.0.0.1 (fork): rank 0 hands a
 * blob to 3 peers; the failures give their one line and fail on both sides: another world
 * size, a rank twice, a missing peer (rank 0 times out), no rank 0 (a peer times out). */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ft_common.h"
#include "rendezvous.h"

static int failures;
static void check(int ok, const char *what, const char *detail) {
    printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, detail ? ": " : "", detail ? detail : "");
    if (!ok) failures++;
}

/* a free port: bind to 0, read it, close (the kernel will not hand it out again at once) */
static int free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) ||
        getsockname(s, (struct sockaddr *)&a, &l))
        abort();
    close(s);
    return ntohs(a.sin_port);
}

#define BLOB 128

/* run peers (rank, world) in children; rank 0 here; returns rank 0's rc, children's ok in ok */
static int job(int port, int world0, int n, const int *ranks, const int *worlds, double t0,
               double tp, int *child_ok, char *err0, const unsigned char *want) {
    pid_t pid[8];
    for (int i = 0; i < n; i++) {
        if ((pid[i] = fork()) == 0) {
            unsigned char got[BLOB];
            char err[512] = "";
            int rc = ft_rendezvous(ranks[i], worlds[i], "127.0.0.1", port, tp, got, BLOB, err,
                                   sizeof err);
            if (rc) fprintf(stdout, "    peer rank %d: %s\n", ranks[i], err);
            fflush(stdout);
            _exit(rc ? 2 : memcmp(got, want, BLOB) ? 3 : 0);
        }
    }
    unsigned char blob[BLOB];
    memcpy(blob, want, BLOB);
    int rc = world0 ? ft_rendezvous(0, world0, NULL, port, t0, blob, BLOB, err0, 512) : 0;
    *child_ok = 0;
    for (int i = 0; i < n; i++) {
        int st;
        waitpid(pid[i], &st, 0);
        *child_ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    return rc;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "test_rendezvous", "usage: test_rendezvous\n")) return 0;
    unsigned char want[BLOB];
    for (int i = 0; i < BLOB; i++) want[i] = (unsigned char)(i * 37 + 11);
    char err[512];
    int ok;

    int r1[] = {1, 2, 3}, w1[] = {4, 4, 4};
    err[0] = 0;
    int rc = job(free_port(), 4, 3, r1, w1, 20, 20, &ok, err, want);
    check(rc == 0 && ok == 3, "rank 0 hands 128 bytes to ranks 1..3", err);

    int r2[] = {1, 2}, w2[] = {3, 4};
    err[0] = 0;
    rc = job(free_port(), 3, 2, r2, w2, 10, 10, &ok, err, want);
    check(rc != 0 && ok < 2 && strstr(err, "world size 4, rank 0 with 3"),
          "another world size fails, named", err);

    int r3[] = {1, 1}, w3[] = {3, 3};
    err[0] = 0;
    rc = job(free_port(), 3, 2, r3, w3, 10, 10, &ok, err, want);
    check(rc != 0 && ok == 0 && strstr(err, "rank 1 arrived twice"), "a rank twice fails, named",
          err);

    int r4[] = {1}, w4[] = {3};
    err[0] = 0;
    double t = ft_now();
    rc = job(free_port(), 3, 1, r4, w4, 1.5, 10, &ok, err, want);
    check(rc == -ETIMEDOUT && ok == 0 && strstr(err, "2 of 3 ranks arrived") && ft_now() - t < 8,
          "a missing peer: rank 0 times out, the peer fails too", err);

    int port = free_port();
    t = ft_now();
    rc = ft_rendezvous(1, 2, "127.0.0.1", port, 1.0, want, BLOB, err, sizeof err);
    char expect[128];
    snprintf(expect, sizeof expect, "rank 1: cannot reach rank 0 at 127.0.0.1:%d within 1 s", port);
    check(rc != 0 && strstr(err, expect) && ft_now() - t < 5, "no rank 0: the peer times out", err);

    rc = ft_rendezvous(1, 2, "no-such-host.invalid", port, 1.0, want, BLOB, err, sizeof err);
    check(rc == FT_EARG && strstr(err, "no-such-host.invalid"), "an unknown master address", err);
    rc = ft_rendezvous(0, 1, NULL, port, 1.0, want, BLOB, err, sizeof err);
    check(rc == 0, "world 1: nothing to exchange", NULL);
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
