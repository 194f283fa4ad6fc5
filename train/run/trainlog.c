/* trainlog.c: training.log lines and the progress callback; see trainlog.h. */
#include "trainlog.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "ft_common.h"

struct ft_trainlog {
    FILE *f, *echo;
    ft_wallclock_fn clock;
    void *clock_user;
};

double ft_wallclock(void *user) {
    (void)user;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

int ft_trainlog_open(ft_trainlog **out, const char *dir, FILE *echo, char *err, size_t errcap) {
    *out = NULL;
    char path[PATH_MAX];
    if (ft_path_join(path, sizeof path, dir, "training.log")) {
        snprintf(err, errcap, "%s: path too long", dir);
        return FT_ERANGE;
    }
    ft_trainlog *l = calloc(1, sizeof *l);
    if (!l) return -ENOMEM;
    l->f = fopen(path, "a");
    if (!l->f) {
        int rc = -errno;
        snprintf(err, errcap, "%s: cannot open: %s", path, strerror(errno));
        free(l);
        return rc;
    }
    l->echo = echo;
    l->clock = ft_wallclock;
    *out = l;
    return 0;
}

void ft_trainlog_set_clock(ft_trainlog *l, ft_wallclock_fn fn, void *user) {
    l->clock = fn ? fn : ft_wallclock;
    l->clock_user = user;
}

double ft_trainlog_now(const ft_trainlog *l) {
    return l ? l->clock(l->clock_user) : ft_wallclock(NULL);
}

void ft_trainlog_asctime(double t, char *out, size_t cap) {
    time_t sec = (time_t)floor(t);
    int ms = (int)((t - (double)sec) * 1000.0);
    if (ms > 999) ms = 999;
    if (ms < 0) ms = 0;
    struct tm tm;
    localtime_r(&sec, &tm);
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(out, cap, "%s,%03u", buf, (unsigned)ms % 1000u);
}

void ft_trainlog_msg(ft_trainlog *l, const char *fmt, ...) {
    if (!l) return;
    char ts[64], msg[2048];
    ft_trainlog_asctime(l->clock(l->clock_user), ts, sizeof ts);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(l->f, "Training: %s-%s\n", ts, msg);
    fflush(l->f);
    if (l->echo) {
        fprintf(l->echo, "Training: %s-%s\n", ts, msg);
        fflush(l->echo);
    }
}

void ft_trainlog_close(ft_trainlog *l) {
    if (!l) return;
    fclose(l->f);
    free(l);
}

void ft_speedlog_init(ft_speedlog *s, int64_t frequent, int64_t total_step, int batch_size,
                      int world, int64_t start_step, double now) {
    memset(s, 0, sizeof *s);
    s->frequent = frequent > 0 ? frequent : 1;
    s->total_step = total_step;
    s->batch_size = batch_size;
    s->world = world > 0 ? world : 1;
    s->start_step = start_step;
    s->time_start = now;
}

void ft_speedlog_loss(ft_speedlog *s, double loss) {
    s->loss_sum += loss;
    s->loss_cnt++;
}

int ft_speedlog_step(ft_speedlog *s, ft_trainlog *log, ft_tboard *tb, int64_t global_step,
                     int epoch, double lr, int fp16, double grad_scale) {
    if (global_step <= 0 || global_step % s->frequent != 0) return 0;
    double now = ft_trainlog_now(log);
    if (!s->init) {
        s->init = 1;
        s->tic = now;
        return 0;
    }
    double dt = now - s->tic;
    double speed_total =
        dt == 0.0 ? INFINITY : (double)s->frequent * s->batch_size / dt * (double)s->world;
    double time_sec = (double)(int64_t)(now - s->time_start);
    double avg = time_sec / (double)(global_step - s->start_step + 1);
    double time_for_end = avg * (double)(s->total_step - global_step - 1) / 3600.0;
    double loss = s->loss_cnt ? s->loss_sum / (double)s->loss_cnt : 0.0;
    if (tb) {
        ft_tboard_scalar(tb, "time_for_end", (float)time_for_end, global_step, -1);
        ft_tboard_scalar(tb, "learning_rate", (float)lr, global_step, -1);
        ft_tboard_scalar(tb, "loss", (float)loss, global_step, -1);
    }
    char scale[64] = "";
    if (fp16) snprintf(scale, sizeof scale, "Fp16 Grad Scale: %2.f   ", grad_scale);
    ft_trainlog_msg(log,
                    "Speed %.2f samples/sec   Loss %.4f   LearningRate %.6f   Epoch: %d   "
                    "Global Step: %lld   %sRequired: %1.f hours",
                    speed_total, loss, lr, epoch, (long long)global_step, scale, time_for_end);
    s->loss_sum = 0;
    s->loss_cnt = 0;
    s->tic = ft_trainlog_now(log);
    return 1;
}
