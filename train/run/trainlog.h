/* trainlog: training.log and the matching stdout lines, in arcface_torch's format
 * (formats.md 6.1).
 *
 * Every line is "Training: <asctime>-<message>", asctime being local time like
 * "2024-01-31 12:34:56,789" (milliseconds truncated, as Python's logging does). The same text
 * goes to <output>/training.log (appended to, so a resumed run continues the file) and to
 * stdout.
 *
 * ft_speedlog is arcface_torch's CallBackLogging plus the AverageMeter of the loss:
 * - a line at every global_step % frequent == 0, except that the first such step only starts
 *   the timer;
 * - "Speed %.2f samples/sec   Loss %.4f   LearningRate %.6f   Epoch: %d   Global Step: %d
 *   [Fp16 Grad Scale: %2.f   ]Required: %1.f hours" (three spaces between fields);
 * - Speed = frequent * batch_size * world / seconds since the previous line; Loss = mean of
 *   the losses since the previous line; Required = int(now - start) / (step - start_step + 1)
 *   * (total_step - step - 1) / 3600;
 * - TensorBoard scalars time_for_end, learning_rate and loss at the same steps.
 */
#ifndef FT_TRAINLOG_H
#define FT_TRAINLOG_H

#include <stdint.h>
#include <stdio.h>

#include "tboard.h"

/* Wall-clock seconds since the epoch (time.time()); replaceable for tests. */
typedef double (*ft_wallclock_fn)(void *user);
double ft_wallclock(void *user); /* the real clock */

typedef struct ft_trainlog ft_trainlog;

/* Open <dir>/training.log for appending (dir must exist). echo: stream for the copy (stdout),
 * or NULL for none. */
int ft_trainlog_open(ft_trainlog **out, const char *dir, FILE *echo, char *err, size_t errcap);
void ft_trainlog_set_clock(ft_trainlog *l, ft_wallclock_fn fn, void *user);
double ft_trainlog_now(const ft_trainlog *l); /* the log's clock */
/* One message line (printf format, no newline). NULL log: nothing. */
void ft_trainlog_msg(ft_trainlog *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ft_trainlog_close(ft_trainlog *l); /* NULL ok */

/* "2024-01-31 12:34:56,789" for wall time t, local time zone */
void ft_trainlog_asctime(double t, char *out, size_t cap);

typedef struct ft_speedlog {
    int64_t frequent, total_step, start_step;
    int batch_size, world;
    double time_start, tic;
    int init;
    double loss_sum; /* AverageMeter */
    int64_t loss_cnt;
} ft_speedlog;

/* start_step: the global step training starts from (0, or the resumed step). now: the log's
 * clock when the callback is created. */
void ft_speedlog_init(ft_speedlog *s, int64_t frequent, int64_t total_step, int batch_size,
                      int world, int64_t start_step, double now);
void ft_speedlog_loss(ft_speedlog *s, double loss); /* loss_am.update(loss, 1) */
/* The callback after step global_step; lr = lr(global_step). fp16: print grad_scale. tb may be
 * NULL. Returns 1 when it printed a line. */
int ft_speedlog_step(ft_speedlog *s, ft_trainlog *log, ft_tboard *tb, int64_t global_step,
                     int epoch, double lr, int fp16, double grad_scale);

#endif
