/* ft-launch: start the ranks of one node of a distributed ft-train job, with the flags of
 * torch.distributed.launch (docs/distributed.md).
 *
 *   ft-launch --nproc_per_node N [--nnodes K --node_rank R --master_addr A --master_port P]
 *             [--timeout S] -- ft-train CONFIG [key=value ...]
 *
 * Each node's ft-launch runs one `mpirun -np N` (Open MPI) whose ranks get RANK, WORLD_SIZE,
 * LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT (and FT_LAUNCH_NNODES /
 * FT_LAUNCH_NODE_RANK) through this program's --rank-shim. With K > 1 nodes the K MPI jobs
 * become one: node 0's ft-launch starts an ompi-server (Open MPI's publish/lookup server) and
 * hands its address to the other launchers through a small TCP rendezvous at
 * master_addr:master_port; every mpirun gets --ompi-server, and the ranks join with
 * MPI_Comm_accept / MPI_Comm_connect and MPI_Intercomm_merge (train/comm/mpi.c). The
 * collectives themselves are Open MPI's. The launchers keep their rendezvous connections open:
 * when one node's job fails, every launcher ends its mpirun (SIGTERM, SIGKILL of the process
 * group after 10 s). SIGINT / SIGTERM / SIGHUP are forwarded to mpirun, which forwards them to
 * the ranks (ft-train checkpoints and exits 130); the other launchers hear of it as a stop, not
 * a failure. Exit status: 0; 130 after a stop by a signal on any node; the local job's after a
 * failure here; 1 when another node failed or the rendezvous did; 2 for a usage error.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ft_common.h"
#include "ft_net.h"

#define PROG     "ft-launch"
#define MAXNODES 1024

static void usage(FILE *f) {
    fprintf(f, "usage: " PROG " --nproc_per_node N [--nnodes K] [--node_rank R] [--master_addr A]\n"
               "       [--master_port P] [--timeout S] -- ft-train CONFIG [key=value ...]\n"
               "Start N ranks of a distributed job on this node (one mpirun per node); with\n"
               "K > 1 nodes, run one ft-launch per node with the same master address and port\n"
               "(node_rank 0 is the master). Flags take '=' or a space. Each rank gets RANK,\n"
               "WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT.\n"
               "  --timeout S    seconds to wait for the master or the other nodes (300)\n"
               "  -h, --help     this help;  -V, --version  the version\n"
               "See docs/distributed.md.\n");
}

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

/* ------------------------------------------------------------------ rank shim */

/* Started by mpirun for every local rank: the launcher's variables, then the command. */
static int rank_shim(char **cmd) {
    int n = atoi(getenv("FT_LAUNCH_NPROC") ? getenv("FT_LAUNCH_NPROC") : "0");
    int k = atoi(getenv("FT_LAUNCH_NNODES") ? getenv("FT_LAUNCH_NNODES") : "0");
    int node = atoi(getenv("FT_LAUNCH_NODE_RANK") ? getenv("FT_LAUNCH_NODE_RANK") : "-1");
    const char *lr = getenv("OMPI_COMM_WORLD_RANK");
    if (n < 1 || k < 1 || node < 0 || !lr) return die("--rank-shim: not started by ft-launch");
    int local = atoi(lr);
    char v[32];
    snprintf(v, sizeof v, "%d", node * n + local);
    setenv("RANK", v, 1);
    snprintf(v, sizeof v, "%d", n * k);
    setenv("WORLD_SIZE", v, 1);
    snprintf(v, sizeof v, "%d", local);
    setenv("LOCAL_RANK", v, 1);
    snprintf(v, sizeof v, "%d", n);
    setenv("LOCAL_WORLD_SIZE", v, 1);
    execvp(cmd[0], cmd);
    return die("%s: cannot start: %s", cmd[0], strerror(errno));
}

/* ------------------------------------------------------------------ rendezvous */

