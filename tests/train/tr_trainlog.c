/* tr_trainlog: writes a training.log with a scripted clock, for test_trainlog.py.
 *   tr_trainlog DIR CONFIG
 * Time is T0 + 0.37 * step (+ 0.0004 * step^2); the log's clock returns the current time,
 * whatever the number of calls. Lines: rank_id, the config lines, the progress callback over
 * 45 steps (fp16 fields from step 40), and verification lines at steps 20 and 40. The stdout
 * copy goes to stdout.
 */
#include <stdio.h>
#include <stdlib.h>

#include "ft_common.h"
#include "config.h"
#include "trainlog.h"

#define T0 1706704496.789

static double g_now;
static double fake_clock(void *user) {
    (void)user;
    return g_now;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "tr_trainlog", "usage: tr_trainlog DIR CONFIG\n")) return 0;
    if (argc != 3) {
        fprintf(stderr, "usage: tr_trainlog DIR CONFIG\n");
        return 1;
    }
    char err[FT_CFG_ERRCAP];
    ft_config c;
    if (ft_config_init(&c) || ft_config_load_file(&c, argv[2], err, sizeof err) ||
        ft_config_finalize(&c, argv[2], err, sizeof err) ||
        ft_config_derive(&c, 6080, 10, 1, err, sizeof err)) {
        fprintf(stderr, "config: %s\n", err);
        return 1;
    }
    ft_trainlog *log;
    if (ft_trainlog_open(&log, argv[1], stdout, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    ft_trainlog_set_clock(log, fake_clock, NULL);
    g_now = T0;
    ft_trainlog_msg(log, "rank_id: %d", 0);
    for (int i = 0; i < c.n_entries; i++) {
        char line[4096];
        ft_config_line(&c, i, line, sizeof line);
        ft_trainlog_msg(log, "%s", line);
    }
    ft_speedlog s;
    ft_speedlog_init(&s, 10, 950000, 64, 2, 0, ft_trainlog_now(log));
    double highest = 0;
    for (int step = 1; step <= 45; step++) {
        g_now = T0 + 0.37 * step + 0.0004 * step * step;
        ft_speedlog_loss(&s, 10.0 / step + 0.123456789);
        ft_speedlog_step(&s, log, NULL, step, step / 20, 0.1 * (1.0 - step / 95.0), step >= 40,
                         65536.0);
        if (step % 20 == 0) {
            double acc = 0.5 + step / 100.0, std = 0.0123456;
            if (acc > highest) highest = acc;
            ft_trainlog_msg(log, "[%s][%d]XNorm: %f", "lfw", step, 22.5 + step);
            ft_trainlog_msg(log, "[%s][%d]Accuracy-Flip: %1.5f+-%1.5f", "lfw", step, acc, std);
            ft_trainlog_msg(log, "[%s][%d]Accuracy-Highest: %1.5f", "lfw", step, highest);
        }
    }
    ft_trainlog_close(log);
    ft_config_free(&c);
    return 0;
}
