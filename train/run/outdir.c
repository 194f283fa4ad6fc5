/* outdir.c: one ft-train per output folder. An advisory lock (flock) on <output>/.ft-train.lock
 * is held for the whole run, so a second ft-train into the same output (or one started while a
 * dying run still writes) is refused; the lock goes with the process however it ends. Holding
 * it, ft-train removes the `<file>.tmp.<pid>` files (safetensors.c's temporary names) that
 * writers which are no longer alive left behind, and finishes or rolls back a checkpoint save
 * that a crash cut short (the `<file>.pending-<step>` files, checkpoint.h). See run.h. */
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

#include "checkpoint.h"
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

/* 1 when file is one of the checkpoint files of a save by world ranks. */
static int committed_file(const char *file, int world) {
    for (int k = 0; k < world; k++) {
        char names[3][FT_CKPT_NAME_CAP];
        int n = ft_ckpt_rank_files(names, k, world);
        for (int i = 0; i < n; i++)
            if (strcmp(names[i], file) == 0) return 1;
    }
    return 0;
}

int ft_run_recover_ckpt(ft_run *r) {
    int64_t mstep = -1;
    int mworld = 0, rc = ft_run_read_manifest(r, &mstep, &mworld);
    if (rc == -ENOENT) {
        mstep = -1; /* nothing committed: every staged file is of an unfinished save */
    } else if (rc) {
        if (r->cfg.resume) return rc;
        r->err[0] = '\0'; /* a new run: the old checkpoint is not read */
        return 0;
    }
    DIR *d = opendir(r->cfg.output);
    if (!d) return ft_run_fail(r, -errno, "%s: cannot list: %s", r->cfg.output, strerror(errno));
    struct dirent *e;
    int promoted = 0, removed = 0;
    rc = 0;
    while ((e = readdir(d)) && !rc) {
        char file[256], path[PATH_MAX], err[PATH_MAX + 128];
        int64_t step;
        if (!ft_ckpt_parse_pending(e->d_name, file, sizeof file, &step)) continue;
        if (step == mstep && committed_file(file, mworld)) {
            if ((rc = ft_ckpt_promote(r->cfg.output, file, step, err, sizeof err)))
                ft_run_fail(r, rc, "%s", err);
            else
                promoted++;
            continue;
        }
        if (ft_path_join(path, sizeof path, r->cfg.output, e->d_name)) continue;
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = ft_run_fail(r, -errno, "%s: cannot remove a file of an unfinished save: %s", path,
                             strerror(errno));
            break;
        }
        removed++;
    }
    closedir(d);
    if (promoted || removed) ft_fsync_path(r->cfg.output);
    if (promoted)
        fprintf(stderr,
                FT_TRAIN_PROG ": note: %s: the checkpoint of step %lld was committed but a crash "
                              "cut its renames short; %d file%s renamed into place\n",
                r->cfg.output, (long long)mstep, promoted, promoted > 1 ? "s" : "");
    if (removed)
        fprintf(stderr,
                FT_TRAIN_PROG ": note: %s: removed %d staged file%s of a checkpoint save that was "
                              "never committed; %s\n",
                r->cfg.output, removed, removed > 1 ? "s" : "",
                mstep >= 0 ? "the last complete checkpoint stays" : "there is no checkpoint");
    return rc;
}