static int read_line(int fd, char *buf, size_t cap, double deadline) {
    size_t n = 0;
    while (n + 1 < cap) {
        int pr = ft_fd_wait(fd, POLLIN, deadline);
        if (pr <= 0) return pr ? pr : -ETIMEDOUT;
        ssize_t k = read(fd, buf + n, 1);
        if (k <= 0) return k == 0 ? -ECONNRESET : -errno;
        if (buf[n] == '\n') break;
        n++;
    }
    buf[n] = '\0';
    return 0;
}

static int send_line(int fd, const char *s) {
    size_t n = strlen(s);
    return write(fd, s, n) == (ssize_t)n ? 0 : -errno;
}

/* node 0: accept the K-1 launchers, check them, send each the ompi-server's address */
static int master_rendezvous(const char *addr, int port, int nnodes, int nproc, const char *uri,
                             double timeout, int *peers) {
    int ls = -1, rc = ft_tcp_listen(addr, port, MAXNODES, &ls);
    if (rc == FT_EARG) return die("--master_addr %s: cannot resolve", addr);
    if (rc) return die("%s:%d: cannot listen: %s", addr, port, strerror(-rc));
    double deadline = ft_now() + timeout;
    int have = 0, seen[MAXNODES] = {0};
    while (have < nnodes - 1) {
        if (ft_fd_wait(ls, POLLIN, deadline) <= 0) {
            close(ls);
            return die("%s:%d: %d of %d node launchers arrived within %.0f s", addr, port, have,
                       nnodes - 1, timeout);
        }
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        char line[256], reply[2048];
        int node = -1, np = -1;
        if (read_line(fd, line, sizeof line, deadline) ||
            sscanf(line, "HELLO %d %d", &node, &np) != 2) {
            close(fd);
            continue; /* not one of ours */
        }
        if (node < 1 || node >= nnodes || seen[node] || np != nproc) {
            snprintf(reply, sizeof reply,
                     "ERR node_rank %d with nproc_per_node %d does not fit the master's "
                     "--nnodes %d --nproc_per_node %d%s\n",
                     node, np, nnodes, nproc,
                     node >= 1 && node < nnodes && seen[node] ? " (taken)" : "");
            send_line(fd, reply);
            close(fd);
            close(ls);
            return die("%s", reply + 4);
        }
        snprintf(reply, sizeof reply, "URI %s\n", uri);
        if (send_line(fd, reply)) {
            close(fd);
            continue;
        }
        seen[node] = 1;
        peers[have++] = fd;
    }
    close(ls);
    return 0;
}

/* node R > 0: reach the master (retrying until the timeout), get the ompi-server's address */
static int worker_rendezvous(const char *addr, int port, int node, int nproc, double timeout,
                             char *uri, size_t cap, int *peer) {
    double deadline = ft_now() + timeout;
    char why[128];
    int fd = -1, rc = ft_tcp_connect(addr, port, deadline, &fd, why, sizeof why);
    if (rc == FT_EARG) return die("--master_addr %s: cannot resolve (%s)", addr, why);
    if (rc)
        return die("cannot reach the master at %s:%d within %.0f s: %s (is node_rank 0's "
                   "ft-launch running with the same --master_addr/--master_port?)",
                   addr, port, timeout, strerror(-rc));
    char line[2048];
    snprintf(line, sizeof line, "HELLO %d %d\n", node, nproc);
    if (send_line(fd, line) || read_line(fd, line, sizeof line, deadline)) {
        close(fd);
        return die("%s:%d: the master did not answer", addr, port);
    }
    if (strncmp(line, "URI ", 4)) {
        close(fd);
        return die("%s:%d: the master refused this node: %s", addr, port,
                   strncmp(line, "ERR ", 4) ? line : line + 4);
    }
    size_t ul = strlen(line + 4);
    if (ul >= cap) {
        close(fd);
        return die("%s:%d: the master's answer is too long", addr, port);
    }
    memcpy(uri, line + 4, ul + 1);
    *peer = fd;
    return 0;
}

/* ------------------------------------------------------------------ processes */

static volatile sig_atomic_t g_sig;
static void on_signal(int s) {
    g_sig = s;
}

