/* outdir.c: one ft-train per output folder. An advisory lock (flock) on <output>/.ft-train.lock
 * is held for the whole run, so a second ft-train into the same output (or one started while a
 * dying run still writes) is refused; the lock goes with the process however it ends. Holding
 * it, ft-train removes the `<file>.tmp.<pid>` files (safetensors.c's temporary names) that
 * writers which are no longer alive left behind. See run.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "ft_common.h"
#include "run.h"

#define LOCK_NAME ".ft-train.lock"

int ft_run_lock_output(ft_run *r) {
    char path[PATH_MAX];
    if (ft_path_join(path, sizeof path, r->cfg.output, LOCK_NAME))
        return ft_run_fail(r, FT_ERANGE, "%s: path too long", r->cfg.output);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return ft_run_fail(r, -errno, "%s: cannot create: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (e == EWOULDBLOCK)
            return ft_run_fail(r, -EBUSY,
                               "%s: another ft-train%s%s%s is writing into this output folder; "
                               "wait for it to end or choose another output",
                               r->cfg.output, pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "");
        return ft_run_fail(r, -e, "%s: cannot lock: %s", path, strerror(e));
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        int e = errno;
        close(fd);
        return ft_run_fail(r, -e, "%s: cannot write: %s", path, strerror(e));
    }
    r->out.lock_fd = fd;
    return 0;
}

void ft_run_unlock_output(ft_run *r) {
    if (r->out.lock_fd >= 0)
        close(r->out.lock_fd); /* the lock file stays: removing it would race */
    r->out.lock_fd = -1;
}

/* The pid of "<name>.tmp.<pid>", or 0. */
static long tmp_pid(const char *name) {
    const char *t = strstr(name, ".tmp.");
    if (!t) return 0;
    for (const char *n; (n = strstr(t + 1, ".tmp.")); t = n) continue;
    t += 5;
    char *end = NULL;
    long pid = strtol(t, &end, 10);
    return *t >= '0' && *t <= '9' && end && *end == '\0' && pid > 0 ? pid : 0;
}

int ft_run_clean_stale_tmp(ft_run *r) {
    DIR *d = opendir(r->cfg.output);
    if (!d) return ft_run_fail(r, -errno, "%s: cannot list: %s", r->cfg.output, strerror(errno));
    struct dirent *e;
    int removed = 0, rc = 0;
    char first[256] = "";
    while ((e = readdir(d))) {
        long pid = tmp_pid(e->d_name);
        /* alive (also EPERM: someone else's process) means not ours to remove */
        if (!pid || (pid != (long)getpid() && (kill((pid_t)pid, 0) == 0 || errno != ESRCH)))
            continue;
        char path[PATH_MAX];
        if (ft_path_join(path, sizeof path, r->cfg.output, e->d_name)) continue;
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = ft_run_fail(r, -errno, "%s: cannot remove a stale temporary file: %s", path,
                             strerror(errno));
            break;
        }
        if (!removed++) snprintf(first, sizeof first, "%s", e->d_name);
    }
    closedir(d);
    if (removed)
        fprintf(stderr,
                FT_TRAIN_PROG ": note: %s: removed %d temporary file%s of an interrupted "
                              "checkpoint save (%s%s)\n",
                r->cfg.output, removed, removed > 1 ? "s" : "", first, removed > 1 ? ", ..." : "");
    return rc;
}