static pid_t spawn(char **argv, int own_group) {
    pid_t pid = fork();
    if (pid == 0) {
        if (own_group) setpgid(0, 0);
        signal(SIGINT, SIG_DFL), signal(SIGTERM, SIG_DFL), signal(SIGHUP, SIG_DFL);
        execvp(argv[0], argv);
        fprintf(stderr, PROG ": %s: cannot start: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

/* ompi-server, its address read from the file it writes */
static pid_t start_ompi_server(const char *dir, char *uri, size_t cap) {
    char file[PATH_MAX];
    snprintf(file, sizeof file, "%s/ompi-server.uri", dir);
    char *argv[] = {"ompi-server", "--no-daemonize", "-r", file, NULL};
    pid_t pid = spawn(argv, 1);
    if (pid < 0) return -1;
    for (double end = ft_now() + 30; ft_now() < end; usleep(100000)) {
        FILE *f = fopen(file, "r");
        if (f) {
            size_t n = fread(uri, 1, cap - 1, f);
            fclose(f);
            uri[n] = '\0';
            while (n && (uri[n - 1] == '\n' || uri[n - 1] == ' ')) uri[--n] = '\0';
            if (n) return pid;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) break;
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

/* ------------------------------------------------------------------ main */

typedef struct opts {
    int nproc, nnodes, node, port;
    const char *addr;
    double timeout;
    char **cmd;
} opts;

/* "--flag=v" or "--flag v"; returns the value or NULL (and advances *i past it) */
static const char *flag_value(int argc, char **argv, int *i, const char *flag) {
    size_t n = strlen(flag);
    if (strncmp(argv[*i], flag, n)) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n] == '\0' && *i + 1 < argc) return argv[++*i];
    return NULL;
}

static int parse(int argc, char **argv, opts *o) {
    *o = (opts){1, 1, 0, 29500, "127.0.0.1", 300, NULL};
    static const struct {
        const char *flag;
        int64_t lo, hi;
        size_t off;
    } INTS[] = {{"--nproc_per_node", 1, 4096, offsetof(opts, nproc)},
                {"--nnodes", 1, MAXNODES, offsetof(opts, nnodes)},
                {"--node_rank", 0, MAXNODES - 1, offsetof(opts, node)},
                {"--master_port", 1, 65535, offsetof(opts, port)}};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            o->cmd = argv + i + 1;
            break;
        }
        const char *v;
        int done = 0;
        for (size_t k = 0; k < sizeof INTS / sizeof *INTS && !done; k++) {
            int64_t x;
            if (!(v = flag_value(argc, argv, &i, INTS[k].flag))) continue;
            if (ft_parse_i64(v, INTS[k].lo, INTS[k].hi, &x))
                return die("%s %s: want an integer in [%lld, %lld]", INTS[k].flag, v,
                           (long long)INTS[k].lo, (long long)INTS[k].hi) +
                       1;
            *(int *)((char *)o + INTS[k].off) = (int)x;
            done = 1;
        }
        if (done) continue;
        if ((v = flag_value(argc, argv, &i, "--master_addr"))) {
            o->addr = v;
        } else if ((v = flag_value(argc, argv, &i, "--timeout"))) {
            if (ft_parse_double(v, 0.1, 1e7, &o->timeout))
                return die("--timeout %s: want seconds", v) + 1;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!o->cmd || !o->cmd[0]) return die("no command after --") + 1;
    if (o->node >= o->nnodes)
        return die("--node_rank %d must be below --nnodes %d", o->node, o->nnodes) + 1;
    return 0;
}

/* "ft-train" without a path: the one next to this program, if there is one */
static char *resolve_cmd(const char *cmd) {
    static char path[PATH_MAX];
    if (strchr(cmd, '/')) return (char *)cmd;
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0) return (char *)cmd;
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    if (!slash || (size_t)(slash - path) + strlen(cmd) + 2 > sizeof path) return (char *)cmd;
    strcpy(slash + 1, cmd);
    return access(path, X_OK) == 0 ? path : (char *)cmd;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "--rank-shim")) {
        if (argc < 4 || strcmp(argv[2], "--")) return die("--rank-shim -- CMD ...");
        return rank_shim(argv + 3);
    }
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "-V") || !strcmp(argv[i], "--version")) {
            printf("%s\n", FT_VERSION_STRING);
            return 0;
        }
    }
    opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    char self[PATH_MAX];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) return die("cannot find this program (/proc/self/exe)");
    self[sl] = '\0';
    char dir[] = "/tmp/ft-launch.XXXXXX";
    if (!mkdtemp(dir)) return die("cannot create a temporary folder: %s", strerror(errno));
    if (getuid() == 0) { /* the rendezvous server refuses root without these */
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    }
    /* rendezvous (several nodes): node 0 serves the ompi-server's address */
    char uri[1024] = "";
    int peers[MAXNODES], npeers = 0, master = -1;
    pid_t server = 0;
    signal(SIGPIPE, SIG_IGN);
    if (o.nnodes > 1 && o.node == 0) {
        if ((server = start_ompi_server(dir, uri, sizeof uri)) <= 0) {
            ft_rm_rf(dir);
            return die("cannot start ompi-server (openmpi-bin) for the %d nodes' rendezvous",
                       o.nnodes);
        }
        if (master_rendezvous(o.addr, o.port, o.nnodes, o.nproc, uri, o.timeout, peers)) {
            kill(server, SIGTERM), waitpid(server, NULL, 0), ft_rm_rf(dir);
            return 1;
        }
        npeers = o.nnodes - 1;
    } else if (o.nnodes > 1 && worker_rendezvous(o.addr, o.port, o.node, o.nproc, o.timeout, uri,
                                                 sizeof uri, &master)) {
        ft_rm_rf(dir);
        return 1;
    }
    char urifile[PATH_MAX + 32] = "";
    if (o.nnodes > 1) {
        snprintf(urifile, sizeof urifile, "%s/server.uri", dir);
        FILE *f = fopen(urifile, "w");
        if (!f || fprintf(f, "%s\n", uri) < 0 || fclose(f)) return die("%s: cannot write", urifile);
    }
    /* the environment the ranks inherit through mpirun's -x */
    char v[64];
    snprintf(v, sizeof v, "%d", o.nproc);
    setenv("FT_LAUNCH_NPROC", v, 1);
    snprintf(v, sizeof v, "%d", o.nnodes);
    setenv("FT_LAUNCH_NNODES", v, 1);
    snprintf(v, sizeof v, "%d", o.node);
    setenv("FT_LAUNCH_NODE_RANK", v, 1);
    setenv("MASTER_ADDR", o.addr, 1);
    snprintf(v, sizeof v, "%d", o.port);
    setenv("MASTER_PORT", v, 1);
    int ncmd = 0;
    while (o.cmd[ncmd]) ncmd++;
    char **av = calloc((size_t)ncmd + 40, sizeof *av);
    if (!av) return die("out of memory");
    int k = 0;
    char np[16], srv[PATH_MAX + 48];
    snprintf(np, sizeof np, "%d", o.nproc);
    av[k++] = "mpirun";
    if (getuid() == 0) av[k++] = "--allow-run-as-root";
    av[k++] = "--oversubscribe", av[k++] = "--bind-to", av[k++] = "none";
    av[k++] = "-np", av[k++] = np;
    if (o.nnodes > 1) {
        snprintf(srv, sizeof srv, "file:%s", urifile);
        av[k++] = "--ompi-server", av[k++] = srv;
    }
    static char *vars[] = {"FT_LAUNCH_NPROC", "FT_LAUNCH_NNODES", "FT_LAUNCH_NODE_RANK",
                           "MASTER_ADDR", "MASTER_PORT"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) av[k++] = "-x", av[k++] = vars[i];
    av[k++] = self, av[k++] = "--rank-shim", av[k++] = "--";
    av[k++] = resolve_cmd(o.cmd[0]);
    for (int i = 1; i < ncmd; i++) av[k++] = o.cmd[i];
    av[k] = NULL;

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL), sigaction(SIGTERM, &sa, NULL), sigaction(SIGHUP, &sa, NULL);
    pid_t job = spawn(av, 1);
    if (job < 0) return die("cannot start mpirun: %s", strerror(errno));
    /* supervise: the job, signals, the other launchers */
    int status = 0, done = 0, other_failed = 0, forwarded = 0, peer_stopped = 0;
    /* a launcher whose job ended well says OK before it goes: its hang-up is no failure then */
    int said_ok[MAXNODES + 1] = {0}; /* [0]: the master, [1 + i]: peers[i] */
    double kill_at = 0;
    while (!done) {
        if (g_sig && forwarded != g_sig) {
            kill(job, g_sig); /* mpirun forwards it to the ranks */
            forwarded = g_sig;
        }
        struct pollfd p[MAXNODES];
        int n = 0;
        if (master >= 0) p[n++] = (struct pollfd){master, POLLIN, 0};
        for (int i = 0; i < npeers; i++)
            if (peers[i] >= 0) p[n++] = (struct pollfd){peers[i], POLLIN, 0};
        poll(p, (nfds_t)n, 200);
        for (int i = 0; i < n; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char line[64];
            int r = read_line(p[i].fd, line, sizeof line, ft_now() + 1);
            int slot = p[i].fd == master ? 0 : -1;
            for (int j = 0; slot < 0 && j < npeers; j++)
                if (peers[j] == p[i].fd) slot = 1 + j;
            if (!r && !strncmp(line, "OK", 2) && slot >= 0) said_ok[slot] = 1;
            if (!r && !strncmp(line, "STOP", 4)) { /* a signal there: the ranks stop together */
                peer_stopped = 1;
                for (int j = 0; j < npeers; j++) /* the master tells every node */
                    if (peers[j] >= 0 && peers[j] != p[i].fd) send_line(peers[j], "STOP\n");
                continue;
            }
            int fail = r != 0 ? !(slot >= 0 && said_ok[slot]) : strncmp(line, "OK", 2) != 0;
            if (fail && !kill_at && !(r && peer_stopped)) { /* another node failed */
                other_failed = 1;
                fprintf(stderr,
                        PROG ": node %d: another node's job ended with an error "
                             "(%s); ending this node's ranks\n",
                        o.node, r ? "its launcher is gone" : line);
                kill(job, SIGTERM);
                kill_at = ft_now() + 10;
                for (int j = 0; j < npeers; j++) /* the master tells every node */
                    if (peers[j] >= 0 && peers[j] != p[i].fd) send_line(peers[j], "FAIL\n");
            }
            if (r) { /* that connection is done */
                for (int j = 0; j < npeers; j++)
                    if (peers[j] == p[i].fd) close(peers[j]), peers[j] = -1;
                if (p[i].fd == master) close(master), master = -1;
            }
        }
        if (kill_at && ft_now() > kill_at) kill(-job, SIGKILL), kill_at = ft_now() + 1e9;
        if (waitpid(job, &status, WNOHANG) == job) done = 1;
    }
    int job_rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    /* tell the others how this node ended: a stop by a signal is no failure (every rank
     * agreed on the step to stop at and checkpointed), so nobody is killed for it */
    int stopped = job_rc && (forwarded || peer_stopped);
    const char *msg = job_rc == 0 ? "OK\n" : stopped ? "STOP\n" : "FAIL\n";
    if (master >= 0) send_line(master, msg);
    for (int i = 0; i < npeers; i++)
        if (peers[i] >= 0) {
            if (job_rc) send_line(peers[i], msg);
            if (!job_rc || stopped) { /* the master waits for every node before it ends */
                char line[64];
                while (read_line(peers[i], line, sizeof line, ft_now() + o.timeout) == 0 &&
                       (!strncmp(line, "OK", 2) || !strncmp(line, "STOP", 4)))
                    ;
            }
            close(peers[i]);
        }
    if (master >= 0) close(master);
    if (server > 0) kill(server, SIGTERM), waitpid(server, NULL, 0);
    ft_rm_rf(dir);
    free(av);
    if (stopped) {
        fprintf(stderr, PROG ": node %d: stopped by a signal%s (mpirun status %d)\n", o.node,
                forwarded ? "" : " on another node", job_rc);
        return 130;
    }
    if (job_rc) fprintf(stderr, PROG ": node %d: mpirun exited with status %d\n", o.node, job_rc);
    return job_rc ? job_rc : other_failed ? 1 : 0;
}
